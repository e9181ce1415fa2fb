//! What a live upgrade is asked to do and what it reports (`troupe upgrade`, `deploy
//! --migrate`), on the client port and between nodes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use troupe_actor_abi::message::Address;

/// How an upgrade moves actors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeOptions {
    /// Old `module.Type` → new `module.Type`, for renamed types. A type not listed maps to the
    /// type of the same name; the new version's manifest may add its own renames
    /// (`[upgrade] renamed`), which this overrides.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// If any actor fails to move, every actor moved by this upgrade goes back to the old
    /// version (on every node) and the upgrade fails.
    #[serde(default)]
    pub all_or_nothing: bool,
    /// How long each node waits for its actors to pause (an actor pauses between two
    /// messages, so a handler running longer keeps its actor on the old version, reported as
    /// failed); `None`: 30 s.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// One actor that could not move: it keeps running the old version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeFailure {
    /// The actor (its address does not change either way).
    pub address: Address,
    /// Its type in the old version.
    pub type_name: String,
    /// Why: the export or the import failed, or the new version lacks the type.
    pub reason: String,
}

/// Actors of one type on one node, and what became of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeOutcome {
    /// Its type in the old version.
    pub from_type: String,
    /// Its type in the new version.
    pub to_type: String,
    /// Moved to the new version.
    pub moved: usize,
    /// Did not opt in to migration: they stay on the old version, which drains as before.
    pub stayed: usize,
}

/// What one node did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeUpgrade {
    /// The node's admin address.
    pub node: String,
    /// Per type, in type order.
    pub types: Vec<TypeOutcome>,
    /// Actors that could not move.
    pub failed: Vec<UpgradeFailure>,
    /// How long the node took, from the request to the last actor resumed, in microseconds.
    pub elapsed_us: u64,
    /// How long actors were paused (from the export to the first message the new version could
    /// take), in microseconds: median, 99th percentile and longest.
    pub pause_p50_us: u64,
    pub pause_p99_us: u64,
    pub pause_max_us: u64,
}

impl NodeUpgrade {
    /// Actors moved on this node.
    pub fn moved(&self) -> usize {
        self.types.iter().map(|t| t.moved).sum()
    }
    /// Actors that stayed (not opted in).
    pub fn stayed(&self) -> usize {
        self.types.iter().map(|t| t.stayed).sum()
    }
}

/// The answer to an upgrade.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpgradeReport {
    /// The old version's full hash.
    pub from: String,
    /// The new version's full hash.
    pub to: String,
    /// Every node that held actors of the old version, this one first.
    pub nodes: Vec<NodeUpgrade>,
    /// `--all-or-nothing` found a failure: every actor is back on the old version.
    pub rolled_back: bool,
}

impl UpgradeReport {
    /// Actors moved, on every node.
    pub fn moved(&self) -> usize {
        self.nodes.iter().map(NodeUpgrade::moved).sum()
    }
    /// Actors that stayed on the old version because they do not migrate.
    pub fn stayed(&self) -> usize {
        self.nodes.iter().map(NodeUpgrade::stayed).sum()
    }
    /// Every actor that could not move.
    pub fn failed(&self) -> impl Iterator<Item = &UpgradeFailure> {
        self.nodes.iter().flat_map(|n| n.failed.iter())
    }
}
