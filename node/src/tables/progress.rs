//! How far each live upgrade has got on this node, for watchers (`Request::Observe`): moved,
//! stayed and failed so far and the pause histogram, kept while the upgrade runs here and for
//! the last few after it ended. Every upgrade is recorded, whoever started it (`troupe
//! upgrade`, `deploy --migrate`, `troupe watch`, a dashboard's page, another node), because
//! every one goes through `move_here`.
//!
//! The lock is private and never held while anything else is called.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::wire::observe::{pause_bucket, UpgradeProgress, PAUSE_BUCKETS};

/// Ended upgrades kept for watchers: a watcher polling every few seconds sees each one's end,
/// and a burst of `troupe watch` rounds does not grow the answer.
const ENDED_KEPT: usize = 8;

/// One upgrade's share here, as it goes (see the module's documentation).
#[derive(Default)]
pub(crate) struct Progress {
    inner: Mutex<VecDeque<UpgradeProgress>>,
}

/// Which upgrade an entry is: its id and versions (ids are only unique per node that runs
/// upgrades; with the versions, two upgrades never mix).
pub(crate) struct Key<'a> {
    pub(crate) upgrade: u64,
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
}

impl Key<'_> {
    fn is(&self, p: &UpgradeProgress) -> bool {
        p.upgrade == self.upgrade && p.from == self.from && p.to == self.to
    }
}

impl Progress {
    fn lock(&self) -> MutexGuard<'_, VecDeque<UpgradeProgress>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's share of an upgrade begins: `total` live actors of FROM here.
    pub(crate) fn begin(&self, key: &Key<'_>, origin: bool, total: usize) {
        let started_unix_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let entry = UpgradeProgress {
            upgrade: key.upgrade,
            from: key.from.to_string(),
            to: key.to.to_string(),
            origin,
            started_unix_ms,
            running: true,
            total: total as u64,
            pause_histogram: vec![0; PAUSE_BUCKETS],
            ..UpgradeProgress::default()
        };
        let mut st = self.lock();
        st.retain(|p| !key.is(p));
        st.push_back(entry);
    }

    /// Moves that ended: `moved` actors (with the pauses measured, if any: a held move's pause
    /// is measured at the decision), `stayed` and `failed`.
    pub(crate) fn add(&self, key: &Key<'_>, moved: usize, stayed: usize, failed: usize, pauses: &[Duration]) {
        let mut st = self.lock();
        let Some(p) = st.iter_mut().rev().find(|p| key.is(p)) else { return };
        p.moved += moved as u64;
        p.stayed += stayed as u64;
        p.failed += failed as u64;
        for pause in pauses {
            p.pause_histogram[pause_bucket(pause.as_micros() as u64)] += 1;
        }
    }

    /// An all-or-nothing upgrade's decision here, which knows the upgrade and its new version:
    /// committed, with the held moves' pauses (measured only now), or rolled back.
    pub(crate) fn decided(&self, upgrade: u64, to: &str, commit: bool, pauses: &[Duration]) {
        let mut st = self.lock();
        let Some(p) = st.iter_mut().rev().find(|p| p.upgrade == upgrade && p.to == to) else { return };
        if !commit {
            p.rolled_back = true;
            p.moved = 0;
        }
        for pause in pauses {
            p.pause_histogram[pause_bucket(pause.as_micros() as u64)] += 1;
        }
    }

    /// This node's share ended; only the last [`ENDED_KEPT`] ended ones are kept.
    pub(crate) fn end(&self, key: &Key<'_>) {
        let mut st = self.lock();
        if let Some(p) = st.iter_mut().rev().find(|p| key.is(p)) {
            p.running = false;
        }
        while st.iter().filter(|p| !p.running).count() > ENDED_KEPT {
            match st.iter().position(|p| !p.running) {
                Some(i) => drop(st.remove(i)),
                None => break,
            }
        }
    }

    /// Every upgrade kept, oldest first.
    pub(crate) fn view(&self) -> Vec<UpgradeProgress> {
        self.lock().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(upgrade: u64) -> Key<'static> {
        Key { upgrade, from: "v1", to: "v2" }
    }

    #[test]
    fn an_upgrade_counts_as_it_goes_and_is_kept_a_while_after_it_ends() {
        let p = Progress::default();
        p.begin(&key(1), true, 5);
        p.add(&key(1), 2, 0, 0, &[Duration::from_micros(3), Duration::from_micros(300)]);
        p.add(&key(1), 0, 1, 1, &[]);
        // Another upgrade with the same id and other versions is another entry.
        p.add(&Key { upgrade: 1, from: "x", to: "y" }, 9, 0, 0, &[]);
        let v = p.view();
        assert_eq!(v.len(), 1);
        let u = &v[0];
        assert!(u.running && u.origin);
        assert_eq!((u.total, u.moved, u.stayed, u.failed), (5, 2, 1, 1));
        assert_eq!(u.pause_histogram[1], 1, "3 µs is in [2, 4)");
        assert_eq!(u.pause_histogram[8], 1, "300 µs is in [256, 512)");
        p.decided(1, "v2", true, &[Duration::from_secs(3600)]);
        assert_eq!(p.view()[0].pause_histogram[PAUSE_BUCKETS - 1], 1, "the last bucket is open");
        p.end(&key(1));
        assert!(!p.view()[0].running);
        p.decided(1, "v2", false, &[]);
        assert_eq!((p.view()[0].moved, p.view()[0].rolled_back), (0, true), "rolled back");
        for id in 2..20 {
            p.begin(&key(id), false, 0);
            p.end(&key(id));
        }
        p.begin(&key(99), false, 1);
        let v = p.view();
        assert_eq!(v.iter().filter(|u| !u.running).count(), ENDED_KEPT);
        assert_eq!(v.last().map(|u| (u.upgrade, u.running)), Some((99, true)), "a running one is kept");
        assert_eq!(v[0].upgrade, 19 - ENDED_KEPT as u64 + 1, "the oldest ended ones go first");
    }

    #[test]
    fn pause_buckets_are_powers_of_two() {
        assert_eq!((pause_bucket(0), pause_bucket(1), pause_bucket(2), pause_bucket(3)), (0, 0, 1, 1));
        assert_eq!((pause_bucket(1023), pause_bucket(1024)), (9, 10));
        assert_eq!(pause_bucket(u64::MAX), PAUSE_BUCKETS - 1);
    }
}
