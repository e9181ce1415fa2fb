//! Supervision under a child that can never run (issue 21, point 4): a supervised child whose
//! constructor always fails, with a huge restart budget and no backoff asked for, is restarted
//! no faster than the node's minimum wait allows, and the node's log stays small. Real node,
//! the `tests/plugins/parity` plugin (`parity.Parent` supervises, `parity.BadCtor` never
//! constructs).
//!
//! The bounds are upper bounds over a window the test measures itself: a loaded machine only
//! restarts less often and logs less, so it cannot make them fail.

use std::time::{Duration, Instant};

use troupe_actor_abi::message::{Address, Payload, MIN_RESTART_BACKOFF};
use troupe_tests::{ask, create, NodeProc, TestDir, REPLY_TIMEOUT};

/// How long the test counts restarts.
const WINDOW: Duration = Duration::from_secs(3);

/// The most the node's log may grow over [`WINDOW`]: about 100 lines. Before the fix it grew by
/// 118 MB in about 3 s (issue 21).
const LOG_GROWTH_MAX: u64 = 32 * 1024;

/// The parity plugin, packed.
fn parity_zip(dir: &TestDir) -> std::path::PathBuf {
    troupe_tests::ensure_built_packages(&["troupe-test-parity"]);
    dir.pack("parity.zip", &[troupe_tests::plugin_lib("troupe_test_parity")])
}

/// `child ADDRESS` as the Parent reports a create.
fn child_of(line: &str) -> Address {
    let a = line.strip_prefix("child ").unwrap_or_else(|| panic!("not a child report: {line}"));
    let (node, id) = a.rsplit_once('#').expect("an address");
    Address { node: node.into(), id: u64::from_str_radix(id, 16).expect("a hex id") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_whose_constructor_always_fails_is_restarted_at_a_bounded_rate_and_logged_briefly() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let parity = node.load(&parity_zip(&dir));
    let mut pc = node.client().await;
    let parent = create(&mut pc, "parity.Parent", &parity).await.unwrap();
    let log_before = node.log_text().len() as u64;

    // A budget that is never spent within the window, and a first wait of zero.
    let t0 = Instant::now();
    let bad = child_of(&ask(&mut pc, &parent, "supervise parity.BadCtor 1000000000 3600000 0").await);
    let mut restarts = 0u64;
    let deadline = tokio::time::Instant::now() + WINDOW;
    while let Ok(m) = tokio::time::timeout_at(deadline, pc.next_message()).await {
        match m.expect("the connection to the node failed").payload {
            Payload::Text(t) if t.starts_with(&format!("restarted {bad} (was {bad})")) => restarts += 1,
            other => panic!("the parent reported {other:?}"),
        }
    }
    let elapsed = t0.elapsed();
    let log_growth = node.log_text().len() as u64 - log_before;
    eprintln!("{restarts} restarts in {elapsed:?}; the log grew by {log_growth} bytes");

    // Each restart waits at least the floor: no more restarts than the floor allows in the time
    // that passed (the doubling makes them far fewer still).
    let allowed = (elapsed.as_millis() / MIN_RESTART_BACKOFF.as_millis()) as u64 + 1;
    assert!(
        restarts <= allowed,
        "{restarts} restarts in {elapsed:?}: more than one per {MIN_RESTART_BACKOFF:?}"
    );
    assert!(log_growth <= LOG_GROWTH_MAX, "the node's log grew by {log_growth} bytes in {elapsed:?}");

    // It is still being restarted (the budget is not spent), and the node serves everyone.
    let line = tokio::time::timeout(REPLY_TIMEOUT, pc.next_message()).await;
    assert!(
        matches!(&line, Ok(Ok(m)) if matches!(&m.payload, Payload::Text(t) if t.starts_with("restarted "))),
        "{line:?}"
    );
    node.run("status", &[]).assert_ok();
}
