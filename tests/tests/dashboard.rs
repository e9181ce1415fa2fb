//! `troupe dashboard` in a real browser (headless Chromium through WebDriver) against a real
//! three-node convention: the walk through the page (nodes and versions, an upload, a live
//! upgrade followed to its end, a node lost, the message-rate chart), and the refusals (no
//! token on a non-loopback page, actions off). Screenshots of each step go to
//! `target/dashboard-screenshots/`. Every wait polls what the page shows, with a generous
//! deadline: nothing here races the clock.

use serde_json::Value;
use troupe_tests::{
    create, ensure_built_packages, http, plugin_lib, send_text, Browser, Convention, DashboardProc, TestDir,
    FAST_HEARTBEAT,
};

/// The page's nodes: `[{node, role, state}]`.
const NODES_JS: &str = "return [...document.querySelectorAll('#nodes tbody tr')].map(r => ({node: r.dataset.node, role: r.dataset.role, state: r.dataset.state, rss: r.children[7].textContent, uptime: r.children[5].textContent}));";
/// The page's versions: `[{node, hash, state, live}]`.
const VERSIONS_JS: &str = "return [...document.querySelectorAll('#versions tbody tr')].map(r => ({node: r.dataset.node, hash: r.dataset.hash, state: r.dataset.state, live: +r.dataset.live}));";

fn has_hash(rows: &Value, hash: &str) -> bool {
    rows.as_array().is_some_and(|a| a.iter().any(|r| r["hash"] == hash))
}

/// Counters that migrate, on every node (creates from each node's client).
const COUNTERS_PER_NODE: usize = 2;

/// The convention of the walk: three nodes, the demo's version and counters that migrate on
/// every node, and a client on each node to message them.
struct Walk {
    dir: TestDir,
    conv: Convention,
    demo: String,
    v1: String,
    v2_zip: std::path::PathBuf,
    counters: Vec<troupe_actor_abi::message::Address>,
    clients: Vec<troupe_node::client::Client>,
}

async fn walk_setup() -> Walk {
    ensure_built_packages(&["troupe-test-counter-v1", "troupe-test-counter-v2", "troupe-encoders"]);
    let dir = TestDir::new();
    let spec: &[(&str, &[&str])] =
        &[("morse", FAST_HEARTBEAT), ("64bit encoder", FAST_HEARTBEAT), ("Caesar cipher", FAST_HEARTBEAT)];
    let conv = Convention::start(&dir, spec);
    let demo = conv.leader().load(&dir.encoders_zip());
    let v1_zip = dir.pack("counter-v1.zip", &[plugin_lib("troupe_test_counter_v1")]);
    let v2_zip = dir.pack("counter-v2.zip", &[plugin_lib("troupe_test_counter_v2")]);
    let v1 = conv.leader().load(&v1_zip);
    let mut counters = Vec::new();
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = conv.node(i).client().await;
        for _ in 0..COUNTERS_PER_NODE {
            counters.push(create(&mut c, "counter.Counter", &v1).await.expect("a counter"));
        }
        clients.push(c);
    }
    Walk { dir, conv, demo, v1, v2_zip, counters, clients }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_through_the_page() {
    let mut w = walk_setup().await;
    let dash = DashboardProc::start(
        &w.conv.leader().port_arg(),
        "127.0.0.1:0",
        &["--allow-actions", "--refresh", "500ms"],
    );
    assert!(dash.token.is_some() && dash.url.contains("?token="), "actions need a token, printed at start");
    let b = Browser::start(&w.dir, "walk").await;
    b.goto(&dash.url).await;
    sees_nodes_and_versions(&b, &w).await;
    let v2 = uploads_and_upgrades(&b, &w).await;
    charts_a_rate(&b, &mut w, &v2).await;
    marks_a_killed_member_lost(&b, &mut w.conv).await;
    finds_an_actor_and_the_log(&b, &w.conv).await;
    b.close().await;
}

