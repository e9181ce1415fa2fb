//! Routing: every message a node handles, from a plugin, a client or a peer, goes through
//! [`Core::route`]. A message to another node goes on the peer link to it (corked when sent
//! from a version's executor); a message to an actor here goes to its version's executor (or
//! straight into the executor's local queue when sent by an actor of the same version), to a
//! client connection, or to a pending actor's buffer. What cannot be delivered goes back to its
//! sender as `PoisonMessage`.

use tokio::sync::mpsc;
use troupe_actor_abi::message::{Address, ExitReason, Incoming, Payload, SystemMessage};

use super::core::Core;
use crate::host::effect::{Cmd, Delivery, LocalQueue};
use crate::tables::actors::{ActorRec, Route};
use crate::wire::PeerRequest;

/// How often a message waiting for a create in flight looks for its actor: a create crosses a
/// loopback or LAN link in well under this, so the wait adds little beyond the create's own trip.
const AWAIT_POLL: std::time::Duration = std::time::Duration::from_millis(5);

impl Core {
    /// Registers a client connection's endpoint; messages to it go to `tx`.
    pub fn register_client(&self, tx: mpsc::UnboundedSender<Incoming>) -> Address {
        let id = self.ids.allocate();
        self.actors.insert(id, ActorRec::client(tx));
        self.address(id)
    }

    /// Forgets a client endpoint (its connection closed). Actors it created keep running.
    pub fn unregister_client(&self, addr: &Address) {
        self.actors.remove(addr.id, |_| "the client disconnected".into());
    }

    /// Sends `payload` from `sender` to `to`.
    pub fn send(&self, sender: Option<Address>, to: &Address, payload: Payload) {
        self.route(Incoming { sender, payload }, to, None);
    }

    /// Delivers `msg` to `to`, wherever it is.
    pub(crate) fn route(&self, msg: Incoming, to: &Address, local: Option<&mut LocalQueue<'_>>) {
        if !self.is_local(to) {
            let req = PeerRequest::Deliver { to: to.clone(), msg };
            self.peers.notify_corked(&to.node, req, local.map(|l| &mut l.corked));
            return;
        }
        if let Payload::System(SystemMessage::ChildActorExited { child, reason }) = &msg.payload {
            // A supervised child that failed is restarted instead (see `super::supervise`).
            if self.restart_instead(to.id, child, reason) {
                return;
            }
        }
        // Behind the messages that already wait for this actor's create, if any.
        let Some(msg) = self.awaited.join(to.id, msg) else { return };
        self.route_here(Delivery::Msg(msg), to.id, local)
    }

    /// Delivers `msg` to actor `id` of this node.
    pub(crate) fn route_here(&self, msg: Delivery, id: u64, local: Option<&mut LocalQueue<'_>>) {
        self.deliver_here(msg, id, local, true)
    }

    /// Delivers `msg` to actor `id` of this node; one to an unknown actor another node
    /// allocated may wait for its create (`may_wait`), else it goes back as poison.
    fn deliver_here(&self, msg: Delivery, id: u64, local: Option<&mut LocalQueue<'_>>, may_wait: bool) {
        let local_gen = local.as_ref().map(|l| l.gen);
        match self.actors.route(id, msg, local_gen) {
            Route::Local { msg } => {
                if let Some(l) = local {
                    l.queue.push_back(Cmd::Deliver { id, msg });
                }
            }
            Route::Plugin { host, msg } => {
                if let Err(e) = host.send(Cmd::Deliver { id, msg }) {
                    if let Cmd::Deliver { msg, .. } = e.0 {
                        let details = "its version host has stopped".into();
                        self.poison(msg.into_incoming(), self.address(id), details);
                    }
                }
            }
            Route::Buffered => {}
            Route::Forward { to, msg } => self.route(msg.into_incoming(), &to, local),
            Route::Client { tx, msg } => match local {
                // From a version's executor: held back with its peer frames.
                Some(l) => l.clients.push((tx, msg.into_incoming())),
                None => {
                    let _ = tx.send(msg.into_incoming());
                }
            },
            Route::Unknown { msg, why } if may_wait && why.is_none() && !self.ids.is_ours(id) => {
                self.await_create(id, msg.into_incoming())
            }
            Route::Unknown { msg, why } => {
                let details =
                    why.unwrap_or_else(|| format!("no actor {} exists on this node", self.address(id)));
                self.poison(msg.into_incoming(), self.address(id), details);
            }
        }
    }

    /// A message to actor `id`, which another node allocated and this node does not know (no
    /// actor, no tombstone): its create may still be on its way, on another node's link. It
    /// waits, with any that follow it, until the actor exists or is refused, or for
    /// `dead_after` (a node that sends nothing that long is lost by definition, and the create
    /// with it); then they are routed in order, and what is still unknown goes back as poison.
    fn await_create(&self, id: u64, msg: Incoming) {
        if !self.awaited.start(id, msg) {
            return;
        }
        let Some(me) = self.arc() else { return };
        let deadline = tokio::time::Instant::now() + self.conv.dead_after;
        self.rt.spawn(async move {
            while !me.actors.contains(id)
                && me.actors.tombstone_of(id).is_none()
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(AWAIT_POLL).await;
            }
            while let Some(m) = me.awaited.next(id) {
                me.deliver_here(Delivery::Msg(m), id, None, false);
            }
        });
    }

    /// A message could not be handled by `target`: return it to its sender, unless it is a
    /// runtime message (those are dropped, so that two dead actors cannot bounce forever).
    pub(crate) fn poison(&self, msg: Incoming, target: Address, details: String) {
        match (msg.sender, msg.payload) {
            (Some(sender), payload @ (Payload::Text(_) | Payload::Typed { .. })) => {
                let p = Payload::System(SystemMessage::PoisonMessage {
                    message: Box::new(payload),
                    target,
                    details,
                });
                self.route(Incoming { sender: None, payload: p }, &sender, None);
            }
            (_, payload) => {
                tracing::debug!(%target, "dropped undeliverable message {payload:?}: {details}")
            }
        }
    }

    /// Tells `parent`, wherever it is, that `child` exited and why.
    pub(crate) fn notify_parent(&self, parent: Address, child: Address, reason: ExitReason) {
        let p = Payload::System(SystemMessage::ChildActorExited { child, reason });
        self.route(Incoming { sender: None, payload: p }, &parent, None);
    }

    /// Tells each of `watchers` every update.
    pub(crate) fn notify_watchers(&self, watchers: &[Address], updates: &[Payload]) {
        for w in watchers {
            for u in updates {
                self.route(Incoming { sender: None, payload: u.clone() }, w, None);
            }
        }
    }
}
