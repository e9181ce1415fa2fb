//! The admin protocol: what clients (the CLI, tests, later peers) and a node say to each other
//! over the node's TCP port.
//!
//! Frames are length-delimited (`tokio-util`'s `LengthDelimitedCodec`, 4-byte big-endian
//! length) with an explicit maximum, and carry msgpack bodies. The first frame each way is a
//! hello carrying [`PROTOCOL_VERSION`]; a peer speaking another version, sending garbage or an
//! oversized frame gets a [`ServerFrame::ProtocolError`] and a closed connection, and the node
//! keeps serving everyone else. One enum per direction: [`ClientFrame`] and [`ServerFrame`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio_util::codec::LengthDelimitedCodec;
use troupe_actor_abi::message::{Address, CreateSpec, Incoming, Payload};

use crate::status::StatusReport;

/// Version of this protocol; both sides must match exactly. (2: the node speaks first, with a
/// challenge for the shared-secret handshake.)
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest frame accepted before a connection has authenticated: a hello is a few hundred
/// bytes, and nobody unauthenticated gets to make the node buffer more.
pub const MAX_HELLO_BYTES: usize = 16 * 1024;

/// Length of the random nonces in the handshake (256 bits: never repeats).
pub const NONCE_BYTES: usize = 32;

/// Largest frame either side accepts: a load carries a whole zip, and the archive reader
/// refuses zips above its own limit anyway; anything bigger is garbage or an attack.
pub const MAX_FRAME_BYTES: usize = 300 * 1024 * 1024;

/// The codec both sides use, limited to [`MAX_HELLO_BYTES`] until the handshake is done.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(MAX_HELLO_BYTES).new_codec()
}

/// Client → node.
#[derive(Debug, Serialize, Deserialize)]
pub enum ClientFrame {
    /// Must be the first frame (the answer to the node's [`ServerFrame::Challenge`]).
    Hello {
        /// [`PROTOCOL_VERSION`] of the client.
        protocol: u32,
        /// Who is calling, for the node's log (e.g. `troupe 0.1.0`).
        agent: String,
        /// Proof of the shared secret, when the client has one.
        #[serde(default)]
        auth: Option<AuthProof>,
    },
    /// A one-way request: no reply. Handled in the order received, which is what keeps
    /// messages between two nodes in order (a create before the messages to the created actor).
    Notify {
        /// What is asked.
        request: Request,
    },
    /// A request; the answer carries the same id.
    Request {
        /// Chosen by the client, echoed in the reply.
        id: u64,
        /// What is asked.
        request: Request,
    },
}

/// Requests a client can make.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// The node's status.
    Status,
    /// Validate and load a source zip.
    Load {
        /// The zip bytes.
        #[serde(with = "serde_bytes")]
        zip: Vec<u8>,
        /// Where it came from (shown in status and to the source authority).
        info: String,
    },
    /// Drain and unload a version.
    Unload {
        /// Full hash or unique prefix of at least 8 hex digits.
        hash: String,
        /// After this long, remaining actors are asked to exit; the reply then waits until the
        /// version is gone.
        grace_ms: Option<u64>,
    },
    /// Create a top-level actor (its parent is none). `spec.source_hash` may be a prefix.
    Create {
        /// What to create.
        spec: CreateSpec,
    },
    /// Send a message from this connection's client address.
    Send {
        /// Target.
        to: Address,
        /// Message.
        payload: Payload,
    },
    /// Add or remove a capability.
    ChangeCapability {
        /// Add (true) or remove (false).
        add: bool,
        /// The capability's name.
        name: String,
    },
    /// Stop the node gracefully; the reply comes when everything is unloaded.
    Stop,
    // ---- between nodes of a convention ----
    /// A member registers (and heartbeats) with the leader; the answer lists every member.
    Register(MemberInfo),
    /// A member leaves the convention (it is stopping).
    Deregister {
        /// Its admin address.
        node: String,
    },
    /// Deliver a message to an actor of the receiving node (one-way).
    Deliver {
        /// The target, on the receiving node.
        to: Address,
        /// The message.
        msg: Incoming,
    },
    /// Create an actor on the receiving node, which the sender chose by placement (one-way).
    PeerCreate {
        /// The id the creator allocated; the actor's address is (receiving node, id).
        id: u64,
        /// The parent (on the sender's node), told if the create fails.
        parent: Option<Address>,
        /// What to create; `source_hash` is a full hash.
        spec: CreateSpec,
        /// The version's actor types, and the nodes the sender knows to hold it (the receiver
        /// may not have heard of the version yet).
        #[serde(default)]
        source: Option<SourceHint>,
    },
    /// Send the zip bytes of an active version.
    FetchSource {
        /// Full hash.
        hash: String,
    },
    /// Load a zip and make it the active version of a group (a named release).
    Deploy {
        /// The zip bytes.
        #[serde(with = "serde_bytes")]
        zip: Vec<u8>,
        /// Where it came from.
        info: String,
        /// The group's name.
        group: String,
        /// How many versions to keep loaded besides the active one.
        keep: usize,
        /// Versions that fall out of the kept window drain for this long, then their
        /// remaining actors are asked to exit (none: they drain until their actors exit).
        #[serde(default)]
        grace_ms: Option<u64>,
    },
    /// Make a group's previous version active again (if it is still loaded).
    Rollback {
        /// The group's name.
        group: String,
    },
    /// To the leader: make `hash` the active version of `group`.
    GroupActivate {
        /// The group.
        group: String,
        /// The version.
        hash: String,
        /// How many versions to keep besides the active one.
        keep: usize,
        /// Drain time of versions that fall out of the window.
        #[serde(default)]
        grace_ms: Option<u64>,
    },
    /// Ask the leader for a convention-wide global name: returns the live holder, or registers
    /// `candidate` (if given) and returns it.
    ClaimName {
        /// The name.
        name: String,
        /// The address that gets the name if nobody holds it.
        candidate: Option<Address>,
    },
    /// Tell the leader a named actor exited (one-way).
    ReleaseName {
        /// The name.
        name: String,
        /// Its holder.
        holder: Address,
    },
    /// Unload a version here because it was unloaded on another node (one-way: no re-spread).
    UnloadSpread {
        /// Full hash.
        hash: String,
        /// Grace period.
        grace_ms: Option<u64>,
    },
}

