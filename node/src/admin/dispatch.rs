//! What the admin server does with each request: client requests ([`handle`]) and requests
//! from other nodes ([`handle_peer`], [`notify_peer`]). This is the edge where the core's typed
//! errors become [`ErrorReply`]s, once, by their [`Coded`] codes.

use std::sync::Arc;
use std::time::Duration;

use troupe_actor_abi::message::{Address, ConventionChange};

use crate::runtime::core::Core;
use crate::wire::{Coded, ErrorReply, PeerRequest, Request, Response, UpgradeReport};

/// How long a graceful stop waits for actors to exit and versions to unload.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The error of a core operation, as it travels.
fn reply<E: Coded>(r: Result<Response, E>) -> Result<Response, ErrorReply> {
    r.map_err(|e| e.reply())
}

/// Handles a client request; `me` is the client connection's address.
pub(crate) async fn handle(core: &Arc<Core>, me: &Address, request: Request) -> Result<Response, ErrorReply> {
    match request {
        Request::Status => Ok(Response::Status(Box::new(core.status()))),
        Request::Load { zip, info } => reply(core.load(zip, info).await),
        Request::Unload { hash, grace_ms } => {
            reply(core.unload(&hash, grace_ms.map(Duration::from_millis)).await)
        }
        Request::Create { spec } => reply(core.create_for_client(spec).await),
        Request::Send { to, payload } => {
            core.send(Some(me.clone()), &to, payload);
            Ok(Response::Sent)
        }
        Request::ChangeCapability { add, name } => reply(core.change_capability(add, &name)),
        Request::Stop => Ok(core.stop(STOP_TIMEOUT).await),
        Request::Deploy { zip, info, group, keep, grace_ms, migrate } => {
            reply(core.deploy(zip, info, group, keep, grace_ms, migrate).await)
        }
        Request::Upgrade { from, to, options } => {
            reply(core.upgrade(&from, &to, options).await.map(Response::Upgraded))
        }
        Request::Rollback { group } => reply(core.rollback(group).await),
        Request::Observe { log_from } => Ok(Response::Observed(Box::new(core.observe(log_from).await))),
    }
}

/// Handles a call from another node.
pub(crate) async fn handle_peer(core: &Arc<Core>, request: PeerRequest) -> Result<Response, ErrorReply> {
    match request {
        PeerRequest::Register(info) => Ok(core.handle_register(info)),
        PeerRequest::GroupActivate { group, hash, keep, grace_ms } => {
            Ok(core.activate(group, hash, keep, grace_ms))
        }
        PeerRequest::GroupRollback { group } => reply(core.roll_back(group)),
        PeerRequest::FetchSource { hash } => reply(core.serve_source(&hash).await),
        PeerRequest::UpgradeHere { upgrade, from, to, options, hold, source } => {
            let node = core.upgrade_here(upgrade, &from, &to, &options, hold, source).await;
            Ok(Response::Upgraded(UpgradeReport { from, to, nodes: vec![node], rolled_back: false }))
        }
        PeerRequest::UpgradeDecide { upgrade, commit } => {
            let node = core.decide_upgrade(upgrade, commit);
            Ok(Response::Upgraded(UpgradeReport { nodes: vec![node], ..UpgradeReport::default() }))
        }
        PeerRequest::ClaimName { name, candidate } => Ok(core.handle_claim(&name, candidate).await),
        one_way => {
            notify_peer(core, one_way);
            Ok(Response::Done)
        }
    }
}

/// One-way requests from other nodes, handled in the order they arrive on the connection:
/// this is what keeps a peer's create ahead of the messages to the created actor.
pub(crate) fn notify_peer(core: &Arc<Core>, request: PeerRequest) {
    match request {
        PeerRequest::Deliver { to, msg } => {
            if core.is_local(&to) {
                core.route(msg, &to, None);
            } else {
                // A peer's routing bug: never forwarded, so two nodes cannot bounce a message.
                tracing::warn!(%to, "dropped a message a peer sent here for another node");
            }
        }
        PeerRequest::PeerCreate { id, parent, spec, source, hold } => {
            core.peer_create(id, parent, spec, source, hold)
        }
        PeerRequest::Held { id, outcome } => core.held_decided(id, outcome),
        PeerRequest::NameClash { name, loser, kept } => core.lose_name(&name, loser, kept),
        PeerRequest::Fenced { incarnation } => {
            if incarnation == core.incarnation() {
                core.fence();
            }
        }
        PeerRequest::ReleaseName { name, holder } => core.handle_release(&name, &holder),
        PeerRequest::Deregister { node } => core.node_lost(&node, ConventionChange::Left),
        PeerRequest::UnloadSpread { hash, grace_ms } => {
            let core = core.clone();
            tokio::spawn(async move {
                // A node without the version has nothing to do.
                let _ = core.unload_local(&hash, grace_ms.map(Duration::from_millis)).await;
            });
        }
        call => {
            // A call sent one-way: run it, there is nobody to answer.
            let core = core.clone();
            tokio::spawn(async move {
                let _ = handle_peer(&core, call).await;
            });
        }
    }
}

/// A client request sent one-way: run it, there is nobody to answer.
pub(crate) fn notify(core: &Arc<Core>, request: Request) {
    let core = core.clone();
    let me = core.address(troupe_actor_abi::message::ADMIN_ID);
    tokio::spawn(async move {
        let _ = handle(&core, &me, request).await;
    });
}
