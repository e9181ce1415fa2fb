//! `troupe watch CRATE`: the plugin author's loop. Each time the crate's sources change, it is
//! built and packed as `troupe pack --build` does it (the code is pack.rs's), loaded (or
//! deployed to a group), and the live actors of the version running until then move to it
//! (`Request::Upgrade`, or the deploy's `migrate`); then it waits for the next change.
//!
//! Every round is timed; the line `watch: round=N step=… ready_after_build_ms=…` gives the time
//! from cargo's exit to the node's answer (`make bench` reports it as B10.watch). Which file
//! events count, and the debounce, are in `changes.rs`.

mod changes;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use notify::{RecursiveMode, Watcher};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::UnboundedReceiver;
use troupe_node::client::Client;
use troupe_node::protocol::{Request, Response, UpgradeOptions, UpgradeReport};

use super::pack::{build_cdylibs_timed, pack_zip, PackOptions};
use super::upgrade::{render_report, report_code, short, type_pair, upgrade_options};
use super::{connect, node_addr};
use crate::{refused, report, usage, Failure, EXIT_OK, EXIT_REFUSED};
use changes::{changes_content, completes_write, relevant_paths, Debounce};

/// Rebuild, reload and live-upgrade a plugin crate each time its source changes.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  troupe watch hello                          # node on 1900; loads, then upgrades at each save\n  troupe watch hello --port 7001 --group hello  # deploy to @hello (with --migrate) instead\n  troupe watch counter --map counter.Counter=counter.Tally\n\nEach round: cargo build --release of CRATE (as troupe pack --build does; cargo's messages\nand the compiler's errors are shown as they are), pack, load into the node (or deploy to\n--group), then move the live actors of the version running until then to the new one, as\ntroupe upgrade does: actors whose type migrates move at the same address with their state;\nthe others stay on the old version, which drains. The first round only loads.\n\nWhat triggers a round: a change under CRATE/src/, to CRATE/Cargo.toml or CRATE/build.rs,\nonce no other change came for --debounce-ms, or at once when the file is closed after\nwriting or renamed into place (editor temp files, hidden files and target/ are ignored). A new build with the same hash as the running one changes nothing.\n\nOn failure: a build that fails, a load the node refuses or an upgrade that fails leaves\nthe previous version running, and watch says so and keeps watching. When the upgrade\nfailed or was rolled back, every actor is on the previous version: the new one, left\nwithout actors, is unloaded again (with --group, the previous version is made active\nagain).\n\nEach round ends with its timings and a line for scripts:\n  watch: round=2 step=upgrade ready_after_build_ms=9.2\n(from cargo's exit to the node's answer).\n\nCtrl-C stops watching; the version loaded last stays loaded, with its actors. With\n--rounds N, watch stops after N rounds (a round is one build) and exits with the last\nround's code (0 ok, 1 it failed)."
)]
pub(crate) struct WatchArgs {
    /// The plugin crate's directory (the one with Cargo.toml and src/).
    #[arg(value_name = "CRATE")]
    krate: PathBuf,
    /// Admin port (or host:port) of the node.
    #[arg(long, default_value = "1900")]
    port: String,
    /// Deploy each build as the active version of this group (with --migrate) instead of
    /// loading it and upgrading.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// A renamed type: actors of OLD become actors of NEW in the upgrade. Repeat for several.
    #[arg(long = "map", value_name = "OLD=NEW", value_parser = type_pair)]
    map: Vec<(String, String)>,
    /// If any actor fails to move, move every actor back (the round fails).
    #[arg(long)]
    all_or_nothing: bool,
    /// How long no change must come before a round starts (a save that closes or renames the file
    /// starts it at once).
    #[arg(long, value_name = "MS", default_value_t = 100)]
    debounce_ms: u64,
    /// Stop after this many rounds (default: until Ctrl-C).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    rounds: Option<u64>,
}

/// The state of a watch between rounds.
struct Watch {
    /// The crate's directory, canonical (as the watcher reports paths).
    krate: PathBuf,
    port: String,
    group: Option<String>,
    options: UpgradeOptions,
    /// The version running now: the last one loaded whose actors moved to it.
    current: Option<String>,
    /// Rounds run so far.
    rounds: u64,
}

/// A step of a round that failed, and why (`None`: said already).
struct StepFailed {
    step: &'static str,
    failure: Option<Failure>,
}

fn at(step: &'static str) -> impl FnOnce(Failure) -> StepFailed {
    move |failure| StepFailed { step, failure: Some(failure) }
}

