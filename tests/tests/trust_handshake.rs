//! Trust on the admin port: the shared-secret handshake (between clients and nodes, and
//! within a convention), nodes open to the network, and hostile input (oversized frames,
//! garbage, stalled and dropped connections). Signed sources and bad archives are in
//! `trust.rs`.
//!
//! Every test drives real node processes on loopback ports chosen at run time. Where a test
//! must speak the wire protocol itself (replayed handshakes, oversized frames) it writes raw
//! frames: a 4-byte big-endian length and a msgpack body, as `troupe_node::protocol` defines.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use troupe_node::protocol::{
    self, AuthProof, ClientFrame, Request, Response, ServerFrame, MAX_FRAME_BYTES, MAX_HELLO_BYTES,
    NONCE_BYTES, PROTOCOL_VERSION,
};
use troupe_node::signing::Secret;
use troupe_tests::*;

// ---- raw frames ---------------------------------------------------------------------------------

/// How long a raw read may block before a test gives up (a deadline, not a sleep).
const READ_TIMEOUT: Duration = Duration::from_secs(15);

fn connect_raw(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("cannot connect to the node");
    s.set_read_timeout(Some(READ_TIMEOUT)).expect("set_read_timeout");
    s
}

fn write_frame(s: &mut TcpStream, body: &[u8]) {
    let mut buf = (body.len() as u32).to_be_bytes().to_vec();
    buf.extend_from_slice(body);
    s.write_all(&buf).expect("cannot write a frame");
}

/// The next frame's body; `None` once the node closed the connection.
fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

#[track_caller]
fn read_server(s: &mut TcpStream) -> ServerFrame {
    let body = read_frame(s).expect("the node closed the connection instead of answering");
    protocol::decode::<ServerFrame>(&body).expect("the node sent an undecodable frame")
}

/// Panics unless the node sends a `ProtocolError` containing `needle` and then closes.
#[track_caller]
fn expect_protocol_error_and_close(s: &mut TcpStream, needle: &str) -> String {
    let message = match read_server(s) {
        ServerFrame::ProtocolError { message } => message,
        other => panic!("expected a ProtocolError mentioning {needle:?}, got {other:?}"),
    };
    assert!(message.contains(needle), "the protocol error {message:?} does not mention {needle:?}");
    assert!(read_frame(s).is_none(), "the node kept the connection open after {message:?}");
    message
}

/// Reads the node's challenge: (nonce, auth_required).
#[track_caller]
fn read_challenge(s: &mut TcpStream) -> (Vec<u8>, bool) {
    match read_server(s) {
        ServerFrame::Challenge { protocol: PROTOCOL_VERSION, nonce, auth_required } => {
            assert_eq!(nonce.len(), NONCE_BYTES);
            (nonce, auth_required)
        }
        other => panic!("expected a challenge, got {other:?}"),
    }
}

/// A hello answering `nonce`, with a proof made with `secret` (none without one).
fn hello(nonce: &[u8], secret: Option<&Secret>, client_nonce: &[u8]) -> Vec<u8> {
    let auth = secret.map(|s| AuthProof {
        client_nonce: client_nonce.to_vec(),
        mac: s.mac(&[b"client", nonce, client_nonce]),
    });
    protocol::encode(&ClientFrame::Hello { protocol: PROTOCOL_VERSION, agent: "trust test".into(), auth })
        .to_vec()
}

fn status_request(id: u64) -> Vec<u8> {
    protocol::encode(&ClientFrame::Request { id, request: Request::Status }).to_vec()
}

/// Panics unless the next frame is a successful status reply to `id`.
#[track_caller]
fn expect_status_reply(s: &mut TcpStream, id: u64) {
    match read_server(s) {
        ServerFrame::Reply { id: got, result: Ok(Response::Status(_)) } if got == id => {}
        other => panic!("expected a status reply, got {other:?}"),
    }
}

/// A raw connection that completed the handshake (node without a secret).
fn raw_session(port: u16) -> TcpStream {
    let mut s = connect_raw(port);
    let (nonce, _) = read_challenge(&mut s);
    write_frame(&mut s, &hello(&nonce, None, &[7; NONCE_BYTES]));
    assert!(matches!(read_server(&mut s), ServerFrame::Hello { .. }), "no hello back");
    s
}

