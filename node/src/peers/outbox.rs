//! A link's outbox: the encoded frames not yet written, behind one mutex, and the non-blocking
//! writes that drain it (see [`super`] for who writes when).
//!
//! On an encrypted link, frames are queued in plaintext and sealed ([`Sealer`]) just before a
//! write, all that is queued at once: a corked burst costs one seal per 64 KiB rather than one
//! per frame. Sealing happens under the outbox mutex, so the order of the bytes is the order of
//! the nonces.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{oneshot, Notify};

use super::LinkError;
use crate::wire::seal::Sealer;
use crate::wire::{self as protocol, ClientFrame, PeerRequest, Response};

/// Where a call's answer goes.
pub(super) type Reply = oneshot::Sender<Result<Response, LinkError>>;

pub(crate) enum Outgoing {
    Notify(PeerRequest),
    Call { request: PeerRequest, reply: Reply },
    Flush(oneshot::Sender<()>),
}

/// One link's shared half: its outbox, the signal that wakes its task, and what arrived on it.
pub(crate) struct Link {
    pub(super) addr: String,
    out: Mutex<Outbox>,
    pub(super) wake: Notify,
    /// Frames read from the peer so far.
    frames_in: AtomicUsize,
    /// Bytes read from the peer after the handshake, counted by the reading codec.
    bytes_in: Arc<AtomicUsize>,
}

pub(super) enum LinkState {
    /// Not connected yet: items wait as they are.
    Connecting(VecDeque<Outgoing>),
    /// Connected: frames are written to `writer`.
    Ready(Arc<OwnedWriteHalf>),
    /// Broken or closed: nothing more is accepted.
    Dead,
}

pub(super) struct Outbox {
    pub(super) state: LinkState,
    /// The bytes for the socket not yet written: encoded frames (length-prefixed), sealed on an
    /// encrypted link.
    buf: Vec<u8>,
    /// Encrypted links: the writing half's keys, and the encoded frames not yet sealed.
    sealer: Option<Sealer>,
    plain: Vec<u8>,
    /// The length of each frame not yet sealed or written (in `plain` on an encrypted link, in
    /// `buf` otherwise), in order, and how much of the first one is written.
    frames: VecDeque<usize>,
    head_written: usize,
    /// Callers waiting until everything queued before them was written.
    flushes: Vec<oneshot::Sender<()>>,
    /// Calls waiting for their reply, by request id.
    pub(super) pending: HashMap<u64, Reply>,
    next_id: u64,
    /// Why this node dropped the link ([`super::Peers::forget`]): what its waiting calls and
    /// unsent items are told.
    pub(super) dropped: Option<String>,
}

