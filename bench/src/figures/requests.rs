//! B2 and B3: demo requests (one line in, an Expect and four encoded lines out) on a
//! three-node convention, cold (`troupe app` from process start) and warm (an open client:
//! latency one at a time, then throughput with many in flight).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use troupe_actor_abi::message::{Address, Payload};
use troupe_node::client::Client;

use super::{encoders, ms, us};
use crate::harness::{create, load, status, Env, Node, Raw};
use crate::{Figure, Opts};

/// How long one demo request may take before it counts as lost.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

// ---- three-node convention ----------------------------------------------------------------------

pub(super) struct Three {
    pub(super) leader: Node,
    pub(super) members: Vec<Node>,
}

/// A leader and two members; the encoders' capabilities are spread so that a request's six
/// actors land on all three nodes.
pub(super) async fn three(env: &Env) -> Result<Three> {
    let leader = Node::start(env, "64bit encoder", None).await?;
    let mut members = Vec::new();
    for caps in ["Caesar cipher", "morse"] {
        members.push(Node::start(env, caps, Some(leader.port)).await?);
    }
    // Wait until the leader lists both.
    let mut c = Client::connect(&leader.addr()).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = status(&mut c).await?;
        if st.convention.members.iter().filter(|m| m.alive).count() >= 2 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the members did not register within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Three { leader, members })
}

/// Where the actors went: each node's actor count, leader first (`40/10/10`).
async fn actors_per_node(t3: &Three) -> Result<String> {
    let mut spread = Vec::new();
    for node in std::iter::once(&t3.leader).chain(&t3.members) {
        let mut cc = Client::connect(&node.addr()).await?;
        spread.push(status(&mut cc).await?.actors.len().to_string());
    }
    Ok(spread.join("/"))
}

/// One demo request on `raw`: the time until the Expect and four lines arrived.
pub(super) async fn demo_request(raw: &mut Raw, acceptor: &Address, text: &str) -> Result<Duration> {
    let t = Instant::now();
    raw.send(acceptor, Payload::Text(text.into())).await?;
    let mut lines = 0;
    let mut expect = false;
    while lines < 4 || !expect {
        let m = raw.next_within(REQUEST_TIMEOUT).await?;
        match &m.payload {
            Payload::Text(_) => lines += 1,
            Payload::Typed { tag, .. } if tag == "app/Expect" => expect = true,
            Payload::Typed { tag, .. } if tag == "app/Failed" => bail!("request failed: {:?}", m.payload),
            other => bail!("unexpected message {other:?}"),
        }
    }
    Ok(t.elapsed())
}

// ---- B2 -----------------------------------------------------------------------------------------

pub(super) async fn b2(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let n = opts.scale(10, 3);
    let variants = encoders(env)?;
    let t3 = three(env).await?;
    let mut c = Client::connect(&t3.leader.addr()).await?;
    let mut cold = Vec::new();
    for i in 0..n {
        let hash = load(&mut c, variants.make(&format!("3.0.{i}"))?).await?;
        cold.push(ms(cold_request(env, t3.leader.port, &hash)?));
    }
    let spread = actors_per_node(&t3).await?;
    Ok(vec![Figure::latency("B2", "cold request, 3 nodes, `troupe app` start to last line", &cold, "ms")
        .target("p50 ≤ 30 ms", 30.0, true)
        .note(format!("actors per node {spread}"))])
}

/// `troupe app HASH` with one line on its stdin: process start to its exit after four lines.
fn cold_request(env: &Env, port: u16, hash: &str) -> Result<Duration> {
    let t = Instant::now();
    let mut child = Command::new(env.troupe())
        .args(["app", hash, "--port", &port.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        // Dropped at the end of the block: the app sees end of input after the line.
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        stdin.write_all(b"hello\n")?;
    }
    let out = child.wait_with_output()?;
    let d = t.elapsed();
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    if !out.status.success() || lines != 4 {
        bail!("troupe app gave {lines} lines: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(d)
}

// ---- B3 -----------------------------------------------------------------------------------------

/// What the throughput run did: requests answered, requests failed, and the rate.
pub(super) struct Throughput {
    pub(super) total: usize,
    pub(super) failed: usize,
    pub(super) rps: f64,
}

pub(super) async fn b3(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let n = opts.scale(1000, 100);
    let variants = encoders(env)?;
    let t3 = three(env).await?;
    let mut c = Client::connect(&t3.leader.addr()).await?;
    let hash = load(&mut c, variants.make("4.0.0")?).await?;
    let acceptor = create(&mut c, &hash, "app.Acceptor", Some(format!("Acceptor:{hash}"))).await?;
    let mut raw = Raw::connect(&t3.leader.addr()).await?;
    for _ in 0..50 {
        demo_request(&mut raw, &acceptor, "hello").await?;
    }
    let mut lat = Vec::new();
    for _ in 0..n {
        lat.push(us(demo_request(&mut raw, &acceptor, "hello").await?));
    }
    let secs = if opts.quick { 1.0 } else { 3.0 };
    let Throughput { total, failed, rps } = throughput(&t3.leader.addr(), &acceptor, secs).await?;
    let spread = actors_per_node(&t3).await?;
    Ok(vec![
        Figure::latency("B3", "warm request, in-process client, send to 4th line", &lat, "µs")
            .target("p50 ≤ 300 µs", 300.0, true)
            .note(format!("actors per node {spread}")),
        Figure::value("B3.rps", "warm requests/s, 64 in flight, 3 nodes", rps, "req/s")
            .target("≥ 20 000", 20_000.0, false)
            .note(format!("{total} requests in {secs} s, {failed} failed")),
    ])
}

/// Throughput for `secs`: 8 connections with 8 requests in flight each; requests/s counted
/// until the last answer of the last request sent in time.
pub(super) async fn throughput(addr: &str, acceptor: &Address, secs: f64) -> Result<Throughput> {
    let (conns, depth) = (8usize, 8usize);
    let mut tasks = Vec::new();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    for _ in 0..conns {
        let raw = Raw::connect(addr).await?;
        tasks.push(tokio::spawn(pipelined(raw, acceptor.clone(), end, depth)));
    }
    let mut total = 0usize;
    let mut failed = 0usize;
    let mut last = start;
    for t in tasks {
        let (done, f, at) = t.await??;
        total += done;
        failed += f;
        last = last.max(at);
    }
    let rps = total as f64 / (last - start).as_secs_f64();
    Ok(Throughput { total, failed, rps })
}

/// One connection keeping `depth` requests in flight until `end`, then waiting for the rest:
/// requests answered, requests failed, and when the last one came back.
async fn pipelined(
    mut raw: Raw,
    acceptor: Address,
    end: Instant,
    depth: usize,
) -> Result<(usize, usize, Instant)> {
    let (mut sent, mut lines, mut failed) = (0usize, 0usize, 0usize);
    loop {
        let done = lines / 4;
        let now = Instant::now();
        if now < end {
            let mut fed = false;
            while sent - done < depth {
                raw.feed(&acceptor, Payload::Text("hello".into())).await?;
                sent += 1;
                fed = true;
            }
            if fed {
                raw.flush().await?;
            }
        } else if done + failed >= sent {
            break;
        }
        let m = raw.next_within(REQUEST_TIMEOUT).await?;
        match &m.payload {
            Payload::Text(_) => lines += 1,
            Payload::Typed { tag, .. } if tag == "app/Failed" => failed += 1,
            _ => {}
        }
    }
    Ok((lines / 4, failed, Instant::now()))
}
