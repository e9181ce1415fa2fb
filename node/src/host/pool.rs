//! A version's run queue, shared by the node (which queues work) and the version's threads
//! (which run it).
//!
//! Every actor of the version has a **mailbox**: its pending creates and messages, in arrival
//! order, and its state between calls. A mailbox with work is *scheduled*: it is in the ready
//! queue, or a thread is running it. Only the thread that took a mailbox from the ready queue
//! touches the actor, so an actor runs on one thread at a time and its messages keep their
//! order (per sender, and overall). A thread takes at most [`BATCH`] items per turn, then puts
//! the mailbox back at the end of the ready queue: a flooded actor cannot starve its siblings.
//!
//! The version starts with one thread and grows to its limit: whenever work is queued while
//! no thread is idle, one more is started. A thread idle for [`IDLE_EXIT`] exits, down to one.
//! Every thread ever started is joined before the libraries are closed (see
//! [`super::closer`]): the pool keeps their join handles.

use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod handle;

pub(crate) use handle::{Gate, HostHandle, Import, Move, Outcome, Report};

use super::types::{Cmd, Delivery, VersionStats};
use crate::model::ids::IdHash;

/// How many creates and messages a thread runs for one actor before it lets the others have a
/// turn: large enough that a busy actor pays one lock per many messages, small enough that a
/// flood delays its siblings by at most a few dozen handler calls.
pub(crate) const BATCH: usize = 32;

/// How long a thread waits for work before it exits (the last one stays): long enough that a
/// bursty version keeps its threads, short enough that a quiet one gives them back.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(5);

/// An actor's state between calls: which library made it, its type (an index into the
/// version's type names), and the opaque pointer it gave. Small, because a version may host a
/// hundred thousand actors.
pub(crate) struct ActorState {
    pub(crate) plugin: u32,
    pub(crate) kind: u32,
    pub(crate) state: *mut c_void,
}

// SAFETY: the pointer is only ever used by the one thread that holds the mailbox (see the
// module's documentation), one call at a time; plugin actors are `Send` by the SDK's contract
// (`Actor: Send`).
unsafe impl Send for ActorState {}

/// One unit of work for an actor.
pub(crate) enum Work {
    Create(String),
    Deliver(Delivery),
    /// Live upgrade, old side: export the actor's state and pause its mailbox.
    Export(Box<Move>),
    /// Live upgrade, new side: build the actor from the old version's state.
    Import(Box<Import>),
    /// Drop the actor's state: it moved to another version (`counted`: it counted among this
    /// version's live actors), or an import is rolled back (not counted).
    DropMoved {
        counted: bool,
    },
}

#[derive(Default)]
struct Mailbox {
    work: VecDeque<Work>,
    actor: Option<ActorState>,
    /// In the ready queue, or taken by a thread.
    scheduled: bool,
    /// A live upgrade holds the actor: work accumulates, no thread takes it.
    paused: bool,
    /// The actor moved to another version: what arrives here goes there (a sender that looked
    /// the actor up before the move still reaches it, behind what it sent earlier).
    forward: Option<Arc<Pool>>,
}

/// What a thread takes for one turn.
pub(crate) struct Turn {
    pub(crate) id: u64,
    pub(crate) work: Vec<Work>,
    pub(crate) actor: Option<ActorState>,
}

/// What a thread waiting for work gets.
pub(crate) enum Next {
    Run(Turn),
    /// It was idle too long: exit.
    Exit,
    /// The version retires and this is its last thread: it drops what is left, runs
    /// `on_unload` and hands the libraries to the closer.
    Last,
}

/// Which actor a thread is running (for long-handler reports). Reading the clock on every
/// call would cost more than a message between two actors, so a call only counts itself; the
/// pool notes when it first saw a call running, and a call seen again later has been running
/// at least that long.
#[derive(Default)]
struct RunSlot {
    actor: AtomicU64,
    /// Odd while the thread is in a call; one more at every start and end.
    calls: AtomicU64,
}

