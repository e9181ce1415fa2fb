//! Operating Troupe: releases by name (deploy, `@NAME`, rollback), the metrics endpoint, logs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use troupe_tests::*;

/// What each request of the flow saw: succeeded, its Encoder line, its whole output.
type Seen = Arc<Mutex<Vec<(bool, Option<String>, String)>>>;

/// Polls `f` until it returns true or `timeout` passes.
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The Encoder line of an `app` run: `hello` in v1, `olleh` in v2.
fn encoder_line(out: &Cli) -> Option<String> {
    out.lines().into_iter().find(|l| l.starts_with("Encoder "))
}

#[test]
fn deploy_moves_new_requests_to_the_new_version_without_failing_any_and_rollback_brings_the_old_back() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "morse,Caesar cipher,64bit encoder");
    let v1 = dir.encoders_zip();
    let v2 = dir.encoders_v2_zip();

    let out = node.run("deploy", &[&v1.display().to_string(), "--group", "encoders"]);
    out.assert_ok();
    let first = node.app("@encoders", "hello");
    first.assert_ok();
    assert_eq!(encoder_line(&first).as_deref(), Some("Encoder [density=1.000]  hello"), "{first}");

    // Requests keep flowing while v2 is deployed: none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let port = node.port_arg();
    let flow = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = troupe(&["app", "@encoders", "--port", &port], Some("hello"));
                let ok = out.code == 0 && out.lines().len() == 4;
                seen.lock().unwrap().push((ok, encoder_line(&out), out.to_string()));
            }
        })
    };
    eventually("a few requests on v1", Duration::from_secs(20), || seen.lock().unwrap().len() >= 3);
    let out = node.run("deploy", &[&v2.display().to_string(), "--group", "encoders"]);
    out.assert_ok();
    assert!(out.stdout.contains("previous"), "deploy names the previous version:\n{out}");
    let after_deploy = seen.lock().unwrap().len();
    eventually("requests after the deploy", Duration::from_secs(20), || {
        seen.lock().unwrap().len() >= after_deploy + 3
    });
    stop.store(true, Ordering::Relaxed);
    flow.join().unwrap();
    let seen = seen.lock().unwrap();
    for (ok, _, out) in seen.iter() {
        assert!(ok, "a request failed during the deploy:\n{out}");
    }
    // Every request that started after the deploy answered got v2's behaviour.
    for (_, line, out) in &seen[after_deploy + 1..] {
        assert_eq!(
            line.as_deref(),
            Some("Encoder [density=1.000]  olleh"),
            "a new request did not reach v2:\n{out}"
        );
    }

    // v1 is kept (default --keep 1): rollback makes it active again.
    let out = node.run("rollback", &["encoders"]);
    out.assert_ok();
    let back = node.app("@encoders", "hello");
    back.assert_ok();
    assert_eq!(encoder_line(&back).as_deref(), Some("Encoder [density=1.000]  hello"), "{back}");
    let status = node.status();
    let group = status.groups.get("encoders").expect("status lists the group");
    assert_eq!(group.versions.len(), 2, "both versions are kept: {group:?}");
}

#[test]
fn deploy_with_keep_zero_drains_and_unloads_the_old_versions() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "morse,Caesar cipher,64bit encoder");
    let v1 = dir.encoders_zip();
    let v2 = dir.encoders_v2_zip();
    node.run("deploy", &[&v1.display().to_string(), "--group", "enc"]).assert_ok();
    let h1 = node.status().groups["enc"].active.clone().expect("an active version");
    node.app("@enc", "hello").assert_ok();
    let out =
        node.run("deploy", &[&v2.display().to_string(), "--group", "enc", "--keep", "0", "--grace", "500ms"]);
    out.assert_ok();
    assert!(out.stdout.contains(&format!("unloading {h1}")), "{out}");
    // The v1 actors are asked to exit after the grace period; the library then really goes.
    eventually("v1 to be unloaded", Duration::from_secs(20), || {
        node.status().gone.iter().any(|g| g.hash == h1)
    });
    assert!(!node.maps_hash(&h1), "v1's library is still mapped");
    let out = node.run("rollback", &["enc"]);
    out.assert_code(1).assert_stderr_has(&["no earlier version still loaded"]);
    let now = node.app("@enc", "hello");
    assert_eq!(encoder_line(&now).as_deref(), Some("Encoder [density=1.000]  olleh"), "{now}");
}

#[test]
fn a_group_unknown_or_without_versions_is_refused_clearly() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let out = node.app("@nothing", "hello");
    out.assert_code(1).assert_stderr_has(&["InvalidActorSourceHash", "troupe deploy"]);
}