impl Link {
    /// A link to `addr`, connecting.
    pub(super) fn new(addr: &str) -> Link {
        Link {
            addr: addr.to_string(),
            out: Mutex::new(Outbox {
                state: LinkState::Connecting(VecDeque::new()),
                buf: Vec::new(),
                sealer: None,
                plain: Vec::new(),
                frames: VecDeque::new(),
                head_written: 0,
                flushes: Vec::new(),
                pending: HashMap::new(),
                next_id: 1,
                dropped: None,
            }),
            wake: Notify::new(),
            frames_in: AtomicUsize::new(0),
            bytes_in: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A frame from the peer was read.
    pub(super) fn heard_frame(&self) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Where the reading codec publishes the count of bytes received after the handshake.
    pub(super) fn bytes_in(&self) -> Arc<AtomicUsize> {
        self.bytes_in.clone()
    }

    /// What arrived so far: it changes whenever bytes from the peer are read, so a caller that
    /// waits can tell a peer busy sending (other answers first) from a silent one.
    pub(super) fn heard(&self) -> (usize, usize) {
        (self.frames_in.load(Ordering::Relaxed), self.bytes_in.load(Ordering::Relaxed))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Outbox> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`; writes at once (with anything queued before it, corked or not) unless
    /// `corked`. A dead link gives the item back (it is
    /// answered locally at once, so its size in the `Err` costs nothing worth boxing).
    #[allow(clippy::result_large_err)]
    pub(super) fn push(&self, item: Outgoing, corked: bool) -> Result<(), Outgoing> {
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
    pub(super) fn write_now(&self, out: &mut Outbox) {
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
    /// From now on, frames are sealed before they are written (an encrypted link).
    pub(super) fn set_sealer(&mut self, sealer: Option<Sealer>) {
        self.sealer = sealer;
    }

    /// Encodes `item` at the end of the buffer.
    pub(super) fn queue(&mut self, item: Outgoing) {
        let frame = match item {
            Outgoing::Notify(request) => ClientFrame::PeerNotify { request },
            Outgoing::Call { request, reply } => {
                let id = self.next_id;
                self.next_id += 1;
                self.pending.insert(id, reply);
                ClientFrame::PeerCall { id, request }
            }
            Outgoing::Flush(ack) => {
                if self.buf.is_empty() && self.plain.is_empty() {
                    let _ = ack.send(());
                } else {
                    self.flushes.push(ack);
                }
                return;
            }
        };
        let buf = if self.sealer.is_some() { &mut self.plain } else { &mut self.buf };
        let start = buf.len();
        // The length prefix of wire::FrameCodec: 4 bytes, big-endian.
        buf.extend_from_slice(&[0; 4]);
        troupe_actor_abi::message::encode_into(buf, &frame);
        let len = buf.len() - start - 4;
        buf[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        self.frames.push_back(len + 4);
    }

    /// Seals every frame queued so far (an encrypted link), in one go.
    fn seal_queued(&mut self) -> std::io::Result<()> {
        let Some(sealer) = &mut self.sealer else {
            return Ok(());
        };
        if self.plain.is_empty() {
            return Ok(());
        }
        sealer.seal(&self.plain, &mut self.buf)?;
        self.plain.clear();
        self.frames.clear();
        if self.plain.capacity() > 1 << 20 {
            self.plain = Vec::new();
        }
        Ok(())
    }

    /// Non-blocking writes until the buffer is empty (true) or the socket is full (false).
    pub(super) fn write_some(&mut self, writer: &OwnedWriteHalf) -> std::io::Result<bool> {
        self.seal_queued()?;
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
        // Sealed bytes are no longer frames: `frames` counts those still in `plain`.
        if self.sealer.is_none() {
            let mut n = n + self.head_written;
            while let Some(&len) = self.frames.front() {
                if n < len {
                    break;
                }
                n -= len;
                self.frames.pop_front();
            }
            self.head_written = n;
        }
        if self.buf.is_empty() && self.plain.is_empty() {
            for ack in self.flushes.drain(..) {
                let _ = ack.send(());
            }
            if self.buf.capacity() > 1 << 20 {
                self.buf = Vec::new();
            }
        }
    }

    /// The link is dead: every item not (wholly) written, for answering locally. A frame
    /// partly written is lost with the connection, as are frames already written (and, on an
    /// encrypted link, frames already sealed).
    pub(super) fn take_unsent(&mut self) -> Vec<Outgoing> {
        let mut items: Vec<Outgoing> = match std::mem::replace(&mut self.state, LinkState::Dead) {
            LinkState::Connecting(items) => items.into_iter().collect(),
            _ => Vec::new(),
        };
        let buf = if self.sealer.is_some() {
            self.buf.clear();
            std::mem::take(&mut self.plain)
        } else {
            std::mem::take(&mut self.buf)
        };
        // The written part of the first frame is no longer in the buffer.
        let mut at = 0;
        for (i, len) in std::mem::take(&mut self.frames).into_iter().enumerate() {
            if i == 0 && self.head_written > 0 {
                at += len - self.head_written;
                continue;
            }
            let frame = &buf[at..at + len];
            at += len;
            if let Ok(ClientFrame::PeerNotify { request }) = protocol::decode::<ClientFrame>(&frame[4..]) {
                items.push(Outgoing::Notify(request));
            }
        }
        self.head_written = 0;
        items.extend(self.flushes.drain(..).map(Outgoing::Flush));
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_actor_abi::message::{Address, Incoming, Payload};

    fn deliver(text: &str) -> Outgoing {
        let to = Address { node: "n:1".into(), id: 3 };
        Outgoing::Notify(PeerRequest::Deliver {
            to,
            msg: Incoming { sender: None, payload: Payload::Text(text.into()) },
        })
    }

    fn text_of(o: &Outgoing) -> String {
        match o {
            Outgoing::Notify(PeerRequest::Deliver {
                msg: Incoming { payload: Payload::Text(t), .. },
                ..
            }) => t.clone(),
            _ => String::new(),
        }
    }

    #[test]
    fn what_a_dead_link_never_wrote_comes_back_in_order_to_be_answered_locally() {
        let link = Link::new("n:1");
        assert!(link.push(deliver("queued while connecting"), false).is_ok());
        let mut out = link.lock();
        // Frames encoded for the socket (as once connected) come back decoded.
        out.queue(deliver("encoded 1"));
        out.queue(deliver("encoded 2"));
        let unsent: Vec<String> = out.take_unsent().iter().map(text_of).collect();
        assert_eq!(unsent, ["queued while connecting", "encoded 1", "encoded 2"]);
        assert!(matches!(out.state, LinkState::Dead));
        drop(out);
        assert!(link.push(deliver("late"), false).is_err(), "a dead link takes nothing more");
    }

    #[test]
    fn a_frame_partly_written_is_lost_with_the_connection_and_the_rest_come_back() {
        let link = Link::new("n:1");
        let mut out = link.lock();
        out.queue(deliver("first"));
        out.queue(deliver("second"));
        out.consumed(3);
        let unsent: Vec<String> = out.take_unsent().iter().map(text_of).collect();
        assert_eq!(unsent, ["second"]);
    }
}
