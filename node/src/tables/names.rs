//! Global names: the ones held by actors of this node (name → id), and, on the leader, the
//! convention's table (name → holder), which makes a name unique in the whole convention.
//! Members keep a copy of the table, brought up to date by the leader's answers to their
//! heartbeats (the changes since their copy), so that a lookup is local, as in Erlang's
//! `global`; only a new name needs the leader. The lock is private and never held while
//! anything else is called.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use troupe_actor_abi::message::Address;

/// How many name changes the leader remembers for deltas.
const CHANGES: usize = 4096;

#[derive(Default)]
struct Inner {
    /// Names of actors hosted here.
    local: HashMap<String, u64>,
    /// The convention's names (authoritative on the leader; a copy on members).
    convention: HashMap<String, Address>,
    /// The table's change counter, and recent changes (version, name) for deltas.
    version: u64,
    changes: VecDeque<(u64, String)>,
    /// Deltas can be given from this version on.
    floor: u64,
}

impl Inner {
    fn changed(&mut self, name: &str) {
        self.version += 1;
        self.changes.push_back((self.version, name.to_string()));
        while self.changes.len() > CHANGES {
            if let Some((v, _)) = self.changes.pop_front() {
                self.floor = v;
            }
        }
    }
}

/// The names that changed since a member's copy (None: removed), or the whole table.
pub(crate) struct NameChanges {
    pub(crate) full: bool,
    pub(crate) names: Vec<(String, Option<Address>)>,
}

/// The name tables (see the module's documentation).
#[derive(Default)]
pub(crate) struct Names {
    inner: Mutex<Inner>,
}

impl Names {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Actor `id` of this node holds `name`.
    pub(crate) fn hold_here(&self, name: &str, id: u64) {
        self.lock().local.insert(name.to_string(), id);
    }

    /// Actor `id` is gone: it no longer holds `name` here.
    pub(crate) fn drop_here(&self, name: &str, id: u64) {
        let mut st = self.lock();
        if st.local.get(name) == Some(&id) {
            st.local.remove(name);
        }
    }

    /// The local actor holding `name`, if any.
    pub(crate) fn held_here(&self, name: &str) -> Option<u64> {
        self.lock().local.get(name).copied()
    }

    /// Names held here, for `status`.
    pub(crate) fn here(&self, node: &str) -> BTreeMap<String, Address> {
        self.lock()
            .local
            .iter()
            .map(|(n, id)| (n.clone(), Address { node: node.to_string(), id: *id }))
            .collect()
    }

    /// The leader's side of a claim: the live holder of `name` if there is one, else
    /// `candidate` (now the holder). `live` says whether a holder still exists.
    pub(crate) fn claim(
        &self,
        name: &str,
        candidate: Option<Address>,
        live: impl Fn(&Address) -> bool,
    ) -> Option<Address> {
        let mut st = self.lock();
        if let Some(holder) = st.convention.get(name) {
            // A holder that exited without a release (cannot happen, but be safe): replaced.
            if live(holder) {
                return Some(holder.clone());
            }
        }
        let c = candidate?;
        st.convention.insert(name.to_string(), c.clone());
        st.changed(name);
        Some(c)
    }

    /// The leader's side of a release: only the holder gives a name back.
    pub(crate) fn release(&self, name: &str, holder: &Address) {
        let mut st = self.lock();
        if st.convention.get(name) == Some(holder) {
            st.convention.remove(name);
            st.changed(name);
        }
    }

    /// Names held here, as (name, id): what a member brings a new leader.
    pub(crate) fn held(&self) -> Vec<(String, u64)> {
        self.lock().local.iter().map(|(n, id)| (n.clone(), *id)).collect()
    }

    /// A new leader rebuilds the table from what members hold: `holder` joins it unless another
    /// live holder has the name, in which case the one already there is kept and the
    /// clash (loser, kept) is returned (Erlang's `global` keeps one and stops the other).
    pub(crate) fn adopt(
        &self,
        name: &str,
        holder: Address,
        live: impl Fn(&Address) -> bool,
    ) -> Option<(Address, Address)> {
        let mut st = self.lock();
        match st.convention.get(name) {
            Some(kept) if *kept != holder && live(kept) => Some((holder, kept.clone())),
            Some(kept) if *kept == holder => None,
            _ => {
                st.convention.insert(name.to_string(), holder);
                st.changed(name);
                None
            }
        }
    }

    /// This node no longer leads: the convention's table is another node's to keep.
    pub(crate) fn clear_convention(&self) {
        let mut st = self.lock();
        st.convention.clear();
        st.version += 1;
        st.floor = st.version;
        st.changes.clear();
    }

