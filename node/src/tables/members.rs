//! Membership: the other nodes of the convention as this node knows them (the *directory*:
//! their capabilities, policies and active versions), when the leader last answered, and the
//! actors watching for joins, losses and capability changes. The lock is private and never
//! held while anything else is called.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use troupe_actor_abi::message::{Address, ConventionChange, Payload, SystemMessage};

use crate::model::config::RemoteSources;
use crate::wire::observe::Departure;
use crate::wire::peer::{DirectoryVersion, MemberInfo, SourceHint};
use crate::wire::status::MemberStatus;

/// What a node knows of another member.
struct Member {
    info: MemberInfo,
    last_seen: Instant,
    /// The directory version at which its entry last changed (the leader's deltas).
    changed_at: u64,
}

/// How many departures the leader remembers for deltas; a member whose copy is older gets the
/// whole directory.
const REMOVALS: usize = 1024;

/// How many departures (left or lost) are kept for watchers (`Request::Observe`): a screenful,
/// whatever the churn.
const DEPARTURES_KEPT: usize = 32;

impl Member {
    fn has_source(&self, hash: &str) -> bool {
        self.info.sources.iter().any(|s| s.hash == hash)
    }
}

/// A member as placement sees it (owned: the table's lock does not leave this module).
pub(crate) struct MemberSnapshot {
    pub(crate) addr: String,
    pub(crate) capabilities: Vec<String>,
    pub(crate) remote_sources: RemoteSources,
    pub(crate) has_source: bool,
}

/// Whether two entries are the same life of a node (same incarnation, and the same process
/// for entries from nodes that predate incarnations).
fn same_life(a: &MemberInfo, b: &MemberInfo) -> bool {
    a.incarnation == b.incarnation && a.pid == b.pid
}

/// The update watchers get about `node`.
pub(crate) fn update(node: &str, caps: &[String], added: bool, change: ConventionChange) -> Payload {
    Payload::System(SystemMessage::ActorSystemConventionUpdate {
        node: node.to_string(),
        capabilities: caps.to_vec(),
        added,
        change,
    })
}

struct Inner {
    members: BTreeMap<String, Member>,
    watchers: BTreeSet<Address>,
    /// The directory's change counter (raised by every join, change and departure).
    version: u64,
    /// Recent departures (version, address), for deltas.
    removed: VecDeque<(u64, String)>,
    /// Deltas can be given from this version on (older departures are forgotten).
    floor: u64,
    /// While leading: this node's own entry, and the version at which it last changed.
    own: Option<(MemberInfo, u64)>,
    /// Incarnations declared lost, by address: one of them that registers again is fenced.
    lost: HashMap<String, u64>,
    /// On a member: the leader's directory version its copy is at.
    copy: Option<DirectoryVersion>,
    /// On a member: the entry it last sent the leader.
    sent: Option<MemberInfo>,
    /// The latest departures, oldest first, for watchers.
    departed: VecDeque<Departure>,
}

impl Inner {
    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }
}

/// The membership table (see the module's documentation).
pub(crate) struct Members {
    inner: Mutex<Inner>,
}

impl Default for Members {
    fn default() -> Self {
        Members {
            inner: Mutex::new(Inner {
                members: BTreeMap::new(),
                watchers: BTreeSet::new(),
                version: 0,
                removed: VecDeque::new(),
                floor: 0,
                own: None,
                lost: HashMap::new(),
                copy: None,
                sent: None,
                departed: VecDeque::new(),
            }),
        }
    }
}

impl Members {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- the directory -------------------------------------------------------------------------

    /// Every member's address.
    pub(crate) fn addrs(&self) -> Vec<String> {
        self.lock().members.keys().cloned().collect()
    }

    /// Whether `addr` is a member.
    pub(crate) fn contains(&self, addr: &str) -> bool {
        self.lock().members.contains_key(addr)
    }

    /// The members holding `hash`, the `first` one first if it holds it.
    pub(crate) fn holders(&self, hash: &str, first: &str) -> Vec<String> {
        let mut h: Vec<String> =
            self.lock().members.iter().filter(|(_, m)| m.has_source(hash)).map(|(a, _)| a.clone()).collect();
        h.sort_by_key(|a| *a != first);
        h
    }

    /// Whether any member holds `hash`.
    pub(crate) fn anyone_holds(&self, hash: &str) -> bool {
        self.lock().members.values().any(|m| m.has_source(hash))
    }

