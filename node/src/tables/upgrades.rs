//! Live upgrades waiting for a decision: with `--all-or-nothing`, every node imports its actors
//! into the new version and holds them paused until the node that runs the upgrade commits
//! or rolls back everywhere. The lock is private and never held while anything else is called.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::host::effect::HostHandle;

/// One actor imported and paused on its new version, still paused on its old one.
pub(crate) struct HeldMove {
    pub(crate) id: u64,
    pub(crate) from: HostHandle,
    pub(crate) to: HostHandle,
    /// The new version's generation and hash, and the actor's type there.
    pub(crate) to_gen: u64,
    pub(crate) to_hash: String,
    pub(crate) to_type: String,
    pub(crate) paused_at: Instant,
}

/// Held moves by upgrade id.
#[derive(Default)]
pub(crate) struct Upgrades {
    held: Mutex<HashMap<u64, Vec<HeldMove>>>,
}

impl Upgrades {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Vec<HeldMove>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps upgrade `upgrade`'s held moves until [`Upgrades::take`].
    pub(crate) fn hold(&self, upgrade: u64, moves: Vec<HeldMove>) {
        self.lock().entry(upgrade).or_default().extend(moves);
    }

    /// Upgrade `upgrade`'s held moves, once: whoever takes them commits or rolls them back.
    pub(crate) fn take(&self, upgrade: u64) -> Vec<HeldMove> {
        self.lock().remove(&upgrade).unwrap_or_default()
    }
}
