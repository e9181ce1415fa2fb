//! The convention as a user sees it (DESIGN §5, issue 3): several node processes around a
//! leader on loopback ports chosen at run time, driven with the real CLI and the client
//! library. Placement by capability, code fetched on demand, remote-source policies, spread
//! placement, convention-wide global names, watchers, capability changes and unload spreading.
//! Failures (SIGKILL, stop, leader restart) are in `convention_failures.rs`.

use std::time::{Duration, Instant};

use troupe_actor_abi::message::{Address, CreateSpec, Payload, SystemMessage};
use troupe_node::client::Client;
use troupe_tests::{
    ask, create, create_spec, files_under, hello_lines, next_message, next_text, send_text, status_of,
    text_matching, wait_conv, Convention, TestDir, BASE64, CONVENTION_TIMEOUT, FAST_HEARTBEAT, MORSE_CAESAR,
    REPLY_TIMEOUT,
};

/// The demo's three nodes (DESIGN §1): a leader without capabilities, morse+Caesar, base64.
fn demo_convention(dir: &TestDir, extra: &[&str]) -> Convention {
    Convention::start(dir, &[("", extra), (MORSE_CAESAR, extra), (BASE64, extra)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_place_each_encoder_by_capability_and_members_fetch_the_code() {
    let dir = TestDir::new();
    let conv = demo_convention(&dir, &[]);
    let (leader, morse, base64) = (conv.node(0), conv.node(1), conv.node(2));
    let hash = leader.load(&dir.encoders_zip());

    let out = leader.app(&hash, "hello\n");
    out.assert_ok();
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");

    assert_eq!(leader.actor_types(), ["app.Acceptor", "app.Analyzer", "encoder.Encoder"]);
    assert_eq!(morse.actor_types(), ["encoder.Rot13Encoder", "morse.MorseEncoder"]);
    assert_eq!(base64.actor_types(), ["encoder.Base64Encoder"]);

    // `load` ran on the leader only; the members fetched the version to host their encoders.
    for member in [morse, base64] {
        let st = member.status();
        let v = st.versions.iter().find(|v| v.hash == hash).unwrap_or_else(|| {
            panic!("member {} does not hold {hash} although it hosts its encoders: {st:#?}", member.addr())
        });
        assert_eq!(v.state, "active", "{v:#?}");
        assert!(!v.files.is_empty(), "the fetched version has no library in the store: {v:#?}");
        for a in &st.actors {
            assert_eq!(a.hash, hash);
            let parent = a.parent.as_ref().expect("an encoder has a parent");
            assert_eq!(parent.node, leader.addr(), "the encoders' parent is the Acceptor on the leader");
        }
    }

    // `status --convention --json` through a member shows every node, alive, with its actors.
    let nodes = morse.status_convention_json();
    assert_eq!(nodes.len(), 3, "{nodes:#?}");
    for n in &nodes {
        assert_eq!(n["alive"], true, "{n:#}");
        assert!(n["status"].is_object(), "{n:#}");
    }
    assert_eq!(nodes[0]["role"], "leader", "the leader comes first: {nodes:#?}");
    assert_eq!(nodes[0]["node"], leader.addr());

    // Through a member's port: the same four lines, and still one Acceptor in the whole
    // convention (its global name is convention-wide).
    let out = base64.app(&hash, "hello\n");
    out.assert_ok();
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");
    let acceptors: usize =
        conv.placement().iter().map(|(_, types)| types.iter().filter(|t| *t == "app.Acceptor").count()).sum();
    assert_eq!(acceptors, 1, "placement: {:?}", conv.placement());

    // A client of a member asking for the Acceptor by name gets the leader's.
    let acceptor = leader
        .status()
        .actors
        .into_iter()
        .find(|a| a.type_name == "app.Acceptor")
        .expect("the Acceptor lives on the leader")
        .address;
    let mut c = morse.client().await;
    let spec = CreateSpec {
        type_name: "app.Acceptor".into(),
        source_hash: Some(hash.clone()),
        global_name: Some(format!("Acceptor:{hash}")),
        ..CreateSpec::default()
    };
    assert_eq!(create_spec(&mut c, spec).await.expect("create by name"), acceptor);
}

#[test]
fn remote_sources_no_refuses_to_fetch_until_the_version_is_loaded_there_and_leader_only_fetches_from_the_leader(
) {
    let dir = TestDir::new();
    let mut conv =
        Convention::start(&dir, &[("", &[]), (MORSE_CAESAR, &["--remote-sources", "no"]), (BASE64, &[])]);
    let zip = dir.encoders_zip();
    let hash = conv.leader().load(&zip);
    assert_eq!(conv.node(1).status().convention.remote_sources, "no");

    // Nobody else has morse or Caesar: the two encoders cannot be placed, and app says so.
    let out = conv.leader().app(&hash, "hello\n");
    assert_eq!(out.code, 1, "{out}");
    out.assert_stderr_has(&["MorseEncoder", "Rot13Encoder"]);
    assert!(
        out.stderr.contains("NoCompatibleSystemForActor") || out.stderr.contains("remote-sources"),
        "the reason names the placement failure:\n{out}"
    );
    let mut two: Vec<String> =
        hello_lines().into_iter().filter(|l| !l.starts_with("Morse") && !l.starts_with("Rot13")).collect();
    two.sort();
    assert_eq!(out.sorted_lines(), two, "{out}");
    assert!(conv.node(1).status().versions.is_empty(), "a `no` member fetched the code");

    // Loaded there by hand: now they are placed there.
    assert_eq!(conv.node(1).load(&zip), hash);
    // The leader learns of the member's version at its next heartbeat.
    wait_conv(&conv, "the leader to see the version on the `no` member", |c| {
        c.leader()
            .status()
            .convention
            .members
            .iter()
            .any(|m| m.node == c.node(1).addr() && m.sources.contains(&hash))
    });
    let out = conv.leader().app(&hash, "hello\n");
    out.assert_ok();
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");
    assert_eq!(conv.node(1).actor_types(), ["encoder.Rot13Encoder", "morse.MorseEncoder"]);

    // leader-only: a new member with the same capabilities fetches from the leader, which
    // holds the version. Take the capabilities away from the `no` member to move them there.
    let lo = conv.add_member(&dir, MORSE_CAESAR, &["--remote-sources", "leader-only"]);
    conv.wait_settled();
    conv.node(1).run("chgcap", &["-", "morse"]).assert_ok();
    conv.node(1).run("chgcap", &["-", "Caesar cipher"]).assert_ok();
    wait_conv(&conv, "the encoders to leave the `no` member", |c| c.node(1).actor_types().is_empty());
    wait_conv(&conv, "the leader to see the `no` member without capabilities", |c| {
        c.leader()
            .status()
            .convention
            .members
            .iter()
            .any(|m| m.node == c.node(1).addr() && m.capabilities.is_empty())
    });
    let out = conv.leader().app(&hash, "hello\n");
    out.assert_ok();
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");
    assert_eq!(conv.node(lo).actor_types(), ["encoder.Rot13Encoder", "morse.MorseEncoder"]);
    let st = conv.node(lo).status();
    assert_eq!(st.convention.remote_sources, "leaderonly");
    assert!(st.versions.iter().any(|v| v.hash == hash && v.state == "active"), "{st:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_loaded_on_a_member_only_is_usable_through_the_leader() {
    // Thespian scenario 26 on our terms: Thespian refuses, we fetch.
    let dir = TestDir::new();
    let conv = Convention::start(&dir, &[("", &[]), ("picky", &[])]);
    let hash = conv.node(1).load(&dir.faulty_zip());
    wait_conv(&conv, "the leader to learn of the member's version", |c| {
        c.leader().status().convention.members.iter().any(|m| m.sources.contains(&hash))
    });
    let mut c = conv.leader().client().await;
    // No requirements: created on the leader itself, which fetches the code from the member.
    let echo = create(&mut c, "faulty.Echo", &hash).await.expect("create through the leader");
    assert_eq!(echo.node, conv.leader().addr());
    assert_eq!(ask(&mut c, &echo, "hi").await, "echo: hi");
    // Requires picky: placed on the member.
    let picky = create(&mut c, "faulty.Picky", &hash).await.expect("create Picky through the leader");
    assert_eq!(picky.node, conv.node(1).addr());
    assert_eq!(ask(&mut c, &picky, "ho").await, "echo: ho");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_spreads_over_the_capable_members_and_names_what_nobody_has() {
    let dir = TestDir::new();
    let conv = Convention::start(&dir, &[("", &[]), ("picky", &[]), ("picky", &[]), ("other", &[])]);
    let hash = conv.leader().load(&dir.faulty_zip());
    let mut c = conv.leader().client().await;
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    let mut all = Vec::new();
    for _ in 0..10 {
        let a = create(&mut c, "faulty.Picky", &hash).await.expect("create Picky");
        *per_node.entry(a.node.clone()).or_default() += 1;
        all.push(a);
    }
    let capable = [conv.node(1).addr(), conv.node(2).addr()];
    assert!(per_node.keys().all(|n| capable.contains(n)), "Picky placed off the capable nodes: {per_node:?}");
    assert_eq!(per_node.len(), 2, "placement always picked the same node: {per_node:?}");
    assert!(per_node.values().all(|n| *n >= 3), "placement is lopsided: {per_node:?}");
    for (i, a) in all.iter().enumerate() {
        assert_eq!(ask(&mut c, a, &format!("{i}")).await, format!("echo: {i}"));
    }

    // Scenario 23/36: a requirement nobody meets is refused, naming it and the nodes considered.
    let spec = CreateSpec {
        type_name: "faulty.Picky".into(),
        source_hash: Some(hash.clone()),
        requirements: vec!["water".into()],
        ..CreateSpec::default()
    };
    let err = create_spec(&mut c, spec).await.expect_err("nobody has water");
    let text = format!("{err:#}");
    assert!(text.contains("NoCompatibleSystemForActor"), "{text}");
    assert!(text.contains("water") && text.contains("faulty.Picky"), "{text}");
    for n in conv.nodes.iter().flatten() {
        assert!(text.contains(&n.addr()), "{text} does not name the node considered {}", n.addr());
    }
    // A requirement only one node meets: always there.
    for _ in 0..3 {
        let spec = CreateSpec {
            type_name: "faulty.Echo".into(),
            source_hash: Some(hash.clone()),
            requirements: vec!["other".into()],
            ..CreateSpec::default()
        };
        assert_eq!(create_spec(&mut c, spec).await.expect("create").node, conv.node(3).addr());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_names_are_convention_wide_and_a_forwarded_named_create_answers_at_once() {
    let dir = TestDir::new();
    let conv = Convention::start(&dir, &[("", &[]), ("picky", &[]), ("", &[])]);
    let hash = conv.leader().load(&dir.faulty_zip());
    let named = |type_name: &str, name: &str| CreateSpec {
        type_name: type_name.into(),
        source_hash: Some(hash.clone()),
        global_name: Some(name.into()),
        ..CreateSpec::default()
    };

    // The leader forwards the create to the picky member.
    let mut c = conv.leader().client().await;
    let first = create_spec(&mut c, named("faulty.Picky", "OnlyOne")).await.expect("first create");
    assert_eq!(first.node, conv.node(1).addr());

    // The forwarded-create regression (Thespian §2.3): the second identical create must not hang.
    let second = tokio::time::timeout(REPLY_TIMEOUT, create_spec(&mut c, named("faulty.Picky", "OnlyOne")))
        .await
        .expect("the second named create hangs")
        .expect("second create");
    assert_eq!(second, first);

    // Through the other members, with a different type even: the same actor (scenarios 31, 34).
    for i in [1, 2] {
        let mut m = conv.node(i).client().await;
        let again = create_spec(&mut m, named("faulty.Echo", "OnlyOne")).await.expect("create by name");
        assert_eq!(again, first, "through {}", conv.node(i).addr());
        assert_eq!(ask(&mut m, &again, "hi").await, "echo: hi");
    }
    // By an actor on another member (scenario 30/31).
    let mut m = conv.node(2).client().await;
    let spawner = create(&mut m, "faulty.Spawner", &hash).await.expect("Spawner");
    assert_eq!(spawner.node, conv.node(2).addr());
    let answer = ask(&mut m, &spawner, "create faulty.Echo - OnlyOne").await;
    assert_eq!(answer, format!("created {first}"));

    // Another name, or none: another actor.
    let other = create_spec(&mut c, named("faulty.Picky", "Another")).await.expect("create");
    assert_ne!(other, first);
    let unnamed = create(&mut c, "faulty.Picky", &hash).await.expect("create");
    assert_ne!(unnamed, first);
    assert_ne!(unnamed, other);

    // Exactly one holder of each name in the whole convention.
    let mut holders = Vec::new();
    for n in conv.nodes.iter().flatten() {
        holders.extend(n.status().global_names.into_iter());
    }
    holders.sort();
    assert_eq!(holders, vec![("Another".to_string(), other.clone()), ("OnlyOne".to_string(), first.clone())]);

    // When the named actor exits, its name is free again (scenario 33).
    let exit = Payload::System(SystemMessage::ActorExitRequest { recursive: true });
    match c.request(troupe_node::protocol::Request::Send { to: first.clone(), payload: exit }).await {
        Ok(troupe_node::protocol::Response::Sent) => {}
        other => panic!("sending ActorExitRequest failed: {other:?}"),
    }
    wait_conv(&conv, "the named actor to exit", |c| !c.node(1).status().global_names.contains_key("OnlyOne"));
    let deadline = Instant::now() + CONVENTION_TIMEOUT;
    loop {
        let fresh = create_spec(&mut c, named("faulty.Picky", "OnlyOne")).await.expect("create");
        if fresh != first {
            break;
        }
        assert!(Instant::now() < deadline, "the name OnlyOne still names the exited actor");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `watch` to `watcher` and returns, sorted, the three texts that follow: its
/// `watching` and one update for each other node already in the convention.
async fn start_watching(c: &mut Client, watcher: &Address) -> Vec<String> {
    send_text(c, watcher, "watch").await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(text_matching(c, CONVENTION_TIMEOUT, |_| true).await);
    }
    got.sort();
    got
}

/// The next update a watcher passes on about `node`.
async fn update_about(c: &mut Client, node: &str) -> String {
    text_matching(c, CONVENTION_TIMEOUT, |t| t.starts_with(&format!("update {node} "))).await
}

/// Waits until the leader lists member `a` with `capabilities` capabilities.
async fn until_leader_lists(conv: &Convention, a: &str, capabilities: usize) {
    let deadline = Instant::now() + CONVENTION_TIMEOUT;
    let members = || conv.leader().status().convention.members;
    while !members().iter().any(|m| m.node == a && m.capabilities.len() == capabilities) {
        assert!(Instant::now() < deadline, "the leader never saw a's new capability");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_hear_of_members_joins_capability_changes_leaves_and_losses() {
    let dir = TestDir::new();
    let mut conv =
        Convention::start(&dir, &[("", FAST_HEARTBEAT), ("a", FAST_HEARTBEAT), ("b", FAST_HEARTBEAT)]);
    let hash = conv.leader().load(&dir.faulty_zip());
    let (l, a, b) = (conv.node(0).addr(), conv.node(1).addr(), conv.node(2).addr());
    let wait = CONVENTION_TIMEOUT;

    // A watcher on the leader hears of both members at once.
    let mut c = conv.leader().client().await;
    let watcher = create(&mut c, "faulty.Watcher", &hash).await.expect("Watcher");
    assert_eq!(watcher.node, l);
    let first = start_watching(&mut c, &watcher).await;
    let want = sorted(vec![
        "watching".to_string(),
        format!("update {a} added=true Joined [a]"),
        format!("update {b} added=true Joined [b]"),
    ]);
    assert_eq!(first, want);

    // A watcher on a member hears of the leader and the other member.
    let mut mc = conv.node(1).client().await;
    let spec = CreateSpec {
        type_name: "faulty.Watcher".into(),
        source_hash: Some(hash.clone()),
        requirements: vec!["a".into()],
        ..CreateSpec::default()
    };
    let mwatcher = create_spec(&mut mc, spec).await.expect("Watcher on member a");
    assert_eq!(mwatcher.node, a);
    let got = start_watching(&mut mc, &mwatcher).await;
    let want = sorted(vec![
        "watching".to_string(),
        format!("update {b} added=true Joined [b]"),
        format!("update {l} added=true Joined []"),
    ]);
    assert_eq!(got, want);

    // A join.
    let ci = conv.add_member(&dir, "c", FAST_HEARTBEAT);
    let cn = conv.node(ci).addr();
    text_matching(&mut c, wait, |t| t == format!("update {cn} added=true Joined [c]")).await;
    text_matching(&mut mc, wait, |t| t == format!("update {cn} added=true Joined [c]")).await;

    // A capability change.
    conv.node(1).run("chgcap", &["+", "x"]).assert_ok();
    assert_eq!(update_about(&mut c, &a).await, format!("update {a} added=true CapabilitiesChanged [a,x]"));

    // A graceful leave.
    conv.node_mut(2).stop();
    conv.nodes[2] = None;
    assert_eq!(update_about(&mut c, &b).await, format!("update {b} added=false Left [b]"));
    let t = update_about(&mut mc, &b).await;
    assert!(t.starts_with(&format!("update {b} added=false")), "{t}");

    // A loss (SIGKILL): reported as Lost (how soon is `make bench`'s question).
    conv.node_mut(ci).kill9();
    assert_eq!(update_about(&mut c, &cn).await, format!("update {cn} added=false Lost [c]"));

    // After unwatch, nothing more.
    send_text(&mut c, &watcher, "unwatch").await;
    text_matching(&mut c, wait, |t| t == "unwatched").await;
    conv.node(1).run("chgcap", &["+", "y"]).assert_ok();
    // The leader takes the change at a's next heartbeat ...
    until_leader_lists(&conv, &a, 3).await;
    // ... and a watcher on a hears of the leader's own changes.
    conv.leader().run("chgcap", &["+", "z"]).assert_ok();
    assert_eq!(update_about(&mut mc, &l).await, format!("update {l} added=true CapabilitiesChanged [z]"));
    // The leader's former watcher has said nothing since it stopped watching.
    let quiet = tokio::time::timeout(Duration::from_millis(300), next_text(&mut c)).await;
    assert!(quiet.is_err(), "an unwatched watcher still hears updates: {quiet:?}");
    assert!(status_of(&mut c).await.actors.iter().any(|x| x.address == watcher));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_capability_stops_only_the_actors_that_need_it_and_tells_their_parents() {
    let dir = TestDir::new();
    let conv = Convention::start(&dir, &[("", &[]), ("picky", &[]), ("", &[])]);
    let hash = conv.leader().load(&dir.faulty_zip());
    let (m1, m2) = (conv.node(1), conv.node(2));

    // A Spawner on the leader creates a Picky child, which is placed on m1.
    let mut c = conv.leader().client().await;
    let spawner = create(&mut c, "faulty.Spawner", &hash).await.expect("Spawner");
    let created = ask(&mut c, &spawner, "create faulty.Picky -").await;
    assert!(created.starts_with(&format!("created {}#", m1.addr())), "{created}");
    assert_eq!(ask(&mut c, &spawner, "send one").await, "relay: echo: one");

    // Adding and removing the capability where the child is not: no effect (scenarios 53, 54).
    m2.run("chgcap", &["+", "picky"]).assert_ok();
    let out = m2.run("chgcap", &["-", "picky"]);
    out.assert_ok();
    assert!(out.stdout.contains("0 actors asked to exit"), "{out}");
    let out = m2.run("chgcap", &["-", "picky"]);
    assert!(out.code == 0 || out.code == 1, "removing an absent capability: {out}");
    conv.leader().run("chgcap", &["-", "nothing-here"]);
    assert_eq!(ask(&mut c, &spawner, "send two").await, "relay: echo: two");

    // Removing it where the child is: the child exits and its parent hears why.
    let out = m1.run("chgcap", &["-", "picky"]);
    out.assert_ok();
    assert!(out.stdout.contains("1 actor asked to exit"), "{out}");
    let t = text_matching(&mut c, CONVENTION_TIMEOUT, |t| t.starts_with("child exited")).await;
    assert!(t.contains("no longer has [picky]"), "{t}");
    assert!(m1.actor_types().is_empty());

    // Now nobody has it: a new child cannot be placed, and the parent hears that too.
    wait_conv(&conv, "the leader to see m1 without picky", |cv| {
        cv.leader().status().convention.members.iter().all(|m| !m.capabilities.contains(&"picky".to_string()))
    });
    send_text(&mut c, &spawner, "create faulty.Picky -").await;
    let t = text_matching(&mut c, REPLY_TIMEOUT, |t| {
        t.starts_with("child exited") || t.starts_with("create failed")
    })
    .await;
    assert!(t.contains("NoCompatibleSystemForActor") && t.contains("picky"), "{t}");

    // Adding it back allows creation again.
    m1.run("chgcap", &["+", "picky"]).assert_ok();
    wait_conv(&conv, "the leader to see m1 with picky again", |cv| {
        cv.leader().status().convention.members.iter().any(|m| m.capabilities.contains(&"picky".to_string()))
    });
    send_text(&mut c, &spawner, "create faulty.Picky -").await;
    let created = text_matching(&mut c, REPLY_TIMEOUT, |_| true).await;
    assert!(created.starts_with(&format!("created {}#", m1.addr())), "{created}");
    assert_eq!(ask(&mut c, &spawner, "send three").await, "relay: echo: three");
}

#[test]
fn the_acceptor_recreates_a_moved_encoder_where_it_fits_now() {
    let dir = TestDir::new();
    let conv = demo_convention(&dir, &[]);
    let hash = conv.leader().load(&dir.encoders_zip());
    let out = conv.leader().app(&hash, "hello\n");
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");
    assert_eq!(conv.host_of("encoder.Base64Encoder"), Some(2));

    let out = conv.node(2).run("chgcap", &["-", BASE64]);
    out.assert_ok();
    assert!(out.stdout.contains("1 actor asked to exit"), "{out}");
    wait_conv(&conv, "Base64Encoder to exit", |c| c.host_of("encoder.Base64Encoder").is_none());
    wait_conv(&conv, "the leader to see the change", |c| {
        c.leader().status().convention.members.iter().all(|m| !m.capabilities.contains(&BASE64.to_string()))
    });
    let out = conv.leader().app(&hash, "hello\n");
    assert_eq!(out.code, 1, "{out}");
    out.assert_stderr_has(&["Base64Encoder", "NoCompatibleSystemForActor", "64bit encoder"]);
    let three: Vec<String> = hello_lines().into_iter().filter(|l| !l.starts_with("Base64")).collect();
    assert_eq!(out.sorted_lines(), three, "{out}");

    conv.leader().run("chgcap", &["+", BASE64]).assert_ok();
    let out = conv.leader().app(&hash, "hello\n");
    out.assert_ok();
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");
    assert_eq!(conv.host_of("encoder.Base64Encoder"), Some(0));
    // The others did not move.
    assert_eq!(conv.node(1).actor_types(), ["encoder.Rot13Encoder", "morse.MorseEncoder"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unload_on_one_node_spreads_to_every_node_and_with_grace_leaves_nothing_behind() {
    let dir = TestDir::new();
    let conv = demo_convention(&dir, &[]);
    let hash = conv.leader().load(&dir.encoders_zip());
    let out = conv.leader().app(&hash, "hello\n");
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");

    // Unload through a member: every node drains it (or has it gone where nothing runs).
    let out = conv.node(2).run("unload", &[&hash]);
    out.assert_ok();
    wait_conv(&conv, "every node to drain the version", |c| {
        c.nodes.iter().flatten().all(|n| {
            let st = n.status();
            st.versions.iter().filter(|v| v.hash == hash).all(|v| v.state == "draining")
        })
    });
    // Draining: creates are refused everywhere, the running actors still serve.
    for n in conv.nodes.iter().flatten() {
        let mut client = n.client().await;
        let err = create(&mut client, "encoder.Encoder", &hash)
            .await
            .expect_err("a draining version creates nothing");
        assert!(format!("{err:#}").contains("InvalidActorSourceHash"), "{n:?}: {err:#}", n = n.addr());
    }
    // The living Acceptor (and its encoders on the members) still serve, across nodes.
    let acceptor = conv.leader().status().global_names.get(&format!("Acceptor:{hash}")).cloned();
    let acceptor = acceptor.expect("the Acceptor keeps its name while draining");
    let mut client = conv.leader().client().await;
    send_text(&mut client, &acceptor, "hello").await;
    let mut lines = Vec::new();
    while lines.len() < 4 {
        if let Payload::Text(t) = next_message(&mut client).await.payload {
            lines.push(t);
        }
    }
    lines.sort();
    assert_eq!(lines, hello_lines());

    // With a grace period: gone everywhere.
    let out = conv.leader().run("unload", &[&hash, "--grace", "1s"]);
    out.assert_ok();
    wait_conv(&conv, "the version to be gone from every node", |c| {
        c.nodes.iter().flatten().all(|n| {
            let st = n.status();
            !st.versions.iter().any(|v| v.hash == hash) && st.gone.iter().any(|g| g.hash == hash)
        })
    });
    for n in conv.nodes.iter().flatten() {
        assert!(n.status().actors.is_empty(), "{} still has actors", n.addr());
        assert_eq!(files_under(&n.store()), Vec::<std::path::PathBuf>::new(), "store of {}", n.addr());
        assert!(!n.maps_any_version(), "{} still maps a version library:\n{}", n.addr(), n.maps());
    }
    let out = conv.node(1).app(&hash, "hello\n");
    assert_ne!(out.code, 0, "{out}");
}
