//! Two live upgrades of one version at once (issue 21, point 1): `upgrade v1→v2` runs while
//! `upgrade v1→v3` is asked for, on one node and on three. The second is refused with
//! `upgrade_in_progress` wherever the first still runs; no actor is moved twice or lost; each
//! answers with its own count from v2; status's actors and the versions' counts agree with the
//! actors that answer; and a later `unload --grace` returns.
//!
//! The first upgrade is kept running, without any timing, by an actor whose handler is busy
//! for a long while: an actor moves only between two messages, so the upgrade cannot end
//! before that handler does. The test waits until status lists that handler as running (so
//! the upgrade cannot move the actor first), starts the first upgrade, waits until every other
//! actor has moved (so it is under way), asks for the second, then checks that the first had
//! not ended yet when the second was answered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use troupe_actor_abi::message::Address;
use troupe_node::client::{Client, ClientError};
use troupe_node::protocol::{Request, Response, UpgradeOptions, UpgradeReport};
use troupe_tests::{
    ask, create, next_text, plugin_lib, send_text, status_of, wait_long_handler, Convention, NodeProc,
    TestDir,
};

/// How long the busy actor's handler runs: far longer than asking for the second upgrade
/// takes, so the first is still waiting for that actor when the second is answered (the test
/// checks that it was, rather than trusting this figure).
const BUSY_MS: u64 = 20_000;
/// How long a step may take on a loaded two-core machine before the test gives up.
const PATIENCE: Duration = Duration::from_secs(120);

/// counter-v1, counter-v2 and counter-v3, packed.
fn counter_zips(dir: &TestDir) -> [PathBuf; 3] {
    let crates = ["troupe-test-counter-v1", "troupe-test-counter-v2", "troupe-test-counter-v3"];
    troupe_tests::ensure_built_packages(&crates);
    [1, 2, 3]
        .map(|v| dir.pack(&format!("counter-v{v}.zip"), &[plugin_lib(&format!("troupe_test_counter_v{v}"))]))
}

async fn request_upgrade(addr: String, from: String, to: String) -> Result<UpgradeReport, ClientError> {
    let mut c = Client::connect(&addr).await.expect("connect");
    match c.request(Request::Upgrade { from, to, options: UpgradeOptions::default() }).await? {
        Response::Upgraded(report) => Ok(report),
        other => panic!("unexpected answer to an upgrade: {other:?}"),
    }
}

/// Creates `n` counters of `v1` through `c`, each incremented a different number of times
/// (1 to 3); returns them with their counts.
async fn counters(c: &mut Client, v1: &str, n: usize) -> Vec<(Address, u64)> {
    let mut made = Vec::new();
    for i in 0..n {
        made.push((create(c, "counter.Counter", v1).await.unwrap(), i as u64 % 3 + 1));
    }
    let mut sent = 0;
    for (a, count) in &made {
        for _ in 0..*count {
            send_text(c, a, "inc").await;
            sent += 1;
        }
    }
    for _ in 0..sent {
        let reply = next_text(c).await;
        assert!(reply.starts_with("v1 count="), "{reply}");
    }
    made
}

/// How many counters each node's status lists on version `hash`.
async fn on_version(nodes: &[String], hash: &str) -> usize {
    let mut n = 0;
    for addr in nodes {
        let st = status_of(&mut Client::connect(addr).await.unwrap()).await;
        n += st.actors.iter().filter(|a| a.hash == hash).count();
    }
    n
}