/// Three nodes, and the demo's version and the counters'.
async fn sees_nodes_and_versions(b: &Browser, w: &Walk) {
    let (conv, demo, v1) = (&w.conv, &w.demo, &w.v1);
    let addrs: Vec<String> = (0..3).map(|i| conv.node(i).addr()).collect();
    b.wait_until("three nodes up", NODES_JS, |v| {
        addrs
            .iter()
            .all(|a| v.as_array().is_some_and(|r| r.iter().any(|n| n["node"] == *a && n["state"] == "up")))
    })
    .await;
    let leader_row = b.eval(NODES_JS).await;
    assert!(
        leader_row.as_array().unwrap().iter().any(|n| n["node"] == addrs[0] && n["role"] == "leader"),
        "{leader_row}"
    );
    // Each node's own figures come from its answer to `Observe`.
    let rows = leader_row.as_array().unwrap();
    assert!(rows.iter().all(|n| n["rss"].as_str().is_some_and(|t| t.ends_with("MiB"))), "{leader_row}");
    b.wait_until("the demo's versions", VERSIONS_JS, |v| has_hash(v, demo) && has_hash(v, v1)).await;
    b.shot("01-nodes-and-versions").await;
}

/// A second version, uploaded from the page; then a live upgrade from the page, followed until
/// every counter moved. Returns the new version's hash.
async fn uploads_and_upgrades(b: &Browser, w: &Walk) -> String {
    let (v1, v2_zip, counters) = (&w.v1, &w.v2_zip, &w.counters);
    b.send_keys("#zip-file", &v2_zip.display().to_string()).await;
    b.click("#load-btn").await;
    let result = b
        .wait_until(
            "the load's answer",
            "return document.querySelector('#action-result').textContent;",
            |v| v.as_str().is_some_and(|t| t.contains("\"hash\"")),
        )
        .await;
    let v2: String =
        serde_json::from_str::<Value>(result.as_str().unwrap()).unwrap()["hash"].as_str().unwrap().into();
    b.wait_until("the uploaded version", VERSIONS_JS, |v| has_hash(v, &v2)).await;
    b.shot("02-second-version-loaded").await;

    // A live upgrade from the page, followed until every counter moved.
    let pick = format!(
        "document.querySelector('#upgrade-from').value = '{v1}'; document.querySelector('#upgrade-to').value = '{v2}'; return [document.querySelector('#upgrade-from').value, document.querySelector('#upgrade-to').value];"
    );
    assert_eq!(b.eval(&pick).await, serde_json::json!([v1, v2]));
    b.click("#upgrade-btn").await;
    let js = "const u = document.querySelector('.upgrade'); return u ? {done: u.dataset.done, moved: +u.dataset.moved, failed: +u.querySelector('.failed').textContent} : null;";
    let up = b.wait_until("the upgrade done", js, |v| v["done"] == "true").await;
    assert_eq!(up["moved"], counters.len(), "every counter moved: {up}");
    assert_eq!(up["failed"], 0, "{up}");
    b.wait_until("the old version gone", VERSIONS_JS, |v| !has_hash(v, v1)).await;
    b.shot("03-upgraded").await;
    v2
}

/// Messages: the rate chart gets points above zero.
async fn charts_a_rate(b: &Browser, w: &mut Walk, v2: &str) {
    let (clients, counters) = (&mut w.clients, &w.counters);
    for (i, c) in clients.iter_mut().enumerate() {
        for a in &counters[i * COUNTERS_PER_NODE..(i + 1) * COUNTERS_PER_NODE] {
            for _ in 0..50 {
                send_text(c, a, "inc").await;
            }
        }
    }
    let chart = "return [...document.querySelectorAll('#rate-chart polyline')].map(p => ({hash: p.dataset.hash, points: +p.dataset.points, max: +p.dataset.max}));";
    b.wait_until("a message rate on the chart", chart, |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["hash"] == v2 && s["points"].as_u64() >= Some(2) && s["max"].as_f64() > Some(0.0))
        })
    })
    .await;
    b.shot("04-message-rate").await;
}

/// A member killed: marked lost, with why.
async fn marks_a_killed_member_lost(b: &Browser, conv: &mut Convention) {
    let lost = conv.node(2).addr();
    conv.node_mut(2).kill9();
    let js = format!("const r = document.querySelector('#nodes tr[data-node=\"{lost}\"]'); return r ? [r.dataset.state, r.querySelector('td.state').textContent] : null;");
    let row = b.wait_until("the killed member lost", &js, |v| v[0] == "lost").await;
    assert!(row[1].as_str().is_some_and(|t| t.starts_with("lost since")), "{row}");
    b.shot("05-member-lost").await;
}

