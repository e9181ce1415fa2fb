//! Live upgrade on one node, through the client protocol: actors move from counter-v1 to
//! counter-v2 at the same address with their state, messages sent meanwhile arrive in order,
//! actors that do not opt in stay, a refused import leaves the actor on v1 and is reported,
//! `all_or_nothing` rolls every actor back, and a reload of a draining hash revives it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use std::time::Instant;

use troupe_actor_abi::message::{Address, Payload, SystemMessage};
use troupe_node::client::Client;
use troupe_node::protocol::{Request, Response, UpgradeOptions, UpgradeReport};
use troupe_tests::{
    ask, create, next_text, plugin_lib, send_text, status_of, NodeProc, TestDir, ZipVariants, REPLY_TIMEOUT,
};

fn counter_zips(dir: &TestDir) -> (PathBuf, PathBuf) {
    troupe_tests::ensure_built_packages(&["troupe-test-counter-v1", "troupe-test-counter-v2"]);
    let v1 = dir.pack("counter-v1.zip", &[plugin_lib("troupe_test_counter_v1")]);
    let v2 = dir.pack_with("counter-v2.zip", &[plugin_lib("troupe_test_counter_v2")], &[]);
    (v1, v2)
}

async fn upgrade(client: &mut Client, from: &str, to: &str, options: UpgradeOptions) -> UpgradeReport {
    match client.request(Request::Upgrade { from: from.into(), to: to.into(), options }).await {
        Ok(Response::Upgraded(report)) => report,
        other => panic!("upgrade failed: {other:?}"),
    }
}

