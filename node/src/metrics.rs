//! The Prometheus metrics endpoint (`troupe start --metrics 127.0.0.1:9464`): off by default,
//! loopback only. Serves `GET /metrics` in the Prometheus text format (version 0.0.4) with a
//! deliberately tiny HTTP/1.1 responder: one request per connection, bounded request size.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::node::{ActorKind, Shared};

/// A request line and headers of an honest scraper fit easily; more is not a scrape.
const MAX_REQUEST_BYTES: usize = 8192;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The metrics text.
pub fn render(shared: &Shared) -> String {
    let mut out = String::new();
    let st = shared.lock();
    let mut by_type: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for rec in st.actors.values() {
        if let ActorKind::Plugin { hash, type_name, .. } | ActorKind::Pending { hash, type_name, .. } =
            &rec.kind
        {
            *by_type.entry((type_name.clone(), hash[..12.min(hash.len())].to_string())).or_default() += 1;
        }
    }
    let _ = writeln!(out, "# HELP troupe_actors Live actors on this node by type and version.");
    let _ = writeln!(out, "# TYPE troupe_actors gauge");
    for ((t, v), n) in &by_type {
        let _ = writeln!(out, "troupe_actors{{type=\"{}\",version=\"{}\"}} {n}", label(t), label(v));
    }
    let _ = writeln!(
        out,
        "# HELP troupe_mailbox_depth Messages queued to a version's actors and not yet handled."
    );
    let _ = writeln!(out, "# TYPE troupe_mailbox_depth gauge");
    let _ = writeln!(out, "# HELP troupe_messages_total Messages handled by a version's actors.");
    let _ = writeln!(out, "# TYPE troupe_messages_total counter");
    let _ = writeln!(out, "# HELP troupe_versions Loaded versions by state.");
    let _ = writeln!(out, "# TYPE troupe_versions gauge");
    let mut states: std::collections::BTreeMap<&str, u64> = Default::default();
    let mut depth = String::new();
    let mut handled = String::new();
    for v in st.versions.values() {
        *states.entry(v.state.name()).or_default() += 1;
        let enq = v.stats.enqueued.load(Ordering::Relaxed);
        let done = v.stats.handled.load(Ordering::Relaxed);
        let short = &v.hash[..12.min(v.hash.len())];
        let _ = writeln!(depth, "troupe_mailbox_depth{{version=\"{short}\"}} {}", enq.saturating_sub(done));
        let _ = writeln!(handled, "troupe_messages_total{{version=\"{short}\"}} {done}");
    }
    out += &depth;
    out += &handled;
    for s in ["validating", "active", "draining", "quarantined"] {
        let _ = writeln!(out, "troupe_versions{{state=\"{s}\"}} {}", states.get(s).copied().unwrap_or(0));
    }
    let _ = writeln!(out, "# HELP troupe_loads_total Loads by result.");
    let _ = writeln!(out, "# TYPE troupe_loads_total counter");
    let _ = writeln!(
        out,
        "troupe_loads_total{{result=\"ok\"}} {}",
        shared.counters.loads_ok.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "troupe_loads_total{{result=\"rejected\"}} {}",
        shared.counters.loads_rejected.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# HELP troupe_unload_close_seconds Time from a version's last actor exit to its library being closed and deleted (recent unloads).");
    let _ = writeln!(out, "# TYPE troupe_unload_close_seconds gauge");
    let _ = writeln!(out, "# HELP troupe_drain_seconds Time from a version's unload to its library being closed (recent unloads).");
    let _ = writeln!(out, "# TYPE troupe_drain_seconds gauge");
    for g in &st.gone {
        let short = &g.hash[..12.min(g.hash.len())];
        let _ = writeln!(
            out,
            "troupe_unload_close_seconds{{version=\"{short}\",generation=\"{}\"}} {:.6}",
            g.generation,
            g.unload_ms / 1000.0
        );
        let _ = writeln!(
            out,
            "troupe_drain_seconds{{version=\"{short}\",generation=\"{}\"}} {:.6}",
            g.generation,
            g.drain_ms / 1000.0
        );
    }
    let _ = writeln!(out, "# HELP troupe_peer_up Whether a member of the convention was heard from within the failure-detection time.");
    let _ = writeln!(out, "# TYPE troupe_peer_up gauge");
    for m in st.members.values() {
        let up = m.last_seen.elapsed() <= shared.conv.dead_after;
        let _ = writeln!(out, "troupe_peer_up{{node=\"{}\"}} {}", label(&m.info.node), u8::from(up));
    }
    let _ =
        writeln!(out, "# HELP troupe_heartbeat_rtt_seconds The last registration round trip to the leader.");
    let _ = writeln!(out, "# TYPE troupe_heartbeat_rtt_seconds gauge");
    let _ = writeln!(
        out,
        "troupe_heartbeat_rtt_seconds {:.6}",
        shared.counters.heartbeat_rtt_us.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "# HELP troupe_pthread_keys_in_use pthread keys used by the process (limit 1024).");
    let _ = writeln!(out, "# TYPE troupe_pthread_keys_in_use gauge");
    drop(st);
    let _ = writeln!(out, "troupe_pthread_keys_in_use {}", crate::pthread_keys_in_use());
    out
}

/// Serves `/metrics` on `listener` for as long as the node lives.
pub async fn serve(shared: std::sync::Weak<Shared>, listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let Some(s) = shared.upgrade() else { break };
        tokio::spawn(async move { respond(&s, &mut stream).await });
    }
}

async fn respond(shared: &Arc<Shared>, stream: &mut tokio::net::TcpStream) {
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
    if !matches!(tokio::time::timeout(Duration::from_secs(5), read).await, Ok(true)) {
        return;
    }
    let line = String::from_utf8_lossy(&buf);
    let (status, body, ctype) = if line.starts_with("GET /metrics ") || line.starts_with("GET /metrics?") {
        ("200 OK", render(shared), "text/plain; version=0.0.4; charset=utf-8")
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
