//! B10: live upgrade. `bench.Keeper`s (1 KiB of state each) move from one version of the bench
//! plugin to another (the same library under another package version, so another hash) with
//! `Request::Upgrade`, on one node:
//!
//! - B10.total and B10.pause: 10 000 Keepers, upgraded with no other traffic than a probe: one
//!   Keeper gets a numbered message every millisecond, and the gaps in its replies show the
//!   pause as a client sees it. The client's wall time of the request, the node's own elapsed
//!   time and the node's pause percentiles over every moved actor.
//! - B10.pause.one: a version holding a single Keeper, upgraded 20 times: the pause of an actor
//!   that waits behind no other.
//! - B10.lost: the same Keepers upgraded again (second to third version) while 5 clients each
//!   send 1 000 numbered messages/s to 20 of them; every reply is checked for loss, doubles and
//!   order per (sender, Keeper), and each Keeper's count for continuity across the move.
//! - B10.watch: in [`super::watch`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use tokio::sync::watch;
use troupe_actor_abi::message::{Address, Incoming};
use troupe_node::client::Client;
use troupe_node::protocol::{NodeUpgrade, Request, Response, UpgradeOptions, UpgradeReport};

use super::{bench_plugin, guard, ms, us, watch as watch_fig};
use crate::harness::{create, load, Env, Node, Raw, ZipVariants};
use crate::msgs::{self, Tagged};
use crate::{percentile, Figure, Opts};

/// Keepers on the node (`--quick`: 1 000).
const KEEPERS: usize = 10_000;
/// Upgrades of a version holding a single Keeper (`--quick`: 5).
const SINGLE_UPGRADES: usize = 20;
/// The senders of B10.lost, each paced at [`PACE`].
const CLIENTS: usize = 5;
/// The Keepers they send to, spread over the whole set (so that some move early, some late).
const TARGETS: usize = 20;
/// One message per client per millisecond: 1 000 msg/s each.
const PACE: Duration = Duration::from_millis(1);
/// Traffic before the upgrade request and after its answer.
const AROUND: Duration = Duration::from_millis(1000);
/// How long the last replies may take once sending stops.
const REPLY_GRACE: Duration = Duration::from_secs(5);

pub(super) async fn b10(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let variants = bench_plugin(env)?;
    let mut figs = Vec::new();
    figs.extend(guard("B10.pause.one", "upgrades of one Keeper", one(env, opts, variants.clone())).await);
    match KeeperNode::start(env, variants, opts.scale(KEEPERS, 1_000)).await {
        Ok(mut kn) => {
            figs.extend(guard("B10.total", "upgrade of idle Keepers", quiet(&mut kn)).await);
            figs.extend(guard("B10.lost", "upgrade under load", loaded(&mut kn)).await);
        }
        Err(e) => figs.push(Figure::error("B10.total", "upgrade of idle Keepers", format!("{e:#}"))),
    }
    figs.extend(guard("B10.watch", "troupe watch", watch_fig::b10_watch(env, opts)).await);
    Ok(figs)
}

// ---- the node and the upgrade ------------------------------------------------------------------

/// A node with Keepers of the bench plugin's version `current`.
struct KeeperNode {
    node: Node,
    c: Client,
    variants: ZipVariants,
    current: String,
    keepers: Vec<Address>,
    /// Versions made so far (the next one is `10.10.<made + 1>`).
    made: u32,
}

impl KeeperNode {
    async fn start(env: &Env, variants: ZipVariants, n: usize) -> Result<KeeperNode> {
        let node = Node::start(env, "", None).await?;
        let mut c = Client::connect(&node.addr()).await?;
        let current = load(&mut c, variants.make("10.10.1")?).await?;
        let t = Instant::now();
        let mut keepers = Vec::with_capacity(n);
        for _ in 0..n {
            keepers.push(create(&mut c, &current, "bench.Keeper", None).await?);
        }
        eprintln!("   {n} Keepers created in {:.0} ms", ms(t.elapsed()));
        Ok(KeeperNode { node, c, variants, current, keepers, made: 1 })
    }

    /// Loads the next version (another package version of the same zip); its hash.
    async fn load_next(&mut self) -> Result<String> {
        self.made += 1;
        let zip = self.variants.make(&format!("10.10.{}", self.made))?;
        load(&mut self.c, zip).await
    }

    /// Upgrades every Keeper from the current version to `to`, checking that all moved; the
    /// node's part of the report and the request's wall time.
    async fn upgrade(&mut self, to: &str) -> Result<(NodeUpgrade, Duration)> {
        let request = Request::Upgrade {
            from: self.current.clone(),
            to: to.into(),
            options: UpgradeOptions::default(),
        };
        let t = Instant::now();
        let answer = self.c.request(request).await?;
        let wall = t.elapsed();
        let report = match answer {
            Response::Upgraded(r) => r,
            other => bail!("unexpected answer to upgrade: {other:?}"),
        };
        let node = checked(report, self.keepers.len())?;
        self.current = to.to_string();
        Ok((node, wall))
    }
}

