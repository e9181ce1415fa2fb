//! B10.watch: `troupe watch` from a save to the new behaviour answering, less cargo's build.
//!
//! A copy of `tests/plugins/counter-v2` (its own workspace, the SDK by absolute path, the
//! repository's Cargo.lock, built offline into `target/bench/watch-target` so that its
//! dependencies are built once for every run) is watched by `troupe watch --port P --rounds N`
//! against a node of its own. Once the first round has loaded it, the bench creates a
//! `counter.Counter` and sends it `inc` every millisecond; then it rewrites the source [`EDITS`]
//! times, each time changing the answer's prefix, and waits for the Counter to answer with the
//! new one.
//!
//! The figure is watch's own line, `ready_after_build_ms` (cargo's exit to the node's answer to
//! the upgrade). The check beside it is the bench's: from the library's mtime (written by the
//! linker just before cargo exits) to the first answer with the new prefix, and from the save
//! to that answer less watch's cargo time (which includes the file watcher's debounce).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context as _, Result};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use troupe_actor_abi::message::{Address, Payload};
use troupe_node::client::Client;

use super::ms;
use crate::harness::{create, Env, Node, Raw};
use crate::{percentile, Figure, Opts};

/// Saves after the first round (each one a round of watch: build, pack, load, upgrade).
const EDITS: usize = 3;
/// The first round builds the crate's dependencies when `target/bench/watch-target` is new.
const FIRST_ROUND: Duration = Duration::from_secs(600);
/// An incremental build of the crate, and the rest of a round.
const ROUND: Duration = Duration::from_secs(120);
/// The crate's package (and library) name.
const CRATE: &str = "bench-watch-counter";

/// What one save gave.
struct Round {
    /// watch's `ready_after_build_ms`.
    ready_ms: f64,
    /// watch's timing sentence (`built in … (cargo); packed …, loaded …, upgraded …; …`).
    timings: String,
    /// From the library's mtime to the first answer of the new version, as the bench saw it.
    seen_after_lib_ms: f64,
    /// From the save to that answer, less watch's cargo time.
    seen_after_save_ms: f64,
}

pub(super) async fn b10_watch(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let troupe = env.troupe();
    let help = std::process::Command::new(&troupe).args(["watch", "--help"]).output()?;
    if !help.status.success() {
        return Ok(vec![
            Figure::value("B10.watch", "troupe watch", f64::NAN, "ms").note("n/a (troupe watch not built)")
        ]);
    }
    let krate = make_crate(env)?;
    let node = Node::start(env, "", None).await?;
    let edits = opts.scale(EDITS, 1);
    let log = env.path("watch.log");
    let mut watch = Command::new(&troupe)
        .arg("watch")
        .arg(&krate)
        .args(["--port", &node.port.to_string(), "--rounds", &(edits + 1).to_string()])
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_NET_OFFLINE", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start troupe watch")?;
    let stdout = watch.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut out = BufReader::new(stdout).lines();
    let result = rounds(&node, &krate, &mut out, edits).await;
    let rounds = match result {
        Ok(r) => r,
        Err(e) => bail!("{e:#}; watch's stderr ends: {}", tail(&log)),
    };
    finish(&mut watch).await;
    Ok(figures(&rounds))
}

