//! Messages as they cross the plugin boundary and the network: msgpack (`rmp-serde`) values.
//!
//! Actors of different versions (and different nodes) talk through these shapes, never through
//! Rust types: a user message is either [`Payload::Text`] or a [`Payload::Typed`] value whose
//! `tag` names its type and whose `body` is the msgpack of that type. Everything the runtime
//! itself says is a [`SystemMessage`].

use serde::{Deserialize, Serialize};
use std::fmt;

pub use crate::restart::{RestartPolicy, DEFAULT_MAX_BACKOFF, MIN_RESTART_BACKOFF};

/// Where an actor lives: the admin address of its node and an id unique within that node's
/// lifetime. Addresses are plain values: they can be copied, compared and sent in messages.
/// It displays as `host:port#hexid`, the form `troupe create` prints and `troupe tell`/`ask`
/// accept.
///
/// ```
/// # use troupe_actor_abi::prelude::*;
/// let a = Address { node: "127.0.0.1:1900".into(), id: 0x1f };
/// assert_eq!(a.to_string(), "127.0.0.1:1900#1f");
/// assert_eq!(a.clone(), a);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Address {
    /// The node's admin address, `host:port`.
    pub node: String,
    /// The actor's id on that node.
    pub id: u64,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{:x}", self.node, self.id)
    }
}

/// A message body.
/// ```
/// # use troupe_actor_abi::prelude::*;
/// fn describe(p: &Payload) -> String {
///     match p {
///         Payload::Text(t) => format!("text {t:?}"),
///         Payload::Typed { tag, body } => format!("{tag} ({} bytes)", body.len()),
///         Payload::System(s) => format!("runtime message {s:?}"),
///     }
/// }
/// assert_eq!(describe(&Payload::Text("hi".into())), "text \"hi\"");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// A plain string (the built-in message type).
    Text(String),
    /// A typed user message: `tag` names the type, `body` is its msgpack encoding.
    Typed {
        /// The type's tag, e.g. `encoders/EncodeThis`.
        tag: String,
        /// msgpack of the value.
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    /// A message from the runtime.
    System(SystemMessage),
}

/// A message as handed to an actor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incoming {
    /// Who sent it; `None` for the runtime itself.
    pub sender: Option<Address>,
    /// What was sent.
    pub payload: Payload,
}