fn write_secret(dir: &TestDir, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("cannot write a secret file");
    p
}

// ---- the shared secret ----------------------------------------------------------------------

/// With a secret, a Noise handshake follows the challenge and all else is sealed (see
/// `encrypted.rs`, which speaks it): here, whatever comes in plaintext is refused.
#[test]
fn without_the_shared_secret_a_client_gets_nothing_and_a_plaintext_hello_fails() {
    let dir = TestDir::new();
    let secret_file = write_secret(&dir, "secret", "correct horse battery staple 42\n");
    let wrong_file = write_secret(&dir, "wrong", "incorrect horse battery staple 42\n");
    let secret = Secret::load(&secret_file).expect("a valid secret file");
    let wrong = Secret::load(&wrong_file).expect("a valid secret file");
    let node = NodeProc::start_with(&dir, "", &["--secret-file", &secret_file.display().to_string()]);
    let port = node.port();

    // No proof: refused, closed.
    let mut s = connect_raw(port);
    let (nonce, auth_required) = read_challenge(&mut s);
    assert!(auth_required, "a node with --secret-file did not ask for a proof");
    write_frame(&mut s, &hello(&nonce, None, &[1; NONCE_BYTES]));
    expect_protocol_error_and_close(&mut s, "authentication failed");

    // A proof made with the wrong secret: refused, closed.
    let mut s = connect_raw(port);
    let (nonce, _) = read_challenge(&mut s);
    write_frame(&mut s, &hello(&nonce, Some(&wrong), &[2; NONCE_BYTES]));
    expect_protocol_error_and_close(&mut s, "authentication failed");

    // A request instead of the handshake: nothing is read before the proof.
    let mut s = connect_raw(port);
    read_challenge(&mut s);
    write_frame(&mut s, &status_request(1));
    expect_protocol_error_and_close(&mut s, "authentication failed");

    // Even the right proof in a plaintext hello: the link must be encrypted first.
    let mut s = connect_raw(port);
    let (nonce, _) = read_challenge(&mut s);
    write_frame(&mut s, &hello(&nonce, Some(&secret), &[3; NONCE_BYTES]));
    expect_protocol_error_and_close(&mut s, "authentication failed");
    let mut again = connect_raw(port);
    let (fresh, _) = read_challenge(&mut again);
    assert_ne!(fresh, nonce, "the node reused a nonce");

    // The CLI: with the secret it works, without or with a wrong one it says why.
    let port_s = node.port_arg();
    troupe(&["status", &port_s, "--secret-file", &secret_file.display().to_string()], None).assert_ok();
    let out = troupe(&["status", &port_s], None);
    assert_ne!(out.code, 0, "status without the secret succeeded:\n{out}");
    assert!(out.stderr.contains("secret"), "the refusal does not mention the secret:\n{out}");
    let out = troupe(&["status", &port_s, "--secret-file", &wrong_file.display().to_string()], None);
    assert_ne!(out.code, 0, "status with a wrong secret succeeded:\n{out}");
    assert!(out.stderr.contains("authentication failed"), "no clear reason:\n{out}");

    // Each refusal was logged.
    let log = wait_for("the refusals in the node log", REPLY_TIMEOUT, || {
        let log = node.log_text();
        (log.matches("refused a connection").count() >= 5).then_some(log)
    });
    for why in ["no proof of the shared secret", "a wrong proof of the shared secret", "a plaintext hello"] {
        assert!(log.contains(why), "the log does not say {why:?}:\n{log}");
    }
}

/// The members `leader` lists (alive or not), asked with `secret_file`.
fn members_seen_by(node: &NodeProc, secret_file: &Path) -> Vec<String> {
    let out = node.run("status", &["--json", "--secret-file", &secret_file.display().to_string()]);
    out.assert_ok();
    let st: troupe_node::status::StatusReport = serde_json::from_str(&out.stdout).expect("status JSON");
    st.convention.members.iter().filter(|m| m.alive).map(|m| m.node.clone()).collect()
}

