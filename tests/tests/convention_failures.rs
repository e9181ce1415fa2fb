//! Failures in a convention (issue 3, "Failures", and the Thespian bugs of
//! reference/thespian-behaviour.md §9): a member SIGKILLed while requests flow, a stopped node
//! leaving no orphans, a leader killed and restarted on its port, a dead host's actors reported
//! to their parents, an unload of a version still being validated, and eight nodes started and
//! stopped in random order leaving nothing behind.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use troupe_tests::{
    ask, create, files_under, free_port, hello_lines, port_listening, text_matching, troupe, wait_conv, Cli,
    Convention, NodeProc, TestDir, BASE64, CONVENTION_TIMEOUT, FAST_HEARTBEAT, MORSE_CAESAR,
};

/// The encoder names of the result lines (`MorseEncoder` of `MorseEncoder [density=…]  …`).
fn names(lines: &[String]) -> Vec<String> {
    lines.iter().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

/// One `troupe app` run during a failure: complete, or every missing encoder named on stderr.
fn check_run(out: &Cli) {
    let all = hello_lines();
    for l in out.lines() {
        assert!(all.contains(&l), "a wrong result line {l:?}:\n{out}");
    }
    if out.code == 0 {
        assert_eq!(out.sorted_lines(), all, "{out}");
        return;
    }
    let got = names(&out.lines());
    for missing in names(&all).into_iter().filter(|n| !got.contains(n)) {
        assert!(out.stderr.contains(&missing), "{missing} is missing but not named:\n{out}");
    }
}

#[test]
fn sigkill_of_a_member_while_requests_flow_then_all_four_lines_come_back() {
    let dir = TestDir::new();
    let mut conv = Convention::start(
        &dir,
        &[
            ("", FAST_HEARTBEAT),
            (MORSE_CAESAR, FAST_HEARTBEAT),
            (MORSE_CAESAR, FAST_HEARTBEAT),
            (BASE64, FAST_HEARTBEAT),
        ],
    );
    let hash = conv.leader().load(&dir.encoders_zip());
    let out = conv.leader().app(&hash, "hello\n");
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");
    let victim = conv.host_of("morse.MorseEncoder").expect("Morse is placed");
    let survivor = if victim == 1 { 2 } else { 1 };
    assert!(victim == 1 || victim == 2, "Morse on a node without morse: {:?}", conv.placement());

    let port = conv.leader().port_arg();
    let stop = AtomicBool::new(false);
    let runs = AtomicUsize::new(0);
    let results = std::thread::scope(|s| {
        let requests = s.spawn(|| {
            let mut results = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let out = troupe(&["app", &hash, "--port", &port, "--timeout", "8s"], Some("hello\n"));
                results.push((Instant::now(), out));
                runs.fetch_add(1, Ordering::SeqCst);
            }
            results
        });
        let wait_runs = |n: usize| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while runs.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "the request loop is stuck");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait_runs(2);
        conv.node_mut(victim).kill9();
        let killed = Instant::now();
        // The loop drives re-creation: Morse and Rot13 end up on the survivor.
        wait_conv(&conv, "Morse and Rot13 to be re-created on the survivor", |c| {
            let t = c.node(survivor).actor_types();
            t.contains(&"morse.MorseEncoder".to_string()) && t.contains(&"encoder.Rot13Encoder".to_string())
        });
        let n = runs.load(Ordering::SeqCst);
        wait_runs(n + 2);
        stop.store(true, Ordering::SeqCst);
        let results = requests.join().expect("the request loop panicked");
        (killed, results)
    });
    let (killed, results) = results;
    conv.nodes[victim] = None;
    let (mut incomplete, mut timed_out) = (0, 0);
    for (_, out) in &results {
        check_run(out);
        if out.code != 0 {
            incomplete += 1;
        }
        // Work already sent to the killed node when it died is lost with it; app names the
        // encoder, but only at its timeout (the Acceptor does not fail in-flight work of a
        // lost child): tolerated here, reported as a known gap.
        if out.stderr.contains("timed out") {
            timed_out += 1;
        }
    }
    // The last requests, after re-creation, are complete.
    let (at, last) = results.last().expect("some requests ran");
    assert!(*at > killed);
    assert_eq!(last.code, 0, "{last}");
    eprintln!("{} requests, {incomplete} incomplete, {timed_out} timed out", results.len());
    let out = conv.leader().app(&hash, "hello\n");
    out.assert_ok();
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");
}

