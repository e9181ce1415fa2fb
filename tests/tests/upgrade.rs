//! Live upgrade on one node, through the client protocol: actors move from counter-v1 to
//! counter-v2 at the same address with their state, messages sent meanwhile arrive in order,
//! actors that do not opt in stay, a refused import leaves the actor on v1 and is reported,
//! `all_or_nothing` rolls every actor back, and a reload of a draining hash revives it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use troupe_actor_abi::message::Address;
use troupe_node::client::Client;
use troupe_node::protocol::{Request, Response, UpgradeOptions, UpgradeReport};
use troupe_tests::{ask, create, next_text, plugin_lib, send_text, status_of, NodeProc, TestDir};

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
    let sender = tokio::spawn({
        let counter = counter.clone();
        async move {
            let mut replies = Vec::new();
            for i in 0..N {
                send_text(&mut c, &counter, "inc").await;
                if i == N / 4 {
                    // Let the upgrade start while the stream runs.
                    tokio::task::yield_now().await;
                }
            }
            for _ in 0..N {
                replies.push(next_text(&mut c).await);
            }
            (c, replies)
        }
    });
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