/// Messages the runtime sends to actors.
/// An actor sees them through [`Message::system`](crate::sdk::Message::system); the ones it
/// may send itself are `ValidatedSource` (as source authority) and
/// `NotifyOnSystemRegistrationChanges` (see
/// [`Context::watch_convention`](crate::sdk::Context::watch_convention)).
///
/// ```
/// # use troupe_actor_abi::prelude::*;
/// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
///     match msg.system() {
///         Some(SystemMessage::ActorExitRequest { .. }) => ctx.log(log_level::INFO, "bye"),
///         Some(SystemMessage::ChildActorExited { child, reason }) => {
///             ctx.log(log_level::WARN, &format!("{child}: {reason}"))
///         }
///         Some(SystemMessage::PoisonMessage { details, .. }) => ctx.log(log_level::WARN, details),
///         Some(SystemMessage::Wakeup { .. }) => ctx.log(log_level::DEBUG, "woken"),
///         _ => {}
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SystemMessage {
    /// Asks the actor to exit. Recursive requests also stop all of its children.
    ActorExitRequest {
        /// Whether the actor's children are stopped too (the default).
        recursive: bool,
    },
    /// One of the actor's children exited, or could not be created.
    ChildActorExited {
        /// The child's address (as returned by `create`).
        child: Address,
        /// Why it exited.
        reason: ExitReason,
    },
    /// A message this actor sent could not be handled: the target's handler failed twice, or
    /// the target does not exist (any more).
    PoisonMessage {
        /// The message that was sent.
        message: Box<Payload>,
        /// Who it was sent to.
        target: Address,
        /// Why it came back.
        details: String,
    },
    /// A wake-up the actor asked for.
    Wakeup {
        /// What the actor attached to the request (if anything).
        payload: Option<Box<Payload>>,
    },
    /// Sent to the source authority: decide whether this source may be loaded.
    ValidateSource {
        /// sha256 of the zip.
        hash: String,
        /// Where the zip came from (the file name given to `troupe load`, or the peer).
        info: String,
        /// The manifest's package name.
        package: String,
        /// The manifest's package version.
        version: String,
        /// Every actor type in the source.
        actor_types: Vec<String>,
    },
    /// Sent by an actor to its node's admin address (id 0): start (or stop) telling it about
    /// the convention's members.
    NotifyOnSystemRegistrationChanges {
        /// Start (true) or stop (false).
        enable: bool,
    },
    /// A node joined or left the convention, or changed its capabilities. Watchers get one
    /// `added` update per current member when they register.
    ActorSystemConventionUpdate {
        /// The node's admin address.
        node: String,
        /// Its capabilities (after the change).
        capabilities: Vec<String>,
        /// True when it joined (or is a member), false when it left or was lost.
        added: bool,
        /// What happened.
        change: ConventionChange,
    },
    /// The authority's answer to `ValidateSource`.
    ValidatedSource {
        /// The hash being answered.
        hash: String,
        /// Whether the source may be loaded.
        accepted: bool,
        /// Why not (shown to the user who loaded it).
        reason: Option<String>,
    },
    // Everything below was appended by issue 15; variants are only ever appended, so that the
    // ones above keep their encoding.
    /// Sent by an actor to its node's admin address (id 0): start (or stop) hearing
    /// `LoadedSource` and `UnloadedSource` (see
    /// [`Context::notify_on_source_availability`](crate::sdk::Context::notify_on_source_availability)).
    NotifyOnSourceAvailability {
        /// Start (true) or stop (false).
        enable: bool,
    },
    /// A version became usable on this node (loaded, or fetched from a peer). A subscriber gets
    /// one per version already active when it subscribes, then one per later load.
    LoadedSource {
        /// The version's full hash.
        hash: String,
        /// Where it came from (the file name given to `troupe load`, `fetched from PEER`, …).
        info: String,
    },
    /// A version was unloaded from this node.
    UnloadedSource {
        /// The version's full hash.
        hash: String,
        /// Where it had come from.
        info: String,
    },
    /// Sent by an actor to its node's admin address: an operation on the node itself (see
    /// [`Context::system_call`](crate::sdk::Context::system_call)). Refused unless the node runs
    /// with `--actor-system-calls`. The answer is a `SystemCallResult` with the same `request`.
    SystemCall {
        /// Chosen by the caller, echoed in the answer.
        request: u64,
        /// What is asked.
        call: SystemCall,
    },
    /// The node's answer to a `SystemCall`.
    SystemCallResult {
        /// The caller's request id.
        request: u64,
        /// What it produced (for a load: the hash) or why it failed.
        outcome: Result<String, String>,
    },
    /// Sent by an actor to its node's admin address: deliver `message` to `to` from a reply
    /// address made for this request, and hand the first message sent to that address back as
    /// `AskReply` (or `AskTimedOut` after `timeout_ms`). See [`Context::ask`](crate::sdk::Context::ask).
    Ask {
        /// Chosen by the caller, echoed in the answer.
        request: u64,
        /// Who is asked.
        to: Address,
        /// What is asked.
        message: Box<Payload>,
        /// How long to wait for the reply.
        timeout_ms: u64,
    },
    /// The reply to an `Ask`.
    AskReply {
        /// The caller's request id.
        request: u64,
        /// Who replied (the asked actor, or whoever it had answer for it).
        from: Option<Address>,
        /// The reply.
        reply: Box<Payload>,
    },
    /// No reply to an `Ask` came in time (a later reply is returned to its sender as
    /// `PoisonMessage`, never delivered).
    AskTimedOut {
        /// The caller's request id.
        request: u64,
        /// Who was asked.
        to: Address,
    },
    /// A supervised child (see
    /// [`Context::create_supervised`](crate::sdk::Context::create_supervised)) failed and the
    /// runtime created it again.
    ChildActorRestarted {
        /// Its address now (the same as before whenever the same node can host it again).
        child: Address,
        /// Its address before.
        previous: Address,
        /// Why it had to be restarted.
        reason: ExitReason,
        /// Restarts within the policy's window, this one included.
        restarts: u32,
    },
    /// Asks an actor for its status (`troupe ask --status ADDR`). The SDK answers it itself
    /// with an `ActorStatus` to the sender; the actor's handler never sees it.
    StatusRequest {
        /// Messages waiting in the actor's mailbox, filled in by the node as it delivers the
        /// request (a sender leaves it `None`).
        mailbox: Option<u64>,
    },
    /// An actor's answer to `StatusRequest`.
    ActorStatus {
        /// Its `module.Type`.
        type_name: String,
        /// Messages its handler was given since it was created (this request excluded).
        handled: u64,
        /// Messages waiting behind the request when it was handled.
        mailbox: u64,
        /// Milliseconds since it was created (or moved here by a live upgrade).
        age_ms: u64,
        /// What the actor adds ([`Actor::status`](crate::sdk::Actor::status)), as name and value.
        extra: Vec<(String, String)>,
    },
    /// Sent by a parent to its node's admin address right after creating `child`: restart it
    /// on failure by `policy` (see
    /// [`Context::create_supervised`](crate::sdk::Context::create_supervised), which sends it).
    /// The node forwards it to the child's node, which then stops the child when its handler
    /// fails twice on one message.
    Supervise {
        /// The child, as `create` returned it.
        child: Address,
        /// How it was created (to create it again).
        spec: CreateSpec,
        /// When to restart it.
        policy: RestartPolicy,
    },
}