#[test]
fn a_convention_shares_the_secret_and_a_member_with_a_wrong_one_cannot_join() {
    let dir = TestDir::new();
    let secret = write_secret(&dir, "secret", "the convention's own secret, 32b");
    let wrong = write_secret(&dir, "wrong", "somebody else's secret, 32 bytes");
    let s = secret.display().to_string();
    let w = wrong.display().to_string();
    let leader = NodeProc::start_with(&dir, "", &["--secret-file", &s]);
    let good = NodeProc::start_member(&dir, &leader.addr(), "morse", &["--secret-file", &s]);
    let bad = NodeProc::start_member(&dir, &leader.addr(), "picky", &["--secret-file", &w]);

    wait_for("the leader to list the member with the secret", CONVENTION_TIMEOUT, || {
        members_seen_by(&leader, &secret).contains(&good.addr()).then_some(())
    });
    wait_for("the member with the secret to list the leader", CONVENTION_TIMEOUT, || {
        members_seen_by(&good, &secret).contains(&leader.addr()).then_some(())
    });
    // The leader refuses the wrong member's registration (the event to wait for)...
    wait_for("the leader to log the refusal of the wrong secret", CONVENTION_TIMEOUT, || {
        leader.log_text().contains("a wrong proof of the shared secret").then_some(())
    });
    // ...and again at its next heartbeat: by then it has had every chance to join.
    wait_for("a second refusal", CONVENTION_TIMEOUT, || {
        (leader.log_text().matches("a wrong proof of the shared secret").count() >= 2).then_some(())
    });
    let seen = members_seen_by(&leader, &secret);
    assert!(!seen.contains(&bad.addr()), "the leader lists the member with the wrong secret: {seen:?}");
    assert_eq!(seen, vec![good.addr()]);
    let seen_by_bad = members_seen_by(&bad, &wrong);
    assert!(!seen_by_bad.contains(&leader.addr()), "the wrong member thinks it joined: {seen_by_bad:?}");
}

#[test]
fn a_node_open_to_the_network_without_a_secret_refuses_to_start_unless_insecure() {
    let dir = TestDir::new();
    let port = free_port().to_string();
    let state = dir.join("exposed").display().to_string();
    let out = troupe(&["start", &port, "--foreground", "--bind", "0.0.0.0", "--state-dir", &state], None);
    out.assert_code(2).assert_stderr_has(&["refusing to listen", "--secret-file", "--insecure"]);
    assert!(!port_listening(port.parse().expect("port")), "the refused node listens anyway");

    // A signing authority checks code, not the link: it does not open a public address.
    let key = dir.join("signer");
    troupe(&["keygen", "-o", &key.display().to_string()], None).assert_ok();
    let trusted = dir.join("trusted");
    std::fs::create_dir(&trusted).expect("mkdir");
    std::fs::copy(key.with_extension("pub"), trusted.join("signer.pub")).expect("copy");
    let trusted = trusted.display().to_string();
    let signed_only = [
        "start",
        &port,
        "--foreground",
        "--bind",
        "0.0.0.0",
        "--state-dir",
        &state,
        "--authority",
        "ed25519",
        "--trusted-keys",
        &trusted,
    ];
    troupe(&signed_only, None).assert_code(2).assert_stderr_has(&["refusing to listen", "--secret-file"]);
    assert!(!port_listening(port.parse().expect("port")), "the refused node listens anyway");

    // --insecure: the operator said so.
    let mut open = NodeProc::start_with(&dir, "", &["--bind", "0.0.0.0", "--insecure"]);
    open.status();
    open.stop();
    // A secret makes a public address acceptable.
    let secret = write_secret(&dir, "secret", "a long enough shared secret here");
    let mut guarded = NodeProc::start_with(
        &dir,
        "",
        &["--bind", "0.0.0.0", "--secret-file", &secret.display().to_string()],
    );
    guarded.run("status", &["--secret-file", &secret.display().to_string()]).assert_ok();
    let port_s = guarded.port_arg();
    troupe(&["stop", &port_s, "--secret-file", &secret.display().to_string()], None).assert_ok();
    assert!(guarded.wait_exit(CONVENTION_TIMEOUT).is_some(), "the node did not stop");
}

// ---- hostile input on the admin port --------------------------------------------------------

