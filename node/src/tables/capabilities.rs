//! This node's capabilities: names with values (`gpu=A100`, `mem=64`; a plain name has the
//! value `true`), which its actors' requirements are matched against
//! ([`troupe_actor_abi::caps`]). Kept as the list the node advertises (`name` or
//! `name=value`, sorted by name), so placement reads it under the lock without a copy.

use std::sync::{Mutex, MutexGuard};

use troupe_actor_abi::caps::{self, CapError};

/// The capability list, behind a private lock.
pub(crate) struct Capabilities {
    /// `(name, value)`, sorted by name, one entry per name.
    inner: Mutex<Vec<String>>,
}

/// The name of a rendered entry.
fn name_of(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(n, _)| n)
}

impl Capabilities {
    /// The list a node starts with. Entries that do not parse are left out with a warning (the
    /// CLI refuses them before a node starts).
    pub(crate) fn new(entries: &[String]) -> Capabilities {
        let mut list = Vec::new();
        for e in entries.iter().filter(|e| !e.trim().is_empty()) {
            match caps::parse_capability(e) {
                Ok((name, value)) => set(&mut list, &name, &value),
                Err(err) => tracing::warn!(%err, "capability ignored"),
            }
        }
        Capabilities { inner: Mutex::new(list) }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<String>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the list (which must not call back into this table).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Vec<String>) -> R) -> R {
        f(&self.lock())
    }

    /// The entries, sorted by name.
    pub(crate) fn list(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// Sets (`add`: `name` or `name=value`, replacing any value) or clears (`name` only) a
    /// capability; the list after the change.
    pub(crate) fn change(&self, add: bool, spec: &str) -> Result<Vec<String>, CapError> {
        let (name, value) = caps::parse_capability(spec)?;
        if !add && spec.contains('=') {
            return Err(CapError(format!(
                "`{}`: to remove a capability give its name only (`{name}`)",
                caps::shown(spec.trim())
            )));
        }
        let mut st = self.lock();
        if add {
            set(&mut st, &name, &value);
        } else {
            st.retain(|e| name_of(e) != name);
        }
        Ok(st.clone())
    }
}

fn set(list: &mut Vec<String>, name: &str, value: &str) {
    let entry = caps::render(name, value);
    match list.binary_search_by(|e| name_of(e).cmp(name)) {
        Ok(i) => list[i] = entry,
        Err(i) => list.insert(i, entry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_set_replaced_and_cleared_by_name() {
        let c = Capabilities::new(&["morse".into(), " mem = 16".into(), "bad>".into(), "".into()]);
        assert_eq!(c.list(), ["mem=16", "morse"]);
        assert_eq!(c.change(true, "mem=64").unwrap(), ["mem=64", "morse"]);
        assert_eq!(c.change(true, "gpu=A100").unwrap(), ["gpu=A100", "mem=64", "morse"]);
        assert_eq!(c.change(true, "gpu").unwrap(), ["gpu", "mem=64", "morse"]);
        assert_eq!(c.change(false, "mem").unwrap(), ["gpu", "morse"]);
        assert_eq!(c.change(false, "absent").unwrap(), ["gpu", "morse"]);
        let e = c.change(false, "gpu=A100").unwrap_err();
        assert!(e.to_string().contains("name only"), "{e}");
        assert!(c.change(true, "mem>=3").is_err());
        // Issue 21 point 8: a peer or an old CLI may send what no requirement can name.
        assert!(c.change(true, "a=b=c").unwrap_err().to_string().contains("no requirement"));
        let e = c.change(true, &"n".repeat(100_000)).unwrap_err().to_string();
        assert!(e.contains("at most") && e.len() < 200, "{} bytes", e.len());
        assert_eq!(c.list(), ["gpu", "morse"], "a refused change changes nothing");
    }
}
