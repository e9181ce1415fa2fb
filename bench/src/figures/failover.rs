//! B8.failover and B8.names: a convention with a list of leaders (`--convention A,B,C`, the
//! same list on every node; the first live listed node leads). How soon a SIGKILLed leader's
//! successor serves creates again, and whether global names survive many changes of leader
//! (rebuilt each time from the members that hold them): none lost, none held twice.
//!
//! Default timings (heartbeat 1 s, dead-after 3 s). The named actors and the placed ones are
//! `morse.MorseEncoder`s of the encoders zip, which require `morse`: only the members have it,
//! so every actor lives on a member and survives the leaders' deaths.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use troupe_actor_abi::message::Address;
use troupe_node::client::Client;
use troupe_node::status::StatusReport;

use super::{encoders, ms};
use crate::harness::{create, create_named, free_ports, leader_list, load, status, Env, Node};
use crate::{Figure, Opts};

/// The members' capability, which the leaders lack.
const CAP: &str = "morse";
/// A type that requires [`CAP`].
const TYPE: &str = "morse.MorseEncoder";
/// How long a convention may take to settle after a start or a kill.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failover may take before the figure gives up.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(20);

/// A node's status on a new connection; none if it does not answer.
async fn try_status(node: &Node) -> Option<StatusReport> {
    let mut c = node.client().await.ok()?;
    status(&mut c).await.ok()
}

