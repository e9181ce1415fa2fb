//! Version hosts: the threads that own a loaded version and are the only ones to run its code.
//!
//! A running version has one OS thread, its **executor**. It copies the version's libraries
//! (see [`crate::store::libcopy`]), dlopens them, calls `init`, and then runs every actor of the version:
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
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use troupe_actor_abi::abi::{self, OutSink, RawStr, Status};
use troupe_actor_abi::message::{self, Address, Payload, SystemMessage};

use super::closer::{hand_over, ExecutorHandle, Phase};
use super::effect::{ClientSend, Cmd, Delivery, Effect, HostHandle, LocalQueue, VersionStats};
use super::host_api::{CallCtx, HOST_API};
use super::plugin::{Plugin, PluginInfo};
use super::{NodeSeam, VersionEnd};
use crate::model::ids::IdHash;
use crate::store::libcopy::LibImage;

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
    pub files: Vec<crate::store::archive::SourceFile>,
    pub copies: crate::model::config::LibCopies,
    pub store: PathBuf,
}

/// Starts a version host: one thread, the version's executor, which copies the libraries (see
/// [`crate::store::libcopy`]), opens, checks and initialises them, then runs the version's actors. Returns
/// at once; the receiver says when the version is ready, or why it failed.
///
/// When the executor is done (retired, or failed to start) it starts a short-lived *closer*
/// thread that waits for it to exit, then closes the libraries and frees their copies (see the
/// module's documentation). No thread but the executor exists while the version runs.
pub(crate) fn start(
    node: Arc<dyn NodeSeam>,
    hash: String,
    gen: u64,
    libs: Libraries,
    stats: Arc<VersionStats>,
) -> Result<(HostHandle, ReadyReceiver), String> {
    let (tx, rx) = std::sync::mpsc::channel::<Cmd>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel::<ExecutorHandle>(1);
    let short = hash.chars().take(8).collect::<String>();
    let launch_stats = stats.clone();
    let launch = Launch { node, hash, gen, libs, stats, handle: handle_rx };
    let handle = std::thread::Builder::new()
        .name(format!("troupe-v-{short}"))
        .spawn(move || executor(launch, rx, ready_tx))
        .map_err(|e| format!("cannot spawn the version's executor thread: {e}"))?;
    // The closer joins the executor through this handle.
    let _ = handle_tx.send(handle);
    Ok((HostHandle::new(tx, launch_stats), ready_rx))
}

/// Where [`start`] says when the version is ready, or why it failed.
pub(crate) type ReadyReceiver = tokio::sync::oneshot::Receiver<Result<Ready, StartError>>;

struct Executor {
    node: Arc<dyn NodeSeam>,
    hash: String,
    gen: u64,
    plugins: Vec<Plugin>,
    /// `module.Type` → index into `plugins`.
    types: HashMap<String, usize>,
    /// Live actors: id → (plugin index, opaque state, type name).
    actors: HashMap<u64, (usize, *mut c_void, String), IdHash>,
    stats: Arc<VersionStats>,
    /// The effects list lent to each call (kept to reuse its allocation).
    effects: Vec<Effect>,
    /// Peer links with frames queued by calls and not yet written, and how many calls ran
    /// since they were last written.
    corked: crate::peers::Corked,
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
    node: Arc<dyn NodeSeam>,
    hash: String,
    gen: u64,
    libs: Libraries,
    stats: Arc<VersionStats>,
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
    let images = match copy_libraries(libs, &format!("{hash}-{gen}")) {
        Ok(images) => images,
        Err(e) => {
            let _ = ready.send(Err(StartError::Copy(e)));
            node.version_ended(&hash, gen, VersionEnd::Gone { close_time: Duration::ZERO });
            return Vec::new();
        }
    };
    let copy = t0.elapsed();
    let shown: Vec<String> = images.iter().map(|i| i.shown().to_string()).collect();
    let (phase_tx, phase_rx) = std::sync::mpsc::channel::<Phase>();
    let (mut plugins, failed) = open_libraries(&images);
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
    ex.run(&rx);
    if hand_over(&ex.node, &ex.hash, gen, images, handle, phase_rx, &mut ex.plugins) {
        let _ = phase_tx.send(Phase::Retiring);
        ex.retire();
    }
    ex.plugins
}

