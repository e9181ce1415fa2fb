//! The node: actor table, versions, routing, creates and exits.
//!
//! [`Node`] is the handle the admin server and the binary hold; [`Shared`] is the state every
//! version host thread, peer link and connection task shares. One mutex guards the tables in
//! [`State`]; it is held only for table updates, never while plugin code runs (plugin code runs
//! on version executors, which call back into `Shared` between plugin calls) and never across
//! an `.await`.
//!
//! Life of a version: `validating` (the source authority decides) → `active` (creates allowed)
//! → `draining` (unloaded: no new actors; live ones keep serving) → gone (executor joined,
//! libraries closed, files deleted). Each load of a hash gets a new *generation* and its own
//! store path, so a reload can never revive a closing instance of the same file. Loading and
//! unloading live in [`crate::loading`]; the convention (members, placement across nodes,
//! global names, failures) in [`crate::convention`].
//!
//! Creating an actor returns its address at once: the creator's node chooses where it runs
//! (placement) and allocates its id, so the address is known before the actor exists.
//! Messages sent to it queue behind the create, on the version's executor or on the peer link
//! to the node that hosts it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};
use troupe_actor_abi::message::{
    Address, CallInfo, CreateError, CreateSpec, ExitReason, Incoming, Payload, SystemMessage, ADMIN_ID,
};

use crate::convention::{ConventionConfig, Member};
use crate::peer::Peers;
use crate::protocol::{ErrorReply, RemoteSources, Request, Response, SourceHint, SourceSummary};
use crate::status::GoneStatus;
use crate::version::{Cmd, Delivery, Dest, Effect, LocalQueue};

/// How many exited actors are remembered, so that a message to one comes back with the reason
/// instead of a bare "unknown actor". Bounded: enough for any burst a test or the demo makes.
const TOMBSTONES: usize = 4096;
/// The shortest hash prefix accepted (as Git's abbreviations: long enough to be unambiguous in
/// practice, short enough to type).
pub const MIN_HASH_PREFIX: usize = 8;

/// Which source authority a node starts with.
#[derive(Clone, Debug)]
pub enum AuthorityConfig {
    /// Every load is rejected until an actor registers itself as authority.
    None,
    /// Every well-formed source is accepted (what `troupe start` uses by default).
    AcceptAll,
    /// Only sources signed by one of these keys are accepted.
    Ed25519(crate::signing::TrustedKeys),
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
    pub secret: Option<crate::signing::Secret>,
    /// Where each version's library copies are made.
    pub lib_copies: LibCopies,
}

/// Where a node copies each version's libraries to open them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LibCopies {
    /// Anonymous memory files (`memfd_create`): no disk write on the load path. Falls back to
    /// the store where the kernel refuses them.
    #[default]
    Memory,
    /// Files in the store (`<store>/<hash>-<gen>.<file>`), deleted when the version is gone.
    Store,
}

impl LibCopies {
    /// The value `--lib-copies` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            LibCopies::Memory => "memory",
            LibCopies::Store => "store",
        }
    }
}

impl std::str::FromStr for LibCopies {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "memory" => Ok(LibCopies::Memory),
            "store" => Ok(LibCopies::Store),
            other => Err(format!("--lib-copies takes memory or store, not {other:?}")),
        }
    }
}

pub(crate) enum Authority {
    None,
    AcceptAll,
    Ed25519(crate::signing::TrustedKeys),
    Actor(Address),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VersionState {
    Validating,
    Active,
    Draining,
    /// Its `on_unload` hung: never closed while its thread is stuck.
    Quarantined,
}

impl VersionState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            VersionState::Validating => "validating",
            VersionState::Active => "active",
            VersionState::Draining => "draining",
            VersionState::Quarantined => "quarantined",
        }
    }
}

/// The zip of a version as loaded, for peers that fetch it.
pub(crate) enum ZipCopy {
    /// Not active (yet, or any more).
    None,
    /// Active, and not (yet) in the store: served from memory.
    Memory(Arc<Vec<u8>>),
    /// In the store, at this path.
    Stored(PathBuf),
}

pub(crate) struct VersionRec {
    pub(crate) hash: String,
    pub(crate) state: VersionState,
    pub(crate) package: String,
    pub(crate) info: String,
    /// Set once the host runs.
    pub(crate) tx: Option<std::sync::mpsc::Sender<Cmd>>,
    pub(crate) live: usize,
    /// `module.Type` → declared requirements.
    pub(crate) types: BTreeMap<String, Vec<String>>,
    /// The libraries: their names in the zip, and once active where their copies are.
    pub(crate) files: Vec<String>,
    /// The zip as loaded, served to peers that fetch this version.
    pub(crate) zip: ZipCopy,
    /// Held while the zip is written into the store or deleted from it.
    pub(crate) store_lock: Arc<std::sync::Mutex<()>>,
    /// Callers waiting for this generation to be gone (unload with grace, stop).
    pub(crate) gone_waiters: Vec<oneshot::Sender<()>>,
    /// Callers waiting for validation to finish (a second load or fetch of the same bytes).
    pub(crate) ready_waiters: Vec<oneshot::Sender<Result<(), String>>>,
    /// Set when unloaded during validation: the load is abandoned.
    pub(crate) cancelled: bool,
    /// Message counters, shared with the version's executor.
    pub(crate) stats: Arc<VersionStats>,
    /// When it started draining.
    pub(crate) draining_since: Option<Instant>,
}

