//! B7: memory. An idle node's RSS, what each loaded version and each idle actor adds, and
//! whether load/unload cycles give memory and mappings back.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use troupe_node::client::Client;
use troupe_node::protocol::{Request, Response};

use super::{bench_plugin, ms};
use crate::harness::{create, load, maps, rss_kib, status, Env, Node, Raw, ZipVariants};
use crate::msgs::{self, Tagged};
use crate::{Figure, Opts};

/// RSS after a pause, so that what the last step freed or touched has settled.
async fn settle_rss(pid: u32) -> Result<u64> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    rss_kib(pid)
}

pub(super) async fn b7(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let variants = bench_plugin(env)?;
    let mut figs = Vec::new();
    // Each on a node of its own, the first stopped before the second starts.
    figs.extend(footprint(env, opts, &variants).await?);
    figs.extend(cycles(env, opts, &variants).await?);
    Ok(figs)
}

/// Idle node, per version, per actor.
async fn footprint(env: &Env, opts: &Opts, variants: &ZipVariants) -> Result<Vec<Figure>> {
    let node = Node::start(env, "", None).await?;
    let pid = node.pid();
    let idle = settle_rss(pid).await?;
    let mut figs = vec![Figure::value("B7.idle", "idle node RSS", idle as f64 / 1024.0, "MiB").target(
        "≤ 10 MiB",
        10.0,
        true,
    )];
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
    figs.push(per_actor(&node, &mut c, &hashes[0], opts).await?);
    Ok(figs)
}

/// A Spawner of version `hash` creates many idle Sinks; the RSS they add, per actor.
async fn per_actor(node: &Node, c: &mut Client, hash: &str, opts: &Opts) -> Result<Figure> {
    let pid = node.pid();
    let spawner = create(c, hash, "bench.Spawner", None).await?;
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
    Ok(Figure::value("B7.actor", "RSS per actor (bench.Sink, idle)", per, "B")
        .target("≤ 1024 B", 1024.0, true)
        .note(format!(
            "{n} actors created in {:.0} ms ({:.0}/s)",
            ms(spawn_time),
            n as f64 / spawn_time.as_secs_f64()
        )))
}

/// Load/unload cycles: RSS growth and version library mappings left behind.
async fn cycles(env: &Env, opts: &Opts, variants: &ZipVariants) -> Result<Vec<Figure>> {
    let node = Node::start(env, "", None).await?;
    let pid = node.pid();
    let mut c = Client::connect(&node.addr()).await?;
    let cycles = opts.scale(200, 30);
    let store = node.state.display().to_string();
    // One warm-up cycle: the first load maps what every later one reuses.
    cycle(&mut c, variants, 0).await?;
    let rss0 = settle_rss(pid).await?;
    let maps0 = maps(pid)?.len();
    let t = Instant::now();
    for i in 1..=cycles {
        cycle(&mut c, variants, i).await.with_context(|| format!("cycle {i}"))?;
    }
    let per_cycle = ms(t.elapsed()) / cycles as f64;
    let rss1 = settle_rss(pid).await?;
    let m1 = maps(pid)?;
    // Version libraries are memory files named `troupe:<hash>-<gen>:<file>` (or, where the
    // kernel refuses those, files in the store).
    let left = m1.iter().filter(|l| l.contains("/memfd:troupe:") || l.contains(&store)).count();
    Ok(vec![
        Figure::value(
            "B7.cycles",
            "RSS growth after load/unload cycles",
            (rss1 as f64 - rss0 as f64) / 1024.0,
            "MiB",
        )
        .target("≤ +1 MiB", 1.0, true)
        .note(format!("{cycles} cycles, {per_cycle:.1} ms each; mappings {} → {}", maps0, m1.len())),
        Figure::value("B7.maps", "version library mappings left after the cycles", left as f64, "mappings")
            .target("0", 0.0, true),
    ])
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
