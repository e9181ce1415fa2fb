//! The server in-process, on a real loopback socket: the handshake, a request, a one-way peer
//! request, and what an old client is told.

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

use super::*;
use crate::model::config::NodeConfig;
use crate::wire::ErrorKind;

async fn start(dir: &tempfile::TempDir) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let node = Node::new(NodeConfig::for_test(&addr, dir.path())).unwrap();
    tokio::spawn(serve(node, listener));
    addr
}

async fn next(framed: &mut Conn) -> ServerFrame {
    let bytes = tokio::time::timeout(Duration::from_secs(10), framed.next()).await.unwrap().unwrap().unwrap();
    protocol::decode(&bytes).unwrap()
}

#[tokio::test]
async fn a_client_of_another_protocol_version_is_told_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(&dir).await;
    let mut framed =
        Framed::new(TcpStream::connect(&addr).await.unwrap(), protocol::SealedCodec::new(protocol::codec()));
    assert!(matches!(next(&mut framed).await, ServerFrame::Challenge { protocol: PROTOCOL_VERSION, .. }));
    let old = ClientFrame::Hello { protocol: 2, agent: "troupe 0.0.9".into(), auth: None };
    framed.send(protocol::encode(&old)).await.unwrap();
    let ServerFrame::ProtocolError { message } = next(&mut framed).await else { panic!("not refused") };
    assert!(message.contains("this node speaks protocol 5, you speak 2"), "{message}");
}

#[tokio::test]
async fn client_requests_are_answered_by_id_and_errors_carry_their_code() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(&dir).await;
    let mut c = crate::client::Client::connect(&addr).await.unwrap();
    let Response::Status(report) = c.request(Request::Status).await.unwrap() else { panic!("no status") };
    assert_eq!(report.node, addr);
    let err = c.request(Request::Unload { hash: "0123456789".into(), grace_ms: None }).await.unwrap_err();
    let crate::client::ClientError::Refused(reply) = err else { panic!("not refused: {err}") };
    assert_eq!((reply.kind, reply.code.as_str()), (ErrorKind::Refused, "InvalidActorSourceHash"));
    let err = c.request(Request::ChangeCapability { add: true, name: String::new() }).await.unwrap_err();
    let crate::client::ClientError::Refused(reply) = err else { panic!("not refused: {err}") };
    assert_eq!((reply.kind, reply.code.as_str()), (ErrorKind::BadRequest, "usage"));
}

#[tokio::test]
async fn a_peer_call_registers_a_member_and_gets_the_member_list() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start(&dir).await;
    let mut framed =
        Framed::new(TcpStream::connect(&addr).await.unwrap(), protocol::SealedCodec::new(protocol::codec()));
    let _challenge = next(&mut framed).await;
    let hello = ClientFrame::Hello { protocol: PROTOCOL_VERSION, agent: "peer".into(), auth: None };
    framed.send(protocol::encode(&hello)).await.unwrap();
    assert!(matches!(next(&mut framed).await, ServerFrame::Hello { .. }));
    framed.codec_mut().set_max_frame_length(protocol::MAX_FRAME_BYTES);
    let info = crate::wire::MemberInfo {
        node: "127.0.0.1:1".into(),
        capabilities: vec!["morse".into()],
        remote_sources: crate::wire::RemoteSources::Yes,
        sources: Vec::new(),
        pid: 1,
        incarnation: 1,
    };
    let reg = crate::wire::Registration {
        node: info.node.clone(),
        incarnation: 1,
        info: Some(info),
        since: None,
        names: Some(Vec::new()),
        known: Some(Vec::new()),
        groups: None,
        groups_version: 0,
    };
    let call = ClientFrame::PeerCall { id: 7, request: PeerRequest::Register(reg) };
    framed.send(protocol::encode(&call)).await.unwrap();
    let ServerFrame::Reply { id: 7, result: Ok(Response::Registered { members, .. }) } =
        next(&mut framed).await
    else {
        panic!("no registration answer");
    };
    let nodes: Vec<&str> = members.iter().map(|m| m.node.as_str()).collect();
    assert_eq!(nodes, vec!["127.0.0.1:1", addr.as_str()], "the member, then the leader itself");
}

/// A node serving in-process with `limits`.
async fn start_with(dir: &tempfile::TempDir, limits: crate::model::config::ConnectionLimits) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let node =
        Node::new(NodeConfig { connections: limits, ..NodeConfig::for_test(&addr, dir.path()) }).unwrap();
    tokio::spawn(serve(node, listener));
    addr
}

/// Writes `frame` as a plain client without a codec may: the 4-byte head, then the body, in
/// two writes.
async fn write_in_two(framed: &mut Conn, frame: &ClientFrame) {
    use tokio::io::AsyncWriteExt;
    let body = protocol::encode(frame);
    let s = framed.get_mut();
    s.write_all(&(body.len() as u32).to_be_bytes()).await.unwrap();
    s.flush().await.unwrap();
    tokio::task::yield_now().await;
    s.write_all(&body).await.unwrap();
}

// The clock is tokio's paused clock: it moves only when every task waits, straight to the next
// timer, so the close is seen at the time the node set, whatever the machine's load.
#[tokio::test(start_paused = true)]
async fn a_silent_client_is_closed_at_the_idle_timeout_not_twice_it() {
    let dir = tempfile::tempdir().unwrap();
    let idle = Duration::from_secs(5);
    let limits = crate::model::config::ConnectionLimits { idle_timeout: Some(idle), ..Default::default() };
    let addr = start_with(&dir, limits).await;
    let mut framed =
        Framed::new(TcpStream::connect(&addr).await.unwrap(), protocol::SealedCodec::new(protocol::codec()));
    assert!(matches!(next(&mut framed).await, ServerFrame::Challenge { .. }));
    let hello = ClientFrame::Hello { protocol: PROTOCOL_VERSION, agent: "silent".into(), auth: None };
    write_in_two(&mut framed, &hello).await;
    assert!(matches!(next(&mut framed).await, ServerFrame::Hello { .. }));
    let t0 = tokio::time::Instant::now();
    let bytes = tokio::time::timeout(idle * 4, framed.next()).await.expect("never closed").unwrap().unwrap();
    let closed_after = t0.elapsed();
    let ServerFrame::ProtocolError { message } = protocol::decode(&bytes).unwrap() else {
        panic!("not closed")
    };
    assert!(message.contains("for 5s (the node's --idle-timeout)"), "{message}");
    assert!(
        closed_after >= idle && closed_after < idle + idle / 2,
        "closed after {closed_after:?}, set to {idle:?}"
    );
    assert!(framed.next().await.is_none(), "the connection stays open");
}
