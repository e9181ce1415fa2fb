//! The admin server: one TCP port per node, serving clients with the [`crate::protocol`].
//!
//! Every connection gets its own task and its own client address (so actors can answer it).
//! A connection that does not say hello within [`HELLO_TIMEOUT`], speaks another protocol
//! version, sends garbage or an oversized frame gets a `ProtocolError` frame and is closed; the
//! node keeps serving everyone else. Requests on one connection are handled concurrently (a slow
//! load does not hold up a status request) and answered by id.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::codec::Framed;
use troupe_actor_abi::message::Incoming;

use crate::node::{Node, Shared};
use crate::protocol::{self, ClientFrame, ErrorReply, Request, Response, ServerFrame, PROTOCOL_VERSION};

/// How long a new connection may take to say hello: long enough for any honest client on a
/// loaded machine, short enough that half-open connections do not pile up.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful stop waits for actors to exit and versions to unload.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves `listener` until the node is stopped (by a `Stop` request, SIGTERM or SIGINT).
pub async fn serve(node: Node, listener: TcpListener) -> std::io::Result<()> {
    let done = Arc::new(Notify::new());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let node = node.clone();
                    let done = done.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection(node, stream, done).await {
                            tracing::debug!(%peer, "connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the ones we have.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = done.notified() => break,
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping");
                let _ = node.shared().stop(STOP_TIMEOUT).await;
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping");
                let _ = node.shared().stop(STOP_TIMEOUT).await;
                break;
            }
        }
    }
    Ok(())
}