/// Waits until `at_least` counters run `hash` across `nodes`.
async fn wait_on_version(nodes: &[String], hash: &str, at_least: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let n = on_version(nodes, hash).await;
        if n >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "only {n} of {at_least} counters reached {hash}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The second upgrade's outcome is a refusal naming the first, whole (refused by the node
/// asked) or per node (refused where the first still runs).
fn assert_refused(second: &Result<UpgradeReport, ClientError>, busy_node: &str) {
    match second {
        Err(ClientError::Refused(reply)) => {
            assert_eq!(reply.code, "upgrade_in_progress", "{reply:?}");
            assert!(reply.message.contains("retry when it ends"), "{}", reply.message);
        }
        Ok(report) => {
            let node = report.nodes.iter().find(|n| n.node == busy_node);
            let refused =
                node.is_some_and(|n| n.failed.iter().any(|f| f.reason.contains("upgrade_in_progress")));
            assert!(refused, "the node still upgrading did not refuse: {report:?}");
            assert_eq!(report.moved(), 0, "{report:?}");
        }
        Err(e) => panic!("the second upgrade failed otherwise: {e}"),
    }
}

/// Every counter answers from v2 with its own count, status on each node lists exactly the
/// counters there, and the versions' live counts add up to them.
async fn assert_exact(nodes: &[String], made: &[(Address, u64)], v2: &str) {
    let mut c = Client::connect(&nodes[0]).await.unwrap();
    for (a, count) in made {
        assert_eq!(ask(&mut c, a, "get").await, format!("v2 count={count} upgrades=1"), "{a}");
    }
    let mut listed = 0;
    for addr in nodes {
        let st = status_of(&mut Client::connect(addr).await.unwrap()).await;
        let live: usize = st.versions.iter().map(|v| v.live_actors).sum();
        let per_version: BTreeMap<_, _> = st.versions.iter().map(|v| (&v.hash[..8], v.live_actors)).collect();
        assert_eq!(
            live,
            st.actors.len(),
            "{addr}: versions count {per_version:?}, status lists {}",
            st.actors.len()
        );
        assert!(st.actors.iter().all(|a| a.hash == v2), "{addr}: {:?}", st.actors);
        listed += st.actors.len();
    }
    assert_eq!(listed, made.len(), "status lists {listed} counters, {} answered", made.len());
}

/// `unload --grace` of `hash` returns, and the version is gone.
async fn assert_unloads(addr: &str, hash: &str) {
    let mut c = Client::connect(addr).await.unwrap();
    let request = Request::Unload { hash: hash.into(), grace_ms: Some(2000) };
    let answer = tokio::time::timeout(PATIENCE, c.request(request)).await.expect("unload --grace returns");
    match answer {
        Ok(Response::Unloaded { gone, .. }) => assert!(gone, "{hash} is not gone"),
        other => panic!("unload of {hash}: {other:?}"),
    }
}

/// Runs the race: `busy` is held up, the first upgrade (asked at `nodes[0]`) waits for it, the
/// second (asked at `second_at`) comes meanwhile. Returns both outcomes, and whether the first
/// was still running when the second was answered.
async fn race(
    nodes: &[String],
    busy: &Address,
    n: usize,
    [v1, v2, v3]: [&str; 3],
    second_at: &str,
) -> (UpgradeReport, Result<UpgradeReport, ClientError>, bool) {
    let mut holder = Client::connect(&nodes[0]).await.unwrap();
    send_text(&mut holder, busy, &format!("busy {BUSY_MS}")).await;
    wait_long_handler(busy, PATIENCE).await;
    let first = tokio::spawn(request_upgrade(nodes[0].clone(), v1.into(), v2.into()));
    wait_on_version(nodes, v2, n - 1).await;
    let second = request_upgrade(second_at.to_string(), v1.into(), v3.into()).await;
    // An operator's unload of the version the first upgrade moves actors to waits for nothing
    // and unloads nothing under it: refused, naming that upgrade.
    let unload = Request::Unload { hash: v2.into(), grace_ms: None };
    let unload = Client::connect(&nodes[0]).await.unwrap().request(unload).await;
    // Checked by the caller after the counts, which say more when both upgrades ran.
    let raced = !first.is_finished();
    if raced {
        match unload {
            Err(ClientError::Refused(reply)) => assert_eq!(reply.code, "upgrade_in_progress", "{reply:?}"),
            other => panic!("an unload of {v2} during its upgrade: {other:?}"),
        }
    }
    let first = tokio::time::timeout(PATIENCE, first).await.expect("the first upgrade ends").unwrap();
    let first = first.unwrap_or_else(|e| panic!("the first upgrade failed: {e}"));
    // The busy actor answers its own `busy` once its handler is done.
    assert!(next_text(&mut holder).await.starts_with("v1 count="));
    (first, second, raced)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_upgrades_of_one_version_on_one_node_move_each_actor_once() {
    const N: usize = 300;
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let [z1, z2, z3] = counter_zips(&dir);
    let (v1, v2, v3) = (node.load(&z1), node.load(&z2), node.load(&z3));
    let mut c = node.client().await;
    let made = counters(&mut c, &v1, N).await;
    let nodes = vec![node.addr()];

    let (first, second, raced) = race(&nodes, &made[N / 2].0, N, [&v1, &v2, &v3], &nodes[0]).await;
    let second_moved = second.as_ref().map_or(0, UpgradeReport::moved);
    assert!(first.moved() + second_moved <= N, "moved {} + {second_moved} of {N}", first.moved());
    assert_exact(&nodes, &made, &v2).await;
    assert!(raced, "the first upgrade ended before the second was answered");
    assert_refused(&second, &nodes[0]);
    assert_eq!(first.moved(), N, "{first:?}");
    assert!(first.nodes.iter().all(|n| n.failed.is_empty()), "{first:?}");
    assert_unloads(&nodes[0], &v3).await;
    assert_unloads(&nodes[0], &v2).await;
    let st = status_of(&mut c).await;
    assert!(st.actors.is_empty(), "{:?}", st.actors);
    assert!(st.versions.is_empty(), "every version, v1 included, is gone: {:?}", st.versions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_upgrades_of_one_version_on_three_nodes_move_each_actor_once() {
    const PER_NODE: usize = 60;
    let dir = TestDir::new();
    let conv = Convention::start(&dir, &[("", &[]), ("", &[]), ("", &[])]);
    let [z1, z2, z3] = counter_zips(&dir);
    let mut made = Vec::new();
    let mut v1 = String::new();
    for i in 0..3 {
        v1 = conv.node(i).load(&z1);
        let mut c = conv.node(i).client().await;
        made.extend(counters(&mut c, &v1, PER_NODE).await);
    }
    let (v2, v3) = (conv.leader().load(&z2), conv.node(2).load(&z3));
    let nodes: Vec<String> = (0..3).map(|i| conv.node(i).addr()).collect();
    // The busy actor runs on a member other than the one asked for the second upgrade, if
    // placement put one there; the second upgrade is asked at node 2, a member that has
    // finished its part of the first by then, and reaches the busy node as a member.
    let busy = made.iter().find(|(a, _)| a.node == nodes[1]).unwrap_or(&made[0]).0.clone();
    let n = made.len();

    let (first, second, raced) = race(&nodes, &busy, n, [&v1, &v2, &v3], &nodes[2]).await;
    let second_moved = second.as_ref().map_or(0, UpgradeReport::moved);
    assert!(first.moved() + second_moved <= n, "moved {} + {second_moved} of {n}", first.moved());
    assert_exact(&nodes, &made, &v2).await;
    assert!(raced, "the first upgrade ended before the second was answered");
    assert_refused(&second, &busy.node);
    assert_eq!(first.moved(), n, "{first:?}");
    assert_unloads(&nodes[0], &v2).await;
    let deadline = Instant::now() + PATIENCE;
    for addr in &nodes {
        loop {
            let st = status_of(&mut Client::connect(addr).await.unwrap()).await;
            if st.actors.is_empty() && st.versions.iter().all(|v| v.hash != v1 && v.hash != v2) {
                break;
            }
            assert!(Instant::now() < deadline, "{addr}: {:?} {:?}", st.actors, st.versions);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
