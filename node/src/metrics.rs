//! The Prometheus metrics endpoint (`troupe start --metrics 127.0.0.1:9464`): off by default,
//! loopback only.
//!
//! The text is written by `prometheus-client` from typed families, so every `# TYPE` line comes
//! right before its own samples and a histogram is a histogram. Two kinds of state feed it:
//! - [`Metrics`]: the long-lived families (loads, heartbeat round trips, drain and close times),
//!   created once per node and fed as things happen;
//! - [`Snapshot`]: plain numbers read from the node at scrape time (actors, versions, peers),
//!   turned into gauges by [`render`] in a registry built for that one scrape.
//!
//! The node is reached only through [`MetricsSource`], so this module knows nothing of the
//! node's internals (except the temporary adapter at the bottom). [`serve`] is a deliberately
//! tiny HTTP/1.1 responder: `GET /metrics` only, one request per connection, bounded request
//! size. It speaks OpenMetrics to a scraper that asks for it (Prometheus does) and the
//! Prometheus text format 0.0.4 to everyone else (curl, older scrapers).

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request line and headers of an honest scraper fit easily; more is not a scrape.
const MAX_REQUEST_BYTES: usize = 8192;

/// How long a client may take to send its request before the connection is dropped: a scraper
/// sends it at once, so this only bounds how long a stuck client holds a task.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Every family's name starts with this (`troupe_actors`, ...).
const PREFIX: &str = "troupe";

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

/// Closing a library and deleting its files after the last actor exits: ~1 ms normally, so fine
/// buckets around 1 ms, and a few up to 10 s to show an `on_unload` that takes its time.
const CLOSE_BUCKETS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0];

/// The four version states; `troupe_versions` always has a sample for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VersionState {
    /// Its library is being loaded and checked.
    Validating,
    /// Accepting new actors.
    Active,
    /// Unloaded, waiting for its actors to exit.
    Draining,
    /// Its `on_unload` hung: never closed while its thread is stuck.
    Quarantined,
}

impl VersionState {
    /// Every state, in the order they are written.
    pub const ALL: [VersionState; 4] =
        [VersionState::Validating, VersionState::Active, VersionState::Draining, VersionState::Quarantined];

    /// The `state` label's value.
    pub fn label(self) -> &'static str {
        match self {
            VersionState::Validating => "validating",
            VersionState::Active => "active",
            VersionState::Draining => "draining",
            VersionState::Quarantined => "quarantined",
        }
    }
}

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
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActorLabels {
    r#type: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

/// The node's long-lived metric families: created once per node and fed as things happen.
/// Clones share the same families (each is an `Arc` inside), so a clone can go to whichever
/// task observes.
#[derive(Clone, Debug)]
pub struct Metrics {
    loads: Family<ResultLabels, Counter>,
    heartbeat_rtt: Histogram,
    drain: Histogram,
    unload_close: Histogram,
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
        Metrics {
            loads,
            heartbeat_rtt: Histogram::new(RTT_BUCKETS),
            drain: Histogram::new(DRAIN_BUCKETS),
            unload_close: Histogram::new(CLOSE_BUCKETS),
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

    /// A registration round trip to the leader took `rtt` (members).
    pub fn heartbeat_rtt(&self, rtt: Duration) {
        self.heartbeat_rtt.observe(rtt.as_secs_f64());
    }

    /// A version that was running is gone: `close` from its last actor's exit to its library
    /// being closed and its files deleted, `drain` from its unload to then.
    pub fn version_gone(&self, close: Duration, drain: Duration) {
        self.unload_close.observe(close.as_secs_f64());
        self.drain.observe(drain.as_secs_f64());
    }
}

/// Which text the endpoint writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text: counters are typed under their name without `_total`, histograms
    /// carry a `# UNIT`, and the text ends with `# EOF` so a cut-off scrape is noticed.
    OpenMetrics,
    /// The Prometheus text format 0.0.4, which every scraper reads.
    Prometheus,
}

impl Format {
    /// The `Content-Type` of this format's text.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format for a request's `Accept` header: OpenMetrics if the scraper lists it (as
    /// Prometheus does), else 0.0.4, which needs no negotiation. Quality values are not
    /// weighed: a scraper that names OpenMetrics at all reads it.
    pub fn for_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.to_ascii_lowercase().contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }
}

/// The metrics text in OpenMetrics format (see [`render_as`]).
pub fn render(metrics: &Metrics, snapshot: &Snapshot) -> String {
    render_as(Format::OpenMetrics, metrics, snapshot)
}

