//! B4 and B5: one-way plugin-to-plugin messages (a Source blasting ticks at a Sink) on one
//! node against a tokio mpsc baseline, then across two nodes, with round trips timed inside a
//! Pinger.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use troupe_actor_abi::message::{Address, Payload};
use troupe_actor_abi::prelude::Typed;
use troupe_node::client::Client;

use super::{bench_plugin, ms};
use crate::harness::{create, load, Env, Node, Raw};
use crate::msgs::{self, Tagged};
use crate::{Figure, Opts};

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

pub(super) async fn b4(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
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

/// What B5 measures on one pair of nodes.
struct Pair {
    /// `n` one-way messages took `d`.
    n: u64,
    d: Duration,
    /// Round trips across the two nodes, and on one node, in µs.
    rtt: Vec<f64>,
    rtt_local: Vec<f64>,
}

/// Two nodes (with the shared secret in `secret_file`: encrypted links), a Source on A blasting
/// a Sink on B, then round trips from a Pinger on A to an Echo on B (and on A).
async fn b5_pair(env: &Env, opts: &Opts, secret_file: Option<&std::path::Path>) -> Result<Pair> {
    let variants = bench_plugin(env)?;
    let mut a = Node::spawn_secret(env, "", None, secret_file, |_| {})?;
    a.ready().await?;
    let mut b = Node::spawn_secret(env, "", Some(a.port), secret_file, |_| {})?;
    b.ready().await?;
    let zip = variants.make("1.0.0")?;
    let mut ca = a.client().await?;
    let mut cb = b.client().await?;
    let hash = load(&mut ca, zip.clone()).await?;
    load(&mut cb, zip).await?;
    let sink = create(&mut cb, &hash, "bench.Sink", None).await?;
    let source = create(&mut ca, &hash, "bench.Source", None).await?;
    if sink.node == source.node {
        bail!("the sink and the source landed on the same node");
    }
    let mut raw = Raw::connect_with(&a.addr(), a.secret.as_ref()).await?;
    let mut total = 0;
    let secs = if opts.quick { 0.5 } else { 2.0 };
    let (n, d) = calibrated(&mut raw, &source, &sink, &mut total, secs, 5_000_000).await?;
    // Round trips: a Pinger on A, an Echo on B, timed inside the Pinger.
    let echo = create(&mut cb, &hash, "bench.Echo", None).await?;
    let pinger = create(&mut ca, &hash, "bench.Pinger", None).await?;
    let rounds = opts.scale(5000, 500) as u64;
    raw.send(&pinger, msgs::Ping { n: 200, target: echo.clone() }.payload()).await?;
    raw.next_within(Duration::from_secs(30)).await?;
    let rtt = round_trips(&mut raw, &pinger, &echo, rounds).await?;
    // The same round trip on one node, for comparison.
    let echo_local = create(&mut ca, &hash, "bench.Echo", None).await?;
    let rtt_local = round_trips(&mut raw, &pinger, &echo_local, rounds).await?;
    Ok(Pair { n, d, rtt, rtt_local })
}

/// B5 plain, then B5.enc: the same on two nodes sharing a secret (every link encrypted with
/// Noise), in the same run, and the ratios.
pub(super) async fn b5(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let plain = b5_pair(env, opts, None).await?;
    let secret_file = env.path("b5-secret");
    std::fs::write(&secret_file, "the bench's shared secret for B5.enc\n")?;
    let enc = b5_pair(env, opts, Some(&secret_file)).await?;
    let rate = |p: &Pair| p.n as f64 / p.d.as_secs_f64();
    let p50 = |p: &Pair| crate::percentile(&p.rtt, 50.0);
    Ok(vec![
        Figure::value("B5", "one-way messages across two nodes (loopback TCP)", rate(&plain), "msg/s")
            .target("≥ 300 000", 300_000.0, false)
            .note(format!("{} msgs in {:.0} ms", plain.n, ms(plain.d))),
        Figure::latency("B5.rtt", "plugin-to-plugin round trip across two nodes", &plain.rtt, "µs").target(
            "p50 ≤ 100 µs",
            100.0,
            true,
        ),
        Figure::latency("B5.rtt1", "same round trip, both actors on one node", &plain.rtt_local, "µs"),
        Figure::value("B5.enc", "B5 with encrypted links (Noise, shared secret)", rate(&enc), "msg/s")
            .note(format!("{} msgs in {:.0} ms", enc.n, ms(enc.d))),
        Figure::latency("B5.enc.rtt", "B5.rtt with encrypted links", &enc.rtt, "µs"),
        Figure::value("B5.enc.ratio", "throughput: encrypted / plain", rate(&enc) / rate(&plain), "×")
            .target("≥ 0.7", 0.7, false),
        Figure::value("B5.enc.rtt.ratio", "p50 round trip: encrypted / plain", p50(&enc) / p50(&plain), "×")
            .target("≤ 1.3", 1.3, true),
    ])
}

/// `rounds` round trips from `pinger` to `echo`, as the Pinger timed them, in µs.
async fn round_trips(raw: &mut Raw, pinger: &Address, echo: &Address, rounds: u64) -> Result<Vec<f64>> {
    raw.send(pinger, msgs::Ping { n: rounds, target: echo.clone() }.payload()).await?;
    let m = raw.next_within(Duration::from_secs(60)).await?;
    let stats = msgs::decode::<msgs::PingStats>(&m.payload).ok_or_else(|| anyhow!("no PingStats: {m:?}"))?;
    Ok(stats.rtt_ns.iter().map(|&n| n as f64 / 1000.0).collect())
}
