//! The admin server: one TCP port per node, serving clients and peers with the admin protocol
//! ([`crate::wire`]).
//!
//! Every connection gets its own task and its own client address (so actors can answer it).
//! Until its hello it holds a place among its source's connections before their hello
//! ([`gate::HelloSlot`]); a newer one of a source at its share closes it.
//! A connection that does not say hello within [`HELLO_TIMEOUT`], speaks another protocol
//! version, sends garbage or an oversized frame gets a `ProtocolError` frame and is closed; the
//! node keeps serving everyone else. Requests on one connection are handled concurrently (a slow
//! load does not hold up a status request) and answered by id; one-way requests are handled in
//! the order they arrive. What each request does is in [`super::dispatch`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::codec::Framed;
use troupe_actor_abi::message::{Address, Incoming};

use super::dispatch::{self, STOP_TIMEOUT};
use super::gate::{self, AcceptBackoff, Gate};
use crate::model::log_limit::Repeats;
use crate::node::Node;
use crate::runtime::core::Core;
use crate::wire::{
    self as protocol, ClientFrame, PeerRequest, Request, Response, ServerFrame, PROTOCOL_VERSION,
};

/// How long a new connection may take to say hello. An honest client answers the challenge at
/// once (with a shared secret, after a Noise handshake of two more messages): milliseconds,
/// and 5 s is still a thousand times that on a loaded machine. It was 10 s: a connection that
/// never says hello holds its place under the cap and its source's share
/// ([`gate::HelloSlot`]) that long.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// The warnings about connections that did not prove the secret: anyone who reaches the port
/// can repeat them without bound.
static UNPROVEN: Repeats = Repeats::new();

type Conn = protocol::noise::Conn;
/// A frame for the connection's writer, and who waits until it is written.
type Outbound = (ServerFrame, Option<oneshot::Sender<()>>);

/// Serves `listener` until the node is stopped (by a `Stop` request, SIGTERM or SIGINT).
pub async fn serve(node: Node, listener: TcpListener) -> std::io::Result<()> {
    let done = Arc::new(Notify::new());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let limits = node.connections();
    let gate = Gate::new(&limits);
    let mut backoff = AcceptBackoff::new();
    let mut trim = tokio::time::interval(gate::TRIM_EVERY);
    trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.reset();
                    let Some((stream, ticket, hello)) = gate.admit(stream, peer.ip()) else { continue };
                    let core = node.core().clone();
                    let done = done.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection(core, stream, done, limits.idle_timeout, hello).await {
                            tracing::debug!(%peer, "connection ended: {e}");
                        }
                        drop(ticket);
                    });
                }
                // Out of file descriptors and the like: serve the ones we have for a moment.
                Err(e) => tokio::time::sleep(backoff.failed(&e)).await,
            },
            _ = trim.tick() => gate.trim_after_burst(),
            _ = done.notified() => break,
            // An actor's system call stopped the node.
            _ = node.core().shutdown.notified() => break,
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping");
                node.core().stop(STOP_TIMEOUT).await;
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping");
                node.core().stop(STOP_TIMEOUT).await;
                break;
            }
        }
    }
    Ok(())
}

async fn connection(
    core: Arc<Core>,
    stream: TcpStream,
    done: Arc<Notify>,
    idle: Option<Duration>,
    hello_slot: gate::HelloSlot,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let progress = Arc::new(AtomicUsize::new(0));
    // No buffer until bytes arrive: an idle connection holds none.
    let mut framed = Framed::with_capacity(
        stream,
        protocol::SealedCodec::new(protocol::codec().progress(progress.clone())),
        0,
    );
    // A newer connection of the same source may take this one's place until it said hello.
    let shaken = tokio::select! {
        proof = handshake(&core, &mut framed) => Some(proof),
        () = hello_slot.evicted() => None,
    };
    let server_proof = match shaken {
        Some(proof) => proof,
        None => Err(reject(&mut framed, hello_slot.why()).await),
    };
    drop(hello_slot);
    let server_proof = server_proof?;
    framed.codec_mut().set_max_frame_length(protocol::MAX_FRAME_BYTES);
    let (dtx, drx) = mpsc::unbounded_channel::<Incoming>();
    let me = core.register_client(dtx);
    let hello = ServerFrame::Hello {
        protocol: PROTOCOL_VERSION,
        node: core.addr.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        client: me.clone(),
        server_proof,
        idle_timeout_ms: idle.map(|d| d.as_millis() as u64),
    };
    let (mut sink, stream) = framed.split();
    if let Err(e) = sink.send(protocol::encode(&hello)).await {
        core.unregister_client(&me);
        return Err(e.to_string());
    }
    let (otx, orx) = mpsc::unbounded_channel::<Outbound>();
    let writer = tokio::spawn(write_frames(sink, orx, drx));
    let mut session = Session {
        core: core.clone(),
        me: me.clone(),
        otx,
        done,
        registered: None,
        peer: false,
        idle,
        progress,
    };
    let result = session.read_frames(stream).await;
    // The client is gone: no more deliveries. The writer sends what is queued, then ends
    // (it ends when both its queues are closed), and with it the socket.
    let registered = session.registered.take();
    drop(session);
    core.unregister_client(&me);
    let _ = writer.await;
    if let Some(member) = registered {
        core.member_link_closed(&member);
    }
    result
}

