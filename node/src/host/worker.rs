//! A version's threads: each takes an actor's turn from the version's [`Pool`], runs its
//! creates and messages through the plugin, applies what the calls asked for, and gives the
//! actor back. Messages between actors of the same version are collected on the thread during
//! a call and queued in one go after it.

use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use troupe_actor_abi::abi::{self, OutSink, RawStr, Status};
use troupe_actor_abi::message::{self, Address, Payload, SystemMessage};

use super::effect::{ClientSend, Cmd, Delivery, Effect, LocalQueue};
use super::host_api::CallCtx;
use super::plugin::Plugin;
use super::pool::{ActorState, Next, Pool, Work};
use super::NodeSeam;
use crate::store::libcopy::LibImage;

/// What a thread's turn does after a migration step.
pub(super) enum Step {
    /// The turn goes on with this actor (if any).
    Continue(Option<ActorState>),
    /// The actor is paused in the pool: the turn ends here.
    Paused,
}

/// Peer frames queued by a thread are written when it runs out of work, or after this many
/// calls, or once the oldest waited this long: alone, a reply leaves at once; under load, many
/// calls share one write.
const MAX_CORKED_CALLS: u32 = 64;
const MAX_CORKED_TIME: Duration = Duration::from_micros(100);

/// The library copies, and where the first thread's join handle is.
pub(crate) type Closable = (Vec<LibImage>, Receiver<JoinHandle<()>>);

/// What every thread of a version shares.
pub(crate) struct Runner {
    pub(crate) node: Arc<dyn NodeSeam>,
    pub(crate) hash: String,
    pub(crate) gen: u64,
    pub(crate) plugins: Vec<Plugin>,
    /// `module.Type` → (index into `plugins`, index into `type_names`).
    pub(crate) types: HashMap<String, (u32, u32)>,
    /// The version's type names.
    pub(crate) type_names: Vec<String>,
    pub(crate) pool: Arc<Pool>,
    /// What the last thread hands to the closer: the library copies, and where the first
    /// thread's handle is.
    pub(crate) closing: Mutex<Option<Closable>>,
}

/// One thread's own state.
pub(crate) struct Worker {
    run: Arc<Runner>,
    slot: usize,
    /// The effects list lent to each call (kept to reuse its allocation).
    effects: Vec<Effect>,
    /// Messages to actors of this version, queued after each call.
    local: VecDeque<Cmd>,
    corked: crate::peers::Corked,
    corked_clients: Vec<ClientSend>,
    calls_corked: u32,
    corked_at: Option<Instant>,
    /// The current turn has more items after the running one.
    more_in_turn: bool,
    /// How many items of the current turn come after the running one (they left the mailbox
    /// but wait all the same).
    left_in_turn: u64,
}

impl Worker {
    pub(crate) fn new(run: Arc<Runner>, slot: usize) -> Worker {
        Worker {
            run,
            slot,
            effects: Vec::new(),
            local: VecDeque::new(),
            corked: Vec::new(),
            corked_clients: Vec::new(),
            calls_corked: 0,
            corked_at: None,
            more_in_turn: false,
            left_in_turn: 0,
        }
    }

    /// Runs turns until the pool says to exit; `true` if this was the version's last thread.
    pub(crate) fn run(&mut self) -> bool {
        loop {
            let next = match self.run.pool.try_next() {
                Some(turn) => Next::Run(turn),
                None => {
                    // Out of work: write what the calls queued for peers before waiting.
                    self.uncork();
                    self.run.pool.next(self.slot)
                }
            };
            let turn = match next {
                Next::Run(turn) => turn,
                Next::Exit => return false,
                Next::Last => return true,
            };
            let id = turn.id;
            let Some(actor) = self.run_turn(id, turn.work, turn.actor) else {
                // Paused for a live upgrade: the pool holds the actor.
                self.send_client_messages();
                continue;
            };
            // Replies to clients leave before another thread can take this actor, so that its
            // messages to one client arrive in the order it sent them. (Peer frames keep their
            // order by themselves: they are queued on the link's outbox as they are sent.)
            self.send_client_messages();
            let left = self.run.pool.finish(id, actor);
            for w in left {
                if let Work::Deliver(msg) = w {
                    self.run.node.undeliverable(id, msg.into_incoming());
                }
            }
            if self.calls_corked >= MAX_CORKED_CALLS
                || self.corked_at.is_some_and(|t| t.elapsed() >= MAX_CORKED_TIME)
            {
                self.uncork();
            }
        }
    }

