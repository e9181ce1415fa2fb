//! A node with nobody at its convention address (issue 21, point 2): it serves on its own, as
//! Thespian's systems do, so the demo runs on one node started on any port; `start` and
//! `status` say so; a leader started later at that address gets it as a member with its names
//! kept. And the protection it must not weaken: a node whose convention address accepts
//! connections but does not answer (a stalled leader) is not alone, and a node that was part
//! of a convention and lost its leader never grants names on its own.
//! Real node processes on loopback, the CLI as a user runs it.

use std::net::TcpListener;

use troupe_node::status::StatusReport;
use troupe_tests::{
    create_spec, free_port, hello_lines, troupe, wait_for, NodeProc, TestDir, ALL_CAPS, CONVENTION_TIMEOUT,
    FAST_HEARTBEAT, REPLY_TIMEOUT,
};

/// A node that `troupe start` detached: stopped with `troupe stop` when dropped (also after a
/// failed assertion), and killed if that fails.
struct Detached {
    port: String,
    pid: Option<u32>,
}

impl Drop for Detached {
    fn drop(&mut self) {
        if troupe(&["stop", &self.port], None).code == 0 {
            return;
        }
        if let Some(pid) = self.pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is the node's, as its
            // status reported it, and the node did not answer `troupe stop`.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn status(port: &str) -> StatusReport {
    let out = troupe(&["status", port, "--json"], None);
    out.assert_ok();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not a StatusReport: {e}\n{out}"))
}

#[test]
fn a_lone_node_runs_the_demo_and_joins_a_leader_that_starts_later_keeping_its_names() {
    let dir = TestDir::new();
    // The convention address: a free port nobody listens on (until the leader starts there).
    let q = free_port();
    let convention = format!("127.0.0.1:{q}");
    let port = loop {
        let p = free_port();
        if p != q {
            break p.to_string();
        }
    };
    let state = dir.join("lone").display().to_string();
    let start = troupe(&["start", &port, ALL_CAPS, "--state-dir", &state, "--convention", &convention], None);
    let mut lone = Detached { port: port.clone(), pid: None };
    start.assert_ok();
    lone.pid = Some(status(&port).pid);
    assert!(
        start
            .stdout
            .contains(&format!("serving alone: nobody listens at the convention address ({convention})")),
        "start says the node serves alone:\n{start}"
    );

    let load = troupe(&["load", &port, &dir.encoders_zip().display().to_string()], None);
    load.assert_ok();
    let hash = load.stdout.trim().to_string();
    let app = troupe(&["app", &hash, "--port", &port], Some("hello\n"));
    app.assert_ok();
    assert_eq!(app.sorted_lines(), hello_lines(), "the demo's four lines on a lone node:\n{app}");

    let st = status(&port);
    assert_eq!(st.convention.role, "alone", "{:#?}", st.convention);
    assert!(!st.convention.joined);
    let names = st.global_names.clone();
    assert_eq!(names.len(), 1, "app's Acceptor holds a global name: {names:#?}");
    let text = troupe(&["status", &port], None);
    text.assert_ok();
    assert!(text.stdout.contains("serving alone"), "{text}");

    // A leader starts at the convention address: the lone node joins it, its names kept.
    let leader = NodeProc::start_on(&dir, q, "", &[]);
    let lone_addr = format!("127.0.0.1:{port}");
    let on_leader = wait_for("the lone node to join the leader with its names", CONVENTION_TIMEOUT, || {
        let s = leader.try_status()?;
        let member = s.convention.members.iter().any(|m| m.node == lone_addr && m.alive);
        (member && names.iter().all(|(n, a)| s.convention.names.get(n) == Some(a))).then_some(s)
    });
    assert_eq!(on_leader.convention.role, "leader");
    let st = wait_for("the lone node to call itself a member", CONVENTION_TIMEOUT, || {
        Some(status(&port)).filter(|s| s.convention.role == "member" && s.convention.joined)
    });
    assert_eq!(st.convention.leader, convention);
    assert_eq!(st.global_names, names, "no name was lost on joining");
    // The demo through the leader now: the same Acceptor answers (its name held once).
    let app = leader.app(&hash, "hello\n");
    app.assert_ok();
    assert_eq!(app.sorted_lines(), hello_lines(), "{app}");
    assert_eq!(status(&port).global_names, names);
}

/// Creates a named `faulty.Echo` through `node`; the error text if it fails.
async fn named_create(node: &NodeProc, hash: &str, name: &str) -> Result<String, String> {
    let spec = troupe_actor_abi::message::CreateSpec {
        type_name: "faulty.Echo".into(),
        source_hash: Some(hash.into()),
        global_name: Some(name.into()),
        ..Default::default()
    };
    let mut c = node.client().await;
    create_spec(&mut c, spec).await.map(|a| a.to_string()).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_convention_address_is_not_nobody_so_a_named_create_fails_with_no_leader() {
    let dir = TestDir::new();
    // Bound and listening, never answering: the kernel completes connections as for a leader
    // stopped with SIGSTOP.
    let stalled = TcpListener::bind("127.0.0.1:0").expect("bind");
    let convention = stalled.local_addr().expect("addr").to_string();
    let node = NodeProc::start_with(&dir, "", &["--convention", &convention]);
    let hash = node.load(&dir.faulty_zip());
    let err = named_create(&node, &hash, "Somebody").await.expect_err("a stalled leader is no answer");
    assert!(err.contains("NoLeader"), "{err}");
    let st = node.status();
    assert_eq!(st.convention.role, "member", "{:#?}", st.convention);
    assert!(st.global_names.is_empty(), "no holder was registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_leader_never_serves_alone() {
    let dir = TestDir::new();
    let q = free_port();
    let convention = format!("127.0.0.1:{q}");
    let mut leader = NodeProc::start_on(&dir, q, "", FAST_HEARTBEAT);
    let mut args = vec!["--convention", convention.as_str()];
    args.extend_from_slice(FAST_HEARTBEAT);
    let member = NodeProc::start_with(&dir, "", &args);
    leader.wait_members(&[member.addr()]);
    let hash = member.load(&dir.faulty_zip());
    assert!(named_create(&member, &hash, "Before").await.is_ok());
    // The leader is gone: its port refuses, as for a node never started, but this member was
    // part of the convention and may hold names it granted.
    leader.kill9();
    wait_for("the member to see its leader lost", REPLY_TIMEOUT, || {
        member.try_status().filter(|s| s.convention.members.is_empty())
    });
    let err = named_create(&member, &hash, "After").await.expect_err("no leader, no new name");
    assert!(err.contains("NoLeader"), "{err}");
    let st = member.status();
    assert_eq!(st.convention.role, "member", "{:#?}", st.convention);
    assert!(st.convention.joined);
    assert!(!st.global_names.contains_key("After"));
    assert!(leader.state_dir().join("led-members").exists(), "a SIGKILL leaves the leader's record");
}
