//! One node's share of an upgrade: its actors' moves, at most [`WINDOW`] in flight at a time.
//!
//! The window keeps pauses short however many actors move: an actor is paused from its export
//! to its import, and with every export queued at once it would wait behind all the others'
//! imports. It also bounds the work the old version takes on at once, so its other actors keep
//! being served between exports.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::host::effect::HostHandle;
use crate::host::migrate::{Gate, Move, Outcome, Report};
use crate::runtime::core::Core;
use crate::tables::progress::Key;
use crate::tables::upgrades::{Claim, HeldMove};
use crate::tables::versions::UpgradeTarget;
use crate::wire::{NodeUpgrade, TypeOutcome};

/// Moves in flight at once on one node: enough to keep the old and the new version's threads
/// busy, few enough that an actor's pause stays well under a millisecond. Measured with B10 on
/// 2 cores (10 000 actors, alternating builds): 16 left threads idle (total 276 ms), 32 queued
/// imports long enough for the pause's p99 to pass 1 ms; 24 gave 147–189 ms and 0.4–0.6 ms.
pub(super) const WINDOW: usize = 24;

/// An actor waiting for its turn to move.
pub(super) struct Pending {
    pub(super) id: u64,
    pub(super) from_type: String,
    pub(super) to_type: String,
    pub(super) from: HostHandle,
    pub(super) package: String,
}

/// A move under way.
struct Flying {
    from_type: String,
    to_type: String,
    from: HostHandle,
    since: Instant,
    gate: Arc<Gate>,
    /// It started but did not end within the timeout: given as long again.
    overdue: bool,
}

/// The moves of one node (see the module's documentation).
pub(super) struct Moves<'a> {
    target: &'a UpgradeTarget,
    /// The upgrade and its versions, for the progress watchers see.
    key: &'a Key<'a>,
    hold: bool,
    timeout: Duration,
    tx: mpsc::UnboundedSender<Report>,
    rx: mpsc::UnboundedReceiver<Report>,
    flying: HashMap<u64, Flying>,
    /// Per (old type, new type).
    pub(super) outcomes: BTreeMap<(String, String), TypeOutcome>,
    pauses: Vec<Duration>,
    held: Vec<HeldMove>,
    /// Moves reported as failed while still under way: if one ends held, it is rolled back.
    late: HashMap<u64, HostHandle>,
}

