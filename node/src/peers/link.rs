//! Links to other nodes: one outgoing TCP connection per peer, speaking the admin protocol.
//!
//! Everything a node sends to one peer goes through one link, in order: a `PeerCreate` always
//! arrives before the messages sent to the actor it creates. One-way requests (`Notify`) carry
//! messages and creates; calls (`Request`) carry fetches, name claims and registrations and are
//! matched to replies by id.
//!
//! Each link has an **outbox**: the encoded frames not yet written, behind one mutex. Whoever
//! queues a frame on an idle, connected link writes it to the socket at once, from its own
//! thread, without waking anyone (a non-blocking write; loopback and LAN sockets almost always
//! take it whole). Only what the socket does not take waits in the outbox for the link's task,
//! which writes it when the socket is writable again. A version executor *corks* its sends:
//! it queues them without writing, and writes each touched link when it runs out of queued
//! work (or after a few dozen calls or 100 µs): a burst of messages shares TCP writes (batched
//! frames), and a single reply costs one `write` and no thread hop. Anyone else's write to a
//! link also writes what was corked on it.
//!
//! When a link cannot connect or breaks, whatever was queued on it is answered locally: messages
//! come back to their senders as `PoisonMessage`, creates fail with `ChildActorExited` to their
//! parents, calls get an error; and the node is told the peer is unreachable. When the node
//! drops a link ([`Peers::forget`]: the peer left or was declared lost), the same happens with
//! the node's reason, and nobody is told. Replies come back in the order the peer sends them, so
//! a call may wait behind megabytes of earlier answers: its timeout says whether bytes kept
//! arriving meanwhile (a busy peer, not a silent one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use crate::wire::seal::{SealedCodec, Sealer};
use futures::StreamExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::oneshot;
use tokio_util::codec::FramedRead;

use super::outbox::{Link, LinkState, Outgoing};
use super::{LinkError, LinkEvents};
use crate::store::signing::Secret;
use crate::wire::{self as protocol, PeerRequest, Response, ServerFrame};

/// How long connecting to a peer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The node's links, by peer admin address.
pub(crate) struct Peers {
    inner: Arc<Inner>,
}

/// What the links' tasks share with [`Peers`].
struct Inner {
    links: Mutex<HashMap<String, Arc<Link>>>,
    rt: tokio::runtime::Handle,
    /// The convention's shared secret, proved on every connection out.
    secret: Option<Secret>,
    /// The node, told what could not be delivered (weak: links never keep a node alive).
    events: Weak<dyn LinkEvents>,
}

impl Inner {
    fn links(&self) -> MutexGuard<'_, HashMap<String, Arc<Link>>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Links a version executor queued frames on without writing them yet (see the module doc).
pub(crate) type Corked = Vec<Arc<Link>>;

impl Peers {
    /// No links yet; tasks run on `rt`; `events` hears of failures.
    pub(crate) fn new(
        rt: tokio::runtime::Handle,
        secret: Option<Secret>,
        events: Weak<dyn LinkEvents>,
    ) -> Peers {
        Peers { inner: Arc::new(Inner { links: Mutex::default(), rt, secret, events }) }
    }

    fn link(&self, addr: &str) -> Arc<Link> {
        let mut links = self.inner.links();
        if let Some(l) = links.get(addr) {
            if !matches!(l.lock().state, LinkState::Dead) {
                return l.clone();
            }
        }
        let link = Arc::new(Link::new(addr));
        links.insert(addr.to_string(), link.clone());
        self.inner.rt.spawn(run(self.inner.clone(), link.clone()));
        link
    }

    /// Queues a one-way request to `addr`, writing it at once if the link is idle.
    pub(crate) fn notify(&self, addr: &str, request: PeerRequest) {
        self.notify_corked(addr, request, None)
    }

    /// As [`Peers::notify`]; with `cork`, the frame is only queued and the link recorded, to be
    /// written by [`Peers::uncork`].
    pub(crate) fn notify_corked(&self, addr: &str, request: PeerRequest, cork: Option<&mut Corked>) {
        let link = self.link(addr);
        let corked = cork.is_some();
        match link.push(Outgoing::Notify(request), corked) {
            Ok(()) => {
                if let Some(c) = cork {
                    if !c.iter().any(|l| Arc::ptr_eq(l, &link)) {
                        c.push(link);
                    }
                }
            }
            // The link died between lookup and queueing: answer locally.
            Err(item) => fail(&self.inner.events, addr, item, "the link closed"),
        }
    }

