//! The node: actor table, versions, routing, loads and unloads.
//!
//! [`Node`] is the handle the admin server and the binary hold; [`Shared`] is the state every
//! version host thread and every connection task shares. One mutex guards the tables in
//! [`State`]; it is held only for table updates and never while plugin code runs (plugin code
//! runs on version executors, which call back into `Shared` between plugin calls).
//!
//! Life of a version: `validating` (the source authority decides) → `active` (creates allowed)
//! → `draining` (unloaded: no new actors; live ones keep serving) → gone (executor joined,
//! libraries closed, files deleted). Each load of a hash gets a new *generation* and its own
//! store path, so a reload can never revive a closing instance of the same file.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};
use troupe_actor_abi::abi;
use troupe_actor_abi::message::{
    Address, CallInfo, CreateError, CreateSpec, ExitReason, Incoming, Payload, SystemMessage,
};

use crate::archive::{self, ArchiveLimits};
use crate::protocol::{ErrorReply, Response};
use crate::status::{ActorStatus, GoneStatus, StatusReport, VersionStatus};
use crate::version::{self, Cmd, Effect, LocalQueue};

/// How long a source authority actor may take to answer a `ValidateSource`.
const AUTHORITY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many exited actors are remembered, so that a message to one comes back with the reason
/// instead of a bare "unknown actor". Bounded: enough for any burst a test or the demo makes.
const TOMBSTONES: usize = 4096;
/// How many unloaded versions `status` lists.
const GONE_HISTORY: usize = 64;
/// The shortest hash prefix accepted (as Git's abbreviations, long enough to be unambiguous in
/// practice, short enough to type).
pub const MIN_HASH_PREFIX: usize = 8;

/// Which source authority a node starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorityConfig {
    /// Every load is rejected until an actor registers itself as authority.
    None,
    /// Every well-formed source is accepted (what `troupe start` uses by default).
    AcceptAll,
}

/// How a node is configured.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The admin address clients and actors know the node by (`host:port`).
    pub addr: String,
    /// Capability names.
    pub capabilities: Vec<String>,
    /// Where the node keeps its store (created; emptied at start and at stop).
    pub state_dir: PathBuf,
    /// The initial source authority.
    pub authority: AuthorityConfig,
}

enum Authority {
    None,
    AcceptAll,
    Actor(Address),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VersionState {
    Validating,
    Active,
    Draining,
}

impl VersionState {
    fn name(self) -> &'static str {
        match self {
            VersionState::Validating => "validating",
            VersionState::Active => "active",
            VersionState::Draining => "draining",
        }
    }
}

struct VersionRec {
    hash: String,
    state: VersionState,
    package: String,
    info: String,
    /// Set once the host runs.
    tx: Option<std::sync::mpsc::Sender<Cmd>>,
    live: usize,
    /// `module.Type` → declared requirements.
    types: BTreeMap<String, Vec<String>>,
    files: Vec<String>,
    /// Callers waiting for this generation to be gone (unload with grace, stop).
    gone_waiters: Vec<oneshot::Sender<()>>,
    /// Set when unloaded during validation: the load is abandoned.
    cancelled: bool,
}

enum ActorKind {
    Plugin { gen: u64, hash: String, type_name: String },
    Client { tx: mpsc::UnboundedSender<Incoming> },
}

struct ActorRec {
    kind: ActorKind,
    parent: Option<Address>,
    children: BTreeSet<u64>,
    global_name: Option<String>,
    requirements: Vec<String>,
    /// Why the actor is being stopped, once it is.
    exit_reason: Option<ExitReason>,
}

struct PendingValidation {
    reply: oneshot::Sender<Result<(), String>>,
}

struct State {
    actors: HashMap<u64, ActorRec>,
    versions: HashMap<u64, VersionRec>,
    /// hash → generation of its validating or active version (at most one per hash).
    current: HashMap<String, u64>,
    names: HashMap<String, u64>,
    tombstones: HashMap<u64, String>,
    tombstone_order: VecDeque<u64>,
    gone: VecDeque<GoneStatus>,
    authority: Authority,
    validations: HashMap<String, PendingValidation>,
    capabilities: BTreeSet<String>,
    stopping: bool,
}

/// State shared by the node's tasks and version threads.
pub struct Shared {
    /// The node's admin address.
    pub addr: String,
    store: PathBuf,
    next_id: AtomicU64,
    next_gen: AtomicU64,
    st: Mutex<State>,
    rt: tokio::runtime::Handle,
    /// The node's own endpoint, through which the source authority answers.
    admin_id: u64,
    /// Signalled when the node has stopped.
    pub stopped: Notify,
    /// Our own `Arc`, weakly, for timers that must not keep the node alive.
    weak: std::sync::Weak<Shared>,
}

