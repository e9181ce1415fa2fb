//! What a Thespian user, or a Rust actor programmer, expects of the runtime (issue 15): source
//! notifications (reference §8 scenarios 9 and 19), system calls from actors (18, 48), asks
//! from inside an actor, supervision, non-recursive exit requests (4), an actor's own status,
//! unqualified type names (12), a source authority that fails (22) and global names as an
//! actor sees them (32). Real nodes on loopback, the `tests/plugins/parity` plugin, and
//! events awaited, never slept on.

use std::time::Duration;

use troupe_actor_abi::message::{self, Address, CreateSpec, Payload, SystemMessage};
use troupe_node::archive::{self, ArchiveLimits};
use troupe_node::client::Client;
use troupe_node::protocol::{Request, Response};
use troupe_tests::{
    ask, create, create_spec, next_message, next_text, send_text, wait_for, Convention, NodeProc, TestDir,
    FAST_HEARTBEAT, REPLY_TIMEOUT,
};

/// The parity plugin, packed.
fn parity_zip(dir: &TestDir) -> std::path::PathBuf {
    troupe_tests::ensure_built_packages(&["troupe-test-parity"]);
    dir.pack("parity.zip", &[troupe_tests::plugin_lib("troupe_test_parity")])
}

/// The sha256 a node gives `zip` when it is loaded.
fn hash_of(zip: &std::path::Path) -> String {
    let bytes = std::fs::read(zip).expect("the zip");
    archive::open(&bytes, &ArchiveLimits::default()).expect("a valid zip").hash
}

/// Sends a runtime message to `to` from `client`.
async fn send_system(client: &mut Client, to: &Address, m: SystemMessage) {
    match client.request(Request::Send { to: to.clone(), payload: Payload::System(m) }).await {
        Ok(Response::Sent) => {}
        other => panic!("send to {to} failed: {other:?}"),
    }
}

/// Sends a typed `(bytes, info)` message with `tag` (the parity plugin's `Load` shapes).
async fn send_zip(client: &mut Client, to: &Address, tag: &str, zip: &std::path::Path) {
    let bytes = std::fs::read(zip).expect("the zip");
    let body = message::encode(&(bytes, zip.file_name().unwrap().to_string_lossy().to_string()));
    let payload = Payload::Typed { tag: tag.into(), body };
    match client.request(Request::Send { to: to.clone(), payload }).await {
        Ok(Response::Sent) => {}
        other => panic!("send to {to} failed: {other:?}"),
    }
}

/// The next message must be a `PoisonMessage` about `target`; returns its details.
async fn expect_poison(client: &mut Client, target: &Address) -> String {
    match next_message(client).await.payload {
        Payload::System(SystemMessage::PoisonMessage { target: t, details, .. }) => {
            assert_eq!(&t, target, "{details}");
            details
        }
        other => panic!("expected a PoisonMessage from {target}, got {other:?}"),
    }
}

/// `child ADDRESS` as the Parent reports a create.
fn child_of(line: &str) -> Address {
    let a = line.strip_prefix("child ").unwrap_or_else(|| panic!("not a child report: {line}"));
    let (node, id) = a.rsplit_once('#').expect("an address");
    Address { node: node.into(), id: u64::from_str_radix(id, 16).expect("a hex id") }
}

