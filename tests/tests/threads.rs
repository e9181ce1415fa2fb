//! A version's threads (`--version-threads`, `--long-handler`): a slow handler holds only its
//! own actor, each sender's messages keep their order however many threads serve them, a
//! flooded actor leaves its siblings a turn, a long handler shows in `status` and in the log
//! while it runs, and an unloaded version leaves neither a mapping nor a thread behind.
//!
//! The actor is `faulty.Spinner`: `spin N` holds its thread N milliseconds with a real CPU spin,
//! anything else comes back as it is.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use troupe_actor_abi::message::{Address, Incoming, Payload};
use troupe_node::client::Client;
use troupe_node::protocol::SealedCodec;
use troupe_node::protocol::{self, ClientFrame, Request, Response, ServerFrame};
use troupe_node::status::{StatusReport, VersionStatus};
use troupe_tests::*;

const SPINNER: &str = "faulty.Spinner";

/// How long `status` (or the log) may take to show what a test waits for: a deadline, not a
/// sleep. Two cores are shared by several test processes and cargo.
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest phase of a test whose messages number in the hundred thousands (a debug build
/// on shared cores): past it the test fails instead of hanging.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(60);

/// The faulty plugin, stripped (loading hashes and copies it) and packed.
fn faulty_zip(dir: &TestDir) -> PathBuf {
    dir.pack("faulty.zip", &[dir.stripped("troupe_test_faulty")])
}

/// Version `hash` in `st`.
fn version<'a>(st: &'a StatusReport, hash: &str) -> Option<&'a VersionStatus> {
    st.versions.iter().find(|v| v.hash == hash)
}

/// `n` Spinners of version `hash`, created through `client`.
async fn spinners(client: &mut Client, hash: &str, n: usize) -> Vec<Address> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(create(client, SPINNER, hash).await.unwrap_or_else(|e| panic!("create spinner {i}: {e}")));
    }
    out
}

/// The sender and text of a message that must be text from an actor.
fn text_from(m: Incoming) -> (Address, String) {
    match (m.sender, m.payload) {
        (Some(from), Payload::Text(t)) => (from, t),
        (from, other) => panic!("expected text from an actor, got {other:?} from {from:?}"),
    }
}

/// A spins until released; B answers while A still spins (A's own flag says so, and A's answer
/// cannot come before the release), then B releases A. Order and outcome only: on one shared
/// thread B would never answer, and the test fails at its deadline instead of racing a clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_actor_does_not_stall_its_sibling() {
    let dir = TestDir::new();
    let node = NodeProc::start_with(&dir, "", &["--version-threads", "2"]);
    let hash = node.load(&faulty_zip(&dir));
    let mut client = node.client().await;
    let [a, b]: [Address; 2] = spinners(&mut client, &hash, 2).await.try_into().expect("two spinners");

    send_text(&mut client, &a, "spin until released").await;
    // B answers as often as asked while A spins: A has not answered (it spins until the
    // release), and B sees A's spin running. Until A's thread has started, B says "no".
    let deadline = std::time::Instant::now() + FLOOD_TIMEOUT;
    loop {
        send_text(&mut client, &b, "spinning?").await;
        let (from, text) = text_from(next_message(&mut client).await);
        assert_eq!(from, b, "only B can answer while A spins, got {text:?} from {from}");
        match text.as_str() {
            "yes" => break,
            "no" => assert!(std::time::Instant::now() < deadline, "A's spin never started"),
            other => panic!("B answered {other:?} to spinning?"),
        }
    }
    send_text(&mut client, &b, "hello").await;
    assert_eq!(
        text_from(next_message(&mut client).await),
        (b.clone(), "hello".to_string()),
        "B answers mid-spin"
    );
    send_text(&mut client, &b, "release").await;
    let mut rest =
        vec![text_from(next_message(&mut client).await), text_from(next_message(&mut client).await)];
    rest.sort();
    let mut expected = vec![(b, "released".to_string()), (a, "spun until released".to_string())];
    expected.sort();
    assert_eq!(rest, expected, "B's release ends A's spin");
}

