//! Supervision: children created with a restart policy (`Context::create_supervised`) are
//! created again by the runtime when they fail, so that their parent need not handle
//! `ChildActorExited` itself.
//!
//! - The parent's node keeps each supervised child's spec and restarts
//!   ([`crate::tables::supervised`]); the child's node marks the child
//!   ([`crate::tables::actors::ActorRec::supervised`]), so that a handler failing twice on one
//!   message stops it (`ExitReason::Failed`) instead of leaving it running.
//! - A `ChildActorExited` for a supervised child is caught as it reaches the parent's node
//!   ([`Core::route`]): a failure within the policy's budget is restarted after its backoff
//!   and the parent gets `ChildActorRestarted`; anything else reaches the parent as before.
//! - A restarted child keeps its id. It is placed on the node it ran on when it can be (same
//!   address: senders holding it reach the new actor); after its node was lost or no longer
//!   had what it requires it is placed anew, and `ChildActorRestarted` names the new address.
//! - While a child of the parent's own node waits to restart (its backoff), a placeholder
//!   (a `Pending` record) keeps what is sent to it; the new child gets it, in order, or the
//!   senders get it back as `PoisonMessage` when the restart does not happen. Messages to a
//!   child on another node come back as `PoisonMessage` in that window.
//! - Global name, requirements and version are those of the first create.
//! - The wait before a restart is never under `MIN_RESTART_BACKOFF` and doubles while the child
//!   keeps failing ([`RestartPolicy::delay`], the run kept by [`crate::tables::supervised`]), and
//!   the log lines of restarts are limited ([`Repeats`]): a child whose constructor always fails
//!   costs a few restarts and lines a second, not a busy loop.

use std::time::Instant;

use troupe_actor_abi::message::{
    Address, CreateError, CreateSpec, ExitReason, Incoming, Payload, RestartPolicy, SystemMessage, ADMIN_ID,
};

use super::core::Core;
use crate::model::log_limit::Repeats;
use crate::model::placement::Target;
use crate::tables::actors::{ActorKind, ActorRec};
use crate::tables::supervised::Verdict;

/// The log lines of restarts: children that keep failing would repeat them without bound.
static RESTARTING: Repeats = Repeats::new();
static RESTART_FAILED: Repeats = Repeats::new();

impl Core {
    /// `parent` supervises `child` by `policy`. On the parent's node the child's spec is kept
    /// (its version resolved now, so that a restart creates the same one); the child's node
    /// marks it, told by a forwarded `Supervise` when it is another node.
    pub(crate) fn supervise(
        &self,
        parent: Address,
        child: Address,
        mut spec: CreateSpec,
        policy: RestartPolicy,
    ) {
        if self.is_local(&parent) {
            let Some((_, _, own_hash, _)) = self.actors.identity(parent.id) else { return };
            let hash = spec.source_hash.take().unwrap_or(own_hash);
            spec.source_hash = Some(self.resolve_hash(&hash).unwrap_or(hash));
            self.supervised.add(child.clone(), parent.id, spec.clone(), policy.clone());
        }
        self.mark_supervised(&parent, &child, spec, policy);
    }

    /// Marks `child` as supervised on its own node.
    fn mark_supervised(&self, parent: &Address, child: &Address, spec: CreateSpec, policy: RestartPolicy) {
        if self.is_local(child) {
            self.actors.set_supervised(child.id);
        } else if self.is_local(parent) {
            let m = Payload::System(SystemMessage::Supervise { child: child.clone(), spec, policy });
            let node = Address { node: child.node.clone(), id: ADMIN_ID };
            self.route(Incoming { sender: Some(parent.clone()), payload: m }, &node, None);
        }
    }