// ---- source notifications (scenarios 9, 19) ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_hear_each_load_and_unload_once() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let parity = node.load(&parity_zip(&dir));
    let faulty_zip = dir.faulty_zip();
    let faulty = hash_of(&faulty_zip);

    // Registered before the load: told of what is loaded now (its own version), then of the load.
    let mut c1 = node.client().await;
    let w1 = create(&mut c1, "parity.Watcher", &parity).await.unwrap();
    send_text(&mut c1, &w1, "subscribe").await;
    let first = next_text(&mut c1).await;
    assert!(first.starts_with(&format!("loaded {parity} ")), "{first}");
    assert_eq!(node.load(&faulty_zip), faulty);
    assert!(next_text(&mut c1).await.starts_with(&format!("loaded {faulty} ")));
    assert_eq!(ask(&mut c1, &w1, "x").await, "echo: x", "exactly one LoadedSource per hash");

    // Registered after: told of both at once, once each.
    let mut c2 = node.client().await;
    let w2 = create(&mut c2, "parity.Watcher", &parity).await.unwrap();
    send_text(&mut c2, &w2, "subscribe").await;
    let mut got = vec![next_text(&mut c2).await, next_text(&mut c2).await];
    got.sort();
    let mut want = [format!("loaded {parity} "), format!("loaded {faulty} ")];
    want.sort();
    for (g, w) in got.iter().zip(&want) {
        assert!(g.starts_with(w.as_str()), "{got:?}");
    }
    assert_eq!(ask(&mut c2, &w2, "x").await, "echo: x");

    // Unsubscribed: hears nothing more.
    let mut c3 = node.client().await;
    let w3 = create(&mut c3, "parity.Watcher", &parity).await.unwrap();
    send_text(&mut c3, &w3, "subscribe").await;
    let _ = (next_text(&mut c3).await, next_text(&mut c3).await);
    assert_eq!(ask(&mut c3, &w3, "unsubscribe").await, "unsubscribed");

    // Unload: both subscribers hear it (scenario 19), the unsubscribed one does not.
    node.run("unload", &[&faulty]).assert_ok();
    assert_eq!(next_text(&mut c1).await, format!("unloaded {faulty}"));
    assert_eq!(next_text(&mut c2).await, format!("unloaded {faulty}"));
    assert_eq!(ask(&mut c3, &w3, "y").await, "echo: y", "an unsubscribed watcher heard of the unload");

    // A subscriber that exits changes nothing for loads or for the others; reloading the same
    // bytes gives the same hash and a new LoadedSource.
    send_system(&mut c1, &w1, SystemMessage::exit_request()).await;
    wait_for("the first watcher to be gone", REPLY_TIMEOUT, || {
        (!node.status().actors.iter().any(|a| a.address == w1)).then_some(())
    });
    wait_for("the unloaded version to be gone", REPLY_TIMEOUT, || {
        (!node.status().versions.iter().any(|v| v.hash == faulty)).then_some(())
    });
    assert_eq!(node.load(&faulty_zip), faulty, "same bytes, same hash");
    assert!(next_text(&mut c2).await.starts_with(&format!("loaded {faulty} ")));
    assert_eq!(ask(&mut c2, &w2, "z").await, "echo: z");
    assert_eq!(ask(&mut c3, &w3, "z").await, "echo: z");
}

