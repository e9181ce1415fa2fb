//! The leader's side of the convention in-process: registrations (whole and delta), restarts,
//! losses, fencing, watchers, global names and their rebuild, with client endpoints standing
//! in for actors.

use std::time::Duration;

use tokio::sync::mpsc;
use troupe_actor_abi::message::{Address, ConventionChange, Incoming, Payload, SystemMessage};

use crate::model::config::{NodeConfig, RemoteSources};
use crate::runtime::core::Core;
use crate::wire::{DirectoryVersion, MemberInfo, Registration, Response};

fn leader(dir: &tempfile::TempDir) -> std::sync::Arc<Core> {
    Core::new(NodeConfig::for_test("127.0.0.1:9", dir.path())).expect("a core")
}

fn member(node: &str, caps: &[&str], incarnation: u64) -> MemberInfo {
    MemberInfo {
        node: node.into(),
        capabilities: caps.iter().map(|c| c.to_string()).collect(),
        remote_sources: RemoteSources::Yes,
        sources: Vec::new(),
        pid: 1,
        incarnation,
    }
}

/// A member joining (its full entry, names and members known).
fn join(info: MemberInfo, names: &[(&str, u64)]) -> Registration {
    Registration {
        node: info.node.clone(),
        incarnation: info.incarnation,
        info: Some(info),
        since: None,
        names: Some(names.iter().map(|(n, id)| (n.to_string(), *id)).collect()),
        known: Some(Vec::new()),
        groups: None,
        groups_version: 0,
    }
}

/// A heartbeat with nothing changed, from directory version `since`.
fn beat(node: &str, incarnation: u64, since: DirectoryVersion) -> Registration {
    Registration {
        node: node.into(),
        incarnation,
        info: None,
        since: Some(since),
        names: None,
        known: None,
        groups: None,
        groups_version: 0,
    }
}

async fn update(rx: &mut mpsc::UnboundedReceiver<Incoming>) -> (String, ConventionChange) {
    let m = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("in time").expect("open");
    match m.payload {
        Payload::System(SystemMessage::ActorSystemConventionUpdate { node, change, .. }) => (node, change),
        other => panic!("not a convention update: {other:?}"),
    }
}

fn registered(r: Response) -> (DirectoryVersion, bool, Vec<MemberInfo>, Vec<String>, bool) {
    match r {
        Response::Registered { directory, full, members, removed, send_info, .. } => {
            (directory, full, members, removed, send_info)
        }
        other => panic!("not registered: {other:?}"),
    }
}

#[tokio::test]
async fn watchers_hear_of_joins_capability_changes_restarts_and_losses() {
    let dir = tempfile::tempdir().unwrap();
    let core = leader(&dir);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = core.register_client(tx);
    core.watch(watcher, true);
    let (_, full, members, _, _) = registered(core.handle_register(join(member("m:1", &["x"], 1), &[])));
    assert!(full);
    assert_eq!(members.len(), 2, "the member and the leader itself");
    assert_eq!(update(&mut rx).await, ("m:1".into(), ConventionChange::Joined));
    core.handle_register(join(member("m:1", &["y"], 1), &[]));
    assert_eq!(update(&mut rx).await, ("m:1".into(), ConventionChange::CapabilitiesChanged));
    // The same address in another life: the old one is lost, the new one joins.
    core.handle_register(join(member("m:1", &["y"], 2), &[]));
    assert_eq!(update(&mut rx).await, ("m:1".into(), ConventionChange::Lost));
    assert_eq!(update(&mut rx).await, ("m:1".into(), ConventionChange::Joined));
    core.node_lost("m:1", ConventionChange::Left);
    assert_eq!(update(&mut rx).await, ("m:1".into(), ConventionChange::Left));
    assert!(core.status().convention.members.is_empty());
}

