//! Peer links on real loopback sockets, from a real node's [`Peers`](super::Peers): many large
//! replies at once on one link (plain and sealed) against a real node's server; a call that
//! times out behind a long answer still arriving, and one to a silent peer; what a call waiting
//! on a link is told when this node drops that link (issue 21).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex};
use tokio_util::codec::{Framed, FramedRead};
use troupe_actor_abi::message::Address;

use super::LinkError;
use crate::model::config::NodeConfig;
use crate::node::Node;
use crate::runtime::core::Core;
use crate::store::signing::Secret;
use crate::wire::{
    self as protocol, ClientFrame, MemberInfo, PeerRequest, Registration, RemoteSources, Response,
    ServerFrame, SourceSummary, PROTOCOL_VERSION,
};

/// Calls in flight at once on the one link: several times the 8 concurrent fetches that once
/// failed.
const CALLS: usize = 16;

/// Versions in the registering member's entry (each answer carries the entry back): enough for
/// [`LARGE`].
const SOURCES: usize = 6000;

/// The least each answer carries: more than the ~540 KB zip whose concurrent fetches failed, so
/// the replies span many reads and many sealed chunks, and fill the socket.
const LARGE: usize = 600 * 1024;

/// No call here should ever time out: a failure is a wrong or missing answer, never slowness
/// (the suite runs on a loaded 2-core machine).
const PATIENCE: Duration = Duration::from_secs(120);

/// A node serving on a free loopback port (with the convention's `secret`, if any).
async fn serving(dir: &tempfile::TempDir, secret: Option<&Secret>) -> (Node, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut config = NodeConfig::for_test(&addr, dir.path());
    config.secret = secret.cloned();
    // The registering member speaks only through the calls under test: it must not be declared
    // lost (and fenced) while a slow debug build works through them.
    config.convention.dead_after = PATIENCE;
    let node = Node::new(config).unwrap();
    tokio::spawn(crate::admin::server::serve(node.clone(), listener));
    (node, addr)
}

/// A node that only calls out (it never serves).
fn caller(dir: &tempfile::TempDir, secret: Option<&Secret>) -> Node {
    let mut config = NodeConfig::for_test("127.0.0.1:9", dir.path());
    config.secret = secret.cloned();
    Node::new(config).unwrap()
}

/// The entry of a member that holds `SOURCES` versions: each one distinct.
fn big_entry() -> MemberInfo {
    let sources = (0..SOURCES)
        .map(|i| SourceSummary {
            hash: format!("{i:064x}"),
            types: BTreeMap::from([(format!("module{i}.Type"), vec![format!("capability-{i}")])]),
        })
        .collect();
    MemberInfo {
        node: "127.0.0.1:1".into(),
        capabilities: vec!["big".into()],
        remote_sources: RemoteSources::Yes,
        sources,
        pid: 1,
        incarnation: 1,
    }
}

/// A registration of `info`'s node; with `entry`, it carries the whole entry, else it is a
/// heartbeat (a few bytes, as a fetch's request is).
fn register(info: &MemberInfo, entry: bool) -> PeerRequest {
    PeerRequest::Register(Registration {
        node: info.node.clone(),
        incarnation: info.incarnation,
        info: entry.then(|| info.clone()),
        since: None,
        names: None,
        known: None,
        groups: None,
        groups_version: 0,
    })
}