/// The node speaks first (a fresh nonce, and whether a proof of the secret is required), then
/// reads exactly one small frame: the hello. Returns the node's proof for the client.
async fn handshake(core: &Core, framed: &mut Conn) -> Result<Option<Vec<u8>>, String> {
    let mut nonce = vec![0u8; protocol::NONCE_BYTES];
    if let Err(e) = crate::store::signing::random_bytes(&mut nonce) {
        return Err(reject(framed, format!("the node cannot make a nonce: {e}")).await);
    }
    let challenge = ServerFrame::Challenge {
        protocol: PROTOCOL_VERSION,
        nonce: nonce.clone(),
        auth_required: core.secret.is_some(),
    };
    if framed.send(protocol::encode(&challenge)).await.is_err() {
        return Err("closed before the challenge".into());
    }
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    if let Some(secret) = &core.secret {
        encrypt(framed, secret, &nonce, deadline).await?;
    }
    let first = match tokio::time::timeout_at(deadline, framed.next()).await {
        Err(_) => return Err(reject(framed, no_hello()).await),
        Ok(None) => return Err("closed before hello".into()),
        Ok(Some(Err(e))) => return Err(reject(framed, format!("bad frame: {e}")).await),
        Ok(Some(Ok(bytes))) => bytes,
    };
    let (agent, auth) = match protocol::decode::<ClientFrame>(&first) {
        Ok(ClientFrame::Hello { protocol: v, agent, auth }) if v == PROTOCOL_VERSION => (agent, auth),
        Ok(ClientFrame::Hello { protocol: v, .. }) => {
            let why = format!(
                "protocol version {v} is not supported: this node speaks protocol {PROTOCOL_VERSION}, you speak {v} — use a troupe of the node's version"
            );
            return Err(reject(framed, why).await);
        }
        Ok(_) => return Err(reject(framed, "the first frame must be a hello".into()).await),
        Err(e) => return Err(reject(framed, format!("not a troupe hello: {e}")).await),
    };
    let Some(secret) = &core.secret else {
        tracing::debug!(%agent, "client connected");
        return Ok(None);
    };
    let proof = auth.as_ref().filter(|a| {
        a.client_nonce.len() == protocol::NONCE_BYTES
            && secret.verify(&[b"client", &nonce, &a.client_nonce], &a.mac)
    });
    let Some(proof) = proof else {
        let why = if auth.is_none() {
            "no proof of the shared secret"
        } else {
            "a wrong proof of the shared secret"
        };
        let peer = framed.get_ref().peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
        if let Some(held) = UNPROVEN.admit_now() {
            tracing::warn!(%peer, %agent, "refused a connection: {why}{held}");
        }
        let msg = "authentication failed: this node requires the convention's shared secret";
        return Err(reject(framed, msg.into()).await);
    };
    tracing::debug!(%agent, "client connected");
    Ok(Some(secret.mac(&[b"node", &nonce, &proof.client_nonce])))
}

/// With a shared secret: the Noise handshake right after the challenge; then the connection is
/// sealed (see [`crate::wire::noise`]). A client that does not prove the secret is logged and
/// refused in plaintext, having been sent nothing but the challenge.
async fn encrypt(
    framed: &mut Conn,
    secret: &crate::store::signing::Secret,
    nonce: &[u8],
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    use protocol::noise::{respond, Refusal};
    match tokio::time::timeout_at(deadline, respond(framed, secret, nonce)).await {
        Err(_) => Err(reject(framed, no_hello()).await),
        Ok(Ok(())) => Ok(()),
        Ok(Err(Refusal::Closed(why))) => Err(why),
        Ok(Err(Refusal::BadFrame(why))) => Err(reject(framed, why).await),
        Ok(Err(Refusal::Unproven(why))) => {
            let peer = framed.get_ref().peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
            if let Some(held) = UNPROVEN.admit_now() {
                tracing::warn!(%peer, "refused a connection: {why}{held}");
            }
            let msg = "authentication failed: this node requires the convention's shared secret";
            Err(reject(framed, msg.into()).await)
        }
    }
}

/// What a connection that did not say hello in time is told.
fn no_hello() -> String {
    format!("no hello within {HELLO_TIMEOUT:?}")
}

/// Sends a `ProtocolError` (briefly: the client may not read) and returns its message.
async fn reject(framed: &mut Conn, message: String) -> String {
    let frame = protocol::encode(&ServerFrame::ProtocolError { message: message.clone() });
    let _ = tokio::time::timeout(Duration::from_secs(1), framed.send(frame)).await;
    message
}

