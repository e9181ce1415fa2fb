//! What a node measures: the long-lived metric families it feeds as things happen
//! ([`Metrics`]: loads, heartbeat round trips, drain and close times), the plain numbers it
//! reads at scrape time ([`Snapshot`]), and the trait the metrics endpoint reads a node through
//! ([`MetricsSource`]). The endpoint itself, which renders them, is `crate::admin::metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// Heartbeat round trips to the leader. On loopback they take ~100 µs–10 ms; the buckets go
/// from 50 µs (to tell an idle loopback from a busy one) up to 2.5 s, past which a member is
/// close to being declared lost anyway (`--dead-after` is 3 s by default).
const RTT_BUCKETS: [f64; 14] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5];

/// Drains, from the unload to the library being closed: milliseconds for idle actors, up to
/// minutes when an unload's grace lets long conversations finish, so roughly ×3 steps from
/// 1 ms to 15 minutes.
const DRAIN_BUCKETS: [f64; 14] =
    [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 60.0, 180.0, 300.0, 900.0];

/// An actor's pause during a live upgrade: tens of microseconds normally; the long buckets show
/// actors that waited for a handler, or for every node of an all-or-nothing upgrade.
const PAUSE_BUCKETS: [f64; 12] =
    [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1, 1.0, 10.0];

/// Closing a library and deleting its files after the last actor exits: ~1 ms normally, so fine
/// buckets around 1 ms, and a few up to 10 s to show an `on_unload` that takes its time.
const CLOSE_BUCKETS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0];

pub use crate::model::version_state::VersionState;

/// One loaded version (one generation) at scrape time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionSample {
    /// The `version` label: the first 12 digits of its hash (see [`short_hash`]).
    pub version: String,
    /// Its state.
    pub state: VersionState,
    /// Messages queued to its actors and not yet handled.
    pub mailbox_depth: u64,
    /// Messages its actors handled since it was loaded.
    pub handled: u64,
    /// Its threads running a call.
    pub threads_busy: u64,
    /// Its threads waiting for work.
    pub threads_idle: u64,
    /// Its handlers running longer than the node's `--long-handler` threshold.
    pub long_handlers: u64,
}

/// Another node of the convention at scrape time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSample {
    /// Its admin address (the `node` label).
    pub node: String,
    /// Whether it was heard from within the failure-detection time.
    pub up: bool,
}

/// What the node looks like at scrape time: plain data, read under the node's lock and
/// rendered after it is released.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Live actors by (type, version short hash).
    pub actors: BTreeMap<(String, String), u64>,
    /// Every loaded version. Two generations of one hash (one draining, one active) may both be
    /// here: their depths and counts are added under the one `version` label.
    pub versions: Vec<VersionSample>,
    /// The other nodes of the convention.
    pub peers: Vec<PeerSample>,
    /// pthread keys used by the process (the limit is 1024).
    pub pthread_keys_in_use: u32,
}

/// The `version` label of a hash: 12 hex digits tell versions apart and keep series readable.
pub fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub(crate) result: &'static str,
}

