//! The admin protocol: what clients (the CLI, tests, later peers) and a node say to each other
//! over the node's TCP port.
//!
//! Frames are length-delimited (`tokio-util`'s `LengthDelimitedCodec`, 4-byte big-endian
//! length) with an explicit maximum, and carry msgpack bodies. The first frame each way is a
//! hello carrying [`PROTOCOL_VERSION`]; a peer speaking another version, sending garbage or an
//! oversized frame gets a [`ServerFrame::ProtocolError`] and a closed connection, and the node
//! keeps serving everyone else. One enum per direction: [`ClientFrame`] and [`ServerFrame`].

use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;
use troupe_actor_abi::message::{Address, CreateSpec, Incoming, Payload};

use crate::status::StatusReport;

/// Version of this protocol; both sides must match exactly.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame either side accepts: a load carries a whole zip, and the archive reader
/// refuses zips above its own limit anyway; anything bigger is garbage or an attack.
pub const MAX_FRAME_BYTES: usize = 300 * 1024 * 1024;

/// The codec both sides use.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME_BYTES).new_codec()
}

/// Client → node.
#[derive(Debug, Serialize, Deserialize)]
pub enum ClientFrame {
    /// Must be the first frame.
    Hello {
        /// [`PROTOCOL_VERSION`] of the client.
        protocol: u32,
        /// Who is calling, for the node's log (e.g. `troupe 0.1.0`).
        agent: String,
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
}

/// Node → client.
#[derive(Debug, Serialize, Deserialize)]
pub enum ServerFrame {
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