#[derive(Default)]
struct State {
    boxes: HashMap<u64, Mailbox, IdHash>,
    ready: VecDeque<u64>,
    /// Work items in all mailboxes.
    queued: usize,
    threads: usize,
    /// Threads waiting for work.
    idle: usize,
    /// Of those, how many were woken and have not taken the lock yet: they are no longer
    /// available for new work.
    woken: usize,
    /// Threads holding a turn (running an actor). A thread neither idle nor holding a turn is
    /// between turns: it looks for work before it waits, so it counts as available.
    turns: usize,
    free_slots: Vec<usize>,
    retiring: bool,
    /// The last thread has taken over: nothing is accepted any more.
    closed: bool,
    handles: Vec<JoinHandle<()>>,
}

impl Mailbox {
    /// Marks the mailbox scheduled if it has work and is neither paused nor scheduled already;
    /// whether it did (the caller then puts it in the ready queue).
    fn becomes_ready(&mut self) -> bool {
        if self.scheduled || self.paused || self.work.is_empty() {
            return false;
        }
        self.scheduled = true;
        true
    }
}

impl State {
    /// Puts mailbox `id` in the ready queue if it [becomes ready](Mailbox::becomes_ready);
    /// whether it did.
    fn schedule(&mut self, id: u64) -> bool {
        let ready = self.boxes.get_mut(&id).is_some_and(Mailbox::becomes_ready);
        if ready {
            self.ready.push_back(id);
        }
        ready
    }
}

/// Puts `items` before what `work` holds, in their order.
fn prepend(work: &mut VecDeque<Work>, items: Vec<Work>) {
    for w in items.into_iter().rev() {
        work.push_front(w);
    }
}

/// Starts one more thread for the version, on slot `slot`. Set once the version is running.
pub(crate) type Spawner = Box<dyn Fn(usize) -> std::io::Result<JoinHandle<()>> + Send + Sync>;

/// The run queue (see the module's documentation).
pub(crate) struct Pool {
    state: Mutex<State>,
    work: Condvar,
    pub(crate) stats: Arc<VersionStats>,
    limit: usize,
    slots: Box<[RunSlot]>,
    /// Per slot: the call last seen running, and when it was first seen.
    seen: Mutex<Vec<Option<(u64, Instant)>>>,
    spawner: std::sync::OnceLock<Spawner>,
}