impl SystemMessage {
    /// An `ActorExitRequest` as Thespian sends it by default: recursive (the actor's children
    /// are stopped too).
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// assert_eq!(SystemMessage::exit_request(), SystemMessage::ActorExitRequest { recursive: true });
    /// assert_eq!(SystemMessage::exit_request().not_recursive(), SystemMessage::ActorExitRequest { recursive: false });
    /// ```
    pub fn exit_request() -> SystemMessage {
        SystemMessage::ActorExitRequest { recursive: true }
    }

    /// This exit request without its recursion (Thespian's `notRecursive()`): the actor's
    /// children keep running. Any other message is returned as it is.
    pub fn not_recursive(self) -> SystemMessage {
        match self {
            SystemMessage::ActorExitRequest { .. } => SystemMessage::ActorExitRequest { recursive: false },
            other => other,
        }
    }

    /// Whether this is an `ActorExitRequest` that stops the actor's children too (`None` for
    /// any other message).
    pub fn is_recursive(&self) -> Option<bool> {
        match self {
            SystemMessage::ActorExitRequest { recursive } => Some(*recursive),
            _ => None,
        }
    }
}

/// What an actor may ask of its own node with
/// [`Context::system_call`](crate::sdk::Context::system_call): the same operations as the CLI's
/// `load`, `unload`, `chgcap` and `stop`, through the same source authority and checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SystemCall {
    /// Load a source zip (bytes the actor received); answers with its hash once it is active.
    LoadSource {
        /// The zip's bytes.
        #[serde(with = "serde_bytes")]
        zip: Vec<u8>,
        /// Where it came from (shown in status and to the source authority).
        info: String,
    },
    /// Unload a version (full hash or unique prefix) here and on every member; answers once it
    /// is draining (actors still running it finish first, as with `troupe unload`).
    UnloadSource {
        /// Full hash or unique prefix.
        hash: String,
    },
    /// Add or remove one of the node's capabilities; answers with the capabilities after it.
    ChangeCapability {
        /// Add (true) or remove (false).
        add: bool,
        /// The capability.
        name: String,
    },
    /// Stop the node gracefully (as `troupe stop`): the answer is sent before it stops.
    ShutdownNode,
}

