//! The actor table: every actor and client endpoint of this node, and tombstones of the ones
//! that exited (so that a message to one comes back with the reason, not a bare "unknown
//! actor"). The lock is private; it is never held while anything else is called.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::mpsc::UnboundedSender;
use troupe_actor_abi::caps::{satisfies, satisfies_all};
use troupe_actor_abi::message::{Address, ExitReason, Incoming, Payload, SystemMessage};

use crate::host::effect::{Delivery, HostHandle};
use crate::model::ids::IdHash;
use crate::wire::status::ActorStatus;

/// How many exited actors are remembered. Bounded: enough for any burst a test or the demo
/// makes.
const TOMBSTONES: usize = 4096;

/// What an actor is.
pub(crate) enum ActorKind {
    /// Running on a version's executor.
    Plugin { gen: u64, hash: String, type_name: String, host: HostHandle },
    /// Placed here, waiting for its version to be fetched from a peer; messages wait in
    /// `buffer`.
    Pending { hash: String, type_name: String, buffer: Vec<Incoming> },
    /// A client connection's endpoint (or the node's own, id 0).
    Client { tx: UnboundedSender<Incoming> },
    /// A create whose global name another actor turned out to hold: the address the creator
    /// was given forwards to the holder. Dropped when the holder's node is lost.
    Alias { to: Address },
}

/// One actor.
pub(crate) struct ActorRec {
    pub(crate) kind: ActorKind,
    pub(crate) parent: Option<Address>,
    /// Children wherever they run.
    pub(crate) children: BTreeSet<Address>,
    pub(crate) global_name: Option<String>,
    pub(crate) requirements: Vec<String>,
    /// Why the actor is being stopped, once it is.
    pub(crate) exit_reason: Option<ExitReason>,
    /// Its parent restarts it on failure: a handler failing twice on one message stops it.
    pub(crate) supervised: bool,
}

impl ActorRec {
    /// A new actor with no children.
    pub(crate) fn new(
        kind: ActorKind,
        parent: Option<Address>,
        global_name: Option<String>,
        requirements: Vec<String>,
    ) -> ActorRec {
        ActorRec {
            kind,
            parent,
            children: BTreeSet::new(),
            global_name,
            requirements,
            exit_reason: None,
            supervised: false,
        }
    }

    /// A client endpoint.
    pub(crate) fn client(tx: UnboundedSender<Incoming>) -> ActorRec {
        ActorRec::new(ActorKind::Client { tx }, None, None, Vec::new())
    }

    fn version(&self) -> Option<(&str, &str)> {
        match &self.kind {
            ActorKind::Plugin { hash, type_name, .. } | ActorKind::Pending { hash, type_name, .. } => {
                Some((hash, type_name))
            }
            ActorKind::Client { .. } | ActorKind::Alias { .. } => None,
        }
    }
}

/// Where a message for a local actor goes.
pub(crate) enum Route {
    /// To the version whose executor is routing it: its local queue.
    Local { msg: Delivery },
    /// To a version's run queue.
    Plugin { host: HostHandle, msg: Delivery },
    /// Kept with a pending actor until its version arrives.
    Buffered,
    /// To a client connection.
    Client { tx: UnboundedSender<Incoming>, msg: Delivery },
    /// On to the actor an alias stands for.
    Forward { to: Address, msg: Delivery },
    /// Nobody: back to the sender, with the tombstone's reason if there is one.
    Unknown { msg: Delivery, why: Option<String> },
}

/// What a stalled pending actor becomes once its version is active.
pub(crate) struct Promoted {
    pub(crate) type_name: String,
    pub(crate) buffer: Vec<Incoming>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<u64, ActorRec, IdHash>,
    tombstones: HashMap<u64, String>,
    order: VecDeque<u64>,
}

impl Inner {
    fn tombstone(&mut self, id: u64, why: String) {
        self.tombstones.insert(id, why);
        self.order.push_back(id);
        while self.order.len() > TOMBSTONES {
            if let Some(old) = self.order.pop_front() {
                self.tombstones.remove(&old);
            }
        }
    }
}

/// The actor table (see the module's documentation).
#[derive(Default)]
pub(crate) struct Actors {
    inner: Mutex<Inner>,
}

impl Actors {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock means a node bug panicked mid-update; the table is still the best
        // information we have, and refusing every later request would lose more.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an actor (its parent lists it as a child through [`Actors::add_child`]).
    pub(crate) fn insert(&self, id: u64, rec: ActorRec) {
        self.lock().map.insert(id, rec);
    }

