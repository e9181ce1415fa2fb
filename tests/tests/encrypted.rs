//! Encrypted links: with `--secret-file`, every client and peer link runs a Noise handshake
//! (NNpsk0, keyed by the shared secret) and seals every frame after it.
//!
//! Real node processes on loopback ports; where a test must see the wire, a small TCP relay
//! in the test sits between the client and the node and records what each side sent.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use troupe_actor_abi::message::{Address, Payload};
use troupe_node::client::Client;
use troupe_node::protocol::{self, Request, Response, ServerFrame};
use troupe_node::signing::Secret;
use troupe_tests::*;

fn write_secret(dir: &TestDir, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("cannot write a secret file");
    p
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A relay to a node's port: what the client sent (`up`) and what the node sent (`down`).
struct Relay {
    addr: String,
    up: Arc<Mutex<Vec<u8>>>,
    down: Arc<Mutex<Vec<u8>>>,
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        log.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Relay {
    async fn start(node_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
        let addr = listener.local_addr().expect("the relay's address").to_string();
        let (up, down) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (u, d) = (up.clone(), down.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(node) = TcpStream::connect(("127.0.0.1", node_port)).await else { break };
                let ((cr, cw), (nr, nw)) = (client.into_split(), node.into_split());
                tokio::spawn(pump(cr, nw, u.clone()));
                tokio::spawn(pump(nr, cw, d.clone()));
            }
        });
        Relay { addr, up, down }
    }

    /// What each side sent so far. The pumps record bytes before they pass them on, so once a
    /// client has read an answer, its request and that answer are recorded: no wait needed.
    fn recorded(&self) -> (Vec<u8>, Vec<u8>) {
        (self.up.lock().unwrap().clone(), self.down.lock().unwrap().clone())
    }
}

