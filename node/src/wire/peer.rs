//! What nodes of a convention ask each other: registration, placement, names, fetches and
//! unloads, and the directory entries they exchange.

use serde::{Deserialize, Serialize};
use troupe_actor_abi::message::{Address, CreateSpec, Incoming};

/// What nodes of a convention ask each other (never a client).
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    /// A member registers (and heartbeats) with the leader; the answer gives the directory's
    /// changes since the member's copy (or all of it).
    Register(Registration),
    /// To a node that was declared lost and answers as if it had not been: it fences itself
    /// (one-way; see [`Registration`]).
    Fenced {
        /// The incarnation that was declared lost.
        incarnation: u64,
    },
    /// From the leader, to the node of an actor that lost a global name in a clash (two holders
    /// found when a leader rebuilt its table): the actor is asked to exit (one-way).
    NameClash {
        /// The name.
        name: String,
        /// The actor that loses it (on the receiving node).
        loser: Address,
        /// The holder kept.
        kept: Address,
    },
    /// The claim a held create waited for is decided (one-way, to the node holding it).
    Held {
        /// The held actor's id (on the receiving node).
        id: u64,
        /// What becomes of it.
        outcome: HeldOutcome,
    },
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
        /// Register the actor but start it only on [`PeerRequest::Held`] (its global name is
        /// being claimed); messages to it wait meanwhile.
        #[serde(default)]
        hold: bool,
    },
    /// Send the zip bytes of an active version.
    FetchSource {
        /// Full hash.
        hash: String,
    },
    /// To the leader: make the previous version of `group` active again.
    GroupRollback {
        /// The group.
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
    /// Live upgrade on the receiving node: move its live actors of `from` to `to` (fetching
    /// `to` from `source`'s holders if needed). Answered with an [`UpgradeReport`] of that node.
    /// With `hold`, moved actors wait paused until [`PeerRequest::UpgradeDecide`].
    ///
    /// [`UpgradeReport`]: super::upgrade::UpgradeReport
    UpgradeHere {
        /// The upgrade's id, for the decision.
        upgrade: u64,
        /// Full hashes.
        from: String,
        to: String,
        options: super::upgrade::UpgradeOptions,
        /// Hold every moved actor until the decision (`--all-or-nothing`).
        hold: bool,
        /// Where `to` can be fetched.
        source: Option<SourceHint>,
    },
    /// Commit (or roll back) the moves upgrade `upgrade` holds on the receiving node.
    UpgradeDecide {
        /// The upgrade's id.
        upgrade: u64,
        /// Commit (true) or roll back.
        commit: bool,
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
    /// Which life of the node this is: new at every start, and again when the node learns it
    /// was declared lost (it fenced itself). Another incarnation at a known address means the
    /// old one and its actors are gone.
    #[serde(default)]
    pub incarnation: u64,
}

/// A registration (or heartbeat) with the leader. Small when nothing changed: the full entry,
/// the names and the groups travel only when the leader needs them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The member's admin address.
    pub node: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its full entry: on joining this leader, when it changed, or when the leader asked.
    pub info: Option<MemberInfo>,
    /// The directory the member holds, so the answer carries only what changed since.
    pub since: Option<DirectoryVersion>,
    /// Global names held by its actors (name, actor id), sent on joining this leader: a new
    /// leader rebuilds the convention's names from them.
    pub names: Option<Vec<(String, u64)>>,
    /// The members it knows, sent on joining this leader: a new leader waits for them (or
    /// for `dead_after`) before it answers name claims.
    pub known: Option<Vec<String>>,
    /// Its copy of the groups, sent on joining this leader: a new leader takes the newest.
    pub groups: Option<GroupsCopy>,
    /// The version of its copy of the groups: the answer brings the leader's if newer.
    pub groups_version: u64,
}

/// A version of the leader's directory: which life of which leader, and its change counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryVersion {
    /// The leader's incarnation.
    pub leader: u64,
    /// Its counter of directory changes.
    pub version: u64,
    /// Its counter of global-name changes.
    #[serde(default)]
    pub names: u64,
}

/// The groups with their version (a counter raised by every change, on any leader: a new
/// leader takes the newest copy its members hold).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupsCopy {
    /// The counter.
    pub version: u64,
    /// Group → state.
    pub groups: std::collections::BTreeMap<String, GroupInfo>,
}

/// What becomes of a held create once its name claim is decided.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HeldOutcome {
    /// The name is its: start it.
    Start,
    /// Another actor holds the name: the held address forwards to it.
    Forward(Address),
    /// No claim could be made: the create fails.
    Fail(troupe_actor_abi::message::CreateError),
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