/// What an `ActorSystemConventionUpdate` reports.
/// ```
/// # use troupe_actor_abi::prelude::*;
/// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
///     if let Some(SystemMessage::ActorSystemConventionUpdate { node, change, .. }) = msg.system() {
///         if *change == ConventionChange::Lost {
///             ctx.log(log_level::WARN, &format!("{node} was lost"));
///         }
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConventionChange {
    /// The node is a member (joined now, or already was when the watcher registered).
    Joined,
    /// The node left gracefully.
    Left,
    /// The node stopped answering and was declared lost.
    Lost,
    /// The node's capabilities changed.
    CapabilitiesChanged,
}

/// The id of every node's own admin endpoint: actors address the node itself at
/// `Address { node, id: ADMIN_ID }`.
pub const ADMIN_ID: u64 = 0;

/// Why an actor is gone.
/// It reaches the parent in `ChildActorExited`; it displays as a sentence.
///
/// ```
/// # use troupe_actor_abi::prelude::*;
/// let r = ExitReason::CapabilityLost { requirements: vec!["morse".into()] };
/// assert_eq!(r.to_string(), "its node no longer has [morse]");
/// assert_eq!(ExitReason::Requested.to_string(), "exited on request");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ExitReason {
    /// It handled an `ActorExitRequest` or asked to exit.
    Requested,
    /// It could not be created.
    CreateFailed(CreateError),
    /// Its node is stopping.
    NodeStopping,
    /// Its version was unloaded with a grace period that ran out.
    Unloaded,
    /// Its node no longer has the capabilities it requires.
    CapabilityLost {
        /// The requirements that no longer hold.
        requirements: Vec<String>,
    },
    /// Its node became unreachable.
    NodeLost {
        /// The node's admin address.
        node: String,
    },
    /// Two actors held its global name when the convention's names were rebuilt (a leader
    /// lost, a partition healed): the other one keeps it, this one was asked to exit.
    NameClash {
        /// The name.
        name: String,
        /// The actor that keeps it.
        kept: Address,
    },
    /// Its handler failed twice on one message and it was supervised (created with
    /// [`Context::create_supervised`](crate::sdk::Context::create_supervised)): the runtime
    /// stopped it to start it afresh. Unsupervised actors live on after such a failure.
    Failed {
        /// The second failure's error or panic message.
        details: String,
    },
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Requested => f.write_str("exited on request"),
            ExitReason::CreateFailed(e) => write!(f, "could not be created: {e}"),
            ExitReason::NodeStopping => f.write_str("its node is stopping"),
            ExitReason::Unloaded => f.write_str("its source was unloaded"),
            ExitReason::CapabilityLost { requirements } => {
                write!(f, "its node no longer has [{}]", requirements.join(", "))
            }
            ExitReason::NodeLost { node } => write!(f, "its node {node} was lost"),
            ExitReason::NameClash { name, kept } => {
                write!(
                    f,
                    "its global name {name:?} is held by {}:{} (kept when two holders met)",
                    kept.node, kept.id
                )
            }
            ExitReason::Failed { details } => write!(f, "it failed: {details}"),
        }
    }
}

/// Why a create failed. Mirrors Thespian's error codes, with the details it only logged.
/// ```
/// # use troupe_actor_abi::prelude::*;
/// let e = CreateError::InvalidActorSpecification {
///     type_name: "demo.Nope".into(),
///     detail: "no such type".into(),
/// };
/// assert_eq!(e.kind(), "InvalidActorSpecification");
/// assert_eq!(e.to_string(), "InvalidActorSpecification: demo.Nope: no such type");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CreateError {
    /// No node of the convention has the capabilities the type requires.
    NoCompatibleSystemForActor {
        /// `module.Type`.
        type_name: String,
        /// The capabilities that were required.
        requirements: Vec<String>,
        /// The nodes whose capabilities were checked.
        nodes_considered: Vec<String>,
    },
    /// The hash names no active version (never loaded, still validating, draining or gone).
    InvalidActorSourceHash {
        /// The hash asked for.
        hash: String,
        /// What is known about it.
        detail: String,
    },
    /// The version exists but does not export that type.
    InvalidActorSpecification {
        /// The type asked for.
        type_name: String,
        /// Why it is invalid.
        detail: String,
    },
    /// The plugin's constructor failed or panicked.
    PluginError {
        /// `module.Type`.
        type_name: String,
        /// The error or panic message.
        message: String,
    },
    /// The node is stopping and creates nothing new.
    ActorSystemShuttingDown,
    /// A global name could not be claimed: no leader of the convention could be reached (a
    /// create with a global name never registers a second holder on its own).
    NoLeader {
        /// The name.
        name: String,
        /// Which leaders were tried, and what happened.
        detail: String,
    },
}