/// The metrics text in `format`, from a registry built for this one scrape: the long-lived
/// families of `metrics` plus gauges filled from `snapshot`.
pub fn render_as(format: Format, metrics: &Metrics, snapshot: &Snapshot) -> String {
    let registry = registry(metrics, snapshot);
    let mut out = String::new();
    let written = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
    };
    // The encoders fail only when their writer does (a String never does) or when a value does
    // not fit its type, and every gauge below is set through `gauge_value`, which saturates.
    written.expect("encoding metrics into a String cannot fail");
    out
}

/// A count as a gauge's value (gauges are `i64`).
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn registry(metrics: &Metrics, snapshot: &Snapshot) -> Registry {
    let mut reg = Registry::with_prefix(PREFIX);

    let actors = Family::<ActorLabels, Gauge>::default();
    for ((type_name, version), n) in &snapshot.actors {
        let labels = ActorLabels { r#type: type_name.clone(), version: version.clone() };
        actors.get_or_create(&labels).inc_by(gauge_value(*n));
    }
    reg.register("actors", "Live actors on this node by type and version", actors);

    let depth = Family::<VersionLabels, Gauge>::default();
    let handled = Family::<VersionLabels, Counter>::default();
    let mut states: BTreeMap<VersionState, i64> = VersionState::ALL.iter().map(|s| (*s, 0)).collect();
    for v in &snapshot.versions {
        let labels = VersionLabels { version: v.version.clone() };
        depth.get_or_create(&labels).inc_by(gauge_value(v.mailbox_depth));
        handled.get_or_create(&labels).inc_by(v.handled);
        *states.entry(v.state).or_default() += 1;
    }
    reg.register("mailbox_depth", "Messages queued to a version's actors and not yet handled", depth);
    reg.register("messages", "Messages handled by a version's actors", handled);
    let versions = Family::<StateLabels, Gauge>::default();
    for (state, n) in states {
        versions.get_or_create(&StateLabels { state: state.label() }).set(n);
    }
    reg.register("versions", "Loaded versions by state", versions);

    reg.register("loads", "Loads by result", metrics.loads.clone());
    reg.register_with_unit(
        "unload_close",
        "Time from a version's last actor exit to its library being closed and deleted",
        Unit::Seconds,
        metrics.unload_close.clone(),
    );
    reg.register_with_unit(
        "drain",
        "Time from a version's unload to its library being closed",
        Unit::Seconds,
        metrics.drain.clone(),
    );

    let peers = Family::<NodeLabels, Gauge>::default();
    for p in &snapshot.peers {
        peers.get_or_create(&NodeLabels { node: p.node.clone() }).set(i64::from(p.up));
    }
    reg.register(
        "peer_up",
        "Whether a member of the convention was heard from within the failure-detection time",
        peers,
    );
    reg.register_with_unit(
        "heartbeat_rtt",
        "Registration round trips to the leader (members)",
        Unit::Seconds,
        metrics.heartbeat_rtt.clone(),
    );

    let keys = Gauge::<i64>::default();
    keys.set(i64::from(snapshot.pthread_keys_in_use));
    reg.register("pthread_keys_in_use", "pthread keys used by the process (limit 1024)", keys);
    reg
}

/// What the endpoint reads from a node: its long-lived families and, at each scrape, a
/// snapshot of its state.
pub trait MetricsSource: Send + Sync {
    /// The node's long-lived families.
    fn metrics(&self) -> &Metrics;
    /// The node's state now. Called once per scrape, before [`MetricsSource::metrics`].
    fn snapshot(&self) -> Snapshot;
}

/// Serves `/metrics` on `listener` for as long as the node lives: the endpoint holds the node
/// only weakly, so it stops at the first connection after the node is dropped.
pub async fn serve<S: MetricsSource + ?Sized + 'static>(source: Weak<S>, listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let Some(s) = source.upgrade() else { break };
        tokio::spawn(async move { respond(&*s, &mut stream).await });
    }
}

/// Reads the request head, up to the blank line and at most [`MAX_REQUEST_BYTES`]; `None` if
/// the client closes, errs or dawdles first.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST_BYTES {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(true) => Some(String::from_utf8_lossy(&buf).into_owned()),
        _ => None,
    }
}

/// The value of header `name` (case-insensitive) in a request head.
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then_some(value.trim())
    })
}

