//! `troupe watch`, the plugin author's loop, end to end: a crate made by `troupe new` (its
//! source replaced by a counter that opts in to live upgrade), a node, and `troupe watch DIR
//! --port P --rounds 3` in the background. The test edits the source and awaits watch's output
//! lines: the first round loads; a broken edit prints the compiler's error and the old version
//! keeps answering; a fixed edit loads and upgrades, and the same actor answers from the new
//! code with its count.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use troupe_tests::*;

/// The first round builds the crate's dependencies in release mode (once per target dir).
const FIRST_BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Later rounds build the crate alone.
const ROUND_TIMEOUT: Duration = Duration::from_secs(180);

/// The watched crate's source: a counter whose replies start with `label`, which hands its
/// count to its next version. `inc` is replaced by `broken_inc` to break the build.
fn counter_source(label: &str, inc: &str) -> String {
    r#"use serde::{Deserialize, Serialize};
use troupe_actor_abi::prelude::*;

#[derive(Serialize, Deserialize)]
struct Count {
    count: u64,
}
impl Typed for Count {
    const TAG: &'static str = "watched/Count";
}

struct Counter {
    count: u64,
}

impl Actor for Counter {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Counter { count: 0 })
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        let Some(from) = msg.sender().cloned() else { return Ok(()) };
        if msg.text() == Some("inc") {
            INC;
        }
        ctx.send(&from, format!("LABEL count={}", self.count));
        Ok(())
    }
    fn export_state(&self) -> Option<ActorResult<State>> {
        Some(Ok(State::of(&Count { count: self.count })))
    }
    fn import_state(_ctx: &mut Context, from: Upgrade) -> ActorResult<Self> {
        match from.decode::<Count>() {
            Some(c) => Ok(Counter { count: c?.count }),
            None => Err(ActorError::msg("unknown state")),
        }
    }
}

troupe_actor_abi::export_plugin!(actors: ["watched.Counter" => Counter]);
"#
    .replace("LABEL", label)
    .replace("INC", inc)
}