impl CreateError {
    /// A stable name for the kind of error (what scripts and tests match on).
    pub fn kind(&self) -> &'static str {
        match self {
            CreateError::NoCompatibleSystemForActor { .. } => "NoCompatibleSystemForActor",
            CreateError::InvalidActorSourceHash { .. } => "InvalidActorSourceHash",
            CreateError::InvalidActorSpecification { .. } => "InvalidActorSpecification",
            CreateError::PluginError { .. } => "PluginError",
            CreateError::ActorSystemShuttingDown => "ActorSystemShuttingDown",
            CreateError::NoLeader { .. } => "NoLeader",
        }
    }
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::NoCompatibleSystemForActor { type_name, requirements, nodes_considered } => write!(
                f,
                "NoCompatibleSystemForActor: no node has the capabilities [{}] that {type_name} requires (nodes considered: {})",
                requirements.join(", "),
                if nodes_considered.is_empty() { "none".to_string() } else { nodes_considered.join(", ") }
            ),
            CreateError::InvalidActorSourceHash { hash, detail } => {
                write!(f, "InvalidActorSourceHash: source hash {hash} {detail}")
            }
            CreateError::InvalidActorSpecification { type_name, detail } => {
                write!(f, "InvalidActorSpecification: {type_name}: {detail}")
            }
            CreateError::PluginError { type_name, message } => {
                write!(f, "PluginError: creating {type_name} failed: {message}")
            }
            CreateError::ActorSystemShuttingDown => {
                f.write_str("ActorSystemShuttingDown: the node is stopping")
            }
            CreateError::NoLeader { name, detail } => {
                write!(f, "NoLeader: global name {name:?} could not be claimed: {detail}")
            }
        }
    }
}

/// What an actor asks for when it creates another.
/// Used with [`Context::create_with`](crate::sdk::Context::create_with); unset fields keep
/// their defaults.
///
/// ```
/// # use troupe_actor_abi::prelude::*;
/// let spec = CreateSpec {
///     type_name: "morse.MorseEncoder".into(),
///     requirements: vec!["morse".into()],
///     ..CreateSpec::default()
/// };
/// assert_eq!(spec.global_name, None);
/// assert_eq!(spec.source_hash, None); // the creator's own version
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateSpec {
    /// `module.Type`.
    pub type_name: String,
    /// Capabilities required on top of those the type declares.
    pub requirements: Vec<String>,
    /// A name unique on the node: a create naming a live actor returns that actor.
    pub global_name: Option<String>,
    /// The version to create from; `None` means the creator's own.
    pub source_hash: Option<String>,
}

/// What an actor can learn about itself during a call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallInfo {
    /// The actor's own address.
    pub me: Address,
    /// Who created it (`None` when created by a client).
    pub parent: Option<Address>,
    /// The global name it was created with.
    pub global_name: Option<String>,
    /// Its version's hash.
    pub source_hash: String,
    /// Its `module.Type`.
    pub type_name: String,
    /// The hosting node's capabilities.
    pub capabilities: Vec<String>,
}

/// An actor's state as it leaves one version for another (live upgrade): `tag` names its
/// shape, `body` is its msgpack. The two versions' Rust types need not match; the new one
/// reads the tag and decodes what it knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MigratedState {
    /// The shape's tag, e.g. `counter/State.v1`.
    pub tag: String,
    /// msgpack of the state.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// Which version an actor comes from, as its new version is told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionIdentity {
    /// The package (the manifest's name).
    pub package: String,
    /// The plugin crate's version (`CARGO_PKG_VERSION` of the library that made the actor).
    pub version: String,
    /// The source's full hash.
    pub hash: String,
}

