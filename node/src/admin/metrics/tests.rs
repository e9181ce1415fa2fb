//! The metrics text, checked as a standard parser reads it.

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
                threads_busy: 1,
                threads_idle: 1,
                long_handlers: 1,
            },
            VersionSample {
                version: "0123456789ab".into(),
                state: VersionState::Draining,
                mailbox_depth: 1,
                handled: 2,
                threads_busy: 0,
                threads_idle: 1,
                long_handlers: 0,
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
    m.upgraded(2, 1, 0, &[Duration::from_micros(40), Duration::from_micros(60)]);
    m
}

const OPENMETRICS_TYPES: [(&str, &str); 19] = [
    ("troupe_actors", "gauge"),
    ("troupe_mailbox_depth", "gauge"),
    ("troupe_version_threads", "gauge"),
    ("troupe_long_handlers_running", "gauge"),
    ("troupe_long_handlers", "counter"),
    ("troupe_messages", "counter"),
    ("troupe_versions", "gauge"),
    ("troupe_loads", "counter"),
    ("troupe_fetches", "counter"),
    ("troupe_leader_changes", "counter"),
    ("troupe_fenced", "counter"),
    ("troupe_name_clashes", "counter"),
    ("troupe_upgraded_actors", "counter"),
    ("troupe_upgrade_pause_seconds", "histogram"),
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
    for counter in [
        "troupe_messages",
        "troupe_loads",
        "troupe_fetches",
        "troupe_long_handlers",
        "troupe_upgraded_actors",
        "troupe_leader_changes",
        "troupe_fenced",
        "troupe_name_clashes",
    ] {
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
    assert!(text.contains(r#"troupe_actors{type="we\"ird\\type\nx",version="0123456789ab"} 1"#), "{text}");
}

#[test]
fn an_empty_node_still_has_its_unlabelled_families_and_every_version_state() {
    let text = render_as(Format::Prometheus, &Metrics::new(), &Snapshot::default());
    // A labelled family with no series yet (no actors, no peers) is left out by the encoder.
    let names: Vec<String> = families(&text).into_keys().collect();
    let want = [
        "troupe_drain_seconds",
        "troupe_fenced_total",
        "troupe_fetches_total",
        "troupe_heartbeat_rtt_seconds",
        "troupe_leader_changes_total",
        "troupe_loads_total",
        "troupe_long_handlers_total",
        "troupe_name_clashes_total",
        "troupe_pthread_keys_in_use",
        "troupe_unload_close_seconds",
        "troupe_upgrade_pause_seconds",
        "troupe_upgraded_actors_total",
        "troupe_versions",
    ];
    assert_eq!(names, want, "{text}");
    for state in VersionState::ALL {
        assert!(text.contains(&format!("troupe_versions{{state=\"{}\"}} 0\n", state.label())), "{text}");
    }
    assert!(text.contains("troupe_loads_total{result=\"rejected\"} 0\n"), "{text}");
    assert!(text.contains("troupe_fetches_total{result=\"failed\"} 0\n"), "{text}");
    assert!(text.contains("troupe_heartbeat_rtt_seconds_count 0\n"), "{text}");
}

#[test]
fn openmetrics_goes_to_scrapers_that_ask_for_it() {
    let prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
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
