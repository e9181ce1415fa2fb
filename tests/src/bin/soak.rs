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

/// Open descriptors and memory mappings of a process (0 when it cannot be read).
fn fds_and_maps(pid: u32) -> (usize, usize) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map(|m| m.lines().count()).unwrap_or(0);
    (fds, maps)
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

/// Each node's capabilities: the leader has none, the members hold the encoders between them
/// (the demo's layout).
const CAPS: [&str; 3] = ["", MORSE_CAESAR, BASE64];

/// The leader's threads and RSS (KiB): at the start, the most seen during the run, at the end;
/// its descriptors and mappings at the start and the end. The leader is never killed, so its
/// process is the same throughout.
struct LeaderUse {
    pid: u32,
    threads0: usize,
    rss0: u64,
    threads_max: usize,
    rss_max: u64,
    threads1: usize,
    rss1: u64,
    fds_maps0: (usize, usize),
    fds_maps1: (usize, usize),
}

/// The convention under soak and what the steps keep between them.
struct Soak<'d> {
    dir: &'d TestDir,
    conv: Convention,
    leader_addr: String,
    /// The encoders' hash, loaded on the leader, for the demo requests.
    encoders: String,
    /// The faulty plugin, of which every fresh version is a variant.
    faulty: ZipVariants,
    rng: Rng,
    tally: Tally,
    /// The last fresh version's number.
    version: u64,
    /// Whether base64 is currently taken away from node 2.
    capped: bool,
}