/// Per-version message counters (for metrics): queued minus handled is the mailbox depth.
#[derive(Default)]
pub struct VersionStats {
    /// Messages queued to the version's actors.
    pub enqueued: AtomicU64,
    /// Messages its actors handled.
    pub handled: AtomicU64,
}

/// Node-wide counters (for metrics).
#[derive(Default)]
pub struct Counters {
    /// Loads that became active.
    pub loads_ok: AtomicU64,
    /// Loads that were rejected.
    pub loads_rejected: AtomicU64,
    /// The last registration round trip to the leader, in microseconds (members).
    pub heartbeat_rtt_us: AtomicU64,
}

pub(crate) enum ActorKind {
    Plugin {
        gen: u64,
        hash: String,
        type_name: String,
    },
    /// Placed here, waiting for its version to be fetched from a peer; messages wait in
    /// `buffer`.
    Pending {
        hash: String,
        type_name: String,
        buffer: Vec<Incoming>,
    },
    Client {
        tx: mpsc::UnboundedSender<Incoming>,
    },
}

pub(crate) struct ActorRec {
    pub(crate) kind: ActorKind,
    pub(crate) parent: Option<Address>,
    /// Children wherever they run.
    pub(crate) children: BTreeSet<Address>,
    pub(crate) global_name: Option<String>,
    pub(crate) requirements: Vec<String>,
    /// Why the actor is being stopped, once it is.
    pub(crate) exit_reason: Option<ExitReason>,
}

impl ActorRec {
    fn new(
        kind: ActorKind,
        parent: Option<Address>,
        global_name: Option<String>,
        requirements: Vec<String>,
    ) -> ActorRec {
        ActorRec { kind, parent, children: BTreeSet::new(), global_name, requirements, exit_reason: None }
    }
}

pub(crate) struct PendingValidation {
    pub(crate) reply: oneshot::Sender<Result<(), String>>,
}

/// The hasher of maps keyed by actor id. Ids are small sequential integers chosen by the node,
/// never by a peer, so SipHash's protection is not needed; one multiplication spreads them over
/// the hash's high bits, which the table uses.
pub(crate) type IdHash = std::hash::BuildHasherDefault<IdHasher>;

/// See [`IdHash`].
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys use this hasher; any other write still hashes, just slowly.
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) struct State {
    pub(crate) actors: HashMap<u64, ActorRec, IdHash>,
    pub(crate) versions: HashMap<u64, VersionRec>,
    /// hash → generation of its validating or active version (at most one per hash).
    pub(crate) current: HashMap<String, u64>,
    /// Global names of actors hosted here → their ids.
    pub(crate) names: HashMap<String, u64>,
    pub(crate) tombstones: HashMap<u64, String>,
    pub(crate) tombstone_order: VecDeque<u64>,
    pub(crate) gone: VecDeque<GoneStatus>,
    pub(crate) authority: Authority,
    pub(crate) validations: HashMap<String, PendingValidation>,
    pub(crate) capabilities: BTreeSet<String>,
    pub(crate) stopping: bool,
    /// Other nodes of the convention, by admin address.
    pub(crate) members: BTreeMap<String, Member>,
    /// When the leader last answered a registration (members only).
    pub(crate) leader_last_ok: Instant,
    /// Actors told about membership changes.
    pub(crate) watchers: BTreeSet<Address>,
    /// Convention-wide global names (on the leader).
    pub(crate) conv_names: HashMap<String, Address>,
    /// Named releases: authoritative on the leader, a copy on members (from registration).
    pub(crate) groups: BTreeMap<String, crate::protocol::GroupInfo>,
}

/// State shared by the node's tasks and version threads.
pub struct Shared {
    /// The node's admin address.
    pub addr: String,
    pub(crate) store: PathBuf,
    pub(crate) lib_copies: LibCopies,
    pub(crate) conv: ConventionConfig,
    next_id: AtomicU64,
    pub(crate) next_gen: AtomicU64,
    /// Rotates placement over eligible nodes.
    pub(crate) next_placement: AtomicUsize,
    st: Mutex<State>,
    rt: tokio::runtime::Handle,
    peers: Peers,
    /// Counters for metrics.
    pub counters: Counters,
    /// The convention's shared secret (for connections in and out).
    pub(crate) secret: Option<crate::signing::Secret>,
    /// Signalled when the node has stopped.
    pub stopped: Notify,
    /// Wakes the membership task for an immediate re-registration.
    pub(crate) reregister: Notify,
    /// Our own `Arc`, weakly, for timers and tasks that must not keep the node alive.
    pub(crate) weak: std::sync::Weak<Shared>,
}

/// A running node.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