/// The one node's report, if every Keeper moved.
fn checked(report: UpgradeReport, expected: usize) -> Result<NodeUpgrade> {
    let failed = report.failed().count();
    let (moved, rolled_back) = (report.moved(), report.rolled_back);
    let Some(node) = report.nodes.into_iter().next() else { bail!("the report lists no node") };
    if moved != expected || failed > 0 || rolled_back {
        bail!("{moved} of {expected} Keepers moved, {failed} failed, rolled back: {rolled_back}: {node:?}");
    }
    Ok(node)
}

fn node_note(n: &NodeUpgrade) -> String {
    format!(
        "node: {} moved in {:.1} ms, pause p50/p99/max {}/{}/{} µs",
        n.moved(),
        n.elapsed_us as f64 / 1000.0,
        n.pause_p50_us,
        n.pause_p99_us,
        n.pause_max_us
    )
}

// ---- B10.total, B10.pause -----------------------------------------------------------------------

async fn quiet(kn: &mut KeeperNode) -> Result<Vec<Figure>> {
    let to = kn.load_next().await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let raw = Raw::connect(&kn.node.addr()).await?;
    let probed = kn.keepers[kn.keepers.len() / 2].clone();
    let probe = tokio::spawn(probe(raw, probed, stop_rx));
    tokio::time::sleep(AROUND / 2).await;
    let t0 = Instant::now();
    let (node, wall) = kn.upgrade(&to).await?;
    let t1 = Instant::now();
    tokio::time::sleep(AROUND / 2).await;
    let _ = stop_tx.send(true);
    let log = probe.await??;
    let n = kn.keepers.len();
    let mut figs = vec![
        Figure::value("B10.total", &format!("upgrade of {n} Keepers (1 KiB of state each), one node: request to answer"), ms(wall), "ms")
            .target("≤ 250 ms", 250.0, true)
            .note("after the moves the node unloads the old version, in the same request"),
        Figure::value("B10.total.node", "same, the node's own time (report's elapsed_us: request to last actor resumed)", node.elapsed_us as f64 / 1000.0, "ms"),
        node_pause("B10.pause", &format!("pause of one actor (export on the old version's thread to resumption on the new one's), node's own, over {n} actors"), &node),
    ];
    figs.push(log.figure(t0, t1)?);
    Ok(figs)
}

/// The node's pause percentiles as a figure: value p50, target on p99.
fn node_pause(id: &str, what: &str, n: &NodeUpgrade) -> Figure {
    let mut f = Figure::value(id, what, n.pause_p50_us as f64, "µs");
    f.p50 = Some(n.pause_p50_us as f64);
    f.p99 = Some(n.pause_p99_us as f64);
    f.target_p99("p99 ≤ 1 ms", 1000.0, true).note(format!("max {} µs; {}", n.pause_max_us, node_note(n)))
}

/// B10.pause.one: a version holding one Keeper, upgraded again and again: the pause of an actor
/// that waits behind no other.
async fn one(env: &Env, opts: &Opts, variants: ZipVariants) -> Result<Vec<Figure>> {
    let mut kn = KeeperNode::start(env, variants, 1).await?;
    let (mut pauses, mut walls) = (Vec::new(), Vec::new());
    for _ in 0..opts.scale(SINGLE_UPGRADES, 5) {
        let to = kn.load_next().await?;
        let (node, wall) = kn.upgrade(&to).await?;
        pauses.push(node.pause_max_us as f64);
        walls.push(ms(wall));
    }
    let f = Figure::latency(
        "B10.pause.one",
        "pause of one actor (node's own), a version holding one Keeper, upgraded on its own",
        &pauses,
        "µs",
    )
    .target_p99("p99 ≤ 1 ms", 1000.0, true)
    .note(format!(
        "n = upgrades; request to answer p50 {:.2} ms, p99 {:.2} ms",
        percentile(&walls, 50.0),
        percentile(&walls, 99.0)
    ));
    Ok(vec![f])
}

/// What the probe saw: when each message was sent, and each reply in arrival order.
struct ProbeLog {
    sent: Vec<Instant>,
    replies: Vec<(msgs::Kept, Instant)>,
}