// ---- system calls (scenarios 18, 48) -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_calls_are_refused_unless_the_node_allows_them() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let parity = node.load(&parity_zip(&dir));
    let mut c = node.client().await;
    let loader = create(&mut c, "parity.Loader", &parity).await.unwrap();
    let refused = ask(&mut c, &loader, "addcap gpu").await;
    assert!(refused.starts_with("error chgcap: system calls from actors are disabled"), "{refused}");
    assert!(refused.contains("--actor-system-calls"), "{refused}");
    send_zip(&mut c, &loader, "parity/Load", &dir.faulty_zip()).await;
    assert!(next_text(&mut c).await.starts_with("error load: system calls from actors are disabled"));
    assert!(!node.status().capabilities.contains(&"gpu".to_string()));
    assert_eq!(node.status().versions.len(), 1, "nothing was loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_loads_unloads_changes_capabilities_and_stops_its_node() {
    let dir = TestDir::new();
    let mut node = NodeProc::start_with(&dir, "", &["--actor-system-calls"]);
    let parity = node.load(&parity_zip(&dir));
    let mut c = node.client().await;
    let loader = create(&mut c, "parity.Loader", &parity).await.unwrap();

    // Capabilities (scenario 48: an actor can update its system's capability).
    assert_eq!(ask(&mut c, &loader, "addcap gpu").await, "ok chgcap: gpu");
    assert!(node.status().capabilities.contains(&"gpu".to_string()));
    assert_eq!(ask(&mut c, &loader, "delcap gpu").await, "ok chgcap: ");
    assert!(!node.status().capabilities.contains(&"gpu".to_string()));

    // Load from bytes it received, then unload.
    let faulty_zip = dir.faulty_zip();
    let faulty = hash_of(&faulty_zip);
    send_zip(&mut c, &loader, "parity/Load", &faulty_zip).await;
    assert_eq!(next_text(&mut c).await, format!("ok load: {faulty}"));
    let echo = create(&mut c, "faulty.Echo", &faulty).await.unwrap();
    assert_eq!(ask(&mut c, &echo, "hi").await, "echo: hi");
    let gate = create(&mut c, "faulty.Gatekeeper", &faulty).await.unwrap();
    assert_eq!(
        ask(&mut c, &loader, &format!("unload {}", &faulty[..12])).await,
        format!("ok unload: {faulty}")
    );
    let st = node.status();
    let v = st.versions.iter().find(|v| v.hash == faulty).expect("draining while its actors live");
    assert_eq!(v.state, "draining", "{v:#?}");

    // The same source authority as the CLI's: a gatekeeper refuses the load.
    assert_eq!(ask(&mut c, &gate, "register").await, "registered");
    let rejected = dir.pack_with(
        "rejected.zip",
        &[troupe_tests::plugin_lib("troupe_test_faulty")],
        &["--name", "rejected-thing"],
    );
    send_zip(&mut c, &loader, "parity/Load", &rejected).await;
    let refused = next_text(&mut c).await;
    assert!(refused.starts_with("error load:"), "{refused}");
    assert!(refused.contains("the gatekeeper refuses packages named rejected-*"), "{refused}");

    // Stop the node: the answer comes first, then the process exits.
    assert_eq!(ask(&mut c, &loader, "shutdown").await, "ok shutdown: stopping");
    assert!(node.wait_exit(Duration::from_secs(30)).is_some(), "the node did not exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_loads_a_source_uses_it_and_unloads_it_at_once_and_the_reply_still_arrives() {
    // Scenario 18.
    let dir = TestDir::new();
    let node = NodeProc::start_with(&dir, "", &["--actor-system-calls"]);
    let parity = node.load(&parity_zip(&dir));
    let mut c = node.client().await;
    let loader = create(&mut c, "parity.Loader", &parity).await.unwrap();
    let faulty_zip = dir.faulty_zip();
    let faulty = hash_of(&faulty_zip);
    send_zip(&mut c, &loader, "parity/LoadAndUse", &faulty_zip).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_text(&mut c).await);
    }
    assert_eq!(got[0], format!("ok load: {faulty}"), "{got:?}");
    got.sort();
    let mut want =
        vec![format!("ok load: {faulty}"), format!("ok unload: {faulty}"), "relay: echo: work".into()];
    want.sort();
    assert_eq!(got, want);
}