#[test]
fn groups_reach_members_and_survive_a_member_restart() {
    let dir = TestDir::new();
    let leader = NodeProc::start_with(&dir, "", FAST_HEARTBEAT);
    let leader_addr = leader.addr();
    let mut extra = vec!["--convention", leader_addr.as_str()];
    extra.extend_from_slice(FAST_HEARTBEAT);
    let mut member = NodeProc::start_with(&dir, "morse,Caesar cipher,64bit encoder", &extra);
    leader.wait_members(&[member.addr()]);
    leader.run("deploy", &[&dir.encoders_zip().display().to_string(), "--group", "enc"]).assert_ok();
    // Through the member: it knows the group from the leader.
    let out = member.app("@enc", "hello");
    out.assert_ok();
    assert_eq!(out.lines().len(), 4, "{out}");
    let port = member.port();
    member.kill9();
    let member = NodeProc::start_on(&dir, port, "morse,Caesar cipher,64bit encoder", &extra);
    eventually("the restarted member to learn the groups", Duration::from_secs(20), || {
        member.status().groups.contains_key("enc")
    });
    member.app("@enc", "hello").assert_ok();
}

#[test]
fn the_metrics_endpoint_serves_prometheus_text_with_the_documented_series() {
    let dir = TestDir::new();
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let node = NodeProc::start_with(&dir, "morse,Caesar cipher,64bit encoder", &["--metrics", &metrics]);
    let hash = node.load(&dir.encoders_zip());
    node.app(&hash, "hello").assert_ok();
    let body = http_get(&metrics, "/metrics");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("Content-Type: text/plain; version=0.0.4"), "{body}");
    let text = body.split("\r\n\r\n").nth(1).unwrap_or_default();
    for series in [
        "troupe_actors{type=\"app.Acceptor\"",
        "troupe_mailbox_depth{version=",
        "troupe_messages_total{version=",
        "troupe_loads_total{result=\"ok\"} 1",
        "troupe_versions{state=\"active\"} 1",
        "troupe_heartbeat_rtt_seconds",
        "troupe_pthread_keys_in_use",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    // Every sample line is `name{labels} value` or `name value` with a number, and its family
    // is typed (a histogram's samples are its `_bucket`, `_sum` and `_count`). A real parser
    // checks the same in tests/tests/metrics.rs.
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|f| text.contains(&format!("# TYPE {f} histogram")))
            .unwrap_or(name);
        assert!(text.contains(&format!("# TYPE {family} ")), "{name} has no TYPE line");
    }
    node.run("unload", &[&hash, "--grace", "200ms"]).assert_ok();
    let text = http_get(&metrics, "/metrics");
    assert!(
        text.contains("troupe_unload_close_seconds_count 1\n")
            && text.contains("troupe_drain_seconds_count 1\n"),
        "{text}"
    );
    assert!(http_get(&metrics, "/other").starts_with("HTTP/1.1 404"));
}

#[test]
fn metrics_on_a_non_loopback_address_are_refused() {
    let out = troupe(&["start", &free_port().to_string(), "--metrics", "0.0.0.0:9464", "--foreground"], None);
    out.assert_code(2).assert_stderr_has(&["loopback"]);
}

#[test]
fn logs_show_the_node_log_and_json_logs_are_json() {
    let dir = TestDir::new();
    let node = NodeProc::start_with(&dir, "", &["--log-format", "json"]);
    let hash = node.load(&dir.encoders_zip());
    let out = node.run("logs", &[]);
    out.assert_ok();
    let loaded = out
        .lines()
        .into_iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .any(|v| v["fields"]["message"] == "source loaded" && v["fields"]["hash"] == hash.as_str());
    assert!(loaded, "no JSON 'source loaded' line for {hash} in:\n{out}");
    let tail = node.run("logs", &["-n", "1"]);
    assert_eq!(tail.lines().len(), 1, "{tail}");
    let top = node.run("top", &["--iterations", "2", "--interval", "10ms"]);
    top.assert_ok();
    assert_eq!(top.stdout.matches("source authority: accept-all").count(), 2, "{top}");
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn closed_client_connections_leave_no_descriptor_or_endpoint_behind() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    node.run("status", &[]).assert_ok();
    let before = node.fds();
    for _ in 0..20 {
        node.run("status", &[]).assert_ok();
    }
    // Each command's connection is closed by the time the CLI exits; the node lets go of its
    // socket right after.
    eventually("the node to close the CLI connections", Duration::from_secs(30), || node.fds() <= before);
}
