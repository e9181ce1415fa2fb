//! The admin port's door: how many connections are open, the cap on them, the refusal one over
//! the cap gets, the pause after a failed accept, and giving memory back after a burst.
//!
//! Every accepted connection, client or peer, holds a [`Ticket`] until it ends. At the cap a
//! new connection is accepted only to be told why (a `ProtocolError`, the frame a client reads
//! in place of the challenge, written without waiting) and closed at once, so refusals hold no
//! descriptor. The cap is `--max-connections`, lowered to keep descriptors for the node's own
//! work below the open-file limit (`model::config::connection_cap`).
//!
//! Until it has said hello a connection also holds a [`HelloSlot`] of its source (an IPv4
//! address, an IPv6 /64: what one host can easily vary). A source holds at most
//! `before_hello_per_source` of them: a new connection from a source at its share closes the
//! source's oldest connection that has not said hello yet (it is told why), so that one host
//! opening connections and never saying hello cannot fill the cap and lock everyone else out
//! (issue 21: 5 000 of them kept `troupe status` out for 10 s). The oldest goes, not the new
//! one, so that the same host's honest clients get in too (on loopback every client and node
//! shares one address): an honest client says hello within milliseconds, long before its
//! source opens its share of newer connections, and one that said hello holds no slot at all,
//! so established clients and peer links are never touched.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::model::config::{connection_cap, open_file_limit, ConnectionLimits, RESERVED_DESCRIPTORS};
use crate::model::log_limit::Repeats;
use crate::wire::{self as protocol, ServerFrame};

/// How many connections must have closed since the last trim (and none opened in their place)
/// for a burst's memory to be given back.
const TRIM_AFTER_CLOSED: usize = 64;

/// How often the server looks whether a burst ended.
pub(super) const TRIM_EVERY: Duration = Duration::from_millis(250);

/// The longest pause after failed accepts (out of descriptors), between which the node serves
/// the connections it has.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The count of open connections and the cap.
pub(super) struct Gate {
    open: AtomicUsize,
    /// The most connections open since the last trim.
    high: AtomicUsize,
    cap: usize,
    configured: usize,
    /// Connections before their hello, by source, oldest first (no entry: none).
    before_hello: Mutex<HashMap<IpAddr, VecDeque<Waiting>>>,
    /// The most of them one source may hold.
    per_source: usize,
    /// The next [`HelloSlot`]'s id.
    next_slot: AtomicU64,
}

/// A connection before its hello, as its source's queue holds it.
struct Waiting {
    id: u64,
    /// Tells the connection it is closed to make room.
    evict: Arc<Notify>,
    /// Whether its place under the cap was given back (see [`Ticket`]).
    released: Arc<AtomicBool>,
}

/// A connection's place under the cap, given back when dropped, or as soon as the connection
/// is closed to make room for a newer one of its source (its task may take a moment to end).
pub(super) struct Ticket {
    gate: Arc<Gate>,
    released: Arc<AtomicBool>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.release(&self.released);
    }
}

/// A connection's place among its source's connections before their hello, given back when
/// dropped: once the hello is answered, or when the connection ends before it.
pub(super) struct HelloSlot {
    gate: Arc<Gate>,
    source: IpAddr,
    id: u64,
    evict: Arc<Notify>,
}

impl HelloSlot {
    /// Returns once a newer connection of the same source took this one's place: the
    /// connection is then to be closed (telling it [`Gate::eviction`]).
    pub(super) async fn evicted(&self) {
        self.evict.notified().await
    }

    /// What the connection is told when it is closed to make room.
    pub(super) fn why(&self) -> String {
        self.gate.eviction(self.source)
    }
}

impl Drop for HelloSlot {
    fn drop(&mut self) {
        let mut waiting = self.gate.waiting();
        if let Some(queue) = waiting.get_mut(&self.source) {
            queue.retain(|w| w.id != self.id);
            if queue.is_empty() {
                waiting.remove(&self.source);
            }
        }
    }
}

/// The source a connection from `ip` counts against: an IPv4 address (also when mapped into
/// IPv6), or an IPv6 address's /64, the block one host is usually given.
pub(super) fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
        },
    }
}

/// The warnings about connections closed to make room: a flood would repeat them without bound.
static EVICTED: Repeats = Repeats::new();