// ---- asks ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_asks_and_gets_the_reply_or_a_timeout_once() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let parity = node.load(&parity_zip(&dir));
    let mut c = node.client().await;
    let asker = create(&mut c, "parity.Asker", &parity).await.unwrap();
    let fragile = create(&mut c, "parity.Fragile", &parity).await.unwrap();

    let asked = ask(&mut c, &asker, &format!("ask {fragile} 5000 ping")).await;
    let id = asked.strip_prefix("asked #").expect("an id");
    assert_eq!(next_text(&mut c).await, format!("reply #{id} from {fragile}: alive 1"));

    // No reply in time: a timeout, and the late reply goes back to whoever sent it.
    let mut lc = node.client().await;
    let late = create(&mut lc, "parity.Late", &parity).await.unwrap();
    assert_eq!(ask(&mut lc, &late, "boss").await, "boss noted");
    let asked = ask(&mut c, &asker, &format!("ask {late} 200 1000 hi")).await;
    let id = asked.strip_prefix("asked #").expect("an id");
    assert_eq!(next_text(&mut c).await, format!("timeout #{id}"));
    let bounced = next_text(&mut lc).await;
    assert!(bounced.starts_with("bounced: ") && bounced.contains("timed out"), "{bounced}");
    assert_eq!(ask(&mut c, &asker, "ping").await, "pong", "the late reply was delivered after all");

    // Asking an actor that does not exist: the PoisonMessage is the reply.
    let nobody = Address { node: node.addr(), id: 0xdead };
    let asked = ask(&mut c, &asker, &format!("ask {nobody} 5000 hello")).await;
    let id = asked.strip_prefix("asked #").expect("an id");
    let reply = next_text(&mut c).await;
    assert!(reply.starts_with(&format!("reply #{id} from the runtime: System(PoisonMessage")), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_reaches_an_actor_on_another_node_and_its_reply_comes_back() {
    let dir = TestDir::new();
    let conv = Convention::start(&dir, &[("", &[]), ("picky", &[])]);
    let (leader, member) = (conv.node(0), conv.node(1));
    let parity = leader.load(&parity_zip(&dir));
    let faulty = leader.load(&dir.faulty_zip());
    let mut c = leader.client().await;
    let picky = create(&mut c, "faulty.Picky", &faulty).await.unwrap();
    assert_eq!(picky.node, member.addr(), "faulty.Picky needs the member's capability");
    let asker = create(&mut c, "parity.Asker", &parity).await.unwrap();
    assert_eq!(asker.node, leader.addr());
    let asked = ask(&mut c, &asker, &format!("ask {picky} 10000 over there")).await;
    let id = asked.strip_prefix("asked #").expect("an id");
    assert_eq!(next_text(&mut c).await, format!("reply #{id} from {picky}: echo: over there"));
}

// ---- exit requests (scenario 4) ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_recursive_exit_request_leaves_the_children_running() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let parity = node.load(&parity_zip(&dir));
    let mut c = node.client().await;

    let parent = create(&mut c, "parity.Parent", &parity).await.unwrap();
    let child = child_of(&ask(&mut c, &parent, "spawn parity.Fragile").await);
    assert_eq!(ask(&mut c, &child, "ping").await, "alive 1");
    send_system(&mut c, &parent, SystemMessage::exit_request().not_recursive()).await;
    wait_for("the parent to be gone", REPLY_TIMEOUT, || {
        (!node.status().actors.iter().any(|a| a.address == parent)).then_some(())
    });
    assert_eq!(ask(&mut c, &child, "ping").await, "alive 2", "the child keeps running");
    send_text(&mut c, &parent, "spawn parity.Fragile").await;
    expect_poison(&mut c, &parent).await;

    // The default, recursive: the child goes with its parent.
    let parent = create(&mut c, "parity.Parent", &parity).await.unwrap();
    let child = child_of(&ask(&mut c, &parent, "spawn parity.Fragile").await);
    send_system(&mut c, &parent, SystemMessage::exit_request()).await;
    wait_for("the child to be gone", REPLY_TIMEOUT, || {
        (!node.status().actors.iter().any(|a| a.address == child)).then_some(())
    });
    send_text(&mut c, &child, "ping").await;
    expect_poison(&mut c, &child).await;
}