    /// Every hash the directory lists.
    pub(crate) fn hashes(&self) -> Vec<String> {
        self.lock().members.values().flat_map(|m| m.info.sources.iter().map(|s| s.hash.clone())).collect()
    }

    /// The declared types of `hash`, from the first member that lists it.
    pub(crate) fn types_of(&self, hash: &str) -> Option<BTreeMap<String, Vec<String>>> {
        self.lock()
            .members
            .values()
            .find_map(|m| m.info.sources.iter().find(|s| s.hash == hash))
            .map(|s| s.types.clone())
    }

    /// Placement's view of every member for `hash`.
    pub(crate) fn placement_view(&self, hash: &str) -> Vec<MemberSnapshot> {
        self.lock()
            .members
            .values()
            .map(|m| MemberSnapshot {
                addr: m.info.node.clone(),
                capabilities: m.info.capabilities.clone(),
                remote_sources: m.info.remote_sources,
                has_source: m.has_source(hash),
            })
            .collect()
    }

    /// A create's hint says where its version is: learn it, if our directory does not say yet.
    pub(crate) fn learn(&self, hint: &SourceHint) {
        let mut st = self.lock();
        for h in &hint.holders {
            if let Some(m) = st.members.get_mut(h) {
                if !m.has_source(&hint.summary.hash) {
                    m.info.sources.push(hint.summary.clone());
                }
            }
        }
    }

    // ---- joins, heartbeats and losses -----------------------------------------------------------

    /// Records a member heard from now; returns the update watchers get (a join or a
    /// capability change), if any.
    pub(crate) fn upsert(&self, info: MemberInfo) -> Option<Payload> {
        let mut st = self.lock();
        let next = st.version + 1;
        match st.members.get_mut(&info.node) {
            Some(m) => {
                let changed = (m.info.capabilities != info.capabilities).then(|| {
                    update(&info.node, &info.capabilities, true, ConventionChange::CapabilitiesChanged)
                });
                m.last_seen = Instant::now();
                if m.info != info {
                    m.info = info;
                    m.changed_at = next;
                    st.version = next;
                }
                changed
            }
            None => {
                tracing::info!(node = %info.node, "member joined");
                let joined = update(&info.node, &info.capabilities, true, ConventionChange::Joined);
                st.members
                    .insert(info.node.clone(), Member { info, last_seen: Instant::now(), changed_at: next });
                st.version = next;
                Some(joined)
            }
        }
    }

    /// Whether `info` comes from another life of the member we know at its address (the old
    /// one and its actors are gone).
    pub(crate) fn restarted(&self, info: &MemberInfo) -> bool {
        self.lock().members.get(&info.node).is_some_and(|m| !same_life(&m.info, info))
    }

