//! Snapshot tests of what the CLI shows people: `troupe help`, every `troupe <sub> --help`,
//! and the `status` table of a node in a known state (pids, ports, hashes, addresses and paths
//! masked with placeholders).
//!
//! The snapshots live in `tests/snapshots/`. After an intended change, rewrite them with
//! `UPDATE_SNAPSHOTS=1 cargo test -p troupe-tests --test cli_snapshots` and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

use troupe_tests::*;

fn snapshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1")
}

/// Compares `actual` with the snapshot `name` (or rewrites it under `UPDATE_SNAPSHOTS=1`);
/// returns a description of the mismatch, if any.
fn check_snapshot(name: &str, actual: &str) -> Option<String> {
    let path = snapshot_dir().join(name);
    if updating() {
        std::fs::create_dir_all(path.parent().expect("snapshots have a directory")).expect("mkdir");
        std::fs::write(&path, actual).expect("cannot write the snapshot");
        return None;
    }
    let Ok(expected) = std::fs::read_to_string(&path) else {
        return Some(format!("{name}: no snapshot at {} yet", path.display()));
    };
    if expected == actual {
        return None;
    }
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let line = e.iter().zip(&a).position(|(x, y)| x != y).unwrap_or(e.len().min(a.len()));
    Some(format!(
        "{name}: differs from the snapshot from line {}:\n  expected: {:?}\n  actual:   {:?}\n--- actual output ---\n{actual}",
        line + 1,
        e.get(line).copied().unwrap_or("<end>"),
        a.get(line).copied().unwrap_or("<end>"),
    ))
}

#[track_caller]
fn assert_snapshots(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended: UPDATE_SNAPSHOTS=1 cargo test -p troupe-tests --test cli_snapshots, then review the diff of tests/snapshots/",
        failures.join("\n\n")
    );
}

/// `troupe ARGS` with no environment that changes help text (clap shows `[env: X=value]`).
fn help_of(args: &[&str]) -> String {
    let out = Command::new(troupe_bin())
        .args(args)
        .env_remove("TROUPE_SECRET_FILE")
        .env_remove("TROUPE_CONVENTION")
        .env_remove("TROUPE_SDK_PATH")
        .output()
        .expect("cannot run troupe");
    assert!(
        out.status.success(),
        "troupe {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The subcommands `troupe help` lists (so a new one gets a snapshot without editing this file).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn help_of_troupe_and_every_subcommand_matches_its_snapshot() {
    let top = help_of(&["help"]);
    let subs = subcommands(&top);
    for expected in ["start", "load", "new", "create", "tell", "ask", "completions", "upgrade", "watch"] {
        assert!(subs.iter().any(|s| s == expected), "troupe help lists no {expected}:\n{top}");
    }
    let mut failures: Vec<String> = check_snapshot("help/troupe.txt", &top).into_iter().collect();
    for sub in &subs {
        let help = help_of(&[sub, "--help"]);
        assert!(help.contains("Example"), "troupe {sub} --help shows no example:\n{help}");
        failures.extend(check_snapshot(&format!("help/{sub}.txt"), &help));
    }
    // No snapshot is left for a subcommand that is gone.
    if !updating() {
        for f in std::fs::read_dir(snapshot_dir().join("help")).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().trim_end_matches(".txt").to_string();
            if name != "troupe" && !subs.contains(&name) {
                failures.push(format!("help/{name}.txt: troupe has no subcommand {name} any more"));
            }
        }
    }
    assert_snapshots(failures);
}

/// Replaces what changes from run to run with placeholders.
fn mask_status(text: &str, r: &troupe_node::status::StatusReport, dir: &Path) -> String {
    let mut s = text.to_string();
    for v in &r.versions {
        s = s.replace(&v.hash, "<HASH>").replace(&v.hash[..12], "<HASH>");
    }
    s = s.replace(&r.store, "<STORE>").replace(&dir.display().to_string(), "<DIR>");
    s = s.replace(&r.node, "<NODE>").replace(&format!("pid {}", r.pid), "pid <PID>");
    s = s.replace(
        &format!(
            "pthread keys: {} in use of {} (loads refused from {})",
            r.pthread_keys_in_use, r.pthread_keys_max, r.pthread_keys_refuse_at
        ),
        "pthread keys: <N> in use of <MAX> (loads refused from <LIMIT>)",
    );
    // Actor ids: `<NODE>#hex` → `<NODE>#<ID>`.
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("<NODE>#") {
        out += &rest[..i + "<NODE>#".len()];
        rest = rest[i + "<NODE>#".len()..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
        out += "<ID>";
    }
    out + rest
}

#[test]
fn status_table_of_a_node_in_a_known_state_matches_its_snapshot() {
    let dir = TestDir::new();
    let node = NodeProc::start_with(&dir, "alpha,beta", &["--version-threads", "2"]);
    let hash = node.load(&dir.faulty_zip());
    node.run("create", &[&hash, "faulty.Echo", "--name", "echo-1"]).assert_ok();
    node.run("create", &[&hash, "faulty.Spawner"]).assert_ok();
    wait_for("two live actors", REPLY_TIMEOUT, || (node.status().actors.len() == 2).then_some(()));

    let out = node.run("status", &[]);
    out.assert_ok();
    let report = node.status();
    let masked = mask_status(&out.stdout, &report, dir.path());
    for leaked in [report.pid.to_string(), node.port().to_string(), hash[..12].to_string()] {
        assert!(!masked.contains(&leaked), "{leaked} is not masked:\n{masked}");
    }
    assert_snapshots(check_snapshot("status-table.txt", &masked).into_iter().collect());
}
