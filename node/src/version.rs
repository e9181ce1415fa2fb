//! Version hosts: the threads that own a loaded version and are the only ones to run its code.
//!
//! A running version has one OS thread, its **executor**. It copies the version's libraries
//! (see [`crate::image`]), dlopens them, calls `init`, and then runs every actor of the version:
//! creates, message handling and drops, one command at a time from the version's queue. Messages
//! between actors of the same version go straight into a local queue on this thread, with no
//! hop through a channel. When the version retires, the executor starts a **closer** thread,
//! calls `on_unload` (the closer times it), returns the libraries — still open — and exits. The
//! closer waits for the executor to exit, *then* dlcloses the libraries and frees their copies.
//! Closing only after the thread that ran plugin code has exited is what makes unloading safe:
//! a TLS destructor or pthread-key destructor registered by plugin code has run (or pinned the
//! library) before the code is unmapped (`reference/dylib-unloading.md` §2.3).
//!
//! No plugin code ever runs on the node's tokio workers.

use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use troupe_actor_abi::abi::{self, HostApi, OutSink, RawStr, Status};
use troupe_actor_abi::message::{
    self, Address, AddressRef, CreateSpec, Incoming, Payload, PayloadRef, SystemMessage,
};

use crate::image::LibImage;
use crate::node::Shared;
use crate::plugin::{Plugin, PluginInfo};

/// How long a plugin's `on_unload` may take. Clearing statics and flushing takes microseconds;
/// seconds mean it hangs.
pub(crate) const ON_UNLOAD_LIMIT: Duration = Duration::from_secs(5);

/// Where the executor is in its life, for the supervisor.
enum Phase {
    /// It is calling `on_unload`.
    Retiring,
}

/// Work for a version's executor.
pub(crate) enum Cmd {
    /// Construct actor `id` of `type_name`.
    Create { id: u64, type_name: String },
    /// Hand `msg` to actor `id`.
    Deliver { id: u64, msg: Delivery },
    /// No actors are left: run `on_unload` and stop.
    Retire,
}

/// A message on its way to a plugin actor.
pub(crate) enum Delivery {
    /// Decoded (runtime messages, and anything from a client or a peer).
    Msg(Incoming),
    /// The msgpack of an [`Incoming`] with a text or typed payload, as spliced together from a
    /// plugin's send: handed to the receiving plugin as it is, never decoded by the node.
    Raw(Vec<u8>),
}

impl Delivery {
    /// The decoded message, for the rare paths that need one (buffering, clients, poison).
    pub(crate) fn into_incoming(self) -> Incoming {
        match self {
            Delivery::Msg(m) => m,
            // Raw bytes are only made by `host_send` from a payload that was read once and by
            // `incoming_bytes`; they always decode. Should they not, the message is replaced by
            // a text saying so rather than lost silently.
            Delivery::Raw(b) => message::decode(&b).unwrap_or_else(|e| Incoming {
                sender: None,
                payload: Payload::Text(format!("troupe: undecodable message ({e})")),
            }),
        }
    }
}

impl From<Incoming> for Delivery {
    fn from(m: Incoming) -> Delivery {
        Delivery::Msg(m)
    }
}

/// Where a plugin's message goes.
pub(crate) enum Dest {
    /// An actor of this node, by id.
    Here(u64),
    /// An actor elsewhere.
    Peer(Address),
}

/// Something an actor asked for during a call; applied after the call returns, in order.
pub(crate) enum Effect {
    Send {
        to: Address,
        payload: Payload,
    },
    /// A text or typed message, already in its final bytes (see [`Delivery::Raw`]).
    SendRaw {
        to: Dest,
        bytes: Vec<u8>,
    },
    Create {
        id: u64,
        spec: CreateSpec,
        plan: crate::node::Plan,
    },
    CreateFailed {
        id: u64,
        error: message::CreateError,
    },
    Nothing,
    ExitSelf,
    Wakeup {
        delay_ms: u64,
        payload: Option<Payload>,
    },
    RegisterAuthority,
}