impl Gate {
    /// The gate for `limits` under this process's open-file limit (logged).
    pub(super) fn new(limits: &ConnectionLimits) -> Arc<Gate> {
        let nofile = open_file_limit();
        let cap = connection_cap(limits.max_connections, nofile);
        let nofile_text = nofile.map_or("unlimited".to_string(), |n| n.to_string());
        if cap < limits.max_connections {
            tracing::warn!(
                "at most {cap} connections (--max-connections {} lowered: the open-file limit is {nofile_text}, and up to {RESERVED_DESCRIPTORS} descriptors are kept for the node's own work)",
                limits.max_connections
            );
        } else {
            tracing::info!(
                idle_timeout = ?limits.idle_timeout,
                "at most {cap} connections (open-file limit {nofile_text})"
            );
        }
        Arc::new(Gate {
            open: AtomicUsize::new(0),
            high: AtomicUsize::new(0),
            cap,
            configured: limits.max_connections,
            before_hello: Mutex::new(HashMap::new()),
            per_source: limits.before_hello_per_source.max(1),
            next_slot: AtomicU64::new(0),
        })
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Waiting>>> {
        self.before_hello.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A ticket and a hello slot for `stream` from `peer`, or none: then `stream` was told why
    /// and is to be dropped.
    pub(super) fn admit(
        self: &Arc<Gate>,
        stream: TcpStream,
        peer: IpAddr,
    ) -> Option<(TcpStream, Ticket, HelloSlot)> {
        // The slot first: at its source's share it closes the oldest, whose place under the cap
        // is then free for this one.
        let released = Arc::new(AtomicBool::new(false));
        let slot = self.hello_slot(peer, released.clone());
        let admitted =
            self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.cap).then_some(n + 1));
        match admitted {
            Ok(n) => {
                self.high.fetch_max(n + 1, Ordering::AcqRel);
                Some((stream, Ticket { gate: self.clone(), released }, slot))
            }
            Err(_) => {
                // No place was taken: nothing to give back.
                released.store(true, Ordering::Release);
                drop(slot);
                let message = self.refusal();
                tracing::debug!(%peer, "{message}");
                write_refusal(stream, message);
                None
            }
        }
    }

