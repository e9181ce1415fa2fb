//! The source authority: who decides whether a version may run here, and the validations an
//! authority actor has not answered yet. The lock is private and never held while anything
//! else is called (except by [`crate::tables::versions::Versions::admit`], which asks
//! [`SourceAuthority::decide`] under its own lock: versions before authority, never the
//! other way round).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;
use troupe_actor_abi::message::Address;

use crate::model::config::AuthorityConfig;
use crate::model::error::LoadError;
use crate::store::signing::TrustedKeys;

/// How the authority in force decides a load.
pub(crate) enum Decision {
    AcceptAll,
    Ed25519(TrustedKeys),
    Actor(Address),
}

enum Authority {
    None,
    AcceptAll,
    Ed25519(TrustedKeys),
    Actor(Address),
}

/// An authority actor's answer: `Err` carries the reason for a refusal.
pub(crate) type Verdict = Result<(), String>;

struct Inner {
    authority: Authority,
    /// Validations sent to an authority actor, by hash.
    pending: HashMap<String, oneshot::Sender<Verdict>>,
}

impl Inner {
    fn fail_pending(&mut self, why: &str) {
        for (_, p) in self.pending.drain() {
            let _ = p.send(Err(why.to_string()));
        }
    }
}

/// The source authority (see the module's documentation).
pub(crate) struct SourceAuthority {
    inner: Mutex<Inner>,
}

impl SourceAuthority {
    /// The authority a node starts with.
    pub(crate) fn new(config: AuthorityConfig) -> SourceAuthority {
        let authority = match config {
            AuthorityConfig::None => Authority::None,
            AuthorityConfig::AcceptAll => Authority::AcceptAll,
            AuthorityConfig::Ed25519(keys) => Authority::Ed25519(keys),
        };
        SourceAuthority { inner: Mutex::new(Inner { authority, pending: HashMap::new() }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How a new load is decided; refused at once if no authority is registered.
    pub(crate) fn decide(&self) -> Result<Decision, LoadError> {
        match &self.lock().authority {
            Authority::None => Err(LoadError::NoAuthority),
            Authority::AcceptAll => Ok(Decision::AcceptAll),
            Authority::Ed25519(keys) => Ok(Decision::Ed25519(keys.clone())),
            Authority::Actor(a) => Ok(Decision::Actor(a.clone())),
        }
    }

    /// An actor registers itself as the authority.
    pub(crate) fn register(&self, actor: Address) {
        self.lock().authority = Authority::Actor(actor);
    }

    /// A validation of `hash` is being asked of the authority actor: its answer arrives here.
    pub(crate) fn begin(&self, hash: &str) -> oneshot::Receiver<Verdict> {
        let (tx, rx) = oneshot::channel();
        self.lock().pending.insert(hash.to_string(), tx);
        rx
    }

    /// The validation of `hash` is over (answered or timed out).
    pub(crate) fn end(&self, hash: &str) {
        self.lock().pending.remove(hash);
    }

    /// `ValidatedSource` from `sender`: taken only from the registered authority actor.
    pub(crate) fn answer(&self, sender: Option<&Address>, hash: &str, verdict: Verdict) {
        let mut st = self.lock();
        if !matches!((&st.authority, sender), (Authority::Actor(a), Some(s)) if a == s) {
            tracing::warn!(?sender, "ignored ValidatedSource from an actor that is not the source authority");
            return;
        }
        match st.pending.remove(hash) {
            Some(p) => {
                let _ = p.send(verdict);
            }
            None => tracing::warn!(%hash, "ValidatedSource for a hash that is not being validated (ignored)"),
        }
    }

    /// A validation request bounced off `target`: if it is the authority, it is gone; fail
    /// every pending validation now rather than at the timeout, and stop using it.
    pub(crate) fn bounced(&self, target: &Address, details: &str) {
        let mut st = self.lock();
        if matches!(&st.authority, Authority::Actor(a) if a == target) {
            st.authority = Authority::None;
            st.fail_pending(&format!("the source authority {target} is gone: {details}"));
        }
    }

    /// Actor `id` of this node exited: if it was the authority, loads are refused from now on.
    pub(crate) fn actor_gone(&self, id: u64) {
        let mut st = self.lock();
        if matches!(&st.authority, Authority::Actor(a) if a.id == id) {
            st.authority = Authority::None;
            st.fail_pending("the source authority exited");
        }
    }

    /// The version `hash` was unloaded while the authority looked at it.
    pub(crate) fn cancel(&self, hash: &str) {
        if let Some(p) = self.lock().pending.remove(hash) {
            let _ = p.send(Err("the source was unloaded while being validated".into()));
        }
    }

    /// The node stops: every pending validation fails.
    pub(crate) fn fail_all(&self, why: &str) {
        self.lock().fail_pending(why);
    }

    /// What `status` shows.
    pub(crate) fn describe(&self) -> String {
        match &self.lock().authority {
            Authority::None => "none".into(),
            Authority::AcceptAll => "accept-all".into(),
            Authority::Ed25519(keys) => format!("ed25519 (trusted keys: {})", keys.names().join(", ")),
            Authority::Actor(a) => format!("actor {a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(id: u64) -> Address {
        Address { node: "n:1".into(), id }
    }

    #[tokio::test]
    async fn only_the_registered_actor_answers_and_its_exit_refuses_later_loads() {
        let a = SourceAuthority::new(AuthorityConfig::AcceptAll);
        assert!(matches!(a.decide(), Ok(Decision::AcceptAll)));
        a.register(actor(7));
        let rx = a.begin("h");
        a.answer(Some(&actor(8)), "h", Ok(()));
        a.answer(Some(&actor(7)), "h", Err("no".into()));
        assert_eq!(rx.await.unwrap(), Err("no".to_string()));
        let pending = a.begin("h2");
        a.actor_gone(7);
        assert_eq!(pending.await.unwrap(), Err("the source authority exited".to_string()));
        assert!(matches!(a.decide(), Err(LoadError::NoAuthority)));
        assert_eq!(a.describe(), "none");
    }

    #[tokio::test]
    async fn a_bounced_validation_fails_at_once() {
        let a = SourceAuthority::new(AuthorityConfig::None);
        a.register(actor(3));
        let rx = a.begin("h");
        a.bounced(&actor(3), "no such actor");
        assert!(rx.await.unwrap().unwrap_err().contains("is gone: no such actor"));
    }
}
