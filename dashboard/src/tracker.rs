//! What the dashboard remembers between refreshes: every node it has seen (so that a node that
//! stops answering is shown as left, when the convention says it stopped gracefully, or else
//! as lost, with since when and why, instead of vanishing), and the
//! events read from the difference between two refreshes (loads, unloads, state changes,
//! actors coming and going, losses, returns, leader changes): a deploy, a `--migrate` or a
//! `troupe watch` round shows on the page as it happens, whoever started it.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use troupe_node::protocol::observe::Departure;

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

/// A node that left the convention gracefully (`troupe stop`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LeftView {
    /// When it left, as the node it told says, in milliseconds since the Unix epoch.
    pub since_ms: u64,
}

/// Why a node does not answer.
#[derive(Clone, Debug, PartialEq)]
enum Gone {
    Lost(LostView),
    Left(LeftView),
}

/// Something that changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EventView {
    /// When the dashboard saw it, in milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// `load`, `unload`, `state`, `actors`, `lost`, `left`, `back`, `join` or `leader`.
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
    /// The last good view of each node, and why it does not answer now, if it does not.
    nodes: BTreeMap<String, (NodeView, Option<Gone>)>,
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
    /// member it lists (alive, milliseconds since heard from), `departed` the latest departure
    /// of each node the convention saw go (the leader's word first). Returns every node's view.
    pub fn update(
        &mut self,
        t_ms: u64,
        leader: &str,
        polled: Vec<Polled>,
        leader_says: &BTreeMap<String, (bool, u64)>,
        departed: &BTreeMap<String, Departure>,
    ) -> Vec<NodeView> {
        if self.primed && !leader.is_empty() && leader != self.leader {
            self.event(t_ms, "leader", leader, format!("{leader} leads the convention"));
        }
        self.leader = leader.to_string();
        for (addr, result) in polled {
            match result {
                Ok(view) => self.answered(t_ms, addr, view),
                Err(error) => {
                    let departure = departed.get(&addr);
                    self.unanswered(t_ms, addr, error, leader_says, departure)
                }
            }
        }
        self.primed = true;
        self.nodes
            .values()
            .map(|(view, gone)| match gone {
                Some(g) => NodeView {
                    lost: match g {
                        Gone::Lost(l) => Some(l.clone()),
                        Gone::Left(_) => None,
                    },
                    left: match g {
                        Gone::Left(l) => Some(l.clone()),
                        Gone::Lost(_) => None,
                    },
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
                let text = format!("{addr} answers again (incarnation {})", view.incarnation);
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
        departure: Option<&Departure>,
    ) {
        let entry = self.nodes.entry(addr.clone()).or_insert_with(|| {
            (NodeView { addr: addr.clone(), role: "member".into(), ..NodeView::default() }, None)
        });
        // Only a departure of the life last seen counts (not one of an earlier start).
        let departure = departure.filter(|d| d.incarnation == entry.0.incarnation);
        let gone = match departure {
            Some(d) if d.left => Gone::Left(LeftView { since_ms: d.unix_ms }),
            _ => {
                let since_ms = match &entry.1 {
                    Some(Gone::Lost(l)) => l.since_ms,
                    _ => t_ms,
                };
                Gone::Lost(LostView {
                    since_ms,
                    why: lost_why(error, leader_says.get(&addr), departure, &self.leader, &addr),
                })
            }
        };
        let news = match (&entry.1, &gone) {
            (Some(Gone::Lost(_)), Gone::Lost(_)) | (Some(Gone::Left(_)), Gone::Left(_)) => None,
            (_, Gone::Lost(l)) => Some(("lost", format!("{addr} lost: {}", l.why))),
            (_, Gone::Left(_)) => Some(("left", format!("{addr} left the convention (stopped gracefully)"))),
        };
        entry.1 = Some(gone);
        if let Some((kind, text)) = news {
            self.event(t_ms, kind, &addr, text);
        }
    }

    fn event(&mut self, t_ms: u64, kind: &str, node: &str, text: String) {
        self.events.push_back(EventView { t_ms, kind: kind.into(), node: node.into(), text });
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
    }
}

/// Why a node that does not answer is lost: what the dashboard's request got, what the leader
/// says of it, and when the convention declared it lost.
fn lost_why(
    error: String,
    leader_says: Option<&(bool, u64)>,
    departure: Option<&Departure>,
    leader: &str,
    addr: &str,
) -> String {
    if let Some(d) = departure {
        let at = utc_clock(d.unix_ms);
        return format!("{error}; declared lost by the convention at {at} UTC");
    }
    match leader_says {
        Some((false, ms)) => {
            format!("{error}; the leader has not heard from it for {:.1} s", *ms as f64 / 1000.0)
        }
        Some((true, _)) => format!("{error}; the leader still hears from it"),
        None if !leader.is_empty() && addr != leader => format!("{error}; the leader no longer lists it"),
        None => error,
    }
}

/// `HH:MM:SS` of a Unix time in milliseconds, UTC (the page shows times in the browser's zone;
/// this is only the text of a reason).
fn utc_clock(unix_ms: u64) -> String {
    let s = unix_ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
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
        let gone = BTreeMap::new();
        t.update(
            1,
            "L",
            vec![("L".into(), Ok(node("L", &[]))), ("M".into(), Ok(node("M", &[("aa", "active", 2)])))],
            &none,
            &gone,
        );
        assert!(t.events().is_empty(), "the first refresh is not news");
        let says = BTreeMap::from([("M".to_string(), (false, 2500))]);
        let views = t.update(
            2,
            "L",
            vec![("L".into(), Ok(node("L", &[]))), ("M".into(), Err("connection refused".into()))],
            &says,
            &gone,
        );
        let m = views.iter().find(|v| v.addr == "M").unwrap();
        let lost = m.lost.as_ref().expect("M is lost");
        assert_eq!(lost.since_ms, 2);
        assert!(lost.why.contains("connection refused") && lost.why.contains("2.5 s"), "{}", lost.why);
        assert!(m.versions.is_empty(), "a lost node shows no versions");
        // Still lost at the next refresh: the same since.
        let views = t.update(3, "L", vec![("M".into(), Err("connection refused".into()))], &says, &gone);
        assert_eq!(views.iter().find(|v| v.addr == "M").unwrap().lost.as_ref().unwrap().since_ms, 2);
        t.update(4, "L", vec![("M".into(), Ok(node("M", &[])))], &none, &gone);
        let kinds: Vec<String> = t.events().iter().map(|e| e.kind.clone()).collect();
        assert_eq!(kinds, vec!["lost", "back"]);
    }

    #[test]
    fn a_node_stopped_gracefully_is_left_not_lost_and_a_declared_loss_says_so() {
        let mut t = Tracker::default();
        let none = BTreeMap::new();
        let up = |t: &mut Tracker, gone: &BTreeMap<String, Departure>| {
            t.update(
                1,
                "L",
                vec![("L".into(), Ok(node("L", &[]))), ("M".into(), Ok(node("M", &[])))],
                &none,
                gone,
            )
        };
        up(&mut t, &BTreeMap::new());
        let departed = |left, incarnation| {
            BTreeMap::from([(
                "M".to_string(),
                Departure { node: "M".into(), incarnation, left, unix_ms: 5000 },
            )])
        };
        // A departure of an earlier life of M (another incarnation) says nothing of this one.
        let refused = || vec![("M".to_string(), Err::<NodeView, _>("connection refused".to_string()))];
        let views = t.update(2, "L", refused(), &none, &departed(true, 3));
        assert!(views[1].lost.is_some() && views[1].left.is_none(), "{:?}", views[1]);
        // The convention says it left (a race: the dashboard saw it gone before the leader did).
        let views = t.update(3, "L", refused(), &none, &departed(true, 7));
        let m = &views[1];
        assert_eq!((m.lost.as_ref(), m.left.as_ref().map(|l| l.since_ms)), (None, Some(5000)), "{m:?}");
        assert!(m.versions.is_empty());
        t.update(4, "L", refused(), &none, &departed(true, 7));
        let kinds: Vec<String> = t.events().iter().map(|e| e.kind.clone()).collect();
        assert_eq!(kinds, vec!["lost", "left"], "one event each");
        // Back, then killed and declared lost: lost, with when it was declared.
        up(&mut t, &BTreeMap::new());
        let views = t.update(6, "L", refused(), &none, &departed(false, 7));
        let lost = views[1].lost.as_ref().expect("lost");
        assert!(lost.why.contains("declared lost by the convention at 00:00:05"), "{}", lost.why);
        assert_eq!(lost.since_ms, 6);
    }

    #[test]
    fn loads_state_changes_actors_and_unloads_become_events() {
        let mut t = Tracker::default();
        let none = BTreeMap::new();
        let gone = BTreeMap::new();
        t.update(1, "L", vec![("L".into(), Ok(node("L", &[("aa", "active", 3)])))], &none, &gone);
        t.update(
            2,
            "L",
            vec![("L".into(), Ok(node("L", &[("aa", "active", 3), ("bb", "active", 0)])))],
            &none,
            &gone,
        );
        t.update(
            3,
            "L",
            vec![("L".into(), Ok(node("L", &[("aa", "draining", 0), ("bb", "active", 3)])))],
            &none,
            &gone,
        );
        t.update(
            4,
            "L",
            vec![("L".into(), Ok(node("L", &[("bb", "active", 3)]))), ("N".into(), Ok(node("N", &[])))],
            &none,
            &gone,
        );
        t.update(5, "N", vec![], &none, &gone);
        let kinds: Vec<String> = t.events().iter().map(|e| e.kind.clone()).collect();
        assert_eq!(kinds, vec!["load", "state", "actors", "actors", "unload", "join", "leader"]);
        assert!(t.events()[1].text.contains("active → draining"), "{:?}", t.events()[1]);
    }
}
