//! The leader's side of the convention in-process: registrations, restarts, losses, watchers
//! and global names, with client endpoints standing in for actors.

use std::time::Duration;

use tokio::sync::mpsc;
use troupe_actor_abi::message::{Address, ConventionChange, Incoming, Payload, SystemMessage};

use crate::model::config::{NodeConfig, RemoteSources};
use crate::runtime::core::Core;
use crate::wire::{MemberInfo, Response};

fn leader(dir: &tempfile::TempDir) -> std::sync::Arc<Core> {
    Core::new(NodeConfig::for_test("127.0.0.1:9", dir.path())).expect("a core")
}

fn member(node: &str, caps: &[&str], pid: u32) -> MemberInfo {
    MemberInfo {
        node: node.into(),
        capabilities: caps.iter().map(|c| c.to_string()).collect(),
        remote_sources: RemoteSources::Yes,
        sources: Vec::new(),
        pid,
    }
}

async fn update(rx: &mut mpsc::UnboundedReceiver<Incoming>) -> (String, ConventionChange) {
    let m = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("in time").expect("open");
    match m.payload {
        Payload::System(SystemMessage::ActorSystemConventionUpdate { node, change, .. }) => (node, change),
        other => panic!("not a convention update: {other:?}"),
    }
}

#[tokio::test]
async fn watchers_hear_of_joins_capability_changes_restarts_and_losses() {
    let dir = tempfile::tempdir().unwrap();
    let core = leader(&dir);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = core.register_client(tx);
    core.watch(watcher, true);
    let Response::Registered { members, .. } = core.handle_register(member("m:1", &["x"], 1)) else {
        panic!("not registered")
    };
    assert_eq!(members.len(), 2, "the member and the leader itself");
    assert_eq!(update(&mut rx).await, ("m:1".into(), ConventionChange::Joined));
    core.handle_register(member("m:1", &["y"], 1));
    assert_eq!(update(&mut rx).await, ("m:1".into(), ConventionChange::CapabilitiesChanged));
    // The same address with another process: the old one is lost, the new one joins.
    core.handle_register(member("m:1", &["y"], 2));
    assert_eq!(update(&mut rx).await, ("m:1".into(), ConventionChange::Lost));
    assert_eq!(update(&mut rx).await, ("m:1".into(), ConventionChange::Joined));
    core.node_lost("m:1", ConventionChange::Left);
    assert_eq!(update(&mut rx).await, ("m:1".into(), ConventionChange::Left));
    assert!(core.status().convention.members.is_empty());
}

#[tokio::test]
async fn a_global_name_has_one_holder_until_released_or_its_node_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let core = leader(&dir);
    let at = |node: &str, id| Address { node: node.into(), id };
    assert_eq!(core.handle_claim("A", Some(at("m:1", 5))), Some(at("m:1", 5)));
    assert_eq!(core.handle_claim("A", Some(at("m:2", 6))), Some(at("m:1", 5)));
    core.handle_release("A", &at("m:2", 6));
    assert_eq!(core.handle_claim("A", None), Some(at("m:1", 5)), "only the holder releases");
    core.node_lost("m:1", ConventionChange::Lost);
    assert_eq!(core.handle_claim("A", Some(at("m:2", 6))), Some(at("m:2", 6)));
    // A holder on this node that no longer exists is replaced.
    let here = core.addr.clone();
    assert_eq!(core.handle_claim("B", Some(at(&here, 4242))), Some(at(&here, 4242)));
    assert_eq!(core.handle_claim("B", Some(at("m:2", 7))), Some(at("m:2", 7)));
}
