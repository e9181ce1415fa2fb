//! The figures. Each group function returns its figures or an error; [`run_all`] turns an
//! error into an error figure and goes on with the next group.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use troupe_actor_abi::message::{Address, Payload};
use troupe_node::client::Client;
use troupe_node::protocol::{Request, Response};

use crate::harness::{create, load, maps, rss_kib, status, Env, Node, Raw, ZipVariants};
use crate::msgs::{self, Tagged};
use crate::{percentile, Figure, Opts};
use troupe_actor_abi::prelude::Typed;

/// How long one demo request may take before it counts as lost.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The encoders' capabilities, all on one node.
const ALL_CAPS: &str = "64bit encoder,Caesar cipher,morse";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs every group `opts` selects.
pub async fn run_all(env: &Env, opts: &Opts) -> Vec<Figure> {
    let mut figs = Vec::new();
    macro_rules! group {
        ($id:literal, $what:literal, $f:expr) => {
            if opts.wants($id) {
                eprintln!("== {} {}", $id, $what);
                let t = Instant::now();
                figs.extend(guard($id, $what, $f).await);
                eprintln!("   {} took {:.1} s", $id, t.elapsed().as_secs_f64());
            }
        };
    }
    group!("B1", "load", b1(env, opts));
    group!("B2", "cold request", b2(env, opts));
    group!("B3", "warm request", b3(env, opts));
    group!("B4", "one-way messages, one node", b4(env, opts));
    group!("B5", "messages across two nodes", b5(env, opts));
    group!("B6", "hot swap under load", b6(env, opts));
    group!("B7", "memory", b7(env, opts));
    group!("B8", "scale", b8(env, opts));
    figs
}

async fn guard(id: &str, what: &str, f: impl Future<Output = Result<Vec<Figure>>>) -> Vec<Figure> {
    match f.await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("   {id} failed: {e:#}");
            vec![Figure::error(id, what, format!("{e:#}"))]
        }
    }
}

/// The encoders zip and its variants.
fn encoders(env: &Env) -> Result<ZipVariants> {
    let zip = env.pack("encoders.zip", "troupe_encoders", true)?;
    ZipVariants::new(&zip)
}

/// The bench plugin (stripped) and its variants.
fn bench_plugin(env: &Env) -> Result<ZipVariants> {
    let zip = env.pack("bench.zip", "troupe_bench_plugin", true)?;
    ZipVariants::new(&zip)
}

// ---- B1 -----------------------------------------------------------------------------------------