#[tokio::test]
async fn heartbeats_carry_only_what_changed_since_the_members_copy() {
    let dir = tempfile::tempdir().unwrap();
    let core = leader(&dir);
    let (v1, _, _, _, _) = registered(core.handle_register(join(member("m:1", &[], 1), &[])));
    let (v2, ..) = registered(core.handle_register(join(member("m:2", &[], 1), &[])));
    // Nothing changed since v2: an empty delta.
    let (v, full, members, removed, send_info) = registered(core.handle_register(beat("m:1", 1, v2)));
    assert!(!full && members.is_empty() && removed.is_empty() && !send_info);
    assert_eq!(v, v2);
    // Since v1: m:2's join.
    let (_, full, members, _, _) = registered(core.handle_register(beat("m:1", 1, v1)));
    assert!(!full);
    assert_eq!(members.iter().map(|m| m.node.as_str()).collect::<Vec<_>>(), vec!["m:2"]);
    // A departure travels as a removal.
    core.node_lost("m:2", ConventionChange::Left);
    let (_, _, members, removed, _) = registered(core.handle_register(beat("m:1", 1, v2)));
    assert!(members.is_empty());
    assert_eq!(removed, vec!["m:2".to_string()]);
    // A copy from another leader's life gets the whole directory.
    let other = DirectoryVersion { leader: v2.leader ^ 1, ..v2 };
    let (_, full, members, _, _) = registered(core.handle_register(beat("m:1", 1, other)));
    assert!(full);
    assert_eq!(members.len(), 2);
    // A heartbeat from a member the leader does not know asks for its entry.
    let (.., send_info) = registered(core.handle_register(beat("m:7", 1, v2)));
    assert!(send_info);
}

#[tokio::test]
async fn a_member_declared_lost_is_fenced_until_it_comes_back_as_a_new_incarnation() {
    let dir = tempfile::tempdir().unwrap();
    let core = leader(&dir);
    core.handle_register(join(member("m:1", &[], 7), &[]));
    core.node_lost("m:1", ConventionChange::Lost);
    assert!(matches!(core.handle_register(join(member("m:1", &[], 7), &[])), Response::Fenced));
    let (_, _, members, _, _) = registered(core.handle_register(join(member("m:1", &[], 8), &[])));
    assert!(members.iter().any(|m| m.node == "m:1" && m.incarnation == 8));
}

#[tokio::test]
async fn a_global_name_has_one_holder_until_released_or_its_node_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let core = leader(&dir);
    let at = |node: &str, id| Address { node: node.into(), id };
    let claim = |name: &str, c: Option<Address>| core.try_claim(name, c).expect("leading and gathered");
    core.handle_register(join(member("m:1", &[], 1), &[]));
    assert_eq!(claim("A", Some(at("m:1", 5))), Some(at("m:1", 5)));
    assert_eq!(claim("A", Some(at("m:2", 6))), Some(at("m:1", 5)));
    core.handle_release("A", &at("m:2", 6));
    assert_eq!(claim("A", None), Some(at("m:1", 5)), "only the holder releases");
    core.node_lost("m:1", ConventionChange::Lost);
    assert_eq!(claim("A", Some(at("m:2", 6))), Some(at("m:2", 6)));
    // A holder on this node that no longer exists is replaced.
    let here = core.addr.clone();
    assert_eq!(claim("B", Some(at(&here, 4242))), Some(at(&here, 4242)));
    assert_eq!(claim("B", Some(at("m:2", 7))), Some(at("m:2", 7)));
}

#[tokio::test]
async fn members_bring_their_names_to_a_new_leader_and_a_second_holder_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let core = leader(&dir);
    let at = |node: &str, id| Address { node: node.into(), id };
    core.handle_register(join(member("m:1", &[], 1), &[("A", 5), ("B", 6)]));
    assert_eq!(core.try_claim("A", None), Some(Some(at("m:1", 5))));
    // m:2 held A too (it was on the other side of a partition): m:1's is kept.
    core.handle_register(join(member("m:2", &[], 1), &[("A", 9)]));
    assert_eq!(core.try_claim("A", None), Some(Some(at("m:1", 5))));
    assert_eq!(core.status().convention.names.len(), 2);
}

/// The path of the leader's record of having led members, in `dir` (its state directory).
fn record(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("led-members")
}