#[test]
fn an_encrypted_convention_of_three_nodes_runs_the_demo() {
    let dir = TestDir::new();
    let secret = write_secret(&dir, "secret", "an encrypted convention's secret\n");
    let secret = secret.display().to_string();
    let extra: &[&str] = &["--secret-file", &secret];
    let conv = Convention::start(&dir, &[("", extra), (MORSE_CAESAR, extra), (BASE64, extra)]);
    let (leader, morse, base64) = (conv.node(0), conv.node(1), conv.node(2));
    let hash = leader.load(&dir.encoders_zip());
    let out = leader.app(&hash, "hello\n");
    out.assert_ok();
    assert_eq!(out.sorted_lines(), hello_lines(), "{out}");
    // The encoders ran on the members: the request crossed the encrypted peer links.
    assert_eq!(morse.actor_types(), ["encoder.Rot13Encoder", "morse.MorseEncoder"]);
    assert_eq!(base64.actor_types(), ["encoder.Base64Encoder"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_wire_nothing_is_plaintext_with_a_secret_and_everything_is_without() {
    const CANARY: &str = "troupe canary: the owls are not what they seem";
    for encrypted in [true, false] {
        let dir = TestDir::new();
        let file = write_secret(&dir, "secret", "a secret that keeps the owls hidden\n");
        let file_s = file.display().to_string();
        let extra: Vec<&str> = if encrypted { vec!["--secret-file", &file_s] } else { vec![] };
        let node = NodeProc::start_with(&dir, "", &extra);
        let relay = Relay::start(node.port()).await;
        let secret = encrypted.then(|| Secret::load(&file).expect("a valid secret"));
        let mut c =
            Client::connect_with(&relay.addr, secret.as_ref()).await.expect("connect through the relay");
        let to = Address { node: node.addr(), id: 0 };
        let sent = c.request(Request::Send { to, payload: Payload::Text(CANARY.into()) }).await;
        assert!(matches!(sent, Ok(Response::Sent)), "{sent:?}");
        assert!(matches!(c.request(Request::Status).await, Ok(Response::Status(_))));
        drop(c);
        let (up, down) = relay.recorded();
        assert!(up.len() > CANARY.len() && !down.is_empty(), "the relay saw nothing");
        let seen = contains(&up, CANARY.as_bytes());
        let node_data = contains(&down, node.addr().as_bytes());
        if encrypted {
            assert!(!seen, "the message text crossed the wire in plaintext");
            assert!(!node_data, "the node's status crossed the wire in plaintext");
        } else {
            assert!(seen && node_data, "without a secret the text should be visible: the test cannot see it");
        }
    }
}

/// A CLI run within `limit`, as `troupe status PORT` with `secret` in the environment.
fn status_with(port: &str, secret: Option<&str>, limit: Duration) -> Cli {
    let t = Instant::now();
    let out = troupe_with_secret(&["status", port], None, secret);
    assert!(t.elapsed() < limit, "the CLI took {:?} (a hang?):\n{out}", t.elapsed());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_secret_on_either_side_gets_nothing_and_a_clear_error() {
    let dir = TestDir::new();
    let good = write_secret(&dir, "secret", "the convention's secret, 32 bytes\n");
    let wrong = write_secret(&dir, "wrong", "not the convention's secret at all\n");
    let (good_s, wrong_s) = (good.display().to_string(), wrong.display().to_string());
    let node = NodeProc::start_with(&dir, "", &["--secret-file", &good_s]);
    let plain = NodeProc::start_with(&dir, "", &[]);
    // A guard against a hang only (each refusal's message is checked): a loaded machine may take
    // seconds to start a CLI, so the limit is far above any honest run.
    let limit = Duration::from_secs(30);

    let out = status_with(&node.port_arg(), Some(&wrong_s), limit);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("authentication failed"), "no clear reason:\n{out}");
    let out = status_with(&node.port_arg(), None, limit);
    assert!(out.code != 0 && out.stderr.contains("requires the convention's shared secret"), "{out}");
    let out = status_with(&plain.port_arg(), Some(&good_s), limit);
    assert!(out.code != 0 && out.stderr.contains("would not be encrypted"), "{out}");
    status_with(&node.port_arg(), Some(&good_s), limit).assert_ok();

    // Through the relay: a client with the wrong secret got the challenge and the refusal only.
    let relay = Relay::start(node.port()).await;
    let bad = Secret::load(&wrong).expect("a valid secret");
    let refused = Client::connect_with(&relay.addr, Some(&bad)).await;
    assert!(refused.is_err(), "a client with the wrong secret connected");
    let (_, down) = relay.recorded();
    assert!(!contains(&down, node.addr().as_bytes()), "the node sent its data to a wrong secret");
    let frames = frames_in(&down);
    assert!(matches!(frames.first(), Some(ServerFrame::Challenge { .. })), "{frames:?}");
    assert!(
        matches!(frames.get(1), Some(ServerFrame::ProtocolError { .. })) && frames.len() == 2,
        "{frames:?}"
    );
    wait_for("the refusal in the log", REPLY_TIMEOUT, || {
        node.log_text().contains("a wrong proof of the shared secret").then_some(())
    });
}

/// The plaintext frames in `bytes` (until one is not a server frame).
fn frames_in(mut bytes: &[u8]) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let Some(body) = bytes.get(4..4 + len) else { break };
        let Ok(frame) = protocol::decode::<ServerFrame>(body) else { break };
        frames.push(frame);
        bytes = &bytes[4 + len..];
    }
    frames
}

/// Sends `recorded` on a new raw connection to `port` after reading its challenge; returns
/// everything the node answered until it closed.
fn replay(port: u16, recorded: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("the challenge");
    let mut challenge = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut challenge).expect("the challenge");
    // The node may close before reading it all.
    let _ = s.write_all(recorded);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_exchange_replayed_on_another_connection_fails_and_runs_nothing() {
    let dir = TestDir::new();
    let file = write_secret(&dir, "secret", "a secret for recording and replaying\n");
    let file_s = file.display().to_string();
    let a = NodeProc::start_with(&dir, "", &["--secret-file", &file_s]);
    let b = NodeProc::start_with(&dir, "", &["--secret-file", &file_s]);
    let relay = Relay::start(a.port()).await;
    let secret = Secret::load(&file).expect("a valid secret");
    let zip = std::fs::read(dir.encoders_zip()).expect("the encoders zip");
    let mut c = Client::connect_with(&relay.addr, Some(&secret)).await.expect("connect");
    let loaded = c.request(Request::Load { zip, info: "recorded".into() }).await;
    assert!(matches!(loaded, Ok(Response::Loaded { .. })), "{loaded:?}");
    drop(c);
    let (recorded, _) = relay.recorded();
    assert_eq!(a.status().versions.len(), 1);

    // Replayed to the same node and to another node with the same secret.
    for node in [&a, &b] {
        let answer = replay(node.port(), &recorded);
        let frames = frames_in(&answer);
        assert!(
            matches!(frames.as_slice(), [ServerFrame::ProtocolError { message }] if message.contains("authentication failed")),
            "the node answered a replay with {frames:?} ({} bytes)",
            answer.len()
        );
        wait_for("the refusal in the log", REPLY_TIMEOUT, || {
            node.log_text().contains("refused a connection").then_some(())
        });
    }
    assert!(b.status().versions.is_empty(), "the replayed load ran on another node");
    assert_eq!(a.status().versions.len(), 1, "the replay changed what the node holds");
}