#[test]
fn oversized_and_garbage_frames_get_an_error_and_a_closed_connection_and_the_node_keeps_serving() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let port = node.port();

    // Before the handshake, nothing bigger than a hello is accepted (only the length is sent:
    // the node must refuse on the header, without buffering anything).
    let mut s = connect_raw(port);
    read_challenge(&mut s);
    s.write_all(&((MAX_HELLO_BYTES as u32) + 1).to_be_bytes()).expect("write");
    expect_protocol_error_and_close(&mut s, "bad frame");

    // Garbage instead of a hello.
    let mut s = connect_raw(port);
    read_challenge(&mut s);
    write_frame(&mut s, b"\xc1\xc1 definitely not msgpack");
    expect_protocol_error_and_close(&mut s, "not a troupe hello");

    // Another protocol version.
    let mut s = connect_raw(port);
    read_challenge(&mut s);
    let old = protocol::encode(&ClientFrame::Hello { protocol: 1, agent: "old".into(), auth: None });
    write_frame(&mut s, &old);
    expect_protocol_error_and_close(&mut s, "protocol version 1");

    // After the handshake: a frame over MAX_FRAME_BYTES is refused on its header.
    let mut s = raw_session(port);
    s.write_all(&((MAX_FRAME_BYTES as u32) + 1).to_be_bytes()).expect("write");
    expect_protocol_error_and_close(&mut s, "bad frame");

    // After the handshake: an undecodable request, and a second hello.
    let mut s = raw_session(port);
    write_frame(&mut s, &[0x92, 0xff, 0x00]);
    expect_protocol_error_and_close(&mut s, "undecodable request");
    let mut s = raw_session(port);
    write_frame(&mut s, &hello(&[0; NONCE_BYTES], None, &[0; NONCE_BYTES]));
    expect_protocol_error_and_close(&mut s, "hello sent twice");

    // Honest clients never noticed.
    let mut s = raw_session(port);
    write_frame(&mut s, &status_request(1));
    expect_status_reply(&mut s, 1);
    node.status();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_port_serves_honest_clients_while_100_connections_send_garbage_stall_or_drop() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hash = node.load(&dir.pack("faulty.zip", &[dir.stripped("troupe_test_faulty")]));
    let mut client = node.client().await;
    let echo = create(&mut client, "faulty.Echo", &hash).await.expect("create an echo");
    let port = node.port();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for i in 0..100usize {
        let stop = stop.clone();
        attackers.push(std::thread::spawn(move || {
            let mut rounds = 0usize;
            loop {
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                match i % 3 {
                    // Garbage: a length and random-looking bytes, then whatever comes back.
                    0 => {
                        let _ = s.write_all(&[0, 0, 0, 40]);
                        let _ = s.write_all(&[0xa5u8; 40]);
                        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: troupe\r\n\r\n");
                        let mut sink = [0u8; 256];
                        let _ = s.read(&mut sink);
                    }
                    // Stall half-way through a hello frame, and hold the connection.
                    1 => {
                        let _ = s.write_all(&[0, 0, 4, 0]);
                        let _ = s.write_all(&[0x81; 100]);
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            std::thread::park_timeout(Duration::from_millis(100));
                        }
                    }
                    // Open and drop at once.
                    _ => drop(s),
                }
                rounds += 1;
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return rounds;
                }
            }
        }));
    }

    // While that goes on, honest clients: the CLI and a client library request, each must get
    // through (its latency is printed; timing claims belong in `make bench`).
    let mut worst = Duration::ZERO;
    for i in 0..8 {
        let t = Instant::now();
        node.run("status", &[]).assert_ok();
        worst = worst.max(t.elapsed());
        let t = Instant::now();
        let mut c =
            tokio::time::timeout(Duration::from_secs(60), node.client()).await.expect("connect in time");
        assert_eq!(ask(&mut c, &echo, &format!("ping {i}")).await, format!("echo: ping {i}"));
        status_of(&mut client).await;
        worst = worst.max(t.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds: usize = attackers.into_iter().map(|a| a.join().expect("attacker thread")).sum();
    assert!(rounds >= 100, "the attack did not run ({rounds} rounds)");
    eprintln!("worst honest latency under attack: {worst:?} ({rounds} hostile connections)");
    node.status();
}