    /// Writes what [`Peers::notify_corked`] queued.
    pub(crate) fn uncork(&self, cork: &mut Corked) {
        for link in cork.drain(..) {
            let mut out = link.lock();
            link.write_now(&mut out);
        }
    }

    /// Sends a request to `addr` and waits for the reply.
    pub(crate) async fn call(
        &self,
        addr: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> Result<Response, LinkError> {
        let (rtx, rrx) = oneshot::channel();
        let link = self.link(addr);
        let addr = addr.to_string();
        if link.push(Outgoing::Call { request, reply: rtx }, false).is_err() {
            return Err(LinkError::Unreachable { addr, why: "the link closed".into() });
        }
        let heard = link.heard();
        match tokio::time::timeout(timeout, rrx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(LinkError::Closed { addr }),
            // Answers to other calls kept arriving meanwhile: this one waits behind them, from
            // a peer that is busy, not silent (a heartbeat behind megabytes of fetched zips).
            Err(_) => Err(LinkError::Timeout { addr, after: timeout, busy: link.heard() != heard }),
        }
    }

    /// Waits until everything queued so far was written to every link (or `timeout`).
    pub(crate) async fn flush(&self, timeout: Duration) {
        let links: Vec<_> = self.inner.links().values().cloned().collect();
        let mut acks = Vec::new();
        for link in links {
            let (a, r) = oneshot::channel();
            if link.push(Outgoing::Flush(a), false).is_ok() {
                acks.push(r);
            }
        }
        let _ = tokio::time::timeout(timeout, futures::future::join_all(acks)).await;
    }

    /// Drops the link to `addr` (its task ends once its outbox is written); `why` (the peer
    /// left or was declared lost) is what calls still waiting on it are told.
    pub(crate) fn forget(&self, addr: &str, why: &str) {
        let link = {
            let mut links = self.inner.links();
            let link = links.remove(addr);
            // Recorded before the task can see the link gone from the table (same lock order
            // as `link`: the table, then the outbox).
            if let Some(l) = &link {
                l.lock().dropped = Some(why.to_string());
            }
            link
        };
        if let Some(l) = link {
            l.wake.notify_one();
        }
    }
}

#[cfg(test)]
impl Peers {
    /// What the link to `addr` has read so far (see `Link::heard`).
    pub(super) fn heard(&self, addr: &str) -> Option<(usize, usize)> {
        self.inner.links().get(addr).map(|l| l.heard())
    }
}

/// Answers locally for an outgoing item that could not be sent.
fn fail(events: &Weak<dyn LinkEvents>, addr: &str, item: Outgoing, why: &str) {
    let Some(events) = events.upgrade() else {
        return;
    };
    match item {
        Outgoing::Notify(PeerRequest::Deliver { to, msg }) => {
            events.undelivered(msg, to, format!("its node {addr} is unreachable ({why})"));
        }
        Outgoing::Notify(PeerRequest::PeerCreate { id, parent, spec, .. }) => {
            events.create_unreachable(id, addr, parent, &spec.type_name, why);
        }
        Outgoing::Notify(_) => {}
        Outgoing::Call { reply, .. } => {
            let _ = reply.send(Err(LinkError::Unreachable { addr: addr.to_string(), why: why.to_string() }));
        }
        Outgoing::Flush(ack) => {
            let _ = ack.send(());
        }
    }
}

/// A link's task: connects, hands the socket to the outbox, writes what the socket did not
/// take at once, reads replies; on any failure, answers for everything unsent.
async fn run(inner: Arc<Inner>, link: Arc<Link>) {
    let secret = inner.secret.clone();
    let ended = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&link, secret)).await {
        Ok(Ok((writer, reader, sealer))) => serve(&inner, &link, writer, reader, sealer).await,
        Ok(Err(e)) => Ended::Broke(e),
        Err(_) => Ended::Broke("connect timed out".into()),
    };
    let (unsent, pending) = {
        let mut out = link.lock();
        let unsent = out.take_unsent();
        (unsent, std::mem::take(&mut out.pending))
    };
    let addr = link.addr.clone();
    let (why, error) = match ended {
        Ended::Dropped(why) => (why.clone(), LinkError::Dropped { addr, why }),
        Ended::Broke(why) => (why.clone(), LinkError::Broke { addr, why }),
    };
    for (_, w) in pending {
        let _ = w.send(Err(error.clone()));
    }
    {
        let mut links = inner.links();
        if links.get(&link.addr).is_some_and(|l| Arc::ptr_eq(l, &link)) {
            links.remove(&link.addr);
        }
    }
    for item in unsent {
        fail(&inner.events, &link.addr, item, &why);
    }
    // A link the node dropped on purpose (`forget`) ends quietly.
    if matches!(error, LinkError::Broke { .. }) {
        if let Some(events) = inner.events.upgrade() {
            events.unreachable(&link.addr, &why);
        }
    }
}