/// What `import_actor` receives: where the actor comes from and its state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    /// The old version.
    pub from: VersionIdentity,
    /// The actor's `module.Type` in the old version.
    pub from_type: String,
    /// What the old version exported.
    pub state: MigratedState,
}

/// An [`Address`] read without copying its node (the fast path of sends).
#[doc(hidden)]
#[derive(Debug, Deserialize)]
pub struct AddressRef<'a> {
    /// The node's admin address.
    #[serde(borrow)]
    pub node: &'a str,
    /// The actor's id on that node.
    pub id: u64,
}

impl AddressRef<'_> {
    /// The owned address.
    pub fn to_owned(&self) -> Address {
        Address { node: self.node.to_string(), id: self.id }
    }
}

/// A [`Payload`] borrowed: read without copying (the node's fast path for sends), or written
/// from borrowed parts with [`Payload`]'s wire shape (the SDK encodes a send with it without
/// building a `Payload`). Runtime messages are only recognised, never read or written here:
/// they take the ordinary path.
#[doc(hidden)]
#[derive(Debug, Serialize, Deserialize)]
pub enum PayloadRef<'a> {
    /// [`Payload::Text`].
    Text(&'a str),
    /// [`Payload::Typed`].
    Typed {
        /// The type's tag.
        tag: &'a str,
        /// msgpack of the value.
        #[serde(with = "serde_bytes")]
        body: &'a [u8],
    },
    /// [`Payload::System`], not read (and never written: serializing it is an error).
    #[serde(skip_serializing)]
    System(serde::de::IgnoredAny),
}

/// The bytes of `encode(&Incoming { sender, payload })`, given the encoded sender (`None`: the
/// runtime) and the encoded payload, built by concatenation in one allocation. The node uses
/// it to hand a plugin's message to another actor without decoding and re-encoding it.
#[doc(hidden)]
pub fn incoming_bytes(sender: Option<&[u8]>, payload: &[u8]) -> Vec<u8> {
    // {"sender": <address or nil>, "payload": <payload>}: a fixmap of 2 and two fixstr keys,
    // as rmp-serde writes the struct with field names.
    const SENDER: &[u8] = b"\x82\xa6sender";
    const PAYLOAD: &[u8] = b"\xa7payload";
    let s = sender.unwrap_or(b"\xc0");
    let mut v = Vec::with_capacity(SENDER.len() + s.len() + PAYLOAD.len() + payload.len());
    v.extend_from_slice(SENDER);
    v.extend_from_slice(s);
    v.extend_from_slice(PAYLOAD);
    v.extend_from_slice(payload);
    v
}

/// Appends the msgpack of `value` (with field names, as [`encode`]) to `out`.
#[doc(hidden)]
pub fn encode_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // As in `encode`: writing our plain data types into a Vec cannot fail.
    let _ = rmp_serde::encode::write_named(out, value);
}

/// Encodes a value as msgpack with field names (so that fields can be added compatibly).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Encoding our own plain data types into a Vec cannot fail: they hold no maps with non-string
    // keys and the writer is infallible; an error would be a bug in this crate.
    rmp_serde::to_vec_named(value).unwrap_or_default()
}

/// Decodes msgpack.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