    /// Gives a place under the cap back, once (`released` says whether it was).
    fn release(&self, released: &AtomicBool) {
        if !released.swap(true, Ordering::AcqRel) {
            self.open.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// A place among `peer`'s source's connections before their hello, for a connection whose
    /// place under the cap is `released`; at the source's share, its oldest such connection is
    /// told to close, and its place under the cap is given back at once.
    pub(super) fn hello_slot(self: &Arc<Gate>, peer: IpAddr, released: Arc<AtomicBool>) -> HelloSlot {
        let source = source_of(peer);
        let (id, evict) = (self.next_slot.fetch_add(1, Ordering::Relaxed), Arc::new(Notify::new()));
        let mut waiting = self.waiting();
        let queue = waiting.entry(source).or_default();
        let oldest = if queue.len() >= self.per_source { queue.pop_front() } else { None };
        queue.push_back(Waiting { id, evict: evict.clone(), released });
        drop(waiting);
        if let Some(oldest) = oldest {
            self.release(&oldest.released);
            // A permit is kept if the connection is not waiting for it yet.
            oldest.evict.notify_one();
            if let Some(held) = EVICTED.admit_now() {
                tracing::warn!(%peer, "closed a connection: {}{held}", self.eviction(source));
            }
        }
        HelloSlot { gate: self.clone(), source, id, evict }
    }

    /// What a connection closed to make room for a newer one of its `source` is told.
    pub(super) fn eviction(&self, source: IpAddr) -> String {
        format!(
            "closed before its hello: {source} opened more than {} connections that have not said hello (the most one source may hold), and this is the oldest",
            self.per_source
        )
    }

    /// What a connection over the cap is told.
    pub(super) fn refusal(&self) -> String {
        let flag = if self.cap < self.configured {
            format!("--max-connections {} lowered to fit the open-file limit", self.configured)
        } else {
            format!("--max-connections {}", self.configured)
        };
        format!("the node has {} connections open ({flag}): try again later", self.cap)
    }

    /// After a burst of connections closed, gives the memory they used back to the system
    /// (glibc keeps freed memory in its arenas otherwise). Called every [`TRIM_EVERY`].
    pub(super) fn trim_after_burst(&self) {
        let open = self.open.load(Ordering::Acquire);
        let high = self.high.load(Ordering::Acquire);
        if high >= open + TRIM_AFTER_CLOSED {
            self.high.store(open, Ordering::Release);
            trim();
        }
    }
}

/// Tells a refused connection why (a `ProtocolError`, the frame a client reads in place of the
/// challenge) and closes it, having read nothing.
fn write_refusal(stream: TcpStream, message: String) {
    let body = protocol::encode(&ServerFrame::ProtocolError { message });
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    // A fresh socket's send buffer takes a small frame at once; never wait for it.
    if let Ok(mut s) = stream.into_std() {
        let _ = std::io::Write::write(&mut s, &frame);
    }
}

/// Gives freed heap memory back to the system.
fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The pause after failed accepts: doubles from 10 ms up to [`ACCEPT_BACKOFF_MAX`], and logs
/// at most one warning a second (with how many failed meanwhile), so a node out of
/// descriptors neither spins nor floods its log.
pub(super) struct AcceptBackoff {
    delay: Duration,
    failures: u64,
    logged: Option<Instant>,
}

impl AcceptBackoff {
    pub(super) fn new() -> AcceptBackoff {
        AcceptBackoff { delay: Duration::ZERO, failures: 0, logged: None }
    }

    /// A connection was accepted: the next failure starts over.
    pub(super) fn reset(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// An accept failed: how long to pause.
    pub(super) fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.failures += 1;
        self.delay = (self.delay * 2).clamp(Duration::from_millis(10), ACCEPT_BACKOFF_MAX);
        if self.logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            tracing::warn!(failures = self.failures, "accept failed: {e} (pausing {:?})", self.delay);
            self.logged = Some(Instant::now());
            self.failures = 0;
        }
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_accepts_back_off_up_to_a_second() {
        let mut b = AcceptBackoff::new();
        let e = std::io::Error::from_raw_os_error(libc::EMFILE);
        let delays: Vec<Duration> = (0..10).map(|_| b.failed(&e)).collect();
        assert_eq!(delays[0], Duration::from_millis(10));
        assert_eq!(delays[1], Duration::from_millis(20));
        assert_eq!(delays[9], ACCEPT_BACKOFF_MAX);
        b.reset();
        assert_eq!(b.failed(&e), Duration::from_millis(10));
    }

    #[test]
    fn the_refusal_names_the_cap_and_the_flag() {
        let limits =
            ConnectionLimits { max_connections: 8, idle_timeout: None, ..ConnectionLimits::default() };
        let gate = Gate::new(&limits);
        assert_eq!(gate.refusal(), "the node has 8 connections open (--max-connections 8): try again later");
    }

    /// Whether `slot` was told to close (without waiting).
    fn was_evicted(slot: &HelloSlot) -> bool {
        use futures::FutureExt;
        slot.evicted().now_or_never().is_some()
    }

    #[test]
    fn a_source_over_its_share_before_the_hello_loses_its_oldest_and_a_hello_frees_a_place() {
        let limits = ConnectionLimits { before_hello_per_source: 3, ..ConnectionLimits::default() };
        let gate = Gate::new(&limits);
        let host: IpAddr = "192.0.2.7".parse().unwrap();
        // Each with a place under the cap, as `admit` gives them.
        let slot = |peer: IpAddr| {
            gate.open.fetch_add(1, Ordering::AcqRel);
            gate.hello_slot(peer, Arc::new(AtomicBool::new(false)))
        };
        let mut held: VecDeque<HelloSlot> = (0..3).map(|_| slot(host)).collect();
        assert!(!held.iter().any(was_evicted), "within the share");
        // A fourth: the oldest is told to close, and its place under the cap is free at once.
        held.push_back(slot(host));
        assert!(was_evicted(&held[0]));
        assert_eq!(gate.open.load(Ordering::Acquire), 3);
        assert!(!held.iter().skip(1).any(was_evicted));
        drop(held.pop_front());
        // Another source is not affected.
        let other = slot("192.0.2.8".parse().unwrap());
        assert!(!was_evicted(&other));
        // One says hello (its slot is dropped): the next one takes its place, nobody is closed.
        drop(held.pop_back());
        held.push_back(slot(host));
        assert!(!held.iter().any(was_evicted));
        drop((held, other));
        assert!(gate.waiting().is_empty(), "no entry is kept for a source with none");
        assert_eq!(
            gate.eviction(host),
            "closed before its hello: 192.0.2.7 opened more than 3 connections that have not said hello (the most one source may hold), and this is the oldest"
        );
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64_and_a_mapped_ipv4_as_itself() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        assert_eq!(source_of(a), source_of(b));
        assert_eq!(source_of(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(source_of(a), source_of("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(source_of("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