async fn connection(node: Node, stream: TcpStream, done: Arc<Notify>) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, protocol::codec());
    let shared = node.shared().clone();
    let peer = framed.get_ref().peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    // The node speaks first: a fresh nonce, and whether a proof of the secret is required.
    let mut nonce = vec![0u8; protocol::NONCE_BYTES];
    if let Err(e) = crate::signing::random_bytes(&mut nonce) {
        return reject(&mut framed, format!("the node cannot make a nonce: {e}")).await;
    }
    let challenge = ServerFrame::Challenge {
        protocol: PROTOCOL_VERSION,
        nonce: nonce.clone(),
        auth_required: shared.secret.is_some(),
    };
    if framed.send(protocol::encode(&challenge)).await.is_err() {
        return Err("closed before the challenge".into());
    }
    // Then exactly one small frame: the hello. Nothing else is read before it checks out.
    let first = match tokio::time::timeout(HELLO_TIMEOUT, framed.next()).await {
        Err(_) => return reject(&mut framed, "no hello within 10s".into()).await,
        Ok(None) => return Err("closed before hello".into()),
        Ok(Some(Err(e))) => return reject(&mut framed, format!("bad frame: {e}")).await,
        Ok(Some(Ok(bytes))) => bytes,
    };
    let (agent, auth) = match protocol::decode::<ClientFrame>(&first) {
        Ok(ClientFrame::Hello { protocol: v, agent, auth }) if v == PROTOCOL_VERSION => (agent, auth),
        Ok(ClientFrame::Hello { protocol: v, .. }) => {
            return reject(
                &mut framed,
                format!("protocol version {v} is not supported; this node speaks {PROTOCOL_VERSION}"),
            )
            .await
        }
        Ok(_) => return reject(&mut framed, "the first frame must be a hello".into()).await,
        Err(e) => return reject(&mut framed, format!("not a troupe hello: {e}")).await,
    };
    let mut server_proof = None;
    if let Some(secret) = &shared.secret {
        let verified = auth.as_ref().is_some_and(|a| {
            a.client_nonce.len() == protocol::NONCE_BYTES
                && secret.verify(&[b"client", &nonce, &a.client_nonce], &a.mac)
        });
        if !verified {
            let why = if auth.is_none() {
                "no proof of the shared secret"
            } else {
                "a wrong proof of the shared secret"
            };
            tracing::warn!(%peer, %agent, "refused a connection: {why}");
            return reject(
                &mut framed,
                "authentication failed: this node requires the convention's shared secret".into(),
            )
            .await;
        }
        if let Some(a) = &auth {
            server_proof = Some(secret.mac(&[b"node", &nonce, &a.client_nonce]));
        }
    }
    tracing::debug!(%peer, %agent, "client connected");
    framed.codec_mut().set_max_frame_length(protocol::MAX_FRAME_BYTES);
    let (dtx, mut drx) = mpsc::unbounded_channel::<Incoming>();
    let me = shared.register_client(dtx);
    let hello = ServerFrame::Hello {
        protocol: PROTOCOL_VERSION,
        node: shared.addr.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        client: me.clone(),
        server_proof,
    };
    let (mut sink, mut stream) = framed.split();
    if let Err(e) = sink.send(protocol::encode(&hello)).await {
        shared.unregister_client(&me);
        return Err(e.to_string());
    }
    let (otx, mut orx) = mpsc::unbounded_channel::<(ServerFrame, Option<oneshot::Sender<()>>)>();
    // The writer feeds every frame already queued (replies and messages to this client), then
    // flushes once: a burst shares TCP writes.
    let writer = tokio::spawn(async move {
        enum Out {
            Frame((ServerFrame, Option<oneshot::Sender<()>>)),
            Deliver(Incoming),
        }
        const BATCH: usize = 256;
        'run: loop {
            let first = tokio::select! {
                Some(f) = orx.recv() => Out::Frame(f),
                Some(m) = drx.recv() => Out::Deliver(m),
                else => break,
            };
            let (mut next, mut acks, mut closing, mut fed) = (Some(first), Vec::new(), false, 0);
            while let Some(item) = next.take() {
                let frame = match item {
                    Out::Frame((frame, ack)) => {
                        closing = matches!(frame, ServerFrame::ProtocolError { .. });
                        acks.extend(ack);
                        protocol::encode(&frame)
                    }
                    Out::Deliver(m) => protocol::encode(&ServerFrame::Deliver(m)),
                };
                if sink.feed(frame).await.is_err() {
                    break 'run;
                }
                fed += 1;
                if closing || fed >= BATCH {
                    break;
                }
                next = match orx.try_recv() {
                    Ok(f) => Some(Out::Frame(f)),
                    Err(_) => drx.try_recv().ok().map(Out::Deliver),
                };
            }
            if sink.flush().await.is_err() {
                break;
            }
            for ack in acks {
                let _ = ack.send(());
            }
            if closing {
                break;
            }
        }
    });
    // The member that registers over this connection, if any (see `member_link_closed`).
    let mut registered: Option<String> = None;
    let result = loop {
        match stream.next().await {
            None => break Ok(()),
            Some(Err(e)) => {
                let _ = otx.send((ServerFrame::ProtocolError { message: format!("bad frame: {e}") }, None));
                break Err(format!("bad frame: {e}"));
            }
            Some(Ok(bytes)) => match protocol::decode::<ClientFrame>(&bytes) {
                Ok(ClientFrame::Notify { request }) => notify(&shared, request),
                // A send completes at once: answered here, without a task of its own.
                Ok(ClientFrame::Request { id, request: Request::Send { to, payload } }) => {
                    shared.send(Some(me.clone()), &to, payload);
                    let _ = otx.send((ServerFrame::Reply { id, result: Ok(Response::Sent) }, None));
                }
                Ok(ClientFrame::Request { id, request }) => {
                    if let Request::Register(info) = &request {
                        registered.get_or_insert_with(|| info.node.clone());
                    }
                    let shared = shared.clone();
                    let otx = otx.clone();
                    let me = me.clone();
                    let done = done.clone();
                    tokio::spawn(async move {
                        let stop = matches!(request, Request::Stop);
                        let result = handle(&shared, &me, request).await;
                        let (ack_tx, ack_rx) = oneshot::channel();
                        let _ = otx.send((ServerFrame::Reply { id, result }, Some(ack_tx)));
                        if stop {
                            // Let the reply reach the client before the process exits.
                            let _ = tokio::time::timeout(Duration::from_secs(2), ack_rx).await;
                            done.notify_one();
                        }
                    });
                }
                Ok(ClientFrame::Hello { .. }) => {
                    let _ =
                        otx.send((ServerFrame::ProtocolError { message: "hello sent twice".into() }, None));
                    break Err("second hello".into());
                }
                Err(e) => {
                    let _ = otx.send((
                        ServerFrame::ProtocolError { message: format!("undecodable request: {e}") },
                        None,
                    ));
                    break Err(format!("undecodable request: {e}"));
                }
            },
        }
    };
    // The client is gone: no more deliveries. The writer sends what is queued, then ends
    // (it ends when both its queues are closed), and with it the socket.
    drop(otx);
    shared.unregister_client(&me);
    let _ = writer.await;
    if let Some(member) = registered {
        shared.member_link_closed(&member);
    }
    result
}