/// A member registers its large entry; then `CALLS` heartbeats at once on one link (small
/// requests, as fetches are), each answered with the whole directory: every answer arrives,
/// and each carries the registered entry exactly.
async fn many_large_replies_on_one_link(secret: Option<Secret>) {
    let (dir, cdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_server, addr) = serving(&dir, secret.as_ref()).await;
    let node = caller(&cdir, secret.as_ref());
    let entry = big_entry();
    let size = protocol::encode(&entry).len();
    assert!(size >= LARGE, "each answer should carry at least {LARGE} bytes, not {size}");
    let joined = node.core().peers.call(&addr, register(&entry, true), PATIENCE).await;
    assert!(matches!(joined, Ok(Response::Registered { .. })), "{joined:?}");
    let calls = (0..CALLS).map(|_| {
        let core = node.core().clone();
        let (addr, request) = (addr.clone(), register(&entry, false));
        tokio::spawn(async move { core.peers.call(&addr, request, PATIENCE).await })
    });
    for (i, answer) in futures::future::join_all(calls).await.into_iter().enumerate() {
        match answer.unwrap() {
            Ok(Response::Registered { full: true, members, .. }) => {
                let mine = members.iter().find(|m| m.node == entry.node);
                assert_eq!(mine, Some(&entry), "answer {i} does not carry the registered entry");
            }
            other => panic!("call {i} of {CALLS} on one link: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_replies_at_once_on_one_plain_link_all_arrive_intact() {
    many_large_replies_on_one_link(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_replies_at_once_on_one_sealed_link_all_arrive_intact() {
    many_large_replies_on_one_link(Some(Secret::from_bytes(b"a convention's shared secret"))).await;
}

/// A peer that says hello, then hands each call it gets to `calls` (it answers only what the
/// test writes on the connection it gets back).
async fn scripted_peer() -> (String, mpsc::UnboundedReceiver<(u64, Arc<Mutex<OwnedWriteHalf>>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, calls) = mpsc::unbounded_channel();
    let me = addr.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, protocol::SealedCodec::new(protocol::codec()));
        let challenge =
            ServerFrame::Challenge { protocol: PROTOCOL_VERSION, nonce: vec![7; 32], auth_required: false };
        framed.send(protocol::encode(&challenge)).await.unwrap();
        let hello = framed.next().await.unwrap().unwrap();
        assert!(matches!(protocol::decode::<ClientFrame>(&hello), Ok(ClientFrame::Hello { .. })));
        let welcome = ServerFrame::Hello {
            protocol: PROTOCOL_VERSION,
            node: me.clone(),
            version: "scripted".into(),
            client: Address { node: me, id: 1 },
            server_proof: None,
            idle_timeout_ms: None,
        };
        framed.send(protocol::encode(&welcome)).await.unwrap();
        framed.codec_mut().set_max_frame_length(protocol::MAX_FRAME_BYTES);
        // From here on the test writes the answers, byte by byte if it likes.
        let parts = framed.into_parts();
        let (read, write) = parts.io.into_split();
        let write = Arc::new(Mutex::new(write));
        let mut reader = FramedRead::new(read, parts.codec);
        reader.read_buffer_mut().extend_from_slice(&parts.read_buf);
        while let Some(Ok(frame)) = reader.next().await {
            if let Ok(ClientFrame::PeerCall { id, .. }) = protocol::decode::<ClientFrame>(&frame) {
                let _ = tx.send((id, write.clone()));
            }
        }
    });
    (addr, calls)
}

/// The bytes of an answer to call `id` as they travel (length, then body).
fn answer(id: u64, response: Response) -> Vec<u8> {
    let body = protocol::encode(&ServerFrame::Reply { id, result: Ok(response) });
    let mut wire = (body.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(&body);
    wire
}

/// A call's timeout in the tests below (virtual time).
const TIMEOUT: Duration = Duration::from_secs(1);

/// Stops paused time from jumping ahead on its own (it does while the runtime waits, even for
/// bytes already in a socket): a blocking task holds it until the guard is dropped, and the
/// test moves the clock itself.
fn hold_the_clock() -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || rx.recv());
    tx
}

/// Waits (without moving the clock) until the link to `addr` has read something new.
async fn until_heard(node: &Node, addr: &str, before: (usize, usize)) -> (usize, usize) {
    until_heard_by(node.core(), addr, before).await
}

async fn until_heard_by(core: &Core, addr: &str, before: (usize, usize)) -> (usize, usize) {
    loop {
        let now = core.peers.heard(addr).unwrap_or_else(|| panic!("the link to {addr} was dropped"));
        if now != before {
            return now;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_that_times_out_behind_a_long_answer_says_the_peer_was_busy() {
    let dir = tempfile::tempdir().unwrap();
    let node = caller(&dir, None);
    let (peer, mut calls) = scripted_peer().await;
    let fetch = {
        let (core, peer) = (node.core().clone(), peer.clone());
        let request = PeerRequest::FetchSource { hash: "ab".repeat(32) };
        tokio::spawn(async move { core.peers.call(&peer, request, Duration::from_secs(600)).await })
    };
    let (first, socket) = calls.recv().await.unwrap();
    let clock = hold_the_clock();
    let heartbeat = {
        let (core, peer) = (node.core().clone(), peer.clone());
        let request = PeerRequest::Deregister { node: "127.0.0.1:2".into() };
        tokio::spawn(async move { core.peers.call(&peer, request, TIMEOUT).await })
    };
    let _second = calls.recv().await.unwrap();
    // The first answer (a 1 MB zip) arrives in 16 slices, half the second call's timeout
    // apart: the second call times out while it keeps arriving.
    let zip: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let long = answer(first, Response::Source { zip: zip.clone() });
    let mut socket = socket.lock().await;
    let mut heard = (0, 0);
    for slice in long.chunks(long.len() / 16 + 1) {
        socket.write_all(slice).await.unwrap();
        heard = until_heard(&node, &peer, heard).await;
        tokio::time::advance(TIMEOUT / 2).await;
    }
    match fetch.await.unwrap() {
        Ok(Response::Source { zip: got }) => assert!(got == zip, "the long answer arrived altered"),
        other => panic!("the long answer: {other:?}"),
    }
    let err = heartbeat.await.unwrap().expect_err("the second call was answered");
    assert!(err.peer_was_busy(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{peer} did not answer within 1s (it was busy sending earlier answers on the same link)")
    );
    drop(clock);
}

#[tokio::test(start_paused = true)]
async fn a_call_to_a_silent_peer_still_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let node = caller(&dir, None);
    let (peer, mut calls) = scripted_peer().await;
    let request = PeerRequest::Deregister { node: "127.0.0.1:2".into() };
    let call = node.core().peers.call(&peer, request, TIMEOUT);
    let (err, held) = tokio::join!(call, calls.recv());
    assert!(held.is_some(), "the call reached the peer");
    let err = err.expect_err("a silent peer answered");
    assert!(!err.peer_was_busy(), "{err:?}");
    assert_eq!(err.to_string(), format!("{peer} did not answer within 1s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_on_a_link_this_node_drops_is_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let node = caller(&dir, None);
    let (peer, mut calls) = scripted_peer().await;
    let core = node.core().clone();
    let request = PeerRequest::FetchSource { hash: "ab".repeat(32) };
    let target = peer.clone();
    let call = tokio::spawn(async move { core.peers.call(&target, request, PATIENCE).await });
    let _held = calls.recv().await.expect("the call reached the peer");
    // What the convention does when it declares the peer lost.
    node.core().peers.forget(&peer, "it was declared lost");
    let err = call.await.unwrap().expect_err("a dropped link answered");
    assert!(matches!(err, LinkError::Dropped { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("the link to {peer} was dropped: it was declared lost"));
}

#[tokio::test(start_paused = true)]
async fn a_member_keeps_a_leader_that_is_busy_answering_its_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, mut calls) = scripted_peer().await;
    let mut config = NodeConfig::for_test("127.0.0.1:9", dir.path());
    config.convention.leaders = vec![leader.clone()];
    // Silent as soon as a heartbeat goes unanswered: only what the link hears can save it.
    config.convention.dead_after = Duration::ZERO;
    // The core alone: the test sends the heartbeat itself.
    let core = Core::new(config).unwrap();
    let fetch = {
        let (core, leader) = (core.clone(), leader.clone());
        let request = PeerRequest::FetchSource { hash: "ab".repeat(32) };
        tokio::spawn(async move { core.peers.call(&leader, request, Duration::from_secs(600)).await })
    };
    let (first, socket) = calls.recv().await.unwrap();
    let clock = hold_the_clock();
    let heartbeat = {
        let core = core.clone();
        tokio::spawn(async move { core.refresh_membership().await })
    };
    let _register = calls.recv().await.unwrap();
    // The fetched zip arrives in 16 slices, a quarter of the heartbeat's timeout apart.
    let zip: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let long = answer(first, Response::Source { zip: zip.clone() });
    let mut socket = socket.lock().await;
    let mut heard = (0, 0);
    for slice in long.chunks(long.len() / 16 + 1) {
        socket.write_all(slice).await.unwrap();
        heard = until_heard_by(&core, &leader, heard).await;
        tokio::time::advance(Duration::from_millis(125)).await;
    }
    let beat = heartbeat.await.unwrap().expect_err("the heartbeat was answered");
    assert!(beat.peer_was_busy(), "{beat:?}");
    match fetch.await.unwrap() {
        Ok(Response::Source { zip: got }) => assert!(got == zip, "the fetched zip arrived altered"),
        other => panic!("the fetch: {other:?}"),
    }
    assert!(core.peers.heard(&leader).is_some(), "the member dropped its link to the leader");
    drop(clock);
}