    /// Runs one turn's work for actor `id`; `None` if a live upgrade paused the actor.
    fn run_turn(
        &mut self,
        id: u64,
        work: Vec<Work>,
        mut actor: Option<ActorState>,
    ) -> Option<Option<ActorState>> {
        let last = work.len();
        let mut items = work.into_iter();
        let mut done = 0;
        while let Some(work) = items.next() {
            done += 1;
            // After this turn's last item the thread is free and takes what the calls sent
            // to actors of this version itself; before it, other threads are woken for
            // them, so that a long handler later in the turn holds back only its own actor.
            self.more_in_turn = done < last;
            self.left_in_turn = (last - done) as u64;
            let step = match work {
                Work::Create(type_name) => Step::Continue(self.create(id, &type_name)),
                Work::Deliver(msg) => {
                    self.deliver(id, msg, &mut actor);
                    continue;
                }
                Work::Export(mv) => self.export(id, mv, actor.take(), &mut items),
                Work::Import(job) => self.import(id, *job, &mut items),
                Work::DropMoved { counted } => {
                    self.drop_moved(id, actor.take(), counted);
                    Step::Continue(None)
                }
            };
            match step {
                Step::Continue(a) => actor = a,
                Step::Paused => return None,
            }
        }
        Some(actor)
    }

    fn send_client_messages(&mut self) {
        for (tx, msg) in self.corked_clients.drain(..) {
            let _ = tx.send(msg);
        }
    }

    pub(super) fn runner(&self) -> &Arc<Runner> {
        &self.run
    }

    pub(super) fn slot(&self) -> usize {
        self.slot
    }

    fn address(&self, id: u64) -> Address {
        Address { node: self.run.node.addr().to_string(), id }
    }

    fn create(&mut self, id: u64, type_name: &str) -> Option<ActorState> {
        let Some(&(pi, kind)) = self.run.types.get(type_name) else {
            let detail = "the version exports no such type".into();
            let e = message::CreateError::InvalidActorSpecification { type_name: type_name.into(), detail };
            self.run.node.create_failed(id, e);
            return None;
        };
        let run = self.run.clone();
        let mut ctx = CallCtx::new(run.node.as_ref(), id, &run.hash, Vec::new());
        let mut err = Vec::new();
        let mut out: *mut c_void = std::ptr::null_mut();
        let name = type_name.as_bytes();
        run.pool.call_started(self.slot, id);
        // SAFETY: we are on one of the version's own threads; `ctx`, `name`, `out` and `err`
        // outlive the call; the root was checked at open.
        let st = unsafe {
            (run.plugins[pi as usize].root().new_actor)(
                &mut ctx as *mut CallCtx as *mut c_void,
                RawStr::from_bytes(name),
                &mut out,
                OutSink::for_vec(&mut err),
            )
        };
        run.pool.call_ended(self.slot);
        let effects = std::mem::take(&mut ctx.effects);
        if st == abi::STATUS_OK && !out.is_null() {
            self.apply_effects(id, effects);
            return Some(ActorState { plugin: pi, kind, state: out });
        }
        let what = if st == abi::STATUS_PANIC { "constructor panicked" } else { "constructor failed" };
        // What a failed constructor asked for is dropped with it: it never existed.
        drop(effects);
        let message = format!("{what}: {}", err_text(&err));
        run.node
            .create_failed(id, message::CreateError::PluginError { type_name: type_name.into(), message });
        None
    }

    /// Runs actor `id`'s handler on `bytes`; returns its status, its error text (empty on
    /// success) and its effects.
    fn call_handle(&mut self, id: u64, a: &ActorState, bytes: &[u8]) -> (Status, String, Vec<Effect>) {
        let run = self.run.clone();
        let mut ctx = CallCtx::new(run.node.as_ref(), id, &run.hash, std::mem::take(&mut self.effects));
        let mut err = Vec::new();
        run.pool.call_started(self.slot, id);
        // SAFETY: `a.state` came from this plugin's new_actor and was not dropped; only this
        // thread holds the actor's mailbox, so no other call on it runs.
        let st = unsafe {
            (run.plugins[a.plugin as usize].root().handle)(
                a.state,
                &mut ctx as *mut CallCtx as *mut c_void,
                RawStr::from_bytes(bytes),
                OutSink::for_vec(&mut err),
            )
        };
        run.pool.call_ended(self.slot);
        let err = if st == abi::STATUS_OK { String::new() } else { err_text(&err) };
        (st, err, std::mem::take(&mut ctx.effects))
    }

