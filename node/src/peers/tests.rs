//! Peer links on real loopback sockets, from a real node's [`Peers`]: many large replies at
//! once on one link (plain and sealed) against a real node's server, and what a call waiting
//! on a link is told when this node drops that link (issue 21).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::codec::Framed;
use troupe_actor_abi::message::Address;

use super::LinkError;
use crate::model::config::NodeConfig;
use crate::node::Node;
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

/// A peer that says hello, then holds every call it gets unanswered; `arrived` fires when the
/// first call is in.
async fn holding_peer() -> (String, oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, arrived) = oneshot::channel();
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
            version: "holding".into(),
            client: Address { node: me, id: 1 },
            server_proof: None,
            idle_timeout_ms: None,
        };
        framed.send(protocol::encode(&welcome)).await.unwrap();
        framed.codec_mut().set_max_frame_length(protocol::MAX_FRAME_BYTES);
        let mut tx = Some(tx);
        while let Some(Ok(frame)) = framed.next().await {
            if let Ok(ClientFrame::PeerCall { .. }) = protocol::decode::<ClientFrame>(&frame) {
                tx.take().map(|tx| tx.send(()));
            }
        }
    });
    (addr, arrived)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_on_a_link_this_node_drops_is_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let node = caller(&dir, None);
    let (peer, arrived) = holding_peer().await;
    let core = node.core().clone();
    let request = PeerRequest::FetchSource { hash: "ab".repeat(32) };
    let target = peer.clone();
    let call = tokio::spawn(async move { core.peers.call(&target, request, PATIENCE).await });
    arrived.await.expect("the call reached the peer");
    // What the convention does when it declares the peer lost.
    node.core().peers.forget(&peer, "it was declared lost");
    let err = call.await.unwrap().expect_err("a dropped link answered");
    assert!(matches!(err, LinkError::Dropped { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("the link to {peer} was dropped: it was declared lost"));
}