async fn respond<S: MetricsSource + ?Sized>(source: &S, stream: &mut tokio::net::TcpStream) {
    let Some(head) = read_head(stream).await else { return };
    let (status, body, ctype) = if head.starts_with("GET /metrics ") || head.starts_with("GET /metrics?") {
        let format = Format::for_accept(header(&head, "accept"));
        // The snapshot first: a source may bring its families up to date while taking it.
        let snapshot = source.snapshot();
        ("200 OK", render_as(format, source.metrics(), &snapshot), format.content_type())
    } else {
        ("404 Not Found", "only /metrics is served here\n".to_string(), "text/plain; charset=utf-8")
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

// Adapter to today's Shared; replaced when the core is split.
//
// Until the core owns a `Metrics` and feeds it where things happen, the families live in a
// process-wide static (one node per process: `troupe start`) and are brought up to date from
// the node's own counters at each scrape:
// - loads: `counters.loads_ok` / `loads_rejected` are added by their growth since the last
//   scrape (exact);
// - heartbeat RTT: the node keeps only the last round trip, so it is observed once per scrape
//   when it changed (approximate: round trips between scrapes are missed);
// - drain and close times: each entry of the node's recent-unload history is observed once
//   (exact unless more versions are unloaded between two scrapes than the history holds).

mod adapter {
    use std::collections::BTreeSet;
    use std::sync::atomic::Ordering;
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;

    use super::{
        short_hash, Metrics, MetricsSource, PeerSample, ResultLabels, Snapshot, VersionSample, VersionState,
    };
    use crate::node::{ActorKind, Shared};

    /// The families and what of the node's counters they already hold.
    struct Mirror {
        metrics: Metrics,
        seen: Mutex<Seen>,
    }

    #[derive(Default)]
    struct Seen {
        loads_ok: u64,
        loads_rejected: u64,
        heartbeat_rtt_us: u64,
        /// Generations in the node's unload history already observed.
        gone: BTreeSet<u64>,
    }

    /// One entry of the node's unload history.
    struct Gone {
        generation: u64,
        close: Duration,
        drain: Duration,
    }

    fn mirror() -> &'static Mirror {
        static MIRROR: OnceLock<Mirror> = OnceLock::new();
        MIRROR.get_or_init(|| Mirror { metrics: Metrics::new(), seen: Mutex::new(Seen::default()) })
    }

    fn from_ms(ms: f64) -> Duration {
        Duration::try_from_secs_f64(ms / 1000.0).unwrap_or_default()
    }

    impl Mirror {
        fn catch_up(&self, shared: &Shared, gone: &[Gone]) {
            // A poisoned lock only means a scrape panicked midway: the numbers are still usable.
            let mut guard = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let seen = &mut *guard;
            for (result, counter, seen) in [
                ("ok", &shared.counters.loads_ok, &mut seen.loads_ok),
                ("rejected", &shared.counters.loads_rejected, &mut seen.loads_rejected),
            ] {
                let now = counter.load(Ordering::Relaxed);
                self.metrics.loads.get_or_create(&ResultLabels { result }).inc_by(now.saturating_sub(*seen));
                *seen = now.max(*seen);
            }
            let rtt = shared.counters.heartbeat_rtt_us.load(Ordering::Relaxed);
            if rtt != 0 && rtt != seen.heartbeat_rtt_us {
                self.metrics.heartbeat_rtt(Duration::from_micros(rtt));
            }
            seen.heartbeat_rtt_us = rtt;
            for g in gone.iter().filter(|g| !seen.gone.contains(&g.generation)) {
                self.metrics.version_gone(g.close, g.drain);
            }
            // An entry that left the history never comes back: remember only the current ones.
            seen.gone = gone.iter().map(|g| g.generation).collect();
        }
    }

    impl MetricsSource for Shared {
        fn metrics(&self) -> &Metrics {
            &mirror().metrics
        }

        fn snapshot(&self) -> Snapshot {
            let mut snap = Snapshot::default();
            let st = self.lock();
            for rec in st.actors.values() {
                if let ActorKind::Plugin { hash, type_name, .. }
                | ActorKind::Pending { hash, type_name, .. } = &rec.kind
                {
                    *snap.actors.entry((type_name.clone(), short_hash(hash).to_string())).or_default() += 1;
                }
            }
            for v in st.versions.values() {
                let enqueued = v.stats.enqueued.load(Ordering::Relaxed);
                let handled = v.stats.handled.load(Ordering::Relaxed);
                snap.versions.push(VersionSample {
                    version: short_hash(&v.hash).to_string(),
                    state: match v.state {
                        crate::node::VersionState::Validating => VersionState::Validating,
                        crate::node::VersionState::Active => VersionState::Active,
                        crate::node::VersionState::Draining => VersionState::Draining,
                        crate::node::VersionState::Quarantined => VersionState::Quarantined,
                    },
                    mailbox_depth: enqueued.saturating_sub(handled),
                    handled,
                });
            }
            for m in st.members.values() {
                let up = m.last_seen.elapsed() <= self.conv.dead_after;
                snap.peers.push(PeerSample { node: m.info.node.clone(), up });
            }
            let gone: Vec<Gone> = st
                .gone
                .iter()
                .map(|g| Gone {
                    generation: g.generation,
                    close: from_ms(g.unload_ms),
                    drain: from_ms(g.drain_ms),
                })
                .collect();
            drop(st);
            snap.pthread_keys_in_use = crate::pthread_keys_in_use();
            mirror().catch_up(self, &gone);
            snap
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the layout of a text the way a strict parser would, and returns each family's type:
    /// every sample belongs to the family whose `# TYPE` line came last, and its name is the
    /// family's name plus a suffix that family's type allows.
    fn families(text: &str) -> BTreeMap<String, String> {
        let mut types = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("a TYPE line has a name and a type");
                assert!(types.insert(name.to_string(), ty.to_string()).is_none(), "{name} typed twice");
                current = Some((name.to_string(), ty.to_string()));
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let sample = line.split(['{', ' ']).next().unwrap();
            let (family, ty) = current.as_ref().unwrap_or_else(|| panic!("{sample} before any TYPE"));
            let suffix = sample
                .strip_prefix(family.as_str())
                .unwrap_or_else(|| panic!("sample {sample} is not of the family typed last ({family})"));
            let allowed: &[&str] = match ty.as_str() {
                "counter" if family.ends_with("_total") => &[""],
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                _ => &[""],
            };
            assert!(allowed.contains(&suffix), "sample {sample} does not fit {ty} {family}");
        }
        types
    }

    fn snapshot() -> Snapshot {
        let mut actors = BTreeMap::new();
        actors.insert(("app.Acceptor".to_string(), "0123456789ab".to_string()), 2);
        actors.insert(("we\"ird\\type\nx".to_string(), "0123456789ab".to_string()), 1);
        Snapshot {
            actors,
            versions: vec![
                VersionSample {
                    version: "0123456789ab".into(),
                    state: VersionState::Active,
                    mailbox_depth: 3,
                    handled: 40,
                },
                VersionSample {
                    version: "0123456789ab".into(),
                    state: VersionState::Draining,
                    mailbox_depth: 1,
                    handled: 2,
                },
            ],
            peers: vec![PeerSample { node: "127.0.0.1:1901".into(), up: true }],
            pthread_keys_in_use: 7,
        }
    }

    fn observed() -> Metrics {
        let m = Metrics::new();
        m.load_ok();
        m.load_ok();
        m.load_rejected();
        m.heartbeat_rtt(Duration::from_micros(2000));
        m.version_gone(Duration::from_micros(900), Duration::from_secs(2));
        m
    }

    const OPENMETRICS_TYPES: [(&str, &str); 10] = [
        ("troupe_actors", "gauge"),
        ("troupe_mailbox_depth", "gauge"),
        ("troupe_messages", "counter"),
        ("troupe_versions", "gauge"),
        ("troupe_loads", "counter"),
        ("troupe_unload_close_seconds", "histogram"),
        ("troupe_drain_seconds", "histogram"),
        ("troupe_peer_up", "gauge"),
        ("troupe_heartbeat_rtt_seconds", "histogram"),
        ("troupe_pthread_keys_in_use", "gauge"),
    ];

    #[test]
    fn every_family_is_typed_before_its_samples_in_both_formats() {
        let om = render(&observed(), &snapshot());
        let want: BTreeMap<String, String> =
            OPENMETRICS_TYPES.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        assert_eq!(families(&om), want, "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# UNIT troupe_heartbeat_rtt_seconds seconds\n"), "{om}");

        // 0.0.4 names a counter's family with its `_total`, as today's text did.
        let text = render_as(Format::Prometheus, &observed(), &snapshot());
        let mut want = want;
        for counter in ["troupe_messages", "troupe_loads"] {
            want.remove(counter);
            want.insert(format!("{counter}_total"), "counter".into());
        }
        assert_eq!(families(&text), want, "{text}");
    }

    #[test]
    fn the_layout_check_rejects_the_old_hand_written_text() {
        // The shape of the text before prometheus-client: TYPE lines first, samples later.
        let old = "# TYPE troupe_mailbox_depth gauge\n# TYPE troupe_messages_total counter\n\
                   troupe_mailbox_depth{version=\"a\"} 0\ntroupe_messages_total{version=\"a\"} 0\n";
        assert!(std::panic::catch_unwind(|| families(old)).is_err());
    }

    #[test]
    fn samples_carry_the_snapshot_and_the_observations() {
        let text = render_as(Format::Prometheus, &observed(), &snapshot());
        for sample in [
            "troupe_actors{type=\"app.Acceptor\",version=\"0123456789ab\"} 2\n",
            // Two generations of one hash add up under one label.
            "troupe_mailbox_depth{version=\"0123456789ab\"} 4\n",
            "troupe_messages_total{version=\"0123456789ab\"} 42\n",
            "troupe_versions{state=\"validating\"} 0\n",
            "troupe_versions{state=\"active\"} 1\n",
            "troupe_versions{state=\"draining\"} 1\n",
            "troupe_versions{state=\"quarantined\"} 0\n",
            "troupe_loads_total{result=\"ok\"} 2\n",
            "troupe_loads_total{result=\"rejected\"} 1\n",
            "troupe_peer_up{node=\"127.0.0.1:1901\"} 1\n",
            "troupe_pthread_keys_in_use 7\n",
            "troupe_heartbeat_rtt_seconds_bucket{le=\"0.001\"} 0\n",
            "troupe_heartbeat_rtt_seconds_bucket{le=\"0.0025\"} 1\n",
            "troupe_heartbeat_rtt_seconds_bucket{le=\"+Inf\"} 1\n",
            "troupe_heartbeat_rtt_seconds_sum 0.002\n",
            "troupe_heartbeat_rtt_seconds_count 1\n",
            "troupe_unload_close_seconds_bucket{le=\"0.001\"} 1\n",
            "troupe_unload_close_seconds_count 1\n",
            "troupe_drain_seconds_bucket{le=\"1\"} 0\n",
            "troupe_drain_seconds_bucket{le=\"3\"} 1\n",
            "troupe_drain_seconds_sum 2.0\n",
            "troupe_drain_seconds_count 1\n",
        ] {
            assert!(text.contains(sample), "missing {sample:?} in:\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&Metrics::new(), &snapshot());
        assert!(
            text.contains(r#"troupe_actors{type="we\"ird\\type\nx",version="0123456789ab"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn an_empty_node_still_has_its_unlabelled_families_and_every_version_state() {
        let text = render_as(Format::Prometheus, &Metrics::new(), &Snapshot::default());
        // A labelled family with no series yet (no actors, no peers) is left out by the encoder.
        let names: Vec<String> = families(&text).into_keys().collect();
        let want = [
            "troupe_drain_seconds",
            "troupe_heartbeat_rtt_seconds",
            "troupe_loads_total",
            "troupe_pthread_keys_in_use",
            "troupe_unload_close_seconds",
            "troupe_versions",
        ];
        assert_eq!(names, want, "{text}");
        for state in VersionState::ALL {
            assert!(text.contains(&format!("troupe_versions{{state=\"{}\"}} 0\n", state.label())), "{text}");
        }
        assert!(text.contains("troupe_loads_total{result=\"rejected\"} 0\n"), "{text}");
        assert!(text.contains("troupe_heartbeat_rtt_seconds_count 0\n"), "{text}");
    }

    #[test]
    fn openmetrics_goes_to_scrapers_that_ask_for_it() {
        let prometheus =
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::for_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::for_accept(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::for_accept(None), Format::Prometheus);
        let head = "GET /metrics HTTP/1.1\r\nHost: x\r\nACCEPT:  text/plain \r\n\r\n";
        assert_eq!(header(head, "accept"), Some("text/plain"));
        assert_eq!(header(head, "user-agent"), None);
    }

    struct Fixed(Metrics);

    impl MetricsSource for Fixed {
        fn metrics(&self) -> &Metrics {
            &self.0
        }
        fn snapshot(&self) -> Snapshot {
            snapshot()
        }
    }

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn the_endpoint_serves_metrics_negotiates_the_format_and_nothing_else() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let source: std::sync::Arc<dyn MetricsSource> = std::sync::Arc::new(Fixed(observed()));
        tokio::spawn(serve(std::sync::Arc::downgrade(&source), listener));

        let plain = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(plain.starts_with("HTTP/1.1 200 OK\r\n"), "{plain}");
        assert!(plain.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{plain}");
        assert!(plain.contains("troupe_loads_total{result=\"ok\"} 2\n"), "{plain}");

        let om = get(addr, "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n").await;
        assert!(om.contains(&format!("Content-Type: {}\r\n", Format::OpenMetrics.content_type())), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");

        let other = get(addr, "GET /other HTTP/1.1\r\n\r\n").await;
        assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
    }
}
