//! What actors ask of their own node by sending a runtime message to its admin address (id
//! 0), handled on the node's tokio tasks, never on the asking actor's thread; each answer
//! comes back to the actor as a message:
//! - source notifications (`NotifyOnSourceAvailability` → `LoadedSource` / `UnloadedSource`);
//! - system calls (`SystemCall` → `SystemCallResult`): load, unload, change a capability,
//!   stop, through the same core operations as the CLI's requests, and only on a node started
//!   with `--actor-system-calls`;
//! - asks (`Ask` → `AskReply` or `AskTimedOut`): the message goes out from a reply address
//!   made for the request (an endpoint like a client connection's), whose first message is the
//!   reply; the endpoint is removed at the reply or the timeout, so a late reply is returned to
//!   its sender as `PoisonMessage`, never delivered twice.

use std::time::Duration;

use tokio::sync::mpsc;
use troupe_actor_abi::message::{Address, Incoming, Payload, SystemCall, SystemMessage};

use super::core::Core;
use crate::admin::dispatch::STOP_TIMEOUT;
use crate::tables::source_watch::Notices;
use crate::wire::Response;

/// The longest an ask waits (a longer timeout is cut to this).
const MAX_ASK_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What a caller is told when the node does not take system calls from actors.
pub(crate) const SYSTEM_CALLS_OFF: &str =
    "system calls from actors are disabled on this node (start it with --actor-system-calls to allow them)";

impl Core {
    /// Sends source notifications to their subscribers (actors of this node).
    pub(crate) fn send_notices(&self, notices: Notices) {
        for (id, m) in notices {
            self.route(Incoming { sender: None, payload: Payload::System(m) }, &self.address(id), None);
        }
    }

    /// Runs a system call for `caller` on a task of its own; the outcome goes back to it.
    pub(crate) fn system_call(&self, caller: Address, request: u64, call: SystemCall) {
        if !self.is_local(&caller) {
            // Only an actor of this node may ask it: drop what a peer forwarded by mistake.
            tracing::warn!(%caller, "dropped a system call from another node's actor");
            return;
        }
        let to = caller.clone();
        let answer = move |core: &Core, outcome: Result<String, String>| {
            let p = Payload::System(SystemMessage::SystemCallResult { request, outcome });
            core.route(Incoming { sender: None, payload: p }, &to, None);
        };
        if !self.actor_system_calls {
            tracing::info!(actor = %caller, ?call, "refused a system call: {SYSTEM_CALLS_OFF}");
            return answer(self, Err(SYSTEM_CALLS_OFF.to_string()));
        }
        let Some(core) = self.arc() else { return };
        tracing::info!(actor = %caller, call = call_name(&call), "system call");
        self.rt.spawn(async move {
            let outcome = match call {
                SystemCall::LoadSource { zip, info } => match core.load(zip, info).await {
                    Ok(Response::Loaded { hash, .. }) => Ok(hash),
                    Ok(other) => Err(format!("unexpected answer to the load: {other:?}")),
                    Err(e) => Err(e.to_string()),
                },
                SystemCall::UnloadSource { hash } => match core.unload(&hash, None).await {
                    Ok(Response::Unloaded { hash, .. }) => Ok(hash),
                    Ok(other) => Err(format!("unexpected answer to the unload: {other:?}")),
                    Err(e) => Err(e.to_string()),
                },
                SystemCall::ChangeCapability { add, name } => match core.change_capability(add, &name) {
                    Ok(Response::Capabilities { capabilities, .. }) => Ok(capabilities.join(",")),
                    Ok(other) => Err(format!("unexpected answer to the capability change: {other:?}")),
                    Err(e) => Err(e.to_string()),
                },
                SystemCall::ShutdownNode => {
                    // Answered first: the caller hears it before its exit request.
                    answer(&core, Ok("stopping".into()));
                    core.stop(STOP_TIMEOUT).await;
                    core.shutdown.notify_one();
                    return;
                }
            };
            answer(&core, outcome);
        });
    }

    /// Sends `message` to `to` for `asker` from a reply address made for the request; the
    /// first message to that address goes back to `asker` as `AskReply`, or `AskTimedOut` after
    /// `timeout_ms`.
    pub(crate) fn ask_for(
        &self,
        asker: Address,
        request: u64,
        to: Address,
        message: Payload,
        timeout_ms: u64,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Incoming>();
        let reply_to = self.register_client(tx);
        let id = reply_to.id;
        self.route(Incoming { sender: Some(reply_to), payload: message }, &to, None);
        let timeout = Duration::from_millis(timeout_ms).min(MAX_ASK_TIMEOUT);
        // The task holds the node weakly, as timers do: it must not keep a stopped node alive.
        let weak = self.weak.clone();
        self.rt.spawn(async move {
            let first = tokio::time::timeout(timeout, rx.recv()).await;
            let Some(core) = weak.upgrade() else { return };
            let why = match &first {
                Ok(Some(_)) => "the ask it was the reply address of was answered already",
                _ => "the ask it was the reply address of timed out",
            };
            core.actors.remove(id, |_| why.to_string());
            // Anything that slipped in after the first message goes back to its sender.
            rx.close();
            while let Ok(late) = rx.try_recv() {
                core.poison(late, core.address(id), why.to_string());
            }
            let answer = match first {
                Ok(Some(m)) => {
                    SystemMessage::AskReply { request, from: m.sender, reply: Box::new(m.payload) }
                }
                _ => SystemMessage::AskTimedOut { request, to },
            };
            core.route(Incoming { sender: None, payload: Payload::System(answer) }, &asker, None);
        });
    }
}

fn call_name(call: &SystemCall) -> &'static str {
    match call {
        SystemCall::LoadSource { .. } => "load",
        SystemCall::UnloadSource { .. } => "unload",
        SystemCall::ChangeCapability { .. } => "change capability",
        SystemCall::ShutdownNode => "shutdown",
    }
}
