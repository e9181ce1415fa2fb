//! B8: scale. Load times over hundreds of versions on one node, and a convention of many
//! nodes: how fast they join, and how fast the leader notices a killed or a silent member.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use troupe_actor_abi::message::{Address, Payload};
use troupe_actor_abi::sdk::{IntoPayload, Typed};
use troupe_node::client::Client;

/// The demo encoders' work item (`encoders/EncodeThis`), the same shape.
#[derive(Serialize, Deserialize)]
struct EncodeThis {
    raw: String,
    encoder: String,
    requester: Address,
    analyzer: Address,
}
impl Typed for EncodeThis {
    const TAG: &'static str = "encoders/EncodeThis";
}

use super::{bench_plugin, encoders, guard, ms};
use crate::harness::{cpu_time, create, load, rss_kib, status, Env, Node};
use crate::{percentile, Figure, Opts};

pub(super) async fn b8(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let mut figs = Vec::new();
    // Parts can be chosen on their own (`--only B8.names`).
    if opts.wants_part("B8.versions") {
        figs.extend(guard("B8.versions", "500 versions", b8_versions(env, opts)).await);
    }
    if opts.wants_part("B8.join") {
        figs.extend(guard("B8.join", "16 nodes join", b8_join(env, opts)).await);
    }
    if opts.wants_part("B8.join64") {
        figs.extend(guard("B8.join64", "64 nodes join", b8_join64(env, opts)).await);
    }
    if opts.wants_part("B8.failover") {
        figs.extend(guard("B8.failover", "leader killed", super::failover::b8_failover(env, opts)).await);
    }
    if opts.wants_part("B8.names") {
        figs.extend(guard("B8.names", "names over leader kills", super::failover::b8_names(env, opts)).await);
    }
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
    let joined = until_all_alive(&mut c, n - 1, t).await?;
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
    figs.extend(detection(&mut c, &mut members, "").await?);
    drop(members);
    Ok(figs)
}