async fn b1(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let n = opts.scale(50, 10);
    let node = Node::start(env, ALL_CAPS, None).await?;
    let mut figs = Vec::new();
    // As `troupe pack` writes it (stripped, zstd), then with the library as `make build`
    // leaves it (release with line tables: a 6.6 MB library; `troupe pack --no-strip`).
    for (suffix, strip, version) in [("", true, 1), (".unstripped", false, 2)] {
        let zip = env.pack(&format!("encoders{suffix}.zip"), "troupe_encoders", strip)?;
        let (zip_kib, variants) = (std::fs::metadata(&zip)?.len() / 1024, ZipVariants::new(&zip)?);
        let mut cli = Vec::new();
        let mut floor = Vec::new();
        for i in 0..n {
            let zip = env.path(&format!("b1-{version}-{i}.zip"));
            std::fs::write(&zip, variants.make(&format!("{version}.0.{i}"))?)?;
            let t = Instant::now();
            let out = std::process::Command::new(env.troupe())
                .arg("load")
                .arg(node.port.to_string())
                .arg(&zip)
                .env("RUST_LOG", "warn")
                .output()?;
            let d = t.elapsed();
            let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !out.status.success() || hash.len() != 64 {
                bail!("troupe load failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            cli.push(ms(d));
            if suffix.is_empty() {
                // The floor of any CLI command: process start, connect, hello, one request.
                let t = Instant::now();
                let out = std::process::Command::new(env.troupe())
                    .args(["status", &node.port.to_string(), "--json"])
                    .stdout(std::process::Stdio::null())
                    .output()?;
                if out.status.success() {
                    floor.push(ms(t.elapsed()));
                }
            }
        }
        let mut c = Client::connect(&node.addr()).await?;
        let mut inside = Vec::new();
        for i in 0..n {
            let zip = variants.make(&format!("{version}.1.{i}"))?;
            let t = Instant::now();
            load(&mut c, zip).await?;
            inside.push(ms(t.elapsed()));
        }
        let (lib, targets) = if strip {
            ("as `troupe pack` writes it (stripped, zstd)", true)
        } else {
            ("unstripped library (`troupe pack --no-strip`, line tables)", false)
        };
        let cli_fig = Figure::latency(
            &format!("B1{suffix}"),
            &format!("`troupe load` encoders zip {lib}, process start to hash printed"),
            &cli,
            "ms",
        )
        .note(format!("{n} distinct zips of {zip_kib} KiB"));
        let node_fig = Figure::latency(
            &format!("B1{suffix}.node"),
            &format!("load inside the node, zip {lib} (in-process client, request to reply)"),
            &inside,
            "ms",
        );
        if targets {
            figs.push(cli_fig.target("p50 ≤ 8 ms", 8.0, true));
            figs.push(node_fig.target("p50 ≤ 3 ms", 3.0, true));
        } else {
            figs.push(cli_fig);
            figs.push(node_fig);
        }
        if !floor.is_empty() {
            figs.push(Figure::latency(
                "B1.floor",
                "`troupe status` (CLI floor: exec + connect + hello + 1 request)",
                &floor,
                "ms",
            ));
        }
    }
    Ok(figs)
}

// ---- three-node convention for B2/B3 ---------------------------------------------------------------

struct Three {
    leader: Node,
    members: Vec<Node>,
}

/// A leader and two members; the encoders' capabilities are spread so that a request's six
/// actors land on all three nodes.
async fn three(env: &Env) -> Result<Three> {
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
    let _ = &members;
    Ok(Three { leader, members })
}

async fn b2(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let n = opts.scale(10, 3);
    let variants = encoders(env)?;
    let t3 = three(env).await?;
    let mut c = Client::connect(&t3.leader.addr()).await?;
    let mut cold = Vec::new();
    for i in 0..n {
        let hash = load(&mut c, variants.make(&format!("3.0.{i}"))?).await?;
        let t = Instant::now();
        let mut child = std::process::Command::new(env.troupe())
            .args(["app", &hash, "--port", &t3.leader.port.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
            stdin.write_all(b"hello\n")?;
        }
        let out = child.wait_with_output()?;
        let d = t.elapsed();
        let lines = String::from_utf8_lossy(&out.stdout).lines().count();
        if !out.status.success() || lines != 4 {
            bail!("troupe app gave {lines} lines: {}", String::from_utf8_lossy(&out.stderr));
        }
        cold.push(ms(d));
    }
    // Where did the actors go?
    let mut spread = Vec::new();
    for node in std::iter::once(&t3.leader).chain(&t3.members) {
        let mut cc = Client::connect(&node.addr()).await?;
        spread.push(status(&mut cc).await?.actors.len().to_string());
    }
    Ok(vec![Figure::latency("B2", "cold request, 3 nodes, `troupe app` start to last line", &cold, "ms")
        .target("p50 ≤ 30 ms", 30.0, true)
        .note(format!("actors per node {}", spread.join("/")))])
}

// ---- B3 -----------------------------------------------------------------------------------------

/// One demo request on `raw`: the time until the Expect and four lines arrived.
async fn demo_request(raw: &mut Raw, acceptor: &Address, text: &str) -> Result<Duration> {
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

async fn b3(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
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
    // Throughput: 8 connections with 8 requests in flight each.
    let secs = if opts.quick { 1.0 } else { 3.0 };
    let (conns, depth) = (8usize, 8usize);
    let mut tasks = Vec::new();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    for _ in 0..conns {
        let mut raw = Raw::connect(&t3.leader.addr()).await?;
        let acceptor = acceptor.clone();
        tasks.push(tokio::spawn(async move {
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
            anyhow::Ok((lines / 4, failed, Instant::now()))
        }));
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
    let mut spread = Vec::new();
    for node in std::iter::once(&t3.leader).chain(&t3.members) {
        let mut cc = Client::connect(&node.addr()).await?;
        spread.push(status(&mut cc).await?.actors.len().to_string());
    }
    Ok(vec![
        Figure::latency("B3", "warm request, in-process client, send to 4th line", &lat, "µs")
            .target("p50 ≤ 300 µs", 300.0, true)
            .note(format!("actors per node {}", spread.join("/"))),
        Figure::value("B3.rps", "warm requests/s, 64 in flight, 3 nodes", rps, "req/s")
            .target("≥ 20 000", 20_000.0, false)
            .note(format!("{total} requests in {secs} s, {failed} failed")),
    ])
}

// ---- B4 / B5 --------------------------------------------------------------------------------------

/// Blasts `n` ticks from `source` to `sink`; returns the time until the sink counted them all
/// (`total` = the sink's count after this blast).
async fn blast(raw: &mut Raw, source: &Address, sink: &Address, n: u64, total: u64) -> Result<Duration> {
    raw.send(sink, msgs::Expect { total, reply_to: raw.me.clone() }.payload()).await?;
    let t = Instant::now();
    raw.send(source, msgs::Blast { n, target: sink.clone() }.payload()).await?;
    let m = raw.next_within(Duration::from_secs(120)).await?;
    let d = t.elapsed();
    match msgs::decode::<msgs::Done>(&m.payload) {
        Some(done) if done.count >= total => Ok(d),
        _ => bail!("unexpected answer {:?}", m.payload),
    }
}

/// Chooses a count that takes about `secs` at the rate of a 20 000-message probe, capped.
async fn calibrated(
    raw: &mut Raw,
    source: &Address,
    sink: &Address,
    total: &mut u64,
    secs: f64,
    cap: u64,
) -> Result<(u64, Duration)> {
    let probe = 20_000;
    *total += probe;
    let d = blast(raw, source, sink, probe, *total).await?;
    let rate = probe as f64 / d.as_secs_f64();
    let n = ((rate * secs) as u64).clamp(probe, cap);
    *total += n;
    let d = blast(raw, source, sink, n, *total).await?;
    Ok((n, d))
}

/// The baseline: the same msgpack bytes (address and payload, as the SDK encodes them) through
/// a tokio mpsc channel between two tasks on a 2-worker runtime, decoded at the far end.
fn mpsc_baseline(n: u64) -> Result<f64> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Vec<u8>, Vec<u8>)>();
        let target = Address { node: "127.0.0.1:65000".into(), id: 42 };
        let t = Instant::now();
        let producer = tokio::spawn(async move {
            for i in 0..n {
                let to = troupe_actor_abi::message::encode(&target);
                let msg = troupe_actor_abi::message::encode(&msgs::Tick { n: i }.payload());
                if tx.send((to, msg)).is_err() {
                    break;
                }
            }
        });
        let mut count = 0u64;
        while let Some((to, msg)) = rx.recv().await {
            let _to: Address = troupe_actor_abi::message::decode(&to)?;
            let p: Payload = troupe_actor_abi::message::decode(&msg)?;
            if matches!(p, Payload::Typed { ref tag, .. } if tag == msgs::Tick::TAG) {
                count += 1;
            }
        }
        producer.await?;
        if count != n {
            bail!("the baseline lost messages");
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    })
}

async fn b4(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let variants = bench_plugin(env)?;
    let node = Node::start(env, "", None).await?;
    let mut c = Client::connect(&node.addr()).await?;
    let hash = load(&mut c, variants.make("1.0.0")?).await?;
    let sink = create(&mut c, &hash, "bench.Sink", None).await?;
    let source = create(&mut c, &hash, "bench.Source", None).await?;
    let mut raw = Raw::connect(&node.addr()).await?;
    let mut total = 0;
    let secs = if opts.quick { 0.5 } else { 2.0 };
    let (n, d) = calibrated(&mut raw, &source, &sink, &mut total, secs, 10_000_000).await?;
    let rate = n as f64 / d.as_secs_f64();
    let base = tokio::task::spawn_blocking(move || mpsc_baseline(n)).await??;
    Ok(vec![
        Figure::value("B4", "one-way plugin-to-plugin messages, one node", rate, "msg/s")
            .target("≥ 2 000 000", 2e6, false)
            .note(format!("{n} msgs in {:.0} ms", ms(d))),
        Figure::value("B4.mpsc", "baseline: tokio mpsc, same msgpack bytes", base, "msg/s"),
        Figure::value("B4.ratio", "troupe / mpsc", rate / base, "×").target("≥ 0.3", 0.3, false),
    ])
}

async fn b5(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let variants = bench_plugin(env)?;
    let a = Node::start(env, "", None).await?;
    let b = Node::start(env, "", Some(a.port)).await?;
    let zip = variants.make("1.0.0")?;
    let mut ca = Client::connect(&a.addr()).await?;
    let mut cb = Client::connect(&b.addr()).await?;
    let hash = load(&mut ca, zip.clone()).await?;
    load(&mut cb, zip).await?;
    let sink = create(&mut cb, &hash, "bench.Sink", None).await?;
    let source = create(&mut ca, &hash, "bench.Source", None).await?;
    if sink.node == source.node {
        bail!("the sink and the source landed on the same node");
    }
    let mut raw = Raw::connect(&a.addr()).await?;
    let mut total = 0;
    let secs = if opts.quick { 0.5 } else { 2.0 };
    let (n, d) = calibrated(&mut raw, &source, &sink, &mut total, secs, 5_000_000).await?;
    let rate = n as f64 / d.as_secs_f64();
    // Round trips: a Pinger on A, an Echo on B, timed inside the Pinger.
    let echo = create(&mut cb, &hash, "bench.Echo", None).await?;
    let pinger = create(&mut ca, &hash, "bench.Pinger", None).await?;
    let rounds = opts.scale(5000, 500) as u64;
    raw.send(&pinger, msgs::Ping { n: 200, target: echo.clone() }.payload()).await?;
    raw.next_within(Duration::from_secs(30)).await?;
    raw.send(&pinger, msgs::Ping { n: rounds, target: echo.clone() }.payload()).await?;
    let m = raw.next_within(Duration::from_secs(60)).await?;
    let stats = msgs::decode::<msgs::PingStats>(&m.payload).ok_or_else(|| anyhow!("no PingStats: {m:?}"))?;
    let rtt: Vec<f64> = stats.rtt_ns.iter().map(|&n| n as f64 / 1000.0).collect();
    // The same round trip on one node, for comparison.
    let echo_local = create(&mut ca, &hash, "bench.Echo", None).await?;
    raw.send(&pinger, msgs::Ping { n: rounds, target: echo_local }.payload()).await?;
    let m = raw.next_within(Duration::from_secs(60)).await?;
    let stats = msgs::decode::<msgs::PingStats>(&m.payload).ok_or_else(|| anyhow!("no PingStats: {m:?}"))?;
    let rtt_local: Vec<f64> = stats.rtt_ns.iter().map(|&n| n as f64 / 1000.0).collect();
    Ok(vec![
        Figure::value("B5", "one-way messages across two nodes (loopback TCP)", rate, "msg/s")
            .target("≥ 300 000", 300_000.0, false)
            .note(format!("{n} msgs in {:.0} ms", ms(d))),
        Figure::latency("B5.rtt", "plugin-to-plugin round trip across two nodes", &rtt, "µs").target(
            "p50 ≤ 100 µs",
            100.0,
            true,
        ),
        Figure::latency("B5.rtt1", "same round trip, both actors on one node", &rtt_local, "µs"),
    ])
}

// ---- B6 -----------------------------------------------------------------------------------------

async fn b6(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let rate = if opts.quick { 1000.0 } else { 5000.0 };
    let run = Duration::from_secs(10);
    let (swap_at, unload_at) = (Duration::from_secs(3), Duration::from_secs(5));
    let variants = encoders(env)?;
    let node = Node::start(env, ALL_CAPS, None).await?;
    let mut c = Client::connect(&node.addr()).await?;
    let v1 = load(&mut c, variants.make("6.0.1")?).await?;
    let a1 = create(&mut c, &v1, "app.Acceptor", Some(format!("Acceptor:{v1}"))).await?;
    let (tx, rx) = tokio::sync::watch::channel(a1.clone());
    // Closed-loop connections, each paced to its share of the rate.
    let conns = 32usize;
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for k in 0..conns {
        let mut raw = Raw::connect(&node.addr()).await?;
        demo_request(&mut raw, &a1, "warm").await?;
        let rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(f64, Option<f64>)> = Vec::new();
            let mut slot = start + interval.mul_f64(k as f64 / conns as f64);
            while slot < start + run {
                tokio::time::sleep_until(slot.into()).await;
                let acceptor = rx.borrow().clone();
                let at = (Instant::now() - start).as_secs_f64();
                match demo_request(&mut raw, &acceptor, "hello").await {
                    Ok(d) => out.push((at, Some(us(d)))),
                    Err(_) => {
                        out.push((at, None));
                        // A lost reply may still arrive: start afresh on a new connection.
                        if let Ok(r) = Raw::connect(&raw.me.node).await {
                            raw = r;
                        }
                    }
                }
                slot += interval;
            }
            out
        }));
    }
    tokio::time::sleep_until((start + swap_at).into()).await;
    let v2 = load(&mut c, variants.make("6.0.2")?).await?;
    let a2 = create(&mut c, &v2, "app.Acceptor", Some(format!("Acceptor:{v2}"))).await?;
    let _ = tx.send(a2);
    let swapped = start.elapsed();
    tokio::time::sleep_until((start + unload_at).into()).await;
    let t_unload = Instant::now();
    let unload = c.request(Request::Unload { hash: v1.clone(), grace_ms: Some(1000) }).await;
    let unload_reply = t_unload.elapsed();
    let unload = unload?;
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await?);
    }
    let before: Vec<f64> =
        samples.iter().filter(|s| s.0 < swap_at.as_secs_f64()).filter_map(|s| s.1).collect();
    let during: Vec<f64> = samples
        .iter()
        .filter(|s| s.0 >= swap_at.as_secs_f64() && s.0 < unload_at.as_secs_f64() + 1.0)
        .filter_map(|s| s.1)
        .collect();
    let lost = samples.iter().filter(|s| s.1.is_none()).count();
    let achieved = samples.len() as f64 / run.as_secs_f64();
    // The unload's record: drain and close times.
    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = loop {
        let st = status(&mut c).await?;
        if let Some(g) = st.gone.iter().find(|g| g.hash == v1) {
            break Some(g.clone());
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let p99b = percentile(&before, 99.0);
    let p99d = percentile(&during, 99.0);
    let mut figs = vec![
        Figure::value("B6.lost", "lost or failed requests during 10 s with a swap", lost as f64, "requests")
            .target("0", 0.0, true)
            .note(format!(
                "{} requests, {achieved:.0}/s achieved of {rate:.0}/s; v2 active at {:.2} s",
                samples.len(),
                swapped.as_secs_f64()
            )),
        Figure::latency("B6.before", "request latency before the swap (0–3 s)", &before, "µs"),
        Figure::latency("B6.during", "request latency during the swap (3–6 s)", &during, "µs"),
        Figure::value("B6.p99x", "p99 during / p99 before", p99d / p99b, "×").target("≤ 2", 2.0, true),
        Figure::value("B6.unload", "unload request to reply (grace 1 s)", ms(unload_reply), "ms")
            .note(format!("{unload:?}").chars().take(120).collect::<String>()),
    ];
    match gone {
        Some(g) => {
            figs.push(Figure::value(
                "B6.dlclose",
                "last actor exit to dlclose + files deleted (node's gone[].unload_ms)",
                g.unload_ms,
                "ms",
            ));
            figs.push(Figure::value(
                "B6.drain",
                "unload request to dlclose (node's gone[].drain_ms)",
                g.drain_ms,
                "ms",
            ));
        }
        None => figs.push(Figure::error(
            "B6.dlclose",
            "unload to dlclose",
            "v1 never appeared in status.gone".into(),
        )),
    }
    Ok(figs)
}

// ---- B7 -----------------------------------------------------------------------------------------

async fn settle_rss(pid: u32) -> Result<u64> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    rss_kib(pid)
}