/// The node's context for one plugin call, passed to the plugin as the opaque `call` pointer.
struct CallCtx<'a> {
    node: &'a Shared,
    /// The calling actor's id.
    me: u64,
    /// The calling actor's address as msgpack, made at its first send of the call.
    me_bytes: Option<Vec<u8>>,
    /// The calling actor's version (children inherit it).
    hash: &'a str,
    effects: Vec<Effect>,
}

impl<'a> CallCtx<'a> {
    fn new(node: &'a Shared, me: u64, hash: &'a str, effects: Vec<Effect>) -> Self {
        CallCtx { node, me, me_bytes: None, hash, effects }
    }
}

/// Where a version's executor keeps messages between its own actors.
pub(crate) struct LocalQueue<'a> {
    pub gen: u64,
    pub queue: &'a mut VecDeque<Cmd>,
    /// Peer links with frames queued and not written yet.
    pub corked: crate::peer::Corked,
    /// Messages to clients of this node, not handed to their connections yet (in order).
    pub clients: Vec<ClientSend>,
}

/// A message to a client connection of this node, held back with the executor's peer frames.
pub(crate) type ClientSend = (tokio::sync::mpsc::UnboundedSender<Incoming>, Incoming);

/// What a version host reports once its libraries are open and initialised.
pub(crate) struct Ready {
    /// What each library's root declares.
    pub infos: Vec<PluginInfo>,
    /// Where each library's copy is (for status).
    pub shown: Vec<String>,
    /// How long copying the libraries took.
    pub copy: Duration,
}

/// Why a version host did not start.
pub(crate) enum StartError {
    /// A library could not be copied (see [`LibImage::create`]).
    Copy(std::io::Error),
    /// A library was refused or failed to initialise.
    Plugin(String),
}

/// The libraries of a version, as [`start`] takes them.
pub(crate) struct Libraries {
    pub files: Vec<crate::archive::SourceFile>,
    pub copies: crate::node::LibCopies,
    pub store: PathBuf,
}

/// Starts a version host: one thread, the version's executor, which copies the libraries (see
/// [`crate::image`]), opens, checks and initialises them, then runs the version's actors. Returns
/// at once; the receiver says when the version is ready, or why it failed.
///
/// When the executor is done (retired, or failed to start) it starts a short-lived *closer*
/// thread that waits for it to exit, then closes the libraries and frees their copies (see the
/// module's documentation). No thread but the executor exists while the version runs.
#[allow(clippy::type_complexity)]
pub(crate) fn start(
    node: Arc<Shared>,
    hash: String,
    gen: u64,
    libs: Libraries,
    stats: Arc<crate::node::VersionStats>,
) -> Result<(Sender<Cmd>, tokio::sync::oneshot::Receiver<Result<Ready, StartError>>), String> {
    let (tx, rx) = std::sync::mpsc::channel::<Cmd>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel::<ExecutorHandle>(1);
    let short = hash.chars().take(8).collect::<String>();
    let launch = Launch { node, hash, gen, libs, stats, handle: handle_rx };
    let handle = std::thread::Builder::new()
        .name(format!("troupe-v-{short}"))
        .spawn(move || executor(launch, rx, ready_tx))
        .map_err(|e| format!("cannot spawn the version's executor thread: {e}"))?;
    // The closer joins the executor through this handle.
    let _ = handle_tx.send(handle);
    Ok((tx, ready_rx))
}

/// How a closer waits for its executor to exit.
type ExecutorHandle = std::thread::JoinHandle<Vec<Plugin>>;

