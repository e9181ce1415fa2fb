//! What a watcher of a node asks besides its status ([`super::Request::Observe`]): the
//! process's own figures (uptime, RSS, threads, heartbeat round trip), each version's message
//! counters (a watcher turns two of them into a rate), and a piece of the node's log. This is
//! what `troupe dashboard` polls; it adds no listening port, only one request on the admin port.

use serde::{Deserialize, Serialize};

/// The most log bytes one answer carries: a follower asks again from `next` for the rest, so a
/// busy log never makes one frame large.
pub const MAX_LOG_CHUNK: usize = 64 * 1024;

/// How far back from the end of the log a follower's first request starts
/// ([`LOG_FROM_END`]): a screenful of recent lines.
pub const LOG_TAIL_BYTES: u64 = 16 * 1024;

/// A `log_from` asking for the last [`LOG_TAIL_BYTES`] of the log (a follower's first request).
pub const LOG_FROM_END: u64 = u64::MAX;

/// What [`super::Request::Observe`] answers.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ObserveReport {
    /// Milliseconds since the node's core was made.
    pub uptime_ms: u64,
    /// Resident memory of the process, in bytes (`VmRSS`; 0 where `/proc` does not say).
    pub rss_bytes: u64,
    /// Threads of the process (tokio workers, version threads, ...).
    pub threads: u64,
    /// The last registration round trip to the leader, in microseconds (none on the leader,
    /// or before the first).
    pub heartbeat_rtt_us: Option<u64>,
    /// Per loaded hash (generations of one hash added up): messages queued to its actors and
    /// handled by them since it was loaded.
    pub versions: Vec<VersionCounts>,
    /// The piece of `node.log` asked for, if one was.
    pub log: Option<LogChunk>,
}

/// One hash's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCounts {
    /// Full hash.
    pub hash: String,
    /// Messages and creates queued to its actors so far.
    pub queued: u64,
    /// Of which handled.
    pub handled: u64,
}

/// A piece of the node's log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// Byte offset of `text` in the file (after a restart truncated it, 0 again).
    pub from: u64,
    /// Where the next request should start.
    pub next: u64,
    /// Whole lines (invalid UTF-8 replaced); a line still being written waits for the next
    /// request.
    pub text: String,
    /// Why there is no text, when the log cannot be read (e.g. `--state-dir` without a log).
    pub error: Option<String>,
}