impl Node {
    /// Creates a node (its store is emptied and created) and starts its convention tasks. Must
    /// be called inside a tokio runtime.
    pub fn new(config: NodeConfig) -> std::io::Result<Node> {
        let store = config.state_dir.join("store");
        if store.exists() {
            // Left over by a node that was killed: nothing in it is loaded by anyone.
            std::fs::remove_dir_all(&store)?;
        }
        std::fs::create_dir_all(&store)?;
        // Ids are unique across the convention in practice: a random-looking 32-bit prefix per
        // process start (clock and pid mixed) above a 32-bit counter. A restarted node never
        // reuses an address a peer may still hold.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ ((std::process::id() as u64) << 17);
        let prefix = splitmix(seed) & 0x7fff_ffff;
        let base = prefix.max(1) << 32;
        let authority = match config.authority {
            AuthorityConfig::None => Authority::None,
            AuthorityConfig::AcceptAll => Authority::AcceptAll,
            AuthorityConfig::Ed25519(keys) => Authority::Ed25519(keys),
        };
        let state = State {
            actors: HashMap::default(),
            versions: HashMap::new(),
            current: HashMap::new(),
            names: HashMap::new(),
            tombstones: HashMap::new(),
            tombstone_order: VecDeque::new(),
            gone: VecDeque::new(),
            authority,
            validations: HashMap::new(),
            capabilities: config
                .capabilities
                .iter()
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect(),
            stopping: false,
            members: BTreeMap::new(),
            leader_last_ok: Instant::now(),
            watchers: BTreeSet::new(),
            conv_names: HashMap::new(),
            groups: BTreeMap::new(),
        };
        let shared = Arc::new_cyclic(|weak| Shared {
            weak: weak.clone(),
            addr: config.addr,
            store,
            lib_copies: config.lib_copies,
            conv: config.convention,
            next_id: AtomicU64::new(base + 1),
            next_gen: AtomicU64::new(1),
            next_placement: AtomicUsize::new(0),
            st: Mutex::new(state),
            rt: tokio::runtime::Handle::current(),
            peers: Peers::default(),
            counters: Counters::default(),
            secret: config.secret,
            stopped: Notify::new(),
            reregister: Notify::new(),
        });
        // The admin endpoint (id 0): the source authority's answers and convention watch
        // requests arrive here.
        let (tx, mut rx) = mpsc::unbounded_channel::<Incoming>();
        shared
            .lock()
            .actors
            .insert(ADMIN_ID, ActorRec::new(ActorKind::Client { tx }, None, None, Vec::new()));
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let Some(shared) = weak.upgrade() else { break };
                shared.admin_message(m);
            }
        });
        crate::convention::start(&shared);
        Ok(Node { shared })
    }

    /// The shared state (for the server and version hosts).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The admin address.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub(crate) fn refused(code: &str, message: impl Into<String>) -> ErrorReply {
    ErrorReply::refused(code, message)
}

/// Where a create will run.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    /// Here, from the active generation `Some(gen)`, or after fetching the version (`None`).
    Local(Option<u64>),
    /// On another node.
    Remote(String),
}