/// 64 nodes on this machine: one leader, 63 members spawned at once; spawn to the leader
/// listing all alive, with the leader's CPU time and RSS.
async fn b8_join64(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let n = opts.scale(64, 16);
    let leader = Node::start(env, "", None).await?;
    let mut c = Client::connect(&leader.addr()).await?;
    let cpu0 = cpu_time(leader.pid())?;
    let t = Instant::now();
    let mut members = Vec::new();
    for i in 1..n {
        // One member, in the middle of the spawn order, can host a MorseEncoder (placement).
        let caps = if i == n / 2 { "morse" } else { "" };
        members.push(Node::spawn(env, caps, Some(leader.port))?);
    }
    let host = members[n / 2 - 1].addr();
    let spawned = t.elapsed();
    let joined = until_all_alive(&mut c, n - 1, t).await?;
    let cpu_join = cpu_time(leader.pid())? - cpu0;
    let mut ready = Duration::ZERO;
    for m in &mut members {
        m.ready().await?;
        ready = ready.max(t.elapsed());
    }
    // Steady state: every member's heartbeat each second, for a few seconds.
    let secs = if opts.quick { 2 } else { 5 };
    let (cpu1, t1) = (cpu_time(leader.pid())?, Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let busy = (cpu_time(leader.pid())? - cpu1).as_secs_f64() / t1.elapsed().as_secs_f64() * 100.0;
    let st = status(&mut c).await?;
    let alive = st.convention.members.iter().filter(|m| m.alive).count();
    let rss = rss_kib(leader.pid())? as f64 / 1024.0;
    let member_rss: u64 = members.iter().filter_map(|m| rss_kib(m.pid()).ok()).sum();
    // Placement among them: a MorseEncoder created through the leader lands on the one member
    // with `morse` (which fetches the code the first time), then answers.
    let hash = load(&mut c, encoders(env)?.make("64.0.0")?).await?;
    let mut places = Vec::new();
    for i in 0..if opts.quick { 3 } else { 10 } {
        let t = Instant::now();
        let a = create(&mut c, &hash, "morse.MorseEncoder", None).await?;
        if a.node != host {
            bail!("create {i} placed on {} instead of {host}, the only node with morse", a.node);
        }
        // The encoder's work item, as the demo's Acceptor sends it (`encoders/EncodeThis`),
        // with this client as the analyzer that gets the `Encoded` back.
        let me = c.address().clone();
        let work = EncodeThis {
            raw: "sos".into(),
            encoder: "MorseEncoder".into(),
            requester: me.clone(),
            analyzer: me,
        };
        c.request(troupe_node::protocol::Request::Send { to: a, payload: (&work).into_payload() }).await?;
        let reply = tokio::time::timeout(Duration::from_secs(10), c.next_message()).await??;
        if !matches!(&reply.payload, Payload::Typed { tag, .. } if tag == "encoders/Encoded") {
            bail!("unexpected answer from the placed encoder: {:?}", reply.payload);
        }
        places.push(ms(t.elapsed()));
    }
    let mut figs = vec![
        Figure::value("B8.join64", &format!("{n} nodes: spawn to leader listing all"), ms(joined), "ms")
            .target("≤ 1 s", 1000.0, true)
            .note(format!(
                "{} members spawned at once, spawning took {:.0} ms; last member answering hello at ≤ {:.0} ms; \
                 leader CPU during the join {:.0} ms",
                n - 1,
                ms(spawned),
                ms(ready),
                ms(cpu_join)
            )),
        Figure::value("B8.join64.cpu", &format!("leader CPU, {} members heartbeating (1 s)", n - 1), busy, "% of a core")
            .note(format!("over {secs} s after the join; {alive} listed alive at the end")),
        Figure::value("B8.join64.rss", "leader RSS after the join", rss, "MiB").note(format!(
            "members {:.1} MiB each on average",
            member_rss as f64 / 1024.0 / members.len().max(1) as f64
        )),
        Figure::latency(
            "B8.place64",
            &format!("{n} nodes: create through the leader placed on the one capable member, to its first answer"),
            &places,
            "ms",
        )
        .note("the first includes fetching the code to that member"),
    ];
    members.retain(|m| m.addr() != host);
    figs.extend(detection(&mut c, &mut members, "64").await?);
    drop(members);
    Ok(figs)
}

/// Polls the leader's status until it lists `expected` members alive; the time since `t`.
async fn until_all_alive(c: &mut Client, expected: usize, t: Instant) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = status(c).await?;
        if st.convention.members.iter().filter(|m| m.alive).count() >= expected {
            return Ok(t.elapsed());
        }
        if Instant::now() > deadline {
            bail!("only {} of {} members registered within 30 s", st.convention.members.len(), expected);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Failure detection with default heartbeat and dead-after: a killed process (its links
/// close and its port refuses: lost at once), then a silent one (SIGSTOP, as a hung host:
/// only the heartbeat can tell). Takes the last two of `members`.
async fn detection(c: &mut Client, members: &mut Vec<Node>, suffix: &str) -> Result<Vec<Figure>> {
    let mut victim = members.pop().ok_or_else(|| anyhow!("no members"))?;
    let t = Instant::now();
    victim.kill();
    let detected = until_not_alive(c, &victim.addr(), t).await?;
    let among = if suffix.is_empty() { String::new() } else { format!(" (among {suffix} nodes)") };
    let killed = Figure::value(
        &format!("B8.detect{suffix}"),
        &format!("SIGKILLed member: kill to leader no longer listing it alive{among}"),
        ms(detected),
        "ms",
    )
    .target("≤ 3 s", 3000.0, true)
    .note("defaults: heartbeat 1 s, dead-after 3 s");
    let silent = members.pop().ok_or_else(|| anyhow!("no members"))?;
    // SAFETY: kill(2) with a pid we spawned and a valid signal.
    unsafe { libc::kill(silent.pid() as i32, libc::SIGSTOP) };
    let t = Instant::now();
    let detected = until_not_alive(c, &silent.addr(), t).await;
    // SAFETY: as above; the node is killed when `silent` drops.
    unsafe { libc::kill(silent.pid() as i32, libc::SIGCONT) };
    let stopped = Figure::value(
        &format!("B8.silent{suffix}"),
        &format!("SIGSTOPped member (alive, silent): stop to leader no longer listing it alive{among}"),
        ms(detected?),
        "ms",
    )
    .note("the heartbeat path: between dead-after − heartbeat and dead-after (2–3 s)");
    Ok(vec![killed, stopped])
}