async fn b7(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let variants = bench_plugin(env)?;
    let mut figs = Vec::new();
    // Idle node, per version, per actor.
    {
        let node = Node::start(env, "", None).await?;
        let pid = node.pid();
        let idle = settle_rss(pid).await?;
        figs.push(Figure::value("B7.idle", "idle node RSS", idle as f64 / 1024.0, "MiB").target(
            "≤ 10 MiB",
            10.0,
            true,
        ));
        let mut c = Client::connect(&node.addr()).await?;
        let nv = 20;
        let mut hashes = Vec::new();
        for i in 0..nv {
            hashes.push(load(&mut c, variants.make(&format!("7.0.{i}"))?).await?);
        }
        let loaded = settle_rss(pid).await?;
        figs.push(
            Figure::value(
                "B7.version",
                "RSS per loaded version (bench plugin, stripped)",
                (loaded - idle) as f64 / nv as f64,
                "KiB",
            )
            .note(format!("{nv} versions")),
        );
        let hash = &hashes[0];
        let spawner = create(&mut c, hash, "bench.Spawner", None).await?;
        let mut raw = Raw::connect(&node.addr()).await?;
        let n = opts.scale(100_000, 10_000) as u64;
        let before = settle_rss(pid).await?;
        let t = Instant::now();
        raw.send(&spawner, msgs::Spawn { n }.payload()).await?;
        let m = raw.next_within(Duration::from_secs(300)).await?;
        let spawn_time = t.elapsed();
        if msgs::decode::<msgs::Done>(&m.payload).is_none() {
            bail!("the spawner answered {:?}", m.payload);
        }
        let after = settle_rss(pid).await?;
        let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
        figs.push(
            Figure::value("B7.actor", "RSS per actor (bench.Sink, idle)", per, "B")
                .target("≤ 1024 B", 1024.0, true)
                .note(format!(
                    "{n} actors created in {:.0} ms ({:.0}/s)",
                    ms(spawn_time),
                    n as f64 / spawn_time.as_secs_f64()
                )),
        );
    }
    // Load/unload cycles.
    {
        let node = Node::start(env, "", None).await?;
        let pid = node.pid();
        let mut c = Client::connect(&node.addr()).await?;
        let cycles = opts.scale(200, 30);
        let store = node.state.display().to_string();
        // One warm-up cycle: the first load maps what every later one reuses.
        cycle(&mut c, &variants, 0).await?;
        let rss0 = settle_rss(pid).await?;
        let maps0 = maps(pid)?.len();
        let t = Instant::now();
        for i in 1..=cycles {
            cycle(&mut c, &variants, i).await.with_context(|| format!("cycle {i}"))?;
        }
        let per_cycle = ms(t.elapsed()) / cycles as f64;
        let rss1 = settle_rss(pid).await?;
        let m1 = maps(pid)?;
        // Version libraries are memory files named `troupe:<hash>-<gen>:<file>` (or, where the
        // kernel refuses those, files in the store).
        let left = m1.iter().filter(|l| l.contains("/memfd:troupe:") || l.contains(&store)).count();
        figs.push(
            Figure::value(
                "B7.cycles",
                "RSS growth after load/unload cycles",
                (rss1 as f64 - rss0 as f64) / 1024.0,
                "MiB",
            )
            .target("≤ +1 MiB", 1.0, true)
            .note(format!(
                "{cycles} cycles, {per_cycle:.1} ms each; mappings {} → {}",
                maps0,
                m1.len()
            )),
        );
        figs.push(
            Figure::value(
                "B7.maps",
                "version library mappings left after the cycles",
                left as f64,
                "mappings",
            )
            .target("0", 0.0, true),
        );
    }
    Ok(figs)
}