/// What a node tells the convention about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Admin address.
    pub node: String,
    /// Capability names.
    pub capabilities: Vec<String>,
    /// Whether it fetches versions it lacks from peers.
    pub remote_sources: RemoteSources,
    /// Its active versions, with each type's requirements (so any node can place actors of a
    /// version it does not hold).
    pub sources: Vec<SourceSummary>,
    /// Process id (diagnostics).
    pub pid: u32,
}

/// A named release: its versions (oldest first) and the active one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The version new creates through `@NAME` get.
    pub active: Option<String>,
    /// Versions deployed to the group and still kept, oldest first.
    pub versions: Vec<String>,
}

/// Where a version can be fetched from, sent along with a create.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceHint {
    /// The version.
    pub summary: SourceSummary,
    /// Nodes holding it.
    pub holders: Vec<String>,
}

/// An active version as the convention knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceSummary {
    /// Full hash.
    pub hash: String,
    /// `module.Type` → requirements.
    pub types: std::collections::BTreeMap<String, Vec<String>>,
}

/// Policy for versions fetched from peers (`--remote-sources`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteSources {
    /// Fetch from any member.
    Yes,
    /// Never fetch: only versions loaded here can run here.
    No,
    /// Fetch only from the leader.
    LeaderOnly,
}

impl RemoteSources {
    /// The value `--remote-sources` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteSources::Yes => "yes",
            RemoteSources::No => "no",
            RemoteSources::LeaderOnly => "leader-only",
        }
    }
}

impl std::str::FromStr for RemoteSources {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "yes" => Ok(RemoteSources::Yes),
            "no" => Ok(RemoteSources::No),
            "leader-only" => Ok(RemoteSources::LeaderOnly),
            other => Err(format!("--remote-sources takes yes, no or leader-only, not {other:?}")),
        }
    }
}

/// A client's proof that it knows the shared secret: HMAC-SHA256 over ("client", the node's
/// nonce, the client's nonce). A recorded proof is useless on another connection, whose node
/// nonce differs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthProof {
    /// The client's fresh nonce (the node proves itself over it).
    #[serde(with = "serde_bytes")]
    pub client_nonce: Vec<u8>,
    /// The MAC.
    #[serde(with = "serde_bytes")]
    pub mac: Vec<u8>,
}

/// Node → client.
#[derive(Debug, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The node's first frame on every connection.
    Challenge {
        /// [`PROTOCOL_VERSION`] of the node.
        protocol: u32,
        /// A fresh random nonce.
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        /// Whether the hello must carry an [`AuthProof`].
        auth_required: bool,
    },
    /// The answer to the client's hello.
    Hello {
        /// [`PROTOCOL_VERSION`] of the node.
        protocol: u32,
        /// The node's admin address.
        node: String,
        /// The node's software version.
        version: String,
        /// This connection's address: messages sent to it arrive as [`ServerFrame::Deliver`].
        client: Address,
        /// The node's proof of the shared secret: HMAC over ("node", node nonce, client nonce).
        #[serde(default, with = "serde_bytes")]
        server_proof: Option<Vec<u8>>,
    },
    /// The answer to request `id`.
    Reply {
        /// The request's id.
        id: u64,
        /// The outcome.
        result: Result<Response, ErrorReply>,
    },
    /// A message sent to this connection's client address.
    Deliver(Incoming),
    /// The client broke the protocol; the connection is closed after this frame.
    ProtocolError {
        /// What was wrong.
        message: String,
    },
}

