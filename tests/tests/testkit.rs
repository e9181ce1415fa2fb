//! `troupe new` makes a crate whose in-process test (troupe-testkit) passes under
//! `cargo test`, offline: the generated crate depends on this checkout's SDK and testkit by
//! path and starts from its lock file. It builds into this workspace's target directory, so
//! the node and its dependencies are mostly compiled already.

use std::path::{Path, PathBuf};
use std::process::Command;

use troupe_tests::{profile_dir, troupe_bin, TestDir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("the checkout")
}

#[test]
fn a_new_crate_tests_its_actor_in_process_with_the_testkit_offline() {
    let dir = TestDir::new();
    let krate = dir.join("kit-check");
    let out = Command::new(troupe_bin())
        .args(["new", "kit-check", "--path"])
        .arg(&krate)
        .env("TROUPE_SDK_PATH", repo().join("actor-abi"))
        .output()
        .expect("cannot run troupe new");
    assert!(out.status.success(), "troupe new failed: {}", String::from_utf8_lossy(&out.stderr));
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).expect("Cargo.toml written");
    let testkit = serde_json::to_string(&repo().join("testkit").display().to_string()).unwrap();
    assert!(manifest.contains(&format!("troupe-testkit = {{ path = {testkit} }}")), "{manifest}");
    assert!(krate.join("Cargo.lock").is_file(), "the checkout's lock file is copied");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = profile_dir().parent().expect("the profile dir is inside the target dir").to_path_buf();
    let test = Command::new(&cargo)
        .args(["test", "--offline", "--test", "in_process", "--manifest-path"])
        .arg(krate.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cannot run cargo test");
    let text =
        format!("{}\n{}", String::from_utf8_lossy(&test.stdout), String::from_utf8_lossy(&test.stderr));
    assert!(test.status.success(), "cargo test of the generated crate failed:\n{text}");
    assert!(text.contains("test greeter_answers_in_process ... ok"), "the testkit test did not run:\n{text}");
    assert!(!text.contains("troupe-testkit: "), "the testkit reported a problem at drop:\n{text}");
}
