//! This node's capabilities (names its actors' requirements are matched against).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

/// The capability set, behind a private lock.
pub(crate) struct Capabilities {
    inner: Mutex<BTreeSet<String>>,
}

impl Capabilities {
    /// The set a node starts with (names trimmed, empty ones dropped).
    pub(crate) fn new(names: &[String]) -> Capabilities {
        let set = names.iter().map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect();
        Capabilities { inner: Mutex::new(set) }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the set (which must not call back into this table).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&BTreeSet<String>) -> R) -> R {
        f(&self.lock())
    }

    /// The names, sorted.
    pub(crate) fn list(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    /// Adds or removes `name`; the set after the change.
    pub(crate) fn change(&self, add: bool, name: &str) -> BTreeSet<String> {
        let mut st = self.lock();
        if add {
            st.insert(name.to_string());
        } else {
            st.remove(name);
        }
        st.clone()
    }
}
