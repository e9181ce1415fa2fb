//! Supervised children: the children this node's actors created with a restart policy
//! (`Context::create_supervised`), how to create each again, and its recent restarts. The
//! decision whether a child's exit is restarted is made here; the restart itself in
//! [`crate::runtime::supervise`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use troupe_actor_abi::message::{Address, CreateSpec, ExitReason, RestartPolicy};

struct Entry {
    /// The parent, an actor of this node.
    parent: u64,
    /// How the child was created, its version resolved.
    spec: CreateSpec,
    policy: RestartPolicy,
    /// When it was restarted within the policy's window.
    restarts: VecDeque<Instant>,
    /// Restarts in the current run of failures (the wait doubles with each), and when the last
    /// one was decided: a child that went the policy's quiet period without failing starts a
    /// new run, at the first wait again.
    run: u32,
    last: Option<Instant>,
}

/// What to do with a child's exit.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Not supervised, not a failure, or its budget is spent: the parent gets `ChildActorExited`.
    Deliver,
    /// Create it again after `delay`; `restarts` counts this one.
    Restart { parent: u64, spec: CreateSpec, delay: Duration, restarts: u32 },
}

/// The supervised children of this node's actors, by address.
#[derive(Default)]
pub(crate) struct Supervised {
    inner: Mutex<HashMap<Address, Entry>>,
}

impl Supervised {
    fn lock(&self) -> MutexGuard<'_, HashMap<Address, Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Supervises `child` of local actor `parent`.
    pub(crate) fn add(&self, child: Address, parent: u64, spec: CreateSpec, policy: RestartPolicy) {
        let entry = Entry { parent, spec, policy, restarts: VecDeque::new(), run: 0, last: None };
        self.lock().insert(child, entry);
    }

    /// Whether `child` is supervised.
    #[cfg(test)]
    pub(crate) fn contains(&self, child: &Address) -> bool {
        self.lock().contains_key(child)
    }

    /// `child` exited for `reason`, at `now`: restart it, or tell its parent. A child that is
    /// not restarted is forgotten. The wait before a restart is the policy's
    /// ([`RestartPolicy::delay`]: never under `MIN_RESTART_BACKOFF`, so that a child that can
    /// never run is not a busy loop), by the restarts of the current run of failures.
    pub(crate) fn exited(&self, child: &Address, reason: &ExitReason, now: Instant) -> Verdict {
        let mut st = self.lock();
        let Some(e) = st.get_mut(child) else {
            return Verdict::Deliver;
        };
        if !RestartPolicy::restarts(reason) {
            st.remove(child);
            return Verdict::Deliver;
        }
        let window = Duration::from_millis(e.policy.within_ms);
        while e.restarts.front().is_some_and(|t| now.duration_since(*t) >= window) {
            e.restarts.pop_front();
        }
        if e.restarts.len() >= e.policy.max_restarts as usize {
            st.remove(child);
            return Verdict::Deliver;
        }
        e.restarts.push_back(now);
        if e.last.is_some_and(|t| now.duration_since(t) >= e.policy.quiet_period()) {
            e.run = 0;
        }
        e.run = e.run.saturating_add(1);
        e.last = Some(now);
        let restarts = e.restarts.len() as u32;
        Verdict::Restart { parent: e.parent, spec: e.spec.clone(), delay: e.policy.delay(e.run), restarts }
    }

    /// The child restarted at `new` (a different address than `old`): its entry follows it.
    pub(crate) fn moved(&self, old: &Address, new: Address) {
        let mut st = self.lock();
        if let Some(e) = st.remove(old) {
            st.insert(new, e);
        }
    }

    /// The policy `child` is supervised by.
    pub(crate) fn policy_of(&self, child: &Address) -> Option<RestartPolicy> {
        self.lock().get(child).map(|e| e.policy.clone())
    }

    /// Forgets `child` (its restart failed for good).
    pub(crate) fn remove(&self, child: &Address) {
        self.lock().remove(child);
    }

