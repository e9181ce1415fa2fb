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
//! parents, calls get an error; and the node is told the peer is unreachable.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{oneshot, Notify};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

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
    links: Mutex<HashMap<String, Arc<Link>>>,
}

/// Links a version executor queued frames on without writing them yet (see the module doc).
pub(crate) type Corked = Vec<Arc<Link>>;

/// One link's shared half: its outbox and the signal that wakes its task.
pub(crate) struct Link {
    addr: String,
    out: Mutex<Outbox>,
    wake: Notify,
}

enum LinkState {
    /// Not connected yet: items wait as they are.
    Connecting(VecDeque<Outgoing>),
    /// Connected: frames are written to `writer`.
    Ready(Arc<OwnedWriteHalf>),
    /// Broken or closed: nothing more is accepted.
    Dead,
}

struct Outbox {
    state: LinkState,
    /// Encoded frames (length-prefixed) not yet written.
    buf: Vec<u8>,
    /// The length of each frame in `buf`, in order, and how much of the first one is written.
    frames: VecDeque<usize>,
    head_written: usize,
    /// Callers waiting until everything queued before them was written.
    flushes: Vec<oneshot::Sender<()>>,
    /// Calls waiting for their reply, by request id.
    pending: HashMap<u64, Reply>,
    next_id: u64,
}