/// Copies each library to a place unique to this version (see [`crate::store::libcopy`]). On
/// failure nothing was opened: the copies made so far go at once.
fn copy_libraries(libs: Libraries, stem: &str) -> std::io::Result<Vec<LibImage>> {
    let mut images = Vec::with_capacity(libs.files.len());
    for f in libs.files {
        match LibImage::create(libs.copies, &libs.store, stem, &f.name, &f.bytes) {
            Ok(i) => images.push(i),
            Err(e) => {
                images.into_iter().for_each(LibImage::release);
                return Err(e);
            }
        }
    }
    Ok(images)
}

/// Opens (checking each root) and initialises every library; the ones opened so far, and why
/// the rest failed, if they did.
fn open_libraries(images: &[LibImage]) -> (Vec<Plugin>, Option<String>) {
    let mut plugins = Vec::new();
    for image in images {
        match Plugin::open(image.path()) {
            Ok(p) => plugins.push(p),
            Err(e) => return (plugins, Some(e.to_string())),
        }
    }
    for p in &plugins {
        let mut err = Vec::new();
        // SAFETY: the root was checked in Plugin::open; HOST_API lives for the whole
        // process; we are on the version's own thread.
        let st = unsafe { (p.root().init)(&HOST_API, OutSink::for_vec(&mut err)) };
        if st != abi::STATUS_OK {
            let why =
                format!("plugin {} failed to initialise: {}", p.info.name, String::from_utf8_lossy(&err));
            return (plugins, Some(why));
        }
    }
    (plugins, None)
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
    /// Runs commands, its own actors' messages first, until retired; writes what its calls
    /// queued for peers whenever it runs out of work (and after a few dozen calls or 100 µs).
    fn run(&mut self, rx: &Receiver<Cmd>) {
        let mut local = VecDeque::new();
        loop {
            let cmd = match local.pop_front() {
                Some(c) => c,
                None => match rx.try_recv() {
                    Ok(c) => c,
                    Err(std::sync::mpsc::TryRecvError::Empty) => {
                        // Out of work: write what the calls queued for peers before sleeping.
                        self.uncork();
                        match rx.recv() {
                            Ok(c) => c,
                            Err(_) => break,
                        }
                    }
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
                },
            };
            match cmd {
                Cmd::Create { id, type_name } => self.create(id, &type_name, &mut local),
                Cmd::Deliver { id, msg } => self.deliver(id, msg, &mut local),
                Cmd::Retire => break,
            }
            if self.calls_corked >= MAX_CORKED_CALLS
                || self.corked_at.is_some_and(|t| t.elapsed() >= MAX_CORKED_TIME)
            {
                self.uncork();
            }
        }
        self.uncork();
    }

    fn address(&self, id: u64) -> Address {
        Address { node: self.node.addr().to_string(), id }
    }

    fn create(&mut self, id: u64, type_name: &str, local: &mut VecDeque<Cmd>) {
        let Some(&pi) = self.types.get(type_name) else {
            self.node.create_failed(
                id,
                message::CreateError::InvalidActorSpecification {
                    type_name: type_name.into(),
                    detail: "the version exports no such type".into(),
                },
            );
            return;
        };
        let mut ctx = CallCtx::new(self.node.as_ref(), id, &self.hash, Vec::new());
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
        let mut ctx = CallCtx::new(self.node.as_ref(), id, &self.hash, std::mem::take(&mut self.effects));
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
    fn with_local(&mut self, local: &mut VecDeque<Cmd>, f: impl FnOnce(&dyn NodeSeam, &mut LocalQueue<'_>)) {
        let mut lq = LocalQueue {
            gen: self.gen,
            queue: local,
            corked: std::mem::take(&mut self.corked),
            clients: std::mem::take(&mut self.corked_clients),
        };
        f(self.node.as_ref(), &mut lq);
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
            self.node.uncork(&mut self.corked);
        }
        self.calls_corked = 0;
        self.corked_at = None;
    }

    /// Applies a call's effects, then keeps the emptied list for the next call.
    fn apply(&mut self, id: u64, mut effects: Vec<Effect>, local: &mut VecDeque<Cmd>) {
        self.with_local(local, |node, lq| node.apply(id, &mut effects, lq));
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
            self.with_local(local, |node, lq| node.exited(id, lq));
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
