//! Links to other nodes: one outgoing TCP connection per peer, speaking the admin protocol.
//!
//! Everything a node sends to one peer goes through one link, in order: a `PeerCreate` always
//! arrives before the messages sent to the actor it creates. One-way requests (`Notify`) carry
//! messages and creates; calls (`Request`) carry fetches, name claims and registrations and are
//! matched to replies by id. The writer feeds every frame already queued before flushing, so a
//! burst of messages shares TCP writes (batched frames).
//!
//! When a link cannot connect or breaks, whatever was queued on it is answered locally: messages
//! come back to their senders as `PoisonMessage`, creates fail with `ChildActorExited` to their
//! parents, calls get an error; and the node is told the peer is unreachable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;

use crate::node::Shared;
use crate::protocol::{self, ClientFrame, Request, Response, ServerFrame};

/// How long connecting to a peer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a call's answer goes.
type Reply = oneshot::Sender<Result<Response, String>>;

pub(crate) enum Outgoing {
    Notify(Request),
    Call { request: Request, reply: Reply },
    Flush(oneshot::Sender<()>),
}

/// The node's links, by peer admin address.
#[derive(Default)]
pub(crate) struct Peers {
    links: Mutex<HashMap<String, mpsc::UnboundedSender<Outgoing>>>,
}

impl Peers {
    fn sender(&self, shared: &Arc<Shared>, addr: &str) -> mpsc::UnboundedSender<Outgoing> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = links.get(addr) {
            if !tx.is_closed() {
                return tx.clone();
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        links.insert(addr.to_string(), tx.clone());
        shared.runtime().spawn(link(Arc::downgrade(shared), addr.to_string(), rx));
        tx
    }

    /// Queues a one-way request to `addr`.
    pub(crate) fn notify(&self, shared: &Arc<Shared>, addr: &str, request: Request) {
        let tx = self.sender(shared, addr);
        if let Err(e) = tx.send(Outgoing::Notify(request)) {
            // The link task ended between lookup and send: answer locally.
            fail(shared, addr, e.0, "the link closed");
        }
    }

    /// Sends a request to `addr` and waits for the reply.
    pub(crate) async fn call(
        &self,
        shared: &Arc<Shared>,
        addr: &str,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, String> {
        let (rtx, rrx) = oneshot::channel();
        let tx = self.sender(shared, addr);
        tx.send(Outgoing::Call { request, reply: rtx }).map_err(|_| format!("no link to {addr}"))?;
        match tokio::time::timeout(timeout, rrx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(format!("the link to {addr} closed")),
            Err(_) => Err(format!("{addr} did not answer within {timeout:?}")),
        }
    }

    /// Waits until everything queued so far was written to every link (or `timeout`).
    pub(crate) async fn flush(&self, timeout: Duration) {
        let txs: Vec<_> = self.links.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let mut acks = Vec::new();
        for tx in txs {
            let (a, r) = oneshot::channel();
            if tx.send(Outgoing::Flush(a)).is_ok() {
                acks.push(r);
            }
        }
        let _ = tokio::time::timeout(timeout, futures::future::join_all(acks)).await;
    }

    /// Drops the link to `addr` (its task ends when its queue is empty).
    pub(crate) fn forget(&self, addr: &str) {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).remove(addr);
    }
}

/// Answers locally for an outgoing item that could not be sent.
fn fail(shared: &Arc<Shared>, addr: &str, item: Outgoing, why: &str) {
    match item {
        Outgoing::Notify(Request::Deliver { to, msg }) => {
            shared.poison(msg, to, format!("its node {addr} is unreachable ({why})"));
        }
        Outgoing::Notify(Request::PeerCreate { id, parent, spec, .. }) => {
            shared.remote_create_unreachable(id, addr, parent, &spec, why);
        }
        Outgoing::Notify(_) => {}
        Outgoing::Call { reply, .. } => {
            let _ = reply.send(Err(format!("{addr} is unreachable ({why})")));
        }
        Outgoing::Flush(ack) => {
            let _ = ack.send(());
        }
    }
}

async fn link(shared: Weak<Shared>, addr: String, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let secret = shared.upgrade().and_then(|s| s.secret.clone());
    let framed = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&addr, secret)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => return drain(&shared, &addr, &mut rx, &e),
        Err(_) => return drain(&shared, &addr, &mut rx, "connect timed out"),
    };
    let (mut sink, mut stream) = framed.split();
    let pending: Arc<Mutex<HashMap<u64, Reply>>> = Arc::default();
    let reader_pending = pending.clone();
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(bytes)) = stream.next().await {
            match protocol::decode::<ServerFrame>(&bytes) {
                Ok(ServerFrame::Reply { id, result }) => {
                    let waiter = reader_pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                    if let Some(w) = waiter {
                        let _ = w.send(result.map_err(|e| e.message));
                    }
                }
                Ok(ServerFrame::ProtocolError { message }) => return format!("the peer refused: {message}"),
                Ok(_) => {}
                Err(e) => return format!("undecodable frame: {e}"),
            }
        }
        "the connection closed".to_string()
    });
    let mut next_id = 1u64;
    let why = loop {
        let first = tokio::select! {
            item = rx.recv() => item,
            why = &mut reader => break why.unwrap_or_else(|e| e.to_string()),
        };
        let Some(first) = first else {
            break String::new();
        };
        // Feed everything already queued, then flush once: batched frames.
        let mut item = Some(first);
        let mut acks = Vec::new();
        let mut failed = None;
        while let Some(it) = item.take() {
            let frame = match it {
                Outgoing::Notify(request) => Some(ClientFrame::Notify { request }),
                Outgoing::Call { request, reply } => {
                    let id = next_id;
                    next_id += 1;
                    pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, reply);
                    Some(ClientFrame::Request { id, request })
                }
                Outgoing::Flush(ack) => {
                    acks.push(ack);
                    None
                }
            };
            if let Some(frame) = frame {
                if let Err(e) = sink.feed(protocol::encode(&frame)).await {
                    failed = Some(e.to_string());
                    break;
                }
            }
            item = rx.try_recv().ok();
        }
        if failed.is_none() {
            if let Err(e) = sink.flush().await {
                failed = Some(e.to_string());
            }
        }
        for a in acks {
            let _ = a.send(());
        }
        if let Some(f) = failed {
            break f;
        }
    };
    reader.abort();
    for (_, w) in pending.lock().unwrap_or_else(|p| p.into_inner()).drain() {
        let _ = w.send(Err(format!("the link to {addr} broke: {why}")));
    }
    if !why.is_empty() {
        drain(&shared, &addr, &mut rx, &why);
    }
}

/// The link is dead: answer everything queued, forget the link, tell the node.
fn drain(shared: &Weak<Shared>, addr: &str, rx: &mut mpsc::UnboundedReceiver<Outgoing>, why: &str) {
    let Some(shared) = shared.upgrade() else {
        return;
    };
    shared.peers().forget(addr);
    rx.close();
    while let Ok(item) = rx.try_recv() {
        fail(&shared, addr, item, why);
    }
    shared.peer_unreachable(addr, why);
}

async fn connect(
    addr: &str,
    secret: Option<crate::signing::Secret>,
) -> Result<Framed<tokio::net::TcpStream, tokio_util::codec::LengthDelimitedCodec>, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::new(stream, protocol::codec());
    protocol::client_handshake(&mut framed, "troupe-node peer link", secret.as_ref()).await?;
    Ok(framed)
}