/// Why a link's task ended. Both carry a reason for whoever waited on the link: an empty one
/// read "the link to … broke: " (issue 21).
enum Ended {
    /// This node dropped the link on purpose ([`Peers::forget`]), or is gone: nobody is told
    /// the peer is unreachable.
    Dropped(String),
    /// It could not connect, or broke.
    Broke(String),
}

/// The connected link's life; returns why it ended.
async fn serve(
    inner: &Inner,
    link: &Arc<Link>,
    writer: OwnedWriteHalf,
    mut reader: Reader,
    sealer: Option<Sealer>,
) -> Ended {
    let writer = Arc::new(writer);
    {
        let mut out = link.lock();
        // Sealed from the first frame on (encrypted links): before anything is queued.
        out.set_sealer(sealer);
        if let LinkState::Connecting(items) =
            std::mem::replace(&mut out.state, LinkState::Ready(writer.clone()))
        {
            for item in items {
                out.queue(item);
            }
        }
    }
    let link_r = link.clone();
    let mut replies = tokio::spawn(async move {
        while let Some(Ok(bytes)) = reader.next().await {
            link_r.heard_frame();
            match protocol::decode::<ServerFrame>(&bytes) {
                Ok(ServerFrame::Reply { id, result }) => {
                    let waiter = link_r.lock().pending.remove(&id);
                    if let Some(w) = waiter {
                        let _ = w.send(result.map_err(LinkError::Refused));
                    }
                }
                Ok(ServerFrame::ProtocolError { message }) => return format!("the peer refused: {message}"),
                Ok(_) => {}
                Err(e) => return format!("undecodable frame: {e}"),
            }
        }
        "the connection closed".to_string()
    });
    let broke =
        |why: Result<String, tokio::task::JoinError>| Ended::Broke(why.unwrap_or_else(|e| e.to_string()));
    let ended = loop {
        // Write whatever is queued; when the socket is full, wait until it drains.
        let result = {
            let mut out = link.lock();
            out.write_some(&writer)
        };
        match result {
            Err(e) => break Ended::Broke(e.to_string()),
            Ok(false) => {
                tokio::select! {
                    r = writer.writable() => if let Err(e) = r { break Ended::Broke(e.to_string()) },
                    why = &mut replies => break broke(why),
                }
                continue;
            }
            Ok(true) => {}
        }
        if let Some(dropped) = dropped(inner, link) {
            break dropped;
        }
        tokio::select! {
            _ = link.wake.notified() => {}
            why = &mut replies => break broke(why),
        }
    };
    replies.abort();
    ended
}

/// Whether the node is gone or dropped this link, and what its waiting calls are told.
fn dropped(inner: &Inner, link: &Arc<Link>) -> Option<Ended> {
    if inner.events.strong_count() == 0 {
        return Some(Ended::Dropped("this node is stopping".into()));
    }
    if inner.links().get(&link.addr).is_some_and(|l| Arc::ptr_eq(l, link)) {
        return None;
    }
    let why = link.lock().dropped.clone();
    Some(Ended::Dropped(why.unwrap_or_else(|| "this node dropped the link".into())))
}

/// The link's reading half: opens what the peer sealed (encrypted links).
type Reader = FramedRead<tokio::net::tcp::OwnedReadHalf, SealedCodec>;

/// Connects and says hello; with a secret, the link is encrypted, and the writing half's
/// [`Sealer`] goes to the outbox.
async fn connect(
    link: &Link,
    secret: Option<crate::store::signing::Secret>,
) -> Result<(OwnedWriteHalf, Reader, Option<Sealer>), String> {
    let stream = tokio::net::TcpStream::connect(&link.addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let mut framed = tokio_util::codec::Framed::new(stream, SealedCodec::new(protocol::codec()));
    protocol::client_handshake(&mut framed, "troupe-node peer link", secret.as_ref()).await?;
    let mut parts = framed.into_parts();
    // From here on the codec counts the bytes the peer sends (see `Link::heard`): the
    // handshake's own are no sign of a busy peer to a call queued while the link connected.
    parts.codec.count_into(link.bytes_in());
    let sealer = parts.codec.take_sealer();
    let (read_half, write_half) = parts.io.into_split();
    // Anything the peer sent right behind its hello is already in the handshake's buffer.
    let mut reader = FramedRead::new(read_half, parts.codec);
    reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
    Ok((write_half, reader, sealer))
}
