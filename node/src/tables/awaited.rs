//! Messages to an actor whose create is still on its way here. An address can reach a sender
//! before the create reaches the node that hosts it: the create travels on the link from the
//! node that made it, the message on the sender's own link (e.g. a client on C is told by the
//! leader that a name is held on B by a create another node is sending there). A message to an
//! id this node did not allocate, with no actor and no tombstone, waits here, in order, until
//! the actor exists or the wait is over (see `runtime::router`).
//!
//! The lock is private and never held while anything else is called.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use troupe_actor_abi::message::Incoming;

use crate::model::ids::IdHash;

/// The messages waiting for creates in flight, by actor id.
#[derive(Default)]
pub(crate) struct Awaited {
    inner: Mutex<HashMap<u64, VecDeque<Incoming>, IdHash>>,
    /// How many ids have waiting messages: the message path reads it without the lock.
    ids: AtomicUsize,
}

impl Awaited {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, VecDeque<Incoming>, IdHash>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `msg` behind the messages already waiting for `id`; gives it back if none wait
    /// (then it is routed as usual).
    pub(crate) fn join(&self, id: u64, msg: Incoming) -> Option<Incoming> {
        if self.ids.load(Ordering::Acquire) == 0 {
            return Some(msg);
        }
        match self.lock().get_mut(&id) {
            Some(q) => {
                q.push_back(msg);
                None
            }
            None => Some(msg),
        }
    }

    /// `msg` starts or joins the wait for `id`; true if it starts it (the caller then watches
    /// for the actor and drains the queue with [`Awaited::next`]).
    pub(crate) fn start(&self, id: u64, msg: Incoming) -> bool {
        let mut st = self.lock();
        let fresh = !st.contains_key(&id);
        st.entry(id).or_default().push_back(msg);
        if fresh {
            self.ids.fetch_add(1, Ordering::AcqRel);
        }
        fresh
    }

    /// The next message that waited for `id`, in arrival order; `None` once none is left, and
    /// the wait is over: later messages are routed as usual, after every one that waited.
    pub(crate) fn next(&self, id: u64) -> Option<Incoming> {
        let mut st = self.lock();
        let q = st.get_mut(&id)?;
        if let Some(m) = q.pop_front() {
            return Some(m);
        }
        st.remove(&id);
        self.ids.fetch_sub(1, Ordering::AcqRel);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_actor_abi::message::Payload;

    fn msg(s: &str) -> Incoming {
        Incoming { sender: None, payload: Payload::Text(s.into()) }
    }

    #[test]
    fn messages_wait_in_order_and_the_wait_ends_once_drained() {
        let w = Awaited::default();
        assert!(w.join(7, msg("early")).is_some(), "nothing waits: routed as usual");
        assert!(w.start(7, msg("1")));
        assert!(w.join(7, msg("2")).is_none());
        assert!(!w.start(7, msg("3")), "the wait had started");
        assert!(w.join(8, msg("other")).is_some(), "another id does not wait");
        let drained: Vec<_> = std::iter::from_fn(|| w.next(7)).collect();
        assert_eq!(drained, vec![msg("1"), msg("2"), msg("3")]);
        assert!(w.join(7, msg("4")).is_some(), "the wait is over");
        assert_eq!(w.next(7), None);
    }
}
