//! Who leads the convention, as this node sees it. The configured list of leaders
//! (`--convention A,B,C`) is the same on every node; the leader is the first listed node this
//! node knows to be live: itself, if it is listed and every node before it is down. A listed
//! node is *down* once it refused a connection or stayed silent for `dead_after`; it is live
//! again as soon as it answers. Every node keeps asking the listed nodes before its current
//! leader, so leadership returns to the first listed node when it comes back.
//!
//! A node that starts to lead *gathers* before it answers name claims: members bring it their
//! global names when they join it, and it waits until every member it expects has joined, or
//! for `dead_after` (see `convention`).
//!
//! **Alone.** A node that is not listed serves on its own (it is its own leader: names,
//! groups, placement among itself) while both hold: no leader has ever answered it in this
//! process's life, and every listed node *refuses connections* (nobody listens there). A
//! listed node that accepts a connection but does not answer (stalled, or still starting) is
//! not "nobody": the node then waits for it as any member would. Once a leader has answered,
//! the node never serves alone again: it may hold names that leader granted, and a node that
//! lost its leaders must not grant names on its own (a claim fails with `NoLeader` instead).
//! A lone node whose leader appears joins it like any member, bringing its names (a clash is
//! settled as after a partition, see `convention::names`).
//!
//! The lock is private and never held while anything else is called.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A change of leader, as [`Leadership::set_down`] / [`Leadership::set_live`] report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    /// The leader before.
    pub(crate) from: String,
    /// The leader now.
    pub(crate) to: String,
}

struct Inner {
    /// Listed nodes known to be down.
    down: BTreeSet<String>,
    /// When the current leader last answered (members), or when this node started to lead.
    last_ok: Instant,
    /// While leading: the members expected to join before name claims are answered.
    gathering: Option<Gathering>,
    /// How many times the leader changed (for status and logs).
    changes: u64,
    /// When the membership task last ran (a long gap means this process was stalled).
    last_tick: Instant,
    /// Whether listed nodes are being asked (one round at a time).
    asking: bool,
    /// Whether a leader answered this node in this process's life (then it never serves alone).
    joined: bool,
    /// Listed nodes whose port refused a connection when last probed (nobody listens there).
    refused: BTreeSet<String>,
    /// Whether this life wrote its record of having led members (see `convention::record`).
    recorded: bool,
    /// Whether, while leading, a member was lost without saying goodbye (it may come back
    /// holding names this node granted).
    lost_silently: bool,
}

/// A new leader's wait for the members' names: over when every expected member joined and
/// `floor` passed, or at `deadline` whatever happened.
struct Gathering {
    expected: BTreeSet<String>,
    floor: Instant,
    deadline: Instant,
    /// The latest the deadline may move to when members tell of others to wait for.
    cap: Instant,
}

/// The leadership state (see the module's documentation).
pub(crate) struct Leadership {
    me: String,
    list: Vec<String>,
    inner: Mutex<Inner>,
}