    /// Local actor `parent` exited: its children are no longer restarted.
    pub(crate) fn forget_parent(&self, parent: u64) {
        self.lock().retain(|_, e| e.parent != parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_actor_abi::message::CreateError;

    fn child() -> Address {
        Address { node: "127.0.0.1:1900".into(), id: 9 }
    }

    #[test]
    fn failures_restart_within_the_budget_with_growing_backoff_then_reach_the_parent() {
        let s = Supervised::default();
        let policy = RestartPolicy::on_failure(2, Duration::from_secs(10))
            .backoff(Duration::from_millis(10), Duration::from_secs(1));
        s.add(child(), 1, CreateSpec::default(), policy);
        let failed = ExitReason::Failed { details: "panicked".into() };
        let t0 = Instant::now();
        let Verdict::Restart { parent, delay, restarts, .. } = s.exited(&child(), &failed, t0) else {
            panic!("the first failure is restarted")
        };
        assert_eq!((parent, delay, restarts), (1, Duration::from_millis(10), 1));
        let Verdict::Restart { delay, restarts, .. } = s.exited(&child(), &failed, t0) else {
            panic!("the second failure is restarted")
        };
        assert_eq!((delay, restarts), (Duration::from_millis(20), 2));
        assert_eq!(s.exited(&child(), &failed, t0), Verdict::Deliver, "the budget is spent");
        assert!(!s.contains(&child()), "a child given up on is forgotten");
    }

    #[test]
    fn a_child_that_always_fails_waits_the_floor_then_longer_even_when_no_backoff_was_asked() {
        let s = Supervised::default();
        s.add(
            child(),
            1,
            CreateSpec::default(),
            RestartPolicy::on_failure(u32::MAX, Duration::from_secs(3600)),
        );
        let failed = ExitReason::CreateFailed(CreateError::PluginError {
            type_name: "x.Y".into(),
            message: "no".into(),
        });
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..10 {
            let Verdict::Restart { delay, .. } = s.exited(&child(), &failed, now) else {
                panic!("not restarted")
            };
            delays.push(delay.as_millis() as u64);
            // It fails again as soon as it is restarted.
            now += delay;
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    }

    #[test]
    fn a_quiet_period_ends_the_run_of_failures() {
        let s = Supervised::default();
        let policy = RestartPolicy::on_failure(100, Duration::from_secs(3600))
            .backoff(Duration::from_millis(100), Duration::from_secs(1));
        s.add(child(), 1, CreateSpec::default(), policy);
        let failed = ExitReason::Failed { details: "panicked".into() };
        let t0 = Instant::now();
        let delay_at = |now| match s.exited(&child(), &failed, now) {
            Verdict::Restart { delay, restarts, .. } => (delay.as_millis() as u64, restarts),
            Verdict::Deliver => panic!("not restarted"),
        };
        assert_eq!(delay_at(t0), (100, 1));
        assert_eq!(delay_at(t0 + Duration::from_millis(500)), (200, 2));
        // Quiet for less than twice the longest wait: the run goes on.
        assert_eq!(delay_at(t0 + Duration::from_millis(2400)), (400, 3));
        // Quiet for twice the longest wait: a new run, while the budget still counts all three.
        assert_eq!(delay_at(t0 + Duration::from_millis(4400)), (100, 4));
    }

    #[test]
    fn the_window_forgets_old_restarts() {
        let s = Supervised::default();
        s.add(child(), 1, CreateSpec::default(), RestartPolicy::on_failure(1, Duration::from_secs(1)));
        let lost = ExitReason::NodeLost { node: "x".into() };
        let t0 = Instant::now();
        assert!(matches!(s.exited(&child(), &lost, t0), Verdict::Restart { .. }));
        let later = t0 + Duration::from_secs(2);
        assert!(matches!(s.exited(&child(), &lost, later), Verdict::Restart { restarts: 1, .. }));
    }

    #[test]
    fn requested_exits_and_hopeless_creates_are_not_restarted() {
        let s = Supervised::default();
        for reason in [
            ExitReason::Requested,
            ExitReason::Unloaded,
            ExitReason::NodeStopping,
            ExitReason::CreateFailed(CreateError::InvalidActorSpecification {
                type_name: "x.Y".into(),
                detail: "no such type".into(),
            }),
        ] {
            s.add(child(), 1, CreateSpec::default(), RestartPolicy::on_failure(5, Duration::from_secs(1)));
            assert_eq!(s.exited(&child(), &reason, Instant::now()), Verdict::Deliver, "{reason}");
            assert!(!s.contains(&child()));
        }
        assert_eq!(s.exited(&child(), &ExitReason::Requested, Instant::now()), Verdict::Deliver);
    }

    #[test]
    fn entries_follow_moves_and_go_with_their_parent() {
        let s = Supervised::default();
        s.add(child(), 1, CreateSpec::default(), RestartPolicy::on_failure(5, Duration::from_secs(1)));
        let new = Address { node: "127.0.0.1:1901".into(), id: 9 };
        s.moved(&child(), new.clone());
        assert!(!s.contains(&child()) && s.contains(&new));
        s.forget_parent(1);
        assert!(!s.contains(&new));
    }
}
