//! Live upgrades as the page shows them, whoever started them (`troupe upgrade`, `deploy
//! --migrate`, `troupe watch`, this page): each node's `Observe` answer carries its share of
//! the upgrades under way there and of the last few ended (moved, stayed, failed so far and a
//! pause histogram); one refresh adds the shares of one upgrade up across the nodes.

use std::collections::BTreeMap;

use serde::Serialize;
use troupe_node::protocol::observe::{UpgradeProgress, PAUSE_BUCKETS};

/// One upgrade, every node added up.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UpgradeView {
    /// The upgrade's id on the node that runs it.
    pub id: u64,
    /// Old and new version (full hashes).
    pub from: String,
    pub to: String,
    /// The node that runs it (empty if it did not answer: the shares of the others are shown).
    pub origin: String,
    /// When the first share began, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// Some node still moves actors.
    pub running: bool,
    /// Live actors of FROM when the shares began, moved, stayed and failed so far.
    pub total: u64,
    pub moved: u64,
    pub stayed: u64,
    pub failed: u64,
    /// An all-or-nothing upgrade rolled back somewhere.
    pub rolled_back: bool,
    /// Pauses per bucket, every node added up: bucket `i` is `[2^i, 2^(i+1))` µs.
    pub pause_histogram: Vec<u64>,
    /// Each node's share.
    pub nodes: Vec<ShareView>,
}

/// One node's share of an upgrade.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ShareView {
    pub node: String,
    pub running: bool,
    pub total: u64,
    pub moved: u64,
    pub stayed: u64,
    pub failed: u64,
}

/// The upgrades in `shares` (node, its `Observe` list), newest first.
pub fn upgrades_of(shares: &[(String, Vec<UpgradeProgress>)]) -> Vec<UpgradeView> {
    let mut by: BTreeMap<(u64, String, String), UpgradeView> = BTreeMap::new();
    for (node, list) in shares {
        for p in list {
            let u = by.entry((p.upgrade, p.from.clone(), p.to.clone())).or_insert_with(|| UpgradeView {
                id: p.upgrade,
                from: p.from.clone(),
                to: p.to.clone(),
                started_ms: p.started_unix_ms,
                pause_histogram: vec![0; PAUSE_BUCKETS],
                ..UpgradeView::default()
            });
            if p.origin {
                u.origin = node.clone();
            }
            u.started_ms = u.started_ms.min(p.started_unix_ms);
            u.running |= p.running;
            u.rolled_back |= p.rolled_back;
            u.total += p.total;
            u.moved += p.moved;
            u.stayed += p.stayed;
            u.failed += p.failed;
            for (sum, n) in u.pause_histogram.iter_mut().zip(&p.pause_histogram) {
                *sum += n;
            }
            u.nodes.push(ShareView {
                node: node.clone(),
                running: p.running,
                total: p.total,
                moved: p.moved,
                stayed: p.stayed,
                failed: p.failed,
            });
        }
    }
    let mut all: Vec<UpgradeView> = by.into_values().collect();
    all.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(b.id.cmp(&a.id)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(
        upgrade: u64,
        origin: bool,
        running: bool,
        moved: u64,
        pauses: &[(usize, u64)],
    ) -> UpgradeProgress {
        let mut pause_histogram = vec![0; PAUSE_BUCKETS];
        for (b, n) in pauses {
            pause_histogram[*b] = *n;
        }
        UpgradeProgress {
            upgrade,
            from: "v1".into(),
            to: "v2".into(),
            origin,
            started_unix_ms: 1000 + upgrade,
            running,
            total: 4,
            moved,
            stayed: 1,
            failed: 0,
            pause_histogram,
            rolled_back: false,
        }
    }

    #[test]
    fn shares_of_one_upgrade_add_up_across_nodes() {
        let shares = vec![
            ("a:1".to_string(), vec![share(7, true, false, 3, &[(4, 2), (9, 1)])]),
            ("b:2".to_string(), vec![share(7, false, true, 1, &[(4, 1)]), share(8, false, false, 4, &[])]),
        ];
        let ups = upgrades_of(&shares);
        assert_eq!(ups.iter().map(|u| u.id).collect::<Vec<_>>(), vec![8, 7], "newest first");
        let u = &ups[1];
        assert_eq!(u.origin, "a:1");
        assert!(u.running, "b:2 still moves");
        assert_eq!((u.total, u.moved, u.stayed, u.failed), (8, 4, 2, 0));
        assert_eq!((u.pause_histogram[4], u.pause_histogram[9]), (3, 1));
        assert_eq!(u.nodes.len(), 2);
        assert_eq!(ups[0].origin, "", "its origin did not report it");
    }
}
