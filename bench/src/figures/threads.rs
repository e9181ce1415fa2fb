//! B9: a version's threads. Head-of-line blocking (while one actor spins in a 2 s handler,
//! how long does another actor of the same version take to echo?) and scaling (a CPU-bound
//! mix over 64 actors of one version, on one thread against as many threads as cores).
//!
//! Both drive `bench.Spinner`s from an in-process client on the node itself, so that what is
//! measured is the version's threads and not the links between nodes.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use troupe_actor_abi::message::{Address, Payload};
use troupe_node::client::Client;

use super::{bench_plugin, guard, ms};
use crate::harness::{create, load, Env, Node, Raw, ZipVariants};
use crate::msgs::{self, Tagged};
use crate::{Figure, Opts};

/// How long actor A holds its thread: long enough that an echo stuck behind it is plain to see
/// (it takes the whole spin), short enough to keep the group quick.
const SPIN_MS: u64 = 2000;

/// Actors of the CPU-bound mix, one request in flight each: many more than the cores, so that
/// every thread a version may run always has an actor with work.
const ACTORS: usize = 64;

/// What one `Work` should cost: long enough that what a request costs besides the work (the
/// bench client, the node's connection and routing: 50–100 µs on this machine, on the same two
/// cores as the version's threads) is a small share of it, short enough that 64 of them queued
/// on one thread take well under a second (256 ms).
const WORK_TIME: Duration = Duration::from_millis(4);

/// How long any one answer may take on a busy 2-core machine (the spin included).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn b9(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let variants = bench_plugin(env)?;
    let mut figs = Vec::new();
    figs.extend(guard("B9.hol", "head-of-line blocking", hol(env, &variants)).await);
    figs.extend(guard("B9.scale", "CPU-bound mix over 64 actors", scale(env, opts, &variants)).await);
    Ok(figs)
}

/// A node started with `threads` per version (none: the node's default), the bench plugin
/// loaded as `version`; with a control client and the version's hash.
async fn plugin_node(
    env: &Env,
    variants: &ZipVariants,
    version: &str,
    threads: Option<usize>,
) -> Result<(Node, Client, String)> {
    let node = Node::start_with(env, "", None, |a| a.version_threads = threads).await?;
    let mut c = Client::connect(&node.addr()).await?;
    let hash = load(&mut c, variants.make(version)?).await?;
    Ok((node, c, hash))
}

/// The cores this process may use, at least 2 (so that the scaling run has a second thread).
fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).max(2)
}

// ---- B9.hol -------------------------------------------------------------------------------------

async fn hol(env: &Env, variants: &ZipVariants) -> Result<Vec<Figure>> {
    let (node, mut c, hash) = plugin_node(env, variants, "10.0.0", None).await?;
    let a = create(&mut c, &hash, "bench.Spinner", None).await?;
    let b = create(&mut c, &hash, "bench.Spinner", None).await?;
    let mut raw = Raw::connect(&node.addr()).await?;
    for _ in 0..20 {
        echo(&mut raw, &b).await?;
    }
    let sent = Instant::now();
    raw.send(&a, msgs::Spin { ms: SPIN_MS }.payload()).await?;
    let (rtts, spun) = echoes_until_spun(&mut raw, &b, sent).await?;
    let f = Figure::latency(
        "B9.hol",
        &format!("echo round trip to actor B while actor A of the same version spins {SPIN_MS} ms"),
        &rtts,
        "ms",
    )
    .target_p99("p99 ≤ 50 ms", 50.0, true)
    .note(format!(
        "n = echoes sent one at a time until A's Spun arrived, after {:.0} ms; default threads ({} cores)",
        ms(spun),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    ));
    Ok(vec![f])
}

/// One echo round trip to `b`, with no other message expected meanwhile.
async fn echo(raw: &mut Raw, b: &Address) -> Result<Duration> {
    let t = Instant::now();
    raw.send(b, Payload::Text("echo".into())).await?;
    let m = raw.next_within(REPLY_TIMEOUT).await?;
    match m.payload {
        Payload::Text(_) => Ok(t.elapsed()),
        other => bail!("unexpected answer to an echo: {other:?}"),
    }
}

/// Echo round trips to `b`, one after the other, until the Spun (its Spin sent at `sent`)
/// arrives; the echo in flight then is the last. Each round trip in ms, and when the Spun
/// arrived.
async fn echoes_until_spun(raw: &mut Raw, b: &Address, sent: Instant) -> Result<(Vec<f64>, Duration)> {
    let mut rtts = Vec::new();
    let mut spun = None;
    loop {
        let t = Instant::now();
        raw.send(b, Payload::Text("echo".into())).await?;
        loop {
            let m = raw.next_within(REPLY_TIMEOUT).await?;
            match &m.payload {
                Payload::Text(_) => break,
                p if msgs::decode::<msgs::Spun>(p).is_some() => spun = Some(sent.elapsed()),
                other => bail!("unexpected message {other:?}"),
            }
        }
        rtts.push(ms(t.elapsed()));
        if let Some(s) = spun {
            return Ok((rtts, s));
        }
    }
}

