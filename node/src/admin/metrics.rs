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
//! The node is reached only through [`MetricsSource`] (implemented by the core in
//! `ops/report.rs`), so this module knows nothing of the node's internals. [`serve`] is a deliberately
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
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub use crate::model::metrics::{
    short_hash, Metrics, MetricsSource, PeerSample, Snapshot, VersionSample, VersionState,
};

/// A request line and headers of an honest scraper fit easily; more is not a scrape.
const MAX_REQUEST_BYTES: usize = 8192;

/// How long a client may take to send its request before the connection is dropped: a scraper
/// sends it at once, so this only bounds how long a stuck client holds a task.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Every family's name starts with this (`troupe_actors`, ...).
const PREFIX: &str = "troupe";

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
struct ThreadLabels {
    version: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
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
    let threads = Family::<ThreadLabels, Gauge>::default();
    let long = Family::<VersionLabels, Gauge>::default();
    for v in &snapshot.versions {
        let busy = ThreadLabels { version: v.version.clone(), state: "busy" };
        threads.get_or_create(&busy).inc_by(gauge_value(v.threads_busy));
        let idle = ThreadLabels { version: v.version.clone(), state: "idle" };
        threads.get_or_create(&idle).inc_by(gauge_value(v.threads_idle));
        let labels = VersionLabels { version: v.version.clone() };
        long.get_or_create(&labels).inc_by(gauge_value(v.long_handlers));
    }
    reg.register("version_threads", "A version's threads, running a call (busy) or waiting (idle)", threads);
    reg.register("long_handlers_running", "Handlers running longer than --long-handler now", long);
    reg.register(
        "long_handlers",
        "Handlers that ran longer than --long-handler (counted when they crossed it)",
        metrics.long_handlers.clone(),
    );
    reg.register("messages", "Messages handled by a version's actors", handled);
    let versions = Family::<StateLabels, Gauge>::default();
    for (state, n) in states {
        versions.get_or_create(&StateLabels { state: state.label() }).set(n);
    }
    reg.register("versions", "Loaded versions by state", versions);

    reg.register("loads", "Loads by result", metrics.loads.clone());
    reg.register("fetches", "Versions fetched from a peer, by result", metrics.fetches.clone());
    reg.register(
        "leader_changes",
        "Changes of the convention's leader seen by this node",
        metrics.leader_changes.clone(),
    );
    reg.register(
        "fenced",
        "Times this node learned it had been declared lost and fenced itself",
        metrics.fenced.clone(),
    );
    reg.register(
        "name_clashes",
        "Global names found with two holders when a leader rebuilt its table (one kept, one stopped)",
        metrics.name_clashes.clone(),
    );
    reg.register(
        "upgraded_actors",
        "Actors a live upgrade moved, left (they do not migrate) or failed to move",
        metrics.upgraded.clone(),
    );
    reg.register_with_unit(
        "upgrade_pause",
        "How long a live upgrade paused each actor it moved",
        Unit::Seconds,
        metrics.upgrade_pause.clone(),
    );
    reg.register_with_unit(
        "unload_close",
        "Time from a version's thread exiting to its library being closed and its copies freed",
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

#[cfg(test)]
mod tests;
