//! What the dashboard remembers between refreshes: every node it has seen (so that a node that
//! stops answering is shown as lost, with since when and why, instead of vanishing), and the
//! events read from the difference between two refreshes (loads, unloads, state changes,
//! actors coming and going, losses, returns, leader changes): a deploy, a `--migrate` or a
//! `troupe watch` round shows on the page as it happens, whoever started it.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::view::NodeView;

/// How many events the page is sent: the latest ones, a few screenfuls.
const EVENTS_KEPT: usize = 200;

/// A lost node: since when, and why.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LostView {
    /// When the dashboard first found it lost, in milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// Why: what the dashboard's request got, and what the leader says of it.
    pub why: String,
}

/// Something that changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EventView {
    /// When the dashboard saw it, in milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// `load`, `unload`, `state`, `actors`, `lost`, `back`, `join` or `leader`.
    pub kind: String,
    /// The node it happened on.
    pub node: String,
    /// What happened, in words.
    pub text: String,
}

/// One node's answer at a refresh: its view, or why there is none.
pub type Polled = (String, Result<NodeView, String>);

/// Nodes seen so far and recent events, owned by the poller.
#[derive(Default)]
pub struct Tracker {
    /// The last good view of each node, and its loss if it is lost now.
    nodes: BTreeMap<String, (NodeView, Option<LostView>)>,
    events: VecDeque<EventView>,
    leader: String,
    /// Whether a refresh happened before (the first one reports no events: all is new).
    primed: bool,
}