/// A running node.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

impl Node {
    /// Creates a node (its store is emptied and created). Must be called inside a tokio runtime.
    pub fn new(config: NodeConfig) -> std::io::Result<Node> {
        let store = config.state_dir.join("store");
        if store.exists() {
            // Left over by a node that was killed: nothing in it is loaded by anyone.
            std::fs::remove_dir_all(&store)?;
        }
        std::fs::create_dir_all(&store)?;
        // Ids start from the clock so that a restarted node never reuses an address a client may
        // still hold.
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1)
            << 16;
        let authority = match config.authority {
            AuthorityConfig::None => Authority::None,
            AuthorityConfig::AcceptAll => Authority::AcceptAll,
        };
        let state = State {
            actors: HashMap::new(),
            versions: HashMap::new(),
            current: HashMap::new(),
            names: HashMap::new(),
            tombstones: HashMap::new(),
            tombstone_order: VecDeque::new(),
            gone: VecDeque::new(),
            authority,
            validations: HashMap::new(),
            capabilities: config.capabilities.iter().map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect(),
            stopping: false,
        };
        let shared = Arc::new_cyclic(|weak| Shared {
            weak: weak.clone(),
            addr: config.addr,
            store,
            next_id: AtomicU64::new(base + 1),
            next_gen: AtomicU64::new(1),
            st: Mutex::new(state),
            rt: tokio::runtime::Handle::current(),
            admin_id: base,
            stopped: Notify::new(),
        });
        // The admin endpoint: replies from a source authority actor arrive here.
        let (tx, mut rx) = mpsc::unbounded_channel::<Incoming>();
        shared.lock().actors.insert(
            base,
            ActorRec {
                kind: ActorKind::Client { tx },
                parent: None,
                children: BTreeSet::new(),
                global_name: None,
                requirements: Vec::new(),
                exit_reason: None,
            },
        );
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let Some(shared) = weak.upgrade() else { break };
                shared.admin_message(m);
            }
        });
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