/// What the node answered in a round, with how long each request took.
struct Shipped {
    /// `load`, `upgrade`, `deploy` or `migrate`: the request whose answer ends the round.
    last_step: &'static str,
    /// Each request and how long it took, in order.
    steps: Vec<(&'static str, Duration)>,
    /// When the last answer came.
    answered: Instant,
    /// The round's exit code (1 when actors failed to move).
    code: u8,
}

/// `troupe watch CRATE [--port P] [--group NAME] [--map OLD=NEW]... [--debounce-ms N] [--rounds N]`.
pub(crate) async fn watch(args: WatchArgs) -> Result<u8, Failure> {
    let options = upgrade_options(&args.map, args.all_or_nothing, None)?;
    let krate = crate_dir(&args.krate)?;
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| refused(anyhow!("cannot catch Ctrl-C: {e}")))?;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .map_err(|e| refused(anyhow!("cannot watch files: {e}")))?;
    for (path, mode) in
        [(krate.clone(), RecursiveMode::NonRecursive), (krate.join("src"), RecursiveMode::Recursive)]
    {
        watcher.watch(&path, mode).map_err(|e| refused(anyhow!("cannot watch {}: {e}", path.display())))?;
    }
    println!(
        "watching {} (src/, Cargo.toml, build.rs) for {}; Ctrl-C stops, the version loaded last stays",
        krate.display(),
        node_addr(&args.port)
    );
    let mut w = Watch { krate, port: args.port, group: args.group, options, current: None, rounds: 0 };
    let mut debounce = Debounce::new(Duration::from_millis(args.debounce_ms));
    let mut changed = Vec::new();
    let code = loop {
        let Some(code) = w.round(&changed, &mut sigint).await else {
            break w.stopped("Ctrl-C", EXIT_OK);
        };
        if args.rounds.is_some_and(|n| w.rounds >= n) {
            break w.stopped(&format!("after {} rounds", w.rounds), code);
        }
        match next_change(&w.krate, &mut events, &mut debounce, &mut sigint).await {
            Some(paths) => changed = paths,
            None => break w.stopped("Ctrl-C", EXIT_OK),
        }
    };
    drop(watcher);
    Ok(code)
}

/// CRATE, canonical, if it is a crate with a `src/` directory.
fn crate_dir(dir: &Path) -> Result<PathBuf, Failure> {
    if !dir.join("Cargo.toml").is_file() || !dir.join("src").is_dir() {
        return Err(usage(anyhow!(
            "{} is not a plugin crate (no Cargo.toml and src/ in it) — give the crate's directory, e.g. troupe watch hello after troupe new hello",
            dir.display()
        )));
    }
    dir.canonicalize().map_err(|e| usage(anyhow!("cannot resolve {}: {e}", dir.display())))
}

