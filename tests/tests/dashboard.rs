//! `troupe dashboard` in a real browser (headless Chromium through WebDriver) against a real
//! three-node convention: the walk through the page (nodes and versions, an upload, a live
//! upgrade from the page and one from the CLI with their pause histograms, the message-rate
//! chart, deploy, rollback, unload and chgcap from the page, a member stopped gracefully shown
//! as left, a member killed shown as lost), and the refusals (no token on a non-loopback page,
//! actions off). Screenshots of each step go to `target/dashboard-screenshots/`. Every wait
//! polls what the page shows, with a generous deadline: nothing here races the clock.

use serde_json::Value;
use troupe_tests::{
    create, ensure_built_packages, http, plugin_lib, send_text, troupe, Browser, Convention, DashboardProc,
    NodeProc, TestDir, FAST_HEARTBEAT,
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
    v3_zip: std::path::PathBuf,
    counters: Vec<troupe_actor_abi::message::Address>,
    clients: Vec<troupe_node::client::Client>,
}

async fn walk_setup() -> Walk {
    ensure_built_packages(&[
        "troupe-test-counter-v1",
        "troupe-test-counter-v2",
        "troupe-test-counter-v3",
        "troupe-encoders",
        "troupe-encoders-v2",
    ]);
    let dir = TestDir::new();
    let spec: &[(&str, &[&str])] =
        &[("morse", FAST_HEARTBEAT), ("64bit encoder", FAST_HEARTBEAT), ("Caesar cipher", FAST_HEARTBEAT)];
    let conv = Convention::start(&dir, spec);
    let demo = conv.leader().load(&dir.encoders_zip());
    let v1_zip = dir.pack("counter-v1.zip", &[plugin_lib("troupe_test_counter_v1")]);
    let v2_zip = dir.pack("counter-v2.zip", &[plugin_lib("troupe_test_counter_v2")]);
    let v3_zip = dir.pack("counter-v3.zip", &[plugin_lib("troupe_test_counter_v3")]);
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
    Walk { dir, conv, demo, v1, v2_zip, v3_zip, counters, clients }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_through_the_page() {
    let mut w = walk_setup().await;
    // The default refresh (500 ms).
    let dash = DashboardProc::start(&w.conv.leader().port_arg(), "127.0.0.1:0", &["--allow-actions"]);
    assert!(dash.token.is_some() && dash.url.contains("?token="), "actions need a token, printed at start");
    let b = Browser::start(&w.dir, "walk").await;
    b.goto(&dash.url).await;
    sees_nodes_and_versions(&b, &w).await;
    let v2 = uploads_and_upgrades(&b, &w).await;
    shows_an_upgrade_started_by_the_cli(&b, &w, &v2).await;
    charts_a_rate(&b, &mut w).await;
    deploys_rolls_back_unloads_and_changes_a_capability(&b, &w).await;
    finds_an_actor_and_the_log(&b, &w.conv).await;
    marks_a_stopped_member_left_and_a_killed_one_lost(&b, &mut w.conv).await;
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
    let up = wait_upgrade_ended(b, v1, &v2).await;
    assert_eq!(up["moved"], counters.len(), "every counter moved: {up}");
    assert_eq!(
        (up["failed"].as_u64(), up["pauses"].as_u64()),
        (Some(0), Some(counters.len() as u64)),
        "{up}"
    );
    assert_eq!(up["origin"], w.conv.leader().addr(), "run by the node the page asked: {up}");
    let answer = b.eval("return document.querySelector('#action-result').textContent;").await;
    assert!(
        answer.as_str().is_some_and(|t| t.contains(&format!("\"moved\":{}", counters.len()))),
        "{answer}"
    );
    b.wait_until("the old version gone", VERSIONS_JS, |v| !has_hash(v, v1)).await;
    b.shot("03-upgraded-from-the-page").await;
    v2
}

/// The upgrade panel's entry FROM → TO once it ended: `{running, moved, total, failed,
/// pauses, origin, shares}` (pauses: the histogram's count; shares: the nodes' rows).
async fn wait_upgrade_ended(b: &Browser, from: &str, to: &str) -> Value {
    let js = format!(
        "const u = document.querySelector('.upgrade[data-from=\"{from}\"][data-to=\"{to}\"]'); return u ? {{running: u.dataset.running, moved: +u.dataset.moved, total: +u.dataset.total, failed: +u.querySelector('.failed').textContent, pauses: +u.querySelector('.histogram').dataset.pauses, origin: u.dataset.origin, shares: u.querySelectorAll('tr[data-node]').length}} : null;"
    );
    b.wait_until("the upgrade ended on the panel", &js, |v| v["running"] == "false").await
}

/// `troupe upgrade` from the CLI (not the page): the panel shows it too, every node's share,
/// with the counts and the pause histogram.
async fn shows_an_upgrade_started_by_the_cli(b: &Browser, w: &Walk, v2: &str) {
    // Loaded on the node that runs the upgrade (the others fetch it from there).
    let v3 = w.conv.node(1).load(&w.v3_zip);
    w.conv.node(1).run("upgrade", &[v2, &v3]).assert_ok();
    let up = wait_upgrade_ended(b, v2, &v3).await;
    let n = w.counters.len() as u64;
    assert_eq!((up["moved"].as_u64(), up["total"].as_u64()), (Some(n), Some(n)), "{up}");
    assert_eq!((up["failed"].as_u64(), up["pauses"].as_u64()), (Some(0), Some(n)), "{up}");
    assert_eq!(up["origin"], w.conv.node(1).addr(), "run by the node the CLI asked: {up}");
    assert_eq!(up["shares"], 3, "one share per node: {up}");
    b.shot("04-upgraded-by-the-cli").await;
}

/// Messages: the rate chart gets points above zero for the counters' current version.
async fn charts_a_rate(b: &Browser, w: &mut Walk) {
    let (clients, counters) = (&mut w.clients, &w.counters);
    let current = w
        .conv
        .leader()
        .status()
        .actors
        .iter()
        .find(|a| a.type_name == "counter.Counter")
        .map(|a| a.hash.clone());
    let current = current.expect("a counter on the leader");
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
            a.iter().any(|s| {
                s["hash"] == *current && s["points"].as_u64() >= Some(2) && s["max"].as_f64() > Some(0.0)
            })
        })
    })
    .await;
    b.shot("05-message-rate").await;
}

