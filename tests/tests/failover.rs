//! A convention that survives its leader (issue 14): a list of leaders, a stalled member fenced
//! when it resumes, a leader killed and the next listed one taking over with names, groups and
//! placement, leadership handed back, two holders of one name after a healed partition, and a
//! named create with no leader. Real node processes on loopback, SIGKILL and SIGSTOP.

use std::time::{Duration, Instant};

use troupe_actor_abi::message::{Address, CreateSpec};
use troupe_node::wire::status::StatusReport;
use troupe_tests::{
    ask, create, create_spec, free_port, send_text, text_matching, troupe, NodeProc, TestDir,
    CONVENTION_TIMEOUT, FAST_HEARTBEAT,
};

/// Waits until `check` holds for `node`'s status, polling it.
#[track_caller]
fn wait_status(node: &NodeProc, what: &str, check: impl Fn(&StatusReport) -> bool) -> StatusReport {
    let deadline = Instant::now() + CONVENTION_TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(s) = node.try_status() {
            if check(&s) {
                return s;
            }
            last = Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} never showed {what}; last status: {:#?}", node.addr(), last.map(|s| s.convention));
}

fn signal(node: &NodeProc, sig: libc::c_int) {
    // SAFETY: kill(2) on a child process we started and have not reaped.
    assert_eq!(unsafe { libc::kill(node.pid() as libc::pid_t, sig) }, 0, "kill({sig}) failed");
}

/// `n` free loopback ports, and the `--convention` list naming the first `leaders` of them.
fn ports(n: usize, leaders: usize) -> (Vec<u16>, String) {
    let mut p: Vec<u16> = Vec::new();
    while p.len() < n {
        let q = free_port();
        if !p.contains(&q) {
            p.push(q);
        }
    }
    let list = p[..leaders].iter().map(|q| format!("127.0.0.1:{q}")).collect::<Vec<_>>().join(",");
    (p, list)
}

fn args(list: &str) -> Vec<&str> {
    let mut a = vec!["--convention", list];
    a.extend_from_slice(FAST_HEARTBEAT);
    a
}

/// Waits until each of `nodes` lists every other one as an alive member.
#[track_caller]
fn settle(nodes: &[&NodeProc]) {
    for n in nodes {
        let others: Vec<String> = nodes.iter().filter(|o| o.addr() != n.addr()).map(|o| o.addr()).collect();
        n.wait_members(&others);
    }
}

fn count_type(node: &NodeProc, type_name: &str) -> usize {
    node.try_status().map(|s| s.actors.iter().filter(|a| a.type_name == type_name).count()).unwrap_or(0)
}

fn named(type_name: &str, hash: &str, name: &str) -> CreateSpec {
    CreateSpec {
        type_name: type_name.into(),
        source_hash: Some(hash.into()),
        global_name: Some(name.into()),
        ..CreateSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_member_declared_lost_stops_its_orphans_and_rejoins_as_a_new_incarnation() {
    let dir = TestDir::new();
    let (p, list) = ports(3, 1);
    let a = args(&list);
    let leader = NodeProc::start_on(&dir, p[0], "", &a);
    let stalls = NodeProc::start_on(&dir, p[1], "picky", &a);
    let parent_node = NodeProc::start_on(&dir, p[2], "home", &a);
    settle(&[&leader, &stalls, &parent_node]);
    let hash = leader.load(&dir.faulty_zip());
    let mut c = leader.client().await;
    let spec = CreateSpec {
        type_name: "faulty.Spawner".into(),
        source_hash: Some(hash.clone()),
        requirements: vec!["home".into()],
        ..CreateSpec::default()
    };
    let spawner = create_spec(&mut c, spec).await.expect("Spawner");
    assert_eq!(spawner.node, parent_node.addr());
    let created = ask(&mut c, &spawner, "create faulty.Picky").await;
    assert!(created.starts_with(&format!("created {}#", stalls.addr())), "{created}");
    wait_status(&stalls, "its Picky", |s| s.actors.iter().any(|a| a.type_name == "faulty.Picky"));
    let before = stalls.status().convention.incarnation;

    // Stalled past dead-after: the convention declares it lost; the parent hears of it.
    signal(&stalls, libc::SIGSTOP);
    let lost = text_matching(&mut c, CONVENTION_TIMEOUT, |t| t.starts_with("child exited")).await;
    assert!(
        lost.contains(&format!("its node {} was lost", stalls.addr())),
        "{lost} (stalled: {}, leader {}, parent {})",
        stalls.addr(),
        leader.addr(),
        parent_node.addr()
    );
    signal(&stalls, libc::SIGCONT);

    // It learns it was lost: the orphan is stopped, it rejoins as a new incarnation.
    let after = wait_status(&stalls, "a new incarnation with no Picky left", |s| {
        s.convention.incarnation != before && !s.actors.iter().any(|a| a.type_name == "faulty.Picky")
    });
    assert_ne!(after.convention.incarnation, before);
    settle(&[&leader, &stalls, &parent_node]);
    assert_eq!(count_type(&stalls, "faulty.Picky"), 0, "no orphan survives the stall");
    // It serves again: a new child lands there and answers.
    let again = ask(&mut c, &spawner, "create faulty.Picky").await;
    assert!(again.starts_with(&format!("created {}#", stalls.addr())), "{again}");
    assert_eq!(ask(&mut c, &spawner, "send hi").await, "relay: echo: hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_listed_leader_takes_over_with_names_groups_and_placement_and_hands_back() {
    let dir = TestDir::new();
    let (p, list) = ports(3, 2);
    let a = args(&list);
    let mut first = NodeProc::start_on(&dir, p[0], "", &a);
    let second = NodeProc::start_on(&dir, p[1], "", &a);
    let member = NodeProc::start_on(&dir, p[2], "picky", &a);
    settle(&[&first, &second, &member]);
    assert_eq!(second.status().convention.leader, first.addr());

    // A name, a group and a version, all made while the first leads.
    let zip = dir.faulty_zip();
    troupe(&["deploy", &first.port_arg(), zip.to_str().unwrap(), "--group", "app"], None).assert_ok();
    let hash = first.status().versions[0].hash.clone();
    let mut c = first.client().await;
    let only = create_spec(&mut c, named("faulty.Picky", &hash, "OnlyOne")).await.expect("named");
    assert_eq!(only.node, member.addr());
    wait_status(&member, "the named actor running", |s| {
        s.global_names.contains_key("OnlyOne") && s.versions.iter().any(|v| v.hash == hash)
    });

    // The first listed leader is killed: the second leads within about a heartbeat.
    first.kill9();
    let killed = Instant::now();
    wait_status(&second, "itself leading", |s| s.convention.role == "leader");
    wait_status(&member, "the second as leader", |s| s.convention.leader == second.addr());
    let mut m = member.client().await;
    let placed = create(&mut m, "faulty.Picky", &hash).await.unwrap_or_else(|e| {
        panic!(
            "placement without the first leader: {e}; {:#?}\n{}",
            member.status().versions,
            member.log_text()
        )
    });
    assert_eq!(placed.node, member.addr());
    eprintln!("failover: the second leader placed a create {:?} after the kill", killed.elapsed());
    let mut s = second.client().await;
    let placed = create(&mut s, "faulty.Picky", &hash).await.expect("placed from the new leader");
    assert_eq!(placed.node, member.addr());
    // The name and the group survived.
    let again = create_spec(&mut s, named("faulty.Echo", &hash, "OnlyOne")).await.expect("by name");
    assert_eq!(again, only, "the name keeps its holder");
    assert_eq!(ask(&mut s, &again, "hi").await, "echo: hi");
    let via_group = create(&mut s, "faulty.Echo", "@app").await.expect("the group survived");
    assert_eq!(ask(&mut s, &via_group, "g").await, "echo: g");
    let names = wait_status(&second, "the name rebuilt", |s| s.convention.names.contains_key("OnlyOne"));
    assert_eq!(names.convention.names["OnlyOne"], only);

    // The first comes back on its port: leadership returns to it, with the name.
    let first = NodeProc::start_on(&dir, p[0], "", &a);
    wait_status(&member, "the first as leader again", |s| s.convention.leader == first.addr());
    wait_status(&second, "the first as leader again", |s| s.convention.leader == first.addr());
    let st = wait_status(&first, "the name rebuilt from the members", |s| {
        s.convention.role == "leader" && !s.convention.gathering && s.convention.names.contains_key("OnlyOne")
    });
    assert_eq!(st.convention.names["OnlyOne"], only);
    let mut f = first.client().await;
    let again = create_spec(&mut f, named("faulty.Echo", &hash, "OnlyOne")).await.expect("by name");
    assert_eq!(again, only);
    let via_group = create(&mut f, "faulty.Echo", "@app").await.expect("the group came back too");
    assert_eq!(ask(&mut f, &via_group, "h").await, "echo: h");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_holders_of_a_name_after_a_healed_partition_are_resolved_to_one() {
    let dir = TestDir::new();
    let (p, list) = ports(3, 2);
    let a = args(&list);
    let first = NodeProc::start_on(&dir, p[0], "", &a);
    let second = NodeProc::start_on(&dir, p[1], "", &a);
    let member = NodeProc::start_on(&dir, p[2], "", &a);
    settle(&[&first, &second, &member]);
    let hash = first.load(&dir.faulty_zip());
    assert_eq!(member.load(&dir.faulty_zip()), hash);
    let mut f = first.client().await;
    let kept = create_spec(&mut f, named("faulty.Echo", &hash, "Single")).await.expect("named on the first");
    assert_eq!(kept.node, first.addr());

    // The first is cut off (stalled) past dead-after: the rest go on without it, and an
    // actor on the member takes the name, which nobody on its side holds.
    signal(&first, libc::SIGSTOP);
    wait_status(&member, "the second leading", |s| s.convention.leader == second.addr());
    wait_status(&second, "gathered", |s| s.convention.role == "leader" && !s.convention.gathering);
    let mut m = member.client().await;
    let spawner = create(&mut m, "faulty.Spawner", &hash).await.expect("Spawner");
    assert_eq!(spawner.node, member.addr());
    let answer = ask(&mut m, &spawner, &format!("create faulty.Echo {hash} Single")).await;
    let other: Address = {
        let text = answer.strip_prefix("created ").unwrap_or_else(|| panic!("{answer}"));
        let (node, id) = text.rsplit_once('#').unwrap_or_else(|| panic!("{answer}"));
        let id = u64::from_str_radix(id, 16).unwrap_or_else(|_| panic!("{answer}"));
        Address { node: node.to_string(), id }
    };
    assert_ne!(other, kept);
    wait_status(&second, "the member's holder", |s| s.convention.names.get("Single") == Some(&other));

    // The partition heals: the first leads again, and one holder is kept; the other actor is
    // asked to exit and its parent hears why.
    signal(&first, libc::SIGCONT);
    let exited = tokio::time::timeout(
        CONVENTION_TIMEOUT,
        text_matching(&mut m, CONVENTION_TIMEOUT * 2, |t| t.starts_with("child exited")),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no exit\nFIRST:\n{}\nSECOND:\n{}\nMEMBER:\n{}",
            first.log_text(),
            second.log_text(),
            member.log_text()
        )
    });
    assert!(exited.contains("global name \"Single\" is held by"), "{exited}");
    let st = wait_status(&first, "one holder", |s| {
        s.convention.role == "leader" && !s.convention.gathering && s.convention.names.contains_key("Single")
    });
    assert_eq!(st.convention.names["Single"], kept);
    wait_status(&member, "no second holder", |s| !s.global_names.contains_key("Single"));
    let via_member = create_spec(&mut m, named("faulty.Echo", &hash, "Single")).await.expect("by name");
    assert_eq!(via_member, kept);
    assert_eq!(ask(&mut m, &via_member, "one").await, "echo: one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reachable_leader_a_named_create_fails_clearly_and_an_unnamed_one_still_works() {
    let dir = TestDir::new();
    let (p, list) = ports(2, 1);
    let a = args(&list);
    let mut leader = NodeProc::start_on(&dir, p[0], "", &a);
    let member = NodeProc::start_on(&dir, p[1], "", &a);
    leader.wait_members(&[member.addr()]);
    let hash = member.load(&dir.faulty_zip());
    leader.kill9();
    wait_status(&member, "the leader lost", |s| s.convention.members.is_empty());
    let mut m = member.client().await;
    let t = Instant::now();
    let err = create_spec(&mut m, named("faulty.Echo", &hash, "Nobody")).await.expect_err("no leader");
    assert!(err.to_string().contains("NoLeader"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30), "it waits up to its timeout only");
    assert!(member.status().global_names.is_empty(), "no holder was registered");
    let plain = create(&mut m, "faulty.Echo", &hash).await.expect("an unnamed create needs no leader");
    assert_eq!(ask(&mut m, &plain, "x").await, "echo: x");
}

/// Reference §8, scenarios 45–47 (Thespian's HA convention): leaders listed [V, L, P] and a
/// member T that never leads. An actor M on T creates children by capability: one only V can
/// host. V shut down: M still creates what others can host, and what only V could host fails
/// clearly (Thespian's reply never came). V restarted on its port: creatable again through M.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_45_to_47_a_listed_leader_shut_down_and_restarted() {
    let dir = TestDir::new();
    let (p, list) = ports(4, 3);
    let a = args(&list);
    let mut v = NodeProc::start_on(&dir, p[0], "picky", &a);
    let l = NodeProc::start_on(&dir, p[1], "", &a);
    let pl = NodeProc::start_on(&dir, p[2], "mem=64", &a);
    let t = NodeProc::start_on(&dir, p[3], "red,mem=16", &a);
    settle(&[&v, &l, &pl, &t]);
    let hash = v.load(&dir.faulty_zip());
    // 45: M (needs "red") created through P lands on T, and creates on request.
    let mut c = pl.client().await;
    let spec = CreateSpec {
        type_name: "faulty.Spawner".into(),
        source_hash: Some(hash.clone()),
        requirements: vec!["red".into()],
        ..CreateSpec::default()
    };
    let m = create_spec(&mut c, spec).await.expect("M");
    assert_eq!(m.node, t.addr());
    let roger = ask(&mut c, &m, "create faulty.Picky").await;
    assert!(roger.starts_with(&format!("created {}#", v.addr())), "{roger}");
    assert_eq!(ask(&mut c, &m, "send 45").await, "relay: echo: 45");
    // Sean needs a value only P has (mem>=32; T has mem=16).
    let sean = ask(&mut c, &m, "create faulty.Roomy").await;
    assert!(sean.starts_with(&format!("created {}#", pl.addr())), "{sean}");

    // 46: V shut down (gracefully): M's Picky exits with it; M still creates what others host,
    // and what only V could host fails with the reason.
    v.stop();
    let gone = text_matching(&mut c, CONVENTION_TIMEOUT, |x| x.starts_with("child exited")).await;
    assert!(gone.contains(&v.addr()) || gone.contains("stopping"), "{gone}");
    wait_status(&t, "L leading", |s| s.convention.leader == l.addr());
    let sean = ask(&mut c, &m, "create faulty.Roomy").await;
    assert!(sean.starts_with(&format!("created {}#", pl.addr())), "{sean}");
    let roger = ask(&mut c, &m, "create faulty.Picky").await;
    let why = if roger.starts_with("created ") {
        text_matching(&mut c, CONVENTION_TIMEOUT, |x| x.starts_with("child exited")).await
    } else {
        roger
    };
    assert!(why.contains("NoCompatibleSystemForActor"), "{why}");

    // 47: V restarted on its port with its capability: it leads again, and Picky is creatable.
    let v = NodeProc::start_on(&dir, p[0], "picky", &a);
    wait_status(&t, "V leading again", |s| {
        s.convention.leader == v.addr() && s.convention.members.len() == 3
    });
    let roger = ask(&mut c, &m, "create faulty.Picky").await;
    assert!(roger.starts_with(&format!("created {}#", v.addr())), "{roger}");
    assert_eq!(ask(&mut c, &m, "send 47").await, "relay: echo: 47");
}

/// A named create from an actor never waits on the network on its version's thread: with the
/// leader stalled, the create answers at once (held at its address), a sibling of the same
/// version on a single thread keeps answering, and the child starts once a leader answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_create_from_an_actor_does_not_stall_its_version_while_the_leader_is_stalled() {
    let dir = TestDir::new();
    let (p, list) = ports(2, 1);
    let a = args(&list);
    let leader = NodeProc::start_on(&dir, p[0], "", &a);
    let mut one_thread = a.clone();
    one_thread.extend_from_slice(&["--version-threads", "1"]);
    let member = NodeProc::start_on(&dir, p[1], "", &one_thread);
    leader.wait_members(&[member.addr()]);
    let hash = member.load(&dir.faulty_zip());
    let mut m = member.client().await;
    let spawner = create(&mut m, "faulty.Spawner", &hash).await.expect("Spawner");
    let sibling = create(&mut m, "faulty.Echo", &hash).await.expect("Echo");
    assert_eq!(ask(&mut m, &sibling, "before").await, "echo: before");

    signal(&leader, libc::SIGSTOP);
    let created = ask(&mut m, &spawner, &format!("create faulty.Echo {hash} Later")).await;
    assert!(created.starts_with(&format!("created {}#", member.addr())), "{created}");
    // Both answers come while the leader is stopped: a version blocked on the claim would
    // answer only when it gives up (an error, not `created`), and its sibling not before.
    assert_eq!(ask(&mut m, &sibling, "during").await, "echo: during");
    // Sent while the claim waits: delivered once the child starts, in order.
    send_text(&mut m, &spawner, "send queued").await;
    signal(&leader, libc::SIGCONT);
    let relayed = text_matching(&mut m, CONVENTION_TIMEOUT, |x| x.starts_with("relay:")).await;
    assert_eq!(relayed, "relay: echo: queued");
    let holder = wait_status(&member, "the name held here", |s| s.global_names.contains_key("Later"));
    assert_eq!(format!("created {}", holder.global_names["Later"]), created);
}

/// The measured split (issue 14, case 2): a single leader SIGKILLed, named creates sent through
/// two members meanwhile; they wait for the leader, which restarts on its port, and get one
/// holder between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_creates_during_a_leader_restart_get_one_holder() {
    let dir = TestDir::new();
    let (p, list) = ports(3, 1);
    let a = args(&list);
    let mut leader = NodeProc::start_on(&dir, p[0], "", &a);
    let m1 = NodeProc::start_on(&dir, p[1], "", &a);
    let m2 = NodeProc::start_on(&dir, p[2], "", &a);
    leader.wait_members(&[m1.addr(), m2.addr()]);
    let hash = m1.load(&dir.faulty_zip());
    assert_eq!(m2.load(&dir.faulty_zip()), hash);
    leader.kill9();
    wait_status(&m1, "the leader lost", |s| s.convention.members.len() == 1);
    let (mut c1, mut c2) = (m1.client().await, m2.client().await);
    let (h1, h2) = (hash.clone(), hash.clone());
    let first =
        tokio::spawn(async move { create_spec(&mut c1, named("faulty.Echo", &h1, "Acceptor")).await });
    let second =
        tokio::spawn(async move { create_spec(&mut c2, named("faulty.Echo", &h2, "Acceptor")).await });
    let leader = NodeProc::start_on(&dir, p[0], "", &a);
    let (first, second) =
        (first.await.unwrap().expect("through m1"), second.await.unwrap().expect("through m2"));
    assert_eq!(first, second, "one holder for one name");
    let st = wait_status(&leader, "the name", |s| s.convention.names.contains_key("Acceptor"));
    assert_eq!(st.convention.names["Acceptor"], first);
    let held: usize = [&m1, &m2].iter().map(|n| n.status().global_names.len()).sum();
    assert_eq!(held, 1, "one actor holds it");
}