async fn reject(
    framed: &mut Framed<TcpStream, tokio_util::codec::LengthDelimitedCodec>,
    message: String,
) -> Result<(), String> {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        framed.send(protocol::encode(&ServerFrame::ProtocolError { message: message.clone() })),
    )
    .await;
    Err(message)
}

async fn handle(
    shared: &Arc<Shared>,
    me: &troupe_actor_abi::message::Address,
    request: Request,
) -> Result<Response, ErrorReply> {
    match request {
        Request::Status => Ok(Response::Status(Box::new(shared.status()))),
        Request::Load { zip, info } => shared.load(zip, info).await,
        Request::Unload { hash, grace_ms } => shared.unload(&hash, grace_ms.map(Duration::from_millis)).await,
        Request::Create { spec } => shared.create_for_client(spec).await,
        Request::Send { to, payload } => {
            shared.send(Some(me.clone()), &to, payload);
            Ok(Response::Sent)
        }
        Request::ChangeCapability { add, name } => shared.change_capability(add, &name),
        Request::Stop => shared.stop(STOP_TIMEOUT).await,
        Request::Register(info) => Ok(shared.handle_register(info)),
        Request::Deploy { zip, info, group, keep, grace_ms } => {
            shared.deploy(zip, info, group, keep, grace_ms).await
        }
        Request::Rollback { group } => shared.rollback(group).await,
        Request::GroupActivate { group, hash, keep, grace_ms } => {
            shared.activate(group, hash, keep, grace_ms).await
        }
        Request::FetchSource { hash } => shared.serve_source(&hash).await,
        Request::ClaimName { name, candidate } => {
            Ok(Response::Name { holder: shared.handle_claim(&name, candidate) })
        }
        Request::Deregister { .. }
        | Request::Deliver { .. }
        | Request::PeerCreate { .. }
        | Request::ReleaseName { .. }
        | Request::UnloadSpread { .. } => {
            notify(shared, request);
            Ok(Response::Done)
        }
    }
}

/// One-way requests, handled in the order they arrive on the connection: this is what keeps a
/// peer's create ahead of the messages to the created actor.
fn notify(shared: &Arc<Shared>, request: Request) {
    match request {
        Request::Deliver { to, msg } => {
            if shared.is_local_address(&to) {
                shared.deliver_from_peer(msg, &to);
            }
        }
        Request::PeerCreate { id, parent, spec, source } => shared.peer_create(id, parent, spec, source),
        Request::ReleaseName { name, holder } => shared.handle_release(&name, &holder),
        Request::Deregister { node } => {
            shared.node_lost(&node, troupe_actor_abi::message::ConventionChange::Left)
        }
        Request::UnloadSpread { hash, grace_ms } => {
            let shared = shared.clone();
            tokio::spawn(async move {
                // A node without the version has nothing to do.
                let _ = shared.unload_local(&hash, grace_ms.map(Duration::from_millis)).await;
            });
        }
        other => {
            // Anything else sent one-way: run it, there is nobody to answer.
            let shared = shared.clone();
            let me = troupe_actor_abi::message::Address {
                node: shared.addr.clone(),
                id: troupe_actor_abi::message::ADMIN_ID,
            };
            tokio::spawn(async move {
                let _ = handle(&shared, &me, other).await;
            });
        }
    }
}