// ---- supervision ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervised_child_is_restarted_at_its_address_until_its_budget_is_spent() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let parity = node.load(&parity_zip(&dir));
    let mut pc = node.client().await;
    let parent = create(&mut pc, "parity.Parent", &parity).await.unwrap();
    let child = child_of(&ask(&mut pc, &parent, "supervise parity.Fragile 2 60000 20").await);
    let mut c = node.client().await;
    assert_eq!(ask(&mut c, &child, "ping").await, "alive 1");
    assert_eq!(ask(&mut c, &child, "ping").await, "alive 2");

    for restart in 1..=2 {
        send_text(&mut c, &child, "panic").await;
        let details = expect_poison(&mut c, &child).await;
        assert!(details.contains("asked to panic"), "{details}");
        let line = next_text(&mut pc).await;
        assert!(
            line.starts_with(&format!("restarted {child} (was {child}) after it failed: "))
                && line.ends_with(&format!("restart {restart}")),
            "{line}"
        );
        assert_eq!(ask(&mut c, &child, "ping").await, "alive 1", "restarted afresh at the same address");
    }
    // The budget is spent: the parent is told, as for any child.
    send_text(&mut c, &child, "panic").await;
    expect_poison(&mut c, &child).await;
    let line = next_text(&mut pc).await;
    assert!(line.starts_with(&format!("exited {child}: it failed: ")), "{line}");
    send_text(&mut c, &child, "ping").await;
    expect_poison(&mut c, &child).await;

    // A constructor that always fails: restarted twice, then reported.
    let bad = child_of(&ask(&mut pc, &parent, "supervise parity.BadCtor 2 60000 10").await);
    for restart in 1..=2 {
        let line = next_text(&mut pc).await;
        assert!(
            line.starts_with(&format!("restarted {bad} (was {bad}) after could not be created: PluginError")),
            "{line}"
        );
        assert!(line.ends_with(&format!("restart {restart}")), "{line}");
    }
    let line = next_text(&mut pc).await;
    assert!(line.starts_with(&format!("exited {bad}: could not be created: PluginError")), "{line}");

    // An exit that was asked for is not restarted.
    let calm = child_of(&ask(&mut pc, &parent, "supervise parity.Fragile 5 60000 0").await);
    send_system(&mut c, &calm, SystemMessage::exit_request()).await;
    assert_eq!(next_text(&mut pc).await, format!("exited {calm}: exited on request"));

    // A named child keeps its name.
    let named = child_of(&ask(&mut pc, &parent, "supervise-named parity.Fragile Single").await);
    send_text(&mut c, &named, "panic").await;
    expect_poison(&mut c, &named).await;
    assert!(next_text(&mut pc).await.starts_with(&format!("restarted {named} (was {named})")));
    assert_eq!(ask(&mut c, &named, "name").await, "name: Single");
    assert_eq!(node.status().global_names.get("Single"), Some(&named));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervised_child_whose_node_is_lost_is_restarted_on_another_node() {
    let dir = TestDir::new();
    let mut conv = Convention::start(
        &dir,
        &[("", FAST_HEARTBEAT), ("picky", FAST_HEARTBEAT), ("picky", FAST_HEARTBEAT)],
    );
    let parity = conv.leader().load(&parity_zip(&dir));
    let faulty = conv.leader().load(&dir.faulty_zip());
    let mut pc = conv.leader().client().await;
    let parent = create(&mut pc, "parity.Parent", &parity).await.unwrap();
    assert_eq!(parent.node, conv.leader_addr());
    let child =
        child_of(&ask(&mut pc, &parent, &format!("supervise-at faulty.Picky {faulty} picky 3")).await);
    let mut c = conv.leader().client().await;
    assert_eq!(ask(&mut c, &child, "hi").await, "echo: hi");
    let victim = conv.index_of(&child.node).expect("the child runs on a member");
    assert_ne!(victim, 0, "faulty.Picky needs a member's capability");
    conv.node_mut(victim).kill9();

    let line = next_text(&mut pc).await;
    let expected = format!("after its node {} was lost, restart 1", child.node);
    assert!(line.ends_with(&expected), "{line}");
    let moved = child_of(&format!("child {}", line.split_whitespace().nth(1).expect("an address")));
    assert_ne!(moved.node, child.node, "placed on the other member");
    assert_eq!(moved.id, child.id, "a restarted child keeps its id");
    assert_eq!(ask(&mut c, &moved, "again").await, "echo: again");
}

// ---- an actor's status ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_reports_its_status_and_troupe_ask_status_prints_it() {
    let dir = TestDir::new();
    // Two threads: G releases F while F spins.
    let node = NodeProc::start_with(&dir, "", &["--version-threads", "2"]);
    let parity = node.load(&parity_zip(&dir));
    let mut c = node.client().await;
    let f = create(&mut c, "parity.Fragile", &parity).await.unwrap();
    for n in 1..=3 {
        assert_eq!(ask(&mut c, &f, "ping").await, format!("alive {n}"));
    }
    let out = node.run("ask", &[&f.to_string(), "--status"]);
    out.assert_ok();
    let lines = out.lines();
    assert_eq!(lines[0], "type     parity.Fragile", "{out}");
    assert_eq!(lines[1], "handled  3", "{out}");
    assert_eq!(lines[2], "mailbox  0", "{out}");
    assert!(lines[3].starts_with("age      "), "{out}");
    assert_eq!(lines[4], "seen     3", "what the actor adds: {out}");

    // Messages waiting behind the request are its mailbox depth. F spins until G releases it;
    // G's echo on the same connection shows the node has queued everything sent before it.
    let g = create(&mut c, "parity.Fragile", &parity).await.unwrap();
    send_text(&mut c, &f, "spin until released").await;
    send_system(&mut c, &f, SystemMessage::StatusRequest { mailbox: None }).await;
    send_text(&mut c, &f, "ping").await;
    send_text(&mut c, &f, "ping").await;
    assert_eq!(ask(&mut c, &g, "queued").await, "echo: queued", "F answers nothing while it spins");
    let mut c2 = node.client().await;
    assert_eq!(ask(&mut c2, &g, "release").await, "released");
    assert_eq!(next_text(&mut c).await, "spun");
    match next_message(&mut c).await.payload {
        Payload::System(SystemMessage::ActorStatus { type_name, handled, mailbox, extra, .. }) => {
            assert_eq!((type_name.as_str(), handled, mailbox), ("parity.Fragile", 4, 2));
            assert_eq!(extra, [("seen".to_string(), "4".to_string())]);
        }
        other => panic!("expected an ActorStatus, got {other:?}"),
    }
    assert_eq!(next_text(&mut c).await, "alive 5");
    assert_eq!(next_text(&mut c).await, "alive 6");
}

