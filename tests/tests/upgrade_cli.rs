//! Live upgrade through the CLI, as a user sees it: `troupe upgrade` prints what moved, stayed
//! and failed (exit 1 on a failure or a rollback), `--json` prints the report, `deploy
//! --migrate` moves a group's actors, `--map` and `pack --rename` rename types, and bad
//! `OLD=NEW` pairs are usage errors. The counters are `tests/plugins/counter-v1` and `-v2`.

use std::path::PathBuf;

use troupe_node::protocol::UpgradeReport;
use troupe_tests::*;

fn counter_libs() -> (PathBuf, PathBuf) {
    ensure_built_packages(&["troupe-test-counter-v1", "troupe-test-counter-v2"]);
    (plugin_lib("troupe_test_counter_v1"), plugin_lib("troupe_test_counter_v2"))
}

/// A node with counter-v1 and counter-v2 loaded: (node, v1 hash, v2 hash).
fn node_with_both(dir: &TestDir) -> (NodeProc, String, String) {
    let (v1, v2) = counter_libs();
    let node = NodeProc::start(dir, "");
    let v1 = node.load(&dir.pack("counter-v1.zip", &[v1]));
    let v2 = node.load(&dir.pack("counter-v2.zip", &[v2]));
    (node, v1, v2)
}

/// `troupe create PORT VERSION TYPE`, expected to succeed: the address.
#[track_caller]
fn create_actor(node: &NodeProc, version: &str, type_name: &str) -> String {
    let out = node.run("create", &[version, type_name]);
    out.assert_ok();
    out.stdout.trim().to_string()
}

/// `troupe ask PORT ADDR TEXT`, expected to succeed: the reply.
#[track_caller]
fn ask_text(node: &NodeProc, addr: &str, text: &str) -> String {
    let out = node.run("ask", &[addr, text]);
    out.assert_ok();
    out.stdout.trim().to_string()
}

#[track_caller]
fn assert_line(out: &Cli, line: &str) {
    assert!(
        out.lines().iter().any(|l| l == line),
        "no line {line:?} in the output of `{}`:\n{out}",
        out.command
    );
}

#[track_caller]
fn assert_line_starting(out: &Cli, start: &str) -> String {
    match out.lines().into_iter().find(|l| l.starts_with(start)) {
        Some(l) => l,
        None => panic!("no line starting {start:?} in the output of `{}`:\n{out}", out.command),
    }
}

#[test]
fn upgrade_prints_what_moved_stayed_and_failed_and_exits_1_for_the_failure() {
    let dir = TestDir::new();
    let (node, v1, v2) = node_with_both(&dir);
    let counter = create_actor(&node, &v1, "counter.Counter");
    let plain = create_actor(&node, &v1, "counter.Plain");
    let refused = create_actor(&node, &v1, "counter.Refused");
    assert_eq!(ask_text(&node, &counter, "inc"), "v1 count=1");

    // Prefixes name the versions as anywhere else.
    let out = node.run("upgrade", &[&v1[..12], &v2[..12]]);
    out.assert_code(1);
    let n = node.addr();
    assert_line(&out, &format!("{n}  counter.Counter → counter.Counter  moved 1"));
    assert_line(&out, &format!("{n}  counter.Plain → counter.Plain  moved 0  stayed 1"));
    let failed = assert_line_starting(&out, &format!("failed  {refused}  counter.Refused: "));
    assert!(failed.contains("refusing state from counter.Refused"), "{failed}");
    let summary = assert_line_starting(&out, "moved 1 actor on 1 node in ");
    assert!(
        summary.contains(" ms (pause p99 ") && summary.ends_with("; 1 stayed (does not migrate), 1 failed"),
        "{summary}"
    );
    assert!(!out.stdout.contains("rolled back"), "{out}");

    // The counter moved with its count; the others answer from v1 still.
    assert_eq!(ask_text(&node, &counter, "get"), "v2 count=1 upgrades=1");
    assert_eq!(ask_text(&node, &plain, "get"), "v1 plain=0");
    assert_eq!(ask_text(&node, &refused, "get"), "v1 refused=0");
}

#[test]
fn all_or_nothing_rolls_back_in_text_and_json_and_exits_1() {
    let dir = TestDir::new();
    let (node, v1, v2) = node_with_both(&dir);
    let counter = create_actor(&node, &v1, "counter.Counter");
    create_actor(&node, &v1, "counter.Refused");
    ask_text(&node, &counter, "inc");

    let out = node.run("upgrade", &[&v1, &v2, "--all-or-nothing", "--json"]);
    out.assert_code(1);
    let report: UpgradeReport = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert!(report.rolled_back, "{out}");
    assert_eq!((report.from.as_str(), report.to.as_str()), (v1.as_str(), v2.as_str()));
    assert_eq!(report.failed().count(), 1, "{out}");

    let out = node.run("upgrade", &[&v1, &v2, "--all-or-nothing"]);
    out.assert_code(1);
    assert_line(&out, &format!("rolled back: every actor is on {} again", &v1[..12]));
    assert_eq!(ask_text(&node, &counter, "get"), "v1 count=1");
}

