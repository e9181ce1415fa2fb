//! The testkit against a real plugin (`tests/plugins/faulty`, built by cargo, packed, loaded
//! into a node inside this test process): create, tell, ask, expect, their timeouts and
//! errors, a panicking actor, capability requirements.

use std::time::Duration;

use troupe_testkit::message::Payload;
use troupe_testkit::{Error, TestNode, DEFAULT_TIMEOUT};

mod common;

fn node_with_faulty(caps: &[&str]) -> TestNode {
    let mut node = TestNode::with_capabilities(caps).expect("an in-process node");
    let hash = node.load_crate(&common::faulty_crate()).expect("faulty builds and loads");
    assert_eq!(hash.len(), 64);
    node
}

#[test]
fn create_ask_tell_and_expect_talk_to_a_real_actor() {
    let mut node = node_with_faulty(&[]);
    let echo = node.create("faulty.Echo").expect("create Echo");
    assert_eq!(node.ask_text(&echo, "hi").unwrap(), "echo: hi");
    // A tell's reply comes to the test's own address.
    node.tell(&echo, "told");
    let m = node.expect(DEFAULT_TIMEOUT).expect("the reply to a tell");
    assert_eq!(m.sender.as_ref(), Some(&echo));
    assert_eq!(m.payload, Payload::Text("echo: told".into()));
    // The node's status shows the actor.
    assert!(node.status().actors.iter().any(|a| a.address == echo && a.type_name == "faulty.Echo"));
    // Nothing else arrives: expect times out and says what it waited for.
    match node.expect(Duration::from_millis(100)) {
        Err(e @ Error::Timeout { .. }) => assert!(e.to_string().contains("to the test's address"), "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // kill: the actor exits; a later ask comes back as a PoisonMessage.
    node.kill(&echo);
    let e = node.ask_text(&echo, "anyone?").unwrap_err();
    assert!(matches!(e, Error::Poison { ref target, .. } if *target == echo), "{e}");
    node.shutdown().expect("a clean shutdown");
}

#[test]
fn a_panicking_handler_comes_back_as_poison_and_the_node_goes_on() {
    let node = node_with_faulty(&[]);
    let p = node.create("faulty.PanicOnMessage").unwrap();
    let e = node.ask(&p, "panic", DEFAULT_TIMEOUT).unwrap_err();
    assert!(e.to_string().contains("PoisonMessage") && e.to_string().contains("asked to panic"), "{e}");
    assert_eq!(node.ask_text(&p, "still there").unwrap(), "echo: still there");
    // A constructor that panics fails the create: its parent hears why, and the node goes on.
    let mut node = node;
    let spawner = node.create("faulty.Spawner").unwrap();
    node.tell(&spawner, "create faulty.PanicInCreate");
    assert!(node.expect_text(DEFAULT_TIMEOUT).unwrap().starts_with("created "));
    let exited = node.expect_text(DEFAULT_TIMEOUT).unwrap();
    assert!(exited.contains("PluginError") && exited.contains("constructor panicked on purpose"), "{exited}");
    assert_eq!(node.ask_text(&p, "and now").unwrap(), "echo: and now");
}

#[test]
fn requirements_are_checked_against_the_test_nodes_capabilities() {
    let none = node_with_faulty(&[]);
    let e = none.create("faulty.Roomy").unwrap_err();
    assert!(e.to_string().contains("NoCompatibleSystemForActor") && e.to_string().contains("mem>=32"), "{e}");
    let e = none.create("faulty.Nope").unwrap_err();
    assert!(e.to_string().contains("InvalidActorSpecification"), "{e}");

    let mut big = node_with_faulty(&["mem=64", "gpu"]);
    let spawner = big.create("faulty.Spawner").unwrap();
    // ctx.capability: the hosting node's value, "true" for a plain name, none if absent.
    assert_eq!(big.ask_text(&spawner, "cap mem").unwrap(), "cap mem = 64");
    assert_eq!(big.ask_text(&spawner, "cap gpu").unwrap(), "cap gpu = true");
    assert_eq!(big.ask_text(&spawner, "cap disk").unwrap(), "cap disk = none");
    big.tell(&spawner, "create faulty.Roomy -");
    let created = big.expect_text(DEFAULT_TIMEOUT).unwrap();
    assert!(created.starts_with("created "), "{created}");
    // Lowering the value: the child exits and its parent (relaying to us) hears why.
    big.change_capability(true, "mem=16").unwrap();
    let why = big.expect_text(DEFAULT_TIMEOUT).unwrap();
    assert!(why.starts_with("child exited") && why.contains("mem>=32"), "{why}");
    assert_eq!(big.ask_text(&spawner, "cap mem").unwrap(), "cap mem = 16", "the value as changed");
}

#[test]
fn nothing_loaded_and_a_missing_crate_are_clear_errors() {
    let mut node = TestNode::start().unwrap();
    assert!(matches!(node.create("faulty.Echo"), Err(Error::NothingLoaded)));
    let e = node.load_crate(std::path::Path::new("/nonexistent")).unwrap_err();
    assert!(e.to_string().contains("has no Cargo.toml"), "{e}");
    let e = node.load_zip(b"not a zip".to_vec()).unwrap_err();
    assert!(e.to_string().starts_with("the node refused the source: "), "{e}");
    assert!(e.to_string().contains("zip"), "{e}");
    let e = node.change_capability(true, "mem>=3").unwrap_err();
    assert!(e.to_string().contains("cannot contain `>`"), "{e}");
}