    /// Runs `f` with the thread's local queue, then queues what it collected; the peer frames
    /// and client messages it queues stay corked until [`Worker::uncork`].
    fn with_local(&mut self, f: impl FnOnce(&dyn NodeSeam, &mut LocalQueue<'_>)) {
        let mut lq = LocalQueue {
            gen: self.run.gen,
            queue: &mut self.local,
            corked: std::mem::take(&mut self.corked),
            clients: std::mem::take(&mut self.corked_clients),
        };
        f(self.run.node.as_ref(), &mut lq);
        self.corked = lq.corked;
        self.corked_clients = lq.clients;
        if !self.corked.is_empty() || !self.corked_clients.is_empty() {
            self.calls_corked += 1;
            self.corked_at.get_or_insert_with(Instant::now);
        }
        if !self.local.is_empty() {
            // Closed only after the last thread took over, which cannot happen while this one
            // runs: nothing comes back.
            for cmd in self.run.pool.send_all(&mut self.local, self.more_in_turn) {
                drop(cmd);
            }
        }
    }

    /// Hands the client messages queued since the last time to their connections (a burst wakes
    /// each connection's writer once), then writes the peer frames.
    fn uncork(&mut self) {
        for (tx, msg) in self.corked_clients.drain(..) {
            let _ = tx.send(msg);
        }
        if !self.corked.is_empty() {
            self.run.node.uncork(&mut self.corked);
        }
        self.calls_corked = 0;
        self.corked_at = None;
    }

    /// Applies a call's effects, then keeps the emptied list for the next call.
    pub(super) fn apply_effects(&mut self, id: u64, mut effects: Vec<Effect>) {
        self.with_local(|node, lq| node.apply(id, &mut effects, lq));
        if effects.capacity() <= 4096 {
            self.effects = effects;
        }
    }

    fn deliver(&mut self, id: u64, mut msg: Delivery, actor: &mut Option<ActorState>) {
        self.run.pool.stats.handled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(a) = actor.take() else {
            self.run.node.undeliverable(id, msg.into_incoming());
            return;
        };
        let (is_exit, encoded);
        let bytes: &[u8] = match &mut msg {
            Delivery::Raw(b) => {
                is_exit = None;
                b
            }
            Delivery::Msg(m) => {
                is_exit = match &mut m.payload {
                    Payload::System(SystemMessage::ActorExitRequest { recursive }) => Some(*recursive),
                    Payload::System(SystemMessage::StatusRequest { mailbox }) => {
                        // The node knows the mailbox; the SDK answers with it.
                        *mailbox = Some(self.run.pool.waiting(id) as u64 + self.left_in_turn);
                        None
                    }
                    _ => None,
                };
                encoded = message::encode(m);
                &encoded
            }
        };
        let (st, err, effects) = self.call_handle(id, &a, bytes);
        self.apply_effects(id, effects);
        if let Some(recursive) = is_exit {
            if st != abi::STATUS_OK {
                tracing::debug!(actor = id, "handler failed on ActorExitRequest (ignored): {err}");
            }
            self.drop_actor(id, a);
            self.with_local(|node, lq| node.exited(id, recursive, lq));
            return;
        }
        if st != abi::STATUS_OK {
            // A failed handler gets the message once more, as in Thespian; a second failure
            // sends the message back to its sender.
            tracing::debug!(actor = id, "handler failed, retrying once: {err}");
            let (st2, err2, effects2) = self.call_handle(id, &a, bytes);
            self.apply_effects(id, effects2);
            if st2 != abi::STATUS_OK {
                let details = format!("{} failed twice handling the message: {err2}", self.type_name(&a));
                tracing::warn!(actor = id, "{details}");
                self.run.node.poison(msg.into_incoming(), self.address(id), details.clone());
                self.with_local(|node, lq| node.failed_twice(id, &details, lq));
            }
        }
        *actor = Some(a);
    }

    fn type_name(&self, a: &ActorState) -> &str {
        self.run.type_names.get(a.kind as usize).map(String::as_str).unwrap_or("?")
    }

    /// Drops an actor's state through its plugin.
    pub(crate) fn drop_actor(&self, id: u64, a: ActorState) {
        let mut err = Vec::new();
        self.run.pool.call_started(self.slot, id);
        // SAFETY: `a.state` came from new_actor of this plugin and is dropped exactly once.
        let st = unsafe {
            (self.run.plugins[a.plugin as usize].root().drop_actor)(a.state, OutSink::for_vec(&mut err))
        };
        self.run.pool.call_ended(self.slot);
        if st != abi::STATUS_OK {
            tracing::warn!(actor = id, type_name = %self.type_name(&a), "dropping the actor failed: {}", err_text(&err));
        }
    }

    /// The last thread of a retiring version: drops what is left (only when the node stops
    /// abruptly), then runs each library's `on_unload`.
    pub(crate) fn retire(&mut self) {
        self.uncork();
        for (id, a) in self.run.pool.take_all_actors() {
            self.drop_actor(id, a);
        }
        for p in &self.run.plugins {
            let mut err = Vec::new();
            // SAFETY: one of the version's threads, the last; every actor of the plugin was
            // dropped.
            let st = unsafe { (p.root().on_unload)(OutSink::for_vec(&mut err)) };
            if st != abi::STATUS_OK {
                tracing::warn!(hash = %self.run.hash, plugin = %p.info.name, "on_unload failed: {}", err_text(&err));
            }
        }
    }
}

pub(crate) fn err_text(err: &[u8]) -> String {
    let s = String::from_utf8_lossy(err).into_owned();
    if s.is_empty() {
        "no details".into()
    } else {
        s
    }
}