#[test]
fn stopping_the_leader_stops_the_children_its_actors_created_on_the_members() {
    // Thespian §4.11: shutdown orphaned remote children.
    let dir = TestDir::new();
    let mut conv = Convention::start(&dir, &[("", &[]), (MORSE_CAESAR, &[]), (BASE64, &[])]);
    let hash = conv.leader().load(&dir.encoders_zip());
    let out = conv.leader().app(&hash, "hello\n");
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");
    assert!(!conv.node(1).actor_types().is_empty() && !conv.node(2).actor_types().is_empty());

    conv.node_mut(0).stop();
    conv.nodes[0] = None;
    wait_conv(&conv, "the members to have no actors left", |c| {
        c.node(1).actor_types().is_empty() && c.node(2).actor_types().is_empty()
    });
    // The members keep answering, and hold no orphaned version files in use.
    for i in [1, 2] {
        let st = conv.node(i).status();
        assert!(st.actors.is_empty(), "{st:#?}");
    }
}

#[test]
fn a_leader_killed_and_restarted_on_its_port_is_rejoined_at_once_and_placement_works_again() {
    // Thespian §4.9: members did not rejoin a restarted leader for up to 7:22.
    let dir = TestDir::new();
    let mut conv = Convention::start(
        &dir,
        &[("", FAST_HEARTBEAT), (MORSE_CAESAR, FAST_HEARTBEAT), (BASE64, FAST_HEARTBEAT)],
    );
    let zip = dir.encoders_zip();
    let hash = conv.leader().load(&zip);
    let out = conv.leader().app(&hash, "hello\n");
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");
    let port = conv.leader_port();
    let members = vec![conv.node(1).addr(), conv.node(2).addr()];

    conv.node_mut(0).kill9();
    conv.nodes[0] = None;
    // The encoders' parent (the Acceptor) died with the leader: the members stop them.
    wait_conv(&conv, "the orphaned encoders to stop", |c| {
        c.node(1).actor_types().is_empty() && c.node(2).actor_types().is_empty()
    });

    let leader = NodeProc::start_on(&dir, port, "", FAST_HEARTBEAT);
    // The members rejoin (wait_members fails past its deadline; how soon is `make bench`'s).
    leader.wait_members(&members);
    conv.nodes[0] = Some(leader);
    conv.wait_settled();

    assert_eq!(conv.leader().load(&zip), hash);
    let out = conv.leader().app(&hash, "hello\n");
    out.assert_ok();
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");
    assert_eq!(conv.node(1).actor_types(), ["encoder.Rot13Encoder", "morse.MorseEncoder"]);
    assert_eq!(conv.node(2).actor_types(), ["encoder.Base64Encoder"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_stopped_hosts_actors_are_reported_to_their_parents_with_default_timings() {
    // Thespian §4.9: remote actor death was never reported to parents.
    let dir = TestDir::new();
    let mut conv = Convention::start(&dir, &[("", &[]), ("picky", &[]), ("picky", &[])]);
    let hash = conv.leader().load(&dir.faulty_zip());
    let st = conv.leader().status();
    assert_eq!((st.convention.heartbeat_ms, st.convention.dead_after_ms), (1000, 3000), "defaults");
    let (m1, m2) = (conv.node(1).addr(), conv.node(2).addr());

    let mut c = conv.leader().client().await;
    let spawner = create(&mut c, "faulty.Spawner", &hash).await.expect("Spawner");
    let mut on = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let created = ask(&mut c, &spawner, "create faulty.Picky -").await;
        let node =
            created.strip_prefix("created ").and_then(|a| a.split('#').next()).expect("created <addr>");
        on.insert(node.to_string());
        // Running (its host fetched the code and created it), not just placed.
        assert_eq!(ask(&mut c, &spawner, "send ping").await, "relay: echo: ping");
        if on.len() == 2 {
            break;
        }
    }
    assert_eq!(on.len(), 2, "the children were not spread over both picky members: {on:?}");

    // A graceful stop of m2: its child is reported.
    conv.node_mut(2).stop();
    conv.nodes[2] = None;
    let t = text_matching(&mut c, CONVENTION_TIMEOUT, |t| t.starts_with("child exited")).await;
    assert!(t.contains("stopping") || t.contains(&m2), "{t}");

    // SIGKILL of m1: reported as a lost node.
    conv.node_mut(1).kill9();
    conv.nodes[1] = None;
    let t = text_matching(&mut c, CONVENTION_TIMEOUT, |t| t.starts_with("child exited")).await;
    assert_eq!(t, format!("child exited: its node {m1} was lost"));
    conv.leader().wait_members(&[]);

    // With nobody picky left, a new child cannot be placed, and the parent is told why.
    let _ = ask(&mut c, &spawner, "create faulty.Picky -").await;
    let t = text_matching(&mut c, CONVENTION_TIMEOUT, |t| t.starts_with("child exited")).await;
    assert!(t.contains("NoCompatibleSystemForActor"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unloading_a_version_still_being_validated_does_not_break_the_node() {
    // Thespian §2.7: the admin crashed on the unload of a pending hash.
    let dir = TestDir::new();
    let conv = Convention::start(&dir, &[("", &[]), ("", &[])]);
    let leader = conv.leader();
    let faulty = leader.load(&dir.faulty_zip());
    let mut c = leader.client().await;
    let stall = create(&mut c, "faulty.Stall", &faulty).await.expect("Stall");
    assert_eq!(ask(&mut c, &stall, "register").await, "registered");

    let zip = dir.encoders_zip();
    let zip_arg = zip.display().to_string();
    let port = leader.port_arg();
    let load = std::thread::spawn(move || troupe(&["load", &port, &zip_arg], None));
    let hash = troupe_tests::wait_for("the load to be validating", CONVENTION_TIMEOUT, || {
        leader.status().versions.into_iter().find(|v| v.state == "validating").map(|v| v.hash)
    });
    let out = leader.run("unload", &[&hash]);
    out.assert_ok();
    let loaded = load.join().expect("the load thread");
    assert_ne!(loaded.code, 0, "a load unloaded during validation reported success:\n{loaded}");
    assert!(loaded.stderr.contains("unloaded"), "{loaded}");

    // Still answering, nothing half-loaded, the other version still serves, the member is fine.
    let st = leader.status();
    assert!(!st.versions.iter().any(|v| v.hash == hash), "{st:#?}");
    let echo = create(&mut c, "faulty.Echo", &faulty).await.expect("Echo");
    assert_eq!(ask(&mut c, &echo, "still here").await, "echo: still here");
    assert!(conv.node(1).try_status().is_some());
    // The same zip loads again (same hash) once an authority that answers takes over.
    let gate = create(&mut c, "faulty.Gatekeeper", &faulty).await.expect("Gatekeeper");
    assert_eq!(ask(&mut c, &gate, "register").await, "registered");
    assert_eq!(leader.load(&zip), hash);
}

/// A small deterministic generator (xorshift64*): random order, reproducible runs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

#[test]
fn eight_nodes_started_and_stopped_in_random_order_leave_nothing_behind() {
    let seed = std::env::var("TROUPE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234_u64);
    eprintln!("seed {seed} (set TROUPE_TEST_SEED to replay)");
    let mut rng = Rng(seed | 1);
    let dir = TestDir::new();
    let caps = ["", MORSE_CAESAR, BASE64, "picky", MORSE_CAESAR, BASE64, "", "picky"];
    let leader_port = free_port();
    let leader_addr = format!("127.0.0.1:{leader_port}");
    let mut order: Vec<usize> = (0..caps.len()).collect();
    rng.shuffle(&mut order);
    let mut started: Vec<(usize, NodeProc)> = Vec::new();
    for &i in &order {
        let node = if i == 0 {
            NodeProc::start_on(&dir, leader_port, caps[0], FAST_HEARTBEAT)
        } else {
            NodeProc::start_member(&dir, &leader_addr, caps[i], FAST_HEARTBEAT)
        };
        started.push((i, node));
    }
    started.sort_by_key(|(i, _)| *i);
    let nodes: Vec<NodeProc> = started.into_iter().map(|(_, n)| n).collect();
    let pids: Vec<u32> = nodes.iter().map(NodeProc::pid).collect();
    let ports: Vec<u16> = nodes.iter().map(NodeProc::port).collect();
    let stores: Vec<std::path::PathBuf> = nodes.iter().map(NodeProc::store).collect();
    let mut conv = Convention::from_nodes(nodes, &leader_addr);
    conv.wait_settled();

    // Work through a random member; code fetched by whoever hosts.
    let hash = conv.leader().load(&dir.encoders_zip());
    let via = 1 + (rng.next() % 7) as usize;
    let out = conv.node(via).app(&hash, "hello\n");
    out.assert_ok();
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");
    let hosts: usize = conv.placement().iter().filter(|(_, t)| !t.is_empty()).count();
    assert!(hosts >= 3, "the encoders should span several nodes: {:?}", conv.placement());

    // After unload with grace, no node maps a store file.
    conv.leader().run("unload", &[&hash, "--grace", "1s"]).assert_ok();
    wait_conv(&conv, "no node to map a store file", |c| {
        c.nodes.iter().flatten().all(|n| !n.maps_any_version() && n.actor_types().is_empty())
    });

    // Stop them in another random order.
    let mut stop_order: Vec<usize> = (0..caps.len()).collect();
    rng.shuffle(&mut stop_order);
    for i in stop_order {
        let mut node = conv.nodes[i].take().expect("each node is stopped once");
        node.stop();
        // The others keep answering meanwhile.
        for n in conv.nodes.iter().flatten() {
            assert!(n.try_status().is_some(), "{} stopped answering when {} stopped", n.addr(), node.addr());
        }
        assert!(node.exited());
    }
    for (i, pid) in pids.iter().enumerate() {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "node {i} (pid {pid}) is still there"
        );
        assert!(!port_listening(ports[i]), "port {} still listens", ports[i]);
        assert_eq!(files_under(&stores[i]), Vec::<std::path::PathBuf>::new(), "store of node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_on_a_stopping_member_is_reported_to_its_parent_once() {
    // A child placed on a member that is still fetching (validating) the code when the member
    // stops: the parent must get one ChildActorExited, not "lost" and then "could not be
    // created" as well.
    let dir = TestDir::new();
    let mut conv = Convention::start(&dir, &[("", &[]), ("picky", &[])]);
    let faulty_zip = dir.faulty_zip();
    // On the member: the plain build, with a source authority that never answers.
    let plain = conv.node(1).load(&faulty_zip);
    let mut mc = conv.node(1).client().await;
    let spec = troupe_actor_abi::message::CreateSpec {
        type_name: "faulty.Stall".into(),
        source_hash: Some(plain),
        requirements: vec!["picky".into()],
        ..Default::default()
    };
    let stall = troupe_tests::create_spec(&mut mc, spec).await.expect("Stall on the member");
    assert_eq!(ask(&mut mc, &stall, "register").await, "registered");
    // On the leader: another build (another hash), which the member must fetch and validate.
    let variant = dir.join("faulty-v2.zip");
    std::fs::write(&variant, troupe_tests::ZipVariants::new(&faulty_zip).make("0.2.0")).expect("write");
    let hash = conv.leader().load(&variant);
    let mut c = conv.leader().client().await;
    let spawner = create(&mut c, "faulty.Spawner", &hash).await.expect("Spawner");
    let created = ask(&mut c, &spawner, "create faulty.Picky -").await;
    assert!(created.starts_with(&format!("created {}#", conv.node(1).addr())), "{created}");
    troupe_tests::wait_for("the member to validate the fetched version", CONVENTION_TIMEOUT, || {
        conv.node(1).status().versions.iter().any(|v| v.hash == hash && v.state == "validating").then_some(())
    });

    conv.node_mut(1).stop();
    let first = text_matching(&mut c, CONVENTION_TIMEOUT, |t| t.starts_with("child exited")).await;
    let again = tokio::time::timeout(Duration::from_secs(2), troupe_tests::next_text(&mut c)).await;
    assert!(again.is_err(), "the parent was told twice about one child: {first:?}, then {again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_is_lost_as_soon_as_its_port_refuses_without_waiting_for_dead_after() {
    let dir = TestDir::new();
    // dead-after is an hour: only the closed link and the refused probe can tell the leader
    // before the test's 60 s guard.
    let mut conv = Convention::start(&dir, &[("", &["--dead-after", "3600s"]), ("", &[])]);
    let member = conv.node(1).addr();
    conv.node_mut(1).kill9();
    conv.nodes[1] = None;
    let t = Instant::now();
    while conv.leader().status().convention.members.iter().any(|m| m.node == member && m.alive) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "still listed alive after 60 s:\n{}",
            conv.leader().log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        conv.leader().log_text().contains("peer unreachable (its link closed and"),
        "{}",
        conv.leader().log_text()
    );
}