    /// The table's version (the leader's answers carry it).
    pub(crate) fn version(&self) -> u64 {
        self.lock().version
    }

    /// The leader's side: what changed since a member's copy at `since`, or all of it.
    pub(crate) fn since(&self, since: Option<u64>) -> NameChanges {
        let st = self.lock();
        match since.filter(|v| *v >= st.floor && *v <= st.version) {
            Some(v) => {
                let mut seen = std::collections::HashSet::new();
                let names = st
                    .changes
                    .iter()
                    .filter(|(at, n)| *at > v && seen.insert(n.as_str()))
                    .map(|(_, n)| (n.clone(), st.convention.get(n).cloned()))
                    .collect();
                NameChanges { full: false, names }
            }
            None => NameChanges {
                full: true,
                names: st.convention.iter().map(|(n, a)| (n.clone(), Some(a.clone()))).collect(),
            },
        }
    }

    /// A member takes the leader's changes into its copy.
    pub(crate) fn apply(&self, changes: NameChanges) {
        let mut st = self.lock();
        if changes.full {
            st.convention.clear();
        }
        for (n, a) in changes.names {
            match a {
                Some(a) => st.convention.insert(n, a),
                None => st.convention.remove(&n),
            };
        }
    }

    /// A member learned a holder from a claim's answer (its copy catches up at once).
    pub(crate) fn learn(&self, name: &str, holder: &Address) {
        self.lock().convention.insert(name.to_string(), holder.clone());
    }

    /// The holder of `name` as this node's copy (or, on the leader, the table) says.
    pub(crate) fn known(&self, name: &str) -> Option<Address> {
        self.lock().convention.get(name).cloned()
    }

    /// The convention's table (for `status` and tests).
    pub(crate) fn convention(&self) -> BTreeMap<String, Address> {
        self.lock().convention.iter().map(|(n, a)| (n.clone(), a.clone())).collect()
    }

    /// Node `node` is lost: its names are free again.
    pub(crate) fn drop_node(&self, node: &str) {
        let mut st = self.lock();
        let gone: Vec<String> =
            st.convention.iter().filter(|(_, a)| a.node == node).map(|(n, _)| n.clone()).collect();
        for n in gone {
            st.convention.remove(&n);
            st.changed(&n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(node: &str, id: u64) -> Address {
        Address { node: node.into(), id }
    }

    #[test]
    fn the_first_claim_wins_and_later_claims_get_the_holder() {
        let n = Names::default();
        assert_eq!(n.claim("A", Some(at("a:1", 1)), |_| true), Some(at("a:1", 1)));
        assert_eq!(n.claim("A", Some(at("b:2", 2)), |_| true), Some(at("a:1", 1)));
        assert_eq!(n.claim("B", None, |_| true), None, "a lookup registers nothing");
    }

    #[test]
    fn only_the_holder_releases_and_a_lost_node_frees_its_names() {
        let n = Names::default();
        n.claim("A", Some(at("a:1", 1)), |_| true);
        n.release("A", &at("b:2", 2));
        assert_eq!(n.claim("A", Some(at("b:2", 2)), |_| true), Some(at("a:1", 1)));
        n.drop_node("a:1");
        assert_eq!(n.claim("A", Some(at("b:2", 2)), |_| true), Some(at("b:2", 2)));
    }

    #[test]
    fn a_dead_holder_is_replaced() {
        let n = Names::default();
        n.claim("A", Some(at("a:1", 1)), |_| true);
        assert_eq!(n.claim("A", Some(at("a:1", 5)), |_| false), Some(at("a:1", 5)));
    }

    #[test]
    fn a_rebuilt_table_keeps_the_first_live_holder_and_reports_the_clash() {
        let n = Names::default();
        assert_eq!(n.adopt("A", at("a:1", 1), |_| true), None);
        assert_eq!(n.adopt("A", at("a:1", 1), |_| true), None, "the same holder twice is no clash");
        assert_eq!(n.adopt("A", at("b:2", 2), |_| true), Some((at("b:2", 2), at("a:1", 1))));
        assert_eq!(n.adopt("A", at("b:2", 2), |a| a.node != "a:1"), None, "a dead holder is replaced");
        assert_eq!(n.convention().get("A"), Some(&at("b:2", 2)));
        n.clear_convention();
        assert!(n.convention().is_empty());
    }

    #[test]
    fn local_names_are_dropped_only_by_their_holder() {
        let n = Names::default();
        n.hold_here("A", 1);
        n.drop_here("A", 2);
        assert_eq!(n.held_here("A"), Some(1));
        n.drop_here("A", 1);
        assert_eq!(n.held_here("A"), None);
    }
}