#[test]
fn deploy_migrate_moves_the_groups_actors_and_map_renames_their_type() {
    let dir = TestDir::new();
    let (v1, v2) = counter_libs();
    let node = NodeProc::start(&dir, "");
    let (v1_zip, v2_zip) = (dir.pack("v1.zip", &[v1]), dir.pack("v2.zip", &[v2]));
    node.run("deploy", &[&v1_zip.display().to_string(), "--group", "counter"]).assert_ok();
    let counter = create_actor(&node, "@counter", "counter.Counter");
    ask_text(&node, &counter, "inc");
    ask_text(&node, &counter, "inc");

    let v2_arg = v2_zip.display().to_string();
    let out = node.run(
        "deploy",
        &[&v2_arg, "--group", "counter", "--migrate", "--map", "counter.Counter=counter.Tally"],
    );
    out.assert_ok();
    assert_line_starting(&out, "counter: active ");
    assert_line(&out, &format!("{}  counter.Counter → counter.Tally  moved 1", node.addr()));
    assert_line_starting(&out, "moved 1 actor on 1 node in ");
    assert_eq!(ask_text(&node, &counter, "get"), "v2 tally=2 upgrades=1");

    // --map and --all-or-nothing mean nothing without --migrate.
    node.run("deploy", &[&v2_arg, "--group", "counter", "--map", "a.B=a.C"])
        .assert_code(2)
        .assert_stderr_has(&["--migrate"]);
    node.run("deploy", &[&v2_arg, "--group", "counter", "--all-or-nothing"])
        .assert_code(2)
        .assert_stderr_has(&["--migrate"]);
}

#[test]
fn pack_rename_sets_replaces_which_the_upgrade_follows() {
    let dir = TestDir::new();
    let (v1, v2) = counter_libs();
    let renamed = dir.pack_with(
        "v2-renamed.zip",
        std::slice::from_ref(&v2),
        &["--rename", "counter.Counter=counter.Tally", "--rename", "counter.Old=counter.Tally"],
    );
    let manifest = troupe_node::archive::Manifest::parse(&manifest_of(&renamed)).expect("a valid manifest");
    let (_, tally) = manifest.find_type("counter.Tally").expect("Tally is in the manifest");
    assert_eq!(tally.replaces, ["counter.Counter", "counter.Old"]);
    let (_, counter) = manifest.find_type("counter.Counter").expect("Counter is in the manifest");
    assert!(counter.replaces.is_empty());

    let node = NodeProc::start(&dir, "");
    let v1 = node.load(&dir.pack("v1.zip", &[v1]));
    let v2 = node.load(&renamed);
    let actor = create_actor(&node, &v1, "counter.Counter");
    let out = node.run("upgrade", &[&v1, &v2]);
    out.assert_ok();
    assert_line(&out, &format!("{}  counter.Counter → counter.Tally  moved 1", node.addr()));
    assert_eq!(ask_text(&node, &actor, "get"), "v2 tally=0 upgrades=1");
}

#[test]
fn bad_renames_and_maps_are_usage_errors_that_say_what_is_wrong() {
    let dir = TestDir::new();
    let (_, v2) = counter_libs();
    let lib = v2.display().to_string();
    let zip = dir.join("x.zip").display().to_string();
    let pack = |rename: &str| troupe(&["pack", "-o", &zip, "--rename", rename, &lib], None);
    pack("counter.Old=counter.Nope")
        .assert_code(2)
        .assert_stderr_has(&["the libraries export no type counter.Nope", "counter.Tally"]);
    pack("Counter=counter.Tally").assert_code(2).assert_stderr_has(&["\"Counter\" is not an actor type"]);
    pack("counter.Tally").assert_code(2).assert_stderr_has(&["expected OLD=NEW"]);
    pack("counter.Tally=counter.Tally").assert_code(2).assert_stderr_has(&["renames nothing"]);
    assert!(!dir.join("x.zip").exists(), "no zip is written for a bad --rename");

    // Checked before any node is asked: no node listens on this port.
    let port = free_port().to_string();
    troupe(&["upgrade", &port, "aaaaaaaa", "bbbbbbbb", "--map", "counter.Counter"], None)
        .assert_code(2)
        .assert_stderr_has(&["expected OLD=NEW", "module.Type"]);
    troupe(&["upgrade", &port, "aaaaaaaa", "bbbbbbbb", "--map", "a.B=a.C", "--map", "a.B=a.D"], None)
        .assert_code(2)
        .assert_stderr_has(&["--map gives a.B twice"]);
    troupe(&["upgrade", &port, "aaaaaaaa", "bbbbbbbb"], None)
        .assert_code(3)
        .assert_stderr_has(&["troupe start"]);
}
