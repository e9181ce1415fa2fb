//! The charts' data: messages per second and mailbox depth per version, over the last
//! [`WINDOW`]. Each refresh brings every node's counters (handled so far, queue depth) per
//! hash; a rate is the change of a node's counter over the time between two refreshes,
//! added up over the nodes that run the version.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use serde::Serialize;

/// How far back the charts go: the five minutes.
pub const WINDOW_MS: u64 = 5 * 60 * 1000;

/// One version's chart data.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeriesView {
    /// Full hash.
    pub hash: String,
    /// Package and version, for the legend.
    pub package: String,
    /// `[t_ms, messages per second, mailbox depth]`, oldest first.
    pub points: Vec<Point>,
}

/// One node's sample of one hash at a refresh.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The node.
    pub node: String,
    /// The version.
    pub hash: String,
    /// Its package, for the legend.
    pub package: String,
    /// Messages its actors handled since it was loaded on this node.
    pub handled: u64,
    /// Messages waiting there now.
    pub depth: u64,
}

/// A chart point: `(t_ms, messages per second, mailbox depth)`.
type Point = (u64, f64, u64);

/// The series, owned by the poller.
#[derive(Default)]
pub struct History {
    /// The last counter seen per (node, hash), and when.
    last: HashMap<(String, String), (Instant, u64)>,
    series: BTreeMap<String, (String, VecDeque<Point>)>,
}

impl History {
    /// Adds one refresh: `now` for rates, `t_ms` (wall clock) for the chart's axis.
    pub fn record(&mut self, now: Instant, t_ms: u64, samples: &[Sample]) {
        let mut sums: BTreeMap<&str, (&str, f64, u64)> = BTreeMap::new();
        let mut seen = HashMap::new();
        for s in samples {
            let key = (s.node.clone(), s.hash.clone());
            let rate = match self.last.get(&key) {
                // A counter that went down is a new load of the hash: no rate this time.
                Some((then, before)) if s.handled >= *before => {
                    let secs = now.duration_since(*then).as_secs_f64();
                    if secs > 0.0 {
                        (s.handled - before) as f64 / secs
                    } else {
                        0.0
                    }
                }
                _ => 0.0,
            };
            seen.insert(key, (now, s.handled));
            let e = sums.entry(&s.hash).or_insert((&s.package, 0.0, 0));
            e.1 += rate;
            e.2 += s.depth;
        }
        self.last = seen;
        for (hash, (package, rate, depth)) in sums {
            let e =
                self.series.entry(hash.to_string()).or_insert_with(|| (package.to_string(), VecDeque::new()));
            e.1.push_back((t_ms, rate, depth));
        }
        let oldest = t_ms.saturating_sub(WINDOW_MS);
        self.series.retain(|_, (_, points)| {
            while points.front().is_some_and(|p| p.0 < oldest) {
                points.pop_front();
            }
            !points.is_empty()
        });
    }

    /// Every version's series.
    pub fn view(&self) -> Vec<SeriesView> {
        self.series
            .iter()
            .map(|(hash, (package, points))| SeriesView {
                hash: hash.clone(),
                package: package.clone(),
                points: points.iter().copied().collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(node: &str, hash: &str, handled: u64, depth: u64) -> Sample {
        Sample { node: node.into(), hash: hash.into(), package: "p 1".into(), handled, depth }
    }

    #[test]
    fn rates_add_up_over_nodes_and_restart_with_a_new_load() {
        let mut h = History::default();
        let t0 = Instant::now();
        h.record(t0, 1_000, &[sample("a", "x", 100, 0), sample("b", "x", 50, 1)]);
        h.record(t0 + Duration::from_secs(2), 3_000, &[sample("a", "x", 300, 2), sample("b", "x", 70, 3)]);
        // A counter that went down (the hash loaded again on b) gives no rate, not a negative one.
        h.record(t0 + Duration::from_secs(3), 4_000, &[sample("a", "x", 400, 0), sample("b", "x", 5, 0)]);
        let v = h.view();
        assert_eq!(v.len(), 1);
        let p = &v[0].points;
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].1, p[0].2), (0.0, 1));
        assert_eq!((p[1].1, p[1].2), (110.0, 5));
        assert_eq!(p[2].1, 100.0);
    }

    #[test]
    fn points_older_than_the_window_go_and_so_does_an_empty_series() {
        let mut h = History::default();
        let t0 = Instant::now();
        h.record(t0, 1_000, &[sample("a", "old", 1, 0)]);
        h.record(t0, 2_000, &[sample("a", "new", 1, 0)]);
        h.record(t0, 1_000 + WINDOW_MS + 1, &[sample("a", "new", 1, 0)]);
        let v = h.view();
        assert_eq!(v.iter().map(|s| s.hash.as_str()).collect::<Vec<_>>(), vec!["new"]);
        assert_eq!(v[0].points.len(), 2);
    }
}
