//! The node's core: the owners of its tables, put together, and the handle the admin server
//! and the binary hold.
//!
//! [`Core`] holds one owner per table (see [`crate::tables`]), the peer links, the convention's
//! configuration and the node's metric families. It has no lock of its own: each table keeps
//! its own, privately, and no code holds the locks of two owners at once, with one documented
//! exception (versions, then authority, in `Versions::admit`). Inside one owner a lock may
//! nest: a version's store lock is held around the registry's while its zip is written or
//! deleted, and the peer links' map is held while one link's outbox is checked. Plugin code
//! never runs while any of them is held: it runs on version executors ([`crate::host`]), which
//! call back through [`crate::host::NodeSeam`] between plugin calls.
//!
//! What the core does is spread by job: [`super::router`] delivers messages,
//! [`super::lifecycle`] creates actors and [`super::exit`] stops them, [`super::seams`]
//! implements what the version hosts and the peer links may ask; loads, unloads, fetches,
//! stop, capabilities, groups and status are in [`crate::ops`]; membership and names in
//! [`crate::convention`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, Notify};
use troupe_actor_abi::message::{Address, Incoming, ADMIN_ID};

use crate::model::config::{ConventionConfig, LibCopies, NodeConfig};
use crate::model::ids::IdAllocator;
use crate::model::metrics::Metrics;
use crate::peers::{LinkEvents, Peers};
use crate::store::signing::Secret;
use crate::tables::actors::{ActorRec, Actors};
use crate::tables::authority::SourceAuthority;
use crate::tables::capabilities::Capabilities;
use crate::tables::fetches::Fetches;
use crate::tables::groups::Groups;
use crate::tables::leadership::Leadership;
use crate::tables::members::Members;
use crate::tables::names::Names;
use crate::tables::progress::Progress;
use crate::tables::source_watch::SourceWatch;
use crate::tables::supervised::Supervised;
use crate::tables::upgrades::Upgrades;
use crate::tables::versions::Versions;

/// The node's state, shared by its tasks and version threads.
pub struct Core {
    /// The node's admin address.
    pub(crate) addr: String,
    /// Where zips are stored for peers (and library copies with `--lib-copies store`).
    pub(crate) store: PathBuf,
    pub(crate) lib_copies: LibCopies,
    /// The most threads a version runs its actors on.
    pub(crate) version_threads: usize,
    /// A handler running longer than this is reported.
    pub(crate) long_handler: std::time::Duration,
    pub(crate) conv: ConventionConfig,
    /// The convention's shared secret (for connections in and out).
    pub(crate) secret: Option<Secret>,
    pub(crate) ids: IdAllocator,
    /// Rotates placement over eligible nodes.
    pub(crate) placement_turn: AtomicUsize,
    pub(crate) actors: Actors,
    /// Messages to creates still on their way here.
    pub(crate) awaited: crate::tables::awaited::Awaited,
    pub(crate) versions: Versions,
    pub(crate) authority: SourceAuthority,
    pub(crate) members: Members,
    pub(crate) names: Names,
    pub(crate) groups: Groups,
    pub(crate) caps: Capabilities,
    pub(crate) upgrades: Upgrades,
    /// How far each live upgrade got here, for watchers.
    pub(crate) progress: Progress,
    /// Versions being fetched from a peer (one fetch per hash at a time).
    pub(crate) fetches: Fetches,
    pub(crate) leadership: Leadership,
    /// This node's incarnation (see [`crate::wire::MemberInfo::incarnation`]).
    pub(crate) incarnation: AtomicU64,
    pub(crate) peers: Peers,
    pub(crate) rt: tokio::runtime::Handle,
    /// The long-lived metric families, fed as things happen.
    pub(crate) metrics: Metrics,
    /// Signalled when the node has stopped.
    pub(crate) stopped: Notify,
    /// Wakes the membership task for an immediate re-registration.
    pub(crate) reregister: Notify,
    /// Our own `Arc`, weakly, for timers and tasks that must not keep the node alive.
    pub(crate) weak: Weak<Core>,
    /// Whether actors may make system calls (`--actor-system-calls`).
    pub(crate) actor_system_calls: bool,
    /// How long a load waits for an actor source authority.
    pub(crate) authority_timeout: std::time::Duration,
    /// Who hears `LoadedSource` / `UnloadedSource`.
    pub(crate) source_watch: SourceWatch,
    /// Supervised children of this node's actors.
    pub(crate) supervised: Supervised,
    /// Signalled when an actor's system call stopped the node: the admin server exits.
    pub shutdown: Notify,
}