/// The versions table with groups: `[{node, hash, groups}]`.
const GROUPS_JS: &str = "return [...document.querySelectorAll('#versions tbody tr')].map(r => ({node: r.dataset.node, hash: r.dataset.hash, groups: r.children[8].textContent}));";

/// Whether the leader's row of `hash` shows `group`.
fn shows_group(rows: &Value, leader: &str, hash: &str, group: &str) -> bool {
    rows.as_array().is_some_and(|a| {
        a.iter().any(|r| {
            r["node"] == leader
                && r["hash"] == hash
                && r["groups"].as_str().is_some_and(|g| g.contains(group))
        })
    })
}

/// Runs an action from the page and returns its answer (the JSON the page shows), after
/// `prepare` filled the form.
async fn act(b: &Browser, prepare: &str, button: &str) -> Value {
    let cleared = "document.querySelector('#action-result').textContent = ''; document.querySelector('#action-result').className = ''; return true;";
    b.eval(cleared).await;
    b.eval(prepare).await;
    b.click(button).await;
    let js = "const r = document.querySelector('#action-result'); return [r.className, r.textContent];";
    let out = b.wait_until(button, js, |v| v[0] == "ok" || v[0] == "error").await;
    assert_eq!(out[0], "ok", "{button}: {out}");
    serde_json::from_str(out[1].as_str().unwrap()).expect("the page shows the node's answer")
}

/// A zip chosen in the file input, replacing any chosen before.
async fn choose_zip(b: &Browser, zip: &std::path::Path) {
    b.eval("document.querySelector('#zip-file').value = ''; return true;").await;
    b.send_keys("#zip-file", &zip.display().to_string()).await;
}

/// Deploy (an upload) twice to one group, rollback, unload and chgcap, each from the page,
/// each seen on the page.
async fn deploys_rolls_back_unloads_and_changes_a_capability(b: &Browser, w: &Walk) {
    let leader = w.conv.leader().addr();
    let on_leader = format!("document.querySelector('#act-node').value = '{leader}'; document.querySelector('#deploy-group').value = 'enc'; return true;");
    choose_zip(b, &w.dir.encoders_zip()).await;
    let first = act(b, &on_leader, "#deploy-btn").await;
    assert_eq!(first["active"], w.demo.as_str(), "{first}");
    choose_zip(b, &w.dir.encoders_v2_zip()).await;
    let second = act(b, &on_leader, "#deploy-btn").await;
    let enc2 = second["active"].as_str().expect("the new active version").to_string();
    assert_eq!(second["previous"], w.demo.as_str(), "{second}");
    b.wait_until("@enc active on v2", GROUPS_JS, |v| shows_group(v, &leader, &enc2, "@enc active")).await;
    b.shot("06a-deployed").await;

    let back =
        act(b, "document.querySelector('#rollback-group').value = 'enc'; return true;", "#rollback-btn")
            .await;
    assert_eq!(back["active"], w.demo.as_str(), "{back}");
    b.wait_until("@enc active on v1 again", GROUPS_JS, |v| shows_group(v, &leader, &w.demo, "@enc active"))
        .await;
    b.shot("06b-rolled-back").await;

    let pick = format!("document.querySelector('#unload-hash').value = '{enc2}'; return document.querySelector('#unload-hash').value;");
    let gone = act(b, &pick, "#unload-btn").await;
    assert_eq!(gone["hash"], enc2.as_str(), "{gone}");
    b.wait_until("the unloaded version gone", VERSIONS_JS, |v| !has_hash(v, &enc2)).await;
    b.shot("06c-unloaded").await;

    let member = w.conv.node(1).addr();
    let cap = format!("document.querySelector('#cap-node').value = '{member}'; document.querySelector('#cap-op').value = '+'; document.querySelector('#cap-name').value = 'gpu=A100'; return true;");
    let caps = act(b, &cap, "#cap-btn").await;
    assert!(caps["capabilities"].as_array().is_some_and(|c| c.iter().any(|c| c == "gpu=A100")), "{caps}");
    let js = format!("const r = document.querySelector('#nodes tr[data-node=\"{member}\"]'); return r ? r.children[3].textContent : null;");
    b.wait_until("the member's new capability", &js, |v| v.as_str().is_some_and(|t| t.contains("gpu=A100")))
        .await;
    b.shot("06d-capability").await;
}

