//! A member that lacks a version and gets a burst of creates for it (issue 21, point 8): it
//! fetches the version once, every create that qualifies there is placed there while the fetch
//! is under way, and when that fetch fails every create that waited for it fails with the same
//! reason. Two real nodes on loopback, 100 client connections to the member, creates sent all
//! at once; what is checked is where each actor landed, what came back to each client, and the
//! member's `troupe_fetches_total` and log.

use futures::future::join_all;
use std::io::{Read, Write};
use std::time::Duration;

use troupe_actor_abi::message::{Address, Payload, SystemMessage};
use troupe_node::client::Client;
use troupe_node::protocol::{Request, Response};
use troupe_tests::*;

/// Creates in the burst: enough that, without single flight, several arrive while the first
/// fetch is on the wire or validating.
const BURST: usize = 100;

/// `BURST` client connections to `node`, all open before the burst starts.
async fn clients(node: &NodeProc) -> Vec<Client> {
    join_all((0..BURST).map(|_| node.client())).await
}

/// Sends one create per client, all at once: `faulty.Echo` of `hash`.
async fn burst_of_creates(clients: &mut [Client], hash: &str) -> Vec<Address> {
    let creates = clients.iter_mut().map(|c| create(c, "faulty.Echo", hash));
    join_all(creates).await.into_iter().map(|r| r.expect("a create in the burst was refused")).collect()
}

/// The value of the counter sample `troupe_fetches_total{result="RESULT"}` at `addr`.
fn fetches(addr: &str, result: &str) -> u64 {
    let mut s = std::net::TcpStream::connect(addr).expect("the metrics endpoint accepts");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("set a read timeout");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send the request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the response");
    let sample = format!("troupe_fetches_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(sample.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
}

/// A member with the metrics endpoint on a free loopback port: (its extra arguments, the
/// endpoint's address).
fn metrics_arg() -> (Vec<String>, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    (vec!["--metrics".into(), addr.clone()], addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_creates_on_a_member_fetches_the_version_once_and_places_every_create_there() {
    let dir = TestDir::new();
    let (extra, metrics) = metrics_arg();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    // Neither node has capabilities and `faulty.Echo` requires none: both qualify, so a create
    // placed on the leader instead of the member is a placement that fell back.
    let conv = Convention::start(&dir, &[("", &[]), ("", &extra)]);
    let (leader, member) = (conv.node(0), conv.node(1));
    let hash = leader.load(&dir.faulty_zip());

    let mut clients = clients(member).await;
    let echoes = burst_of_creates(&mut clients, &hash).await;
    let elsewhere: Vec<&Address> = echoes.iter().filter(|a| a.node != member.addr()).collect();
    assert!(
        elsewhere.is_empty(),
        "{} of {BURST} creates that qualify on the member were placed elsewhere: {elsewhere:?}",
        elsewhere.len()
    );
    // Every one of them runs there.
    let answers = clients.iter_mut().zip(&echoes).map(|(c, a)| ask(c, a, "hi"));
    for answer in join_all(answers).await {
        assert_eq!(answer, "echo: hi");
    }
    assert_eq!(member.status().actors.len(), BURST, "actors on the member");

    assert_eq!(fetches(&metrics, "ok"), 1, "the member fetched the version more than once");
    assert_eq!(fetches(&metrics, "failed"), 0);
    let log = member.log_text();
    assert_eq!(log.matches("fetched version from peer").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_create_waiting_for_a_fetch_gets_the_same_reason_when_it_fails() {
    let dir = TestDir::new();
    let (extra, metrics) = metrics_arg();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let conv = Convention::start(&dir, &[("", &[]), ("", &extra)]);
    let (leader, member) = (conv.node(0), conv.node(1));
    // The member's source authority never answers: the fetched version stays validating until
    // the authority exits, so every create of the burst is in before the fetch fails.
    let faulty_zip = dir.faulty_zip();
    let plain = member.load(&faulty_zip);
    let mut mc = member.client().await;
    let stall = create(&mut mc, "faulty.Stall", &plain).await.expect("Stall on the member");
    assert_eq!(ask(&mut mc, &stall, "register").await, "registered");
    // Another build (another hash) on the leader only: the member must fetch it.
    let variant = dir.join("faulty-v2.zip");
    std::fs::write(&variant, ZipVariants::new(&faulty_zip).make("0.2.0")).expect("write the variant");
    let hash = leader.load(&variant);

    let mut clients = clients(member).await;
    let echoes = burst_of_creates(&mut clients, &hash).await;
    let elsewhere: Vec<&Address> = echoes.iter().filter(|a| a.node != member.addr()).collect();
    assert!(elsewhere.is_empty(), "creates placed elsewhere during the fetch: {elsewhere:?}");
    // A message to each: it waits with its create.
    for (c, a) in clients.iter_mut().zip(&echoes) {
        send_text(c, a, "waiting").await;
    }
    wait_for("the fetched version to reach the authority", CONVENTION_TIMEOUT, || {
        member.status().versions.iter().any(|v| v.hash == hash && v.state == "validating").then_some(())
    });

    // The authority exits: the validation, so the fetch, fails.
    let exit = Payload::System(SystemMessage::ActorExitRequest { recursive: true });
    match mc.request(Request::Send { to: stall, payload: exit }).await {
        Ok(Response::Sent) => {}
        other => panic!("sending ActorExitRequest failed: {other:?}"),
    }
    let mut reasons = Vec::new();
    for (c, a) in clients.iter_mut().zip(&echoes) {
        match next_message(c).await.payload {
            Payload::System(SystemMessage::PoisonMessage { target, details, .. }) if &target == a => {
                reasons.push(details)
            }
            other => panic!("expected the waiting message back from {a}, got {other:?}"),
        }
    }
    let first = reasons[0].clone();
    assert!(first.contains("could not be fetched") && first.contains("authority exited"), "{first}");
    assert!(reasons.iter().all(|r| *r == first), "different reasons: {reasons:#?}");
    assert_eq!(fetches(&metrics, "failed"), 1, "the member fetched the version more than once");
    assert_eq!(fetches(&metrics, "ok"), 0);
    assert!(member.status().actors.iter().all(|a| a.hash != hash), "an actor of the failed fetch lives");
}
