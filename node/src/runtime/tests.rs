//! The core in-process: routing, poison, creates refused and capability changes, with no node
//! process and no plugin (client endpoints stand in for actors).

use std::time::Duration;

use tokio::sync::mpsc;
use troupe_actor_abi::message::{Address, CreateSpec, Incoming, Payload, SystemMessage};

use super::core::Core;
use crate::model::config::NodeConfig;
use crate::wire::Coded;

fn core(dir: &tempfile::TempDir) -> std::sync::Arc<Core> {
    let mut config = NodeConfig::for_test("127.0.0.1:9", dir.path());
    config.capabilities = vec!["morse".into()];
    Core::new(config).expect("a core")
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Incoming>) -> Incoming {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a message in time").expect("open")
}

fn text(s: &str) -> Payload {
    Payload::Text(s.into())
}

#[tokio::test]
async fn a_message_between_endpoints_arrives_with_its_sender() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let (atx, _arx) = mpsc::unbounded_channel();
    let (btx, mut brx) = mpsc::unbounded_channel();
    let a = core.register_client(atx);
    let b = core.register_client(btx);
    core.send(Some(a.clone()), &b, text("hi"));
    let m = next(&mut brx).await;
    assert_eq!((m.sender, m.payload), (Some(a), text("hi")));
}

#[tokio::test]
async fn a_message_to_a_gone_actor_comes_back_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let (atx, mut arx) = mpsc::unbounded_channel();
    let (btx, _brx) = mpsc::unbounded_channel();
    let a = core.register_client(atx);
    let b = core.register_client(btx);
    core.unregister_client(&b);
    core.send(Some(a.clone()), &b, text("anyone?"));
    let Payload::System(SystemMessage::PoisonMessage { message, target, details }) =
        next(&mut arx).await.payload
    else {
        panic!("no poison");
    };
    assert_eq!((*message, target, details.as_str()), (text("anyone?"), b, "the client disconnected"));
    let nobody = Address { node: core.addr.clone(), id: 12345 };
    core.send(Some(a), &nobody, text("x"));
    let Payload::System(SystemMessage::PoisonMessage { details, .. }) = next(&mut arx).await.payload else {
        panic!("no poison");
    };
    assert!(details.contains("no actor") && details.contains("exists on this node"), "{details}");
}

#[tokio::test]
async fn a_message_to_an_unreachable_node_comes_back_to_its_sender() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let (a, mut arx) = endpoint(&core);
    // A loopback port nothing listens on: the link cannot connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let far = Address { node: format!("127.0.0.1:{port}"), id: 7 };
    core.send(Some(a), &far, text("hello"));
    let Payload::System(SystemMessage::PoisonMessage { target, details, .. }) = next(&mut arx).await.payload
    else {
        panic!("no poison");
    };
    assert_eq!(target, far);
    assert!(details.contains("is unreachable"), "{details}");
}

#[tokio::test]
async fn creates_naming_no_version_are_refused_with_thespians_code() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let spec = |hash: Option<&str>| CreateSpec {
        type_name: "m.T".into(),
        source_hash: hash.map(String::from),
        ..CreateSpec::default()
    };
    let err = core.create_for_client(spec(Some("0123456789abcdef"))).await.unwrap_err();
    assert_eq!(err.code(), "InvalidActorSourceHash");
    assert!(err.to_string().contains("does not match any loaded source"), "{err}");
    let err = core.create_for_client(spec(None)).await.unwrap_err();
    assert!(err.to_string().contains("was not given"), "{err}");
    let err = core.create_for_client(spec(Some("@web"))).await.unwrap_err();
    assert!(err.to_string().contains("names no group"), "{err}");
}

#[tokio::test]
async fn capabilities_change_and_an_empty_name_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let err = core.change_capability(true, "  ").unwrap_err();
    assert_eq!(err.code(), "usage");
    core.change_capability(true, "gpu").unwrap();
    core.change_capability(false, "morse").unwrap();
    assert_eq!(core.status().capabilities, vec!["gpu".to_string()]);
    core.change_capability(true, "mem = 64").unwrap();
    core.change_capability(true, "gpu=A100").unwrap();
    assert_eq!(core.status().capabilities, ["gpu=A100", "mem=64"]);
    let err = core.change_capability(true, "mem>=3").unwrap_err();
    assert_eq!(err.code(), "usage");
    let err = core.change_capability(false, "mem=64").unwrap_err();
    assert!(err.to_string().contains("name only"), "{err}");
    assert_eq!(core.status().capabilities, ["gpu=A100", "mem=64"]);
}

#[tokio::test]
async fn a_stopped_core_refuses_loads_and_creates_as_shutting_down() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    core.stop(Duration::from_secs(5)).await;
    let err = core.load(b"not a zip".to_vec(), String::new()).await.unwrap_err();
    // The archive is read before the registry is asked: garbage is refused as garbage.
    assert_eq!(err.code(), "not_a_zip");
    let spec = CreateSpec {
        type_name: "m.T".into(),
        source_hash: Some("0123456789".into()),
        ..CreateSpec::default()
    };
    let err = core.create_for_client(spec).await.unwrap_err();
    assert_eq!(err.code(), "ActorSystemShuttingDown");
    assert!(!dir.path().join("store").exists(), "the store is deleted at stop");
}

/// A client endpoint registered on `core`: its address, and what reaches it.
fn endpoint(core: &Core) -> (Address, mpsc::UnboundedReceiver<Incoming>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (core.register_client(tx), rx)
}

/// An id as another node allocates it (another prefix than this process start's).
fn foreign_id(core: &Core) -> u64 {
    let ours = core.ids.allocate();
    (((ours >> 32) ^ 1) << 32) | 5
}

#[tokio::test]
async fn a_message_that_overtakes_its_actors_create_waits_for_it_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let (sender, mut srx) = endpoint(&core);
    // The address came from elsewhere (the leader); the create is still on another link.
    let id = foreign_id(&core);
    let at = core.address(id);
    core.send(Some(sender.clone()), &at, text("first"));
    core.send(Some(sender.clone()), &at, text("second"));
    // The create lands (a client endpoint stands in for the actor).
    let (tx, mut rx) = mpsc::unbounded_channel();
    core.actors.insert(id, crate::tables::actors::ActorRec::client(tx));
    core.send(Some(sender.clone()), &at, text("third"));
    for want in ["first", "second", "third"] {
        assert_eq!(next(&mut rx).await.payload, text(want), "delivered, in order");
    }
    assert!(srx.try_recv().is_err(), "no poison came back");
}

#[tokio::test]
async fn a_message_to_an_actor_that_never_comes_goes_back_after_the_wait_and_ours_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(&dir);
    let (sender, mut srx) = endpoint(&core);
    let ours = core.address(core.ids.allocate() + 100);
    core.send(Some(sender.clone()), &ours, text("to nobody"));
    let poison = |m: Incoming| match m.payload {
        Payload::System(SystemMessage::PoisonMessage { target, .. }) => target,
        other => panic!("not poison: {other:?}"),
    };
    assert_eq!(poison(next(&mut srx).await), ours, "an id this node allocated is not awaited");
    let theirs = core.address(foreign_id(&core));
    core.send(Some(sender), &theirs, text("to a create that never comes"));
    assert_eq!(poison(next(&mut srx).await), theirs, "after the wait, it goes back");
}