impl<'a> Moves<'a> {
    pub(super) fn new(
        target: &'a UpgradeTarget,
        key: &'a Key<'a>,
        hold: bool,
        timeout: Duration,
    ) -> Moves<'a> {
        let (tx, rx) = mpsc::unbounded_channel();
        Moves {
            target,
            key,
            hold,
            timeout,
            tx,
            rx,
            flying: HashMap::new(),
            outcomes: BTreeMap::new(),
            pauses: Vec::new(),
            held: Vec::new(),
            late: HashMap::new(),
        }
    }

    /// Moves every actor of `queue`, recording outcomes in `self.outcomes` and `report`;
    /// returns the held moves.
    pub(super) async fn run(
        mut self,
        core: &Core,
        mut queue: VecDeque<Pending>,
        report: &mut NodeUpgrade,
    ) -> Self {
        loop {
            self.launch(core, &mut queue, report);
            let Some(first) = self.flying.values().map(|f| f.since).min() else { break };
            match tokio::time::timeout_at(first + self.timeout, self.rx.recv()).await {
                Ok(Some(r)) => {
                    self.settle(core, r, report);
                    while let Ok(r) = self.rx.try_recv() {
                        self.settle(core, r, report);
                    }
                }
                // Never: this holds a sender.
                Ok(None) => break,
                Err(_) => self.expire(core, report),
            }
        }
        report.failed.sort_by_key(|f| f.address.id);
        let stayed = self.outcomes.values().map(|t| t.stayed).sum();
        core.metrics.upgraded(self.pauses.len(), stayed, report.failed.len(), &self.pauses);
        super::set_pauses(report, &mut self.pauses);
        self
    }

    /// The held moves, and what to do with outcomes that come after the node stopped waiting
    /// (the upgrade's `claim` is kept until they came).
    pub(super) fn finish(self, core: &Core, claim: &Claim) -> Vec<HeldMove> {
        if !self.late.is_empty() {
            core.settle_late(self.rx, self.late, self.target.host.clone(), claim.clone());
        }
        self.held
    }

    /// Starts moves from `queue` until the window is full.
    fn launch(&mut self, core: &Core, queue: &mut VecDeque<Pending>, report: &mut NodeUpgrade) {
        while self.flying.len() < WINDOW {
            let Some(p) = queue.pop_front() else { return };
            let gate = Arc::new(Gate::default());
            let mv = Box::new(Move {
                id: p.id,
                from_type: p.from_type.clone(),
                to_type: p.to_type.clone(),
                package: p.package,
                from: p.from.clone(),
                to: self.target.host.clone(),
                hold: self.hold,
                report: self.tx.clone(),
                gate: gate.clone(),
                done: false,
            });
            if let Err(mut mv) = p.from.export(p.id, mv) {
                mv.done = true;
                let why = "it is being stopped or moved by another upgrade".to_string();
                report.failed.push(core.failure(p.id, &p.from_type, why));
                core.progress.add(self.key, 0, 0, 1, &[]);
                continue;
            }
            self.outcomes.entry((p.from_type.clone(), p.to_type.clone())).or_default();
            let flying = Flying {
                from_type: p.from_type,
                to_type: p.to_type,
                from: p.from,
                since: Instant::now(),
                gate,
                overdue: false,
            };
            self.flying.insert(p.id, flying);
        }
    }

    /// Records one outcome.
    fn settle(&mut self, core: &Core, Report { id, outcome }: Report, report: &mut NodeUpgrade) {
        let Some(f) = self.flying.remove(&id) else { return };
        let counts = self.outcomes.entry((f.from_type.clone(), f.to_type.clone())).or_default();
        let progress = |moved, stayed, failed, pauses: &[Duration]| {
            core.progress.add(self.key, moved, stayed, failed, pauses);
        };
        match outcome {
            Outcome::Moved { pause } => {
                counts.moved += 1;
                self.pauses.push(pause);
                progress(1, 0, 0, &[pause]);
            }
            Outcome::Held { paused_at } => {
                counts.moved += 1;
                progress(1, 0, 0, &[]);
                self.held.push(HeldMove {
                    id,
                    from: f.from,
                    to: self.target.host.clone(),
                    to_gen: self.target.gen,
                    to_hash: self.key.to.to_string(),
                    to_type: f.to_type,
                    paused_at,
                });
            }
            Outcome::Stayed => {
                counts.stayed += 1;
                progress(0, 1, 0, &[]);
            }
            Outcome::Failed(why) => {
                report.failed.push(core.failure(id, &f.from_type, why));
                progress(0, 0, 1, &[]);
            }
        }
    }

    /// Moves out for longer than the timeout: one that has not started (its actor's handler
    /// still runs) is given up; one under way gets as long again, then is reported as failed.
    fn expire(&mut self, core: &Core, report: &mut NodeUpgrade) {
        let now = Instant::now();
        let due: Vec<u64> =
            self.flying.iter().filter(|(_, f)| f.since + self.timeout <= now).map(|(id, _)| *id).collect();
        for id in due {
            let Some(f) = self.flying.get_mut(&id) else { continue };
            let why = if f.gate.cancel() {
                format!("it did not pause within {:?}: a handler is still running", self.timeout)
            } else if !f.overdue {
                f.overdue = true;
                f.since = now;
                continue;
            } else {
                format!("it paused but did not finish moving within {:?}", self.timeout * 2)
            };
            if let Some(f) = self.flying.remove(&id) {
                report.failed.push(core.failure(id, &f.from_type, why));
                core.progress.add(self.key, 0, 0, 1, &[]);
                self.late.insert(id, f.from);
            }
        }
    }
}
