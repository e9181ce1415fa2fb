//! The first request after a convention starts (issue 21, point 3): a leader that was never
//! part of an earlier convention answers name claims at once instead of gathering the names of
//! members that cannot exist; a restarted one (SIGKILL, or a graceful stop while members keep
//! named actors) still gathers, so it never hands out a second holder.
//!
//! No timing is measured: the heartbeat is set long (a restarted leader gathers for at least a
//! heartbeat), so that "gathering" and "not gathering" are states `status` shows for many
//! seconds, and a claim made while a leader gathers fails with `NoLeader` (a claim waits 10 s).

use troupe_actor_abi::message::CreateSpec;
use troupe_tests::{create_spec, wait_for, NodeProc, TestDir, CONVENTION_TIMEOUT};

/// Long enough that a gathering leader is seen gathering, whatever the machine's load: a
/// restarted leader waits at least a heartbeat for its members' names.
const SLOW: &[&str] = &["--heartbeat", "30s", "--dead-after", "60s"];

fn named(hash: &str, name: &str) -> CreateSpec {
    CreateSpec {
        type_name: "faulty.Echo".into(),
        source_hash: Some(hash.into()),
        global_name: Some(name.into()),
        ..CreateSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_leader_answers_a_named_create_at_once_and_a_restarted_one_gathers_first() {
    let dir = TestDir::new();
    let mut leader = NodeProc::start_with(&dir, "", SLOW);
    let st = leader.status();
    assert_eq!(st.convention.role, "leader");
    assert!(!st.convention.gathering, "a fresh leader has no members' names to wait for");
    // A claim right after the start is answered (it waited up to 10 s for the gathering, then
    // failed with NoLeader, before the fix).
    let hash = leader.load(&dir.faulty_zip());
    let mut c = leader.client().await;
    let first = create_spec(&mut c, named(&hash, "First")).await.expect("a claim answered at once");
    assert_eq!(leader.status().convention.names.get("First"), Some(&first));
    assert!(!leader.status().convention.gathering);

    // A member joins (with a named actor), so the leader's record is written.
    let conv = leader.addr();
    let mut margs = vec!["--convention", conv.as_str()];
    margs.extend_from_slice(SLOW);
    let member = NodeProc::start_with(&dir, "", &margs);
    leader.wait_members(&[member.addr()]);
    let mut m = member.client().await;
    create_spec(&mut m, named(&hash, "Held")).await.expect("named on the member");
    assert!(leader.state_dir().join("led-members").exists());

    // SIGKILL, then the same node on the same port and state directory: it gathers.
    let port = leader.port();
    leader.kill9();
    let mut leader = NodeProc::start_on(&dir, port, "", SLOW);
    let st = leader.status();
    assert!(st.convention.gathering, "a restarted leader gathers first: {:#?}", st.convention);
    // A graceful stop while the member keeps its named actor (whether or not it came back
    // yet): the next restart gathers too.
    leader.stop();
    assert!(leader.state_dir().join("led-members").exists(), "the member still holds a name");
    let leader = NodeProc::start_on(&dir, port, "", SLOW);
    assert!(leader.status().convention.gathering, "stopped with members: it gathers on restart");
    drop(member);
    drop(leader);
}

#[test]
fn a_leader_whose_members_all_left_starts_fresh_after_a_graceful_stop() {
    let dir = TestDir::new();
    let mut leader = NodeProc::start_with(&dir, "", SLOW);
    let conv = leader.addr();
    let mut margs = vec!["--convention", conv.as_str()];
    margs.extend_from_slice(SLOW);
    let mut member = NodeProc::start_with(&dir, "", &margs);
    leader.wait_members(&[member.addr()]);
    assert!(leader.state_dir().join("led-members").exists());
    member.stop();
    wait_for("the member's goodbye", CONVENTION_TIMEOUT, || {
        leader.try_status().filter(|s| s.convention.members.is_empty())
    });
    leader.stop();
    assert!(!leader.state_dir().join("led-members").exists(), "nobody can hold a name it granted");
    let leader = NodeProc::start_on(&dir, leader.port(), "", SLOW);
    assert!(!leader.status().convention.gathering, "a new convention: nothing to gather");
}