    /// A `ChildActorExited` on its way to local actor `parent`: true if the child is
    /// supervised and will be restarted (the message is then not delivered).
    pub(crate) fn restart_instead(&self, parent: u64, child: &Address, reason: &ExitReason) -> bool {
        let Verdict::Restart { parent: owner, spec, delay, restarts } =
            self.supervised.exited(child, reason, Instant::now())
        else {
            return false;
        };
        if owner != parent || !self.actors.contains(parent) {
            self.supervised.remove(child);
            return false;
        }
        if self.is_local(child) {
            // Messages to the child wait for it here while it restarts, instead of bouncing.
            let kind = ActorKind::Pending {
                hash: spec.source_hash.clone().unwrap_or_default(),
                type_name: spec.type_name.clone(),
                buffer: Vec::new(),
            };
            self.actors.insert(child.id, ActorRec::new(kind, Some(self.address(parent)), None, Vec::new()));
        }
        let (child, reason) = (child.clone(), reason.clone());
        if let Some(held) = RESTARTING.admit_now() {
            tracing::info!(%child, %reason, restarts, ?delay, "restarting a supervised child{held}");
        }
        // Held weakly during the backoff, as timers do: a stopped node is not kept alive.
        let weak = self.weak.clone();
        self.rt.spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(core) = weak.upgrade() {
                core.restart(parent, child, spec, reason, restarts).await;
            }
        });
        true
    }

    /// Creates a supervised child again (see the module's documentation).
    async fn restart(&self, parent: u64, old: Address, spec: CreateSpec, reason: ExitReason, restarts: u32) {
        let parent_addr = self.address(parent);
        // What was sent to the child while it waited to restart (local children only), taken
        // at the last moment: just before the new child is committed, or when it will not be.
        let waiting = |core: &Core| {
            let kept = if core.is_local(&old) { core.actors.take_placeholder(old.id) } else { None };
            kept.unwrap_or_default()
        };
        if !self.actors.contains(parent) {
            self.supervised.remove(&old);
            self.bounce(waiting(self), &old, "the actor exited and its parent is gone: it is not restarted");
            return;
        }
        let moved_away = matches!(reason, ExitReason::NodeLost { .. } | ExitReason::CapabilityLost { .. });
        let same_place = !moved_away && (self.is_local(&old) || self.members.addrs().contains(&old.node));
        let mut plan = self.plan_create(&spec, None, same_place && self.is_local(&old));
        if plan.is_err() && same_place && self.is_local(&old) {
            plan = self.plan_create(&spec, None, false);
        }
        let placed = plan.and_then(|p| {
            let mut target = p.target.clone()?;
            if same_place && !self.is_local(&old) {
                target = Target::Remote(old.node.clone());
            }
            Ok((p, target))
        });
        let (plan, target) = match placed {
            Ok(p) => p,
            Err(e) => {
                self.bounce(waiting(self), &old, &format!("it could not be restarted: {e}"));
                return self.restart_failed(parent_addr, old, e);
            }
        };
        let id = old.id;
        let addr = self.target_address(&target, id);
        if let Some(name) = &spec.global_name {
            let claimed = match self.claim_name(name, Some(addr.clone())).await {
                Ok(holder) => holder,
                Err(e) => {
                    self.bounce(waiting(self), &old, &format!("it could not be restarted: {e}"));
                    return self.restart_failed(parent_addr, old, e);
                }
            };
            if let Some(holder) = claimed {
                if holder != addr {
                    // Someone else holds the name now: the parent decides what to do.
                    self.supervised.remove(&old);
                    self.bounce(waiting(self), &old, &format!("its name {name} is held by {holder} now"));
                    self.notify_parent(parent_addr, old, reason);
                    return;
                }
            }
        }
        let name = spec.global_name.clone();
        let policy_spec = spec.clone();
        if addr != old {
            self.supervised.moved(&old, addr.clone());
        }
        // The parent hears of the restart before the new child can fail again (its constructor
        // runs on another thread as soon as the create is committed): here, messages to the
        // child wait in its placeholder meanwhile. A child placed on another node is announced
        // once its create is on the link to that node, so that nothing sent to it after the
        // announcement can overtake the create.
        let m = SystemMessage::ChildActorRestarted {
            child: addr.clone(),
            previous: old.clone(),
            reason,
            restarts,
        };
        let mut announce = Some(Incoming { sender: None, payload: Payload::System(m) });
        if let Some(m) = announce.take_if(|_| matches!(target, Target::Local(_))) {
            self.route(m, &parent_addr, None);
        }
        let waiting = waiting(self);
        let committed = self.commit_create(id, Some(parent_addr.clone()), spec, plan, target, None);
        if let Some(m) = announce.take().filter(|_| committed.is_ok()) {
            self.route(m, &parent_addr, None);
        }
        match committed {
            Ok(addr) => {
                if let Some(policy) = self.supervised.policy_of(&addr) {
                    self.mark_supervised(&parent_addr, &addr, policy_spec, policy);
                }
                for m in waiting {
                    self.route(m, &addr, None);
                }
            }
            Err(e) => {
                if let Some(name) = name {
                    self.release_name(&name, &addr);
                }
                self.bounce(waiting, &old, &format!("it could not be restarted: {e}"));
                self.restart_failed(parent_addr, addr, e)
            }
        }
    }

    /// Returns messages that waited for a restart that will not happen to their senders.
    fn bounce(&self, waiting: Vec<Incoming>, target: &Address, why: &str) {
        for m in waiting {
            self.poison(m, target.clone(), why.to_string());
        }
    }

    /// A restart could not be placed or created: that counts as the child failing again
    /// (restarted after a longer backoff, or given up on when the budget is spent).
    fn restart_failed(&self, parent: Address, old: Address, e: CreateError) {
        if let Some(held) = RESTART_FAILED.admit_now() {
            tracing::info!(child = %old, "restarting a supervised child failed: {e}{held}");
        }
        self.notify_parent(parent, old, ExitReason::CreateFailed(e));
    }
}