/// Waits for the next burst of relevant changes and returns its paths once it is due (see
/// [`Debounce`]); `None` on Ctrl-C.
async fn next_change(
    krate: &Path,
    events: &mut UnboundedReceiver<notify::Result<notify::Event>>,
    debounce: &mut Debounce,
    sigint: &mut Signal,
) -> Option<Vec<PathBuf>> {
    loop {
        let due = debounce.due();
        let wake = async move {
            match due {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sigint.recv() => return None,
            event = events.recv() => match event {
                Some(Ok(e)) if changes_content(&e.kind) => {
                    let paths = relevant_paths(krate, &e.paths);
                    if !paths.is_empty() {
                        debounce.note(Instant::now(), paths, completes_write(&e.kind));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => eprintln!("troupe: watching {}: {e}", krate.display()),
                None => return None,
            },
            _ = wake => {
                if let Some(paths) = debounce.take_if_due(Instant::now()) {
                    return Some(paths);
                }
            }
        }
    }
}

/// `3 ms`, `0.4 ms`, `1.84 s`.
fn human(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// The round's timing lines: what each step took, then the line for scripts.
fn timing_lines(
    round: u64,
    build: Duration,
    packed: Duration,
    shipped: &Shipped,
    built_at: Instant,
) -> String {
    let mut steps = vec![format!("packed {}", human(packed))];
    steps.extend(shipped.steps.iter().map(|(what, d)| format!("{what} {}", human(*d))));
    let ready = shipped.answered.saturating_duration_since(built_at);
    format!(
        "built in {} (cargo); {}; answering {} after the build\nwatch: round={round} step={} ready_after_build_ms={:.1}\n",
        human(build),
        steps.join(", "),
        human(ready),
        shipped.last_step,
        ready.as_secs_f64() * 1000.0
    )
}

impl Watch {
    fn running(&self) -> String {
        match &self.current {
            Some(h) => format!("still running {}", short(h)),
            None => "nothing loaded yet".into(),
        }
    }

    /// The last words of a watch; returns `code`.
    fn stopped(&self, why: &str, code: u8) -> u8 {
        match &self.current {
            Some(h) => println!("watch: stopped ({why}); {} stays loaded", short(h)),
            None => println!("watch: stopped ({why}); nothing was loaded"),
        }
        code
    }

    /// One round: build, pack, ship. `None` when Ctrl-C came during the build.
    async fn round(&mut self, changed: &[PathBuf], sigint: &mut Signal) -> Option<u8> {
        self.rounds += 1;
        if !changed.is_empty() {
            // Files that came and went (an editor's or sed's temporary copy) are not worth naming.
            let exist: Vec<&PathBuf> = changed.iter().filter(|p| self.krate.join(p).exists()).collect();
            let shown = if exist.is_empty() { changed.iter().collect() } else { exist };
            let names: Vec<String> = shown.iter().map(|p| p.display().to_string()).collect();
            println!("changed: {}", names.join(", "));
        }
        let started = Instant::now();
        let dir = self.krate.clone();
        let build = tokio::task::spawn_blocking(move || build_cdylibs_timed(&dir));
        let built = tokio::select! {
            built = build => built.unwrap_or_else(|e| Err(refused(anyhow!("the build task failed: {e}")))),
            _ = sigint.recv() => return None,
        };
        let (libs, built_at) = match built {
            Ok(b) => b,
            Err(f) => {
                let why = f.error.to_string();
                // Cargo has shown why (the compiler's errors, above); anything else is said here.
                if !why.starts_with("cargo build of") {
                    eprintln!("troupe: {why}");
                }
                eprintln!("build failed: {}", self.running());
                return Some(EXIT_REFUSED);
            }
        };
        let build_time = built_at - started;
        let packing = Instant::now();
        // Packed for speed: this is on the path from a save to the new code answering.
        let zip = match pack_zip(&PackOptions { fast: true, ..PackOptions::default() }, &libs) {
            Ok((zip, _)) => zip,
            Err(failure) => return Some(self.failed(at("pack")(failure))),
        };
        let packed = packing.elapsed();
        let hash = troupe_node::archive::sha256_hex(&zip);
        if self.current.as_deref() == Some(hash.as_str()) {
            println!("no change: {} is running already", short(&hash));
            return Some(EXIT_OK);
        }
        match self.ship(zip, &hash).await {
            Ok(shipped) => {
                print!("{}", timing_lines(self.rounds, build_time, packed, &shipped, built_at));
                Some(shipped.code)
            }
            Err(f) => Some(self.failed(f)),
        }
    }

    /// Says what failed and that the previous version runs on; returns the round's code.
    fn failed(&self, f: StepFailed) -> u8 {
        let code = f.failure.map_or(EXIT_REFUSED, |failure| report(Err(failure)));
        eprintln!("{} failed: {}", f.step, self.running());
        code.max(EXIT_REFUSED)
    }

    /// Loads or deploys the new zip and moves the running version's actors to it.
    async fn ship(&mut self, zip: Vec<u8>, hash: &str) -> Result<Shipped, StepFailed> {
        let mut c = connect(&self.port).await.map_err(at("load"))?;
        match self.group.clone() {
            Some(group) => self.deploy(&mut c, zip, &group).await,
            None => self.load_and_upgrade(&mut c, zip, hash).await,
        }
    }

    async fn load_and_upgrade(
        &mut self,
        c: &mut Client,
        zip: Vec<u8>,
        hash: &str,
    ) -> Result<Shipped, StepFailed> {
        let t = Instant::now();
        let info = format!("troupe watch {}", self.krate.display());
        let already = match c.request(Request::Load { zip, info }).await.map_err(|e| at("load")(e.into()))? {
            Response::Loaded { already_active, .. } => already_active,
            other => return Err(at("load")(refused(anyhow!("unexpected answer {other:?}")))),
        };
        let mut shipped = Shipped {
            last_step: "load",
            steps: vec![("loaded", t.elapsed())],
            answered: Instant::now(),
            code: EXIT_OK,
        };
        println!("loaded {hash}");
        let Some(from) = self.current.clone() else {
            self.current = Some(hash.to_string());
            return Ok(shipped);
        };
        let t = Instant::now();
        let request =
            Request::Upgrade { from: from.clone(), to: hash.to_string(), options: self.options.clone() };
        let answer = c.request(request).await;
        shipped.answered = Instant::now();
        shipped.steps.push(("upgraded", t.elapsed()));
        shipped.last_step = "upgrade";
        let moved = match answer {
            Ok(Response::Upgraded(r)) => r,
            Ok(other) => {
                report(Err(refused(anyhow!("unexpected answer {other:?}"))));
                return Err(self.undo_load(c, hash, already).await);
            }
            Err(e) => {
                report(Err(e.into()));
                return Err(self.undo_load(c, hash, already).await);
            }
        };
        print!("{}", render_report(&moved));
        if moved.rolled_back {
            return Err(self.undo_load(c, hash, already).await);
        }
        shipped.code = report_code(&moved);
        self.current = Some(hash.to_string());
        Ok(shipped)
    }

    /// After a failed upgrade (said already) every actor is on the version running before: the
    /// new one, which holds none, is unloaded again (unless it was loaded before the round).
    async fn undo_load(&self, c: &mut Client, hash: &str, already: bool) -> StepFailed {
        if !already {
            match c.request(Request::Unload { hash: hash.to_string(), grace_ms: None }).await {
                Ok(_) => eprintln!("unloaded {} again: it holds no actors", short(hash)),
                Err(e) => eprintln!("troupe: cannot unload {} again: {e}", short(hash)),
            }
        }
        StepFailed { step: "upgrade", failure: None }
    }

    /// Deploys to the group (migrating from the second round on); a rolled-back migration
    /// makes the previous version active again.
    async fn deploy(&mut self, c: &mut Client, zip: Vec<u8>, group: &str) -> Result<Shipped, StepFailed> {
        let migrate = self.current.as_ref().map(|_| self.options.clone());
        let migrating = migrate.is_some();
        let t = Instant::now();
        let request = Request::Deploy {
            zip,
            info: format!("troupe watch {}", self.krate.display()),
            group: group.to_string(),
            keep: 1,
            grace_ms: Some(10_000),
            migrate,
        };
        let answer = c.request(request).await.map_err(|e| at("deploy")(e.into()))?;
        let answered = Instant::now();
        let Response::Group { info, upgrade, .. } = answer else {
            return Err(at("deploy")(refused(anyhow!("unexpected answer {answer:?}"))));
        };
        let active = info.active.unwrap_or_default();
        println!("@{group}: active {active}");
        let step = if migrating { "migrate" } else { "deploy" };
        let mut shipped =
            Shipped { last_step: step, steps: vec![("deployed", t.elapsed())], answered, code: EXIT_OK };
        match upgrade {
            Some(moved) => {
                print!("{}", render_report(&moved));
                if moved.rolled_back {
                    return Err(self.roll_back(c, group, &moved).await);
                }
                shipped.code = report_code(&moved);
            }
            None if migrating => eprintln!("troupe: the node did not say what moved to {}", short(&active)),
            None => {}
        }
        self.current = Some(active);
        Ok(shipped)
    }

    /// The migration was rolled back: the group's previous version (which holds every actor
    /// again) becomes active again.
    async fn roll_back(&self, c: &mut Client, group: &str, moved: &UpgradeReport) -> StepFailed {
        match c.request(Request::Rollback { group: group.to_string() }).await {
            Ok(_) => println!("@{group}: active {} again", moved.from),
            Err(e) => eprintln!("troupe: cannot make {} active again: {e}", short(&moved.from)),
        }
        StepFailed { step: "upgrade", failure: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_read_as_a_sentence_and_a_line_for_scripts() {
        let built_at = Instant::now();
        let shipped = Shipped {
            last_step: "upgrade",
            steps: vec![("loaded", Duration::from_micros(2_040)), ("upgraded", Duration::from_millis(4))],
            answered: built_at + Duration::from_micros(9_240),
            code: EXIT_OK,
        };
        let text =
            timing_lines(2, Duration::from_millis(1_840), Duration::from_millis(3), &shipped, built_at);
        assert_eq!(
            text,
            "built in 1.84 s (cargo); packed 3.0 ms, loaded 2.0 ms, upgraded 4.0 ms; answering 9.2 ms after the build\n\
             watch: round=2 step=upgrade ready_after_build_ms=9.2\n"
        );
        assert_eq!(human(Duration::from_micros(420)), "0.4 ms");
        assert_eq!(human(Duration::from_millis(37)), "37 ms");
    }

    #[test]
    fn watch_arguments_are_checked() {
        use clap::Parser;
        let parse = |args: &[&str]| crate::Cli::try_parse_from([&["troupe", "watch"], args].concat());
        assert!(parse(&["hello"]).is_ok());
        assert!(
            parse(&["hello", "--port", "7001", "--group", "g", "--map", "a.B=a.C", "--rounds", "3"]).is_ok()
        );
        let err = parse(&["hello", "--map", "Counter"]).expect_err("no =").to_string();
        assert!(err.contains("expected OLD=NEW"), "{err}");
        assert!(parse(&["hello", "--rounds", "0"]).is_err());
        assert!(parse(&["hello", "--debounce-ms", "soon"]).is_err());
        let f = crate_dir(Path::new("/nonexistent/crate")).expect_err("not a crate");
        assert_eq!(f.code, crate::EXIT_USAGE);
        assert!(f.error.to_string().contains("not a plugin crate"), "{}", f.error);
    }
}