impl Pool {
    /// An empty queue for up to `limit` threads; the first thread (slot 0) is the starting one.
    pub(crate) fn new(limit: usize, stats: Arc<VersionStats>) -> Pool {
        let limit = limit.max(1);
        let state = State { threads: 1, free_slots: (1..limit).rev().collect(), ..State::default() };
        Pool {
            state: Mutex::new(state),
            work: Condvar::new(),
            stats,
            limit,
            slots: (0..limit).map(|_| RunSlot::default()).collect(),
            seen: Mutex::new(vec![None; limit]),
            spawner: std::sync::OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The version runs: from now on the pool may start more threads with `spawn`.
    pub(crate) fn running(&self, spawn: Spawner) {
        let _ = self.spawner.set(spawn);
    }

    /// Queues `cmd`; gives it back if the version has closed (answered locally at once, so its
    /// size in the `Err` costs nothing worth boxing).
    #[allow(clippy::result_large_err)]
    pub(crate) fn send(&self, cmd: Cmd) -> Result<(), std::sync::mpsc::SendError<Cmd>> {
        let mut st = self.lock();
        if st.closed {
            return Err(std::sync::mpsc::SendError(cmd));
        }
        let moved = self.queue(&mut st, cmd);
        self.wake(st);
        if let Some((to, id, work)) = moved {
            to.forward(id, work);
        }
        Ok(())
    }

    /// Queues `work` that reached the version `id` left; passed on if it moved again.
    fn forward(&self, id: u64, work: Work) {
        let mut st = self.lock();
        if st.closed {
            // The actor's new version closed too: nobody is left to take it.
            drop(st);
            if let Work::Deliver(msg) = work {
                tracing::debug!(actor = id, "a message reached a version after it closed");
                drop(msg);
            }
            return;
        }
        let moved = self.push(&mut st, id, work);
        self.wake(st);
        if let Some((to, id, work)) = moved {
            to.forward(id, work);
        }
    }

    /// Queues every command of `cmds` (emptying it) under one lock. From one of the version's
    /// own threads, which takes the work itself when it is about to be free, `wake` is false:
    /// no other thread is woken or started for it (a hop to another core costs more than the
    /// message).
    pub(crate) fn send_all(&self, cmds: &mut VecDeque<Cmd>, wake: bool) -> Vec<Cmd> {
        let mut st = self.lock();
        if st.closed {
            return cmds.drain(..).collect();
        }
        let mut moved = Vec::new();
        for cmd in cmds.drain(..) {
            moved.extend(self.queue(&mut st, cmd));
        }
        if wake {
            self.wake(st);
        } else {
            drop(st);
        }
        for (to, id, work) in moved {
            to.forward(id, work);
        }
        Vec::new()
    }

    /// Queues one command; returns it with where it must go instead if its actor moved away.
    fn queue(&self, st: &mut State, cmd: Cmd) -> Option<(Arc<Pool>, u64, Work)> {
        let (id, work) = match cmd {
            Cmd::Create { id, type_name } => (id, Work::Create(type_name)),
            Cmd::Deliver { id, msg } => (id, Work::Deliver(msg)),
            Cmd::Retire => {
                st.retiring = true;
                st.woken = st.idle;
                self.work.notify_all();
                return None;
            }
        };
        self.push(st, id, work)
    }

    fn push(&self, st: &mut State, id: u64, work: Work) -> Option<(Arc<Pool>, u64, Work)> {
        let mb = st.boxes.entry(id).or_default();
        if let Some(to) = &mb.forward {
            return Some((to.clone(), id, work));
        }
        mb.work.push_back(work);
        // The mailbox in hand: the message path looks it up once.
        let ready = mb.becomes_ready();
        st.queued += 1;
        if ready {
            st.ready.push_back(id);
        }
        None
    }

    /// Work is waiting: an idle thread that was not woken yet takes it, or a new one is started
    /// if there is none.
    fn wake(&self, mut st: MutexGuard<'_, State>) {
        if st.ready.is_empty() {
            return;
        }
        if st.idle > st.woken {
            st.woken += 1;
            self.work.notify_one();
            return;
        }
        let between_turns = st.threads.saturating_sub(st.idle + st.turns);
        if st.retiring || between_turns > 0 {
            return;
        }
        let (Some(spawn), Some(slot)) = (self.spawner.get(), st.free_slots.pop()) else {
            return;
        };
        // Started under the lock, so that its handle is recorded before it can exit.
        match spawn(slot) {
            Ok(handle) => {
                st.threads += 1;
                // Threads that exited idle are joined here, so their handles do not pile up.
                let (done, live): (Vec<_>, Vec<_>) = st.handles.drain(..).partition(|h| h.is_finished());
                st.handles = live;
                st.handles.push(handle);
                drop(st);
                done.into_iter().for_each(|h| drop(h.join()));
            }
            Err(e) => {
                st.free_slots.push(slot);
                tracing::warn!("cannot start another thread for a version ({e}); its threads serve on");
            }
        }
    }

    /// The next turn, if work waits right now (never waits itself; see [`Pool::next`]).
    pub(crate) fn try_next(&self) -> Option<Turn> {
        let mut st = self.lock();
        self.take(&mut st)
    }

    fn take(&self, st: &mut State) -> Option<Turn> {
        let id = st.ready.pop_front()?;
        let mb = st.boxes.get_mut(&id)?;
        let n = mb.work.len().min(BATCH);
        let work: Vec<Work> = mb.work.drain(..n).collect();
        let actor = mb.actor.take();
        st.queued -= n;
        st.turns += 1;
        Some(Turn { id, work, actor })
    }

    /// Waits for the next turn of thread `slot` (see [`Next`]).
    pub(crate) fn next(&self, slot: usize) -> Next {
        let mut st = self.lock();
        loop {
            if let Some(turn) = self.take(&mut st) {
                return Next::Run(turn);
            }
            if st.retiring {
                st.threads -= 1;
                if st.threads == 0 {
                    st.closed = true;
                    return Next::Last;
                }
                return Next::Exit;
            }
            st.idle += 1;
            let (guard, timeout) = self.work.wait_timeout(st, IDLE_EXIT).unwrap_or_else(|p| p.into_inner());
            st = guard;
            st.idle -= 1;
            st.woken = st.woken.saturating_sub(1);
            if timeout.timed_out() && st.ready.is_empty() && !st.retiring && st.threads > 1 {
                st.threads -= 1;
                st.free_slots.push(slot);
                return Next::Exit;
            }
        }
    }

    /// How many items wait in actor `id`'s mailbox (not counting a turn a thread holds).
    pub(crate) fn waiting(&self, id: u64) -> usize {
        self.lock().boxes.get(&id).map_or(0, |mb| mb.work.len())
    }

    /// Thread is done with `id`'s turn: the actor goes back to its mailbox (`None`: it was
    /// dropped, or never existed), which is put back in the ready queue if more work waits.
    /// Returns what was queued for an actor that is gone: the caller answers it.
    pub(crate) fn finish(&self, id: u64, actor: Option<ActorState>) -> Vec<Work> {
        let mut st = self.lock();
        st.turns = st.turns.saturating_sub(1);
        let Some(mb) = st.boxes.get_mut(&id) else {
            return Vec::new();
        };
        if actor.is_none() && mb.forward.is_some() {
            // The state moved away and was dropped: the mailbox stays as a forwarder.
            mb.scheduled = false;
            mb.work = VecDeque::new();
            return Vec::new();
        }
        if actor.is_none() && !mb.work.iter().any(|w| matches!(w, Work::Create(_) | Work::Import(_))) {
            // Gone (or never here): what waited cannot be handled.
            let left: Vec<Work> = mb.work.drain(..).collect();
            st.queued -= left.len();
            st.boxes.remove(&id);
            return left;
        }
        mb.actor = actor;
        if mb.work.is_empty() || mb.paused {
            mb.scheduled = false;
            // An idle actor keeps no queue allocation (a version may host many idle actors).
            mb.work = VecDeque::new();
        } else {
            st.ready.push_back(id);
            // The calling thread takes the next turn itself; an idle one is woken only if
            // another actor waits besides this one.
            if st.ready.len() > 1 && st.idle > st.woken {
                st.woken += 1;
                self.work.notify_one();
            }
        }
        Vec::new()
    }

    /// Live upgrade: actor `id` exports its state before anything else it has queued (a
    /// thread running it now does so after its current turn). Given back if the actor is not
    /// here, is moving already, or the version closed.
    pub(crate) fn export(&self, id: u64, mv: Box<Move>) -> Result<(), Box<Move>> {
        let mut st = self.lock();
        let here = st.boxes.get(&id).is_some_and(|mb| mb.forward.is_none() && !mb.paused);
        if st.closed || !here {
            return Err(mv);
        }
        let Some(mb) = st.boxes.get_mut(&id) else { return Err(mv) };
        // After the actor's construction, if it has not run yet; before everything else.
        let built = mb.work.iter().rposition(|w| matches!(w, Work::Create(_) | Work::Import(_)));
        mb.work.insert(built.map_or(0, |at| at + 1), Work::Export(mv));
        st.queued += 1;
        st.schedule(id);
        self.wake(st);
        Ok(())
    }

    /// A thread ends actor `id`'s turn holding it for a live upgrade: the actor and the rest of
    /// the turn go back to its mailbox, which no thread takes until [`Pool::resume`],
    /// [`Pool::hand_over`] or [`Pool::take_over`].
    pub(crate) fn pause(&self, id: u64, actor: ActorState, rest: Vec<Work>) {
        let mut st = self.lock();
        st.turns = st.turns.saturating_sub(1);
        st.queued += rest.len();
        let mb = st.boxes.entry(id).or_default();
        mb.actor = Some(actor);
        prepend(&mut mb.work, rest);
        mb.paused = true;
        mb.scheduled = false;
    }

    /// The move of actor `id` failed or was rolled back: it runs here again, starting with
    /// what waited.
    pub(crate) fn resume(&self, id: u64) {
        let mut st = self.lock();
        let Some(mb) = st.boxes.get_mut(&id) else { return };
        mb.paused = false;
        if st.schedule(id) {
            self.wake(st);
        }
    }

    /// Live upgrade, old side: paused actor `id` now lives in `to`. Returns what waited for it
    /// (for `to`, in order); from now on what arrives here is passed on to `to`; the old state
    /// is dropped by one of this version's threads (`DropMoved`).
    pub(crate) fn hand_over(&self, id: u64, to: Arc<Pool>) -> Vec<Work> {
        let mut st = self.lock();
        let Some(mb) = st.boxes.get_mut(&id) else { return Vec::new() };
        let waiting: Vec<Work> = mb.work.drain(..).collect();
        mb.forward = Some(to);
        mb.paused = false;
        mb.work.push_back(Work::DropMoved { counted: true });
        st.queued -= waiting.len();
        st.queued += 1;
        st.schedule(id);
        self.wake(st);
        waiting
    }

    /// Live upgrade, new side: what waited for actor `id` on its old version goes before what
    /// reached it here since; with `actor` (a paused import), the actor is resumed here.
    pub(crate) fn take_over(&self, id: u64, waiting: Vec<Work>, actor: Option<ActorState>) {
        let mut st = self.lock();
        st.queued += waiting.len();
        let mb = st.boxes.entry(id).or_default();
        prepend(&mut mb.work, waiting);
        if actor.is_some() {
            mb.actor = actor;
        }
        mb.paused = false;
        if st.schedule(id) {
            self.wake(st);
        }
    }

    /// Live upgrade, new side: build actor `id` here from `job`. The mailbox stays out of the
    /// ready queue for anything else until the import ends.
    pub(crate) fn import(&self, id: u64, job: Box<Import>) -> Result<(), Box<Import>> {
        let mut st = self.lock();
        if st.closed || st.retiring {
            return Err(job);
        }
        let mb = st.boxes.entry(id).or_default();
        // It may come back to a version it left earlier: no longer a forwarder.
        mb.forward = None;
        mb.paused = false;
        mb.work.push_front(Work::Import(job));
        st.queued += 1;
        st.schedule(id);
        self.wake(st);
        Ok(())
    }

    /// A held import is rolled back: one of this version's threads drops the new state.
    pub(crate) fn drop_import(&self, id: u64) {
        let mut st = self.lock();
        let Some(mb) = st.boxes.get_mut(&id) else { return };
        mb.work.push_front(Work::DropMoved { counted: false });
        mb.paused = false;
        st.queued += 1;
        st.schedule(id);
        self.wake(st);
    }

    /// The last thread: every actor still here (only when the node stops abruptly).
    pub(crate) fn take_all_actors(&self) -> Vec<(u64, ActorState)> {
        let mut st = self.lock();
        st.boxes.drain().filter_map(|(id, mb)| mb.actor.map(|a| (id, a))).collect()
    }

    /// Every thread the pool started (the first one's handle is the caller's).
    pub(crate) fn take_handles(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.lock().handles)
    }

    /// Thread `slot` starts a plugin call for actor `id`.
    pub(crate) fn call_started(&self, slot: usize, id: u64) {
        let s = &self.slots[slot];
        s.actor.store(id, Ordering::Relaxed);
        s.calls.fetch_add(1, Ordering::Release);
    }

    /// Thread `slot`'s call returned.
    pub(crate) fn call_ended(&self, slot: usize) {
        self.slots[slot].calls.fetch_add(1, Ordering::Release);
    }

    /// The calls that have run longer than `threshold`: (actor id, how long at least, which
    /// call). A call is timed from the first time this was asked while it ran, so it is
    /// reported at most one asking period late (the long-handler watch asks twice per
    /// threshold).
    pub(crate) fn long_calls(&self, threshold: Duration) -> Vec<(u64, Duration, u64)> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut long = Vec::new();
        for (slot, s) in self.slots.iter().enumerate() {
            let calls = s.calls.load(Ordering::Acquire);
            if calls % 2 == 0 {
                seen[slot] = None;
                continue;
            }
            let since = match seen[slot] {
                Some((c, t)) if c == calls => t,
                _ => {
                    seen[slot] = Some((calls, now));
                    now
                }
            };
            let running = now - since;
            if running > threshold {
                long.push((s.actor.load(Ordering::Relaxed), running, calls));
            }
        }
        long
    }

    /// For status: (threads running an actor, the others, limit, queued work).
    pub(crate) fn load(&self) -> (usize, usize, usize, usize) {
        let st = self.lock();
        (st.turns, st.threads.saturating_sub(st.turns), self.limit, st.queued)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod migrate_tests;