/// The version and type status shows for the actor at `addr`.
async fn version_of(client: &mut Client, addr: &Address) -> (String, String) {
    let st = status_of(client).await;
    let a = st.actors.iter().find(|a| a.address == *addr).unwrap_or_else(|| panic!("{addr} not in status"));
    (a.hash.clone(), a.type_name.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_keeps_its_count_and_order_holds_while_others_stay_or_fail() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let (v1_zip, v2_zip) = counter_zips(&dir);
    let v1 = node.load(&v1_zip);
    let v2 = node.load(&v2_zip);
    let mut c = node.client().await;
    let counter = create(&mut c, "counter.Counter", &v1).await.unwrap();
    let plain = create(&mut c, "counter.Plain", &v1).await.unwrap();
    let refused = create(&mut c, "counter.Refused", &v1).await.unwrap();
    for _ in 0..3 {
        ask(&mut c, &refused, "inc").await;
        ask(&mut c, &plain, "inc").await;
    }
    assert_eq!(ask(&mut c, &counter, "inc").await, "v1 count=1");

    // A stream of increments from one client while another asks for the upgrade: every reply
    // counts one more than the one before (nothing lost, nothing reordered), and once an
    // answer comes from v2 none comes from v1 again.
    const N: u64 = 2000;
    let mut admin = node.client().await;
    let (quarter, started) = tokio::sync::oneshot::channel();
    let sender = tokio::spawn({
        let counter = counter.clone();
        async move {
            let mut quarter = Some(quarter);
            for i in 0..N {
                send_text(&mut c, &counter, "inc").await;
                if i == N / 4 {
                    // The upgrade starts while three quarters of the stream are still to come.
                    let _ = quarter.take().map(|q| q.send(()));
                }
            }
            let mut replies = Vec::new();
            for _ in 0..N {
                replies.push(next_text(&mut c).await);
            }
            (c, replies)
        }
    });
    started.await.unwrap();
    let report = upgrade(&mut admin, &v1, &v2, UpgradeOptions::default()).await;
    let (mut c, replies) = sender.await.unwrap();
    let mut seen_v2 = false;
    for (i, r) in replies.iter().enumerate() {
        let expected = i as u64 + 2;
        let (version, count) = r.split_once(" count=").unwrap_or_else(|| panic!("odd reply {r}"));
        assert_eq!(count.parse::<u64>().unwrap(), expected, "reply {i}: {r} (all: {replies:?})");
        seen_v2 |= version == "v2";
        assert!(version == "v2" || !seen_v2, "v1 answered after v2 at reply {i}: {r}");
    }
    assert!(replies[0].starts_with("v1 ") && seen_v2, "the upgrade did not happen mid-stream: {replies:?}");

    // What the report says.
    assert_eq!((report.from.as_str(), report.to.as_str()), (v1.as_str(), v2.as_str()));
    assert!(!report.rolled_back);
    assert_eq!(report.nodes.len(), 1, "{report:?}");
    let types: BTreeMap<_, _> =
        report.nodes[0].types.iter().map(|t| (t.from_type.as_str(), (t.moved, t.stayed))).collect();
    assert_eq!(types.get("counter.Counter"), Some(&(1, 0)), "{report:?}");
    assert_eq!(types.get("counter.Plain"), Some(&(0, 1)), "{report:?}");
    let failed: Vec<_> = report.failed().collect();
    assert_eq!(failed.len(), 1, "{report:?}");
    assert_eq!(failed[0].address, refused);
    assert!(failed[0].reason.contains("refusing state from counter.Refused"), "{}", failed[0].reason);

    // The counter answers from v2 at the same address, with its count and its history.
    assert_eq!(ask(&mut c, &counter, "get").await, format!("v2 count={} upgrades=1", N + 1));
    assert_eq!(version_of(&mut c, &counter).await, (v2.clone(), "counter.Counter".into()));
    // The others still run v1, with their state.
    assert_eq!(ask(&mut c, &plain, "get").await, "v1 plain=3");
    assert_eq!(ask(&mut c, &refused, "get").await, "v1 refused=3");
    assert_eq!(version_of(&mut c, &refused).await.0, v1);
    // v1 drains: it holds only the two that stayed.
    let st = status_of(&mut c).await;
    let old = st.versions.iter().find(|v| v.hash == v1).expect("v1 still listed");
    assert_eq!((old.state.as_str(), old.live_actors), ("draining", 2), "{old:?}");
}

async fn load_bytes(client: &mut Client, zip: Vec<u8>) -> String {
    match client.request(Request::Load { zip, info: "test".into() }).await {
        Ok(Response::Loaded { hash, .. }) => hash,
        other => panic!("load failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_or_nothing_rolls_every_actor_back_and_keeps_the_old_version() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let (v1_zip, v2_zip) = counter_zips(&dir);
    let (v1, v2) = (node.load(&v1_zip), node.load(&v2_zip));
    let mut c = node.client().await;
    let mut counters = Vec::new();
    for _ in 0..5 {
        let a = create(&mut c, "counter.Counter", &v1).await.unwrap();
        assert_eq!(ask(&mut c, &a, "inc").await, "v1 count=1");
        counters.push(a);
    }
    let refused = create(&mut c, "counter.Refused", &v1).await.unwrap();

    let options = UpgradeOptions { all_or_nothing: true, ..UpgradeOptions::default() };
    let report = upgrade(&mut c, &v1, &v2, options).await;
    assert!(report.rolled_back, "{report:?}");
    assert_eq!(report.moved(), 0, "{report:?}");
    let failed: Vec<_> = report.failed().map(|f| f.address.clone()).collect();
    assert_eq!(failed, vec![refused.clone()]);

    // Every counter is on v1 again, with its count, and takes messages.
    for a in &counters {
        assert_eq!(ask(&mut c, a, "inc").await, "v1 count=2");
        assert_eq!(version_of(&mut c, a).await.0, v1);
    }
    // Nothing was unloaded: v1 is still the active version, v2 holds no actor.
    let st = status_of(&mut c).await;
    let state = |h: &str| st.versions.iter().find(|v| v.hash == h).map(|v| (v.state.clone(), v.live_actors));
    assert_eq!(state(&v1), Some(("active".to_string(), 6)));
    assert_eq!(state(&v2), Some(("active".to_string(), 0)));

    // Without the refused actor the same upgrade goes through.
    let exit = Payload::System(SystemMessage::ActorExitRequest { recursive: true });
    c.request(Request::Send { to: refused.clone(), payload: exit }).await.unwrap();
    wait_live(&mut c, &v1, 5).await;
    let options = UpgradeOptions { all_or_nothing: true, ..UpgradeOptions::default() };
    let report = upgrade(&mut c, &v1, &v2, options).await;
    assert!(!report.rolled_back, "{report:?}");
    assert_eq!((report.moved(), report.failed().count()), (5, 0), "{report:?}");
    for a in &counters {
        assert_eq!(ask(&mut c, a, "get").await, "v2 count=2 upgrades=1");
    }
}

/// Waits (within the reply timeout) until version `hash` has `live` actors.
async fn wait_live(c: &mut Client, hash: &str, live: usize) {
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        let st = status_of(c).await;
        let now = st.versions.iter().find(|v| v.hash == hash).map(|v| v.live_actors);
        if now == Some(live) {
            return;
        }
        assert!(Instant::now() < deadline, "{hash} has {now:?} live actors, not {live}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_types_follow_the_map_and_an_actor_moves_again_and_again() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let (v1_zip, v2_zip) = counter_zips(&dir);
    let (v1, v2) = (node.load(&v1_zip), node.load(&v2_zip));
    let mut c = node.client().await;
    let counter = create(&mut c, "counter.Counter", &v1).await.unwrap();
    ask(&mut c, &counter, "inc").await;

    // A map to a type the new version lacks: reported, the actor stays and answers.
    let map = BTreeMap::from([("counter.Counter".to_string(), "counter.Nope".to_string())]);
    let report = upgrade(&mut c, &v1, &v2, UpgradeOptions { map, ..UpgradeOptions::default() }).await;
    let reasons: Vec<_> = report.failed().map(|f| f.reason.clone()).collect();
    assert_eq!(reasons.len(), 1, "{report:?}");
    assert!(reasons[0].contains("exports no type counter.Nope"), "{}", reasons[0]);
    assert_eq!(ask(&mut c, &counter, "inc").await, "v1 count=2");

    // Counter → Tally by the command's map.
    let map = BTreeMap::from([("counter.Counter".to_string(), "counter.Tally".to_string())]);
    let report = upgrade(&mut c, &v1, &v2, UpgradeOptions { map, ..UpgradeOptions::default() }).await;
    assert_eq!(report.moved(), 1, "{report:?}");
    assert_eq!(report.nodes[0].types[0].to_type, "counter.Tally");
    assert_eq!(ask(&mut c, &counter, "inc").await, "v2 tally=3");
    assert_eq!(version_of(&mut c, &counter).await, (v2.clone(), "counter.Tally".into()));

    // Twice more, between builds of the same code under new hashes: the state follows, and
    // messages reach the actor through every move.
    let variants = ZipVariants::new(&v2_zip);
    let mut from = v2.clone();
    for (round, version) in ["2.0.1", "2.0.2"].into_iter().enumerate() {
        let to = load_bytes(&mut c, variants.make(version)).await;
        let report = upgrade(&mut c, &from, &to, UpgradeOptions::default()).await;
        assert_eq!(report.moved(), 1, "{report:?}");
        assert_eq!(ask(&mut c, &counter, "inc").await, format!("v2 tally={}", 4 + round));
        let expected = format!("v2 tally={} upgrades={}", 4 + round, 2 + round);
        assert_eq!(ask(&mut c, &counter, "get").await, expected);
        from = to;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_a_draining_hash_serves_from_that_generation_only() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, troupe_tests::ALL_CAPS);
    let v1 = node.load(&dir.encoders_zip());
    node.app(&v1, "hello\n").assert_ok();
    let live = node.status().versions.iter().find(|v| v.hash == v1).map(|v| v.live_actors).unwrap();
    assert!(live > 0);

    // Unloaded with no grace: it drains with its actors. Loaded again: that generation serves
    // again, with the same actors; no second generation appears.
    node.run("unload", &[&v1]).assert_ok();
    assert_eq!(node.status().versions.iter().find(|v| v.hash == v1).unwrap().state, "draining");
    let again = node.run("load", &[&dir.encoders_zip().display().to_string()]);
    again.assert_ok();
    assert_eq!(again.stdout.trim(), v1);
    assert!(again.stderr.contains("it was draining: that version serves again"), "{again}");
    let st = node.status();
    let gens: Vec<_> =
        st.versions.iter().filter(|v| v.hash == v1).map(|v| (v.state.clone(), v.live_actors)).collect();
    assert_eq!(gens, vec![("active".to_string(), live)]);
    let app = node.app(&v1, "hello\n");
    app.assert_ok();
    assert_eq!(node.status().versions.iter().filter(|v| v.hash == v1).count(), 1);

    // Unloaded again, its actors asked to go: it really goes.
    node.run("unload", &[&v1, "--grace", "0s"]).assert_ok();
    let st = node.status();
    assert!(st.versions.iter().all(|v| v.hash != v1), "{:?}", st.versions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_moves_actors_on_every_node_and_ships_the_new_code() {
    let dir = TestDir::new();
    let conv = troupe_tests::Convention::start(&dir, &[("", &[]), ("", &[]), ("", &[])]);
    let (v1_zip, v2_zip) = counter_zips(&dir);
    // v1 on every node, an actor created through each; v2 only on the leader.
    let mut actors = Vec::new();
    let mut v1 = String::new();
    for i in 0..3 {
        let node = conv.node(i);
        v1 = node.load(&v1_zip);
        let mut c = node.client().await;
        let spec = troupe_actor_abi::message::CreateSpec {
            type_name: "counter.Counter".into(),
            source_hash: Some(v1.clone()),
            ..Default::default()
        };
        let a = troupe_tests::create_spec(&mut c, spec).await.unwrap();
        for _ in 0..=i {
            ask(&mut c, &a, "inc").await;
        }
        actors.push((a, i as u64 + 1));
    }
    let nodes: std::collections::BTreeSet<_> = actors.iter().map(|(a, _)| a.node.clone()).collect();
    assert_eq!(nodes.len(), 3, "placement put the actors on {nodes:?}");
    let v2 = conv.leader().load(&v2_zip);

    let mut c = conv.leader().client().await;
    let report = upgrade(&mut c, &v1, &v2, UpgradeOptions::default()).await;
    assert_eq!(report.moved(), 3, "{report:?}");
    let reported: std::collections::BTreeSet<_> = report.nodes.iter().map(|n| n.node.clone()).collect();
    assert_eq!(reported, nodes, "{report:?}");

    // Each actor answers from v2 at its address with its own count, wherever it runs.
    for (a, count) in &actors {
        assert_eq!(ask(&mut c, a, "get").await, format!("v2 count={count} upgrades=1"));
    }
    // Each node runs v2 now (the members fetched it), and v1 is gone from every node.
    for i in 0..3 {
        let node = conv.node(i);
        let mut nc = node.client().await;
        let st = status_of(&mut nc).await;
        let here: Vec<_> = st.actors.iter().filter(|s| s.type_name == "counter.Counter").collect();
        assert_eq!(here.len(), 1, "{:?}", st.actors);
        assert_eq!(here[0].hash, v2);
        wait_gone(&mut nc, &v1).await;
    }
}

/// Waits (within the reply timeout) until version `hash` is gone from the node.
async fn wait_gone(c: &mut Client, hash: &str) {
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        let st = status_of(c).await;
        if st.versions.iter().all(|v| v.hash != hash) {
            return;
        }
        assert!(Instant::now() < deadline, "{hash} is still loaded: {:?}", st.versions);
        tokio::task::yield_now().await;
    }
}

async fn deploy(c: &mut Client, zip: Vec<u8>, migrate: Option<UpgradeOptions>) -> Response {
    let request = Request::Deploy {
        zip,
        info: "test".into(),
        group: "counters".into(),
        keep: 1,
        grace_ms: None,
        migrate,
    };
    c.request(request).await.unwrap_or_else(|e| panic!("deploy failed: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_with_migrate_moves_the_groups_actors_to_the_new_release() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let (v1_zip, v2_zip) = counter_zips(&dir);
    let mut c = node.client().await;
    let first = deploy(&mut c, std::fs::read(&v1_zip).unwrap(), None).await;
    let Response::Group { upgrade: None, .. } = first else { panic!("{first:?}") };
    let counter = create(&mut c, "counter.Counter", "@counters").await.unwrap();
    assert_eq!(ask(&mut c, &counter, "inc").await, "v1 count=1");

    let second = deploy(&mut c, std::fs::read(&v2_zip).unwrap(), Some(UpgradeOptions::default())).await;
    let Response::Group { info, previous, upgrade: Some(report), .. } = second else { panic!("{second:?}") };
    assert_eq!(report.moved(), 1, "{report:?}");
    assert_eq!(Some(report.from.clone()), previous);
    assert_eq!(Some(report.to.clone()), info.active);
    assert_eq!(ask(&mut c, &counter, "get").await, "v2 count=1 upgrades=1");
    // The previous release stays loaded (kept for rollback), now with no actor.
    let st = status_of(&mut c).await;
    let old = st
        .versions
        .iter()
        .find(|v| Some(&v.hash) == previous.as_ref())
        .unwrap_or_else(|| panic!("{previous:?} not kept: {:?}", st.versions));
    assert_eq!((old.state.as_str(), old.live_actors), ("active", 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_busy_past_the_timeout_stays_on_the_old_version_and_is_reported() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let (v1_zip, v2_zip) = counter_zips(&dir);
    let (v1, v2) = (node.load(&v1_zip), node.load(&v2_zip));
    let mut c = node.client().await;
    let busy = create(&mut c, "counter.Counter", &v1).await.unwrap();
    let idle = create(&mut c, "counter.Counter", &v1).await.unwrap();
    ask(&mut c, &busy, "inc").await;
    ask(&mut c, &idle, "inc").await;

    // The busy actor's handler runs for 6 s (listed as long after 1 s); the upgrade waits 300 ms for it.
    send_text(&mut c, &busy, "busy 6000").await;
    // Only once the handler runs does it hold its actor: an upgrade asked for earlier would
    // put the export ahead of it and move the actor before it is busy.
    troupe_tests::wait_long_handler(&busy, std::time::Duration::from_secs(60)).await;
    let mut admin = node.client().await;
    let options = UpgradeOptions { timeout_ms: Some(300), ..UpgradeOptions::default() };
    let report = upgrade(&mut admin, &v1, &v2, options).await;
    assert_eq!(report.moved(), 1, "{report:?}");
    let failed: Vec<_> = report.failed().collect();
    assert_eq!(failed.len(), 1, "{report:?}");
    assert_eq!(failed[0].address, busy);
    assert!(failed[0].reason.contains("did not pause within 300ms"), "{}", failed[0].reason);

    // Once its handler returns, it goes on on v1 with its count; the other runs v2.
    assert_eq!(next_text(&mut c).await, "v1 count=1");
    assert_eq!(ask(&mut c, &busy, "inc").await, "v1 count=2");
    assert_eq!(version_of(&mut c, &busy).await.0, v1);
    assert_eq!(ask(&mut c, &idle, "get").await, "v2 count=1 upgrades=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_parents_and_children_keep_pointing_at_the_moved_actor() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let (v1_zip, v2_zip) = counter_zips(&dir);
    let (v1, v2) = (node.load(&v1_zip), node.load(&v2_zip));
    let mut c = node.client().await;
    let spec = |hash: &str| troupe_actor_abi::message::CreateSpec {
        type_name: "counter.Counter".into(),
        source_hash: Some(hash.into()),
        global_name: Some("the-counter".into()),
        ..Default::default()
    };
    let named = troupe_tests::create_spec(&mut c, spec(&v1)).await.unwrap();
    let child_id = ask(&mut c, &named, "spawn").await;
    let child_id = u64::from_str_radix(child_id.strip_prefix("child ").expect("a child"), 16).unwrap();

    let report = upgrade(&mut c, &v1, &v2, UpgradeOptions::default()).await;
    assert_eq!(report.moved(), 1, "{report:?}");

    // The global name still leads to the same address, now answered by v2.
    let again = troupe_tests::create_spec(&mut c, spec(&v2)).await.unwrap();
    assert_eq!(again, named);
    assert_eq!(ask(&mut c, &named, "get").await, "v2 count=0 upgrades=1");
    // The child (it stayed on v1: Plain does not migrate) still has the moved actor as parent.
    let st = status_of(&mut c).await;
    let child = st.actors.iter().find(|a| a.address.id == child_id).expect("the child lives");
    assert_eq!(child.parent.as_ref(), Some(&named));
    assert_eq!(child.hash, v1);
    // Stopping the moved parent stops its child, wherever its code runs.
    let exit = Payload::System(SystemMessage::ActorExitRequest { recursive: true });
    c.request(Request::Send { to: named.clone(), payload: exit }).await.unwrap();
    wait_gone(&mut c, &v1).await;
    let st = status_of(&mut c).await;
    assert!(st.actors.iter().all(|a| a.address != named && a.address.id != child_id), "{:?}", st.actors);
}
