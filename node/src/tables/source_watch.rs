//! Source notifications (Thespian's `notifyOnSourceAvailability`): which local actors hear
//! `LoadedSource` and `UnloadedSource`, and which versions they have been told are loaded.
//!
//! The announced set is kept here, under the same lock as the subscribers, so that a
//! subscriber registering while a version activates hears of it exactly once: either in the
//! list it gets on registering or in the announcement, never both and never neither. Methods
//! return what to send; the caller routes it after the lock is released.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use troupe_actor_abi::message::SystemMessage;

#[derive(Default)]
struct Inner {
    /// Subscribed actors of this node, by id.
    subscribers: BTreeSet<u64>,
    /// Versions announced as loaded (and not since unloaded): hash → where it came from.
    announced: BTreeMap<String, String>,
}

/// The subscribers and the announced versions (see the module's documentation).
#[derive(Default)]
pub(crate) struct SourceWatch {
    inner: Mutex<Inner>,
}

/// Messages to route: (subscriber id, message).
pub(crate) type Notices = Vec<(u64, SystemMessage)>;

impl SourceWatch {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes (or unsubscribes) actor `id`; a new subscriber is told of every version
    /// announced so far.
    pub(crate) fn subscribe(&self, id: u64, enable: bool) -> Notices {
        let mut st = self.lock();
        if !enable {
            st.subscribers.remove(&id);
            return Vec::new();
        }
        if !st.subscribers.insert(id) {
            return Vec::new();
        }
        st.announced
            .iter()
            .map(|(hash, info)| (id, SystemMessage::LoadedSource { hash: hash.clone(), info: info.clone() }))
            .collect()
    }

    /// Actor `id` exited.
    pub(crate) fn forget(&self, id: u64) {
        self.lock().subscribers.remove(&id);
    }

    /// Version `hash` is active: every subscriber hears of it, once.
    pub(crate) fn loaded(&self, hash: &str, info: &str) -> Notices {
        let mut st = self.lock();
        if st.announced.insert(hash.to_string(), info.to_string()).is_some() {
            return Vec::new();
        }
        let m = SystemMessage::LoadedSource { hash: hash.to_string(), info: info.to_string() };
        st.subscribers.iter().map(|id| (*id, m.clone())).collect()
    }

    /// Version `hash` was unloaded: every subscriber hears of it, once.
    pub(crate) fn unloaded(&self, hash: &str) -> Notices {
        let mut st = self.lock();
        let Some(info) = st.announced.remove(hash) else {
            return Vec::new();
        };
        let m = SystemMessage::UnloadedSource { hash: hash.to_string(), info };
        st.subscribers.iter().map(|id| (*id, m.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_subscriber_hears_of_each_load_once() {
        let w = SourceWatch::default();
        assert!(w.loaded("aa", "a.zip").is_empty(), "nobody listens yet");
        let first = w.subscribe(1, true);
        assert_eq!(first, vec![(1, SystemMessage::LoadedSource { hash: "aa".into(), info: "a.zip".into() })]);
        assert!(w.subscribe(1, true).is_empty(), "subscribing twice repeats nothing");
        assert!(w.loaded("aa", "a.zip").is_empty(), "an announced version is not announced again");
        let bb = w.loaded("bb", "b.zip");
        assert_eq!(bb.len(), 1);
        assert_eq!(w.subscribe(2, true).len(), 2, "a later subscriber hears of both");
        let gone = w.unloaded("aa");
        assert_eq!(gone.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 2]);
        assert!(
            matches!(&gone[0].1, SystemMessage::UnloadedSource { hash, info } if hash == "aa" && info == "a.zip")
        );
        assert!(w.unloaded("aa").is_empty(), "unloading twice tells nothing");
        assert!(w.subscribe(1, false).is_empty());
        w.forget(2);
        assert!(w.loaded("aa", "a.zip").is_empty(), "nobody listens any more");
    }
}