#[tokio::test]
async fn a_fresh_leader_answers_claims_at_once_and_one_that_led_members_gathers_first() {
    let dir = tempfile::tempdir().unwrap();
    let first = leader(&dir);
    super::start(&first);
    assert!(!first.status().convention.gathering, "a fresh state directory: no earlier convention");
    assert_eq!(first.try_claim("A", Some(first.address(1))), Some(Some(first.address(1))));
    // A member joins: the record is on disk before the answer.
    assert!(!record(&dir).exists());
    first.handle_register(join(member("m:1", &[], 1), &[("B", 6)]));
    assert!(record(&dir).exists());
    // The same node restarted (a SIGKILL leaves the state directory): it gathers the names
    // members still hold before it answers a claim.
    let again = leader(&dir);
    super::start(&again);
    assert!(again.status().convention.gathering);
    assert_eq!(again.try_claim("B", Some(again.address(2))), None, "no claim answered while gathering");
}

#[tokio::test]
async fn a_leader_listed_with_others_gathers_even_when_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::for_test("127.0.0.1:9", dir.path());
    config.convention.leaders = vec!["127.0.0.1:9".into(), "127.0.0.1:10".into()];
    let core = Core::new(config).expect("a core");
    super::start(&core);
    assert!(core.status().convention.gathering, "the next listed node may have led meanwhile");
}

#[tokio::test]
async fn a_graceful_stop_keeps_the_record_while_members_may_hold_names() {
    let dir = tempfile::tempdir().unwrap();
    let core = leader(&dir);
    core.handle_register(join(member("m:1", &[], 1), &[]));
    // What a stop does after saying goodbye to the members.
    core.forget_record_if_unneeded();
    assert!(record(&dir).exists(), "a member still runs, with names this leader granted");
    core.node_lost("m:1", ConventionChange::Left);
    core.leave_convention().await;
    assert!(!record(&dir).exists(), "every member left with a goodbye: nobody holds its names");
    let other = tempfile::tempdir().unwrap();
    let core = leader(&other);
    core.handle_register(join(member("m:1", &[], 1), &[]));
    core.node_lost("m:1", ConventionChange::Lost);
    core.leave_convention().await;
    assert!(record(&other).exists(), "a member lost without a goodbye may come back with names");
}

/// A node listing `leader` as its convention (nobody there unless the test listens).
fn node_of(dir: &tempfile::TempDir, leader: &str) -> std::sync::Arc<Core> {
    let mut config = NodeConfig::for_test("127.0.0.1:11", dir.path());
    config.convention.leaders = vec![leader.to_string()];
    Core::new(config).expect("a core")
}

/// A loopback address nobody listens on (bound a moment ago, then let go).
fn nobody() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

#[tokio::test]
async fn a_node_with_nobody_at_its_convention_address_serves_alone() {
    let dir = tempfile::tempdir().unwrap();
    let core = node_of(&dir, &nobody());
    let (one, two) = (core.register_client(mpsc::unbounded_channel().0), core.address(2));
    assert_eq!(core.try_claim("A", Some(one.clone())), None, "before it knows, it grants nothing");
    core.probe_listed().await;
    let st = core.status().convention;
    assert_eq!((st.role.as_str(), st.joined), ("alone", false));
    assert_eq!(core.try_claim("A", Some(one.clone())), Some(Some(one.clone())));
    assert_eq!(core.try_claim("A", Some(two)), Some(Some(one)), "one holder");
    // Another node that lists it (misconfigured) is not its member.
    assert!(matches!(core.handle_register(join(member("m:1", &[], 1), &[])), Response::NotLeader { .. }));
    assert!(!record(&dir).exists());
}

#[tokio::test]
async fn a_stalled_leader_is_not_nobody_and_a_node_a_leader_answered_never_serves_alone() {
    // Bound and listening, never answering: what a stopped (SIGSTOP) leader looks like.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dir = tempfile::tempdir().unwrap();
    let core = node_of(&dir, &stalled.local_addr().expect("addr").to_string());
    core.probe_listed().await;
    assert_eq!(core.status().convention.role, "member");
    assert_eq!(core.try_claim("A", Some(core.address(1))), None);
    // A node that was part of a convention and lost its leader.
    let dir = tempfile::tempdir().unwrap();
    let core = node_of(&dir, &nobody());
    core.leadership.answered();
    core.probe_listed().await;
    assert_eq!(core.status().convention.role, "member");
    assert_eq!(core.try_claim("A", Some(core.address(1))), None, "it must not grant names on its own");
}
