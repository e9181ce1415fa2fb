//! What `troupe status` shows: a serializable snapshot of one node.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use troupe_actor_abi::message::Address;

/// A snapshot of one node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusReport {
    /// Admin address.
    pub node: String,
    /// Process id (so that tests and operators can look at `/proc/<pid>/maps`).
    pub pid: u32,
    /// Capability names.
    pub capabilities: Vec<String>,
    /// The source authority in force: `none`, `accept-all` or `actor <address>`.
    pub authority: String,
    /// The node's store directory.
    pub store: String,
    /// Loaded versions (validating, active, draining).
    pub versions: Vec<VersionStatus>,
    /// Versions unloaded recently, newest last.
    pub gone: Vec<GoneStatus>,
    /// Live actors.
    pub actors: Vec<ActorStatus>,
    /// Global names of actors hosted here and the actors they name.
    pub global_names: BTreeMap<String, Address>,
    /// This node's view of its convention.
    #[serde(default)]
    pub convention: ConventionStatus,
    /// pthread keys in use by the process (each plugin instance that touches
    /// `std::thread::current` leaks one, forever).
    #[serde(default)]
    pub pthread_keys_in_use: u32,
    /// The process limit.
    #[serde(default)]
    pub pthread_keys_max: u32,
    /// Loads are refused from this many keys on.
    #[serde(default)]
    pub pthread_keys_refuse_at: u32,
    /// Named releases as this node knows them (the leader's table, or a member's copy).
    #[serde(default)]
    pub groups: BTreeMap<String, crate::wire::peer::GroupInfo>,
}

/// A node's view of its convention.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConventionStatus {
    /// The leader's admin address (its own, on a node that serves alone).
    pub leader: String,
    /// `leader`, `member`, or `alone`: nobody listens at any listed leader's address and no
    /// leader ever answered this node, so it serves on its own (names, groups and placement
    /// among itself) until a leader starts there.
    pub role: String,
    /// Whether a leader has answered this node's registration in this process's life (a
    /// member that has not joined yet, and a lone node, say false).
    #[serde(default)]
    pub joined: bool,
    /// `yes`, `no` or `leaderonly`.
    pub remote_sources: String,
    /// Registration period.
    pub heartbeat_ms: u64,
    /// Silence after which a node is declared lost.
    pub dead_after_ms: u64,
    /// The other nodes it knows.
    pub members: Vec<MemberStatus>,
    /// The configured leaders, in order (`--convention A,B,C`).
    #[serde(default)]
    pub leaders: Vec<String>,
    /// This node's incarnation (new at each start, and after it was fenced).
    #[serde(default)]
    pub incarnation: u64,
    /// How many times the leader changed, as this node saw it.
    #[serde(default)]
    pub leader_changes: u64,
    /// On the leader: whether it still waits for members to bring their names.
    #[serde(default)]
    pub gathering: bool,
    /// On the leader: the convention's global names and their holders.
    #[serde(default)]
    pub names: std::collections::BTreeMap<String, troupe_actor_abi::message::Address>,
}

/// Another node as this one knows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Admin address.
    pub node: String,
    /// `leader` or `member`.
    pub role: String,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Heard from within the failure-detection time.
    pub alive: bool,
    /// Milliseconds since last heard from.
    pub last_seen_ms: u64,
    /// Its process id.
    pub pid: u32,
    /// Its active versions.
    pub sources: Vec<String>,
}

/// One loaded version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionStatus {
    /// sha256 of the zip.
    pub hash: String,
    /// Which load of this hash (each gets its own store path).
    pub generation: u64,
    /// `validating`, `active` or `draining`.
    pub state: String,
    /// Manifest package name and version.
    pub package: String,
    /// Where it came from.
    pub info: String,
    /// Live actors of this version.
    pub live_actors: usize,
    /// Exported actor types and their requirements.
    pub actor_types: BTreeMap<String, Vec<String>>,
    /// Library files in the store.
    pub files: Vec<String>,
    /// The threads that run its actors.
    #[serde(default)]
    pub threads: ThreadsStatus,
    /// Messages and creates waiting for a thread.
    #[serde(default)]
    pub queue_depth: usize,
    /// Handlers running longer than the node's `--long-handler` threshold.
    #[serde(default)]
    pub long_handlers: Vec<LongHandlerStatus>,
}

/// A version's threads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadsStatus {
    /// Running a handler (or a create, a drop, `on_unload`).
    pub busy: usize,
    /// Waiting for work.
    pub idle: usize,
    /// The most it may have (`--version-threads`).
    pub limit: usize,
}

/// A handler running longer than the threshold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongHandlerStatus {
    /// The actor.
    pub actor: Address,
    /// Its type.
    pub type_name: String,
    /// How long it has been running, in milliseconds.
    pub running_ms: u64,
}

/// A version that was unloaded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GoneStatus {
    /// Its hash.
    pub hash: String,
    /// Its generation.
    pub generation: u64,
    /// Milliseconds from the last actor's exit to the library being closed and deleted.
    pub unload_ms: f64,
    /// Milliseconds from the unload request to the library being closed (the drain).
    #[serde(default)]
    pub drain_ms: f64,
}

/// One live actor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActorStatus {
    /// Its address.
    pub address: Address,
    /// `module.Type`.
    pub type_name: String,
    /// Its version's hash.
    pub hash: String,
    /// Its parent, if an actor created it.
    pub parent: Option<Address>,
    /// Its global name.
    pub global_name: Option<String>,
}