/// A member stopped with `troupe stop` is shown as left, not lost; a member killed is shown as
/// lost, with when and why.
async fn marks_a_stopped_member_left_and_a_killed_one_lost(b: &Browser, conv: &mut Convention) {
    let row = |addr: &str| {
        format!("const r = document.querySelector('#nodes tr[data-node=\"{addr}\"]'); return r ? [r.dataset.state, r.querySelector('td.state').textContent] : null;")
    };
    let left = conv.node(1).addr();
    conv.node_mut(1).stop();
    let shown = b.wait_until("the stopped member left", &row(&left), |v| v[0] == "left").await;
    assert!(
        shown[1].as_str().is_some_and(|t| t.starts_with("left at") && t.contains("gracefully")),
        "{shown}"
    );
    b.shot("08-member-left").await;

    let lost = conv.node(2).addr();
    conv.node_mut(2).kill9();
    let shown = b.wait_until("the killed member lost", &row(&lost), |v| v[0] == "lost").await;
    assert!(shown[1].as_str().is_some_and(|t| t.starts_with("lost since")), "{shown}");
    // Still left, not lost, once the convention declared the other one lost.
    b.wait_until("the loss declared", &row(&lost), |v| {
        v[1].as_str().is_some_and(|t| t.contains("declared lost"))
    })
    .await;
    assert_eq!(b.eval(&row(&left)).await[0], "left");
    b.shot("09-member-lost").await;
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
    b.shot("07-actor-and-log").await;
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

/// A page's load is the CLI's request: a node with the ed25519 authority refuses an unsigned
/// upload with the reason `troupe load` prints, and takes the same code signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_actions_meet_the_nodes_source_authority() {
    ensure_built_packages(&["troupe-encoders"]);
    let dir = TestDir::new();
    let base = dir.join("release");
    troupe(&["keygen", "-o", &base.display().to_string()], None).assert_ok();
    let trusted = dir.join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(base.with_extension("pub"), trusted.join("release.pub")).unwrap();
    let lib = [plugin_lib("troupe_encoders")];
    let unsigned = dir.pack("unsigned.zip", &lib);
    let key = base.with_extension("key").display().to_string();
    let signed = dir.pack_with("signed.zip", &lib, &["--sign", &key]);
    let trusted_s = trusted.display().to_string();
    let node = NodeProc::start_with(&dir, "", &["--authority", "ed25519", "--trusted-keys", &trusted_s]);
    let cli = node.run("load", &[&unsigned.display().to_string()]);
    cli.assert_code(1).assert_stderr_has(&["not signed"]);

    let dash = DashboardProc::start(&node.port_arg(), "127.0.0.1:0", &["--allow-actions"]);
    let b = Browser::start(&dir, "authority").await;
    b.goto(&dash.url).await;
    b.wait_until("the page", NODES_JS, |v| v.as_array().is_some_and(|a| a.len() == 1)).await;
    choose_zip(&b, &unsigned).await;
    b.click("#load-btn").await;
    let js = "const r = document.querySelector('#action-result'); return [r.className, r.textContent];";
    let out = b.wait_until("the refusal", js, |v| v[0] == "error").await;
    assert!(
        out[1].as_str().is_some_and(|t| t.contains("not signed")),
        "the CLI's reason, on the page: {out}"
    );
    assert!(node.status().versions.is_empty(), "nothing loaded");
    b.shot("01-unsigned-refused").await;
    choose_zip(&b, &signed).await;
    let loaded = act(&b, "return true;", "#load-btn").await;
    let hash = loaded["hash"].as_str().expect("loaded").to_string();
    b.wait_until("the signed version", VERSIONS_JS, |v| has_hash(v, &hash)).await;
    b.shot("02-signed-loaded").await;
    b.close().await;
}
