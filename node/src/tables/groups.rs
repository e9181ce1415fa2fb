//! Named releases (groups): each group's versions, oldest first, and the active one that `@NAME`
//! means wherever a hash is accepted. Authoritative on the leader; members keep the copy the
//! leader hands them when it changes. Every change raises the groups' version, and a new
//! leader takes the newest copy its members bring. The lock is private.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use troupe_actor_abi::message::CreateError;

use crate::model::error::OpError;
use crate::wire::peer::{GroupInfo, GroupsCopy};

/// A group after a deploy: its state, the version active before, and the versions that fell
/// out of the kept window (to be unloaded).
pub(crate) struct Activated {
    pub(crate) info: GroupInfo,
    pub(crate) previous: Option<String>,
    pub(crate) unloaded: Vec<String>,
}

/// The groups (see the module's documentation).
#[derive(Default)]
pub(crate) struct Groups {
    inner: Mutex<GroupsCopy>,
}

impl Groups {
    fn copy_lock(&self) -> MutexGuard<'_, GroupsCopy> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every group.
    pub(crate) fn all(&self) -> BTreeMap<String, GroupInfo> {
        self.copy_lock().groups.clone()
    }

    /// The groups with their version.
    pub(crate) fn copy(&self) -> GroupsCopy {
        self.copy_lock().clone()
    }

    /// Their version.
    pub(crate) fn version(&self) -> u64 {
        self.copy_lock().version
    }

    /// Takes `copy` if it is newer than ours; whether it was.
    pub(crate) fn take_newer(&self, copy: GroupsCopy) -> bool {
        let mut st = self.copy_lock();
        if copy.version > st.version {
            *st = copy;
            true
        } else {
            false
        }
    }

    /// Whether `group` exists.
    pub(crate) fn contains(&self, group: &str) -> bool {
        self.copy_lock().groups.contains_key(group)
    }

    /// The version `@group` names now.
    pub(crate) fn resolve(&self, group: &str) -> Result<String, CreateError> {
        let hash = format!("@{group}");
        match self.copy_lock().groups.get(group) {
            Some(g) => g.active.clone().ok_or_else(|| CreateError::InvalidActorSourceHash {
                hash,
                detail: format!("names group {group}, which has no active version — deploy one with troupe deploy"),
            }),
            None => Err(CreateError::InvalidActorSourceHash {
                hash,
                detail: format!("names no group: no version was deployed as {group:?} (troupe deploy PORT ZIP --group {group})"),
            }),
        }
    }

    /// `hash` becomes the active version of `group`; versions beyond the `keep` newest others
    /// leave the group (the caller unloads them).
    pub(crate) fn activate(&self, group: &str, hash: &str, keep: usize) -> Activated {
        let mut st = self.copy_lock();
        st.version += 1;
        let g = st.groups.entry(group.to_string()).or_default();
        let previous = g.active.clone().filter(|p| p != hash);
        g.versions.retain(|h| h != hash);
        g.versions.push(hash.to_string());
        g.active = Some(hash.to_string());
        let others: Vec<String> = g.versions.iter().filter(|h| *h != hash).cloned().collect();
        let drop_count = others.len().saturating_sub(keep);
        let unloaded: Vec<String> = others.into_iter().take(drop_count).collect();
        g.versions.retain(|h| !unloaded.contains(h));
        Activated { info: g.clone(), previous, unloaded }
    }

    /// The previous version of `group` that is still `loaded` becomes active again; returns the
    /// group and the version that was active.
    pub(crate) fn roll_back(
        &self,
        group: &str,
        loaded: impl Fn(&str) -> bool,
    ) -> Result<(GroupInfo, String), OpError> {
        let mut st = self.copy_lock();
        let st = &mut *st;
        let Some(g) = st.groups.get_mut(group) else {
            return Err(OpError::NoGroup(format!(
                "there is no group {group:?} — deploy one with troupe deploy PORT ZIP --group {group}"
            )));
        };
        let Some(active) = g.active.clone() else {
            return Err(OpError::NoGroup(format!("group {group:?} has no active version")));
        };
        let pos = g.versions.iter().position(|h| *h == active).unwrap_or(g.versions.len());
        let Some(prev) = g.versions[..pos].iter().rev().find(|h| loaded(h)).cloned() else {
            return Err(OpError::NothingToRollBack(format!(
                "group {group:?} has no earlier version still loaded (deploy with --keep 1 or more to keep one for rollback)"
            )));
        };
        g.active = Some(prev);
        let info = g.clone();
        st.version += 1;
        Ok((info, active))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploys_keep_a_window_and_rollback_returns_to_a_loaded_version() {
        let g = Groups::default();
        assert!(g.resolve("web").is_err());
        g.activate("web", "a", 1);
        let second = g.activate("web", "b", 1);
        assert_eq!((second.previous.as_deref(), second.unloaded.len()), (Some("a"), 0));
        let third = g.activate("web", "c", 1);
        assert_eq!(third.unloaded, vec!["a".to_string()]);
        assert_eq!(g.resolve("web").unwrap(), "c");
        assert!(matches!(g.roll_back("web", |_| false), Err(OpError::NothingToRollBack(_))));
        let (info, was) = g.roll_back("web", |h| h == "b").unwrap();
        assert_eq!((info.active.as_deref(), was.as_str()), (Some("b"), "c"));
        assert!(matches!(g.roll_back("nope", |_| true), Err(OpError::NoGroup(_))));
    }
}