// ---- scenarios 12, 22, 32 --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unqualified_type_name_is_an_invalid_actor_specification() {
    // Scenario 12: 'FooActor' with or without a hash.
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let parity = node.load(&parity_zip(&dir));
    let mut c = node.client().await;
    for name in ["Fragile", "FooActor"] {
        let err = create(&mut c, name, &parity).await.expect_err("an unqualified name was created");
        let err = format!("{err:#}");
        assert!(err.contains("InvalidActorSpecification") && err.contains(name), "{err}");
    }
    // Without a hash: from an actor, its own version is meant.
    let parent = create(&mut c, "parity.Parent", &parity).await.unwrap();
    for name in ["Fragile", "FooActor"] {
        let child = child_of(&ask(&mut c, &parent, &format!("spawn {name}")).await);
        let line = next_text(&mut c).await;
        assert!(
            line.starts_with(&format!(
                "exited {child}: could not be created: InvalidActorSpecification: {name}"
            )),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_authority_that_fails_on_validate_source_leaves_the_hash_invalid() {
    // Scenario 22 (Thespian waits for its 2-minute expiry; a failing authority here fails the
    // load as soon as its handler failed twice, and at the latest after --authority-timeout).
    let dir = TestDir::new();
    let node = NodeProc::start_with(&dir, "", &["--authority-timeout", "3s"]);
    let parity = node.load(&parity_zip(&dir));
    let mut c = node.client().await;
    let authority = create(&mut c, "parity.BrokenAuthority", &parity).await.unwrap();
    assert_eq!(ask(&mut c, &authority, "register").await, "registered");
    let faulty_zip = dir.faulty_zip();
    let out = node.run("load", &[&faulty_zip.display().to_string()]);
    out.assert_code(1);
    out.assert_stderr_has(&["source authority"]);
    let spec = CreateSpec {
        type_name: "faulty.Echo".into(),
        source_hash: Some(hash_of(&faulty_zip)),
        ..CreateSpec::default()
    };
    let err = format!("{:#}", create_spec(&mut c, spec).await.expect_err("created from a refused source"));
    assert!(err.contains("InvalidActorSourceHash"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_actor_reports_its_global_name_and_an_unnamed_one_none() {
    // Scenario 32.
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let parity = node.load(&parity_zip(&dir));
    let mut c = node.client().await;
    let parent = create(&mut c, "parity.Parent", &parity).await.unwrap();
    let named = child_of(&ask(&mut c, &parent, "named parity.Fragile Solo").await);
    let unnamed = child_of(&ask(&mut c, &parent, "spawn parity.Fragile").await);
    assert_eq!(ask(&mut c, &named, "name").await, "name: Solo");
    assert_eq!(ask(&mut c, &unnamed, "name").await, "name: None");
    let top = create_spec(
        &mut c,
        CreateSpec {
            type_name: "parity.Fragile".into(),
            source_hash: Some(parity.clone()),
            global_name: Some("Top".into()),
            ..CreateSpec::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ask(&mut c, &top, "name").await, "name: Top");
}