fn refused(code: &str, message: impl Into<String>) -> ErrorReply {
    ErrorReply::refused(code, message)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a node bug panicked mid-update; the tables are still the best
        // information we have, and refusing every later request would lose more.
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn allocate_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn address(&self, id: u64) -> Address {
        Address { node: self.addr.clone(), id }
    }

    fn is_local(&self, a: &Address) -> bool {
        a.node == self.addr
    }

    // ---- clients --------------------------------------------------------------------------

    /// Registers a client connection's endpoint; messages to it go to `tx`.
    pub fn register_client(&self, tx: mpsc::UnboundedSender<Incoming>) -> Address {
        let id = self.allocate_id();
        self.lock().actors.insert(
            id,
            ActorRec {
                kind: ActorKind::Client { tx },
                parent: None,
                children: BTreeSet::new(),
                global_name: None,
                requirements: Vec::new(),
                exit_reason: None,
            },
        );
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

    fn route(&self, msg: Incoming, to: &Address, local: Option<&mut LocalQueue<'_>>) {
        if !self.is_local(to) {
            // Conventions (other nodes) are not part of this node yet.
            let details = format!("actor {to} is on node {}, which this node is not connected to", to.node);
            self.poison(msg, to.clone(), details);
            return;
        }
        let st = self.lock();
        match st.actors.get(&to.id).map(|r| &r.kind) {
            Some(ActorKind::Plugin { gen, .. }) => {
                if let Some(l) = local {
                    if l.gen == *gen {
                        l.queue.push_back(Cmd::Deliver { id: to.id, msg });
                        return;
                    }
                }
                let tx = st.versions.get(gen).and_then(|v| v.tx.clone());
                drop(st);
                match tx {
                    Some(tx) => {
                        if let Err(e) = tx.send(Cmd::Deliver { id: to.id, msg }) {
                            if let Cmd::Deliver { msg, .. } = e.0 {
                                self.poison(msg, to.clone(), "its version host has stopped".into());
                            }
                        }
                    }
                    None => self.poison(msg, to.clone(), "its version is not running".into()),
                }
            }
            Some(ActorKind::Client { tx }) => {
                let tx = tx.clone();
                drop(st);
                let _ = tx.send(msg);
            }
            None => {
                let details = st
                    .tombstones
                    .get(&to.id)
                    .cloned()
                    .unwrap_or_else(|| format!("no actor {to} exists on this node"));
                drop(st);
                self.poison(msg, to.clone(), details);
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
            (_, payload) => tracing::debug!(%target, "dropped undeliverable message {payload:?}: {details}"),
        }
    }

    /// A version executor got a message for an actor it does not have.
    pub(crate) fn undeliverable(&self, id: u64, msg: Incoming) {
        let details = self
            .lock()
            .tombstones
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "the actor does not exist".into());
        self.poison(msg, self.address(id), details);
    }

    // ---- effects from plugin calls ----------------------------------------------------------

    pub(crate) fn apply_effects(&self, me: u64, effects: Vec<Effect>, local: &mut LocalQueue<'_>) {
        let me_addr = self.address(me);
        for e in effects {
            match e {
                Effect::Send { to, payload } => {
                    self.route(Incoming { sender: Some(me_addr.clone()), payload }, &to, Some(local))
                }
                Effect::Create { id, spec } => {
                    let inherit = self.lock().actors.get(&me).and_then(|r| match &r.kind {
                        ActorKind::Plugin { hash, .. } => Some(hash.clone()),
                        ActorKind::Client { .. } => None,
                    });
                    if let Err(e) = self.create_actor(id, Some(me_addr.clone()), spec, inherit, Some(local)) {
                        self.create_failed(id, Some(me_addr.clone()), e);
                    }
                }
                Effect::ExitSelf => {
                    self.request_exit(me, ExitReason::Requested, Some(local));
                }
                Effect::Wakeup { delay_ms, payload } => {
                    let weak = self.weak_self();
                    let to = me_addr.clone();
                    self.rt.spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        if let Some(s) = weak.and_then(|w| w.upgrade()) {
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

    fn weak_self(&self) -> Option<std::sync::Weak<Shared>> {
        Some(self.weak.clone())
    }

    // ---- create / exit ----------------------------------------------------------------------

    /// Resolves a full hash or unique prefix among versions known to this node.
    fn resolve_hash(st: &State, hash: &str) -> Result<String, CreateError> {
        let h = hash.trim().to_ascii_lowercase();
        if h.len() == 64 {
            return Ok(h);
        }
        if h.len() < MIN_HASH_PREFIX || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(CreateError::InvalidActorSourceHash {
                hash: hash.into(),
                detail: format!("is not a sha256 hash or a prefix of at least {MIN_HASH_PREFIX} hex digits"),
            });
        }
        let mut found: BTreeSet<&String> = st.versions.values().map(|v| &v.hash).filter(|x| x.starts_with(&h)).collect();
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

    /// Creates actor `id` (already allocated). On success the actor is queued for construction
    /// on its version's executor; returns the address of the actor that now answers (a live
    /// actor with the same global name, or the new one) and the version's full hash.
    fn create_actor(
        &self,
        id: u64,
        parent: Option<Address>,
        spec: CreateSpec,
        inherit: Option<String>,
        local: Option<&mut LocalQueue<'_>>,
    ) -> Result<(Address, String, bool), CreateError> {
        let mut st = self.lock();
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
        let Some(&gen) = st.current.get(&hash) else {
            let detail = if st.versions.values().any(|v| v.hash == hash && v.state == VersionState::Draining) {
                "was unloaded: its version is draining and creates no new actors"
            } else {
                "does not match any loaded source"
            };
            return Err(CreateError::InvalidActorSourceHash { hash, detail: detail.into() });
        };
        let v = &st.versions[&gen];
        if v.state != VersionState::Active {
            return Err(CreateError::InvalidActorSourceHash {
                hash,
                detail: format!("is {}, not active", v.state.name()),
            });
        }
        let Some(declared) = v.types.get(&spec.type_name) else {
            let known: Vec<&String> = v.types.keys().collect();
            let detail = if spec.type_name.contains('.') {
                format!(
                    "version {} exports no such type (it has: {})",
                    &hash[..MIN_HASH_PREFIX],
                    known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )
            } else {
                "an actor type is named module.Type".to_string()
            };
            return Err(CreateError::InvalidActorSpecification { type_name: spec.type_name, detail });
        };
        let mut requirements = declared.clone();
        for r in &spec.requirements {
            if !requirements.contains(r) {
                requirements.push(r.clone());
            }
        }
        if let Some(name) = &spec.global_name {
            if let Some(&existing) = st.names.get(name) {
                if st.actors.contains_key(&existing) {
                    return Ok((self.address(existing), hash, true));
                }
            }
        }
        if !requirements.iter().all(|r| st.capabilities.contains(r)) {
            return Err(CreateError::NoCompatibleSystemForActor {
                type_name: spec.type_name,
                requirements,
                nodes_considered: vec![self.addr.clone()],
            });
        }
        let tx = v.tx.clone();
        if let Some(v) = st.versions.get_mut(&gen) {
            v.live += 1;
        }
        if let Some(p) = parent.as_ref().filter(|p| self.is_local(p)) {
            if let Some(pr) = st.actors.get_mut(&p.id) {
                pr.children.insert(id);
            }
        }
        if let Some(name) = &spec.global_name {
            st.names.insert(name.clone(), id);
        }
        st.actors.insert(
            id,
            ActorRec {
                kind: ActorKind::Plugin { gen, hash: hash.clone(), type_name: spec.type_name.clone() },
                parent,
                children: BTreeSet::new(),
                global_name: spec.global_name.clone(),
                requirements,
                exit_reason: None,
            },
        );
        let cmd = Cmd::Create { id, type_name: spec.type_name };
        match local {
            Some(l) if l.gen == gen => l.queue.push_back(cmd),
            _ => {
                if let Some(tx) = tx {
                    // The executor outlives every actor it hosts (it retires only at live == 0),
                    // and we just counted this one, so the send cannot fail.
                    let _ = tx.send(cmd);
                }
            }
        }
        Ok((self.address(id), hash, false))
    }

    /// Creates a top-level actor for a client.
    pub fn create_for_client(&self, spec: CreateSpec) -> Result<Response, ErrorReply> {
        let id = self.allocate_id();
        match self.create_actor(id, None, spec, None, None) {
            Ok((address, hash, existing)) => Ok(Response::Created { address, hash, existing }),
            Err(e) => Err(refused(e.kind(), e.to_string())),
        }
    }

    /// Actor `id` could not be created: tell its parent why. `creator` names the parent of an
    /// actor that was refused before it was ever registered.
    pub(crate) fn create_failed(&self, id: u64, creator: Option<Address>, error: CreateError) {
        let mut st = self.lock();
        let parent = match st.actors.remove(&id) {
            Some(rec) => {
                forget_actor(&mut st, id, &rec);
                rec.parent
            }
            None => creator,
        };
        let text = error.to_string();
        tombstone(&mut st, id, text.clone());
        let retire = self.retire_if_idle(&mut st);
        drop(st);
        for tx in retire {
            let _ = tx.send(Cmd::Retire);
        }
        tracing::info!(actor = id, "create failed: {text}");
        if let Some(parent) = parent {
            self.notify_parent(parent, id, ExitReason::CreateFailed(error));
        }
    }

    fn notify_parent(&self, parent: Address, child: u64, reason: ExitReason) {
        let p = Payload::System(SystemMessage::ChildActorExited { child: self.address(child), reason });
        self.route(Incoming { sender: None, payload: p }, &parent, None);
    }

    /// Asks actor `id` to exit (recursively), remembering why.
    fn request_exit(&self, id: u64, reason: ExitReason, local: Option<&mut LocalQueue<'_>>) {
        {
            let mut st = self.lock();
            match st.actors.get_mut(&id) {
                Some(rec) if rec.exit_reason.is_none() => rec.exit_reason = Some(reason),
                Some(_) => return,
                None => return,
            }
        }
        let p = Payload::System(SystemMessage::ActorExitRequest { recursive: true });
        self.route(Incoming { sender: None, payload: p }, &self.address(id), local);
    }

    /// Actor `id` handled its exit request and was dropped.
    pub(crate) fn actor_exited(&self, id: u64, local: &mut LocalQueue<'_>) {
        let mut st = self.lock();
        let Some(rec) = st.actors.remove(&id) else { return };
        forget_actor(&mut st, id, &rec);
        let reason = rec.exit_reason.clone().unwrap_or(ExitReason::Requested);
        tombstone(&mut st, id, format!("the actor exited ({reason})"));
        let retire = self.retire_if_idle(&mut st);
        drop(st);
        for child in &rec.children {
            // Children stop with their parent; they report to it, which is gone, so their
            // ChildActorExited is dropped quietly.
            self.request_exit(*child, reason.clone(), Some(local));
        }
        if let Some(parent) = rec.parent {
            self.notify_parent(parent, id, reason);
        }
        for tx in retire {
            let _ = tx.send(Cmd::Retire);
        }
    }

    /// Draining versions with no live actors left: returns their executors' queues to retire.
    fn retire_if_idle(&self, st: &mut State) -> Vec<std::sync::mpsc::Sender<Cmd>> {
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

    pub(crate) fn call_info(&self, me: &Address) -> Option<CallInfo> {
        let st = self.lock();
        let rec = st.actors.get(&me.id)?;
        let ActorKind::Plugin { hash, type_name, .. } = &rec.kind else { return None };
        Some(CallInfo {
            me: me.clone(),
            parent: rec.parent.clone(),
            global_name: rec.global_name.clone(),
            source_hash: hash.clone(),
            type_name: type_name.clone(),
            capabilities: st.capabilities.iter().cloned().collect(),
        })
    }

    // ---- loading ------------------------------------------------------------------------------

    /// Validates and loads a zip; answers once the version is active or rejected.
    pub async fn load(self: &Arc<Self>, zip: Vec<u8>, info: String) -> Result<Response, ErrorReply> {
        let source = tokio::task::spawn_blocking(move || archive::open(&zip, &ArchiveLimits::default()))
            .await
            .map_err(|e| refused("internal", format!("archive reader failed: {e}")))?
            .map_err(|e| refused(e.kind(), format!("rejected: {e}")))?;
        let m = &source.manifest;
        if m.package.abi_version != abi::ABI_VERSION {
            return Err(refused(
                "abi_version",
                format!(
                    "rejected: the source was packed for plugin ABI version {}, this node speaks {} — rebuild it against this troupe-actor-abi",
                    m.package.abi_version,
                    abi::ABI_VERSION
                ),
            ));
        }
        if m.package.msg_schema != abi::MSG_SCHEMA {
            return Err(refused(
                "msg_schema",
                format!("rejected: message schema {} (this node speaks {})", m.package.msg_schema, abi::MSG_SCHEMA),
            ));
        }
        if m.package.target != crate::TARGET {
            return Err(refused(
                "target",
                format!("rejected: built for {}, this node runs on {}", m.package.target, crate::TARGET),
            ));
        }
        let hash = source.hash.clone();
        let gen = self.next_gen.fetch_add(1, Ordering::Relaxed);
        let types: BTreeMap<String, Vec<String>> = m
            .cdylibs
            .iter()
            .flat_map(|c| c.actors.iter().map(|a| (a.type_name.clone(), a.requires.clone())))
            .collect();
        let package = format!("{} {}", m.package.name, m.package.version);
        let authority_addr;
        {
            let mut st = self.lock();
            if st.stopping {
                return Err(ErrorReply {
                    kind: crate::protocol::ErrorKind::Unavailable,
                    code: "stopping".into(),
                    message: "the node is stopping".into(),
                });
            }
            if let Some(g) = st.current.get(&hash) {
                let v = &st.versions[g];
                return match v.state {
                    VersionState::Active => Ok(Response::Loaded { hash, already_active: true }),
                    _ => Err(refused("busy", format!("{hash} is already being validated; wait for that load to finish"))),
                };
            }
            authority_addr = match &st.authority {
                Authority::None => {
                    return Err(refused(
                        "no_authority",
                        "rejected: no source authority is registered on this node, so nothing can be loaded — start the node with the default accept-all authority (troupe start) or have an actor register itself",
                    ))
                }
                Authority::AcceptAll => None,
                Authority::Actor(a) => Some(a.clone()),
            };
            st.current.insert(hash.clone(), gen);
            st.versions.insert(
                gen,
                VersionRec {
                    hash: hash.clone(),
                    state: VersionState::Validating,
                    package: package.clone(),
                    info: info.clone(),
                    tx: None,
                    live: 0,
                    types: types.clone(),
                    files: m.cdylibs.iter().map(|c| c.file.clone()).collect(),
                    gone_waiters: Vec::new(),
                    cancelled: false,
                },
            );
        }
        let result = self.load_validated(&source, gen, authority_addr, info).await;
        if let Err(e) = &result {
            let mut st = self.lock();
            if let Some(v) = st.versions.remove(&gen) {
                for w in v.gone_waiters {
                    let _ = w.send(());
                }
            }
            if st.current.get(&hash) == Some(&gen) {
                st.current.remove(&hash);
            }
            tracing::info!(%hash, "load rejected: {}", e.message);
        }
        result
    }

    async fn load_validated(
        self: &Arc<Self>,
        source: &archive::Source,
        gen: u64,
        authority: Option<Address>,
        info: String,
    ) -> Result<Response, ErrorReply> {
        let hash = source.hash.clone();
        if let Some(auth) = authority {
            let (tx, rx) = oneshot::channel();
            self.lock().validations.insert(hash.clone(), PendingValidation { reply: tx });
            let ask = SystemMessage::ValidateSource {
                hash: hash.clone(),
                info,
                package: source.manifest.package.name.clone(),
                version: source.manifest.package.version.clone(),
                actor_types: source.manifest.cdylibs.iter().flat_map(|c| c.actors.iter().map(|a| a.type_name.clone())).collect(),
            };
            self.send(Some(self.address(self.admin_id)), &auth, Payload::System(ask));
            let answer = tokio::time::timeout(AUTHORITY_TIMEOUT, rx).await;
            self.lock().validations.remove(&hash);
            match answer {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(reason))) => return Err(refused("authority_rejected", format!("rejected by the source authority: {reason}"))),
                Ok(Err(_)) | Err(_) => {
                    return Err(refused(
                        "authority_timeout",
                        format!("rejected: the source authority {auth} did not answer within {}s", AUTHORITY_TIMEOUT.as_secs()),
                    ))
                }
            }
        }
        if self.lock().versions.get(&gen).is_none_or(|v| v.cancelled) {
            return Err(refused("unloaded", format!("{hash} was unloaded while it was being validated")));
        }
        // Write every library to a path unique to (hash, generation).
        let dir = self.store.join(&hash).join(gen.to_string());
        let files: Vec<(String, Vec<u8>)> = source.files.iter().map(|f| (f.name.clone(), f.bytes.clone())).collect();
        let dir2 = dir.clone();
        let paths = tokio::task::spawn_blocking(move || write_files(&dir2, &files))
            .await
            .map_err(|e| refused("internal", format!("store writer failed: {e}")))?
            .map_err(|e| refused("store", format!("cannot write to the store {}: {e}", dir.display())))?;
        let me = self.clone();
        let h2 = hash.clone();
        let started = tokio::task::spawn_blocking(move || version::start(me, h2, gen, paths, dir))
            .await
            .map_err(|e| refused("internal", format!("version host failed: {e}")))?;
        let (tx, infos) = started.map_err(|e| refused("plugin", format!("rejected: {e}")))?;
        // The manifest was written by `troupe pack` from the libraries' roots; insist they agree.
        let exported: BTreeMap<String, Vec<String>> = infos
            .iter()
            .flat_map(|i| i.actor_types.iter().map(|t| (t.name.clone(), t.requirements.clone())))
            .collect();
        let mut st = self.lock();
        let Some(v) = st.versions.get_mut(&gen) else {
            let _ = tx.send(Cmd::Retire);
            return Err(refused("unloaded", format!("{hash} was unloaded while it was being loaded")));
        };
        if exported != v.types {
            let _ = tx.send(Cmd::Retire);
            return Err(refused(
                "manifest_mismatch",
                format!("rejected: the manifest's actor types {:?} differ from what the libraries export {:?} — repack with troupe pack", v.types, exported),
            ));
        }
        if v.cancelled {
            let _ = tx.send(Cmd::Retire);
            return Err(refused("unloaded", format!("{hash} was unloaded while it was being loaded")));
        }
        v.tx = Some(tx);
        v.state = VersionState::Active;
        tracing::info!(%hash, generation = gen, package = %v.package, "source loaded");
        Ok(Response::Loaded { hash, already_active: false })
    }

    /// A message to the node's own endpoint: the source authority's answers.
    fn admin_message(&self, m: Incoming) {
        match m.payload {
            Payload::System(SystemMessage::ValidatedSource { hash, accepted, reason }) => {
                let mut st = self.lock();
                let from_authority = matches!((&st.authority, &m.sender), (Authority::Actor(a), Some(s)) if a == s);
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
            Payload::System(SystemMessage::PoisonMessage { target, details, .. }) => {
                // The authority is gone: fail every pending validation now rather than at the
                // timeout, and stop using it.
                let mut st = self.lock();
                if matches!(&st.authority, Authority::Actor(a) if *a == target) {
                    st.authority = Authority::None;
                    for (_, p) in st.validations.drain() {
                        let _ = p.reply.send(Err(format!("the source authority {target} is gone: {details}")));
                    }
                }
            }
            other => tracing::debug!("admin endpoint ignored {other:?}"),
        }
    }

    /// Unloads a version: it turns draining, and is really unloaded when its last actor exits.
    /// With a grace period, actors still alive after it are asked to exit and the answer waits
    /// until the version is gone.
    pub async fn unload(self: &Arc<Self>, hash: &str, grace: Option<Duration>) -> Result<Response, ErrorReply> {
        let (hash, gen, live, waiter, retire) = {
            let mut st = self.lock();
            let hash = Self::resolve_hash(&st, hash).map_err(|e| refused(e.kind(), e.to_string()))?;
            let gen = match st.current.remove(&hash) {
                Some(g) => g,
                None => {
                    // Unloading again a version that is already draining: apply the grace
                    // period (if any) to it.
                    let draining = st.versions.iter().find(|(_, v)| v.hash == hash && v.state == VersionState::Draining);
                    match draining {
                        Some((g, _)) => *g,
                        None if st.gone.iter().any(|g| g.hash == hash) => {
                            return Ok(Response::Unloaded { hash, live_actors: 0, gone: true });
                        }
                        None => {
                            return Err(refused(
                                "InvalidActorSourceHash",
                                format!("InvalidActorSourceHash: source hash {hash} does not match any loaded source"),
                            ))
                        }
                    }
                }
            };
            let Some(v) = st.versions.get_mut(&gen) else {
                return Err(refused("internal", "version table out of step"));
            };
            if v.state == VersionState::Validating {
                // Thespian crashed here; we abandon the load, and its caller is told.
                v.cancelled = true;
                if let Some(p) = st.validations.remove(&hash) {
                    let _ = p.reply.send(Err("the source was unloaded while being validated".into()));
                }
                return Ok(Response::Unloaded { hash, live_actors: 0, gone: true });
            }
            v.state = VersionState::Draining;
            let live = v.live;
            let (wtx, wrx) = oneshot::channel();
            v.gone_waiters.push(wtx);
            let retire = self.retire_if_idle(&mut st);
            tracing::info!(%hash, generation = gen, live, "unloading: version is draining");
            (hash, gen, live, wrx, retire)
        };
        for tx in retire {
            let _ = tx.send(Cmd::Retire);
        }
        if live == 0 {
            let _ = waiter.await;
            return Ok(Response::Unloaded { hash, live_actors: 0, gone: true });
        }
        let Some(grace) = grace else {
            return Ok(Response::Unloaded { hash, live_actors: live, gone: false });
        };
        let mut waiter = waiter;
        if tokio::time::timeout(grace, &mut waiter).await.is_ok() {
            return Ok(Response::Unloaded { hash, live_actors: 0, gone: true });
        }
        let stragglers: Vec<u64> = {
            let st = self.lock();
            st.actors
                .iter()
                .filter(|(_, r)| matches!(&r.kind, ActorKind::Plugin { gen: g, .. } if *g == gen))
                .map(|(id, _)| *id)
                .collect()
        };
        tracing::info!(%hash, count = stragglers.len(), "grace period over: asking the remaining actors to exit");
        for id in stragglers {
            self.request_exit(id, ExitReason::Unloaded, None);
        }
        let _ = waiter.await;
        Ok(Response::Unloaded { hash, live_actors: 0, gone: true })
    }

    /// The version host of `gen` has exited and its files are gone.
    pub(crate) fn version_gone(&self, hash: &str, gen: u64, close_time: Duration) {
        let mut st = self.lock();
        if let Some(v) = st.versions.remove(&gen) {
            for w in v.gone_waiters {
                let _ = w.send(());
            }
            if st.current.get(hash) == Some(&gen) {
                st.current.remove(hash);
            }
            // Only versions that were really running count as unloaded.
            if v.state == VersionState::Draining {
                st.gone.push_back(GoneStatus {
                    hash: hash.to_string(),
                    generation: gen,
                    unload_ms: close_time.as_secs_f64() * 1000.0,
                });
                while st.gone.len() > GONE_HISTORY {
                    st.gone.pop_front();
                }
                tracing::info!(%hash, generation = gen, "version unloaded: library closed and files deleted");
            }
        }
        if st.stopping && st.versions.is_empty() {
            self.stopped.notify_waiters();
        }
    }

    // ---- capabilities ----------------------------------------------------------------------------

    /// Adds or removes a capability; actors whose requirements no longer hold are asked to exit.
    pub fn change_capability(&self, add: bool, name: &str) -> Result<Response, ErrorReply> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ErrorReply::bad_request("usage", "a capability name cannot be empty"));
        }
        let (caps, victims) = {
            let mut st = self.lock();
            if add {
                st.capabilities.insert(name.to_string());
            } else {
                st.capabilities.remove(name);
            }
            let caps: Vec<String> = st.capabilities.iter().cloned().collect();
            let victims: Vec<(u64, Vec<String>)> = st
                .actors
                .iter()
                .filter(|(_, r)| r.exit_reason.is_none() && !r.requirements.iter().all(|q| st.capabilities.contains(q)))
                .map(|(id, r)| (*id, r.requirements.clone()))
                .collect();
            (caps, victims)
        };
        let n = victims.len();
        for (id, requirements) in victims {
            self.request_exit(id, ExitReason::CapabilityLost { requirements }, None);
        }
        tracing::info!(capabilities = ?caps, stopped = n, "capabilities changed");
        Ok(Response::Capabilities { capabilities: caps, stopped_actors: n })
    }

    // ---- status and stop -------------------------------------------------------------------------

    /// A snapshot for `troupe status`.
    pub fn status(&self) -> StatusReport {
        let st = self.lock();
        let mut versions: Vec<VersionStatus> = st
            .versions
            .iter()
            .map(|(gen, v)| VersionStatus {
                hash: v.hash.clone(),
                generation: *gen,
                state: v.state.name().into(),
                package: v.package.clone(),
                info: v.info.clone(),
                live_actors: v.live,
                actor_types: v.types.clone(),
                files: v.files.iter().map(|f| self.store.join(&v.hash).join(gen.to_string()).join(f).display().to_string()).collect(),
            })
            .collect();
        versions.sort_by_key(|v| v.generation);
        let mut actors: Vec<ActorStatus> = st
            .actors
            .iter()
            .filter_map(|(id, r)| match &r.kind {
                ActorKind::Plugin { hash, type_name, .. } => Some(ActorStatus {
                    address: self.address(*id),
                    type_name: type_name.clone(),
                    hash: hash.clone(),
                    parent: r.parent.clone(),
                    global_name: r.global_name.clone(),
                }),
                ActorKind::Client { .. } => None,
            })
            .collect();
        actors.sort_by_key(|a| a.address.id);
        StatusReport {
            node: self.addr.clone(),
            pid: std::process::id(),
            capabilities: st.capabilities.iter().cloned().collect(),
            authority: match &st.authority {
                Authority::None => "none".into(),
                Authority::AcceptAll => "accept-all".into(),
                Authority::Actor(a) => format!("actor {a}"),
            },
            store: self.store.display().to_string(),
            versions,
            gone: st.gone.iter().cloned().collect(),
            actors,
            global_names: st.names.iter().map(|(n, id)| (n.clone(), self.address(*id))).collect(),
        }
    }

    /// Stops the node gracefully: every actor gets `ActorExitRequest`, every version drains and
    /// unloads, and the store is deleted. Returns when that is done (or after `timeout`).
    pub async fn stop(self: &Arc<Self>, timeout: Duration) -> Result<Response, ErrorReply> {
        let (roots, retire) = {
            let mut st = self.lock();
            st.stopping = true;
            for (_, p) in st.validations.drain() {
                let _ = p.reply.send(Err("the node is stopping".into()));
            }
            let gens: Vec<u64> = st.versions.keys().copied().collect();
            for g in gens {
                if let Some(v) = st.versions.get_mut(&g) {
                    if v.state == VersionState::Validating {
                        v.cancelled = true;
                    }
                    v.state = VersionState::Draining;
                }
            }
            st.current.clear();
            // Stop top-level actors; the rest go with their parents.
            let roots: Vec<u64> = st
                .actors
                .iter()
                .filter(|(id, r)| {
                    matches!(r.kind, ActorKind::Plugin { .. })
                        && r.parent.as_ref().is_none_or(|p| !self.is_local(p) || !st.actors.contains_key(&p.id) || p.id == **id)
                })
                .map(|(id, _)| *id)
                .collect();
            (roots, self.retire_if_idle(&mut st))
        };
        for tx in retire {
            let _ = tx.send(Cmd::Retire);
        }
        for id in roots {
            self.request_exit(id, ExitReason::NodeStopping, None);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.stopped.notified();
            if self.lock().versions.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline.into(), notified).await.is_err() {
                let left = self.lock().versions.len();
                tracing::warn!(versions = left, "stop timed out with versions still loaded");
                break;
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.store) {
            tracing::warn!(store = %self.store.display(), "cannot delete the store: {e}");
        }
        tracing::info!("node stopped");
        Ok(Response::Stopped)
    }
}

/// Removes an actor's name and parent link and counts it out of its version.
fn forget_actor(st: &mut State, id: u64, rec: &ActorRec) {
    if let Some(n) = &rec.global_name {
        if st.names.get(n) == Some(&id) {
            st.names.remove(n);
        }
    }
    if let Some(p) = &rec.parent {
        if let Some(pr) = st.actors.get_mut(&p.id) {
            pr.children.remove(&id);
        }
    }
    if let ActorKind::Plugin { gen, .. } = &rec.kind {
        if let Some(v) = st.versions.get_mut(gen) {
            v.live = v.live.saturating_sub(1);
        }
    }
    if matches!(&st.authority, Authority::Actor(a) if a.id == id) {
        st.authority = Authority::None;
        for (_, p) in st.validations.drain() {
            let _ = p.reply.send(Err("the source authority exited".into()));
        }
    }
}

fn tombstone(st: &mut State, id: u64, why: String) {
    st.tombstones.insert(id, why);
    st.tombstone_order.push_back(id);
    while st.tombstone_order.len() > TOMBSTONES {
        if let Some(old) = st.tombstone_order.pop_front() {
            st.tombstones.remove(&old);
        }
    }
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for (name, bytes) in files {
        // Write to a temporary name and rename: a crash never leaves a half-written library at
        // a path that could be opened.
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, bytes)?;
        tmp.as_file().sync_all()?;
        let path = dir.join(name);
        tmp.persist(&path).map_err(|e| e.error)?;
        out.push(path);
    }
    Ok(out)
}