/// Sends `rounds` messages `"<tag>:<i>"` to each of `actors` (round-robin), then reads every
/// echo and checks that each actor's come back in the order they were sent.
async fn round_robin(mut client: Client, tag: usize, actors: Vec<Address>, rounds: usize) {
    for i in 0..rounds {
        for a in &actors {
            send_text(&mut client, a, &format!("{tag}:{i}")).await;
        }
    }
    let mut seen: BTreeMap<Address, Vec<usize>> = BTreeMap::new();
    for _ in 0..rounds * actors.len() {
        let (from, text) = text_from(next_message(&mut client).await);
        let i = text
            .strip_prefix(&format!("{tag}:"))
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("client {tag} got {text:?} from {from}, not one of its own echoes"));
        seen.entry(from).or_default().push(i);
    }
    let expected: Vec<usize> = (0..rounds).collect();
    assert_eq!(seen.len(), actors.len(), "client {tag} heard from {} actors", seen.len());
    for a in &actors {
        let got = seen.get(a).map(Vec::as_slice).unwrap_or_default();
        if got != expected.as_slice() {
            let wrong = got.iter().zip(&expected).position(|(g, e)| g != e).unwrap_or(got.len());
            let around = &got[wrong.saturating_sub(3)..(wrong + 4).min(got.len())];
            panic!(
                "client {tag}: {a}'s echoes are out of order or missing: {} of {rounds}, the first wrong \
                 at position {wrong}, around it {around:?}",
                got.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_keep_their_order_per_sender_under_several_threads() {
    const ACTORS: usize = 8;
    const ROUNDS: usize = 500;
    let dir = TestDir::new();
    let node = NodeProc::start_with(&dir, "", &["--version-threads", "4"]);
    let hash = node.load(&faulty_zip(&dir));
    let mut creator = node.client().await;
    let actors = spinners(&mut creator, &hash, ACTORS).await;

    let mut senders = Vec::new();
    for tag in 0..3 {
        let client = node.client().await;
        senders.push(tokio::spawn(round_robin(client, tag, actors.clone(), ROUNDS)));
    }
    let all = async {
        for s in senders {
            s.await.expect("a sending client failed");
        }
    };
    tokio::time::timeout(FLOOD_TIMEOUT, all).await.expect("the three clients did not finish in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unload_after_multithreaded_work_leaves_no_mapping_and_no_thread() {
    let dir = TestDir::new();
    let node = NodeProc::start_with(&dir, "", &["--version-threads", "4"]);
    let zip = faulty_zip(&dir);
    let threads_before = node.threads();
    let hash = node.load(&zip);
    let mut client = node.client().await;
    let actors = spinners(&mut client, &hash, 3).await;
    let (spinning, releaser) = (&actors[..2], &actors[2]);

    // Two handlers that run until released: the version runs them on two threads at once, and
    // status sees it however slowly it is asked (no window to catch).
    for a in spinning {
        send_text(&mut client, a, "spin until released").await;
    }
    let threads = wait_for("the version to run two handlers at once", STATUS_TIMEOUT, || {
        let st = node.try_status()?;
        let t = &version(&st, &hash)?.threads;
        (t.busy >= 2).then(|| t.clone())
    });
    assert!(threads.limit == 4, "--version-threads 4 is the limit: {threads:?}");
    // A third thread takes each `release` while the two spin; each ends one spin.
    let mut answered: Vec<Address> = Vec::new();
    for _ in spinning {
        send_text(&mut client, releaser, "release").await;
        for _ in 0..2 {
            let (from, text) = text_from(next_message(&mut client).await);
            match text.as_str() {
                "released" => assert_eq!(&from, releaser),
                "spun until released" => answered.push(from),
                other => panic!("{from} answered {other:?}"),
            }
        }
    }
    answered.sort();
    let mut expected = spinning.to_vec();
    expected.sort();
    assert_eq!(answered, expected, "every spinner answers once");

    node.run("unload", &[&hash, "--grace", "1s"]).assert_ok();
    let st = node.status();
    assert!(version(&st, &hash).is_none(), "the version is still listed: {:#?}", st.versions);
    assert!(!node.maps_hash(&hash), "{hash} is still mapped:\n{}", node.maps());
    // The version's threads exit with it; idle threads of the runtime's blocking pool (used by
    // the load and the unload) may linger a little.
    wait_for("the thread count to return to what it was before the load", STATUS_TIMEOUT, || {
        (node.threads() <= threads_before).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_handler_is_reported_while_it_runs_and_forgotten_after() {
    let dir = TestDir::new();
    let node = NodeProc::start_with(&dir, "", &["--long-handler", "200ms", "--version-threads", "2"]);
    let hash = node.load(&faulty_zip(&dir));
    let mut client = node.client().await;
    let [a, b]: [Address; 2] = spinners(&mut client, &hash, 2).await.try_into().expect("two spinners");

    // A spins until B releases it, so status and the log are read while it surely runs.
    send_text(&mut client, &a, "spin until released").await;
    // The sibling answers while A spins (A cannot answer before the release).
    send_text(&mut client, &b, "still here").await;
    let (from, text) = text_from(next_message(&mut client).await);
    assert_eq!((from, text.as_str()), (b.clone(), "still here"), "B's answer waited for A's spin");

    let long = wait_for("status to list A's handler as long", STATUS_TIMEOUT, || {
        let st = node.try_status()?;
        version(&st, &hash)?.long_handlers.iter().find(|l| l.actor == a && l.running_ms >= 200).cloned()
    });
    assert_eq!(long.type_name, SPINNER, "{long:?}");
    let a_text = a.to_string();
    wait_for("a log line about A's long handler", STATUS_TIMEOUT, || {
        let log = node.log_text();
        log.lines().any(|l| l.contains("longer than") && l.contains(&a_text)).then_some(())
    });

    send_text(&mut client, &b, "release").await;
    let mut answers =
        vec![text_from(next_message(&mut client).await), text_from(next_message(&mut client).await)];
    answers.sort();
    let mut expected = vec![(a.clone(), "spun until released".to_string()), (b, "released".to_string())];
    expected.sort();
    assert_eq!(answers, expected);
    wait_for("status to forget A's handler once it returned", STATUS_TIMEOUT, || {
        let st = node.try_status()?;
        version(&st, &hash)?.long_handlers.is_empty().then_some(())
    });
}

/// A connection that sends without waiting for each reply (the client library's `request`
/// waits for one before the next): a flood as a fast client makes it.
struct RawConn {
    framed: Framed<TcpStream, SealedCodec>,
    next_id: u64,
}

impl RawConn {
    async fn connect(node: &NodeProc) -> RawConn {
        let stream = TcpStream::connect(node.addr()).await.expect("cannot connect to the node");
        let _ = stream.set_nodelay(true);
        let mut framed = Framed::new(stream, SealedCodec::new(protocol::codec()));
        protocol::client_handshake(&mut framed, "threads test", None).await.expect("the handshake failed");
        RawConn { framed, next_id: 1 }
    }

    /// Sends `text` to `to` without waiting for the reply; it may stay in the connection's
    /// buffer (until it fills) unless `flush`.
    async fn send(&mut self, to: &Address, text: String, flush: bool) {
        let request = Request::Send { to: to.clone(), payload: Payload::Text(text) };
        let frame = protocol::encode(&ClientFrame::Request { id: self.next_id, request });
        self.next_id += 1;
        let written = if flush { self.framed.send(frame).await } else { self.framed.feed(frame).await };
        written.expect("cannot write to the node");
    }

    /// The next frame from the node.
    async fn next(&mut self) -> FromNode {
        let bytes = self.framed.next().await.expect("the node closed the connection").expect("a frame");
        match protocol::decode::<ServerFrame>(&bytes).expect("a server frame") {
            ServerFrame::Reply { result: Ok(Response::Sent), .. } => FromNode::Accepted,
            ServerFrame::Deliver(m) => FromNode::Delivered(m),
            other => panic!("unexpected frame on the flooding connection: {other:?}"),
        }
    }
}

/// What a [`RawConn`] reads.
enum FromNode {
    /// One of its sends was accepted.
    Accepted,
    /// A message to it.
    Delivered(Incoming),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_actor_does_not_starve_its_siblings() {
    const FLOOD: usize = 100_000;
    let dir = TestDir::new();
    // One thread: the siblings' turn can come only from the batch per turn.
    let node = NodeProc::start_with(&dir, "", &["--version-threads", "1"]);
    let hash = node.load(&faulty_zip(&dir));
    let mut client = node.client().await;
    let [a, b]: [Address; 2] = spinners(&mut client, &hash, 2).await.try_into().expect("two spinners");
    let mut flood = RawConn::connect(&node).await;

    // A first holds the thread, so that the flood is queued before A can drain it.
    flood.send(&a, "spin 2000".into(), false).await;
    for i in 0..FLOOD {
        flood.send(&a, format!("x{i}"), i + 1 == FLOOD).await;
    }
    // Every message of the flood accepted (echoes that come meanwhile are kept).
    let mut echoes: Vec<String> = Vec::with_capacity(FLOOD + 1);
    let echo_of_a = |m: Incoming, echoes: &mut Vec<String>| {
        let (from, text) = text_from(m);
        assert_eq!(from, a, "an answer on the flooding connection from another actor: {text:?}");
        echoes.push(text);
    };
    let accepted = async {
        let mut acks = 0;
        while acks < FLOOD + 1 {
            match flood.next().await {
                FromNode::Accepted => acks += 1,
                FromNode::Delivered(m) => echo_of_a(m, &mut echoes),
            }
        }
    };
    tokio::time::timeout(FLOOD_TIMEOUT, accepted).await.expect("the node did not accept the flood in time");

    // B, asked after the whole flood, answers before A is through it.
    send_text(&mut client, &b, "hello").await;
    let (from, text) = text_from(next_message(&mut client).await);
    assert_eq!((from, text.as_str()), (b, "hello"));
    let st = status_of(&mut client).await;
    let v = version(&st, &hash).expect("the version is listed");
    assert!(v.queue_depth > 0, "A's flood was already drained when B answered: {v:#?}");

    let drained = async {
        while echoes.len() < FLOOD + 1 {
            if let FromNode::Delivered(m) = flood.next().await {
                echo_of_a(m, &mut echoes);
            }
        }
    };
    tokio::time::timeout(FLOOD_TIMEOUT, drained).await.expect("A's echoes did not all arrive in time");
    assert_eq!(echoes[0], "spun 2000");
    if let Some(i) = (0..FLOOD).find(|&i| echoes[i + 1] != format!("x{i}")) {
        panic!("A's echo {i} is {:?}, not x{i}: the flood lost its order", echoes[i + 1]);
    }
    assert_eq!(ask(&mut client, &a, "count").await, (FLOOD + 1).to_string(), "A handled every message once");
}
