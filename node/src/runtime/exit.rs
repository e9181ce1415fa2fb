//! Stopping actors: exit requests (recursive: children stop with their parent, wherever they
//! run), what an exited actor leaves behind (its name, its count in its version, its watch,
//! its role as authority), and the parent's `ChildActorExited`.

use troupe_actor_abi::message::{CallInfo, ExitReason, Incoming, Payload, SystemMessage};

use super::core::Core;
use crate::host::effect::{Cmd, HostHandle, LocalQueue};
use crate::tables::actors::{ActorKind, ActorRec};

impl Core {
    /// Asks actor `id` (local) to exit, recursively, remembering why.
    pub(crate) fn request_exit(&self, id: u64, reason: ExitReason, local: Option<&mut LocalQueue<'_>>) {
        if !self.actors.mark_exiting(id, reason) {
            return;
        }
        let p = Payload::System(SystemMessage::ActorExitRequest { recursive: true });
        self.route(Incoming { sender: None, payload: p }, &self.address(id), local);
    }

    /// Actor `id` handled its exit request and was dropped. With `recursive` (the default) its
    /// children are stopped too; without, they keep running, parentless in effect: their
    /// `ChildActorExited` goes to the exited parent's address and is dropped there, and a
    /// supervised one is no longer restarted (Thespian's `notRecursive()`).
    pub(crate) fn actor_exited(&self, id: u64, recursive: bool, local: &mut LocalQueue<'_>) {
        let mut reason = ExitReason::Requested;
        let Some(rec) = self.actors.remove(id, |rec| {
            reason = rec.exit_reason.clone().unwrap_or(ExitReason::Requested);
            format!("the actor exited ({reason})")
        }) else {
            return;
        };
        let retire = self.forget(id, &rec);
        if let Some(name) = &rec.global_name {
            self.release_name(name, &self.address(id));
        }
        let exit = Payload::System(SystemMessage::ActorExitRequest { recursive: true });
        let children = if recursive { rec.children.iter().collect() } else { Vec::new() };
        for child in children {
            // Children stop with their parent, wherever they run.
            if self.is_local(child) {
                self.request_exit(child.id, reason.clone(), Some(local));
            } else {
                self.route(Incoming { sender: None, payload: exit.clone() }, child, None);
            }
        }
        if let Some(parent) = rec.parent {
            self.notify_parent(parent, self.address(id), reason);
        }
        if let Some(host) = retire {
            let _ = host.send(Cmd::Retire);
        }
    }

    /// What an actor that left the table held elsewhere: its name here, its count in its
    /// version, its watch, its role as authority. Returns the version host to retire, if this
    /// was the last actor of a draining version (the caller sends `Retire` when it is done).
    pub(crate) fn forget(&self, id: u64, rec: &ActorRec) -> Option<HostHandle> {
        if let Some(n) = &rec.global_name {
            self.names.drop_here(n, id);
        }
        self.members.forget_watcher(id, &self.addr);
        self.authority.actor_gone(id);
        self.source_watch.forget(id);
        self.supervised.forget_parent(id);
        match &rec.kind {
            ActorKind::Plugin { gen, .. } => self.versions.actor_left(*gen),
            _ => None,
        }
    }

    /// What actor `id` may know about itself during a call.
    pub(crate) fn call_info(&self, id: u64) -> Option<CallInfo> {
        let (parent, global_name, source_hash, type_name) = self.actors.identity(id)?;
        Some(CallInfo {
            me: self.address(id),
            parent,
            global_name,
            source_hash,
            type_name,
            capabilities: self.caps.list(),
        })
    }

    /// A message to the node's own endpoint: the source authority's answers, watch requests,
    /// and what actors ask of their node (source notifications, system calls, asks,
    /// supervision).
    pub(crate) fn admin_message(&self, m: Incoming) {
        match m.payload {
            Payload::System(SystemMessage::ValidatedSource { hash, accepted, reason }) => {
                let verdict =
                    if accepted { Ok(()) } else { Err(reason.unwrap_or_else(|| "no reason given".into())) };
                self.authority.answer(m.sender.as_ref(), &hash, verdict);
            }
            Payload::System(SystemMessage::NotifyOnSystemRegistrationChanges { enable }) => {
                if let Some(w) = m.sender {
                    self.watch(w, enable);
                }
            }
            Payload::System(SystemMessage::PoisonMessage { target, details, .. }) => {
                self.authority.bounced(&target, &details);
            }
            Payload::System(SystemMessage::NotifyOnSourceAvailability { enable }) => {
                if let Some(w) = m.sender.filter(|w| self.is_local(w)) {
                    let notices = self.source_watch.subscribe(w.id, enable);
                    self.send_notices(notices);
                }
            }
            Payload::System(SystemMessage::SystemCall { request, call }) => {
                if let Some(caller) = m.sender {
                    self.system_call(caller, request, call);
                }
            }
            Payload::System(SystemMessage::Ask { request, to, message, timeout_ms }) => {
                if let Some(asker) = m.sender {
                    self.ask_for(asker, request, to, *message, timeout_ms);
                }
            }
            Payload::System(SystemMessage::Supervise { child, spec, policy }) => {
                if let Some(parent) = m.sender {
                    self.supervise(parent, child, spec, policy);
                }
            }
            other => tracing::debug!("admin endpoint ignored {other:?}"),
        }
    }
}