/// Successful answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// Status.
    Status(Box<StatusReport>),
    /// The source is active.
    Loaded {
        /// Its hash.
        hash: String,
        /// It was already active; nothing changed.
        already_active: bool,
    },
    /// The version is draining or gone.
    Unloaded {
        /// Full hash.
        hash: String,
        /// Actors still alive when the reply was sent.
        live_actors: usize,
        /// Whether the library is already closed and its files deleted.
        gone: bool,
        /// Other nodes the unload was sent to.
        #[serde(default)]
        spread_to: Vec<String>,
    },
    /// The actor exists (or creating it was queued) at `address`.
    Created {
        /// Its address.
        address: Address,
        /// The full hash of its version.
        hash: String,
        /// A live actor with that global name was returned instead of a new one.
        existing: bool,
    },
    /// The message was routed.
    Sent,
    /// Capabilities after the change.
    Capabilities {
        /// All capability names.
        capabilities: Vec<String>,
        /// Actors asked to exit because their requirements no longer hold.
        stopped_actors: usize,
    },
    /// The node stopped.
    Stopped,
    /// The leader's answer to `Register`: every member, the leader included, and the groups.
    Registered {
        /// All members.
        members: Vec<MemberInfo>,
        /// Named releases.
        #[serde(default)]
        groups: BTreeMap<String, GroupInfo>,
    },
    /// A group after a deploy or rollback.
    Group {
        /// Its name.
        group: String,
        /// Its state now.
        info: GroupInfo,
        /// The version that was active before.
        previous: Option<String>,
        /// Versions unloaded because they fell out of the kept window.
        unloaded: Vec<String>,
    },
    /// The zip of a version.
    Source {
        /// The zip bytes.
        #[serde(with = "serde_bytes")]
        zip: Vec<u8>,
    },
    /// The holder of a global name (none if nobody holds it and no candidate was given).
    Name {
        /// The holder.
        holder: Option<Address>,
    },
    /// Done (for requests with nothing to report).
    Done,
}

/// Why a request failed.
#[derive(Clone, Debug, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorReply {
    /// What kind of failure (decides the CLI's exit code).
    pub kind: ErrorKind,
    /// A stable name for the specific error (e.g. `InvalidActorSourceHash`, `hash_mismatch`).
    pub code: String,
    /// Human-readable explanation, naming what to do next where possible.
    pub message: String,
}

/// Classes of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The node refused: rejected source, unknown hash, no compatible node (exit code 1).
    Refused,
    /// The request itself was malformed or ambiguous (exit code 2).
    BadRequest,
    /// The node is stopping.
    Unavailable,
}

impl ErrorReply {
    /// A refusal.
    pub fn refused(code: impl Into<String>, message: impl Into<String>) -> ErrorReply {
        ErrorReply { kind: ErrorKind::Refused, code: code.into(), message: message.into() }
    }
    /// A bad request.
    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> ErrorReply {
        ErrorReply { kind: ErrorKind::BadRequest, code: code.into(), message: message.into() }
    }
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
}

type Framed = tokio_util::codec::Framed<tokio::net::TcpStream, LengthDelimitedCodec>;

/// The client side of the handshake: read the challenge, answer with a hello (and a proof when
/// we have the secret), read the node's hello and check its proof.
pub async fn client_handshake(
    framed: &mut Framed,
    agent: &str,
    secret: Option<&crate::signing::Secret>,
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
            return Err(format!("the node speaks protocol {v}, we speak {PROTOCOL_VERSION}"))
        }
        ServerFrame::ProtocolError { message } => return Err(message),
        other => return Err(format!("unexpected first frame {other:?}")),
    };
    if auth_required && secret.is_none() {
        return Err("the node requires the convention's shared secret — pass --secret-file FILE (or set TROUPE_SECRET_FILE)".into());
    }
    let mut client_nonce = vec![0u8; NONCE_BYTES];
    crate::signing::random_bytes(&mut client_nonce).map_err(|e| e.to_string())?;
    let auth = secret.map(|s| AuthProof {
        mac: s.mac(&[b"client", &nonce, &client_nonce]),
        client_nonce: client_nonce.clone(),
    });
    let hello = ClientFrame::Hello { protocol: PROTOCOL_VERSION, agent: agent.into(), auth };
    framed.send(encode(&hello)).await.map_err(|e| e.to_string())?;
    match next(framed.next().await)? {
        ServerFrame::Hello { protocol: v, node, client, server_proof, .. } if v == PROTOCOL_VERSION => {
            if let Some(s) = secret.filter(|_| auth_required) {
                let ok =
                    server_proof.as_deref().is_some_and(|p| s.verify(&[b"node", &nonce, &client_nonce], p));
                if !ok {
                    return Err("the node could not prove it knows the shared secret".into());
                }
            }
            framed.codec_mut().set_max_frame_length(MAX_FRAME_BYTES);
            Ok(Welcome { node, client })
        }
        ServerFrame::ProtocolError { message } => Err(message),
        other => Err(format!("unexpected answer to hello: {other:?}")),
    }
}