    /// Records `child` among the children of local actor `parent`.
    pub(crate) fn add_child(&self, parent: u64, child: Address) {
        if let Some(p) = self.lock().map.get_mut(&parent) {
            p.children.insert(child);
        }
    }

    /// Removes the placeholder of a child being restarted (a `Pending` record, see
    /// `runtime::supervise`), without a tombstone: the messages it kept, in order. `None` if
    /// `id` is not such a record.
    pub(crate) fn take_placeholder(&self, id: u64) -> Option<Vec<Incoming>> {
        let mut st = self.lock();
        if !matches!(st.map.get(&id).map(|r| &r.kind), Some(ActorKind::Pending { .. })) {
            return None;
        }
        match st.map.remove(&id).map(|r| r.kind) {
            Some(ActorKind::Pending { buffer, .. }) => Some(buffer),
            _ => None,
        }
    }

    /// Marks actor `id` as supervised (see [`ActorRec::supervised`]); false if it is not here.
    pub(crate) fn set_supervised(&self, id: u64) -> bool {
        match self.lock().map.get_mut(&id) {
            Some(rec) => {
                rec.supervised = true;
                true
            }
            None => false,
        }
    }

    /// Whether actor `id` is supervised.
    pub(crate) fn is_supervised(&self, id: u64) -> bool {
        self.lock().map.get(&id).is_some_and(|r| r.supervised)
    }