impl Tracker {
    /// Every node seen so far.
    pub fn known(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// Takes one refresh's answers; `leader_says` is what the leader's status says of each
    /// member it lists (alive, milliseconds since heard from). Returns every node's view.
    pub fn update(
        &mut self,
        t_ms: u64,
        leader: &str,
        polled: Vec<Polled>,
        leader_says: &BTreeMap<String, (bool, u64)>,
    ) -> Vec<NodeView> {
        if self.primed && !leader.is_empty() && leader != self.leader {
            self.event(t_ms, "leader", leader, format!("{leader} leads the convention"));
        }
        self.leader = leader.to_string();
        for (addr, result) in polled {
            match result {
                Ok(view) => self.answered(t_ms, addr, view),
                Err(error) => self.unanswered(t_ms, addr, error, leader_says),
            }
        }
        self.primed = true;
        self.nodes
            .values()
            .map(|(view, lost)| match lost {
                Some(l) => NodeView {
                    lost: Some(l.clone()),
                    versions: Vec::new(),
                    long_handlers: Vec::new(),
                    actors: 0,
                    uptime_ms: None,
                    rss_bytes: None,
                    threads: None,
                    rtt_us: None,
                    ..view.clone()
                },
                None => view.clone(),
            })
            .collect()
    }

    /// The events, oldest first.
    pub fn events(&self) -> Vec<EventView> {
        self.events.iter().cloned().collect()
    }

    fn answered(&mut self, t_ms: u64, addr: String, view: NodeView) {
        let before = self.nodes.remove(&addr);
        match &before {
            None if self.primed => self.event(t_ms, "join", &addr, format!("{addr} joined")),
            Some((_, Some(_))) => {
                let text = format!("{addr} is back (incarnation {})", view.incarnation);
                self.event(t_ms, "back", &addr, text);
            }
            _ => {}
        }
        if let Some((old, None)) = &before {
            for e in version_changes(old, &view) {
                self.event(t_ms, e.0, &addr, e.1);
            }
        }
        self.nodes.insert(addr, (view, None));
    }

    fn unanswered(
        &mut self,
        t_ms: u64,
        addr: String,
        error: String,
        leader_says: &BTreeMap<String, (bool, u64)>,
    ) {
        let why = match leader_says.get(&addr) {
            Some((false, ms)) => {
                format!("{error}; the leader has not heard from it for {:.1} s", *ms as f64 / 1000.0)
            }
            Some((true, _)) => format!("{error}; the leader still hears from it"),
            None if !self.leader.is_empty() && addr != self.leader => {
                format!("{error}; the leader no longer lists it")
            }
            None => error,
        };
        let entry = self.nodes.entry(addr.clone()).or_insert_with(|| {
            (NodeView { addr: addr.clone(), role: "member".into(), ..NodeView::default() }, None)
        });
        match &mut entry.1 {
            Some(lost) => lost.why = why,
            None => {
                entry.1 = Some(LostView { since_ms: t_ms, why: why.clone() });
                self.event(t_ms, "lost", &addr, format!("{addr} lost: {why}"));
            }
        }
    }

    fn event(&mut self, t_ms: u64, kind: &str, node: &str, text: String) {
        self.events.push_back(EventView { t_ms, kind: kind.into(), node: node.into(), text });
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
    }
}

/// What changed in a node's versions between two refreshes.
fn version_changes(old: &NodeView, new: &NodeView) -> Vec<(&'static str, String)> {
    let short = |h: &str| h.chars().take(12).collect::<String>();
    let mut out = Vec::new();
    for v in &new.versions {
        let label = format!("{} {}", v.package, short(&v.hash));
        match old.versions.iter().find(|o| o.hash == v.hash && o.generation == v.generation) {
            None => out.push(("load", format!("{label} loaded on {} ({})", new.addr, v.state))),
            Some(o) => {
                if o.state != v.state {
                    out.push(("state", format!("{label} on {}: {} → {}", new.addr, o.state, v.state)));
                }
                if o.live_actors != v.live_actors {
                    let text =
                        format!("{label} on {}: actors {} → {}", new.addr, o.live_actors, v.live_actors);
                    out.push(("actors", text));
                }
            }
        }
    }
    for o in &old.versions {
        if !new.versions.iter().any(|v| v.hash == o.hash && v.generation == o.generation) {
            let text = format!("{} {} unloaded from {}", o.package, short(&o.hash), new.addr);
            out.push(("unload", text));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::VersionView;

    fn node(addr: &str, versions: &[(&str, &str, usize)]) -> NodeView {
        let versions = versions
            .iter()
            .map(|(hash, state, live)| VersionView {
                hash: hash.to_string(),
                state: state.to_string(),
                package: "counter 1.0.0".into(),
                live_actors: *live,
                ..VersionView::default()
            })
            .collect();
        NodeView { addr: addr.into(), role: "member".into(), incarnation: 7, versions, ..NodeView::default() }
    }

    #[test]
    fn a_node_that_stops_answering_is_lost_with_why_and_comes_back() {
        let mut t = Tracker::default();
        let none = BTreeMap::new();
        t.update(
            1,
            "L",
            vec![("L".into(), Ok(node("L", &[]))), ("M".into(), Ok(node("M", &[("aa", "active", 2)])))],
            &none,
        );
        assert!(t.events().is_empty(), "the first refresh is not news");
        let says = BTreeMap::from([("M".to_string(), (false, 2500))]);
        let views = t.update(
            2,
            "L",
            vec![("L".into(), Ok(node("L", &[]))), ("M".into(), Err("connection refused".into()))],
            &says,
        );
        let m = views.iter().find(|v| v.addr == "M").unwrap();
        let lost = m.lost.as_ref().expect("M is lost");
        assert_eq!(lost.since_ms, 2);
        assert!(lost.why.contains("connection refused") && lost.why.contains("2.5 s"), "{}", lost.why);
        assert!(m.versions.is_empty(), "a lost node shows no versions");
        // Still lost at the next refresh: the same since.
        let views = t.update(3, "L", vec![("M".into(), Err("connection refused".into()))], &says);
        assert_eq!(views.iter().find(|v| v.addr == "M").unwrap().lost.as_ref().unwrap().since_ms, 2);
        t.update(4, "L", vec![("M".into(), Ok(node("M", &[])))], &none);
        let kinds: Vec<String> = t.events().iter().map(|e| e.kind.clone()).collect();
        assert_eq!(kinds, vec!["lost", "back"]);
    }

    #[test]
    fn loads_state_changes_actors_and_unloads_become_events() {
        let mut t = Tracker::default();
        let none = BTreeMap::new();
        t.update(1, "L", vec![("L".into(), Ok(node("L", &[("aa", "active", 3)])))], &none);
        t.update(
            2,
            "L",
            vec![("L".into(), Ok(node("L", &[("aa", "active", 3), ("bb", "active", 0)])))],
            &none,
        );
        t.update(
            3,
            "L",
            vec![("L".into(), Ok(node("L", &[("aa", "draining", 0), ("bb", "active", 3)])))],
            &none,
        );
        t.update(
            4,
            "L",
            vec![("L".into(), Ok(node("L", &[("bb", "active", 3)]))), ("N".into(), Ok(node("N", &[])))],
            &none,
        );
        t.update(5, "N", vec![], &none);
        let kinds: Vec<String> = t.events().iter().map(|e| e.kind.clone()).collect();
        assert_eq!(kinds, vec!["load", "state", "actors", "actors", "unload", "join", "leader"]);
        assert!(t.events()[1].text.contains("active → draining"), "{:?}", t.events()[1]);
    }
}