/// The actor search, an actor's own status, and the log.
async fn finds_an_actor_and_the_log(b: &Browser, conv: &Convention) {
    b.send_keys("#actor-search", "counter").await;
    b.wait_until("counters found", "return document.querySelectorAll('#actors tbody tr').length;", |v| {
        v.as_u64() >= Some(2)
    })
    .await;
    let on_leader = format!("#actors tbody a.addr[data-addr^=\"{}#\"]", conv.leader().addr());
    b.wait_until(
        "a counter on the leader",
        &format!("return document.querySelectorAll('{on_leader}').length;"),
        |v| v.as_u64() >= Some(1),
    )
    .await;
    b.click(&on_leader).await;
    b.wait_until("an actor's status", "return document.querySelector('#actor-status').textContent;", |v| {
        v.as_str().is_some_and(|t| t.contains("counter.Counter") && t.contains("handled"))
    })
    .await;
    b.wait_until("the log", "return document.querySelector('#log').textContent.length;", |v| {
        v.as_u64() > Some(0)
    })
    .await;
    b.shot("06-actor-and-log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_without_the_token_or_without_allow_actions() {
    let dir = TestDir::new();
    let conv = Convention::start(&dir, &[("morse", &[])]);
    let port = conv.leader().port_arg();
    let actions = ["load", "deploy", "upgrade", "rollback", "unload", "chgcap"];

    // Not loopback: every read and every action needs the token.
    let open = DashboardProc::start(&port, "0.0.0.0:0", &["--allow-actions"]);
    let token = open.token.clone().expect("a non-loopback page prints a token");
    assert_eq!(http(&open.base, "GET", "/api/events", &[], b"").0, 401);
    assert_eq!(http(&open.base, "GET", "/api/actors?q=", &[], b"").0, 401);
    for a in actions {
        let path = format!("/api/action/{a}?op=%2B&cap=x");
        let (code, body) = http(&open.base, "POST", &path, &[], b"zip");
        assert_eq!(code, 401, "{a} without a token: {body}");
        assert!(body.contains("needs its token"), "{body}");
        assert_eq!(http(&open.base, "POST", &path, &[("x-troupe-token", "0000")], b"zip").0, 401, "{a}");
        // A token in the query is for reads only: an action needs the header.
        assert_eq!(http(&open.base, "POST", &format!("{path}&token={token}"), &[], b"zip").0, 401, "{a}");
    }
    let (code, body) = http(
        &open.base,
        "POST",
        "/api/action/chgcap?op=%2B&cap=dashboard-test",
        &[("x-troupe-token", &token)],
        b"",
    );
    assert_eq!(code, 200, "the token acts: {body}");
    assert!(conv.leader().status().capabilities.iter().any(|c| c == "dashboard-test"));
    let b = Browser::start(&dir, "refusals").await;
    b.goto(&format!("{}/", open.base)).await;
    b.wait_until(
        "the token asked for",
        "return !document.querySelector('#token-ask').hidden && document.querySelector('#main').hidden;",
        |v| v == true,
    )
    .await;
    b.shot("01-token-asked").await;
    b.send_keys("#token-input", &token).await;
    b.click("#token-open").await;
    b.wait_until("the page with the token", NODES_JS, |v| v.as_array().is_some_and(|a| a.len() == 1)).await;
    drop(open);

    // Loopback without --allow-actions: no token, no action buttons, and the endpoints refuse.
    let quiet = DashboardProc::start(&port, "127.0.0.1:0", &[]);
    assert!(quiet.token.is_none(), "no token on loopback without actions");
    b.goto(&quiet.url).await;
    b.wait_until("the page", NODES_JS, |v| v.as_array().is_some_and(|a| a.len() == 1)).await;
    for button in
        ["#load-btn", "#deploy-btn", "#upgrade-btn", "#rollback-btn", "#unload-btn", "#cap-btn", "#actions"]
    {
        assert_eq!(b.count(button).await, 0, "{button} shown without --allow-actions");
    }
    b.shot("02-no-actions").await;
    for a in actions {
        let (code, body) = http(&quiet.base, "POST", &format!("/api/action/{a}"), &[], b"zip");
        assert_eq!(code, 403, "{a}: {body}");
        assert!(body.contains("--allow-actions"), "{body}");
    }
    b.close().await;
}