/// Sends a Keep to `to` every [`PACE`] until `stop`, then waits for the last replies.
async fn probe(mut raw: Raw, to: Address, mut stop: watch::Receiver<bool>) -> Result<ProbeLog> {
    let mut log = ProbeLog { sent: Vec::new(), replies: Vec::new() };
    let mut tick = tokio::time::interval(PACE);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let seq = log.sent.len() as u64;
                log.sent.push(Instant::now());
                raw.send(&to, msgs::Keep { seq }.payload()).await?;
            }
            m = raw.next() => log.replies.push((kept(&m?)?, Instant::now())),
            _ = stop.changed() => break,
        }
    }
    while log.replies.len() < log.sent.len() {
        let m = raw.next_within(REPLY_GRACE).await?;
        log.replies.push((kept(&m)?, Instant::now()));
    }
    Ok(log)
}

fn kept(m: &Incoming) -> Result<msgs::Kept> {
    msgs::decode::<msgs::Kept>(&m.payload).ok_or_else(|| anyhow!("unexpected message {:?}", m.payload))
}

impl ProbeLog {
    /// B10.pause.client: the largest gap between two replies that arrived during the upgrade
    /// (`t0`..`t1`, and the first one after), minus the median gap before it.
    fn figure(&self, t0: Instant, t1: Instant) -> Result<Figure> {
        self.check()?;
        let at: Vec<Instant> = self.replies.iter().map(|r| r.1).collect();
        let gap = |i: usize| us(at[i] - at[i - 1]);
        let before: Vec<f64> = (1..at.len()).filter(|&i| at[i] < t0).map(gap).collect();
        let first_after = at.iter().position(|&a| a > t1).unwrap_or(at.len() - 1);
        let during: Vec<f64> = (1..=first_after).filter(|&i| at[i] >= t0).map(gap).collect();
        let latency = |r: &(msgs::Kept, Instant)| us(r.1 - self.sent[r.0.seq as usize]);
        let lat_before: Vec<f64> = self.replies.iter().filter(|r| r.1 < t0).map(latency).collect();
        let lat_during = self.replies[..=first_after].iter().filter(|r| r.1 >= t0).map(latency);
        let normal = percentile(&before, 50.0);
        let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
        let worst_latency = lat_during.fold(f64::NAN, f64::max);
        Ok(Figure::value(
            "B10.pause.client",
            "same, as a client sees it: largest gap between replies of the probed Keeper during the upgrade − median gap",
            max(&during) - normal,
            "µs",
        )
        .note(format!(
            "1 Keep/ms to one Keeper; median gap {normal:.0} µs; before the upgrade the largest gap was {:.0} µs over the median ({} replies); slowest reply during the upgrade {:.0} µs vs median {:.0} µs before ({} replies during)",
            max(&before) - normal,
            before.len(),
            worst_latency,
            percentile(&lat_before, 50.0),
            during.len(),
        )))
    }

    /// Every reply once, in order, counting on from the one before, and the new version's
    /// answers after the old one's.
    fn check(&self) -> Result<()> {
        for (i, (k, _)) in self.replies.iter().enumerate() {
            if k.seq != i as u64 {
                bail!("the probe's reply {i} answers message {}", k.seq);
            }
            if let Some((prev, _)) = i.checked_sub(1).map(|j| &self.replies[j]) {
                if k.count != prev.count + 1 || k.upgrades < prev.upgrades {
                    bail!("the probed Keeper's count or version went back at reply {i}");
                }
            }
        }
        Ok(())
    }
}

// ---- B10.lost -----------------------------------------------------------------------------------

/// One sender's record: each Keep (target index, seq, when) and each reply (target index,
/// the Kept) in arrival order.
struct SenderLog {
    sent: Vec<(usize, u64, Instant)>,
    replies: Vec<(usize, msgs::Kept)>,
}

async fn loaded(kn: &mut KeeperNode) -> Result<Vec<Figure>> {
    let to = kn.load_next().await?;
    let n = kn.keepers.len();
    let targets: Arc<Vec<Address>> =
        Arc::new((0..TARGETS).map(|i| kn.keepers[i * n / TARGETS].clone()).collect());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for k in 0..CLIENTS {
        let raw = Raw::connect(&kn.node.addr()).await?;
        tasks.push(tokio::spawn(sender(raw, targets.clone(), k, stop_rx.clone())));
    }
    let start = Instant::now();
    tokio::time::sleep(AROUND).await;
    let t0 = Instant::now();
    let (node, wall) = kn.upgrade(&to).await?;
    let t1 = Instant::now();
    tokio::time::sleep(AROUND).await;
    let _ = stop_tx.send(true);
    let sending = start.elapsed();
    let mut logs = Vec::new();
    for t in tasks {
        logs.push(t.await??);
    }
    let tally = Tally::of(&logs, TARGETS);
    let sent: usize = logs.iter().map(|l| l.sent.len()).sum();
    let in_window = logs.iter().flat_map(|l| &l.sent).filter(|s| s.2 >= t0 && s.2 <= t1).count();
    let bad = tally.lost + tally.doubled + tally.reordered;
    Ok(vec![
        Figure::value("B10.lost", &format!("messages lost, doubled or out of order per (sender, Keeper) during an upgrade of {n} Keepers under {} msg/s", CLIENTS as u64 * 1000 / PACE.as_millis() as u64), bad as f64, "messages")
            .target("0", 0.0, true)
            .note(format!(
                "{CLIENTS} clients × 1 Keep/ms to {TARGETS} Keepers; {sent} sent in {:.2} s ({:.0}/s achieved); lost {}, doubled {}, out of order {}; {}; upgrade request to answer {:.1} ms; {}",
                sending.as_secs_f64(),
                sent as f64 / sending.as_secs_f64(),
                tally.lost,
                tally.doubled,
                tally.reordered,
                tally.continuity(),
                ms(wall),
                node_note(&node)
            )),
        Figure::value("B10.lost.window", "messages sent while the upgrade request was running", in_window as f64, "messages")
            .note(format!("window {:.1} ms", ms(t1 - t0))),
    ])
}

