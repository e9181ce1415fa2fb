//! How a node is configured: what `troupe start` turns its flags into. Plain data, below
//! everything that uses it.

use std::path::PathBuf;
use std::time::Duration;

/// The default convention address (DESIGN §1: the tutorial's leader port).
pub const DEFAULT_CONVENTION: &str = "127.0.0.1:1900";

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
    /// Bounds on the admin port's connections.
    pub connections: ConnectionLimits,
    /// Whether actors may load and unload sources, change the node's capabilities and stop it
    /// (`SystemCall`); off by default: each call is refused with an error saying so.
    pub actor_system_calls: bool,
    /// How long a load waits for an actor source authority's answer before it fails.
    pub authority_timeout: Duration,
}

/// How long a load waits for an actor source authority by default.
pub const DEFAULT_AUTHORITY_TIMEOUT: Duration = Duration::from_secs(30);

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
            convention: ConventionConfig { leaders: vec![addr.to_string()], ..ConventionConfig::default() },
            secret: None,
            lib_copies: LibCopies::Memory,
            version_threads: 2,
            long_handler: Duration::from_secs(1),
            connections: ConnectionLimits::default(),
            actor_system_calls: false,
            authority_timeout: DEFAULT_AUTHORITY_TIMEOUT,
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
    /// The leaders' admin addresses (`host:port`), in order, the same list on every node
    /// (`--convention A,B,C`): the first one this node knows to be live leads. A node whose
    /// own address is listed may lead; the others never do.
    pub leaders: Vec<String>,
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
            leaders: vec![DEFAULT_CONVENTION.into()],
            // Seconds, not Thespian's 7 minutes: failures must be noticed while a user waits.
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
            remote_sources: RemoteSources::Yes,
        }
    }
}

/// The default of [`ConnectionLimits::max_connections`] (`--max-connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The default of [`ConnectionLimits::idle_timeout`] (`--idle-timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The default of [`ConnectionLimits::before_hello_per_source`]. An honest client says hello
/// right after the node's challenge and frees its place within milliseconds, so even one host
/// running many clients and nodes (the tests' and benchmarks' loopback, where 64 nodes join at
/// once and 100 connections misbehave beside an honest client) holds a few dozen at a time;
/// 128 leaves twice that, and one host that opens connections and never says hello (issue 21:
/// 5 000 of them locked `troupe status` out for 10 s) holds at most an eighth of the default
/// `--max-connections`.
pub const DEFAULT_BEFORE_HELLO_PER_SOURCE: usize = 128;

/// Descriptors kept for the node's own work whatever `--max-connections` says: store files,
/// one memory file per loaded library, outgoing peer links, the metrics endpoint and its
/// clients, the log, the runtime's own (epoll, eventfds, signal pipes). Half the limit when
/// the limit is below twice this.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// Bounds on the admin port's connections (client and peer alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The most connections open at once; more are refused at accept with a reason (and the
    /// process's open-file limit lowers it: see [`connection_cap`]).
    pub max_connections: usize,
    /// A client connection that sends nothing for this long after its handshake is closed
    /// (peer links are not); none: never.
    pub idle_timeout: Option<Duration>,
    /// The most connections one source (an IPv4 address, an IPv6 /64) may hold open before
    /// their hello; more from it are refused at accept with a reason, before anything is read.
    pub before_hello_per_source: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            before_hello_per_source: DEFAULT_BEFORE_HELLO_PER_SOURCE,
        }
    }
}

/// The cap in force: `max`, lowered so that [`RESERVED_DESCRIPTORS`] (or half of a small
/// limit) stay free below the open-file limit `nofile` (none: unlimited), and at least 1.
pub fn connection_cap(max: usize, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else { return max.max(1) };
    let reserve = RESERVED_DESCRIPTORS.min(nofile / 2);
    let room = usize::try_from(nofile.saturating_sub(reserve)).unwrap_or(usize::MAX);
    max.min(room).max(1)
}

/// The process's soft open-file limit (none: unlimited or unknown).
pub fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit with a valid resource and a valid pointer; the result is checked.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_descriptors_for_the_nodes_own_work() {
        // A raised limit leaves the flag in force.
        assert_eq!(connection_cap(1024, Some(524_288)), 1024);
        assert_eq!(connection_cap(1024, None), 1024);
        // The usual soft limit of 1 024: 256 kept back.
        assert_eq!(connection_cap(1024, Some(1024)), 768);
        assert_eq!(connection_cap(100_000, Some(4096)), 3840);
        // A tiny limit keeps half, and the cap never reaches 0.
        assert_eq!(connection_cap(1024, Some(300)), 150);
        assert_eq!(connection_cap(1024, Some(1)), 1);
        assert_eq!(connection_cap(0, Some(1024)), 1);
    }
}
