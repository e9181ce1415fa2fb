//! Live upgrades under way on this node, and the moves they hold for a decision.
//!
//! **Claims.** An upgrade claims both its versions (FROM and TO) on every node where it runs:
//! on the node that runs it for the whole of it, on each member for its `upgrade_here` (and,
//! with `--all-or-nothing`, until the decision). A second upgrade that touches a claimed
//! version is refused ([`Busy`]), and an unload of one is refused or waits for the claim to go
//! ([`Upgrades::until_free`]). So no actor is ever moved by two upgrades at once: two moves of
//! one actor would each hand it over from the version the first export found it on, and one
//! of them would leave a paused copy behind and count the actor twice. A claim is a guard
//! ([`Claim`]): it is released when its last clone is dropped, on every exit path (an error,
//! a panic, a dropped future, a rollback).
//!
//! **Held moves.** With `--all-or-nothing`, every node imports its actors into the new version
//! and holds them paused until the node that runs the upgrade commits or rolls back
//! everywhere; the held moves keep the upgrade's claim until then.
//!
//! The lock is private and never held while anything else is called (a claim dropped while it
//! is held would lock it again: every removal drops what it removed after unlocking).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::host::effect::HostHandle;
use crate::model::error::OpError;
use crate::model::metrics::short_hash;

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

/// An upgrade that holds its versions here: why another one (or an unload) must wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Busy {
    /// The upgrade's id (the same on every node it runs on).
    pub(crate) upgrade: u64,
    pub(crate) from: String,
    pub(crate) to: String,
    /// The node that runs it.
    pub(crate) by: String,
}

impl Busy {
    /// Whether it holds `hash`.
    pub(crate) fn touches(&self, hash: &str) -> bool {
        self.from == hash || self.to == hash
    }