    /// Whether actor `id` is here.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.lock().map.contains_key(&id)
    }

    /// Where a message to actor `id` goes (counted as queued to its version), when routed from
    /// the executor of generation `local_gen`, if any. A `ChildActorExited` also forgets the
    /// child.
    pub(crate) fn route(&self, id: u64, msg: Delivery, local_gen: Option<u64>) -> Route {
        let mut st = self.lock();
        if let Delivery::Msg(Incoming {
            payload: Payload::System(SystemMessage::ChildActorExited { child, .. }),
            ..
        }) = &msg
        {
            if let Some(rec) = st.map.get_mut(&id) {
                rec.children.remove(child);
            }
        }
        match st.map.get_mut(&id).map(|r| &mut r.kind) {
            Some(ActorKind::Plugin { gen, host, .. }) => {
                host.stats.enqueued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if local_gen == Some(*gen) {
                    Route::Local { msg }
                } else {
                    Route::Plugin { host: host.clone(), msg }
                }
            }
            Some(ActorKind::Pending { buffer, .. }) => {
                buffer.push(msg.into_incoming());
                Route::Buffered
            }
            Some(ActorKind::Client { tx }) => Route::Client { tx: tx.clone(), msg },
            Some(ActorKind::Alias { to }) => Route::Forward { to: to.clone(), msg },
            None => Route::Unknown { msg, why: st.tombstones.get(&id).cloned() },
        }
    }

    /// Why actor `id` is gone, if it is remembered.
    pub(crate) fn tombstone_of(&self, id: u64) -> Option<String> {
        self.lock().tombstones.get(&id).cloned()
    }

    /// Removes actor `id` (and unlinks it from a local parent), remembering `why` it is gone.
    pub(crate) fn remove(&self, id: u64, why: impl FnOnce(&ActorRec) -> String) -> Option<ActorRec> {
        let mut st = self.lock();
        let rec = st.map.remove(&id)?;
        if let Some(p) = &rec.parent {
            if let Some(pr) = st.map.get_mut(&p.id) {
                pr.children.retain(|c| c.id != id);
            }
        }
        let why = why(&rec);
        st.tombstone(id, why);
        Some(rec)
    }

    /// Remembers why `id` is gone without it ever having been here (a refused create).
    pub(crate) fn tombstone(&self, id: u64, why: String) {
        self.lock().tombstone(id, why);
    }

    /// Records why a plugin actor is being stopped; false if it already is (or is a client).
    pub(crate) fn mark_exiting(&self, id: u64, reason: ExitReason) -> bool {
        match self.lock().map.get_mut(&id) {
            Some(rec)
                if rec.exit_reason.is_none()
                    && !matches!(rec.kind, ActorKind::Client { .. } | ActorKind::Alias { .. }) =>
            {
                rec.exit_reason = Some(reason);
                true
            }
            _ => false,
        }
    }

    /// A pending actor's version is active as `gen`: it becomes a plugin actor; returns what to
    /// create and the messages that waited.
    pub(crate) fn promote(&self, id: u64, gen: u64, host: HostHandle) -> Option<Promoted> {
        let mut st = self.lock();
        let rec = st.map.get_mut(&id)?;
        let ActorKind::Pending { type_name, buffer, hash } = &mut rec.kind else {
            return None;
        };
        let promoted = Promoted { type_name: type_name.clone(), buffer: std::mem::take(buffer) };
        rec.kind = ActorKind::Plugin { gen, hash: std::mem::take(hash), type_name: type_name.clone(), host };
        Some(promoted)
    }

    /// A held create lost its name to `to`: it becomes an alias; returns its parent and the
    /// messages that waited (None if it is not a held create any more).
    pub(crate) fn alias(&self, id: u64, to: Address) -> Option<(Option<Address>, Vec<Incoming>)> {
        let mut st = self.lock();
        let rec = st.map.get_mut(&id)?;
        let ActorKind::Pending { buffer, .. } = &mut rec.kind else {
            return None;
        };
        let buffer = std::mem::take(buffer);
        rec.kind = ActorKind::Alias { to };
        rec.global_name = None;
        let parent = rec.parent.take();
        let here_parent = parent.as_ref().map(|p| p.id);
        if let Some(p) = here_parent.and_then(|p| st.map.get_mut(&p)) {
            p.children.retain(|c| c.id != id);
        }
        Some((parent, buffer))
    }

    /// The global name of actor `id`.
    pub(crate) fn name_of(&self, id: u64) -> Option<String> {
        self.lock().map.get(&id)?.global_name.clone()
    }

    /// Removes `child` from local actor `parent`'s children.
    pub(crate) fn remove_child(&self, parent: u64, child: &Address) {
        if let Some(p) = self.lock().map.get_mut(&parent) {
            p.children.remove(child);
        }
    }

    /// The hash of a pending (or held) actor.
    pub(crate) fn pending_hash(&self, id: u64) -> Option<String> {
        match &self.lock().map.get(&id)?.kind {
            ActorKind::Pending { hash, .. } => Some(hash.clone()),
            _ => None,
        }
    }

    /// Every other node an actor here is linked with (a parent or a child there).
    pub(crate) fn linked_nodes(&self, here: &str) -> BTreeSet<String> {
        let st = self.lock();
        let mut nodes = BTreeSet::new();
        for rec in st.map.values() {
            nodes.extend(rec.parent.iter().map(|p| p.node.clone()));
            nodes.extend(rec.children.iter().map(|c| c.node.clone()));
            if let ActorKind::Alias { to } = &rec.kind {
                nodes.insert(to.node.clone());
            }
        }
        nodes.remove(here);
        nodes
    }

    /// Live upgrade: plugin actor `id` now runs on generation `gen` of `hash` as `type_name`.
    /// Returns the generation it ran on, which the caller moves its count from (`None`: it is
    /// not a plugin actor here any more, e.g. it exited meanwhile; nothing changed).
    pub(crate) fn rehost(
        &self,
        id: u64,
        gen: u64,
        hash: &str,
        type_name: &str,
        host: HostHandle,
    ) -> Option<u64> {
        let mut st = self.lock();
        let rec = st.map.get_mut(&id)?;
        let ActorKind::Plugin { gen: was, .. } = rec.kind else { return None };
        rec.kind = ActorKind::Plugin { gen, hash: hash.to_string(), type_name: type_name.to_string(), host };
        Some(was)
    }

    /// Live plugin actors of generation `gen` not being stopped, with their types.
    pub(crate) fn movable(&self, gen: u64) -> Vec<(u64, String)> {
        let st = self.lock();
        let mut found: Vec<(u64, String)> = st
            .map
            .iter()
            .filter(|(_, r)| r.exit_reason.is_none())
            .filter_map(|(id, r)| match &r.kind {
                ActorKind::Plugin { gen: g, type_name, .. } if *g == gen => Some((*id, type_name.clone())),
                _ => None,
            })
            .collect();
        found.sort_unstable();
        found
    }

    /// For `host_info`: (parent, global name, version, type) of plugin actor `id`.
    pub(crate) fn identity(&self, id: u64) -> Option<(Option<Address>, Option<String>, String, String)> {
        let st = self.lock();
        let rec = st.map.get(&id)?;
        let ActorKind::Plugin { hash, type_name, .. } = &rec.kind else {
            return None;
        };
        Some((rec.parent.clone(), rec.global_name.clone(), hash.clone(), type_name.clone()))
    }

    /// Actors that are not children of a live local actor (a node stop asks these to exit;
    /// the rest go with their parents).
    pub(crate) fn roots(&self, here: &str) -> Vec<u64> {
        let st = self.lock();
        st.map
            .iter()
            .filter(|(id, r)| {
                !matches!(r.kind, ActorKind::Client { .. } | ActorKind::Alias { .. })
                    && r.parent
                        .as_ref()
                        .is_none_or(|p| p.node != here || !st.map.contains_key(&p.id) || p.id == **id)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Actors of generation `gen`.
    pub(crate) fn of_generation(&self, gen: u64) -> Vec<u64> {
        let st = self.lock();
        st.map
            .iter()
            .filter(|(_, r)| matches!(&r.kind, ActorKind::Plugin { gen: g, .. } if *g == gen))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Live actors whose requirements `caps` no longer satisfy, with their requirements.
    pub(crate) fn unfit(&self, caps: &[String]) -> Vec<(u64, Vec<String>)> {
        let st = self.lock();
        st.map
            .iter()
            .filter(|(_, r)| r.exit_reason.is_none() && !satisfies_all(caps, &r.requirements))
            .map(|(id, r)| (*id, r.requirements.iter().filter(|q| !satisfies(caps, q)).cloned().collect()))
            .collect()
    }

    /// Node `node` is lost: the actors whose parent ran there (orphans: their parent is
    /// forgotten, it was told already or is gone), and the (parent, child) pairs of children
    /// that ran there, now forgotten.
    pub(crate) fn lose_node(&self, node: &str) -> (Vec<u64>, Vec<(u64, Address)>) {
        let mut st = self.lock();
        let mut orphans = Vec::new();
        for (id, r) in st.map.iter_mut() {
            if r.parent.as_ref().is_some_and(|p| p.node == node) {
                r.parent = None;
                orphans.push(*id);
            }
        }
        // Aliases to actors there stand for nothing now.
        st.map.retain(|_, r| !matches!(&r.kind, ActorKind::Alias { to } if to.node == node));
        let mut bereaved = Vec::new();
        for (id, rec) in st.map.iter_mut() {
            let lost: Vec<Address> = rec.children.iter().filter(|c| c.node == node).cloned().collect();
            for c in lost {
                rec.children.remove(&c);
                bereaved.push((*id, c));
            }
        }
        (orphans, bereaved)
    }

    /// Every plugin or pending actor, for `status`.
    pub(crate) fn status(&self, here: &str) -> Vec<ActorStatus> {
        let st = self.lock();
        let mut actors: Vec<ActorStatus> = st
            .map
            .iter()
            .filter_map(|(id, r)| {
                let (hash, type_name) = r.version()?;
                Some(ActorStatus {
                    address: Address { node: here.to_string(), id: *id },
                    type_name: type_name.to_string(),
                    hash: hash.to_string(),
                    parent: r.parent.clone(),
                    global_name: r.global_name.clone(),
                })
            })
            .collect();
        actors.sort_by_key(|a| a.address.id);
        actors
    }

    /// Live actors by (type, version), for metrics.
    pub(crate) fn count_by_type(&self) -> BTreeMap<(String, String), u64> {
        let mut by_type = BTreeMap::new();
        for rec in self.lock().map.values() {
            if let Some((hash, type_name)) = rec.version() {
                *by_type.entry((type_name.to_string(), hash.to_string())).or_default() += 1;
            }
        }
        by_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Delivery {
        Delivery::Msg(Incoming { sender: None, payload: Payload::Text(s.into()) })
    }

    #[test]
    fn a_message_reaches_a_client_and_an_exited_actor_leaves_its_reason() {
        let actors = Actors::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        actors.insert(5, ActorRec::client(tx));
        match actors.route(5, text("hi"), None) {
            Route::Client { tx, msg } => tx.send(msg.into_incoming()).unwrap(),
            _ => panic!("not routed to the client"),
        }
        assert!(matches!(rx.try_recv().unwrap().payload, Payload::Text(t) if t == "hi"));
        actors.remove(5, |_| "the client disconnected".into());
        match actors.route(5, text("again"), None) {
            Route::Unknown { why, .. } => assert_eq!(why.as_deref(), Some("the client disconnected")),
            _ => panic!("routed to a removed actor"),
        }
    }

    #[test]
    fn a_pending_actor_keeps_messages_in_order_until_promoted() {
        let actors = Actors::default();
        let kind = ActorKind::Pending { hash: "h".into(), type_name: "m.T".into(), buffer: Vec::new() };
        actors.insert(9, ActorRec::new(kind, None, None, Vec::new()));
        assert!(matches!(actors.route(9, text("1"), None), Route::Buffered));
        assert!(matches!(actors.route(9, text("2"), None), Route::Buffered));
        let pool = std::sync::Arc::new(crate::host::pool::Pool::new(1, Default::default()));
        let p = actors.promote(9, 3, HostHandle::new(pool)).unwrap();
        let texts: Vec<String> = p
            .buffer
            .into_iter()
            .map(|m| match m.payload {
                Payload::Text(t) => t,
                _ => String::new(),
            })
            .collect();
        assert_eq!((p.type_name.as_str(), texts), ("m.T", vec!["1".to_string(), "2".to_string()]));
        assert!(matches!(actors.route(9, text("3"), None), Route::Plugin { .. }));
        assert!(
            matches!(actors.route(9, text("4"), Some(3)), Route::Local { .. }),
            "its own executor keeps it"
        );
    }

    #[test]
    fn a_restart_placeholder_gives_back_what_it_kept_and_leaves_no_tombstone() {
        let actors = Actors::default();
        let kind = ActorKind::Pending { hash: "h".into(), type_name: "m.T".into(), buffer: Vec::new() };
        actors.insert(4, ActorRec::new(kind, None, None, Vec::new()));
        assert!(matches!(actors.route(4, text("kept"), None), Route::Buffered));
        let kept = actors.take_placeholder(4).expect("a placeholder");
        assert_eq!(kept.len(), 1);
        assert!(actors.take_placeholder(4).is_none(), "taken once");
        assert_eq!(actors.tombstone_of(4), None);
        actors.insert(5, ActorRec::client(tokio::sync::mpsc::unbounded_channel().0));
        assert!(actors.take_placeholder(5).is_none(), "only a pending record is a placeholder");
        assert!(actors.set_supervised(5) && actors.is_supervised(5));
        assert!(!actors.set_supervised(6), "no such actor");
    }

    #[test]
    fn losing_a_node_finds_orphans_and_forgets_children_there() {
        let actors = Actors::default();
        let far = Address { node: "far:1".into(), id: 77 };
        let kind =
            |h: &str| ActorKind::Pending { hash: h.into(), type_name: "m.T".into(), buffer: Vec::new() };
        actors.insert(1, ActorRec::new(kind("a"), Some(far.clone()), None, Vec::new()));
        actors.insert(2, ActorRec::new(kind("a"), None, None, Vec::new()));
        actors.add_child(2, Address { node: "far:1".into(), id: 78 });
        let (orphans, bereaved) = actors.lose_node("far:1");
        assert_eq!(orphans, vec![1]);
        assert_eq!(bereaved, vec![(2, Address { node: "far:1".into(), id: 78 })]);
        assert!(actors.lose_node("far:1").1.is_empty(), "the lost child is forgotten");
    }

    #[test]
    fn a_rehost_says_where_the_actor_came_from_and_skips_an_actor_that_left() {
        let actors = Actors::default();
        let host =
            || HostHandle::new(std::sync::Arc::new(crate::host::pool::Pool::new(1, Default::default())));
        let kind = ActorKind::Plugin { gen: 1, hash: "v1".into(), type_name: "m.T".into(), host: host() };
        actors.insert(3, ActorRec::new(kind, None, None, Vec::new()));
        assert_eq!(actors.rehost(3, 2, "v2", "m.T", host()), Some(1));
        assert_eq!((actors.of_generation(1).len(), actors.of_generation(2)), (0, vec![3]));
        assert_eq!(actors.rehost(3, 4, "v4", "m.U", host()), Some(2), "from where it is now");
        actors.remove(3, |_| "exited".into());
        assert_eq!(actors.rehost(3, 5, "v5", "m.T", host()), None, "a move that lands after the exit");
        assert!(!actors.contains(3), "does not bring it back");
        let pending = ActorKind::Pending { hash: "v1".into(), type_name: "m.T".into(), buffer: Vec::new() };
        actors.insert(6, ActorRec::new(pending, None, None, Vec::new()));
        assert_eq!(actors.rehost(6, 2, "v2", "m.T", host()), None, "only a plugin actor moves");
    }

    #[test]
    fn tombstones_are_bounded() {
        let actors = Actors::default();
        for id in 0..(TOMBSTONES as u64 + 10) {
            actors.tombstone(id, format!("gone {id}"));
        }
        assert_eq!(actors.tombstone_of(0), None);
        assert_eq!(
            actors.tombstone_of(TOMBSTONES as u64 + 9).as_deref(),
            Some(&*format!("gone {}", TOMBSTONES + 9))
        );
    }
}