// Which exits a policy restarts depends on the exit reasons defined here; the policy itself
// (limits, backoff) lives in `crate::restart`, which needs nothing from this module.
impl RestartPolicy {
    /// Whether an exit for `reason` is a failure this policy restarts: the actor's handler
    /// failed twice on one message, its constructor failed, its node was lost, or its node
    /// no longer has what it requires, or no node had, or no leader answered for its global
    /// name. Losing its name to another holder is not. An exit that was asked for (an
    /// `ActorExitRequest`, an unload, a stopping node) or a create that can never succeed (an
    /// unknown hash or type) is not.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// assert!(RestartPolicy::restarts(&ExitReason::Failed { details: "panicked".into() }));
    /// assert!(RestartPolicy::restarts(&ExitReason::NodeLost { node: "127.0.0.1:1901".into() }));
    /// assert!(!RestartPolicy::restarts(&ExitReason::Requested));
    /// assert!(!RestartPolicy::restarts(&ExitReason::Unloaded));
    /// ```
    pub fn restarts(reason: &ExitReason) -> bool {
        match reason {
            ExitReason::Failed { .. } | ExitReason::NodeLost { .. } | ExitReason::CapabilityLost { .. } => {
                true
            }
            ExitReason::CreateFailed(e) => matches!(
                e,
                CreateError::PluginError { .. }
                    | CreateError::NoCompatibleSystemForActor { .. }
                    | CreateError::NoLeader { .. }
            ),
            // Another actor holds its name: a new one would only find that holder.
            ExitReason::Requested
            | ExitReason::NodeStopping
            | ExitReason::Unloaded
            | ExitReason::NameClash { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_round_trips() {
        let m = Incoming {
            sender: Some(Address { node: "127.0.0.1:1900".into(), id: 7 }),
            payload: Payload::System(SystemMessage::ChildActorExited {
                child: Address { node: "n".into(), id: 1 },
                reason: ExitReason::CreateFailed(CreateError::NoCompatibleSystemForActor {
                    type_name: "morse.MorseEncoder".into(),
                    requirements: vec!["morse".into()],
                    nodes_considered: vec!["127.0.0.1:1900".into()],
                }),
            }),
        };
        let back: Incoming = decode(&encode(&m)).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn spliced_incoming_is_the_encoded_incoming() {
        let sender = Address { node: "127.0.0.1:1900".into(), id: 300 };
        let payloads = [
            Payload::Text("hello".into()),
            Payload::Typed { tag: "bench/Tick".into(), body: encode(&7u64) },
            Payload::Typed { tag: "x/Big".into(), body: vec![0xab; 70_000] },
        ];
        for p in payloads {
            let out = match &p {
                Payload::Text(t) => PayloadRef::Text(t),
                Payload::Typed { tag, body } => PayloadRef::Typed { tag, body },
                Payload::System(_) => unreachable!(),
            };
            assert_eq!(encode(&out), encode(&p), "PayloadRef must write Payload's wire shape");
            for s in [Some(sender.clone()), None] {
                let whole = Incoming { sender: s.clone(), payload: p.clone() };
                let enc_sender = s.as_ref().map(encode);
                assert_eq!(incoming_bytes(enc_sender.as_deref(), &encode(&p)), encode(&whole));
            }
            let enc = encode(&p);
            match (decode::<PayloadRef>(&enc).unwrap(), &p) {
                (PayloadRef::Text(a), Payload::Text(b)) => assert_eq!(a, b),
                (PayloadRef::Typed { tag, body }, Payload::Typed { tag: t, body: b }) => {
                    assert_eq!((tag, body), (t.as_str(), b.as_slice()))
                }
                other => panic!("{other:?}"),
            }
        }
        let sys = Payload::System(SystemMessage::ActorExitRequest { recursive: true });
        assert!(matches!(decode::<PayloadRef>(&encode(&sys)).unwrap(), PayloadRef::System(_)));
        let enc = encode(&sender);
        let a: AddressRef = decode(&enc).unwrap();
        assert_eq!(a.to_owned(), sender);
    }

    #[test]
    fn create_error_names_what_was_required() {
        let e = CreateError::NoCompatibleSystemForActor {
            type_name: "encoder.Base64Encoder".into(),
            requirements: vec!["64bit encoder".into()],
            nodes_considered: vec!["127.0.0.1:1900".into()],
        };
        assert_eq!(e.kind(), "NoCompatibleSystemForActor");
        let s = e.to_string();
        assert!(s.contains("[64bit encoder]") && s.contains("127.0.0.1:1900"), "{s}");
    }
}