/// The connection's writer: feeds every frame already queued (replies and messages to this
/// client), then flushes once, so a burst shares TCP writes.
async fn write_frames(
    mut sink: SplitSink<Conn, bytes::Bytes>,
    mut orx: mpsc::UnboundedReceiver<Outbound>,
    mut drx: mpsc::UnboundedReceiver<Incoming>,
) {
    enum Out {
        Frame(Outbound),
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
}

/// One authenticated connection's reading side.
struct Session {
    core: Arc<Core>,
    /// The connection's own address.
    me: Address,
    /// To the writer.
    otx: mpsc::UnboundedSender<Outbound>,
    /// Signalled once a `Stop` was answered.
    done: Arc<Notify>,
    /// The member that registers over this connection, if any (see `member_link_closed`).
    registered: Option<String>,
    /// Another node's link (it sent a peer request): never closed as idle.
    peer: bool,
    /// A client connection silent this long is closed.
    idle: Option<Duration>,
    /// Bytes received so far (from the codec; it only grows): a slow upload is not silence.
    progress: Arc<AtomicUsize>,
}

impl Session {
    fn refuse(&self, message: String) -> Result<(), String> {
        let _ = self.otx.send((ServerFrame::ProtocolError { message: message.clone() }, None));
        Err(message)
    }

    /// The next frame, or the refusal of a client that stayed silent for the idle timeout: closed
    /// `idle` after the wait began when no byte arrived meanwhile; a frame still arriving gets
    /// another `idle` each time bytes came during the last.
    async fn next_frame(
        &self,
        stream: &mut SplitStream<Conn>,
    ) -> Result<Option<Result<BytesMut, std::io::Error>>, String> {
        let Some(idle) = self.idle else { return Ok(stream.next().await) };
        let mut seen = self.progress.load(Ordering::Relaxed);
        loop {
            if self.peer {
                return Ok(stream.next().await);
            }
            if let Ok(next) = tokio::time::timeout(idle, stream.next()).await {
                return Ok(next);
            }
            let now = self.progress.load(Ordering::Relaxed);
            if now == seen {
                let why = format!(
                    "closed: nothing was sent on this connection for {idle:?} (the node's --idle-timeout)"
                );
                return self.refuse(why).map(|()| None);
            }
            seen = now;
        }
    }

    async fn read_frames(&mut self, mut stream: SplitStream<Conn>) -> Result<(), String> {
        loop {
            let bytes = match self.next_frame(&mut stream).await? {
                None => return Ok(()),
                Some(Err(e)) => return self.refuse(format!("bad frame: {e}")),
                Some(Ok(bytes)) => bytes,
            };
            match protocol::decode::<ClientFrame>(&bytes) {
                Ok(ClientFrame::Notify { request }) => dispatch::notify(&self.core, request),
                Ok(ClientFrame::Keepalive) => {}
                Ok(ClientFrame::PeerNotify { request }) => {
                    self.peer = true;
                    dispatch::notify_peer(&self.core, request)
                }
                // A send completes at once: answered here, without a task of its own.
                Ok(ClientFrame::Request { id, request: Request::Send { to, payload } }) => {
                    self.core.send(Some(self.me.clone()), &to, payload);
                    let _ = self.otx.send((ServerFrame::Reply { id, result: Ok(Response::Sent) }, None));
                }
                Ok(ClientFrame::Request { id, request }) => self.request(id, request),
                Ok(ClientFrame::PeerCall { id, request }) => self.peer_call(id, request),
                Ok(ClientFrame::Hello { .. }) => return self.refuse("hello sent twice".into()),
                Err(e) => return self.refuse(format!("undecodable request: {e}")),
            }
        }
    }

    /// A client request, handled on a task of its own and answered by id.
    fn request(&self, id: u64, request: Request) {
        let (core, otx, me, done) = (self.core.clone(), self.otx.clone(), self.me.clone(), self.done.clone());
        tokio::spawn(async move {
            let stop = matches!(request, Request::Stop);
            let result = dispatch::handle(&core, &me, request).await;
            let (ack_tx, ack_rx) = oneshot::channel();
            let _ = otx.send((ServerFrame::Reply { id, result }, Some(ack_tx)));
            if stop {
                // Let the reply reach the client before the process exits.
                let _ = tokio::time::timeout(Duration::from_secs(2), ack_rx).await;
                done.notify_one();
            }
        });
    }

    /// A call from another node, handled on a task of its own and answered by id.
    fn peer_call(&mut self, id: u64, request: PeerRequest) {
        self.peer = true;
        if let PeerRequest::Register(info) = &request {
            self.registered.get_or_insert_with(|| info.node.clone());
        }
        let (core, otx) = (self.core.clone(), self.otx.clone());
        tokio::spawn(async move {
            let result = dispatch::handle_peer(&core, request).await;
            let _ = otx.send((ServerFrame::Reply { id, result }, None));
        });
    }
}

#[cfg(test)]
mod tests;