/// A create, resolved and placed (or not placeable).
pub(crate) struct Plan {
    pub(crate) hash: String,
    /// The version's types (sent along to a remote target).
    pub(crate) types: BTreeMap<String, Vec<String>>,
    pub(crate) requirements: Vec<String>,
    pub(crate) target: Result<Target, CreateError>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a node bug panicked mid-update; the tables are still the best
        // information we have, and refusing every later request would lose more.
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.rt
    }

    pub(crate) fn peers(&self) -> &Peers {
        &self.peers
    }

    pub(crate) fn arc(&self) -> Option<Arc<Shared>> {
        self.weak.upgrade()
    }

    pub(crate) fn allocate_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn address(&self, id: u64) -> Address {
        Address { node: self.addr.clone(), id }
    }

    pub(crate) fn is_local(&self, a: &Address) -> bool {
        a.node == self.addr
    }

    /// Whether `a` is on this node.
    pub fn is_local_address(&self, a: &Address) -> bool {
        self.is_local(a)
    }

    /// A message from a peer for one of our actors.
    pub fn deliver_from_peer(&self, msg: Incoming, to: &Address) {
        self.route(msg, to, None);
    }

    /// Whether this node leads its convention.
    pub fn is_leader(&self) -> bool {
        self.addr == self.conv.leader
    }

    // ---- clients --------------------------------------------------------------------------

    /// Registers a client connection's endpoint; messages to it go to `tx`.
    pub fn register_client(&self, tx: mpsc::UnboundedSender<Incoming>) -> Address {
        let id = self.allocate_id();
        self.lock().actors.insert(id, ActorRec::new(ActorKind::Client { tx }, None, None, Vec::new()));
        self.address(id)
    }

    /// Forgets a client endpoint (its connection closed). Actors it created keep running.
    pub fn unregister_client(&self, addr: &Address) {
        let mut st = self.lock();
        st.actors.remove(&addr.id);
        tombstone(&mut st, addr.id, "the client disconnected".into());
    }

    // ---- routing ---------------------------------------------------------------------------

    /// Sends `payload` from `sender` to `to`.
    pub fn send(&self, sender: Option<Address>, to: &Address, payload: Payload) {
        self.route(Incoming { sender, payload }, to, None);
    }

    /// Delivers `msg` to `to`, wherever it is.
    pub(crate) fn route(&self, msg: Incoming, to: &Address, local: Option<&mut LocalQueue<'_>>) {
        if !self.is_local(to) {
            match self.arc() {
                Some(me) => {
                    let req = Request::Deliver { to: to.clone(), msg };
                    self.peers.notify_corked(&me, &to.node, req, local.map(|l| &mut l.corked))
                }
                None => self.poison(msg, to.clone(), "the node is shutting down".into()),
            }
            return;
        }
        self.route_here(Delivery::Msg(msg), to.id, local)
    }

    /// Delivers `msg` to actor `id` of this node.
    fn route_here(&self, msg: Delivery, id: u64, local: Option<&mut LocalQueue<'_>>) {
        let mut st = self.lock();
        if let Delivery::Msg(Incoming {
            payload: Payload::System(SystemMessage::ChildActorExited { child, .. }),
            ..
        }) = &msg
        {
            if let Some(rec) = st.actors.get_mut(&id) {
                rec.children.remove(child);
            }
        }
        match st.actors.get_mut(&id).map(|r| &mut r.kind) {
            Some(ActorKind::Plugin { gen, .. }) => {
                let gen = *gen;
                let v = st.versions.get(&gen);
                if let Some(v) = v {
                    v.stats.enqueued.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(l) = local {
                    if l.gen == gen {
                        drop(st);
                        l.queue.push_back(Cmd::Deliver { id, msg });
                        return;
                    }
                }
                let tx = v.and_then(|v| v.tx.clone());
                drop(st);
                match tx {
                    Some(tx) => {
                        if let Err(e) = tx.send(Cmd::Deliver { id, msg }) {
                            if let Cmd::Deliver { msg, .. } = e.0 {
                                let details = "its version host has stopped".into();
                                self.poison(msg.into_incoming(), self.address(id), details);
                            }
                        }
                    }
                    None => self.poison(
                        msg.into_incoming(),
                        self.address(id),
                        "its version is not running".into(),
                    ),
                }
            }
            Some(ActorKind::Pending { buffer, .. }) => buffer.push(msg.into_incoming()),
            Some(ActorKind::Client { tx }) => {
                let tx = tx.clone();
                drop(st);
                match local {
                    // From a version's executor: held back with its peer frames.
                    Some(l) => l.clients.push((tx, msg.into_incoming())),
                    None => {
                        let _ = tx.send(msg.into_incoming());
                    }
                }
            }
            None => {
                let details = st
                    .tombstones
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| format!("no actor {} exists on this node", self.address(id)));
                drop(st);
                self.poison(msg.into_incoming(), self.address(id), details);
            }
        }
    }

    /// A message could not be handled by `target`: return it to its sender, unless it is a
    /// runtime message (those are dropped, so that two dead actors cannot bounce forever).
    pub(crate) fn poison(&self, msg: Incoming, target: Address, details: String) {
        match (msg.sender, msg.payload) {
            (Some(sender), payload @ (Payload::Text(_) | Payload::Typed { .. })) => {
                let p = Payload::System(SystemMessage::PoisonMessage {
                    message: Box::new(payload),
                    target,
                    details,
                });
                self.route(Incoming { sender: None, payload: p }, &sender, None);
            }
            (_, payload) => {
                tracing::debug!(%target, "dropped undeliverable message {payload:?}: {details}")
            }
        }
    }

    /// A version executor got a message for an actor it does not have.
    pub(crate) fn undeliverable(&self, id: u64, msg: Incoming) {
        let details =
            self.lock().tombstones.get(&id).cloned().unwrap_or_else(|| "the actor does not exist".into());
        self.poison(msg, self.address(id), details);
    }

    // ---- effects from plugin calls ----------------------------------------------------------

    /// Applies what actor `me` asked for during a call, in order, emptying `effects`.
    pub(crate) fn apply_effects(&self, me: u64, effects: &mut Vec<Effect>, local: &mut LocalQueue<'_>) {
        if effects.is_empty() {
            return;
        }
        let me_addr = self.address(me);
        for e in effects.drain(..) {
            match e {
                Effect::Send { to, payload } => {
                    self.route(Incoming { sender: Some(me_addr.clone()), payload }, &to, Some(local))
                }
                Effect::SendRaw { to: Dest::Here(id), bytes } => {
                    self.route_here(Delivery::Raw(bytes), id, Some(local))
                }
                Effect::SendRaw { to: Dest::Peer(to), bytes } => {
                    self.route(Delivery::Raw(bytes).into_incoming(), &to, Some(local))
                }
                Effect::Create { id, spec, plan } => {
                    let name = spec.global_name.clone();
                    let result = plan.target.clone().and_then(|t| {
                        self.commit_create(id, Some(me_addr.clone()), spec, plan, t, Some(local))
                    });
                    if let Err(e) = result {
                        if let Some(name) = name {
                            self.release_name(&name, &self.address(id));
                        }
                        self.create_failed(id, Some(me_addr.clone()), e);
                    }
                }
                Effect::CreateFailed { id, error } => self.create_failed(id, Some(me_addr.clone()), error),
                Effect::Nothing => {}
                Effect::ExitSelf => {
                    self.request_exit(me, ExitReason::Requested, Some(local));
                }
                Effect::Wakeup { delay_ms, payload } => {
                    let weak = self.weak.clone();
                    let to = me_addr.clone();
                    self.rt.spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        if let Some(s) = weak.upgrade() {
                            let p = Payload::System(SystemMessage::Wakeup { payload: payload.map(Box::new) });
                            s.route(Incoming { sender: None, payload: p }, &to, None);
                        }
                    });
                }
                Effect::RegisterAuthority => {
                    tracing::info!(actor = %me_addr, "actor registered itself as source authority");
                    self.lock().authority = Authority::Actor(me_addr.clone());
                }
            }
        }
    }

    // ---- create ------------------------------------------------------------------------------

    /// Resolves a full hash or unique prefix among versions known here or in the convention.
    pub(crate) fn resolve_hash(st: &State, hash: &str) -> Result<String, CreateError> {
        if let Some(group) = hash.trim().strip_prefix('@') {
            return match st.groups.get(group) {
                Some(g) => g.active.clone().ok_or_else(|| CreateError::InvalidActorSourceHash {
                    hash: hash.into(),
                    detail: format!("names group {group}, which has no active version — deploy one with troupe deploy"),
                }),
                None => Err(CreateError::InvalidActorSourceHash {
                    hash: hash.into(),
                    detail: format!("names no group: no version was deployed as {group:?} (troupe deploy PORT ZIP --group {group})"),
                }),
            };
        }
        let h = hash.trim().to_ascii_lowercase();
        if h.len() < MIN_HASH_PREFIX || h.len() > 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(CreateError::InvalidActorSourceHash {
                hash: hash.into(),
                detail: format!("is not a sha256 hash or a prefix of at least {MIN_HASH_PREFIX} hex digits"),
            });
        }
        if h.len() == 64 {
            return Ok(h);
        }
        let mut found: BTreeSet<&String> =
            st.versions.values().map(|v| &v.hash).filter(|x| x.starts_with(&h)).collect();
        for m in st.members.values() {
            found.extend(m.info.sources.iter().map(|s| &s.hash).filter(|x| x.starts_with(&h)));
        }
        if found.is_empty() {
            found = st.gone.iter().map(|g| &g.hash).filter(|x| x.starts_with(&h)).collect();
        }
        match found.len() {
            0 => Err(CreateError::InvalidActorSourceHash {
                hash: hash.into(),
                detail: "does not match any loaded source".into(),
            }),
            1 => Ok(found.into_iter().next().cloned().unwrap_or_default()),
            n => Err(CreateError::InvalidActorSourceHash {
                hash: hash.into(),
                detail: format!("is ambiguous: it is a prefix of {n} sources; give more digits"),
            }),
        }
    }

    /// Resolves, checks and places a create. `Err` for problems with the request itself (hash,
    /// type); placement failures are in `Plan::target`, so that a live named actor can still
    /// be returned.
    pub(crate) fn plan_create(
        &self,
        spec: &CreateSpec,
        inherit: Option<String>,
        forced_local: bool,
    ) -> Result<Plan, CreateError> {
        let st = self.lock();
        if st.stopping {
            return Err(CreateError::ActorSystemShuttingDown);
        }
        let Some(hash) = spec.source_hash.clone().or(inherit) else {
            return Err(CreateError::InvalidActorSourceHash {
                hash: String::new(),
                detail: "was not given: a client must name the version to create from".into(),
            });
        };
        let hash = Self::resolve_hash(&st, &hash)?;
        let local_gen = st.current.get(&hash).copied();
        let local_active =
            local_gen.filter(|g| st.versions.get(g).is_some_and(|v| v.state == VersionState::Active));
        let draining_here = st.versions.values().any(|v| v.hash == hash && v.state == VersionState::Draining);
        let holders: Vec<&String> =
            st.members.iter().filter(|(_, m)| m.has_source(&hash)).map(|(a, _)| a).collect();
        // The declared types: from our own version, else from the convention's directory.
        let types = match local_gen.and_then(|g| st.versions.get(&g)) {
            Some(v) => Some(&v.types),
            None if draining_here => None,
            None => st.members.values().find_map(|m| m.source_types(&hash)),
        };
        let Some(types) = types else {
            let detail = if draining_here {
                "was unloaded: its version is draining and creates no new actors"
            } else if local_gen.is_some() {
                "is still being validated"
            } else {
                "does not match any loaded source"
            };
            return Err(CreateError::InvalidActorSourceHash { hash, detail: detail.into() });
        };
        let Some(declared) = types.get(&spec.type_name) else {
            let detail = if spec.type_name.contains('.') {
                format!(
                    "version {} exports no such type (it has: {})",
                    &hash[..MIN_HASH_PREFIX],
                    types.keys().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )
            } else {
                "an actor type is named module.Type".to_string()
            };
            return Err(CreateError::InvalidActorSpecification { type_name: spec.type_name.clone(), detail });
        };
        let mut requirements = declared.clone();
        for r in &spec.requirements {
            if !requirements.contains(r) {
                requirements.push(r.clone());
            }
        }
        let satisfies = |caps: &dyn Fn(&str) -> bool| requirements.iter().all(|r| caps(r));
        let leader_has = st.members.get(&self.conv.leader).is_some_and(|m| m.has_source(&hash));
        let can_fetch_here = match self.conv.remote_sources {
            RemoteSources::Yes => !holders.is_empty(),
            RemoteSources::LeaderOnly => leader_has,
            RemoteSources::No => false,
        };
        let here_caps = satisfies(&|r| st.capabilities.contains(r));
        let here_ok = here_caps
            && !draining_here
            && (local_active.is_some() || (local_gen.is_none() && can_fetch_here));
        let target = if here_ok {
            Ok(Target::Local(local_active))
        } else if forced_local {
            if here_caps {
                Err(CreateError::InvalidActorSourceHash {
                    hash: hash.clone(),
                    detail: match self.conv.remote_sources {
                        RemoteSources::No => format!("is not loaded on {} and it does not fetch sources (--remote-sources no)", self.addr),
                        RemoteSources::LeaderOnly => format!("is not loaded on {} and the leader does not have it (--remote-sources leader-only)", self.addr),
                        RemoteSources::Yes => format!("is not active on {} nor on any member it knows", self.addr),
                    },
                })
            } else {
                Err(self.no_compatible(&st, spec, &requirements))
            }
        } else {
            let eligible: Vec<&String> = st
                .members
                .iter()
                .filter(|(_, m)| satisfies(&|r| m.info.capabilities.iter().any(|c| c == r)))
                .filter(|(a, m)| {
                    m.has_source(&hash)
                        || match m.info.remote_sources {
                            RemoteSources::Yes => !holders.is_empty() || local_active.is_some(),
                            RemoteSources::LeaderOnly => {
                                (leader_has && **a != self.conv.leader)
                                    || (self.is_leader() && local_active.is_some())
                            }
                            RemoteSources::No => false,
                        }
                })
                .map(|(a, _)| a)
                .collect();
            if eligible.is_empty() {
                Err(self.no_compatible(&st, spec, &requirements))
            } else {
                let i = self.next_placement.fetch_add(1, Ordering::Relaxed) % eligible.len();
                Ok(Target::Remote(eligible[i].clone()))
            }
        };
        let types = types.clone();
        Ok(Plan { hash, types, requirements, target })
    }

    fn no_compatible(&self, st: &State, spec: &CreateSpec, requirements: &[String]) -> CreateError {
        let mut nodes_considered = vec![self.addr.clone()];
        nodes_considered.extend(st.members.keys().cloned());
        CreateError::NoCompatibleSystemForActor {
            type_name: spec.type_name.clone(),
            requirements: requirements.to_vec(),
            nodes_considered,
        }
    }

    /// The address actor `id` gets at `target`.
    pub(crate) fn target_address(&self, target: &Target, id: u64) -> Address {
        match target {
            Target::Local(_) => self.address(id),
            Target::Remote(node) => Address { node: node.clone(), id },
        }
    }

    /// Registers and starts a planned create. Returns the new actor's address.
    pub(crate) fn commit_create(
        &self,
        id: u64,
        parent: Option<Address>,
        spec: CreateSpec,
        plan: Plan,
        target: Target,
        local: Option<&mut LocalQueue<'_>>,
    ) -> Result<Address, CreateError> {
        let addr = self.target_address(&target, id);
        let mut st = self.lock();
        if st.stopping {
            return Err(CreateError::ActorSystemShuttingDown);
        }
        if let Some(p) = parent.as_ref().filter(|p| self.is_local(p)) {
            if let Some(pr) = st.actors.get_mut(&p.id) {
                pr.children.insert(addr.clone());
            }
        }
        match target {
            Target::Remote(node) => {
                let mut holders: Vec<String> = st
                    .members
                    .iter()
                    .filter(|(_, m)| m.has_source(&plan.hash))
                    .map(|(a, _)| a.clone())
                    .collect();
                let active_here = st
                    .current
                    .get(&plan.hash)
                    .and_then(|g| st.versions.get(g))
                    .is_some_and(|v| v.state == VersionState::Active);
                if active_here {
                    holders.insert(0, self.addr.clone());
                }
                drop(st);
                let source = Some(SourceHint {
                    summary: SourceSummary { hash: plan.hash.clone(), types: plan.types },
                    holders,
                });
                let spec = CreateSpec { source_hash: Some(plan.hash), ..spec };
                match self.arc() {
                    Some(me) => {
                        let req = Request::PeerCreate { id, parent, spec, source };
                        self.peers.notify(&me, &node, req)
                    }
                    None => return Err(CreateError::ActorSystemShuttingDown),
                }
            }
            Target::Local(None) => {
                if let Some(name) = &spec.global_name {
                    st.names.insert(name.clone(), id);
                }
                let kind = ActorKind::Pending {
                    hash: plan.hash.clone(),
                    type_name: spec.type_name.clone(),
                    buffer: Vec::new(),
                };
                st.actors
                    .insert(id, ActorRec::new(kind, parent, spec.global_name.clone(), plan.requirements));
                drop(st);
                if let Some(me) = self.arc() {
                    self.rt.spawn(async move { me.fetch_then_create(id, plan.hash).await });
                }
            }
            Target::Local(Some(gen)) => {
                let Some(v) = st.versions.get_mut(&gen) else {
                    return Err(CreateError::InvalidActorSourceHash {
                        hash: plan.hash,
                        detail: "was unloaded meanwhile".into(),
                    });
                };
                v.live += 1;
                let tx = v.tx.clone();
                if let Some(name) = &spec.global_name {
                    st.names.insert(name.clone(), id);
                }
                let kind =
                    ActorKind::Plugin { gen, hash: plan.hash.clone(), type_name: spec.type_name.clone() };
                st.actors
                    .insert(id, ActorRec::new(kind, parent, spec.global_name.clone(), plan.requirements));
                let cmd = Cmd::Create { id, type_name: spec.type_name };
                match local {
                    Some(l) if l.gen == gen => l.queue.push_back(cmd),
                    _ => {
                        if let Some(tx) = tx {
                            // The executor outlives every actor it hosts (it retires only at
                            // live == 0), and we just counted this one, so this cannot fail.
                            let _ = tx.send(cmd);
                        }
                    }
                }
            }
        }
        Ok(addr)
    }

    /// A create requested by an actor, during its plugin call (on its version's thread):
    /// resolves and places it now, so that the address returned to the actor is where the
    /// child will live (or, for a global name already held, the holder). The work itself is
    /// an effect applied after the call returns; a failure then reaches the actor as
    /// `ChildActorExited`.
    pub(crate) fn prepare_actor_create(&self, id: u64, inherit: &str, spec: CreateSpec) -> (Address, Effect) {
        let mut plan = self.plan_create(&spec, Some(inherit.to_string()), false);
        if self.needs_directory_refresh(&plan) {
            // A version loaded elsewhere moments ago: ask the leader for the latest directory.
            let _ = self.rt.block_on(self.refresh_membership());
            plan = self.plan_create(&spec, Some(inherit.to_string()), false);
        }
        let plan = match plan {
            Ok(p) => p,
            Err(error) => return (self.address(id), Effect::CreateFailed { id, error }),
        };
        if let Some(name) = &spec.global_name {
            let candidate = plan.target.as_ref().ok().map(|t| self.target_address(t, id));
            if let Some(holder) = self.rt.block_on(self.claim_name(name, candidate.clone())) {
                if Some(&holder) != candidate.as_ref() {
                    return (holder, Effect::Nothing);
                }
            }
        }
        match &plan.target {
            Ok(t) => (self.target_address(t, id), Effect::Create { id, spec, plan }),
            Err(e) => {
                let error = e.clone();
                (self.address(id), Effect::CreateFailed { id, error })
            }
        }
    }

    fn needs_directory_refresh(&self, plan: &Result<Plan, CreateError>) -> bool {
        !self.is_leader()
            && matches!(plan, Err(CreateError::InvalidActorSourceHash { detail, .. }) if detail == "does not match any loaded source")
    }

    /// Creates a top-level actor for a client.
    pub async fn create_for_client(self: &Arc<Self>, mut spec: CreateSpec) -> Result<Response, ErrorReply> {
        let id = self.allocate_id();
        // A create through a group names the group's active version *now*; a global name that
        // mentions the group is bound to that version, so a deploy moves new requests to the
        // new version while the old one drains.
        if let Some(group) = spec.source_hash.clone().filter(|h| h.starts_with('@')) {
            if !self.lock().groups.contains_key(&group[1..]) && !self.is_leader() {
                let _ = self.refresh_membership().await;
            }
            let resolved =
                Self::resolve_hash(&self.lock(), &group).map_err(|e| refused(e.kind(), e.to_string()))?;
            spec.global_name = spec.global_name.map(|n| n.replace(&group, &resolved));
            spec.source_hash = Some(resolved);
        }
        let mut plan = self.plan_create(&spec, None, false);
        if self.needs_directory_refresh(&plan) {
            let _ = self.refresh_membership().await;
            plan = self.plan_create(&spec, None, false);
        }
        let plan = plan.map_err(|e| refused(e.kind(), e.to_string()))?;
        if let Some(name) = &spec.global_name {
            let candidate = plan.target.as_ref().ok().map(|t| self.target_address(t, id));
            if let Some(holder) = self.claim_name(name, candidate.clone()).await {
                if Some(&holder) != candidate.as_ref() {
                    return Ok(Response::Created { address: holder, hash: plan.hash, existing: true });
                }
            }
        }
        let target = plan.target.clone().map_err(|e| refused(e.kind(), e.to_string()))?;
        let hash = plan.hash.clone();
        let name = spec.global_name.clone();
        match self.commit_create(id, None, spec, plan, target, None) {
            Ok(address) => Ok(Response::Created { address, hash, existing: false }),
            Err(e) => {
                if let Some(name) = name {
                    self.release_name(&name, &self.address(id));
                }
                Err(refused(e.kind(), e.to_string()))
            }
        }
    }

    /// A peer placed an actor here.
    pub fn peer_create(
        &self,
        id: u64,
        parent: Option<Address>,
        spec: CreateSpec,
        source: Option<SourceHint>,
    ) {
        if let Some(hint) = source {
            // Learn where the version is, if our directory does not say yet.
            let mut st = self.lock();
            for h in &hint.holders {
                if let Some(m) = st.members.get_mut(h) {
                    if !m.has_source(&hint.summary.hash) {
                        m.info.sources.push(hint.summary.clone());
                    }
                }
            }
        }
        let name = spec.global_name.clone();
        let result = self.plan_create(&spec, None, true).and_then(|plan| {
            let target = plan.target.clone()?;
            self.commit_create(id, parent.clone(), spec, plan, target, None)
        });
        if let Err(e) = result {
            if let Some(name) = name {
                self.release_name(&name, &self.address(id));
            }
            self.create_failed(id, parent, e);
        }
    }

    /// Actor `id` could not be created: tell its parent why. `creator` names the parent of an
    /// actor that was refused before it was ever registered.
    pub(crate) fn create_failed(&self, id: u64, creator: Option<Address>, error: CreateError) {
        let mut st = self.lock();
        let (parent, buffered) = match st.actors.remove(&id) {
            Some(mut rec) => {
                forget_actor(&mut st, id, &rec);
                let buffered = match &mut rec.kind {
                    ActorKind::Pending { buffer, .. } => std::mem::take(buffer),
                    _ => Vec::new(),
                };
                (rec.parent, buffered)
            }
            None => (creator, Vec::new()),
        };
        let text = error.to_string();
        tombstone(&mut st, id, text.clone());
        let retire = retire_if_idle(&mut st);
        drop(st);
        for tx in retire {
            let _ = tx.send(Cmd::Retire);
        }
        tracing::info!(actor = id, "create failed: {text}");
        for m in buffered {
            self.poison(m, self.address(id), text.clone());
        }
        if let Some(parent) = parent {
            self.notify_parent(parent, self.address(id), ExitReason::CreateFailed(error));
        }
    }

    /// A `PeerCreate` could not reach `node`.
    pub(crate) fn remote_create_unreachable(
        &self,
        id: u64,
        node: &str,
        parent: Option<Address>,
        spec: &CreateSpec,
        why: &str,
    ) {
        tracing::info!(actor = id, %node, type_name = %spec.type_name, "create could not reach its node: {why}");
        if let Some(parent) = parent {
            self.notify_parent(
                parent,
                Address { node: node.to_string(), id },
                ExitReason::NodeLost { node: node.to_string() },
            );
        }
    }

    pub(crate) fn notify_parent(&self, parent: Address, child: Address, reason: ExitReason) {
        let p = Payload::System(SystemMessage::ChildActorExited { child, reason });
        self.route(Incoming { sender: None, payload: p }, &parent, None);
    }

    // ---- exit ----------------------------------------------------------------------------------

    /// Asks actor `id` (local) to exit, recursively, remembering why.
    pub(crate) fn request_exit(&self, id: u64, reason: ExitReason, local: Option<&mut LocalQueue<'_>>) {
        {
            let mut st = self.lock();
            match st.actors.get_mut(&id) {
                Some(rec) if rec.exit_reason.is_none() && !matches!(rec.kind, ActorKind::Client { .. }) => {
                    rec.exit_reason = Some(reason)
                }
                _ => return,
            }
        }
        let p = Payload::System(SystemMessage::ActorExitRequest { recursive: true });
        self.route(Incoming { sender: None, payload: p }, &self.address(id), local);
    }

    /// Actor `id` handled its exit request and was dropped.
    pub(crate) fn actor_exited(&self, id: u64, local: &mut LocalQueue<'_>) {
        let mut st = self.lock();
        let Some(rec) = st.actors.remove(&id) else {
            return;
        };
        forget_actor(&mut st, id, &rec);
        let reason = rec.exit_reason.clone().unwrap_or(ExitReason::Requested);
        tombstone(&mut st, id, format!("the actor exited ({reason})"));
        let retire = retire_if_idle(&mut st);
        drop(st);
        if let Some(name) = &rec.global_name {
            self.release_name(name, &self.address(id));
        }
        let exit = Payload::System(SystemMessage::ActorExitRequest { recursive: true });
        for child in &rec.children {
            // Children stop with their parent, wherever they run.
            if self.is_local(child) {
                self.request_exit(child.id, reason.clone(), Some(local));
            } else {
                self.route(Incoming { sender: None, payload: exit.clone() }, child, None);
            }
        }
        if let Some(parent) = rec.parent {
            self.notify_parent(parent, self.address(id), reason);
        }
        for tx in retire {
            let _ = tx.send(Cmd::Retire);
        }
    }

    pub(crate) fn call_info(&self, me: &Address) -> Option<CallInfo> {
        let st = self.lock();
        let rec = st.actors.get(&me.id)?;
        let ActorKind::Plugin { hash, type_name, .. } = &rec.kind else {
            return None;
        };
        Some(CallInfo {
            me: me.clone(),
            parent: rec.parent.clone(),
            global_name: rec.global_name.clone(),
            source_hash: hash.clone(),
            type_name: type_name.clone(),
            capabilities: st.capabilities.iter().cloned().collect(),
        })
    }

    /// A message to the node's own endpoint: the source authority's answers, watch requests.
    fn admin_message(&self, m: Incoming) {
        match m.payload {
            Payload::System(SystemMessage::ValidatedSource { hash, accepted, reason }) => {
                let mut st = self.lock();
                let from_authority =
                    matches!((&st.authority, &m.sender), (Authority::Actor(a), Some(s)) if a == s);
                if !from_authority {
                    tracing::warn!(sender = ?m.sender, "ignored ValidatedSource from an actor that is not the source authority");
                    return;
                }
                if let Some(p) = st.validations.remove(&hash) {
                    let _ = p.reply.send(if accepted {
                        Ok(())
                    } else {
                        Err(reason.unwrap_or_else(|| "no reason given".into()))
                    });
                } else {
                    tracing::warn!(%hash, "ValidatedSource for a hash that is not being validated (ignored)");
                }
            }
            Payload::System(SystemMessage::NotifyOnSystemRegistrationChanges { enable }) => {
                if let Some(w) = m.sender {
                    self.watch(w, enable);
                }
            }
            Payload::System(SystemMessage::PoisonMessage { target, details, .. }) => {
                // The authority is gone: fail every pending validation now rather than at the
                // timeout, and stop using it.
                let mut st = self.lock();
                if matches!(&st.authority, Authority::Actor(a) if *a == target) {
                    st.authority = Authority::None;
                    for (_, p) in st.validations.drain() {
                        let _ =
                            p.reply.send(Err(format!("the source authority {target} is gone: {details}")));
                    }
                }
            }
            other => tracing::debug!("admin endpoint ignored {other:?}"),
        }
    }
}