fn main() {
    let seconds: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let seed: u64 = std::env::var("SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_7e0e);
    let dir = TestDir::new();
    let mut soak = Soak::start(&dir, seed);
    let mut leader = soak.baseline();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut step = 0u64;
    eprintln!(
        "soak: {seconds}s, seed {seed}, leader pid {}: {} threads, {} KiB RSS",
        leader.pid, leader.threads0, leader.rss0
    );
    while Instant::now() < deadline {
        step += 1;
        let when = format!("step {step} ({:.0}s)", started.elapsed().as_secs_f64());
        if soak.step(&when) {
            soak.check(&when, &mut leader);
        }
    }
    soak.finish(&mut leader);
    println!("soak summary ({:.0}s, {step} steps, seed {seed})", started.elapsed().as_secs_f64());
    summary(&soak.tally, &leader);
    let failed = !soak.tally.violations.is_empty();
    // `exit` skips destructors: the nodes and the temporary directory go first.
    drop(soak);
    drop(dir);
    std::process::exit(i32::from(failed));
}

impl Soak<'_> {
    /// Starts the three nodes and loads the encoders on the leader.
    fn start(dir: &TestDir, seed: u64) -> Soak<'_> {
        let specs = CAPS.map(|caps| (caps, FAST_HEARTBEAT));
        let conv = Convention::start(dir, &specs);
        let leader_addr = conv.leader_addr().to_string();
        let encoders = conv.leader().load(&dir.encoders_zip());
        let faulty = ZipVariants::new(&dir.faulty_zip());
        Soak {
            dir,
            conv,
            leader_addr,
            encoders,
            faulty,
            rng: Rng(seed | 1),
            tally: Tally::default(),
            version: 0,
            capped: false,
        }
    }

    /// Warms up, then takes the baseline of the leader (it is never killed).
    fn baseline(&self) -> LeaderUse {
        for _ in 0..3 {
            let _ = self.conv.leader().app(&self.encoders, "hello");
        }
        let l = self.conv.leader();
        let (pid, threads0, rss0) = (l.pid(), l.threads(), rss_kib(l.pid()));
        let fds_maps0 = fds_and_maps(pid);
        LeaderUse {
            pid,
            threads0,
            rss0,
            threads_max: threads0,
            rss_max: rss0,
            threads1: 0,
            rss1: 0,
            fds_maps0,
            fds_maps1: (0, 0),
        }
    }

    /// One step, chosen at random; false when it stopped early (its violation recorded), and
    /// the run goes on to the next step without the checks.
    fn step(&mut self, when: &str) -> bool {
        match self.rng.below(10) {
            0..=3 => self.demo_request(when),
            4..=6 => return self.fresh_version(when),
            7 => self.kill_and_restart(),
            _ => self.toggle_base64(when),
        }
        true
    }

    /// The demo request, through the leader: answered or failed with a reason.
    fn demo_request(&mut self, when: &str) {
        let out = self.conv.leader().app(&self.encoders, "hello");
        if out.code == 0 && out.sorted_lines() == hello_lines() {
            self.tally.apps_ok += 1;
        } else if out.code != 0 && !out.stderr.trim().is_empty() {
            self.tally.apps_failed_with_reason += 1;
        } else {
            self.tally
                .violations
                .push(format!("{when}: app answered neither fully nor with a reason:\n{out}"));
        }
    }

    /// A fresh version on a random node: create, ask, unload; its files must go. False when
    /// the load failed.
    fn fresh_version(&mut self, when: &str) -> bool {
        let i = self.rng.below(3) as usize;
        self.version += 1;
        let zip = self.dir.join(&format!("faulty-{}.zip", self.version));
        std::fs::write(&zip, self.faulty.make(&format!("0.9.{}", self.version))).expect("write a zip");
        let node = self.conv.node(i);
        let out = node.run("load", &[&zip.display().to_string()]);
        if out.code != 0 {
            self.tally.violations.push(format!("{when}: load on node {i} failed:\n{out}"));
            return false;
        }
        self.tally.loads += 1;
        let hash = out.stdout.trim().to_string();
        let answered = echo(node, &hash);
        self.tally.creates += 1;
        if answered.as_deref() != Some("echo: soak") {
            self.tally.violations.push(format!("{when}: the echo of {hash} on node {i} said {answered:?}"));
        }
        let out = node.run("unload", &[&hash, "--grace", "0s"]);
        if out.code != 0 {
            self.tally.violations.push(format!("{when}: unload failed:\n{out}"));
        }
        self.tally.unloads += 1;
        // Only the node that loaded it held its files.
        let left: Vec<_> = files_under(&node.store())
            .into_iter()
            .filter(|f| f.display().to_string().contains(&hash))
            .collect();
        if !left.is_empty() {
            self.tally.violations.push(format!("{when}: files of unloaded {hash} remain: {left:?}"));
        }
        true
    }

    /// kill -9 a member and restart it where it was.
    fn kill_and_restart(&mut self) {
        let i = 1 + self.rng.below(2) as usize;
        let port = self.conv.node(i).port();
        self.conv.node_mut(i).kill9();
        self.tally.kills += 1;
        let extra = [&["--convention", &self.leader_addr][..], FAST_HEARTBEAT].concat();
        let restarted = NodeProc::start_on(self.dir, port, CAPS[i], &extra);
        self.conv.nodes[i] = Some(restarted);
        self.conv.wait_settled();
    }

    /// Takes base64 away from its node, or gives it back.
    fn toggle_base64(&mut self, when: &str) {
        let port = self.conv.node(2).port_arg();
        let sign = if self.capped { "+" } else { "-" };
        let out = troupe(&["chgcap", &port, sign, BASE64], None);
        if out.code != 0 {
            self.tally.violations.push(format!("{when}: chgcap failed:\n{out}"));
        }
        self.capped = !self.capped;
        self.tally.chgcaps += 1;
    }

    /// The invariants after a step: every node's store and mappings, the leader's peaks.
    fn check(&mut self, when: &str, leader: &mut LeaderUse) {
        for n in self.conv.nodes.iter().flatten() {
            check_node(n, &mut self.tally, when);
        }
        let l = self.conv.leader();
        leader.threads_max = leader.threads_max.max(l.threads());
        leader.rss_max = leader.rss_max.max(rss_kib(l.pid()));
    }

    /// Checks that the leader stayed roughly flat, then stops every node.
    fn finish(&mut self, leader: &mut LeaderUse) {
        leader.threads1 = self.conv.leader().threads();
        leader.rss1 = rss_kib(leader.pid);
        leader.fds_maps1 = fds_and_maps(leader.pid);
        let (threads0, threads1, rss0, rss1) = (leader.threads0, leader.threads1, leader.rss0, leader.rss1);
        // "Roughly flat": no more than a few dozen threads above the baseline, RSS within 2x + 64 MiB.
        if threads1 > threads0 + 32 {
            self.tally.violations.push(format!("leader threads grew from {threads0} to {threads1}"));
        }
        if rss1 > rss0 * 2 + 64 * 1024 {
            self.tally.violations.push(format!("leader RSS grew from {rss0} KiB to {rss1} KiB"));
        }
        for n in self.conv.nodes.iter_mut().flatten() {
            n.stop();
        }
    }
}

/// Creates a `faulty.Echo` of `hash` on `node` and asks it once; its answer, if any.
fn echo(node: &NodeProc, hash: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut c = node.client().await;
        let a = create(&mut c, "faulty.Echo", hash).await.ok()?;
        tokio::time::timeout(REPLY_TIMEOUT, ask(&mut c, &a, "soak")).await.ok()
    })
}

/// The counts, the leader's use and the first violations, after the summary's first line.
fn summary(tally: &Tally, l: &LeaderUse) {
    println!(
        "  app requests: {} answered, {} failed with a reason",
        tally.apps_ok, tally.apps_failed_with_reason
    );
    println!(
        "  loads {}, creates {}, unloads {}, kill -9 + restart {}, chgcap {}",
        tally.loads, tally.creates, tally.unloads, tally.kills, tally.chgcaps
    );
    println!(
        "  leader threads {} → {} (max {}); RSS {} → {} KiB (max {})",
        l.threads0, l.threads1, l.threads_max, l.rss0, l.rss1, l.rss_max
    );
    println!(
        "  leader descriptors {} → {}; mappings {} → {}",
        l.fds_maps0.0, l.fds_maps1.0, l.fds_maps0.1, l.fds_maps1.1
    );
    println!("  invariant violations: {}", tally.violations.len());
    for v in tally.violations.iter().take(20) {
        println!("    - {v}");
    }
}