    /// The refusal of something that touches `hash` while this upgrade holds it here.
    pub(crate) fn refusal(self, hash: &str) -> OpError {
        OpError::UpgradeInProgress {
            hash: short_hash(hash).to_string(),
            upgrade: self.upgrade,
            from: short_hash(&self.from).to_string(),
            to: short_hash(&self.to).to_string(),
            by: self.by,
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Upgrades under way here, by id.
    running: HashMap<u64, Busy>,
    /// Held moves by upgrade id, with the claim they keep until the decision.
    held: HashMap<u64, (Vec<HeldMove>, Option<Claim>)>,
}

/// What the table and its claims share.
#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    /// Woken whenever a claim is released.
    released: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An upgrade's hold on its two versions here; cloned to whatever must keep it (held moves).
/// Released when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Claim(Arc<ClaimInner>);

struct ClaimInner {
    upgrade: u64,
    shared: Arc<Shared>,
}

impl Claim {
    /// The upgrade's id.
    pub(crate) fn upgrade(&self) -> u64 {
        self.0.upgrade
    }
}

impl Drop for ClaimInner {
    fn drop(&mut self) {
        let gone = self.shared.lock().running.remove(&self.upgrade);
        drop(gone);
        self.shared.released.notify_waiters();
    }
}

/// Upgrades under way and held moves (see the module's documentation).
#[derive(Default)]
pub(crate) struct Upgrades {
    shared: Arc<Shared>,
}

impl Upgrades {
    /// Claims `from` and `to` for upgrade `upgrade` (run by node `by`), or says which upgrade
    /// under way here holds one of them.
    pub(crate) fn claim(&self, upgrade: u64, from: &str, to: &str, by: &str) -> Result<Claim, Busy> {
        let mut st = self.shared.lock();
        if let Some(busy) =
            st.running.values().find(|b| b.touches(from) || b.touches(to) || b.upgrade == upgrade)
        {
            return Err(busy.clone());
        }
        let busy = Busy { upgrade, from: from.to_string(), to: to.to_string(), by: by.to_string() };
        st.running.insert(upgrade, busy);
        Ok(Claim(Arc::new(ClaimInner { upgrade, shared: self.shared.clone() })))
    }

    /// The upgrade under way here that holds `hash`, unless it is `except`.
    pub(crate) fn busy_with(&self, hash: &str, except: Option<u64>) -> Option<Busy> {
        let st = self.shared.lock();
        st.running.values().find(|b| b.touches(hash) && Some(b.upgrade) != except).cloned()
    }

    /// Returns once no upgrade but `except` holds `hash` here.
    pub(crate) async fn until_free(&self, hash: &str, except: Option<u64>) {
        loop {
            // Registered before the check, so a release between the two is not missed.
            let released = self.shared.released.notified();
            if self.busy_with(hash, except).is_none() {
                return;
            }
            released.await;
        }
    }

    /// Keeps upgrade `upgrade`'s held moves (and its claim) until [`Upgrades::take`].
    pub(crate) fn hold(&self, upgrade: u64, moves: Vec<HeldMove>, claim: Option<Claim>) {
        let replaced = {
            let mut st = self.shared.lock();
            let entry = st.held.entry(upgrade).or_insert_with(|| (Vec::new(), None));
            entry.0.extend(moves);
            match claim {
                Some(c) => entry.1.replace(c),
                None => None,
            }
        };
        drop(replaced);
    }

    /// Upgrade `upgrade`'s held moves, once: whoever takes them commits or rolls them back.
    /// The claim they kept is released.
    pub(crate) fn take(&self, upgrade: u64) -> Vec<HeldMove> {
        let taken = self.shared.lock().held.remove(&upgrade);
        let (moves, claim) = taken.unwrap_or_default();
        drop(claim);
        moves
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_second_upgrade_touching_either_version_is_refused_until_the_first_ends() {
        let ups = Upgrades::default();
        let first = ups.claim(1, "v1", "v2", "a:1").unwrap();
        let busy = |r: Result<Claim, Busy>| r.err().map(|b| b.upgrade);
        assert_eq!(busy(ups.claim(2, "v1", "v3", "a:1")), Some(1), "same FROM");
        assert_eq!(busy(ups.claim(2, "v2", "v3", "b:1")), Some(1), "its TO as FROM");
        assert_eq!(busy(ups.claim(2, "v0", "v2", "b:1")), Some(1), "same TO");
        assert_eq!(busy(ups.claim(2, "v3", "v1", "b:1")), Some(1), "its FROM as TO");
        assert_eq!(busy(ups.claim(1, "x", "y", "b:1")), Some(1), "the same upgrade twice");
        let other = ups.claim(3, "w1", "w2", "a:1").expect("other versions are free");
        assert_eq!(ups.busy_with("v2", None).map(|b| (b.upgrade, b.by)), Some((1, "a:1".into())));
        assert_eq!(ups.busy_with("v2", Some(1)), None, "its own upgrade is not in its way");
        drop(first);
        assert!(ups.busy_with("v1", None).is_none());
        let second = ups.claim(2, "v1", "v3", "a:1").expect("free once the first ended");
        drop((second, other));
    }

    #[test]
    fn a_claim_is_released_by_its_last_clone_and_by_a_panic() {
        let ups = Upgrades::default();
        let claim = ups.claim(1, "v1", "v2", "a:1").unwrap();
        let kept = claim.clone();
        drop(claim);
        assert!(ups.busy_with("v1", None).is_some(), "a clone still holds it");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = kept;
            panic!("an upgrade fails halfway");
        }));
        assert!(panicked.is_err());
        assert!(ups.busy_with("v1", None).is_none(), "released while unwinding");
    }

    #[test]
    fn held_moves_keep_the_claim_until_taken() {
        let ups = Upgrades::default();
        let claim = ups.claim(7, "v1", "v2", "a:1").unwrap();
        ups.hold(7, Vec::new(), Some(claim));
        assert_eq!(ups.busy_with("v2", None).map(|b| b.upgrade), Some(7));
        assert!(ups.take(7).is_empty());
        assert!(ups.busy_with("v2", None).is_none(), "the decision releases it");
        assert!(ups.take(7).is_empty(), "taken once");
    }

    #[tokio::test]
    async fn an_unload_waiting_for_a_version_goes_on_when_its_upgrade_ends() {
        let ups = Arc::new(Upgrades::default());
        let claim = ups.claim(1, "v1", "v2", "a:1").unwrap();
        let waiter = tokio::spawn({
            let ups = ups.clone();
            async move { ups.until_free("v1", None).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "it waits while the upgrade runs");
        drop(claim);
        tokio::time::timeout(Duration::from_secs(30), waiter).await.expect("woken").unwrap();
        ups.until_free("v3", None).await;
    }
}