/// Loads a fresh variant, creates one actor, unloads it and waits until it is closed.
async fn cycle(c: &mut Client, variants: &ZipVariants, i: usize) -> Result<()> {
    let hash = load(c, variants.make(&format!("8.0.{i}"))?).await?;
    create(c, &hash, "bench.Echo", None).await?;
    match c.request(Request::Unload { hash: hash.clone(), grace_ms: Some(0) }).await? {
        Response::Unloaded { .. } => {}
        other => bail!("unexpected answer to unload: {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(c).await?.versions.iter().any(|v| v.hash == hash) {
        if Instant::now() > deadline {
            bail!("version {hash} was not unloaded within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

// ---- B8 -----------------------------------------------------------------------------------------

async fn b8(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let mut figs = Vec::new();
    figs.extend(guard("B8.versions", "500 versions", b8_versions(env, opts)).await);
    figs.extend(guard("B8.join", "16 nodes join", b8_join(env, opts)).await);
    Ok(figs)
}

async fn b8_versions(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let n = opts.scale(500, 100);
    let variants = bench_plugin(env)?;
    let node = Node::start(env, "", None).await?;
    let mut c = Client::connect(&node.addr()).await?;
    let mut times = Vec::new();
    let t = Instant::now();
    for i in 0..n {
        let zip = variants.make(&format!("9.0.{i}"))?;
        let t = Instant::now();
        load(&mut c, zip).await.with_context(|| format!("load {}", i + 1))?;
        times.push(ms(t.elapsed()));
    }
    let total = t.elapsed();
    let first = &times[..50.min(n)];
    let last = &times[n.saturating_sub(50)..];
    let ratio = percentile(last, 50.0) / percentile(first, 50.0);
    let rss = rss_kib(node.pid())? as f64 / 1024.0;
    let threads = std::fs::read_dir(format!("/proc/{}/task", node.pid()))?.count();
    Ok(vec![
        Figure::latency("B8.first50", &format!("load time, first 50 of {n} versions"), first, "ms"),
        Figure::latency("B8.last50", &format!("load time, last 50 of {n} versions"), last, "ms"),
        Figure::value("B8.flat", "p50 last 50 / p50 first 50", ratio, "×")
            .target("flat (≤ 1.5)", 1.5, true)
            .note(format!(
                "{n} loads in {:.1} s; then RSS {rss:.0} MiB, {threads} threads",
                total.as_secs_f64()
            )),
    ])
}

/// Polls the leader's status until it no longer lists `member` alive; the time since `t`.
async fn until_not_alive(c: &mut Client, member: &str, t: Instant) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = status(c).await?;
        if !st.convention.members.iter().any(|m| m.node == member && m.alive) {
            return Ok(t.elapsed());
        }
        if Instant::now() > deadline {
            bail!("{member} was still listed alive after 20 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn b8_join(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let n = opts.scale(16, 6);
    let leader = Node::start(env, "", None).await?;
    let mut c = Client::connect(&leader.addr()).await?;
    let t = Instant::now();
    let mut members = Vec::new();
    for _ in 1..n {
        members.push(Node::spawn(env, "", Some(leader.port))?);
    }
    let spawned = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    let joined = loop {
        let st = status(&mut c).await?;
        if st.convention.members.iter().filter(|m| m.alive).count() >= n - 1 {
            break t.elapsed();
        }
        if Instant::now() > deadline {
            bail!("only {} of {} members registered within 30 s", st.convention.members.len(), n - 1);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // The floor: how long until each member process answers at all.
    let mut ready = Duration::ZERO;
    for m in &mut members {
        m.ready().await?;
        ready = ready.max(t.elapsed());
    }
    let mut figs =
        vec![Figure::value("B8.join", &format!("{n} nodes: spawn to leader listing all"), ms(joined), "ms")
            .target("≤ 1 s", 1000.0, true)
            .note(format!(
                "spawning took {:.0} ms; last member answering hello at ≤ {:.0} ms",
                ms(spawned),
                ms(ready)
            ))];
    // Failure detection with default heartbeat and dead-after: a killed process (its links
    // close and its port refuses: lost at once), then a silent one (SIGSTOP, as a hung host:
    // only the heartbeat can tell).
    let victim = members.pop().ok_or_else(|| anyhow!("no members"))?;
    let t = Instant::now();
    let mut victim = victim;
    victim.kill();
    let detected = until_not_alive(&mut c, &victim.addr(), t).await?;
    figs.push(
        Figure::value(
            "B8.detect",
            "SIGKILLed member: kill to leader no longer listing it alive",
            ms(detected),
            "ms",
        )
        .target("≤ 3 s", 3000.0, true)
        .note("defaults: heartbeat 1 s, dead-after 3 s"),
    );
    let silent = members.pop().ok_or_else(|| anyhow!("no members"))?;
    // SAFETY: kill(2) with a pid we spawned and a valid signal.
    unsafe { libc::kill(silent.pid() as i32, libc::SIGSTOP) };
    let t = Instant::now();
    let detected = until_not_alive(&mut c, &silent.addr(), t).await;
    // SAFETY: as above; the node is killed when `silent` drops.
    unsafe { libc::kill(silent.pid() as i32, libc::SIGCONT) };
    figs.push(
        Figure::value(
            "B8.silent",
            "SIGSTOPped member (alive, silent): stop to leader no longer listing it alive",
            ms(detected?),
            "ms",
        )
        .note("the heartbeat path: between dead-after − heartbeat and dead-after (2–3 s)"),
    );
    drop(members);
    Ok(figs)
}