/// The crate watch builds: counter-v2's source under a manifest of its own.
fn make_crate(env: &Env) -> Result<PathBuf> {
    let root = repo_root();
    let dir = env.path(CRATE);
    std::fs::create_dir_all(dir.join("src"))?;
    let manifest = format!(
        "[package]\nname = \"{CRATE}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\n\
         troupe-actor-abi = {{ path = \"{}\" }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
         [workspace]\n",
        root.join("actor-abi").display()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    std::fs::copy(root.join("tests/plugins/counter-v2/src/lib.rs"), dir.join("src/lib.rs"))?;
    Ok(dir)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn target_dir() -> PathBuf {
    repo_root().join("target/bench/watch-target")
}

/// The first round (a load), a Counter, then `edits` saves, each until the Counter answers
/// from the new build.
async fn rounds(
    node: &Node,
    krate: &Path,
    out: &mut Lines<BufReader<ChildStdout>>,
    edits: usize,
) -> Result<Vec<Round>> {
    let t = Instant::now();
    let (first, _) = round_lines(out, FIRST_ROUND).await?;
    let hash = first
        .iter()
        .find_map(|l| l.strip_prefix("loaded "))
        .ok_or_else(|| anyhow!("no hash in {first:?}"))?;
    eprintln!("   watch's first round took {:.1} s", t.elapsed().as_secs_f64());
    let mut c = Client::connect(&node.addr()).await?;
    let counter = create(&mut c, hash.trim(), "counter.Counter", None).await?;
    let mut raw = Raw::connect(&node.addr()).await?;
    let src = krate.join("src/lib.rs");
    let mut prefix = "v2".to_string();
    let mut rounds = Vec::new();
    for k in 0..edits {
        // The watcher settles, and the Counter answers from the running build.
        tokio::time::sleep(Duration::from_millis(300)).await;
        poll_until(&mut raw, &counter, &prefix, Duration::from_secs(5)).await?;
        let next = format!("w{}", k + 1);
        let text = std::fs::read_to_string(&src)?;
        let saved = Instant::now();
        std::fs::write(&src, text.replace(&format!("\"{prefix} {{label}}"), &format!("\"{next} {{label}}")))?;
        let seen = poll_until(&mut raw, &counter, &next, ROUND).await?;
        let seen_wall = SystemTime::now() - seen.elapsed();
        let (lines, ready_ms) = round_lines(out, ROUND).await?;
        let timings = lines.iter().find(|l| l.starts_with("built in ")).cloned().unwrap_or_default();
        let cargo_ms = cargo_ms(&timings).ok_or_else(|| anyhow!("no cargo time in {lines:?}"))?;
        let lib = target_dir().join(format!("release/lib{}.so", CRATE.replace('-', "_")));
        let lib_at = std::fs::metadata(&lib)?.modified()?;
        let seen_after_lib_ms =
            seen_wall.duration_since(lib_at).map(ms).unwrap_or_else(|e| -ms(e.duration()));
        let seen_after_save_ms = ms(seen - saved) - cargo_ms;
        rounds.push(Round { ready_ms, timings, seen_after_lib_ms, seen_after_save_ms });
        prefix = next;
    }
    Ok(rounds)
}

/// Sends `inc` to the Counter every millisecond until it answers with `prefix`; when the first
/// such answer came.
async fn poll_until(raw: &mut Raw, counter: &Address, prefix: &str, within: Duration) -> Result<Instant> {
    let deadline = tokio::time::Instant::now() + within;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = tick.tick() => raw.send(counter, Payload::Text("inc".into())).await?,
            m = raw.next() => {
                let at = Instant::now();
                if let Payload::Text(t) = m?.payload {
                    if t.starts_with(&format!("{prefix} ")) {
                        return Ok(at);
                    }
                    last = t;
                }
            }
            _ = tokio::time::sleep_until(deadline) => bail!("no answer starting with {prefix} within {within:?} (last: {last})"),
        }
    }
}

/// watch's lines up to and including its `watch: round=…` line, and that line's
/// `ready_after_build_ms`.
async fn round_lines(
    out: &mut Lines<BufReader<ChildStdout>>,
    within: Duration,
) -> Result<(Vec<String>, f64)> {
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let line = match tokio::time::timeout_at(deadline, out.next_line()).await {
            Ok(Ok(Some(l))) => l,
            Ok(Ok(None)) => bail!("watch exited; it said {lines:?}"),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => bail!("no round of watch within {within:?}; it said {lines:?}"),
        };
        if let Some(rest) = line.strip_prefix("watch: round=") {
            let ready = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("ready_after_build_ms="))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow!("odd line {line}"))?;
            lines.push(line);
            return Ok((lines, ready));
        }
        lines.push(line);
    }
}

/// Cargo's time from `built in 1.84 s (cargo); …` (or `… 870 ms …`), in ms.
fn cargo_ms(timings: &str) -> Option<f64> {
    let rest = timings.strip_prefix("built in ")?;
    let (value, rest) = rest.split_once(' ')?;
    let v: f64 = value.parse().ok()?;
    match rest.split_whitespace().next()? {
        "s" => Some(v * 1000.0),
        "ms" => Some(v),
        _ => None,
    }
}

/// Waits for watch to exit after its last round (it was told how many), else kills it.
async fn finish(watch: &mut Child) {
    if tokio::time::timeout(Duration::from_secs(10), watch.wait()).await.is_err() {
        let _ = watch.kill().await;
    }
}

fn tail(log: &Path) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let start = s.len().saturating_sub(600);
    s.get(start..).unwrap_or_default().replace('\n', " / ")
}

fn figures(rounds: &[Round]) -> Vec<Figure> {
    let ready: Vec<f64> = rounds.iter().map(|r| r.ready_ms).collect();
    let lib: Vec<f64> = rounds.iter().map(|r| r.seen_after_lib_ms).collect();
    let save: Vec<f64> = rounds.iter().map(|r| r.seen_after_save_ms).collect();
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(", ");
    let timings = rounds.iter().map(|r| r.timings.as_str()).collect::<Vec<_>>().join(" / ");
    vec![
        Figure::value(
            "B10.watch",
            "`troupe watch`: cargo's exit to the node's answer to the upgrade (watch's ready_after_build_ms), median",
            percentile(&ready, 50.0),
            "ms",
        )
        .target("≤ 50 ms", 50.0, true)
        .note(format!("{} saves: {} ms; {timings}", rounds.len(), list(&ready))),
        Figure::value(
            "B10.watch.seen",
            "same, seen by a client: library written (its mtime) to a Counter's first answer from the new build, median",
            percentile(&lib, 50.0),
            "ms",
        )
        .note(format!(
            "{} ms; from the save, less watch's cargo time (includes the file watcher's 100 ms debounce): {} ms",
            list(&lib),
            list(&save)
        )),
    ]
}
