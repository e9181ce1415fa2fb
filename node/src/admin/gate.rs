//! The admin port's door: how many connections are open, the cap on them, the refusal one over
//! the cap gets, the pause after a failed accept, and giving memory back after a burst.
//!
//! Every accepted connection, client or peer, holds a [`Ticket`] until it ends. At the cap a
//! new connection is accepted only to be told why (a `ProtocolError`, the frame a client reads
//! in place of the challenge, written without waiting) and closed at once, so refusals hold no
//! descriptor. The cap is `--max-connections`, lowered to keep descriptors for the node's own
//! work below the open-file limit (`model::config::connection_cap`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::model::config::{connection_cap, open_file_limit, ConnectionLimits, RESERVED_DESCRIPTORS};
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
}

/// A connection's place under the cap, given back when dropped.
pub(super) struct Ticket(Arc<Gate>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

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
        })
    }

    /// A ticket for `stream`, or none: then `stream` was told why and is to be dropped.
    pub(super) fn admit(self: &Arc<Gate>, stream: TcpStream) -> Option<(TcpStream, Ticket)> {
        let admitted =
            self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.cap).then_some(n + 1));
        match admitted {
            Ok(n) => {
                self.high.fetch_max(n + 1, Ordering::AcqRel);
                Some((stream, Ticket(self.clone())))
            }
            Err(_) => {
                self.refuse(stream);
                None
            }
        }
    }

    fn refuse(&self, stream: TcpStream) {
        let message = self.refusal();
        tracing::debug!(peer = ?stream.peer_addr().ok(), "{message}");
        let body = protocol::encode(&ServerFrame::ProtocolError { message });
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        // A fresh socket's send buffer takes a small frame at once; never wait for it.
        if let Ok(mut s) = stream.into_std() {
            let _ = std::io::Write::write(&mut s, &frame);
        }
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
        let gate = Gate::new(&ConnectionLimits { max_connections: 8, idle_timeout: None });
        assert_eq!(gate.refusal(), "the node has 8 connections open (--max-connections 8): try again later");
    }
}
