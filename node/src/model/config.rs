//! How a node is configured: what `troupe start` turns its flags into. Plain data, below
//! everything that uses it.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::store::libcopy::LibCopies;
pub use crate::wire::peer::RemoteSources;

/// Which source authority a node starts with.
#[derive(Clone, Debug)]
pub enum AuthorityConfig {
    /// Every load is rejected until an actor registers itself as authority.
    None,
    /// Every well-formed source is accepted (what `troupe start` uses by default).
    AcceptAll,
    /// Only sources signed by one of these keys are accepted.
    Ed25519(crate::store::signing::TrustedKeys),
}

/// How a node is configured.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The admin address clients and peers know the node by (`host:port`).
    pub addr: String,
    /// Capability names.
    pub capabilities: Vec<String>,
    /// Where the node keeps its store (created; emptied at start and at stop).
    pub state_dir: PathBuf,
    /// The initial source authority.
    pub authority: AuthorityConfig,
    /// The convention this node belongs to.
    pub convention: ConventionConfig,
    /// The convention's shared secret: every connection must prove it knows it.
    pub secret: Option<crate::store::signing::Secret>,
    /// Where each version's library copies are made.
    pub lib_copies: LibCopies,
    /// The most threads one version runs its actors on (at least 1).
    pub version_threads: usize,
    /// A handler running longer than this is reported.
    pub long_handler: Duration,
}

#[cfg(test)]
impl NodeConfig {
    /// For in-process tests: a node at `addr` leading its own convention, accepting every
    /// source, no capabilities, two threads per version.
    pub(crate) fn for_test(addr: &str, state_dir: &std::path::Path) -> NodeConfig {
        NodeConfig {
            addr: addr.to_string(),
            capabilities: Vec::new(),
            state_dir: state_dir.to_path_buf(),
            authority: AuthorityConfig::AcceptAll,
            convention: ConventionConfig { leader: addr.to_string(), ..ConventionConfig::default() },
            secret: None,
            lib_copies: LibCopies::Memory,
            version_threads: 2,
            long_handler: Duration::from_secs(1),
        }
    }
}

/// The default of [`NodeConfig::version_threads`]: the cores this process may use.
pub fn default_version_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// How a node takes part in a convention.
#[derive(Clone, Debug)]
pub struct ConventionConfig {
    /// The leader's admin address (`host:port`); the node with this address leads.
    pub leader: String,
    /// How often members register with the leader.
    pub heartbeat: Duration,
    /// Silence after which a node is declared lost.
    pub dead_after: Duration,
    /// Whether this node fetches versions it lacks from peers.
    pub remote_sources: RemoteSources,
}

impl Default for ConventionConfig {
    fn default() -> Self {
        ConventionConfig {
            leader: crate::model::launch::DEFAULT_CONVENTION.into(),
            // Seconds, not Thespian's 7 minutes: failures must be noticed while a user waits.
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
            remote_sources: RemoteSources::Yes,
        }
    }
}
