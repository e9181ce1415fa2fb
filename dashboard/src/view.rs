//! What the page is sent at each refresh: one JSON document ([`View`]) built from the nodes'
//! answers, the tracker's losses and events, the charts' series and the upgrades under way.
//! Actors are not in it (a convention may hold tens of thousands); the page searches them
//! with `/api/actors`.

use std::collections::BTreeMap;

use serde::Serialize;
use troupe_node::protocol::observe::ObserveReport;
use troupe_node::protocol::status::{StatusReport, ThreadsStatus};
use troupe_node::protocol::GroupInfo;

use crate::history::SeriesView;
use crate::tracker::{EventView, LeftView, LostView};
use crate::upgrades::UpgradeView;

/// The whole page's data at one refresh.
#[derive(Clone, Debug, Default, Serialize)]
pub struct View {
    /// When the poll ended, in milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// The node the dashboard was pointed at.
    pub entry: String,
    /// The leader as the entry node sees it.
    pub leader: String,
    /// The refresh period.
    pub refresh_ms: u64,
    /// The convention's failure-detection time (the entry node's `--dead-after`).
    pub dead_after_ms: u64,
    /// Every node, the lost ones included, in address order.
    pub nodes: Vec<NodeView>,
    /// Named releases: name → active and previous version.
    pub groups: BTreeMap<String, GroupView>,
    /// Messages per second and mailbox depth per version over the last minutes.
    pub series: Vec<SeriesView>,
    /// Live upgrades under way and lately ended, whoever started them, newest first.
    pub upgrades: Vec<UpgradeView>,
    /// What changed, newest last.
    pub events: Vec<EventView>,
}

/// One node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeView {
    /// Admin address.
    pub addr: String,
    /// `leader`, `listed` (a configured leader that does not lead now) or `member`.
    pub role: String,
    /// Set when the node is lost: since when and why.
    pub lost: Option<LostView>,
    /// Set when the node left gracefully (`troupe stop`): since when.
    pub left: Option<LeftView>,
    /// Capabilities (`name` or `name=value`).
    pub caps: Vec<String>,
    /// Its incarnation (new at each start).
    pub incarnation: u64,
    /// Process id.
    pub pid: u32,
    /// Uptime, RSS, threads and the last heartbeat round trip (none from a node too old to
    /// answer `Observe`, or lost).
    pub uptime_ms: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub rtt_us: Option<u64>,
    /// Live actors on it.
    pub actors: usize,
    /// Its loaded versions.
    pub versions: Vec<VersionView>,
    /// Handlers running longer than its `--long-handler`, as they run.
    pub long_handlers: Vec<LongView>,
}

/// One loaded version on one node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VersionView {
    /// Full hash.
    pub hash: String,
    /// Which load of the hash.
    pub generation: u64,
    /// `validating`, `active`, `draining` or `quarantined`.
    pub state: String,
    /// Manifest package and version.
    pub package: String,
    /// Live actors.
    pub live_actors: usize,
    /// Live actors per type (every exported type listed, 0 included).
    pub types: BTreeMap<String, usize>,
    /// Its threads.
    pub threads: ThreadsStatus,
    /// Messages and creates waiting for a thread.
    pub queue_depth: usize,
    /// The groups it belongs to: `@name active` or `@name previous`.
    pub groups: Vec<String>,
}

/// A handler running long.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LongView {
    /// The actor.
    pub actor: String,
    /// Its type.
    pub type_name: String,
    /// For how long, in milliseconds.
    pub running_ms: u64,
}

/// A named release.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupView {
    /// The active version.
    pub active: Option<String>,
    /// The one a rollback returns to.
    pub previous: Option<String>,
}

/// A group's active and previous version.
pub fn group_view(info: &GroupInfo) -> GroupView {
    let previous = info.versions.iter().rev().find(|v| Some(*v) != info.active.as_ref()).cloned();
    GroupView { active: info.active.clone(), previous }
}

/// The view of a node that answered.
pub fn node_view(
    status: &StatusReport,
    observed: Option<&ObserveReport>,
    groups: &BTreeMap<String, GroupView>,
) -> NodeView {
    let conv = &status.convention;
    let role = if conv.role == "leader" {
        "leader"
    } else if conv.leaders.contains(&status.node) {
        "listed"
    } else {
        "member"
    };
    let mut versions: Vec<VersionView> = status
        .versions
        .iter()
        .map(|v| {
            let mut types: BTreeMap<String, usize> = v.actor_types.keys().map(|t| (t.clone(), 0)).collect();
            for a in status.actors.iter().filter(|a| a.hash == v.hash) {
                *types.entry(a.type_name.clone()).or_default() += 1;
            }
            VersionView {
                hash: v.hash.clone(),
                generation: v.generation,
                state: v.state.clone(),
                package: v.package.clone(),
                live_actors: v.live_actors,
                types,
                threads: v.threads.clone(),
                queue_depth: v.queue_depth,
                groups: groups_of(&v.hash, groups),
            }
        })
        .collect();
    versions.sort_by(|a, b| (&a.package, a.generation).cmp(&(&b.package, b.generation)));
    let long_handlers = status
        .versions
        .iter()
        .flat_map(|v| v.long_handlers.iter())
        .map(|l| LongView {
            actor: l.actor.to_string(),
            type_name: l.type_name.clone(),
            running_ms: l.running_ms,
        })
        .collect();
    NodeView {
        addr: status.node.clone(),
        role: role.into(),
        lost: None,
        left: None,
        caps: status.capabilities.clone(),
        incarnation: conv.incarnation,
        pid: status.pid,
        uptime_ms: observed.map(|o| o.uptime_ms),
        rss_bytes: observed.map(|o| o.rss_bytes),
        threads: observed.map(|o| o.threads),
        rtt_us: observed.and_then(|o| o.heartbeat_rtt_us),
        actors: status.actors.len(),
        versions,
        long_handlers,
    }
}

fn groups_of(hash: &str, groups: &BTreeMap<String, GroupView>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, g) in groups {
        if g.active.as_deref() == Some(hash) {
            out.push(format!("@{name} active"));
        } else if g.previous.as_deref() == Some(hash) {
            out.push(format!("@{name} previous"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_names_its_active_and_previous_versions() {
        let info = GroupInfo { active: Some("b".into()), versions: vec!["a".into(), "b".into()] };
        let g = group_view(&info);
        assert_eq!((g.active.as_deref(), g.previous.as_deref()), (Some("b"), Some("a")));
        let groups = BTreeMap::from([("web".to_string(), g)]);
        assert_eq!(groups_of("b", &groups), vec!["@web active"]);
        assert_eq!(groups_of("a", &groups), vec!["@web previous"]);
        assert!(groups_of("c", &groups).is_empty());
        let only = group_view(&GroupInfo { active: Some("a".into()), versions: vec!["a".into()] });
        assert_eq!(only.previous, None);
    }
}