/// Started by an executor that is done: watches its `on_unload` (a plugin that hangs there
/// has its version quarantined, never closed while its thread is stuck in it), waits for the
/// thread to exit, then closes the libraries, frees their copies and reports the version gone.
fn start_closer(
    node: Arc<Shared>,
    hash: String,
    gen: u64,
    images: Vec<LibImage>,
    handle: Receiver<ExecutorHandle>,
    phase: Receiver<Phase>,
) -> std::io::Result<()> {
    let short = hash.chars().take(8).collect::<String>();
    std::thread::Builder::new().name(format!("troupe-c-{short}")).spawn(move || {
        if let Ok(Phase::Retiring) = phase.recv() {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = phase.recv_timeout(ON_UNLOAD_LIMIT) {
                tracing::error!(%hash, "on_unload did not return within {ON_UNLOAD_LIMIT:?}: version quarantined");
                node.version_quarantined(gen);
            }
        }
        let plugins = match handle.recv().map(|h| h.join()) {
            Ok(Ok(plugins)) => plugins,
            _ => {
                // Host code on the executor panicked (a node bug, not a plugin panic: those
                // are caught in the plugin). The libraries were leaked with the thread's
                // stack; never close what may still be referenced.
                tracing::error!(%hash, "version executor panicked; its libraries stay mapped");
                images.into_iter().for_each(LibImage::leak);
                return;
            }
        };
        let t0 = Instant::now();
        for p in plugins {
            p.close();
        }
        // The executor's malloc arena keeps freed memory; give it back to the system so
        // load/unload cycles leave the node's RSS flat.
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        for image in images {
            image.release();
        }
        node.forget_zip(&hash, gen);
        node.version_gone(&hash, gen, t0.elapsed());
    })?;
    Ok(())
}

struct Executor {
    node: Arc<Shared>,
    hash: String,
    gen: u64,
    plugins: Vec<Plugin>,
    /// `module.Type` → index into `plugins`.
    types: HashMap<String, usize>,
    /// Live actors: id → (plugin index, opaque state, type name).
    actors: HashMap<u64, (usize, *mut c_void, String), crate::node::IdHash>,
    stats: Arc<crate::node::VersionStats>,
    /// The effects list lent to each call (kept to reuse its allocation).
    effects: Vec<Effect>,
    /// Peer links with frames queued by calls and not yet written, and how many calls ran
    /// since they were last written.
    corked: crate::peer::Corked,
    corked_clients: Vec<ClientSend>,
    calls_corked: u32,
    corked_at: Option<Instant>,
}

/// Peer frames queued by an executor are written when it runs out of work, or after this many
/// calls, or once the oldest waited this long: alone, a reply leaves at once; under load, many
/// calls share one write. (A handler that runs long right after a corked call still holds that
/// call's frames back until it returns, as it holds back every message queued behind it.)
const MAX_CORKED_CALLS: u32 = 64;
const MAX_CORKED_TIME: Duration = Duration::from_micros(100);

/// What an executor starts with.
struct Launch {
    node: Arc<Shared>,
    hash: String,
    gen: u64,
    libs: Libraries,
    stats: Arc<crate::node::VersionStats>,
    /// For the closer.
    handle: Receiver<ExecutorHandle>,
}