    /// A heartbeat without an entry: true if `node` is known in incarnation `incarnation`
    /// (now seen), false if the leader needs its entry.
    pub(crate) fn touch(&self, node: &str, incarnation: u64) -> bool {
        match self.lock().members.get_mut(node) {
            Some(m) if m.info.incarnation == incarnation => {
                m.last_seen = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Whether incarnation `incarnation` of `node` was declared lost here.
    pub(crate) fn was_lost(&self, node: &str, incarnation: u64) -> bool {
        self.lock().lost.get(node) == Some(&incarnation)
    }

    /// The leader's whole list arrived: the members it no longer lists, or lists in another
    /// life (the old one and its actors are gone).
    pub(crate) fn missing_from(&self, listed: &BTreeMap<String, MemberInfo>) -> Vec<String> {
        let st = self.lock();
        st.members
            .iter()
            .filter(|(addr, old)| listed.get(*addr).is_none_or(|new| !same_life(&old.info, new)))
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Every member counts as heard from now: a node that starts to lead gives each
    /// `dead_after` to speak, and a member takes its leader's answer as word that everyone
    /// listed is alive.
    pub(crate) fn grace(&self) {
        for m in self.lock().members.values_mut() {
            m.last_seen = Instant::now();
        }
    }

    // ---- the leader's directory versions --------------------------------------------------------

    /// While leading: this node's own entry; raises the version if it changed.
    pub(crate) fn set_own(&self, info: MemberInfo) {
        let mut st = self.lock();
        if st.own.as_ref().is_none_or(|(old, _)| *old != info) {
            let v = st.bump();
            st.own = Some((info, v));
        }
    }

    /// No longer leading: forget the own entry (a later term starts from a changed version).
    pub(crate) fn clear_own(&self) {
        let mut st = self.lock();
        st.own = None;
        st.bump();
    }

    /// The directory's version now.
    pub(crate) fn version(&self) -> u64 {
        self.lock().version
    }

    /// The whole directory (the own entry included), or the entries changed and the members
    /// removed since `since` (None: too old for a delta).
    pub(crate) fn since(&self, since: Option<u64>) -> (bool, Vec<MemberInfo>, Vec<String>) {
        let st = self.lock();
        let own = st.own.iter();
        match since.filter(|v| *v >= st.floor && *v <= st.version) {
            Some(v) => {
                let changed = st
                    .members
                    .values()
                    .filter(|m| m.changed_at > v)
                    .map(|m| &m.info)
                    .chain(own.filter(|(_, at)| *at > v).map(|(i, _)| i))
                    .cloned()
                    .collect();
                let removed = st
                    .removed
                    .iter()
                    .filter(|(at, a)| *at > v && !st.members.contains_key(a))
                    .map(|(_, a)| a.clone())
                    .collect();
                (false, changed, removed)
            }
            None => {
                let all = st.members.values().map(|m| &m.info).chain(own.map(|(i, _)| i)).cloned().collect();
                (true, all, Vec::new())
            }
        }
    }

    /// On a member: the version of the leader's directory its copy is at.
    pub(crate) fn copy(&self) -> Option<DirectoryVersion> {
        self.lock().copy
    }

    /// On a member: its copy is now at `v` (None: start again with the whole directory).
    pub(crate) fn set_copy(&self, v: Option<DirectoryVersion>) {
        self.lock().copy = v;
    }

    /// On a member: whether `info` differs from the entry last sent (it is sent now).
    pub(crate) fn sent_info(&self, info: &MemberInfo) -> bool {
        let mut st = self.lock();
        if st.sent.as_ref() == Some(info) {
            return false;
        }
        st.sent = Some(info.clone());
        true
    }

    /// Members not heard from for `dead_after`.
    pub(crate) fn silent(&self, dead_after: Duration) -> Vec<String> {
        self.lock()
            .members
            .iter()
            .filter(|(_, m)| m.last_seen.elapsed() > dead_after)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Forgets member `addr` (remembering its incarnation as lost); its capabilities, if it
    /// was one.
    /// A member left (`change` is `Left`) or was declared lost: removed from the directory, and
    /// its departure kept for watchers. Its capabilities, if it was a member.
    pub(crate) fn remove(&self, addr: &str, change: ConventionChange) -> Option<Vec<String>> {
        let mut st = self.lock();
        let m = st.members.remove(addr)?;
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let left = change == ConventionChange::Left;
        let incarnation = m.info.incarnation;
        st.departed.push_back(Departure { node: addr.to_string(), incarnation, left, unix_ms });
        while st.departed.len() > DEPARTURES_KEPT {
            st.departed.pop_front();
        }
        st.lost.insert(addr.to_string(), m.info.incarnation);
        let v = st.bump();
        st.removed.push_back((v, addr.to_string()));
        while st.removed.len() > REMOVALS {
            if let Some((at, _)) = st.removed.pop_front() {
                st.floor = at;
            }
        }
        Some(m.info.capabilities)
    }

    /// The latest departures, oldest first.
    pub(crate) fn departed(&self) -> Vec<Departure> {
        self.lock().departed.iter().cloned().collect()
    }

    /// For `status`.
    pub(crate) fn status(&self, leader: &str, dead_after: Duration) -> Vec<MemberStatus> {
        let mut members: Vec<MemberStatus> = self
            .lock()
            .members
            .values()
            .map(|m| MemberStatus {
                node: m.info.node.clone(),
                role: if m.info.node == leader { "leader".into() } else { "member".into() },
                capabilities: m.info.capabilities.clone(),
                alive: m.last_seen.elapsed() <= dead_after,
                last_seen_ms: m.last_seen.elapsed().as_millis() as u64,
                pid: m.info.pid,
                sources: m.info.sources.iter().map(|s| s.hash.clone()).collect(),
            })
            .collect();
        members.sort_by(|a, b| a.node.cmp(&b.node));
        members
    }

    // ---- watchers ------------------------------------------------------------------------------

    /// The actors told about membership changes.
    pub(crate) fn watchers(&self) -> Vec<Address> {
        self.lock().watchers.iter().cloned().collect()
    }

    /// `watcher` starts (or stops) watching; on start, the joins it must hear of (every member).
    pub(crate) fn watch(&self, watcher: Address, enable: bool) -> Vec<Payload> {
        let mut st = self.lock();
        if !enable {
            st.watchers.remove(&watcher);
            return Vec::new();
        }
        st.watchers.insert(watcher);
        st.members
            .values()
            .map(|m| update(&m.info.node, &m.info.capabilities, true, ConventionChange::Joined))
            .collect()
    }

    /// Local actor `id` exited: it watches no more.
    pub(crate) fn forget_watcher(&self, id: u64, here: &str) {
        self.lock().watchers.retain(|w| !(w.id == id && w.node == here));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::peer::SourceSummary;

    fn info(node: &str, caps: &[&str], pid: u32, sources: &[&str]) -> MemberInfo {
        MemberInfo {
            node: node.into(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            remote_sources: RemoteSources::Yes,
            sources: sources
                .iter()
                .map(|h| SourceSummary { hash: h.to_string(), types: BTreeMap::new() })
                .collect(),
            pid,
            incarnation: pid as u64,
        }
    }

    #[test]
    fn joins_and_capability_changes_are_reported_heartbeats_are_not() {
        let m = Members::default();
        assert!(matches!(
            m.upsert(info("a:1", &["x"], 1, &[])),
            Some(Payload::System(SystemMessage::ActorSystemConventionUpdate {
                change: ConventionChange::Joined,
                ..
            }))
        ));
        assert!(m.upsert(info("a:1", &["x"], 1, &[])).is_none());
        assert!(matches!(
            m.upsert(info("a:1", &["y"], 1, &[])),
            Some(Payload::System(SystemMessage::ActorSystemConventionUpdate {
                change: ConventionChange::CapabilitiesChanged,
                ..
            }))
        ));
    }

    #[test]
    fn a_member_missing_from_the_leaders_list_or_restarted_is_found() {
        let m = Members::default();
        m.upsert(info("a:1", &[], 1, &["h"]));
        m.upsert(info("b:2", &[], 2, &[]));
        m.upsert(info("c:3", &[], 3, &[]));
        let listed = BTreeMap::from([
            ("a:1".to_string(), info("a:1", &[], 1, &[])),
            ("b:2".to_string(), info("b:2", &[], 9, &[])),
        ]);
        assert_eq!(m.missing_from(&listed), vec!["b:2".to_string(), "c:3".to_string()]);
        assert_eq!(m.holders("h", "x"), vec!["a:1".to_string()]);
    }

    #[test]
    fn departures_say_who_left_and_who_was_lost_and_keep_the_latest() {
        let m = Members::default();
        m.upsert(info("a:1", &[], 1, &[]));
        m.upsert(info("b:2", &[], 2, &[]));
        assert!(m.remove("a:1", ConventionChange::Left).is_some());
        assert!(m.remove("b:2", ConventionChange::Lost).is_some());
        assert!(m.remove("c:3", ConventionChange::Lost).is_none(), "not a member: no departure");
        let d = m.departed();
        assert_eq!(
            d.iter().map(|d| (d.node.as_str(), d.left)).collect::<Vec<_>>(),
            [("a:1", true), ("b:2", false)]
        );
        assert!(d.iter().all(|d| d.unix_ms > 0));
        assert_eq!((d[0].incarnation, d[1].incarnation), (1, 2), "the incarnation that departed");
        for i in 0..DEPARTURES_KEPT {
            let addr = format!("n:{i}");
            m.upsert(info(&addr, &[], 3, &[]));
            m.remove(&addr, ConventionChange::Left);
        }
        let d = m.departed();
        assert_eq!(d.len(), DEPARTURES_KEPT);
        assert_eq!(d[0].node, "n:0", "the oldest went first");
    }

    #[test]
    fn watchers_hear_of_every_member_when_they_start() {
        let m = Members::default();
        m.upsert(info("a:1", &[], 1, &[]));
        let w = Address { node: "me:0".into(), id: 4 };
        assert_eq!(m.watch(w.clone(), true).len(), 1);
        m.forget_watcher(4, "me:0");
        assert!(m.watchers().is_empty());
    }
}