impl Peers {
    fn link(&self, shared: &Arc<Shared>, addr: &str) -> Arc<Link> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = links.get(addr) {
            if !matches!(l.lock().state, LinkState::Dead) {
                return l.clone();
            }
        }
        let link = Arc::new(Link {
            addr: addr.to_string(),
            out: Mutex::new(Outbox {
                state: LinkState::Connecting(VecDeque::new()),
                buf: Vec::new(),
                frames: VecDeque::new(),
                head_written: 0,
                flushes: Vec::new(),
                pending: HashMap::new(),
                next_id: 1,
            }),
            wake: Notify::new(),
        });
        links.insert(addr.to_string(), link.clone());
        shared.runtime().spawn(run(Arc::downgrade(shared), link.clone()));
        link
    }

    /// Queues a one-way request to `addr`, writing it at once if the link is idle.
    pub(crate) fn notify(&self, shared: &Arc<Shared>, addr: &str, request: Request) {
        self.notify_corked(shared, addr, request, None)
    }

    /// As [`Peers::notify`]; with `cork`, the frame is only queued and the link recorded, to be
    /// written by [`Peers::uncork`].
    pub(crate) fn notify_corked(
        &self,
        shared: &Arc<Shared>,
        addr: &str,
        request: Request,
        cork: Option<&mut Corked>,
    ) {
        let link = self.link(shared, addr);
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
            Err(item) => fail(shared, addr, item, "the link closed"),
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
        shared: &Arc<Shared>,
        addr: &str,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, String> {
        let (rtx, rrx) = oneshot::channel();
        let link = self.link(shared, addr);
        link.push(Outgoing::Call { request, reply: rtx }, false).map_err(|_| format!("no link to {addr}"))?;
        match tokio::time::timeout(timeout, rrx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(format!("the link to {addr} closed")),
            Err(_) => Err(format!("{addr} did not answer within {timeout:?}")),
        }
    }

    /// Waits until everything queued so far was written to every link (or `timeout`).
    pub(crate) async fn flush(&self, timeout: Duration) {
        let links: Vec<_> = self.links.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        let mut acks = Vec::new();
        for link in links {
            let (a, r) = oneshot::channel();
            if link.push(Outgoing::Flush(a), false).is_ok() {
                acks.push(r);
            }
        }
        let _ = tokio::time::timeout(timeout, futures::future::join_all(acks)).await;
    }

    /// Drops the link to `addr` (its task ends once its outbox is written).
    pub(crate) fn forget(&self, addr: &str) {
        let link = self.links.lock().unwrap_or_else(|p| p.into_inner()).remove(addr);
        if let Some(l) = link {
            l.wake.notify_one();
        }
    }
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, Outbox> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`; writes at once (with anything queued before it, corked or not) unless
    /// `corked`. A dead link gives the item back (it is
    /// answered locally at once, so its size in the `Err` costs nothing worth boxing).
    #[allow(clippy::result_large_err)]
    fn push(&self, item: Outgoing, corked: bool) -> Result<(), Outgoing> {
        let mut out = self.lock();
        match &mut out.state {
            LinkState::Dead => return Err(item),
            LinkState::Connecting(items) => {
                items.push_back(item);
                return Ok(());
            }
            LinkState::Ready(_) => {}
        }
        out.queue(item);
        if !corked {
            self.write_now(&mut out);
        }
        Ok(())
    }

    /// Writes as much of the outbox as the socket takes without blocking; wakes the link's task
    /// for the rest.
    fn write_now(&self, out: &mut Outbox) {
        let LinkState::Ready(writer) = &out.state else {
            return;
        };
        let writer = writer.clone();
        match out.write_some(&writer) {
            Ok(true) => {}
            // Left over, or broken: the task waits for the socket, or finds the error.
            Ok(false) | Err(_) => self.wake.notify_one(),
        }
    }
}

impl Outbox {
    /// Encodes `item` at the end of the buffer.
    fn queue(&mut self, item: Outgoing) {
        let frame = match item {
            Outgoing::Notify(request) => ClientFrame::Notify { request },
            Outgoing::Call { request, reply } => {
                let id = self.next_id;
                self.next_id += 1;
                self.pending.insert(id, reply);
                ClientFrame::Request { id, request }
            }
            Outgoing::Flush(ack) => {
                if self.buf.is_empty() {
                    let _ = ack.send(());
                } else {
                    self.flushes.push(ack);
                }
                return;
            }
        };
        let start = self.buf.len();
        // The length prefix of LengthDelimitedCodec: 4 bytes, big-endian.
        self.buf.extend_from_slice(&[0; 4]);
        troupe_actor_abi::message::encode_into(&mut self.buf, &frame);
        let len = self.buf.len() - start - 4;
        self.buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        self.frames.push_back(len + 4);
    }

    /// Non-blocking writes until the buffer is empty (true) or the socket is full (false).
    fn write_some(&mut self, writer: &OwnedWriteHalf) -> std::io::Result<bool> {
        let mut written = 0;
        let result = loop {
            if written == self.buf.len() {
                break Ok(true);
            }
            match writer.try_write(&self.buf[written..]) {
                Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.consumed(written);
        result
    }

    /// `n` bytes from the front of the buffer were written.
    fn consumed(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.buf.drain(..n);
        let mut n = n + self.head_written;
        while let Some(&len) = self.frames.front() {
            if n < len {
                break;
            }
            n -= len;
            self.frames.pop_front();
        }
        self.head_written = n;
        if self.buf.is_empty() {
            for ack in self.flushes.drain(..) {
                let _ = ack.send(());
            }
            if self.buf.capacity() > 1 << 20 {
                self.buf = Vec::new();
            }
        }
    }

    /// The link is dead: every item not (wholly) written, for answering locally. A frame
    /// partly written is lost with the connection, as are frames already written.
    fn take_unsent(&mut self) -> Vec<Outgoing> {
        let mut items: Vec<Outgoing> = match std::mem::replace(&mut self.state, LinkState::Dead) {
            LinkState::Connecting(items) => items.into_iter().collect(),
            _ => Vec::new(),
        };
        let buf = std::mem::take(&mut self.buf);
        let mut at = 0;
        for (i, len) in std::mem::take(&mut self.frames).into_iter().enumerate() {
            let frame = &buf[at..at + len];
            at += len;
            if i == 0 && self.head_written > 0 {
                continue;
            }
            if let Ok(ClientFrame::Notify { request }) = protocol::decode::<ClientFrame>(&frame[4..]) {
                items.push(Outgoing::Notify(request));
            }
        }
        self.head_written = 0;
        items.extend(self.flushes.drain(..).map(Outgoing::Flush));
        items
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

/// A link's task: connects, hands the socket to the outbox, writes what the socket did not
/// take at once, reads replies; on any failure, answers for everything unsent.
async fn run(shared: Weak<Shared>, link: Arc<Link>) {
    let secret = shared.upgrade().and_then(|s| s.secret.clone());
    let why = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&link.addr, secret)).await {
        Ok(Ok((writer, reader))) => serve(&shared, &link, writer, reader).await,
        Ok(Err(e)) => e,
        Err(_) => "connect timed out".into(),
    };
    let (unsent, pending) = {
        let mut out = link.lock();
        let unsent = out.take_unsent();
        (unsent, std::mem::take(&mut out.pending))
    };
    for (_, w) in pending {
        let _ = w.send(Err(format!("the link to {} broke: {why}", link.addr)));
    }
    let Some(shared) = shared.upgrade() else {
        return;
    };
    {
        let mut links = shared.peers().links.lock().unwrap_or_else(|p| p.into_inner());
        if links.get(&link.addr).is_some_and(|l| Arc::ptr_eq(l, &link)) {
            links.remove(&link.addr);
        }
    }
    for item in unsent {
        fail(&shared, &link.addr, item, &why);
    }
    // A link the node dropped on purpose (`forget`) ends quietly.
    if !why.is_empty() {
        shared.peer_unreachable(&link.addr, &why);
    }
}

/// The connected link's life; returns why it ended ("" for a link the node forgot).
async fn serve(
    shared: &Weak<Shared>,
    link: &Arc<Link>,
    writer: OwnedWriteHalf,
    mut reader: FramedRead<tokio::net::tcp::OwnedReadHalf, LengthDelimitedCodec>,
) -> String {
    let writer = Arc::new(writer);
    {
        let mut out = link.lock();
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
            match protocol::decode::<ServerFrame>(&bytes) {
                Ok(ServerFrame::Reply { id, result }) => {
                    let waiter = link_r.lock().pending.remove(&id);
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
    let why = loop {
        // Write whatever is queued; when the socket is full, wait until it drains.
        let result = {
            let mut out = link.lock();
            out.write_some(&writer)
        };
        match result {
            Err(e) => break e.to_string(),
            Ok(false) => {
                tokio::select! {
                    r = writer.writable() => if let Err(e) = r { break e.to_string() },
                    why = &mut replies => break why.unwrap_or_else(|e| e.to_string()),
                }
                continue;
            }
            Ok(true) => {}
        }
        let forgotten = shared.upgrade().is_none_or(|s| {
            let links = s.peers().links.lock().unwrap_or_else(|p| p.into_inner());
            !links.get(&link.addr).is_some_and(|l| Arc::ptr_eq(l, link))
        });
        if forgotten {
            break String::new();
        }
        tokio::select! {
            _ = link.wake.notified() => {}
            why = &mut replies => break why.unwrap_or_else(|e| e.to_string()),
        }
    };
    replies.abort();
    why
}

async fn connect(
    addr: &str,
    secret: Option<crate::signing::Secret>,
) -> Result<(OwnedWriteHalf, FramedRead<tokio::net::tcp::OwnedReadHalf, LengthDelimitedCodec>), String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let mut framed = tokio_util::codec::Framed::new(stream, protocol::codec());
    protocol::client_handshake(&mut framed, "troupe-node peer link", secret.as_ref()).await?;
    let parts = framed.into_parts();
    let (read_half, write_half) = parts.io.into_split();
    // Anything the peer sent right behind its hello is already in the handshake's buffer.
    let mut reader = FramedRead::new(read_half, parts.codec);
    reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
    Ok((write_half, reader))
}
