//! Live upgrades started from the page: how far each has got. While one runs, the count of
//! moved actors is read from the refreshes (live actors of the new version, less those it had
//! when the upgrade began); when the node answers, its report (moved, stayed, failed and the
//! pauses per node) replaces the estimate.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use troupe_node::protocol::UpgradeReport;

/// How many finished upgrades the page keeps showing.
const KEPT: usize = 10;

/// One upgrade as the page shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UpgradeView {
    /// Its number in this dashboard.
    pub id: u64,
    /// Old and new version as asked (hash, prefix or `@group`), and their full hashes once known.
    pub from: String,
    pub to: String,
    /// When it was asked for, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// Live actors of the old version when it began (every node).
    pub total: usize,
    /// Moved so far (from the refreshes while it runs; the report's count once done).
    pub moved: usize,
    /// Stayed (do not migrate) and failed, from the report.
    pub stayed: usize,
    pub failed: usize,
    /// The node answered.
    pub done: bool,
    /// `--all-or-nothing` rolled every actor back.
    pub rolled_back: bool,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Per node: pause median, 99th percentile and longest, in microseconds.
    pub pauses: Vec<PauseView>,
    /// The slowest node's time, in microseconds.
    pub elapsed_us: u64,
}

/// One node's pauses in an upgrade.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PauseView {
    /// The node.
    pub node: String,
    /// Actors moved there.
    pub moved: usize,
    /// Pauses: median, 99th percentile, longest (µs).
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

struct Track {
    view: UpgradeView,
    /// The new version's full hash (if it could be resolved) and its live actors at the start.
    to_hash: Option<String>,
    to_before: usize,
}

/// The upgrades; written by the action that runs one and by the poller, read by the poller.
#[derive(Default)]
pub struct Upgrades {
    inner: Mutex<(u64, Vec<Track>)>,
}

impl Upgrades {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Vec<Track>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An upgrade begins: `total` live actors of FROM, and TO's full hash with its live actors.
    pub fn begin(
        &self,
        from: &str,
        to: &str,
        started_ms: u64,
        total: usize,
        to_now: Option<(String, usize)>,
    ) -> u64 {
        let mut g = self.lock();
        g.0 += 1;
        let id = g.0;
        let view =
            UpgradeView { id, from: from.into(), to: to.into(), started_ms, total, ..UpgradeView::default() };
        let (to_hash, to_before) = to_now.map_or((None, 0), |(h, n)| (Some(h), n));
        g.1.push(Track { view, to_hash, to_before });
        let finished = g.1.iter().filter(|t| t.view.done).count();
        if finished > KEPT {
            if let Some(i) = g.1.iter().position(|t| t.view.done) {
                g.1.remove(i);
            }
        }
        id
    }

    /// A refresh: live actors per full hash, every node added up.
    pub fn progress(&self, live: &HashMap<String, usize>) {
        for t in self.lock().1.iter_mut().filter(|t| !t.view.done) {
            if let Some(h) = &t.to_hash {
                let now = live.get(h).copied().unwrap_or(0);
                t.view.moved = now.saturating_sub(t.to_before).min(t.view.total).max(t.view.moved);
            }
        }
    }

    /// The node answered.
    pub fn finish(&self, id: u64, outcome: Result<&UpgradeReport, String>) {
        let mut g = self.lock();
        let Some(t) = g.1.iter_mut().find(|t| t.view.id == id) else { return };
        t.view.done = true;
        match outcome {
            Ok(r) => {
                t.view.from = r.from.clone();
                t.view.to = r.to.clone();
                t.view.moved = r.moved();
                t.view.stayed = r.stayed();
                t.view.failed = r.failed().count();
                t.view.rolled_back = r.rolled_back;
                t.view.elapsed_us = r.nodes.iter().map(|n| n.elapsed_us).max().unwrap_or(0);
                t.view.pauses = r
                    .nodes
                    .iter()
                    .map(|n| PauseView {
                        node: n.node.clone(),
                        moved: n.moved(),
                        p50_us: n.pause_p50_us,
                        p99_us: n.pause_p99_us,
                        max_us: n.pause_max_us,
                    })
                    .collect();
            }
            Err(e) => t.view.error = Some(e),
        }
    }

    /// Every upgrade kept, oldest first.
    pub fn view(&self) -> Vec<UpgradeView> {
        self.lock().1.iter().map(|t| t.view.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_node::protocol::{NodeUpgrade, TypeOutcome};

    #[test]
    fn moved_grows_with_the_refreshes_then_the_report_says() {
        let u = Upgrades::default();
        let id = u.begin("aa", "bb", 1, 10, Some(("bbfull".into(), 2)));
        u.progress(&HashMap::from([("bbfull".to_string(), 6)]));
        assert_eq!(u.view()[0].moved, 4);
        // A refresh that sees fewer (an actor of the new version exited) never counts back.
        u.progress(&HashMap::from([("bbfull".to_string(), 5)]));
        assert_eq!(u.view()[0].moved, 4);
        let node = NodeUpgrade {
            node: "n".into(),
            types: vec![TypeOutcome { from_type: "t".into(), to_type: "t".into(), moved: 9, stayed: 1 }],
            pause_p99_us: 70,
            ..NodeUpgrade::default()
        };
        let report = UpgradeReport {
            from: "aafull".into(),
            to: "bbfull".into(),
            nodes: vec![node],
            rolled_back: false,
        };
        u.finish(id, Ok(&report));
        let v = &u.view()[0];
        assert!(v.done);
        assert_eq!((v.moved, v.stayed, v.failed, v.to.as_str()), (9, 1, 0, "bbfull"));
        assert_eq!(v.pauses[0].p99_us, 70);
        let bad = u.begin("x", "y", 2, 0, None);
        u.finish(bad, Err("unknown hash".into()));
        assert_eq!(u.view()[1].error.as_deref(), Some("unknown hash"));
    }
}
