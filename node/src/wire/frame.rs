//! Framing and the handshake every connection starts with.
//!
//! Frames are length-delimited ([`FrameCodec`]: a 4-byte big-endian length, the format of
//! `tokio-util`'s `LengthDelimitedCodec`) with an explicit maximum, and carry msgpack bodies.
//! The node speaks first with a [`ServerFrame::Challenge`]; the client answers with a hello
//! carrying [`PROTOCOL_VERSION`] (and a proof of the shared secret when one is configured;
//! with a secret, a Noise handshake comes first and everything after it is sealed). A
//! peer speaking another version, sending garbage or an oversized frame gets a [`ServerFrame::ProtocolError`] and a closed
//! connection, and the node keeps serving everyone else.

use serde::{Deserialize, Serialize};
use troupe_actor_abi::message::Address;

use super::admin::{AuthProof, ClientFrame, ServerFrame};
use super::codec::FrameCodec;

/// Version of this protocol; both sides must match exactly. (2: the node speaks first, with a
/// challenge for the shared-secret handshake. 3: client requests and peer requests are two
/// enums, [`super::Request`] and [`super::PeerRequest`]. 4: with a shared secret, a Noise
/// handshake follows the challenge and every frame after it is sealed, see [`super::noise`].)
pub const PROTOCOL_VERSION: u32 = 5;

/// Largest frame accepted before a connection has authenticated: a hello is a few hundred
/// bytes, and nobody unauthenticated gets to make the node buffer more.
pub const MAX_HELLO_BYTES: usize = 16 * 1024;

/// Length of the random nonces in the handshake (256 bits: never repeats).
pub const NONCE_BYTES: usize = 32;

/// Largest frame either side accepts: a load carries a whole zip, and the archive reader
/// refuses zips above its own limit anyway; anything bigger is garbage or an attack.
pub const MAX_FRAME_BYTES: usize = 300 * 1024 * 1024;

/// The codec both sides use, limited to [`MAX_HELLO_BYTES`] until the handshake is done.
pub fn codec() -> FrameCodec {
    FrameCodec::new(MAX_HELLO_BYTES)
}

/// Encodes a frame body.
pub fn encode<T: Serialize>(frame: &T) -> bytes::Bytes {
    bytes::Bytes::from(troupe_actor_abi::message::encode(frame))
}

/// Decodes a frame body.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    troupe_actor_abi::message::decode(bytes)
}

/// What the client side of a handshake learns.
pub struct Welcome {
    /// The node's admin address.
    pub node: String,
    /// This connection's address.
    pub client: Address,
    /// The node closes the connection after this long without a frame from us (none: never).
    pub idle_timeout: Option<std::time::Duration>,
}

type Framed = super::noise::Conn;

/// The client side of the handshake: read the challenge, answer with a hello (and a proof when
/// we have the secret), read the node's hello and check its proof.
pub async fn client_handshake(
    framed: &mut Framed,
    agent: &str,
    secret: Option<&crate::store::signing::Secret>,
) -> Result<Welcome, String> {
    use futures::{SinkExt, StreamExt};
    let next = |f: Option<Result<bytes::BytesMut, std::io::Error>>| match f {
        Some(Ok(b)) => decode::<ServerFrame>(&b).map_err(|e| format!("not a troupe node: {e}")),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("the connection closed during the handshake (is this a troupe node?)".into()),
    };
    let (nonce, auth_required) = match next(framed.next().await)? {
        ServerFrame::Challenge { protocol: v, nonce, auth_required } if v == PROTOCOL_VERSION => {
            (nonce, auth_required)
        }
        ServerFrame::Challenge { protocol: v, .. } => {
            return Err(format!("the node speaks protocol {v}, this troupe speaks {PROTOCOL_VERSION} — use a troupe of the node's version"))
        }
        ServerFrame::ProtocolError { message } => return Err(message),
        other => return Err(format!("unexpected first frame {other:?}")),
    };
    if auth_required && secret.is_none() {
        return Err("the node requires the convention's shared secret — pass --secret-file FILE (or set TROUPE_SECRET_FILE)".into());
    }
    // With a secret, the link is encrypted or not used at all (the challenge is not authenticated:
    // `auth_required: false` may come from someone in the way).
    match (auth_required, secret) {
        (false, Some(_)) => return Err("this troupe has a shared secret but the node has none, so the link would not be encrypted — start the node with the same --secret-file, or drop --secret-file (TROUPE_SECRET_FILE) here".into()),
        (true, Some(s)) => super::noise::initiate(framed, s, &nonce).await?,
        _ => {}
    }
    let mut client_nonce = vec![0u8; NONCE_BYTES];
    crate::store::signing::random_bytes(&mut client_nonce).map_err(|e| e.to_string())?;
    let auth = secret.map(|s| AuthProof {
        mac: s.mac(&[b"client", &nonce, &client_nonce]),
        client_nonce: client_nonce.clone(),
    });
    let hello = ClientFrame::Hello { protocol: PROTOCOL_VERSION, agent: agent.into(), auth };
    framed.send(encode(&hello)).await.map_err(|e| e.to_string())?;
    match next(framed.next().await)? {
        ServerFrame::Hello { protocol: v, node, client, server_proof, idle_timeout_ms, .. }
            if v == PROTOCOL_VERSION =>
        {
            if let Some(s) = secret.filter(|_| auth_required) {
                let ok =
                    server_proof.as_deref().is_some_and(|p| s.verify(&[b"node", &nonce, &client_nonce], p));
                if !ok {
                    return Err("the node could not prove it knows the shared secret".into());
                }
            }
            framed.codec_mut().set_max_frame_length(MAX_FRAME_BYTES);
            let idle_timeout = idle_timeout_ms.map(std::time::Duration::from_millis);
            Ok(Welcome { node, client, idle_timeout })
        }
        ServerFrame::ProtocolError { message } => Err(message),
        other => Err(format!("unexpected answer to hello: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ClientFrame, PeerRequest, Request};

    #[test]
    fn client_and_peer_requests_are_separate_families_on_the_wire() {
        let client = ClientFrame::Request { id: 1, request: Request::Status };
        let peer = ClientFrame::PeerNotify { request: PeerRequest::Deregister { node: "n:1".into() } };
        assert!(matches!(
            decode::<ClientFrame>(&encode(&client)).unwrap(),
            ClientFrame::Request { id: 1, request: Request::Status }
        ));
        assert!(matches!(
            decode::<ClientFrame>(&encode(&peer)).unwrap(),
            ClientFrame::PeerNotify { request: PeerRequest::Deregister { .. } }
        ));
    }

    #[test]
    fn an_old_hello_still_decodes_so_the_node_can_say_which_version_it_speaks() {
        let old = ClientFrame::Hello { protocol: 2, agent: "troupe 0.0.9".into(), auth: None };
        assert!(matches!(
            decode::<ClientFrame>(&encode(&old)).unwrap(),
            ClientFrame::Hello { protocol: 2, .. }
        ));
        assert_eq!(codec().max_frame_length(), MAX_HELLO_BYTES, "nobody unauthenticated sends more");
    }
}