impl Leadership {
    /// `list` is the configured list (never empty: the caller gives the default).
    pub(crate) fn new(me: &str, list: &[String]) -> Leadership {
        assert!(!list.is_empty(), "the convention lists at least one leader");
        Leadership {
            me: me.to_string(),
            list: list.to_vec(),
            inner: Mutex::new(Inner {
                down: BTreeSet::new(),
                last_ok: Instant::now(),
                gathering: None,
                changes: 0,
                last_tick: Instant::now(),
                asking: false,
                joined: false,
                refused: BTreeSet::new(),
                recorded: false,
                lost_silently: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn current_in(&self, st: &Inner) -> String {
        if self.alone_in(st) {
            return self.me.clone();
        }
        self.list
            .iter()
            .find(|a| **a == self.me || !st.down.contains(*a))
            // Every listed node is down and this one is not listed: keep asking the first.
            .unwrap_or(&self.list[0])
            .clone()
    }

    /// Whether this node is listed (a listed node leads once every node before it is down: it
    /// is never alone).
    fn listed(&self) -> bool {
        self.list.contains(&self.me)
    }

    fn alone_in(&self, st: &Inner) -> bool {
        !st.joined && !self.listed() && self.list.iter().all(|a| st.refused.contains(a))
    }

    /// Whether this node serves alone (see the module's documentation).
    pub(crate) fn alone(&self) -> bool {
        self.alone_in(&self.lock())
    }

    /// Whether this node might serve alone, so its membership task probes the listed nodes:
    /// it is not listed and no leader has answered it yet.
    pub(crate) fn may_be_alone(&self) -> bool {
        !self.listed() && !self.lock().joined
    }

    /// Whether a leader has answered this node in this process's life.
    pub(crate) fn was_answered(&self) -> bool {
        self.lock().joined
    }

    /// A leader answered a registration (this node is part of a convention from now on).
    pub(crate) fn mark_joined(&self) {
        self.lock().joined = true;
    }

    /// A probe of listed node `addr`: whether its port refused the connection (nobody
    /// listens). The new leader if that changes it (this node, when it is now alone).
    pub(crate) fn probed(&self, addr: &str, refuses: bool) -> Option<Change> {
        let mut st = self.lock();
        let before = self.current_in(&st);
        if refuses {
            st.refused.insert(addr.to_string());
        } else {
            st.refused.remove(addr);
        }
        self.change(&mut st, before)
    }

    /// Whether this life has yet to write its record of leading members; true once.
    pub(crate) fn must_record(&self) -> bool {
        !std::mem::replace(&mut self.lock().recorded, true)
    }

    /// While leading, a member was lost without a goodbye.
    pub(crate) fn lost_member_silently(&self) {
        self.lock().lost_silently = true;
    }

    /// Whether a member was lost without a goodbye while this node led.
    pub(crate) fn lost_any_silently(&self) -> bool {
        self.lock().lost_silently
    }

    /// The configured list.
    pub(crate) fn list(&self) -> &[String] {
        &self.list
    }

    /// The leader now.
    pub(crate) fn current(&self) -> String {
        self.current_in(&self.lock())
    }

    /// Whether this node leads now.
    pub(crate) fn is_me(&self) -> bool {
        self.current() == self.me
    }

    /// Listed nodes before the current leader, which are down: asked every heartbeat, in case
    /// they came back. When every listed node is down (this node is not listed), all of them
    /// but the one registered with anyway.
    pub(crate) fn down_before_current(&self) -> Vec<String> {
        let st = self.lock();
        let current = self.current_in(&st);
        if st.down.contains(&current) {
            return self.list.iter().filter(|a| **a != current).cloned().collect();
        }
        self.list.iter().take_while(|a| **a != current).filter(|a| st.down.contains(*a)).cloned().collect()
    }

    /// How many times the leader changed.
    pub(crate) fn changes(&self) -> u64 {
        self.lock().changes
    }

    fn change(&self, st: &mut Inner, before: String) -> Option<Change> {
        let to = self.current_in(st);
        if to == before {
            return None;
        }
        st.changes += 1;
        st.last_ok = Instant::now();
        st.gathering = None;
        Some(Change { from: before, to })
    }

    /// Listed node `addr` is down (it refused, or stayed silent); the new leader if that
    /// changes it.
    pub(crate) fn set_down(&self, addr: &str) -> Option<Change> {
        if addr == self.me || !self.list.iter().any(|a| a == addr) {
            return None;
        }
        let mut st = self.lock();
        let before = self.current_in(&st);
        st.down.insert(addr.to_string());
        self.change(&mut st, before)
    }

    /// Listed node `addr` answered; the new leader if that changes it.
    pub(crate) fn set_live(&self, addr: &str) -> Option<Change> {
        let mut st = self.lock();
        let before = self.current_in(&st);
        st.down.remove(addr);
        st.refused.remove(addr);
        self.change(&mut st, before)
    }

    /// The membership task runs; the time since it last ran, if longer than `limit` (this
    /// process was not running: stopped, or starved).
    pub(crate) fn tick(&self, limit: Duration) -> Option<Duration> {
        let mut st = self.lock();
        let gap = st.last_tick.elapsed();
        st.last_tick = Instant::now();
        (gap > limit).then_some(gap)
    }

    /// The current leader answered a registration (so this node has joined a convention).
    pub(crate) fn answered(&self) {
        let mut st = self.lock();
        st.last_ok = Instant::now();
        st.joined = true;
    }

    /// Whether the current leader has not answered for `dead_after`.
    pub(crate) fn silent(&self, dead_after: Duration) -> bool {
        self.lock().last_ok.elapsed() > dead_after
    }

    // ---- gathering (while leading) -----------------------------------------------------------

    /// This node starts to lead: it waits for `expected` members, or until `deadline`.
    pub(crate) fn start_gathering(&self, expected: BTreeSet<String>, wait: Duration) {
        let now = Instant::now();
        let mut st = self.lock();
        st.gathering = (!expected.is_empty()).then(|| Gathering {
            expected,
            floor: now,
            deadline: now + wait,
            cap: now + wait,
        });
    }

    /// Gathering lasts at least `wait` from now, whoever is expected (a leader that starts and
    /// cannot know whether members are out there); members that join and tell of others extend
    /// it up to `cap` from now, until those joined too.
    pub(crate) fn wait_at_least(&self, wait: Duration, cap: Duration) {
        let now = Instant::now();
        let (until, cap) = (now + wait, now + cap.max(wait));
        let mut st = self.lock();
        match &mut st.gathering {
            Some(g) => {
                g.floor = g.floor.max(until);
                g.deadline = g.deadline.max(until);
                g.cap = g.cap.max(cap);
            }
            None => {
                st.gathering =
                    Some(Gathering { expected: BTreeSet::new(), floor: until, deadline: until, cap })
            }
        }
    }

    /// A round of asking the listed nodes starts, unless one is under way.
    pub(crate) fn start_asking(&self) -> bool {
        !std::mem::replace(&mut self.lock().asking, true)
    }

    /// The round is over.
    pub(crate) fn done_asking(&self) {
        self.lock().asking = false;
    }

    /// More members expected (a joining member knows them).
    pub(crate) fn expect(&self, more: impl IntoIterator<Item = String>) {
        let mut st = self.lock();
        if let Some(g) = &mut st.gathering {
            let before = g.expected.len();
            g.expected.extend(more.into_iter().filter(|a| *a != self.me));
            if g.expected.len() > before {
                g.deadline = g.deadline.max(g.cap);
            }
        }
    }

    /// Member `addr` joined; whether gathering is over now.
    pub(crate) fn joined(&self, addr: &str) -> bool {
        let mut st = self.lock();
        if let Some(g) = &mut st.gathering {
            g.expected.remove(addr);
        }
        self.gathered_in(&mut st)
    }

    fn gathered_in(&self, st: &mut Inner) -> bool {
        let now = Instant::now();
        let done = match &st.gathering {
            None => true,
            Some(g) => now >= g.deadline || (g.expected.is_empty() && now >= g.floor),
        };
        if done {
            st.gathering = None;
        }
        done
    }

    /// Whether this leader has heard from every member it expected (or waited long enough).
    pub(crate) fn gathered(&self) -> bool {
        self.gathered_in(&mut self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Vec<String> {
        vec!["a:1".into(), "b:2".into(), "c:3".into()]
    }

    #[test]
    fn the_first_live_listed_node_leads_and_leadership_returns_to_it() {
        let m = Leadership::new("m:9", &list());
        assert_eq!(m.current(), "a:1");
        assert_eq!(m.set_down("a:1"), Some(Change { from: "a:1".into(), to: "b:2".into() }));
        assert_eq!(m.set_down("a:1"), None, "already down");
        assert_eq!(m.down_before_current(), vec!["a:1".to_string()]);
        assert_eq!(m.set_down("b:2").map(|c| c.to), Some("c:3".into()));
        assert_eq!(m.set_live("a:1").map(|c| c.to), Some("a:1".into()));
        assert!(m.down_before_current().is_empty());
        assert_eq!(m.changes(), 3);
    }

    #[test]
    fn a_listed_node_leads_once_every_node_before_it_is_down_and_never_counts_itself_down() {
        let b = Leadership::new("b:2", &list());
        assert!(!b.is_me());
        b.set_down("b:2");
        assert!(!b.is_me());
        b.set_down("a:1");
        assert!(b.is_me());
        b.set_down("c:3");
        assert!(b.is_me(), "nodes after it do not matter");
    }

    #[test]
    fn an_unlisted_node_with_every_leader_down_keeps_asking_them_all() {
        let m = Leadership::new("m:9", &list());
        for a in list() {
            m.set_down(&a);
        }
        assert_eq!(m.current(), "a:1");
        assert_eq!(m.down_before_current(), vec!["b:2".to_string(), "c:3".to_string()]);
        assert_eq!(m.set_live("c:3").map(|c| c.to), Some("c:3".into()));
    }

    #[test]
    fn an_unlisted_node_serves_alone_only_while_every_listed_node_refuses_and_none_ever_answered() {
        let m = Leadership::new("m:9", &["a:1".to_string(), "b:2".to_string()]);
        assert!(m.may_be_alone());
        assert!(!m.alone(), "nothing probed yet: it does not know");
        assert_eq!(m.probed("a:1", true), None);
        assert!(!m.alone(), "b:2 was not found refusing");
        assert_eq!(m.probed("b:2", true), Some(Change { from: "a:1".into(), to: "m:9".into() }));
        assert!(m.alone() && m.is_me(), "nobody listens anywhere: it is its own leader");
        assert_eq!(m.down_before_current(), Vec::<String>::new(), "none of them is known down yet");
        // Something listens at b:2 (stalled, or still starting): that is not nobody.
        assert_eq!(m.probed("b:2", false).map(|c| c.to), Some("a:1".into()));
        assert!(!m.alone() && !m.is_me());
        assert_eq!(m.probed("b:2", true).map(|c| c.to), Some("m:9".into()));
        // A listed node answers: it leads, and once it answered, this node is never alone again.
        assert_eq!(m.set_live("a:1").map(|c| c.to), Some("a:1".into()));
        m.answered();
        assert!(m.was_answered() && !m.may_be_alone());
        m.probed("a:1", true);
        m.probed("b:2", true);
        assert!(!m.alone(), "a node that was part of a convention never grants names on its own");
        assert_eq!(m.current(), "a:1");
    }

    #[test]
    fn a_listed_node_is_never_alone_and_an_answer_from_a_leader_it_was_asking_counts() {
        let b = Leadership::new("b:2", &list());
        assert!(!b.may_be_alone());
        for a in list() {
            b.probed(&a, true);
        }
        assert!(!b.alone(), "a listed node leads in its turn instead");
        let m = Leadership::new("m:9", &list());
        m.mark_joined();
        for a in list() {
            m.probed(&a, true);
        }
        assert!(!m.alone());
    }

    #[test]
    fn the_record_is_written_once_and_a_silent_loss_is_remembered() {
        let a = Leadership::new("a:1", &list());
        assert!(a.must_record());
        assert!(!a.must_record(), "once per life");
        assert!(!a.lost_any_silently());
        a.lost_member_silently();
        assert!(a.lost_any_silently());
    }

    #[test]
    fn gathering_ends_when_every_expected_member_joined_or_the_wait_is_over() {
        let b = Leadership::new("b:2", &list());
        b.start_gathering(["m:1".to_string(), "m:2".to_string()].into(), Duration::from_secs(60));
        assert!(!b.gathered());
        b.expect(["m:3".to_string(), "b:2".to_string()]);
        assert!(!b.joined("m:1"));
        assert!(!b.joined("m:2"));
        assert!(b.joined("m:3"));
        assert!(b.gathered());
        b.start_gathering(["m:1".to_string()].into(), Duration::ZERO);
        assert!(b.gathered(), "the wait is over");
        b.start_gathering(BTreeSet::new(), Duration::from_secs(60));
        assert!(b.gathered(), "nobody to wait for");
        b.wait_at_least(Duration::from_secs(60), Duration::from_secs(60));
        assert!(!b.gathered(), "a starting leader waits a heartbeat for members it cannot know");
        b.start_gathering(BTreeSet::new(), Duration::ZERO);
        assert!(b.gathered());
        // A starting leader whose wait is over unless a member tells of others.
        b.wait_at_least(Duration::ZERO, Duration::from_secs(60));
        b.expect(["m:5".to_string()]);
        assert!(!b.gathered(), "told of m:5: it waits for it, up to the cap");
        assert!(b.joined("m:5"));
    }
}
