//! The metrics endpoint as a scraper reads it: real nodes with `--metrics`, scraped over plain
//! TCP, and the text parsed by Python's `prometheus_client` (the reference client's parser),
//! in both formats the endpoint speaks. Every family must come out with its own type: a
//! sample the parser cannot tie to its `# TYPE` line turns into an untyped family.
//!
//! The parser is installed by `make test` into `<target>/py`; without it these tests fail and
//! say how to install it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use troupe_tests::{free_port, profile_dir, NodeProc, TestDir, FAST_HEARTBEAT};

/// The version `make test` installs (keep the two in step).
const PARSER: &str = "prometheus_client==0.26.0";

/// Parses stdin with the parser named by argv[1] and prints every family (name, type, samples)
/// as JSON. Exit 3 says the module is missing.
const PARSE_PY: &str = r#"
import json, sys
try:
    if sys.argv[1] == "openmetrics":
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    else:
        from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:
    print(e, file=sys.stderr)
    sys.exit(3)
print(json.dumps([
    {"name": f.name, "type": f.type,
     "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
    for f in text_string_to_metric_families(sys.stdin.read())
]))
"#;

/// Every family the endpoint writes, by the name the parsers give it, and its type.
const FAMILIES: [(&str, &str); 19] = [
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

const OPENMETRICS: &str = "application/openmetrics-text";

/// Where `make test` installs the parser: `<target>/py`.
fn python_path() -> PathBuf {
    profile_dir().parent().expect("the profile dir is inside the target dir").join("py")
}

/// The families Python's parser reads from `text`, in order; panics if it cannot parse it.
fn parse(text: &str, openmetrics: bool) -> Vec<Value> {
    let py = python_path();
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(PARSE_PY)
        .arg(if openmetrics { "openmetrics" } else { "prometheus" })
        .env("PYTHONPATH", &py)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run python3: the metrics tests need it (with prometheus_client, see `make test`)");
    child.stdin.take().expect("piped stdin").write_all(text.as_bytes()).expect("write to python3");
    let out = child.wait_with_output().expect("wait for python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(3),
        "Python's prometheus_client is not installed in {}: run `make test`, or \
         `python3 -m pip install --target {} {PARSER}` ({stderr})",
        py.display(),
        py.display()
    );
    assert!(out.status.success(), "the parser rejected the text ({stderr}):\n{text}");
    serde_json::from_slice(&out.stdout).expect("the parser prints JSON")
}

/// The families by name: each name once, or samples were split from their family (the bug
/// this file guards against).
fn by_name(families: Vec<Value>, text: &str) -> BTreeMap<String, Value> {
    let mut by_name = BTreeMap::new();
    for f in families {
        let name = f["name"].as_str().expect("a family has a name").to_string();
        assert!(by_name.insert(name.clone(), f).is_none(), "family {name} appears twice in:\n{text}");
    }
    by_name
}

/// The families by name, asserting that the parser read exactly the expected families, each
/// with its type.
fn typed(families: Vec<Value>, text: &str) -> BTreeMap<String, Value> {
    let families = by_name(families, text);
    let types: BTreeMap<&str, &str> = families
        .iter()
        .map(|(name, f)| (name.as_str(), f["type"].as_str().expect("a family has a type")))
        .collect();
    let want: BTreeMap<&str, &str> = FAMILIES.into_iter().collect();
    assert_eq!(types, want, "families and types as parsed from:\n{text}");
    families
}

/// The value of the sample `name` whose labels include `labels`.
fn value(families: &BTreeMap<String, Value>, family: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    families[family]["samples"]
        .as_array()
        .expect("samples are a list")
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {family}: {}", families[family]))
}

/// `GET /metrics` over plain TCP: the content type and the body.
fn scrape(addr: &str, accept: Option<&str>) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("the metrics endpoint accepts");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("set a read timeout");
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{accept}\r\n").expect("send the request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head: {response}"));
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let ctype = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or_else(|| panic!("no content type: {head}"));
    (ctype.to_string(), body.to_string())
}

/// Scrapes in both formats, checks both parse into the expected typed families, and returns
/// the OpenMetrics reading.
fn scrape_typed(addr: &str) -> BTreeMap<String, Value> {
    let (ctype, text) = scrape(addr, None);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    typed(parse(&text, false), &text);
    let (ctype, text) = scrape(addr, Some(&format!("{OPENMETRICS};version=1.0.0,text/plain;q=0.5")));
    assert_eq!(ctype, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    typed(parse(&text, true), &text)
}

#[test]
fn every_family_parses_with_its_type_in_both_formats() {
    let dir = TestDir::new();
    let leader_metrics = format!("127.0.0.1:{}", free_port());
    let member_metrics = format!("127.0.0.1:{}", free_port());
    let caps = "morse,Caesar cipher,64bit encoder";
    let mut extra = vec!["--metrics", leader_metrics.as_str()];
    extra.extend_from_slice(FAST_HEARTBEAT);
    let leader = NodeProc::start_with(&dir, caps, &extra);
    // A member, so that the leader has a peer and the member measures heartbeat round trips.
    let mut extra = vec!["--metrics", member_metrics.as_str()];
    extra.extend_from_slice(FAST_HEARTBEAT);
    let member = NodeProc::start_member(&dir, &leader.addr(), "", &extra);
    leader.wait_members(&[member.addr()]);
    let hash = leader.load(&dir.encoders_zip());
    leader.app(&hash, "hello").assert_ok();

    let families = scrape_typed(&leader_metrics);
    let short = &hash[..12];
    assert!(
        value(&families, "troupe_actors", "troupe_actors", &[("type", "app.Acceptor"), ("version", short)])
            >= 1.0
    );
    assert!(value(&families, "troupe_messages", "troupe_messages_total", &[("version", short)]) >= 1.0);
    value(&families, "troupe_mailbox_depth", "troupe_mailbox_depth", &[("version", short)]);
    assert_eq!(value(&families, "troupe_versions", "troupe_versions", &[("state", "active")]), 1.0);
    assert_eq!(value(&families, "troupe_versions", "troupe_versions", &[("state", "quarantined")]), 0.0);
    assert_eq!(value(&families, "troupe_loads", "troupe_loads_total", &[("result", "ok")]), 1.0);
    assert_eq!(value(&families, "troupe_loads", "troupe_loads_total", &[("result", "rejected")]), 0.0);
    assert_eq!(value(&families, "troupe_peer_up", "troupe_peer_up", &[("node", &member.addr())]), 1.0);
    assert!(value(&families, "troupe_pthread_keys_in_use", "troupe_pthread_keys_in_use", &[]) >= 1.0);
    // Histograms have their buckets up to +Inf, a sum and a count.
    for h in ["troupe_heartbeat_rtt_seconds", "troupe_drain_seconds", "troupe_unload_close_seconds"] {
        value(&families, h, &format!("{h}_bucket"), &[("le", "+Inf")]);
        value(&families, h, &format!("{h}_sum"), &[]);
        value(&families, h, &format!("{h}_count"), &[]);
    }

    // The member has measured its registrations with the leader.
    let on_member = scrape_some_typed(&member_metrics);
    assert!(
        value(&on_member, "troupe_heartbeat_rtt_seconds", "troupe_heartbeat_rtt_seconds_count", &[]) >= 1.0
    );

    // An unload that finishes is one drain and one close observed.
    leader.run("unload", &[&hash, "--grace", "200ms"]).assert_ok();
    let families = scrape_some_typed(&leader_metrics);
    for h in ["troupe_drain_seconds", "troupe_unload_close_seconds"] {
        assert_eq!(value(&families, h, &format!("{h}_count"), &[]), 1.0);
    }
}

/// Scrapes a node that may have no actors or versions (so no series in some families, which
/// are then absent): each family it has must still be known and have its type.
fn scrape_some_typed(addr: &str) -> BTreeMap<String, Value> {
    let (_, text) = scrape(addr, Some(OPENMETRICS));
    let families = by_name(parse(&text, true), &text);
    for (name, f) in &families {
        let want = FAMILIES.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        assert_eq!(f["type"].as_str(), want, "{name} in:\n{text}");
    }
    families
}

/// The text the endpoint wrote before prometheus-client (abridged from a real scrape): the
/// check above must reject it, or it would not guard anything.
const HAND_WRITTEN: &str = "\
# HELP troupe_actors Live actors on this node by type and version.
# TYPE troupe_actors gauge
troupe_actors{type=\"app.Acceptor\",version=\"0123456789ab\"} 1
# HELP troupe_mailbox_depth Messages queued to a version's actors and not yet handled.
# TYPE troupe_mailbox_depth gauge
# HELP troupe_messages_total Messages handled by a version's actors.
# TYPE troupe_messages_total counter
# HELP troupe_versions Loaded versions by state.
# TYPE troupe_versions gauge
troupe_mailbox_depth{version=\"0123456789ab\"} 0
troupe_messages_total{version=\"0123456789ab\"} 2
troupe_versions{state=\"validating\"} 0
troupe_versions{state=\"active\"} 1
troupe_versions{state=\"draining\"} 0
troupe_versions{state=\"quarantined\"} 0
# HELP troupe_loads_total Loads by result.
# TYPE troupe_loads_total counter
troupe_loads_total{result=\"ok\"} 1
troupe_loads_total{result=\"rejected\"} 0
# HELP troupe_unload_close_seconds Time from a version's last actor exit to its library being closed and deleted (recent unloads).
# TYPE troupe_unload_close_seconds gauge
# HELP troupe_drain_seconds Time from a version's unload to its library being closed (recent unloads).
# TYPE troupe_drain_seconds gauge
# HELP troupe_peer_up Whether a member of the convention was heard from within the failure-detection time.
# TYPE troupe_peer_up gauge
troupe_peer_up{node=\"127.0.0.1:1901\"} 1
# HELP troupe_heartbeat_rtt_seconds The last registration round trip to the leader.
# TYPE troupe_heartbeat_rtt_seconds gauge
troupe_heartbeat_rtt_seconds 0.000000
# HELP troupe_pthread_keys_in_use pthread keys used by the process (limit 1024).
# TYPE troupe_pthread_keys_in_use gauge
troupe_pthread_keys_in_use 3
";

#[test]
fn the_check_rejects_the_old_hand_written_text() {
    let families = parse(HAND_WRITTEN, false);
    // The samples printed after the wrong TYPE line come out as families of their own, untyped.
    assert!(families.iter().any(|f| f["type"] == "unknown"), "the parser typed every family: {families:?}");
    let check = std::panic::catch_unwind(|| typed(families, HAND_WRITTEN));
    assert!(check.is_err(), "the check accepted the old text");
}