/// The version's thread: copies and opens the libraries, runs the actors until retired, then
/// hands the still open libraries to a closer and exits.
fn executor(
    launch: Launch,
    rx: Receiver<Cmd>,
    ready: tokio::sync::oneshot::Sender<Result<Ready, StartError>>,
) -> Vec<Plugin> {
    let Launch { node, hash, gen, libs, stats, handle } = launch;
    let t0 = Instant::now();
    let stem = format!("{hash}-{gen}");
    let mut images = Vec::with_capacity(libs.files.len());
    for f in libs.files {
        match LibImage::create(libs.copies, &libs.store, &stem, &f.name, &f.bytes) {
            Ok(i) => images.push(i),
            Err(e) => {
                // Nothing was opened: the copies go at once, and the version with them.
                images.into_iter().for_each(LibImage::release);
                let _ = ready.send(Err(StartError::Copy(e)));
                node.version_gone(&hash, gen, Duration::ZERO);
                return Vec::new();
            }
        }
    }
    let copy = t0.elapsed();
    let shown: Vec<String> = images.iter().map(|i| i.shown().to_string()).collect();
    let (phase_tx, phase_rx) = std::sync::mpsc::channel::<Phase>();
    let mut plugins = Vec::new();
    let mut failed = None;
    for image in &images {
        match Plugin::open(image.path()) {
            Ok(p) => plugins.push(p),
            Err(e) => {
                failed = Some(e.to_string());
                break;
            }
        }
    }
    if failed.is_none() {
        for p in &plugins {
            let mut err = Vec::new();
            // SAFETY: the root was checked in Plugin::open; HOST_API lives for the whole
            // process; we are on the version's own thread.
            let st = unsafe { (p.root().init)(&HOST_API, OutSink::for_vec(&mut err)) };
            if st != abi::STATUS_OK {
                failed = Some(format!(
                    "plugin {} failed to initialise: {}",
                    p.info.name,
                    String::from_utf8_lossy(&err)
                ));
                break;
            }
        }
    }
    if let Some(e) = failed {
        let _ = ready.send(Err(StartError::Plugin(e)));
        hand_over(&node, &hash, gen, images, handle, phase_rx, &mut plugins);
        return plugins;
    }
    let mut types = HashMap::new();
    for (i, p) in plugins.iter().enumerate() {
        for t in &p.info.actor_types {
            types.insert(t.name.clone(), i);
        }
    }
    let _ = ready.send(Ok(Ready { infos: plugins.iter().map(|p| p.info.clone()).collect(), shown, copy }));
    let mut ex = Executor {
        node,
        hash,
        gen,
        plugins,
        types,
        actors: HashMap::default(),
        stats,
        effects: Vec::new(),
        corked: Vec::new(),
        corked_clients: Vec::new(),
        calls_corked: 0,
        corked_at: None,
    };
    let mut local = VecDeque::new();
    loop {
        let cmd = match local.pop_front() {
            Some(c) => c,
            None => match rx.try_recv() {
                Ok(c) => c,
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    // Out of work: write what the calls queued for peers before sleeping.
                    ex.uncork();
                    match rx.recv() {
                        Ok(c) => c,
                        Err(_) => break,
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
            },
        };
        match cmd {
            Cmd::Create { id, type_name } => ex.create(id, &type_name, &mut local),
            Cmd::Deliver { id, msg } => ex.deliver(id, msg, &mut local),
            Cmd::Retire => break,
        }
        if ex.calls_corked >= MAX_CORKED_CALLS || ex.corked_at.is_some_and(|t| t.elapsed() >= MAX_CORKED_TIME)
        {
            ex.uncork();
        }
    }
    ex.uncork();
    if hand_over(&ex.node, &ex.hash, gen, images, handle, phase_rx, &mut ex.plugins) {
        let _ = phase_tx.send(Phase::Retiring);
        ex.retire();
    }
    ex.plugins
}

/// Starts the closer for a done executor. If no thread can be started, nothing can close the
/// libraries safely after this thread exits: they stay mapped (with their copies), the version
/// is reported quarantined, and `false` says not to run `on_unload` either.
fn hand_over(
    node: &Arc<Shared>,
    hash: &str,
    gen: u64,
    images: Vec<LibImage>,
    handle: Receiver<ExecutorHandle>,
    phase: Receiver<Phase>,
    plugins: &mut Vec<Plugin>,
) -> bool {
    match start_closer(node.clone(), hash.to_string(), gen, images, handle, phase) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(%hash, "cannot start the thread that closes the version ({e}); its libraries stay mapped");
            std::mem::take(plugins).into_iter().for_each(std::mem::forget);
            node.version_quarantined(gen);
            false
        }
    }
}

fn err_text(err: &[u8]) -> String {
    let s = String::from_utf8_lossy(err).into_owned();
    if s.is_empty() {
        "no details".into()
    } else {
        s
    }
}

impl Executor {
    fn address(&self, id: u64) -> Address {
        Address { node: self.node.addr.clone(), id }
    }

