//! `make soak`: SOAK_SECONDS (default 600) of mixed load / unload / create / kill -9 + restart /
//! chgcap across a three-node convention (the demo's layout), with invariants checked after
//! every step, and a summary at the end. Exit code 0 only if no invariant was ever broken.
//!
//! Invariants: every `troupe app` request is answered (exit 0, four lines) or fails with a
//! reason on stderr; no node maps a store file of a version its status does not list; no store
//! holds a directory of a version its status does not list; after an unload the version's
//! files are gone; the leader's thread count and RSS stay roughly flat.

use std::time::{Duration, Instant};

use troupe_tests::*;

/// A small deterministic generator (xorshift): a soak run is reproducible from its seed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Default)]
struct Tally {
    apps_ok: u64,
    apps_failed_with_reason: u64,
    loads: u64,
    unloads: u64,
    creates: u64,
    kills: u64,
    chgcaps: u64,
    violations: Vec<String>,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .map(|v| v.trim().trim_end_matches(" kB").trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Store files and mappings must belong to versions the node lists.
fn check_node(node: &NodeProc, tally: &mut Tally, when: &str) {
    let Some(st) = node.try_status() else {
        tally.violations.push(format!("{when}: {} does not answer status", node.addr()));
        return;
    };
    let listed: Vec<String> = st.versions.iter().map(|v| format!("{}-{}", v.hash, v.generation)).collect();
    let store = node.store();
    for f in files_under(&store) {
        let owner = f.strip_prefix(&store).ok().and_then(store_file_owner);
        if !owner.is_some_and(|o| listed.contains(&o)) {
            tally.violations.push(format!(
                "{when}: {} keeps {} of an unlisted version",
                node.addr(),
                f.display()
            ));
        }
    }
    for v in node.mapped_versions() {
        if !listed.contains(&v) {
            tally.violations.push(format!("{when}: {} still maps a library of {v}", node.addr()));
        }
    }
}

fn main() {
    let seconds: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let seed: u64 = std::env::var("SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_7e0e);
    let dir = TestDir::new();
    let specs: [(&str, &[&str]); 3] =
        [("", FAST_HEARTBEAT), (MORSE_CAESAR, FAST_HEARTBEAT), (BASE64, FAST_HEARTBEAT)];
    let caps = [specs[0].0, specs[1].0, specs[2].0];
    let mut conv = Convention::start(&dir, &specs);
    let leader_addr = conv.leader_addr().to_string();
    let encoders = conv.leader().load(&dir.encoders_zip());
    let faulty = ZipVariants::new(&dir.faulty_zip());
    let mut rng = Rng(seed | 1);
    let mut tally = Tally::default();
    let mut version = 0u64;
    let mut capped = false;

    // Warm up, then take the baseline of the leader (it is never killed).
    for _ in 0..3 {
        let _ = conv.leader().app(&encoders, "hello");
    }
    let (pid, threads0, rss0) = {
        let l = conv.leader();
        (l.pid(), l.threads(), rss_kib(l.pid()))
    };
    let (mut threads_max, mut rss_max) = (threads0, rss0);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut step = 0u64;
    eprintln!("soak: {seconds}s, seed {seed}, leader pid {pid}: {threads0} threads, {rss0} KiB RSS");
    while Instant::now() < deadline {
        step += 1;
        let when = format!("step {step} ({:.0}s)", started.elapsed().as_secs_f64());
        match rng.below(10) {
            // The demo request, through the leader: answered or failed with a reason.
            0..=3 => {
                let out = conv.leader().app(&encoders, "hello");
                if out.code == 0 && out.sorted_lines() == hello_lines() {
                    tally.apps_ok += 1;
                } else if out.code != 0 && !out.stderr.trim().is_empty() {
                    tally.apps_failed_with_reason += 1;
                } else {
                    tally
                        .violations
                        .push(format!("{when}: app answered neither fully nor with a reason:\n{out}"));
                }
            }
            // A fresh version on a random node: create, ask, unload; its files must go.
            4..=6 => {
                let i = rng.below(3) as usize;
                version += 1;
                let zip = dir.join(&format!("faulty-{version}.zip"));
                std::fs::write(&zip, faulty.make(&format!("0.9.{version}"))).expect("write a zip");
                let node = conv.node(i);
                let out = node.run("load", &[&zip.display().to_string()]);
                if out.code != 0 {
                    tally.violations.push(format!("{when}: load on node {i} failed:\n{out}"));
                    continue;
                }
                tally.loads += 1;
                let hash = out.stdout.trim().to_string();
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                let answered = rt.block_on(async {
                    let mut c = node.client().await;
                    let a = create(&mut c, "faulty.Echo", &hash).await.ok()?;
                    tokio::time::timeout(REPLY_TIMEOUT, ask(&mut c, &a, "soak")).await.ok()
                });
                tally.creates += 1;
                if answered.as_deref() != Some("echo: soak") {
                    tally
                        .violations
                        .push(format!("{when}: the echo of {hash} on node {i} said {answered:?}"));
                }
                let out = node.run("unload", &[&hash, "--grace", "0s"]);
                if out.code != 0 {
                    tally.violations.push(format!("{when}: unload failed:\n{out}"));
                }
                tally.unloads += 1;
                for n in conv.nodes.iter().flatten() {
                    let left: Vec<_> = files_under(&n.store())
                        .into_iter()
                        .filter(|f| f.display().to_string().contains(&hash))
                        .collect();
                    if !left.is_empty() && n.addr() == node.addr() {
                        tally.violations.push(format!("{when}: files of unloaded {hash} remain: {left:?}"));
                    }
                }
            }
            // kill -9 a member and restart it where it was.
            7 => {
                let i = 1 + rng.below(2) as usize;
                let port = conv.node(i).port();
                conv.node_mut(i).kill9();
                tally.kills += 1;
                let restarted = NodeProc::start_on(
                    &dir,
                    port,
                    caps[i],
                    &[&["--convention", &leader_addr][..], FAST_HEARTBEAT].concat(),
                );
                conv.nodes[i] = Some(restarted);
                conv.wait_settled();
            }
            // Take base64 away from its node and give it back.
            _ => {
                let port = conv.node(2).port_arg();
                let sign = if capped { "+" } else { "-" };
                let out = troupe(&["chgcap", &port, sign, BASE64], None);
                if out.code != 0 {
                    tally.violations.push(format!("{when}: chgcap failed:\n{out}"));
                }
                capped = !capped;
                tally.chgcaps += 1;
            }
        }
        for n in conv.nodes.iter().flatten() {
            check_node(n, &mut tally, &when);
        }
        let l = conv.leader();
        threads_max = threads_max.max(l.threads());
        rss_max = rss_max.max(rss_kib(l.pid()));
    }
    let (threads1, rss1) = (conv.leader().threads(), rss_kib(pid));
    // "Roughly flat": no more than a few dozen threads above the baseline, RSS within 2x + 64 MiB.
    if threads1 > threads0 + 32 {
        tally.violations.push(format!("leader threads grew from {threads0} to {threads1}"));
    }
    if rss1 > rss0 * 2 + 64 * 1024 {
        tally.violations.push(format!("leader RSS grew from {rss0} KiB to {rss1} KiB"));
    }
    for i in 0..3 {
        if let Some(n) = conv.nodes[i].as_mut() {
            n.stop();
        }
    }
    println!("soak summary ({:.0}s, {step} steps, seed {seed})", started.elapsed().as_secs_f64());
    println!(
        "  app requests: {} answered, {} failed with a reason",
        tally.apps_ok, tally.apps_failed_with_reason
    );
    println!(
        "  loads {}, creates {}, unloads {}, kill -9 + restart {}, chgcap {}",
        tally.loads, tally.creates, tally.unloads, tally.kills, tally.chgcaps
    );
    println!("  leader threads {threads0} → {threads1} (max {threads_max}); RSS {rss0} → {rss1} KiB (max {rss_max})");
    println!("  invariant violations: {}", tally.violations.len());
    for v in tally.violations.iter().take(20) {
        println!("    - {v}");
    }
    std::process::exit(if tally.violations.is_empty() { 0 } else { 1 });
}
