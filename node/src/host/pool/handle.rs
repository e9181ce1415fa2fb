//! How the node and other versions reach a version's pool ([`HostHandle`]), and the moves of a
//! live upgrade that travel between two pools ([`Move`], [`Import`], and how each ends). A move
//! holds the handles of both pools and waits in their mailboxes, so these types and the pool
//! are one unit; the work done with them is in [`crate::host::migrate`].

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::Pool;

/// How the node reaches a running version: its run queue and its counters. Each of the
/// version's actors keeps a copy, so that routing a message needs only the actor table; one
/// pointer, so that costs an actor 8 bytes.
#[derive(Clone)]
pub(crate) struct HostHandle(Arc<Pool>);

impl HostHandle {
    /// A handle on `pool`.
    pub(crate) fn new(pool: Arc<Pool>) -> HostHandle {
        HostHandle(pool)
    }

    /// The run queue itself (a moved actor's old version forwards to it).
    pub(crate) fn pool(&self) -> Arc<Pool> {
        self.0.clone()
    }
}

impl std::ops::Deref for HostHandle {
    type Target = Pool;
    fn deref(&self) -> &Pool {
        &self.0
    }
}

/// Whether a move may still start: the node gives up on a move that has not started in time,
/// and a thread starts only a move the node has not given up on.
#[derive(Default)]
pub(crate) struct Gate(AtomicU8);

const PENDING: u8 = 0;
const STARTED: u8 = 1;
const CANCELLED: u8 = 2;

impl Gate {
    /// The thread starts the move, unless it was cancelled.
    pub(crate) fn start(&self) -> bool {
        self.0.compare_exchange(PENDING, STARTED, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
    /// The node gives up on the move, unless it started.
    pub(crate) fn cancel(&self) -> bool {
        self.0.compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

/// One actor's move, as it travels from the old version's thread to the new one's. A move
/// dropped without an outcome (its actor exited first) reports that as its outcome.
pub(crate) struct Move {
    pub(crate) id: u64,
    /// The actor's type in the old version, and in the new one.
    pub(crate) from_type: String,
    pub(crate) to_type: String,
    /// The old version's package (the new version is told where the state comes from).
    pub(crate) package: String,
    pub(crate) from: HostHandle,
    pub(crate) to: HostHandle,
    /// Keep the imported actor paused until the node commits or rolls back every move.
    pub(crate) hold: bool,
    pub(crate) report: UnboundedSender<Report>,
    pub(crate) gate: Arc<Gate>,
    /// An outcome was sent (or the node took the move back).
    pub(crate) done: bool,
}

/// The new side's work: build the actor from `migration` (msgpack [`Migration`](troupe_actor_abi::message::Migration)).
pub(crate) struct Import {
    pub(crate) migration: Vec<u8>,
    /// When the actor was paused.
    pub(crate) paused_at: Instant,
    pub(crate) mv: Box<Move>,
}

/// What became of one actor.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// It runs on the new version; it was paused this long.
    Moved { pause: Duration },
    /// Imported and paused on the new version, waiting for `migrate::commit` or `roll_back`.
    Held { paused_at: Instant },
    /// It does not opt in (or its library predates live upgrade): it stays.
    Stayed,
    /// It stays on the old version, for this reason.
    Failed(String),
}

/// An outcome, for actor `id`.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) id: u64,
    pub(crate) outcome: Outcome,
}

impl Move {
    pub(crate) fn tell(mut self, outcome: Outcome) {
        self.done = true;
        let _ = self.report.send(Report { id: self.id, outcome });
    }
}

impl Drop for Move {
    fn drop(&mut self) {
        if !self.done {
            let outcome = Outcome::Failed("it exited before it could move".into());
            let _ = self.report.send(Report { id: self.id, outcome });
        }
    }
}