    fn create(&mut self, id: u64, type_name: &str, local: &mut VecDeque<Cmd>) {
        let Some(&pi) = self.types.get(type_name) else {
            self.node.create_failed(
                id,
                None,
                message::CreateError::InvalidActorSpecification {
                    type_name: type_name.into(),
                    detail: "the version exports no such type".into(),
                },
            );
            return;
        };
        let mut ctx = CallCtx::new(&self.node, id, &self.hash, Vec::new());
        let mut err = Vec::new();
        let mut out: *mut c_void = std::ptr::null_mut();
        let name = type_name.as_bytes();
        // SAFETY: we are on the version's executor thread; `ctx`, `name`, `out` and `err`
        // outlive the call; the root was checked at open.
        let st = unsafe {
            (self.plugins[pi].root().new_actor)(
                &mut ctx as *mut CallCtx as *mut c_void,
                RawStr::from_bytes(name),
                &mut out,
                OutSink::for_vec(&mut err),
            )
        };
        let effects = std::mem::take(&mut ctx.effects);
        if st == abi::STATUS_OK && !out.is_null() {
            self.actors.insert(id, (pi, out, type_name.to_string()));
            self.apply(id, effects, local);
        } else {
            let what = if st == abi::STATUS_PANIC { "constructor panicked" } else { "constructor failed" };
            // What a failed constructor asked for is dropped with it: it never existed.
            drop(effects);
            self.node.create_failed(
                id,
                None,
                message::CreateError::PluginError {
                    type_name: type_name.into(),
                    message: format!("{what}: {}", err_text(&err)),
                },
            );
        }
    }

    /// Runs actor `id`'s handler on `bytes`; returns its status, its error text (empty on
    /// success) and its effects.
    fn call_handle(&mut self, id: u64, bytes: &[u8]) -> (Status, String, Vec<Effect>) {
        let Some(&(pi, state, _)) = self.actors.get(&id) else {
            return (abi::STATUS_ERROR, "actor vanished".into(), Vec::new());
        };
        let mut ctx = CallCtx::new(&self.node, id, &self.hash, std::mem::take(&mut self.effects));
        let mut err = Vec::new();
        // SAFETY: `state` came from this plugin's new_actor and was not dropped; executor thread.
        let st = unsafe {
            (self.plugins[pi].root().handle)(
                state,
                &mut ctx as *mut CallCtx as *mut c_void,
                RawStr::from_bytes(bytes),
                OutSink::for_vec(&mut err),
            )
        };
        let err = if st == abi::STATUS_OK { String::new() } else { err_text(&err) };
        (st, err, std::mem::take(&mut ctx.effects))
    }

