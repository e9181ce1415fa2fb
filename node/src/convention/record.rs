//! The leader's record, in its state directory, that it has led members: then a restart of it
//! must *gather* (wait for the members' global names) before it answers claims, or it could
//! grant a second holder of a name a member still holds. A leader without the record (a fresh
//! state directory) was never part of an earlier convention and answers at once.
//!
//! Lifetime, and why: the record is written (once per process life) before the leader answers
//! the first registration or claim of another node, so no member can hold a name it granted
//! without the record on disk. A SIGKILL leaves it. A graceful `stop` deletes only the store,
//! and keeps the record whenever members may still hold names: it is deleted only when the
//! stopping leader has no member left, lost none without a goodbye (members that stopped took
//! their actors, and their names, with them), and is not still gathering (a restarted leader
//! stopped before its members came back must gather again next time). Deleting the state directory deletes the
//! memory too: keep it across restarts of a leader.

use std::path::PathBuf;

use crate::runtime::core::Core;

/// The record's file name in the state directory.
const RECORD: &str = "led-members";

impl Core {
    /// The record's path: in the state directory, which is the store's parent.
    fn record_path(&self) -> Option<PathBuf> {
        self.store.parent().map(|d| d.join(RECORD))
    }

    /// Whether an earlier life of this node led members (see the module's documentation).
    pub(crate) fn led_members_before(&self) -> bool {
        self.record_path().is_some_and(|p| p.exists())
    }

    /// Another node registers with this leader or claims a name from it: the record is
    /// written first (once per life).
    pub(crate) fn record_leading_members(&self) {
        if !self.leadership.must_record() {
            return;
        }
        let Some(path) = self.record_path() else { return };
        let text = format!(
            "node {} (pid {}) led members of its convention; a restart gathers their names before answering claims\n",
            self.addr,
            std::process::id()
        );
        if let Err(e) = std::fs::write(&path, text) {
            tracing::warn!(path = %path.display(), "cannot write the leader's record ({e}): a restart of this node would not wait for its members' names");
        }
    }

    /// On a graceful stop: the record goes if nobody can hold a name this node granted.
    pub(crate) fn forget_record_if_unneeded(&self) {
        let unsure = !self.leadership.gathered() || self.leadership.lost_any_silently();
        if !self.is_leader() || unsure || !self.members.addrs().is_empty() {
            return;
        }
        if let Some(path) = self.record_path() {
            let _ = std::fs::remove_file(path);
        }
    }
}
