//! The admin protocol: what clients (the CLI, tests, peers) and a node say to each other over
//! the node's TCP port, once the handshake of [`super::frame`] is done.
//!
//! One enum per direction: [`ClientFrame`] and [`ServerFrame`]. A client's requests are
//! [`Request`]; what nodes of a convention ask each other is [`super::PeerRequest`], carried
//! by its own frames, so that neither family grows variants the other never sends.

use serde::{Deserialize, Serialize};
use troupe_actor_abi::message::{Address, CreateSpec, Incoming, Payload};

use super::error::ErrorReply;
use super::observe::ObserveReport;
use super::peer::{DirectoryVersion, GroupInfo, GroupsCopy, MemberInfo, PeerRequest};
use super::status::StatusReport;
use super::upgrade::{UpgradeOptions, UpgradeReport};

/// Client → node.
#[derive(Debug, Serialize, Deserialize)]
pub enum ClientFrame {
    /// Must be the first frame (the answer to the node's [`ServerFrame::Challenge`]).
    Hello {
        /// [`super::PROTOCOL_VERSION`] of the client.
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
    /// A one-way request from another node of the convention, handled in order as
    /// [`ClientFrame::Notify`] is.
    PeerNotify {
        /// What is asked.
        request: PeerRequest,
    },
    /// A request from another node; the answer carries the same id.
    PeerCall {
        /// Chosen by the calling node, echoed in the reply.
        id: u64,
        /// What is asked.
        request: PeerRequest,
    },
    /// Nothing: keeps a client connection that waits (for a reply or a message) from being
    /// closed as idle (see [`ServerFrame::Hello`]'s `idle_timeout_ms`). Not answered. Last, so
    /// that every other variant keeps its encoding.
    Keepalive,
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
        /// After the deploy, move the live actors of the group's previous version to the new
        /// one (as [`Request::Upgrade`] does); `None`: they drain as before.
        #[serde(default)]
        migrate: Option<UpgradeOptions>,
    },
    /// Live upgrade: move every live actor of version `from`, on every node, to version `to`
    /// at the same address, with its state. `to` must be loaded (on this node or a member);
    /// nodes that hold actors of `from` but not `to` fetch it.
    Upgrade {
        /// Full hash, unique prefix or `@group` of the old version.
        from: String,
        /// Full hash, unique prefix or `@group` of the new version.
        to: String,
        /// Renames and rollback.
        #[serde(default)]
        options: UpgradeOptions,
    },
    /// Make a group's previous version active again (if it is still loaded).
    Rollback {
        /// The group's name.
        group: String,
    },
    /// What a watcher polls besides the status: the process's figures, each version's message
    /// counters, and the log from byte `log_from` (`None`: no log;
    /// [`super::observe::LOG_FROM_END`]: its last lines). Last, so that every other variant
    /// keeps its encoding; a node older than this request closes the connection with a
    /// protocol error, which a watcher takes as "not available".
    Observe {
        /// Where to read the log from.
        #[serde(default)]
        log_from: Option<u64>,
    },
}

/// Node → client.
#[derive(Debug, Serialize, Deserialize)]
pub enum ServerFrame {
    /// The node's first frame on every connection.
    Challenge {
        /// [`super::PROTOCOL_VERSION`] of the node.
        protocol: u32,
        /// A fresh random nonce.
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        /// Whether the hello must carry an [`AuthProof`].
        auth_required: bool,
    },
    /// The answer to the client's hello.
    Hello {
        /// [`super::PROTOCOL_VERSION`] of the node.
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
        /// The node closes this connection after this long without a frame from the client
        /// (none: never); a client that waits longer sends [`ClientFrame::Keepalive`] meanwhile.
        #[serde(default)]
        idle_timeout_ms: Option<u64>,
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
        /// It was draining, with actors left: that generation is active again (no second one
        /// was started).
        #[serde(default)]
        revived: bool,
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
    /// The leader's answer to `Register`: the directory's changes since the member's copy, or
    /// all of it (the leader included), and the groups when they changed.
    Registered {
        /// The directory version this answer brings the member to.
        directory: DirectoryVersion,
        /// Whether `members` is the whole directory (else: only the entries that changed).
        full: bool,
        /// Whether the leader has heard from every member it expects (a new leader has not,
        /// for up to `dead_after`): only a complete whole directory tells a member who left.
        complete: bool,
        /// Entries (all, or changed).
        members: Vec<MemberInfo>,
        /// Members that left since the member's copy (with a delta).
        removed: Vec<String>,
        /// The groups, when the member's copy is older.
        groups: Option<GroupsCopy>,
        /// The leader wants the member's full entry (it does not know it).
        send_info: bool,
        /// Global names changed since the member's copy (None: released), or all of them.
        names: Vec<(String, Option<Address>)>,
        /// Whether `names` is the whole table.
        names_full: bool,
    },
    /// A listed leader that does not lead (it follows `leader`, if it knows one).
    NotLeader {
        /// The leader it follows.
        leader: Option<String>,
    },
    /// The registering incarnation was declared lost: fence, and join again as a new one.
    Fenced,
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
        /// What the deploy's `migrate` moved.
        #[serde(default)]
        upgrade: Option<UpgradeReport>,
    },
    /// What a live upgrade did.
    Upgraded(UpgradeReport),
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
    /// The answer to [`Request::Observe`]. Last, as that request is.
    Observed(Box<ObserveReport>),
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
