//! The Noise handshake that opens every link of a convention with a shared secret.
//!
//! Pattern [`PATTERN`] (`NNpsk0`): the pre-shared key is derived from the convention's secret
//! (HMAC-SHA256 of [`PSK_LABEL`]), both sides send a fresh ephemeral X25519 key, and the
//! transport keys come from their Diffie-Hellman mixed with the PSK. Knowing the secret is the
//! authentication, both ways; the ephemeral keys give forward secrecy (a secret stolen later does
//! not open recorded traffic). The prologue binds the node's plaintext challenge (protocol
//! version and its fresh nonce), so a first message recorded on one connection does not verify
//! on another, and a challenge altered on the way fails the handshake.
//!
//! On the wire, after the node's plaintext [`ServerFrame::Challenge`] (`auth_required`): the
//! client's first message (48 bytes) and the node's answer (48 bytes), each one plain frame;
//! then everything is sealed ([`super::seal`]), starting with the hello.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use snow::{HandshakeState, StatelessTransportState};

use super::admin::{ClientFrame, ServerFrame};
use super::seal::SealedCodec;
use super::{decode, PROTOCOL_VERSION};
use crate::store::signing::Secret;

/// The Noise protocol of every encrypted link.
pub const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// What the PSK is derived with (HMAC-SHA256 keyed by the shared secret).
pub const PSK_LABEL: &[u8] = b"troupe link psk v1";

/// Room for a handshake message (48 bytes here).
const MSG_MAX: usize = 256;

/// A connection being set up.
pub type Conn = tokio_util::codec::Framed<tokio::net::TcpStream, SealedCodec>;

/// Why a node refused a handshake.
#[derive(Debug)]
pub enum Refusal {
    /// The client went away (nothing to answer).
    Closed(String),
    /// A frame the codec refused.
    BadFrame(String),
    /// The client did not prove the secret: what it sent instead, for the log.
    Unproven(&'static str),
}

fn psk(secret: &Secret) -> [u8; 32] {
    let mut key = [0u8; 32];
    key.copy_from_slice(&secret.mac(&[PSK_LABEL])[..32]);
    key
}

/// The handshake of one side, bound to the node's challenge.
pub fn handshake_state(secret: &Secret, challenge: &[u8], initiator: bool) -> Result<HandshakeState, String> {
    let psk = psk(secret);
    let mut prologue = b"troupe link, protocol ".to_vec();
    prologue.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    prologue.extend_from_slice(challenge);
    let build = || -> Result<HandshakeState, snow::Error> {
        let b = snow::Builder::new(PATTERN.parse()?).prologue(&prologue)?.psk(0, &psk)?;
        if initiator {
            b.build_initiator()
        } else {
            b.build_responder()
        }
    };
    build().map_err(|e| format!("cannot set up the encrypted link: {e}"))
}

fn transport(hs: HandshakeState) -> Result<StatelessTransportState, String> {
    hs.into_stateless_transport_mode().map_err(|e| format!("cannot set up the encrypted link: {e}"))
}

/// The client's side, right after the node's challenge: on success the connection is sealed.
pub async fn initiate(framed: &mut Conn, secret: &Secret, challenge: &[u8]) -> Result<(), String> {
    let mut hs = handshake_state(secret, challenge, true)?;
    let mut buf = [0u8; MSG_MAX];
    let n = hs.write_message(&[], &mut buf).map_err(|e| format!("cannot start the encrypted link: {e}"))?;
    framed.send(Bytes::copy_from_slice(&buf[..n])).await.map_err(|e| e.to_string())?;
    let reply = match framed.next().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(e.to_string()),
        None => return Err("the node closed the connection during the encrypted handshake".into()),
    };
    if hs.read_message(&reply, &mut buf).is_err() {
        return Err(match decode::<ServerFrame>(&reply) {
            Ok(ServerFrame::ProtocolError { message }) => message,
            _ => "the node could not prove it knows the shared secret".into(),
        });
    }
    framed.codec_mut().start(transport(hs)?);
    Ok(())
}

/// The node's side, after it sent its challenge: reads the client's first message, answers,
/// and seals the connection. The caller times it, logs and answers a refusal.
pub async fn respond(framed: &mut Conn, secret: &Secret, challenge: &[u8]) -> Result<(), Refusal> {
    let first = match framed.next().await {
        None => return Err(Refusal::Closed("closed before the handshake".into())),
        Some(Err(e)) => return Err(Refusal::BadFrame(format!("bad frame: {e}"))),
        Some(Ok(b)) => b,
    };
    let mut hs = handshake_state(secret, challenge, false).map_err(Refusal::Closed)?;
    let mut buf = [0u8; MSG_MAX];
    if hs.read_message(&first, &mut buf).is_err() {
        return Err(Refusal::Unproven(match decode::<ClientFrame>(&first) {
            Ok(ClientFrame::Hello { auth: None, .. }) => "no proof of the shared secret",
            Ok(ClientFrame::Hello { .. }) => "a plaintext hello (links with a shared secret are encrypted)",
            Ok(_) => "a request before the handshake",
            Err(_) => "a wrong proof of the shared secret (or a replayed handshake)",
        }));
    }
    let n = hs.write_message(&[], &mut buf).map_err(|e| Refusal::Closed(e.to_string()))?;
    let state = transport(hs).map_err(Refusal::Closed)?;
    framed.send(Bytes::copy_from_slice(&buf[..n])).await.map_err(|e| Refusal::Closed(e.to_string()))?;
    framed.codec_mut().start(state);
    Ok(())
}