impl Core {
    /// A core with empty tables (its store is emptied and created), and its admin endpoint
    /// open. Must be called inside a tokio runtime.
    pub(crate) fn new(config: NodeConfig) -> std::io::Result<Arc<Core>> {
        let store = config.state_dir.join("store");
        if store.exists() {
            // Left over by a node that was killed: nothing in it is loaded by anyone.
            std::fs::remove_dir_all(&store)?;
        }
        std::fs::create_dir_all(&store)?;
        let rt = tokio::runtime::Handle::current();
        let mut leaders = config.convention.leaders.clone();
        if leaders.is_empty() {
            leaders.push(crate::model::config::DEFAULT_CONVENTION.to_string());
        }
        let leadership = Leadership::new(&config.addr, &leaders);
        let core = Arc::new_cyclic(|weak: &Weak<Core>| {
            let events: Weak<dyn LinkEvents> = weak.clone();
            Core {
                weak: weak.clone(),
                peers: Peers::new(rt.clone(), config.secret.clone(), events),
                addr: config.addr,
                store,
                lib_copies: config.lib_copies,
                version_threads: config.version_threads.max(1),
                long_handler: config.long_handler,
                conv: config.convention,
                secret: config.secret,
                ids: IdAllocator::new(),
                placement_turn: AtomicUsize::new(0),
                actors: Actors::default(),
                awaited: Default::default(),
                versions: Versions::default(),
                authority: SourceAuthority::new(config.authority),
                members: Members::default(),
                names: Names::default(),
                groups: Groups::default(),
                caps: Capabilities::new(&config.capabilities),
                upgrades: Upgrades::default(),
                progress: Progress::default(),
                fetches: Fetches::default(),
                leadership,
                incarnation: AtomicU64::new(new_incarnation()),
                rt,
                metrics: Metrics::new(),
                stopped: Notify::new(),
                reregister: Notify::new(),
                actor_system_calls: config.actor_system_calls,
                authority_timeout: config.authority_timeout,
                source_watch: SourceWatch::default(),
                supervised: Supervised::default(),
                shutdown: Notify::new(),
            }
        });
        core.open_admin_endpoint();
        Ok(core)
    }

    /// The admin endpoint (id 0): the source authority's answers and convention watch requests
    /// arrive here.
    fn open_admin_endpoint(&self) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Incoming>();
        self.actors.insert(ADMIN_ID, ActorRec::client(tx));
        let weak = self.weak.clone();
        self.rt.spawn(async move {
            while let Some(m) = rx.recv().await {
                let Some(core) = weak.upgrade() else { break };
                core.admin_message(m);
            }
        });
    }

    /// The node's admin address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn arc(&self) -> Option<Arc<Core>> {
        self.weak.upgrade()
    }

    pub(crate) fn address(&self, id: u64) -> Address {
        Address { node: self.addr.clone(), id }
    }

    pub(crate) fn is_local(&self, a: &Address) -> bool {
        a.node == self.addr
    }

    /// Whether this node leads its convention now.
    pub fn is_leader(&self) -> bool {
        self.leadership.is_me()
    }

    /// The convention's leader now, as this node sees it.
    pub fn leader(&self) -> String {
        self.leadership.current()
    }

    /// This node's incarnation now.
    pub(crate) fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::Relaxed)
    }

    /// A new incarnation (the node learned it was declared lost).
    pub(crate) fn next_incarnation(&self) -> u64 {
        let n = new_incarnation();
        self.incarnation.store(n, Ordering::Relaxed);
        n
    }

    /// Whether the node is stopping.
    pub(crate) fn stopping(&self) -> bool {
        self.versions.closed()
    }
}

/// A fresh incarnation number: random, so that two lives of a node never share one.
fn new_incarnation() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No entropy source: the clock and the process still tell two lives apart.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
    }
    u64::from_le_bytes(b).max(1)
}