// ---- B9.scale -----------------------------------------------------------------------------------

/// What one node's run did.
struct Rate {
    /// Work requests answered in the timed window.
    done: u64,
    /// The window, up to the last answer counted.
    elapsed: Duration,
}

impl Rate {
    fn per_sec(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }
}

async fn scale(env: &Env, opts: &Opts, variants: &ZipVariants) -> Result<Vec<Figure>> {
    let n = cores();
    let iterations = calibrate();
    let secs = if opts.quick { 1.0 } else { 3.0 };
    // One node after the other, each stopped before the next starts: they would share the
    // cores otherwise.
    let one = work_rate(env, variants, 1, iterations, secs).await?;
    let many = work_rate(env, variants, n, iterations, secs).await?;
    let note = |r: &Rate| format!("{} Work in {:.2} s", r.done, r.elapsed.as_secs_f64());
    Ok(vec![
        Figure::value(
            "B9.scale.1",
            "CPU-bound Work over 64 actors of one version, 1 thread",
            one.per_sec(),
            "req/s",
        )
        .note(format!(
            "{}; {ACTORS} in flight, {iterations} iterations each (≈ {} ms, timed in the bench process)",
            note(&one),
            ms(WORK_TIME)
        )),
        Figure::value(
            "B9.scale.n",
            &format!("same, {n} threads (`--version-threads {n}`, the cores)"),
            many.per_sec(),
            "req/s",
        )
        .note(note(&many)),
        Figure::value("B9.scale", &format!("{n} threads / 1 thread"), many.per_sec() / one.per_sec(), "×")
            .target("≥ 1.8", 1.8, false),
    ])
}

/// Iterations of [`msgs::Work::run`] that take about [`WORK_TIME`] here: the same code the
/// Spinner runs, built with the same profile. The fastest of five timings of a probe, so that a
/// busy moment on the machine does not shrink the count.
fn calibrate() -> u64 {
    let probe = msgs::Work { iterations: 200_000 };
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            probe.run();
            t.elapsed()
        })
        .min()
        .unwrap_or(WORK_TIME)
        .max(Duration::from_micros(1));
    ((probe.iterations as f64 * WORK_TIME.as_secs_f64() / best.as_secs_f64()) as u64).max(1)
}

/// Requests/s of 64 Spinners on a node with `threads` per version, one Work in flight each:
/// half a second of warm-up (a pool grows to its threads), then `secs` counted.
async fn work_rate(
    env: &Env,
    variants: &ZipVariants,
    threads: usize,
    iterations: u64,
    secs: f64,
) -> Result<Rate> {
    let (node, mut c, hash) = plugin_node(env, variants, &format!("10.1.{threads}"), Some(threads)).await?;
    let mut actors = Vec::with_capacity(ACTORS);
    for _ in 0..ACTORS {
        actors.push(create(&mut c, &hash, "bench.Spinner", None).await?);
    }
    let mut raw = Raw::connect(&node.addr()).await?;
    let work = msgs::Work { iterations }.payload();
    for a in &actors {
        raw.feed(a, work.clone()).await?;
    }
    raw.flush().await?;
    keep_busy(&mut raw, &work, Instant::now() + Duration::from_millis(500)).await?;
    let t = Instant::now();
    let done = keep_busy(&mut raw, &work, t + Duration::from_secs_f64(secs)).await?;
    let elapsed = t.elapsed();
    // The last requests' answers: none may be lost.
    for _ in 0..ACTORS {
        worked(&mut raw).await?;
    }
    drop(node);
    Ok(Rate { done, elapsed })
}

/// Answers each Worked with a new Work to the same actor until `end`; the answers counted.
async fn keep_busy(raw: &mut Raw, work: &Payload, end: Instant) -> Result<u64> {
    let mut done = 0;
    while Instant::now() < end {
        let from = worked(raw).await?;
        raw.send(&from, work.clone()).await?;
        done += 1;
    }
    Ok(done)
}

/// The next Worked; the Spinner that sent it.
async fn worked(raw: &mut Raw) -> Result<Address> {
    let m = raw.next_within(REPLY_TIMEOUT).await?;
    if msgs::decode::<msgs::Worked>(&m.payload).is_none() {
        bail!("unexpected answer to a Work: {:?}", m.payload);
    }
    m.sender.ok_or_else(|| anyhow!("a Worked without a sender"))
}
