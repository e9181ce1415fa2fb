//! What a watcher of a node asks besides its status ([`super::Request::Observe`]): the
//! process's own figures (uptime, RSS, threads, heartbeat round trip), each version's message
//! counters (a watcher turns two of them into a rate), the live upgrades under way here and
//! lately ended (whoever started them: `troupe upgrade`, `deploy --migrate`, `troupe watch` or
//! a page), the nodes that lately left or were declared lost, and a piece of the node's log.
//! This is what `troupe dashboard` polls; it adds no listening port, only one request on the
//! admin port.

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
    /// This node's share of the live upgrades under way here and of the last few ended, oldest
    /// first.
    pub upgrades: Vec<UpgradeProgress>,
    /// Nodes that lately left the convention or were declared lost, as this node saw it,
    /// oldest first.
    pub departed: Vec<Departure>,
}

/// Buckets of an upgrade's pause histogram: bucket `i` counts pauses of `[2^i, 2^(i+1))`
/// microseconds (bucket 0 also counts 0 µs); the last one counts every longer pause. 24 buckets
/// reach 2^23 µs ≈ 8.4 s, far past the pause timeout's share a move can take.
pub const PAUSE_BUCKETS: usize = 24;

/// The histogram bucket of a pause of `us` microseconds.
pub fn pause_bucket(us: u64) -> usize {
    let bits = (u64::BITS - us.leading_zeros()) as usize;
    bits.saturating_sub(1).min(PAUSE_BUCKETS - 1)
}

/// One node's share of one live upgrade, so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeProgress {
    /// The upgrade's id (the same on every node it runs on; with FROM and TO, it names the
    /// upgrade convention-wide).
    pub upgrade: u64,
    /// Old and new version (full hashes).
    pub from: String,
    pub to: String,
    /// Whether this node runs it (the node the command was sent to), rather than taking part.
    pub origin: bool,
    /// When this node's share began, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Still under way here.
    pub running: bool,
    /// Live actors of FROM here when its share began.
    pub total: u64,
    /// Moved, stayed (do not migrate) and failed so far.
    pub moved: u64,
    pub stayed: u64,
    pub failed: u64,
    /// The pauses so far, [`PAUSE_BUCKETS`] counts (see [`pause_bucket`]).
    pub pause_histogram: Vec<u64>,
    /// An all-or-nothing upgrade rolled back: every moved actor went back to FROM.
    pub rolled_back: bool,
}

/// A node that left or was declared lost.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Departure {
    /// Its admin address.
    pub node: String,
    /// The incarnation that departed (a node started again at the address is another).
    pub incarnation: u64,
    /// `true` if it left gracefully (`troupe stop`), `false` if it was declared lost.
    pub left: bool,
    /// When, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
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