/// One client: a Keep every [`PACE`] to the next of `targets` (starting at `first`), numbered
/// per target, until `stop`; then waits for the replies still due.
async fn sender(
    mut raw: Raw,
    targets: Arc<Vec<Address>>,
    first: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<SenderLog> {
    let index: HashMap<&Address, usize> = targets.iter().enumerate().map(|(i, a)| (a, i)).collect();
    let mut next_seq = vec![0u64; targets.len()];
    let mut log = SenderLog { sent: Vec::new(), replies: Vec::new() };
    let mut tick = tokio::time::interval(PACE);
    let mut to = first;
    let record = |log: &mut SenderLog, m: Incoming| -> Result<()> {
        let from = m
            .sender
            .as_ref()
            .and_then(|s| index.get(s))
            .ok_or_else(|| anyhow!("a reply from {:?}", m.sender))?;
        log.replies.push((*from, kept(&m)?));
        Ok(())
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {
                to = (to + 1) % targets.len();
                let seq = next_seq[to];
                next_seq[to] += 1;
                log.sent.push((to, seq, Instant::now()));
                raw.send(&targets[to], msgs::Keep { seq }.payload()).await?;
            }
            m = raw.next() => record(&mut log, m?)?,
            _ = stop.changed() => break,
        }
    }
    let deadline = Instant::now() + REPLY_GRACE;
    while log.replies.len() < log.sent.len() && Instant::now() < deadline {
        match raw.next_within(deadline.saturating_duration_since(Instant::now())).await {
            Ok(m) => record(&mut log, m)?,
            Err(_) => break,
        }
    }
    Ok(log)
}

/// What the replies of every sender add up to.
#[derive(Default)]
struct Tally {
    lost: usize,
    doubled: usize,
    reordered: usize,
    /// Keepers whose counts (over every sender) were not one run of consecutive numbers, or
    /// whose version went back.
    broken: usize,
    keepers: usize,
}

impl Tally {
    fn of(logs: &[SenderLog], targets: usize) -> Tally {
        let mut t = Tally { keepers: targets, ..Tally::default() };
        let mut counts: Vec<Vec<u64>> = vec![Vec::new(); targets];
        for log in logs {
            for (k, keeper_counts) in counts.iter_mut().enumerate() {
                let sent = log.sent.iter().filter(|s| s.0 == k).count();
                let replies: Vec<&msgs::Kept> =
                    log.replies.iter().filter(|r| r.0 == k).map(|r| &r.1).collect();
                t.pair(sent, &replies);
                keeper_counts.extend(replies.iter().map(|r| r.count));
            }
        }
        for c in &mut counts {
            c.sort_unstable();
            let consecutive = c.windows(2).all(|w| w[1] == w[0] + 1);
            t.broken += usize::from(!consecutive);
        }
        t
    }

    /// One (sender, Keeper) pair: `sent` Keeps, `replies` in arrival order.
    fn pair(&mut self, sent: usize, replies: &[&msgs::Kept]) {
        let distinct: BTreeSet<u64> = replies.iter().map(|r| r.seq).collect();
        self.lost += sent.saturating_sub(distinct.len());
        self.doubled += replies.len() - distinct.len();
        let (mut max_seq, mut upgrades) = (None, 0);
        for r in replies {
            if max_seq.is_some_and(|m| r.seq < m) {
                self.reordered += 1;
            }
            max_seq = max_seq.max(Some(r.seq));
            if r.upgrades < upgrades {
                self.broken += 1;
            }
            upgrades = upgrades.max(r.upgrades);
        }
    }

    fn continuity(&self) -> String {
        match self.broken {
            0 => format!("every Keeper's counts consecutive across the move ({} Keepers)", self.keepers),
            b => format!("**{b} breaks** in the Keepers' counts or versions"),
        }
    }
}