/// Removes an actor's name, watch and parent link and counts it out of its version.
pub(crate) fn forget_actor(st: &mut State, id: u64, rec: &ActorRec) {
    if let Some(n) = &rec.global_name {
        if st.names.get(n) == Some(&id) {
            st.names.remove(n);
        }
    }
    if let Some(p) = &rec.parent {
        if let Some(pr) = st.actors.get_mut(&p.id) {
            pr.children.retain(|c| c.id != id);
        }
    }
    if let ActorKind::Plugin { gen, .. } = &rec.kind {
        if let Some(v) = st.versions.get_mut(gen) {
            v.live = v.live.saturating_sub(1);
        }
    }
    st.watchers.retain(|w| w.id != id);
    if matches!(&st.authority, Authority::Actor(a) if a.id == id) {
        st.authority = Authority::None;
        for (_, p) in st.validations.drain() {
            let _ = p.reply.send(Err("the source authority exited".into()));
        }
    }
}

pub(crate) fn tombstone(st: &mut State, id: u64, why: String) {
    st.tombstones.insert(id, why);
    st.tombstone_order.push_back(id);
    while st.tombstone_order.len() > TOMBSTONES {
        if let Some(old) = st.tombstone_order.pop_front() {
            st.tombstones.remove(&old);
        }
    }
}

/// Draining versions with no live actors left: returns their executors' queues to retire.
pub(crate) fn retire_if_idle(st: &mut State) -> Vec<std::sync::mpsc::Sender<Cmd>> {
    let mut out = Vec::new();
    for v in st.versions.values_mut() {
        if v.state == VersionState::Draining && v.live == 0 {
            if let Some(tx) = v.tx.take() {
                out.push(tx);
            }
        }
    }
    out
}