/// Waits until `nodes` agree on one leader among them, which says it leads, has gathered the
/// members' names (`gathering == false`) and lists every other node alive. Its index in
/// `nodes` and its status.
async fn settled(nodes: &[&Node]) -> Result<(usize, StatusReport)> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut last = String::from("no status");
    loop {
        let mut all = Vec::new();
        for n in nodes {
            match try_status(n).await {
                Some(s) => all.push(s),
                None => {
                    last = format!("{} did not answer", n.addr());
                    break;
                }
            }
        }
        if all.len() == nodes.len() {
            let leaders: BTreeSet<&str> = all.iter().map(|s| s.convention.leader.as_str()).collect();
            last = all
                .iter()
                .map(|s| {
                    format!(
                        "{}: leader {} role {} gathering {}",
                        s.node, s.convention.leader, s.convention.role, s.convention.gathering
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            if let (1, Some(i)) =
                (leaders.len(), nodes.iter().position(|n| leaders.contains(n.addr().as_str())))
            {
                let st = &all[i];
                let alive = |a: String| st.convention.members.iter().any(|m| m.node == a && m.alive);
                if st.convention.role == "leader"
                    && !st.convention.gathering
                    && nodes.iter().filter(|n| n.addr() != st.node).all(|n| alive(n.addr()))
                {
                    return Ok((i, all.swap_remove(i)));
                }
            }
        }
        if Instant::now() > deadline {
            bail!("the convention did not settle within {SETTLE_TIMEOUT:?}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Loads `zip` on each of `nodes`; the hash.
async fn load_on(nodes: &[&Node], zip: &[u8]) -> Result<String> {
    let mut hash = String::new();
    for n in nodes {
        let mut c = n.client().await?;
        hash = load(&mut c, zip.to_vec()).await?;
    }
    Ok(hash)
}

/// Retries a create of [`TYPE`] through `c` (a new global name `{prefix}-{i}` each attempt
/// with `named`, else none), a millisecond apart, until one gives an address on `on`: the
/// time since `t`, the attempts that failed and the last failure.
async fn first_success(
    c: &mut Client,
    hash: &str,
    named: Option<&str>,
    t: Instant,
    on: &str,
) -> Result<(Duration, usize, String)> {
    let mut failed = 0;
    let mut last = String::new();
    for i in 0.. {
        let outcome = match named {
            Some(prefix) => create_named(c, hash, TYPE, &format!("{prefix}-{i}")).await.map(|(a, _)| a),
            None => create(c, hash, TYPE, None).await,
        };
        match outcome {
            Ok(a) if a.node == on => return Ok((t.elapsed(), failed, last)),
            Ok(a) => last = format!("placed on {a}, not on {on}"),
            Err(e) => last = format!("{e:#}"),
        }
        failed += 1;
        if t.elapsed() > FAILOVER_TIMEOUT {
            bail!("no create placed on {on} within {FAILOVER_TIMEOUT:?} ({failed} attempts); last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    unreachable!()
}

/// The times of one failover, from the SIGKILL of the first listed leader.
struct Failover {
    /// A create with a new global name (claimed from the leader) through L2, placed on M.
    named: Duration,
    /// A create without a name through L2, placed on M.
    placed: Duration,
    /// L2 says it leads and has gathered the names.
    led: Duration,
    /// Attempts that failed before the first named create succeeded, and the last failure.
    named_failed: (usize, String),
    /// The same for creates without a name.
    placed_failed: (usize, String),
}

/// SIGKILLs `l1` and measures, through clients of `l2` opened before the kill.
async fn one_failover(l1: &mut Node, l2: &Node, m: &str, hash: &str, rep: usize) -> Result<Failover> {
    let (mut cn, mut cp, mut cs) = (l2.client().await?, l2.client().await?, l2.client().await?);
    let t = Instant::now();
    l1.kill();
    let prefix = format!("failover-{rep}");
    let named = first_success(&mut cn, hash, Some(&prefix), t, m);
    let placed = first_success(&mut cp, hash, None, t, m);
    let led = async {
        loop {
            let st = status(&mut cs).await?;
            if st.convention.role == "leader" && !st.convention.gathering {
                return Ok::<_, anyhow::Error>(t.elapsed());
            }
            if t.elapsed() > FAILOVER_TIMEOUT {
                bail!("L2 did not lead within {FAILOVER_TIMEOUT:?}: {:?}", st.convention.role);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (named, placed, led) = tokio::join!(named, placed, led);
    let (named, nf, nl) = named?;
    let (placed, pf, pl) = placed?;
    Ok(Failover { named, placed, led: led?, named_failed: (nf, nl), placed_failed: (pf, pl) })
}

pub(super) async fn b8_failover(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let reps = opts.scale(5, 2);
    let ports = free_ports(4)?;
    let list = leader_list(&ports[..3]);
    let mut l1 = Node::spawn_listed(env, ports[0], "", &list)?;
    let mut l2 = Node::spawn_listed(env, ports[1], "", &list)?;
    let mut l3 = Node::spawn_listed(env, ports[2], "", &list)?;
    let mut m = Node::spawn_listed(env, ports[3], CAP, &list)?;
    for n in [&mut l1, &mut l2, &mut l3, &mut m] {
        n.ready().await?;
    }
    let (i, _) = settled(&[&l1, &l2, &l3, &m]).await?;
    if i != 0 {
        bail!("the first listed node does not lead after the start");
    }
    let zip = encoders(env)?.make("14.0.0")?;
    let hash = load_on(&[&l1, &l2, &l3, &m], &zip).await?;
    // Through L2 (a member while L1 leads), both kinds of create land on M before any kill
    // (L2's copy of the directory lists M's version within a heartbeat).
    let mut c2 = l2.client().await?;
    first_success(&mut c2, &hash, None, Instant::now(), &m.addr()).await?;
    first_success(&mut c2, &hash, Some("warm"), Instant::now(), &m.addr()).await?;
    let (mut named, mut placed, mut led) = (Vec::new(), Vec::new(), Vec::new());
    let mut failures = Vec::new();
    let mut handback = Vec::new();
    for rep in 0..reps {
        let f = one_failover(&mut l1, &l2, &m.addr(), &hash, rep).await.with_context(|| {
            format!("repetition {rep}: L1 {}, L2 {}, L3 {}, M {}", l1.addr(), l2.addr(), l3.addr(), m.addr())
        })?;
        eprintln!(
            "   failover {rep}: named create {:.0} ms ({} failed before: {}), unnamed {:.0} ms ({} failed before: {}), L2 leading and gathered {:.0} ms",
            ms(f.named),
            f.named_failed.0,
            f.named_failed.1,
            ms(f.placed),
            f.placed_failed.0,
            f.placed_failed.1,
            ms(f.led)
        );
        named.push(ms(f.named));
        placed.push(ms(f.placed));
        led.push(ms(f.led));
        failures.push(f.named_failed.0 + f.placed_failed.0);
        // L1 again on its port; it leads again once it has the members' names.
        let t = Instant::now();
        l1 = Node::spawn_listed(env, ports[0], "", &list)?;
        l1.ready().await?;
        let (i, _) =
            settled(&[&l1, &l2, &l3, &m]).await.with_context(|| format!("repetition {rep}: L1's restart"))?;
        if i != 0 {
            bail!("L1 does not lead again after its restart");
        }
        handback.push(ms(t.elapsed()));
        load_on(&[&l1], &zip).await?;
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let setup = "L1,L2,L3 listed, M (morse) a member; SIGKILL L1, clients of L2 opened before";
    Ok(vec![
        Figure::latency(
            "B8.failover",
            "SIGKILLed leader: kill to a named create through L2 placed on M (the next listed leader answers the claim)",
            &named,
            "ms",
        )
        .target("≤ 1.5 s", 1500.0, true)
        .note(format!("{setup}; max {:.0} ms; a new name each attempt; defaults: heartbeat 1 s, dead-after 3 s", max(&named))),
        Figure::latency(
            "B8.failover.place",
            "same kill: to a create without a name through L2 placed on M",
            &placed,
            "ms",
        )
        .note(format!("max {:.0} ms; attempts failed before success, per repetition: {failures:?}", max(&placed))),
        Figure::latency("B8.failover.lead", "same kill: to L2 leading with gathering == false", &led, "ms")
            .note(format!("max {:.0} ms", max(&led))),
        Figure::latency(
            "B8.failover.back",
            "L1 restarted on its port: spawn to it leading again, gathered, all agreeing",
            &handback,
            "ms",
        )
        .note(format!("max {:.0} ms", max(&handback))),
    ])
}

/// What one check of the names found.
#[derive(Default)]
struct Tally {
    /// Names whose original holder no longer answers for them.
    lost: BTreeSet<String>,
    /// Names two live actors hold, or that two members resolve differently.
    duplicated: BTreeSet<String>,
    /// Creates by name that failed.
    failed: usize,
    /// What went wrong, for the log.
    details: Vec<String>,
}

/// Checks every name against its original holder: the leader's table (exactly the names,
/// each with its holder), a create by name through each member, and the names each member
/// says its actors hold.
async fn check_names(
    leader: &StatusReport,
    members: &[&Node],
    hash: &str,
    original: &BTreeMap<String, Address>,
) -> Result<Tally> {
    let mut t = Tally::default();
    let table = &leader.convention.names;
    for (name, holder) in original {
        match table.get(name) {
            None => {
                t.lost.insert(name.clone());
                t.details.push(format!("{name}: not in the leader's table"));
            }
            Some(h) if h != holder => {
                t.lost.insert(name.clone());
                t.details.push(format!("{name}: the leader's table says {h}, not {holder}"));
            }
            Some(_) => {}
        }
    }
    for name in table.keys().filter(|k| !original.contains_key(*k)) {
        t.details.push(format!("{name}: in the leader's table, not one of ours ({})", table[name]));
    }
    if table.len() != original.len() {
        t.details.push(format!("the leader's table lists {} names, not {}", table.len(), original.len()));
    }
    let mut answers: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for m in members {
        let mut c = m.client().await?;
        for (name, holder) in original {
            match create_named(&mut c, hash, TYPE, name).await {
                Ok((a, existing)) => {
                    answers.entry(name).or_default().insert(a.to_string());
                    if &a != holder || !existing {
                        t.lost.insert(name.clone());
                        t.details.push(format!(
                            "{name} through {}: {a} ({}), not {holder}",
                            m.addr(),
                            if existing { "an existing holder" } else { "created now" }
                        ));
                    }
                }
                Err(e) => {
                    t.failed += 1;
                    t.details.push(format!("{name} through {}: {e:#}", m.addr()));
                }
            }
        }
    }
    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    for m in members {
        let st = try_status(m).await.ok_or_else(|| anyhow!("{} did not answer", m.addr()))?;
        for name in st.global_names.keys() {
            *held.entry(name.clone()).or_default() += 1;
        }
    }
    for (name, n) in &held {
        if *n > 1 {
            t.duplicated.insert(name.clone());
            t.details.push(format!("{name}: held on {n} members"));
        }
    }
    for (name, a) in &answers {
        if a.len() > 1 {
            t.duplicated.insert(name.to_string());
            t.details.push(format!("{name}: the members resolve it to {a:?}"));
        }
    }
    Ok(t)
}

pub(super) async fn b8_names(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let kills = opts.scale(20, 4);
    let n = opts.scale(50, 20);
    let ports = free_ports(4)?;
    let list = leader_list(&ports[..2]);
    let caps = ["", "", CAP, CAP];
    let mut nodes = Vec::new();
    for (p, c) in ports.iter().zip(caps) {
        nodes.push(Node::spawn_listed(env, *p, c, &list)?);
    }
    for node in &mut nodes {
        node.ready().await?;
    }
    let (i, _) = settled(&nodes.iter().collect::<Vec<_>>()).await?;
    if i != 0 {
        bail!("the first listed node does not lead after the start");
    }
    let zip = encoders(env)?.make("14.1.0")?;
    let hash = load_on(&nodes.iter().collect::<Vec<_>>(), &zip).await?;
    let member_addrs = [nodes[2].addr(), nodes[3].addr()];
    // The names, created through the leader before any kill; placement puts them on members.
    let mut original = BTreeMap::new();
    {
        let mut c = nodes[0].client().await?;
        for i in 0..n {
            let name = format!("bench-name-{i:02}");
            let (a, existing) = create_named(&mut c, &hash, TYPE, &name).await?;
            if existing || !member_addrs.contains(&a.node) {
                bail!("{name}: created at {a} (existing: {existing}), not new on a member");
            }
            original.insert(name, a);
        }
    }
    let spread: Vec<usize> =
        member_addrs.iter().map(|m| original.values().filter(|a| &a.node == m).count()).collect();
    let (mut lost, mut duplicated, mut failed) = (BTreeSet::new(), BTreeSet::new(), 0usize);
    let mut checks = 0usize;
    let mut tally = |t: Tally, when: &str| {
        for d in t.details.iter().take(10) {
            eprintln!("   names, {when}: {d}");
        }
        lost.extend(t.lost);
        duplicated.extend(t.duplicated);
        failed += t.failed;
    };
    {
        let (_, st) = settled(&nodes.iter().collect::<Vec<_>>()).await?;
        let members = [&nodes[2], &nodes[3]];
        tally(check_names(&st, &members, &hash, &original).await?, "before the kills");
        checks += 1;
    }
    // The kills, in rounds of four: (0) the first listed leader, left down; (1) the second,
    // which leads meanwhile, restarted at once (no leader until it is back), then the first;
    // (2) the first, restarted at once; (3) the first, restarted after the second took over.
    let (mut takeover, mut at_once, mut handback) = (Vec::new(), Vec::new(), Vec::new());
    let mut killed = [0usize; 2];
    let mut down: Option<usize> = None;
    for k in 0..kills {
        let up: Vec<usize> = (0..nodes.len()).filter(|j| Some(*j) != down).collect();
        let (pos, _) = settled(&up.iter().map(|j| &nodes[*j]).collect::<Vec<_>>())
            .await
            .with_context(|| format!("before kill {k}"))?;
        let li = up[pos];
        killed[li] += 1;
        let t = Instant::now();
        eprintln!("   names: kill {k} of {kills}: the leader {} (listed {})", nodes[li].addr(), li + 1);
        nodes[li].kill();
        let others: Vec<usize> = up.iter().copied().filter(|j| *j != li).collect();
        let step = if k + 1 == kills && k % 4 == 0 { 3 } else { k % 4 };
        if let Some(first) = down {
            // The second listed, leading alone, killed: restarted at once, it leads again.
            nodes[li] = Node::spawn_listed(env, ports[li], caps[li], &list)?;
            nodes[li].ready().await?;
            let (_, st) = settled(&up.iter().map(|j| &nodes[*j]).collect::<Vec<_>>())
                .await
                .with_context(|| format!("kill {k}: the second listed restarted alone"))?;
            at_once.push(ms(t.elapsed()));
            let members = [&nodes[2], &nodes[3]];
            tally(check_names(&st, &members, &hash, &original).await?, &format!("kill {k}, restarted alone"));
            checks += 1;
            // Then the first listed comes back (and leads).
            let t = Instant::now();
            nodes[first] = Node::spawn_listed(env, ports[first], caps[first], &list)?;
            nodes[first].ready().await?;
            let (_, st) = settled(&nodes.iter().collect::<Vec<_>>())
                .await
                .with_context(|| format!("kill {k}: the first listed restarted"))?;
            handback.push(ms(t.elapsed()));
            let members = [&nodes[2], &nodes[3]];
            tally(check_names(&st, &members, &hash, &original).await?, &format!("kill {k}, the first back"));
            checks += 1;
            down = None;
            continue;
        }
        if step == 0 || step == 3 {
            // The other listed node takes over; checked while the killed one is down.
            let (_, st) = settled(&others.iter().map(|j| &nodes[*j]).collect::<Vec<_>>())
                .await
                .with_context(|| format!("kill {k}: the takeover"))?;
            takeover.push(ms(t.elapsed()));
            let members = [&nodes[2], &nodes[3]];
            tally(check_names(&st, &members, &hash, &original).await?, &format!("kill {k}, taken over"));
            checks += 1;
            if step == 0 {
                down = Some(li);
                continue;
            }
        }
        let t_restart = Instant::now();
        nodes[li] = Node::spawn_listed(env, ports[li], caps[li], &list)?;
        nodes[li].ready().await?;
        let (_, st) = settled(&nodes.iter().collect::<Vec<_>>())
            .await
            .with_context(|| format!("kill {k}: after the restart"))?;
        if step == 3 {
            handback.push(ms(t_restart.elapsed()));
        } else {
            at_once.push(ms(t.elapsed()));
        }
        let members = [&nodes[2], &nodes[3]];
        tally(check_names(&st, &members, &hash, &original).await?, &format!("kill {k}, restarted"));
        checks += 1;
    }
    let context = format!(
        "{n} names on 2 members ({}/{}), 2 listed leaders, {kills} kills of the leader (first listed {}, second {}); \
         {checks} checks, each: the leader's table and a create by name of every name through each member; \
         {failed} creates by name failed",
        spread[0], spread[1], killed[0], killed[1]
    );
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let list_of = |s: &BTreeSet<String>| {
        if s.is_empty() {
            String::new()
        } else {
            format!("{:?}", s.iter().take(8).collect::<Vec<_>>())
        }
    };
    Ok(vec![
        Figure::value("B8.names.lost", "global names lost over leader kills", lost.len() as f64, "names")
            .target("0", 0.0, true)
            .note(&context)
            .note(list_of(&lost)),
        Figure::value("B8.names.dup", "global names held twice over leader kills", duplicated.len() as f64, "names")
            .target("0", 0.0, true)
            .note(list_of(&duplicated)),
        Figure::latency(
            "B8.names.takeover",
            "first listed leader SIGKILLed: kill to the second leading with gathering == false, all agreeing",
            &takeover,
            "ms",
        )
        .note(format!("max {:.0} ms", max(&takeover))),
        Figure::latency(
            "B8.names.restart",
            "leader SIGKILLed and restarted at once on its port: kill to it leading again, gathered, all agreeing",
            &at_once,
            "ms",
        )
        .note(format!("max {:.0} ms; includes the second listed killed while leading alone", max(&at_once))),
        Figure::latency(
            "B8.names.back",
            "first listed restarted while the second leads: spawn to it leading again, gathered, all agreeing",
            &handback,
            "ms",
        )
        .note(format!("max {:.0} ms", max(&handback))),
    ])
}