/// `troupe new watched` in `dir`, its source replaced by the v1 counter.
fn watched_crate(dir: &TestDir) -> PathBuf {
    let krate = dir.join("watched");
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../actor-abi").canonicalize().expect("actor-abi");
    let out = Command::new(troupe_bin())
        .args(["new", "watched", "--path"])
        .arg(&krate)
        .env("TROUPE_SDK_PATH", sdk)
        .output()
        .expect("cannot run troupe new");
    assert!(out.status.success(), "troupe new failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(krate.join("src/lib.rs"), counter_source("v1", "self.count += 1")).expect("write lib.rs");
    krate
}

/// A `troupe watch` process and the lines it printed so far, killed when dropped.
struct Watching {
    child: Child,
    lines: Receiver<(&'static str, String)>,
    /// Every line seen, `stdout: …` or `stderr: …`, for failure messages.
    seen: Vec<String>,
}

impl Watching {
    fn start(krate: &Path, port: u16) -> Watching {
        // The crate's build is cached between runs in a target dir of its own.
        let target = profile_dir().parent().expect("the target dir").join("troupe-watch");
        let mut child = Command::new(troupe_bin())
            .arg("watch")
            .arg(krate)
            .args(["--port", &port.to_string(), "--rounds", "3", "--debounce-ms", "200"])
            .env("CARGO_TARGET_DIR", target)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run troupe watch");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        for (name, stream) in
            [("stdout", Box::new(stdout) as Box<dyn std::io::Read + Send>), ("stderr", Box::new(stderr))]
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send((name, line));
                }
            });
        }
        Watching { child, lines, seen: Vec::new() }
    }

    /// Awaits a line on `stream` for which `want` holds, and returns it.
    #[track_caller]
    fn expect(&mut self, stream: &str, what: &str, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((s, line)) => {
                    self.seen.push(format!("{s}: {line}"));
                    if s == stream && want(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {what} on {stream} within {timeout:?}; watch printed:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("watch ended without {what} on {stream}; it printed:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Awaits the exact line `line` on `stream`.
    #[track_caller]
    fn expect_line(&mut self, stream: &str, line: &str, timeout: Duration) {
        self.expect(stream, &format!("{line:?}"), timeout, |l| l == line);
    }

    /// Awaits the end of the process and its exit code (the reader threads keep draining its
    /// pipes, so it cannot block on a full one).
    fn exit_code(&mut self) -> Option<i32> {
        self.child.wait().expect("wait for troupe watch").code()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[track_caller]
fn ask_text(node: &NodeProc, addr: &str, text: &str) -> String {
    let out = node.run("ask", &[addr, text]);
    out.assert_ok();
    out.stdout.trim().to_string()
}

#[test]
fn watch_loads_survives_a_broken_build_and_upgrades_the_running_actor_on_the_fix() {
    let dir = TestDir::new();
    let krate = watched_crate(&dir);
    let node = NodeProc::start(&dir, "");
    let mut watch = Watching::start(&krate, node.port());
    let shown = krate.canonicalize().expect("the crate dir");
    watch.expect("stdout", "the watching line", ROUND_TIMEOUT, |l| {
        l.starts_with(&format!(
            "watching {} (src/, Cargo.toml, build.rs) for {}",
            shown.display(),
            node.addr()
        ))
    });

    // Round 1: built, packed and loaded.
    let v1 = watch.expect("stdout", "the loaded line", FIRST_BUILD_TIMEOUT, |l| l.starts_with("loaded "));
    let v1 = v1.trim_start_matches("loaded ").to_string();
    assert_eq!(v1.len(), 64, "loaded prints the full hash: {v1}");
    let timing = watch.expect("stdout", "round 1's timings", ROUND_TIMEOUT, |l| l.starts_with("built in "));
    assert!(timing.contains(" (cargo); packed ") && timing.contains(", loaded "), "{timing}");
    let ready =
        watch.expect("stdout", "round 1's line for scripts", ROUND_TIMEOUT, |l| l.starts_with("watch: "));
    assert!(ready.starts_with("watch: round=1 step=load ready_after_build_ms="), "{ready}");
    let actor = node.run("create", &[&v1, "watched.Counter"]);
    actor.assert_ok();
    let actor = actor.stdout.trim().to_string();
    ask_text(&node, &actor, "inc");
    assert_eq!(ask_text(&node, &actor, "inc"), "v1 count=2");

    // Round 2: a type error. The compiler's error is shown as cargo printed it; v1 runs on.
    std::fs::write(krate.join("src/lib.rs"), counter_source("v1", "self.count += \"one\"")).unwrap();
    watch.expect_line("stdout", "changed: src/lib.rs", ROUND_TIMEOUT);
    watch.expect("stderr", "the compiler's error", ROUND_TIMEOUT, |l| l.starts_with("error[E0277]"));
    watch.expect("stderr", "where the error is", ROUND_TIMEOUT, |l| l.contains("src/lib.rs:"));
    watch.expect_line("stderr", &format!("build failed: still running {}", &v1[..12]), ROUND_TIMEOUT);
    assert_eq!(ask_text(&node, &actor, "inc"), "v1 count=3");

    // Round 3: fixed, with new replies: loaded, and the counter moves to it with its count.
    std::fs::write(krate.join("src/lib.rs"), counter_source("v2", "self.count += 1")).unwrap();
    watch.expect_line("stdout", "changed: src/lib.rs", ROUND_TIMEOUT);
    let v2 = watch.expect("stdout", "the second loaded line", ROUND_TIMEOUT, |l| l.starts_with("loaded "));
    let v2 = v2.trim_start_matches("loaded ").to_string();
    assert_ne!(v2, v1);
    // From here on, what the node's live upgrade (Request::Upgrade) does.
    let moved = format!("{}  watched.Counter → watched.Counter  moved 1", node.addr());
    watch.expect_line("stdout", &moved, ROUND_TIMEOUT);
    let summary = watch.expect("stdout", "the summary", ROUND_TIMEOUT, |l| l.starts_with("moved "));
    assert!(
        summary.starts_with("moved 1 actor on 1 node in ") && summary.ends_with("; 0 stayed, 0 failed"),
        "{summary}"
    );
    let timing = watch.expect("stdout", "round 3's timings", ROUND_TIMEOUT, |l| l.starts_with("built in "));
    assert!(timing.contains(", upgraded ") && timing.ends_with(" after the build"), "{timing}");
    let ready =
        watch.expect("stdout", "round 3's line for scripts", ROUND_TIMEOUT, |l| l.starts_with("watch: r"));
    let ms = ready
        .strip_prefix("watch: round=3 step=upgrade ready_after_build_ms=")
        .unwrap_or_else(|| panic!("{ready}"));
    assert!(ms.parse::<f64>().is_ok_and(|ms| ms > 0.0), "{ready}");
    watch.expect_line(
        "stdout",
        &format!("watch: stopped (after 3 rounds); {} stays loaded", &v2[..12]),
        ROUND_TIMEOUT,
    );
    assert_eq!(watch.exit_code(), Some(0), "watch printed:\n{}", watch.seen.join("\n"));

    // The same address answers from the new code, with the count it had; v2 stays loaded.
    assert_eq!(ask_text(&node, &actor, "inc"), "v2 count=4");
    assert!(node.status().versions.iter().any(|v| v.hash == v2), "v2 is not loaded any more");
}

/// Issue 21 point 8: on the crate `troupe new` makes, editing the Greeter's reply left the
/// actor made before the save on the old text ("1 stayed (does not migrate)"). The template's
/// Greeter opts in to live upgrade, so the same actor answers with the new text.
#[test]
fn watch_on_the_template_moves_its_greeter_to_the_edited_reply() {
    let dir = TestDir::new();
    let krate = dir.join("greeted");
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../actor-abi").canonicalize().expect("actor-abi");
    let out = Command::new(troupe_bin())
        .args(["new", "greeted", "--path"])
        .arg(&krate)
        .env("TROUPE_SDK_PATH", sdk)
        .output()
        .expect("cannot run troupe new");
    assert!(out.status.success(), "troupe new failed: {}", String::from_utf8_lossy(&out.stderr));
    let node = NodeProc::start(&dir, "");
    let mut watch = Watching::start(&krate, node.port());
    let v1 = watch.expect("stdout", "the loaded line", FIRST_BUILD_TIMEOUT, |l| l.starts_with("loaded "));
    let v1 = v1.trim_start_matches("loaded ").to_string();
    let actor = node.run("create", &[&v1, "greeted.Greeter"]);
    actor.assert_ok();
    let actor = actor.stdout.trim().to_string();
    assert_eq!(ask_text(&node, &actor, "world"), "hello, world");

    // The newcomer's first edit: the reply's text.
    let lib = krate.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).expect("src/lib.rs");
    assert!(source.contains(r#"format!("hello, {name}")"#), "the template's reply moved:\n{source}");
    std::fs::write(&lib, source.replace(r#"format!("hello, {name}")"#, r#"format!("hi there, {name}")"#))
        .expect("write src/lib.rs");
    watch.expect_line("stdout", "changed: src/lib.rs", ROUND_TIMEOUT);
    let moved = format!("{}  greeted.Greeter → greeted.Greeter  moved 1", node.addr());
    watch.expect_line("stdout", &moved, ROUND_TIMEOUT);
    let summary = watch.expect("stdout", "the summary", ROUND_TIMEOUT, |l| l.starts_with("moved "));
    assert!(summary.ends_with("; 0 stayed, 0 failed"), "{summary}");
    // The actor made before the save answers from the new code.
    assert_eq!(ask_text(&node, &actor, "world"), "hi there, world");
}