    /// Runs `f` with the executor's local queue; the peer frames and client messages it queues
    /// stay corked until [`Executor::uncork`].
    fn with_local(&mut self, local: &mut VecDeque<Cmd>, f: impl FnOnce(&Shared, &mut LocalQueue<'_>)) {
        let mut lq = LocalQueue {
            gen: self.gen,
            queue: local,
            corked: std::mem::take(&mut self.corked),
            clients: std::mem::take(&mut self.corked_clients),
        };
        f(&self.node, &mut lq);
        self.corked = lq.corked;
        self.corked_clients = lq.clients;
        if !self.corked.is_empty() || !self.corked_clients.is_empty() {
            self.calls_corked += 1;
            self.corked_at.get_or_insert_with(Instant::now);
        }
    }

    /// Hands the client messages queued since the last time to their connections (a burst wakes
    /// each connection's writer once), then writes the peer frames.
    fn uncork(&mut self) {
        for (tx, msg) in self.corked_clients.drain(..) {
            let _ = tx.send(msg);
        }
        if !self.corked.is_empty() {
            self.node.peers().uncork(&mut self.corked);
        }
        self.calls_corked = 0;
        self.corked_at = None;
    }

    /// Applies a call's effects, then keeps the emptied list for the next call.
    fn apply(&mut self, id: u64, mut effects: Vec<Effect>, local: &mut VecDeque<Cmd>) {
        self.with_local(local, |node, lq| node.apply_effects(id, &mut effects, lq));
        if effects.capacity() <= 4096 {
            self.effects = effects;
        }
    }

    fn deliver(&mut self, id: u64, msg: Delivery, local: &mut VecDeque<Cmd>) {
        self.stats.handled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !self.actors.contains_key(&id) {
            self.node.undeliverable(id, msg.into_incoming());
            return;
        }
        let (is_exit, encoded);
        let bytes: &[u8] = match &msg {
            Delivery::Raw(b) => {
                is_exit = false;
                b
            }
            Delivery::Msg(m) => {
                is_exit = matches!(m.payload, Payload::System(SystemMessage::ActorExitRequest { .. }));
                encoded = message::encode(m);
                &encoded
            }
        };
        let (st, err, effects) = self.call_handle(id, bytes);
        self.apply(id, effects, local);
        if is_exit {
            if st != abi::STATUS_OK {
                tracing::debug!(actor = id, "handler failed on ActorExitRequest (ignored): {err}");
            }
            self.drop_actor(id);
            self.with_local(local, |node, lq| node.actor_exited(id, lq));
            return;
        }
        if st == abi::STATUS_OK {
            return;
        }
        // A failed handler gets the message once more, as in Thespian; a second failure sends
        // the message back to its sender.
        tracing::debug!(actor = id, "handler failed, retrying once: {err}");
        let (st2, err2, effects2) = self.call_handle(id, bytes);
        self.apply(id, effects2, local);
        if st2 != abi::STATUS_OK {
            let type_name = self.actors.get(&id).map(|a| a.2.clone()).unwrap_or_default();
            let details = format!("{type_name} failed twice handling the message: {err2}");
            tracing::warn!(actor = id, "{details}");
            self.node.poison(msg.into_incoming(), self.address(id), details);
        }
    }

    fn drop_actor(&mut self, id: u64) {
        if let Some((pi, state, type_name)) = self.actors.remove(&id) {
            let mut err = Vec::new();
            // SAFETY: `state` came from new_actor of this plugin and is dropped exactly once.
            let st = unsafe { (self.plugins[pi].root().drop_actor)(state, OutSink::for_vec(&mut err)) };
            if st != abi::STATUS_OK {
                tracing::warn!(actor = id, %type_name, "dropping the actor failed: {}", err_text(&err));
            }
        }
    }

    fn retire(&mut self) {
        let ids: Vec<u64> = self.actors.keys().copied().collect();
        for id in ids {
            // Only reachable when the node stops abruptly; normal retirement has no actors left.
            self.drop_actor(id);
        }
        for p in &self.plugins {
            let mut err = Vec::new();
            // SAFETY: executor thread; every actor of the plugin was dropped.
            let st = unsafe { (p.root().on_unload)(OutSink::for_vec(&mut err)) };
            if st != abi::STATUS_OK {
                tracing::warn!(hash = %self.hash, plugin = %p.info.name, "on_unload failed: {}", err_text(&err));
            }
        }
    }
}

// ---- the host API table handed to plugins -------------------------------------------------

/// The node's function table. A static in the node binary, which is never unloaded, so plugins
/// may keep pointers to it.
pub(crate) static HOST_API: HostApi = HostApi {
    size: std::mem::size_of::<HostApi>() as u32,
    send: host_send,
    create: host_create,
    exit_self: host_exit_self,
    wakeup: host_wakeup,
    log: host_log,
    info: host_info,
    register_authority: host_register_authority,
};

/// Runs `f` on the call context, refusing a null context and never letting a panic unwind into
/// the plugin.
fn with_ctx(call: *mut c_void, f: impl FnOnce(&mut CallCtx) -> Status) -> Status {
    if call.is_null() {
        return abi::STATUS_BAD_INPUT;
    }
    // SAFETY: the plugin passes back the `call` pointer the node handed it for the current call,
    // on the same thread, while that call is running; it points to a live CallCtx.
    let ctx = unsafe { &mut *(call as *mut CallCtx) };
    catch_unwind(AssertUnwindSafe(|| f(ctx))).unwrap_or(abi::STATUS_ERROR)
}

unsafe extern "C" fn host_send(call: *mut c_void, to: RawStr, msg: RawStr) -> Status {
    with_ctx(call, |ctx| {
        // SAFETY: the plugin passes slices valid for this call.
        let (to, msg) = unsafe { (to.as_bytes(), msg.as_bytes()) };
        // The fast path: a text or typed message is read in place (no copy), checked, and
        // copied once into the bytes the receiver will be handed.
        if let (Ok(addr), Ok(PayloadRef::Text(_) | PayloadRef::Typed { .. })) =
            (message::decode::<AddressRef>(to), message::decode::<PayloadRef>(msg))
        {
            let dest =
                if addr.node == ctx.node.addr { Dest::Here(addr.id) } else { Dest::Peer(addr.to_owned()) };
            let me = ctx.me;
            let sender = ctx.me_bytes.get_or_insert_with(|| message::encode(&ctx.node.address(me)));
            let bytes = message::incoming_bytes(Some(sender), msg);
            ctx.effects.push(Effect::SendRaw { to: dest, bytes });
            return abi::STATUS_OK;
        }
        match (message::decode::<Address>(to), message::decode::<Payload>(msg)) {
            (Ok(to), Ok(payload)) => {
                ctx.effects.push(Effect::Send { to, payload });
                abi::STATUS_OK
            }
            _ => abi::STATUS_BAD_INPUT,
        }
    })
}

unsafe extern "C" fn host_create(call: *mut c_void, spec: RawStr, out: OutSink) -> Status {
    with_ctx(call, |ctx| {
        // SAFETY: valid for this call.
        let spec = unsafe { spec.as_bytes() };
        match message::decode::<CreateSpec>(spec) {
            Ok(spec) => {
                let id = ctx.node.allocate_id();
                let (addr, effect) = ctx.node.prepare_actor_create(id, ctx.hash, spec);
                out.write_bytes(&message::encode(&addr));
                ctx.effects.push(effect);
                abi::STATUS_OK
            }
            Err(e) => {
                out.write_bytes(format!("bad create spec: {e}").as_bytes());
                abi::STATUS_BAD_INPUT
            }
        }
    })
}

unsafe extern "C" fn host_exit_self(call: *mut c_void) -> Status {
    with_ctx(call, |ctx| {
        ctx.effects.push(Effect::ExitSelf);
        abi::STATUS_OK
    })
}

unsafe extern "C" fn host_wakeup(call: *mut c_void, delay_ms: u64, payload: RawStr) -> Status {
    with_ctx(call, |ctx| {
        // SAFETY: valid for this call.
        let bytes = unsafe { payload.as_bytes() };
        let payload = if bytes.is_empty() {
            None
        } else {
            match message::decode::<Payload>(bytes) {
                Ok(p) => Some(p),
                Err(_) => return abi::STATUS_BAD_INPUT,
            }
        };
        ctx.effects.push(Effect::Wakeup { delay_ms, payload });
        abi::STATUS_OK
    })
}

unsafe extern "C" fn host_log(call: *mut c_void, level: u32, text: RawStr) {
    // SAFETY: valid for this call.
    let text = String::from_utf8_lossy(unsafe { text.as_bytes() }).into_owned();
    let who = if call.is_null() {
        String::from("plugin")
    } else {
        // SAFETY: as in `with_ctx`.
        let ctx = unsafe { &*(call as *const CallCtx) };
        ctx.node.address(ctx.me).to_string()
    };
    let _ = catch_unwind(|| match level {
        abi::log_level::ERROR => tracing::error!(actor = %who, "{text}"),
        abi::log_level::WARN => tracing::warn!(actor = %who, "{text}"),
        abi::log_level::INFO => tracing::info!(actor = %who, "{text}"),
        _ => tracing::debug!(actor = %who, "{text}"),
    });
}

unsafe extern "C" fn host_info(call: *mut c_void, out: OutSink) -> Status {
    with_ctx(call, |ctx| match ctx.node.call_info(&ctx.node.address(ctx.me)) {
        Some(info) => {
            out.write_bytes(&message::encode(&info));
            abi::STATUS_OK
        }
        None => abi::STATUS_ERROR,
    })
}

unsafe extern "C" fn host_register_authority(call: *mut c_void) -> Status {
    with_ctx(call, |ctx| {
        ctx.effects.push(Effect::RegisterAuthority);
        abi::STATUS_OK
    })
}