/// The node's long-lived metric families: created once per node and fed as things happen.
/// Clones share the same families (each is an `Arc` inside), so a clone can go to whichever
/// task observes.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub(crate) loads: Family<ResultLabels, Counter>,
    /// Versions fetched from a peer (one per fetch that went out, however many creates waited
    /// for it), by result (`ok`, `failed`).
    pub(crate) fetches: Family<ResultLabels, Counter>,
    pub(crate) heartbeat_rtt: Histogram,
    pub(crate) drain: Histogram,
    pub(crate) unload_close: Histogram,
    pub(crate) long_handlers: Counter,
    /// Live upgrades: actors by outcome (`moved`, `stayed`, `failed`), and pauses.
    pub(crate) upgraded: Family<ResultLabels, Counter>,
    pub(crate) upgrade_pause: Histogram,
    /// The convention: leader changes seen here, fencings of this node, name clashes resolved.
    pub(crate) leader_changes: Counter,
    pub(crate) fenced: Counter,
    pub(crate) name_clashes: Counter,
    /// When the node's core was made: its uptime, for `Request::Observe`.
    pub(crate) started: std::time::Instant,
    /// The last registration round trip in microseconds (0: none yet), for `Request::Observe`:
    /// the histogram above keeps only buckets.
    pub(crate) last_rtt_us: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty families.
    pub fn new() -> Metrics {
        let loads = Family::default();
        // Both results are written from the start, so a rate over `rejected` is 0, not absent.
        for result in ["ok", "rejected"] {
            let _ = loads.get_or_create(&ResultLabels { result });
        }
        let fetches = Family::default();
        for result in ["ok", "failed"] {
            let _ = fetches.get_or_create(&ResultLabels { result });
        }
        let upgraded = Family::default();
        for result in ["moved", "stayed", "failed"] {
            let _ = upgraded.get_or_create(&ResultLabels { result });
        }
        Metrics {
            loads,
            fetches,
            heartbeat_rtt: Histogram::new(RTT_BUCKETS),
            drain: Histogram::new(DRAIN_BUCKETS),
            unload_close: Histogram::new(CLOSE_BUCKETS),
            long_handlers: Counter::default(),
            upgraded,
            upgrade_pause: Histogram::new(PAUSE_BUCKETS),
            leader_changes: Counter::default(),
            fenced: Counter::default(),
            name_clashes: Counter::default(),
            started: std::time::Instant::now(),
            last_rtt_us: Default::default(),
        }
    }

    /// A load became active.
    pub fn load_ok(&self) {
        self.loads.get_or_create(&ResultLabels { result: "ok" }).inc();
    }

    /// A load was rejected.
    pub fn load_rejected(&self) {
        self.loads.get_or_create(&ResultLabels { result: "rejected" }).inc();
    }

    /// A fetch of a version from a peer ended: the version is active here (`ok`) or not.
    pub fn fetched(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.fetches.get_or_create(&ResultLabels { result }).inc();
    }

    /// A registration round trip to the leader took `rtt` (members).
    pub fn heartbeat_rtt(&self, rtt: Duration) {
        self.heartbeat_rtt.observe(rtt.as_secs_f64());
        // At least 1, so that a sub-microsecond round trip is not read as "none yet".
        let us = (rtt.as_micros() as u64).max(1);
        self.last_rtt_us.store(us, std::sync::atomic::Ordering::Relaxed);
    }

    /// The last registration round trip, if there was one.
    pub fn last_heartbeat_rtt(&self) -> Option<Duration> {
        match self.last_rtt_us.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// How long since the node's core was made.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// A live upgrade on this node: `moved`, `stayed` and `failed` actors, and each moved
    /// actor's pause.
    pub fn upgraded(&self, moved: usize, stayed: usize, failed: usize, pauses: &[Duration]) {
        for (result, n) in [("moved", moved), ("stayed", stayed), ("failed", failed)] {
            self.upgraded.get_or_create(&ResultLabels { result }).inc_by(n as u64);
        }
        for p in pauses {
            self.upgrade_pause.observe(p.as_secs_f64());
        }
    }

    /// The convention's leader changed, as this node sees it.
    pub fn leader_changed(&self) {
        self.leader_changes.inc();
    }

    /// This node learned it had been declared lost, and fenced itself.
    pub fn fenced(&self) {
        self.fenced.inc();
    }

    /// This leader found two holders of one global name and kept one.
    pub fn name_clash(&self) {
        self.name_clashes.inc();
    }

    /// A handler ran longer than the threshold (counted once, when it crossed it).
    pub fn long_handler(&self) {
        self.long_handlers.inc();
    }

    /// A version that was running is gone: `close` from its last actor's exit to its library
    /// being closed and its files deleted, `drain` from its unload to then.
    pub fn version_gone(&self, close: Duration, drain: Duration) {
        self.unload_close.observe(close.as_secs_f64());
        self.drain.observe(drain.as_secs_f64());
    }
}

/// What the endpoint reads from a node: its long-lived families and, at each scrape, a
/// snapshot of its state.
pub trait MetricsSource: Send + Sync {
    /// The node's long-lived families.
    fn metrics(&self) -> &Metrics;
    /// The node's state now. Called once per scrape, before [`MetricsSource::metrics`].
    fn snapshot(&self) -> Snapshot;
}
