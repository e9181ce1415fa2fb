//! What the version hosts and the peer links may ask of the node: the core's side of
//! [`NodeSeam`] and [`LinkEvents`], and the effects of plugin calls.

use std::time::Duration;

use troupe_actor_abi::message::{
    Address, CallInfo, CreateError, CreateSpec, ExitReason, Incoming, Payload, SystemMessage, ADMIN_ID,
};

use super::core::Core;
use crate::host::effect::{Cmd, Delivery, Dest, Effect, HostHandle, LocalQueue};
use crate::host::{NodeSeam, VersionEnd};
use crate::peers::{Corked, LinkEvents};

impl NodeSeam for Core {
    fn addr(&self) -> &str {
        &self.addr
    }

    fn create_child(&self, inherit: &str, spec: CreateSpec) -> (Address, Effect) {
        self.prepare_actor_create(inherit, spec)
    }

    fn call_info(&self, id: u64) -> Option<CallInfo> {
        Core::call_info(self, id)
    }

    fn apply(&self, me: u64, effects: &mut Vec<Effect>, local: &mut LocalQueue<'_>) {
        self.apply_effects(me, effects, local)
    }

    fn exited(&self, id: u64, recursive: bool, local: &mut LocalQueue<'_>) {
        self.actor_exited(id, recursive, local)
    }

    fn failed_twice(&self, id: u64, details: &str, local: &mut LocalQueue<'_>) {
        if self.actors.is_supervised(id) {
            let reason = ExitReason::Failed { details: details.to_string() };
            self.request_exit(id, reason, Some(local));
        }
    }

    fn create_failed(&self, id: u64, error: CreateError) {
        Core::create_failed(self, id, None, error)
    }

    fn undeliverable(&self, id: u64, msg: Incoming) {
        let details = self.actors.tombstone_of(id).unwrap_or_else(|| "the actor does not exist".into());
        self.poison(msg, self.address(id), details);
    }

    fn poison(&self, msg: Incoming, target: Address, details: String) {
        Core::poison(self, msg, target, details)
    }

    fn uncork(&self, corked: &mut Corked) {
        self.peers.uncork(corked)
    }

    fn moved(&self, id: u64, gen: u64, hash: &str, type_name: &str, host: HostHandle) {
        // The count follows the actor table's record, once, from where the record was: an
        // actor that exited meanwhile (no record) moves no count.
        let Some(was) = self.actors.rehost(id, gen, hash, type_name, host) else { return };
        if let Some(retire) = self.versions.actor_moved(was, gen) {
            // Its old state is dropped before the version retires: `DropMoved` was queued
            // there before this, and a retiring version's threads finish what is queued.
            let _ = retire.send(Cmd::Retire);
        }
    }

    fn moved_out(&self, _id: u64, _gen: u64) {
        // The old state is dropped; the actor's count moved at `moved`, with its record.
    }

    fn version_ended(&self, hash: &str, gen: u64, end: VersionEnd) {
        match end {
            VersionEnd::Gone { close_time } => {
                let path = self.zip_file(hash, gen);
                self.versions.forget_zip(gen, || crate::store::libcopy::remove_if_there(&path));
                self.version_gone(hash, gen, close_time)
            }
            VersionEnd::Quarantined => {
                if self.versions.quarantine(gen) {
                    // A stop waiting for every version counts a quarantined one as done.
                    self.stopped.notify_waiters();
                }
            }
        }
    }
}

impl LinkEvents for Core {
    fn undelivered(&self, msg: Incoming, to: Address, why: String) {
        self.poison(msg, to, why)
    }

    fn create_unreachable(&self, id: u64, node: &str, parent: Option<Address>, type_name: &str, why: &str) {
        self.remote_create_unreachable(id, node, parent, type_name, why)
    }

    fn unreachable(&self, addr: &str, why: &str) {
        self.peer_unreachable(addr, why)
    }
}

impl Core {
    /// Applies what actor `me` asked for during a call, in order, emptying `effects`.
    pub(crate) fn apply_effects(&self, me: u64, effects: &mut Vec<Effect>, local: &mut LocalQueue<'_>) {
        if effects.is_empty() {
            return;
        }
        let me_addr = self.address(me);
        for e in effects.drain(..) {
            match e {
                Effect::Send {
                    to,
                    payload: Payload::System(SystemMessage::Supervise { child, spec, policy }),
                } if to.id == ADMIN_ID && self.is_local(&to) => {
                    // Recorded now, before the child's create (an earlier effect of this call)
                    // can fail on another thread.
                    self.supervise(me_addr.clone(), child, spec, policy)
                }
                Effect::Send { to, payload } => {
                    self.route(Incoming { sender: Some(me_addr.clone()), payload }, &to, Some(local))
                }
                Effect::SendRaw { to: Dest::Here(id), bytes } => {
                    self.route_here(Delivery::Raw(bytes), id, Some(local))
                }
                Effect::SendRaw { to: Dest::Peer(to), bytes } => {
                    self.route(Delivery::Raw(bytes).into_incoming(), &to, Some(local))
                }
                Effect::Create { id, spec, plan, hold: true } => {
                    self.create_held(id, me_addr.clone(), spec, plan)
                }
                Effect::CreateLater { id, spec, inherit } => {
                    self.create_later(id, me_addr.clone(), spec, inherit)
                }
                Effect::Create { id, spec, plan, hold: false } => match plan.target.clone() {
                    Ok(t) => self.create_planned(id, Some(me_addr.clone()), spec, plan, t, Some(local)),
                    Err(e) => self.abandon_create(id, Some(me_addr.clone()), spec.global_name.as_deref(), e),
                },
                Effect::CreateFailed { id, error } => {
                    Core::create_failed(self, id, Some(me_addr.clone()), error)
                }
                Effect::Nothing => {}
                Effect::ExitSelf => self.request_exit(me, ExitReason::Requested, Some(local)),
                Effect::Wakeup { delay_ms, payload } => self.wake_later(me_addr.clone(), delay_ms, payload),
                Effect::RegisterAuthority => {
                    tracing::info!(actor = %me_addr, "actor registered itself as source authority");
                    self.authority.register(me_addr.clone());
                }
            }
        }
    }

    /// Sends `to` a `Wakeup` after `delay_ms`.
    fn wake_later(&self, to: Address, delay_ms: u64, payload: Option<Payload>) {
        let weak = self.weak.clone();
        self.rt.spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            if let Some(s) = weak.upgrade() {
                let p = Payload::System(SystemMessage::Wakeup { payload: payload.map(Box::new) });
                s.route(Incoming { sender: None, payload: p }, &to, None);
            }
        });
    }
}
