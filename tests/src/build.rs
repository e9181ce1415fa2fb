//! Building what the tests run: the `troupe` CLI and the plugins, with cargo, into the test
//! binary's own target directory and profile, once per test process (so `cargo test` alone is
//! enough), and where to find the results.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The crates whose artefacts every test may use: the CLI and the ordinary plugins. The
/// hostile and abort plugins are built only by the tests that ask for them.
const PACKAGES: &[&str] = &[
    "troupe",
    "troupe-encoders",
    "troupe-encoders-v2",
    "troupe-test-faulty",
    "troupe-test-bad-abi",
    "troupe-test-counter-v1",
    "troupe-test-counter-v2",
];

/// The target directory of the running profile (`<target>/debug`), where the CLI and the
/// plugins are built. Derived from this test executable (`<target>/debug/deps/<test>`), so it
/// follows `CARGO_TARGET_DIR` and any other target-dir setting without reading them.
pub fn profile_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable has a path");
        let deps = exe.parent().expect("the test executable is in a directory");
        let dir = if deps.file_name().is_some_and(|n| n == "deps") {
            deps.parent().expect("deps/ has a parent").to_path_buf()
        } else {
            deps.to_path_buf()
        };
        dir.canonicalize().unwrap_or(dir)
    })
    .clone()
}

/// The workspace manifest.
fn workspace_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml")
}

/// The cargo that runs these tests (so the same toolchain builds the plugins).
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `cargo build -p PACKAGE...` into the test binary's own target dir and profile, so
/// the built files are where [`plugin_lib`] and [`troupe_bin`] look.
fn cargo_build(packages: &[&str]) -> Result<(), String> {
    let profile = profile_dir();
    let target = profile.parent().expect("the profile dir is inside the target dir");
    let mut cmd = cargo();
    cmd.arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(workspace_manifest())
        .arg("--target-dir")
        .arg(target);
    match profile.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.arg("--profile").arg(other);
        }
    }
    for p in packages {
        cmd.arg("-p").arg(p);
    }
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "building {packages:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Builds the CLI and the plugins (once per process); panics with cargo's output on failure.
pub fn ensure_built() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = BUILT.get_or_init(|| cargo_build(PACKAGES)) {
        panic!("{e}");
    }
}

/// Builds workspace `packages` (each once per process) into the same target dir and profile as
/// [`ensure_built`]; panics with cargo's output on failure.
pub fn ensure_built_packages(packages: &[&str]) {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    ensure_built();
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !built.iter().any(|b| b == p)).collect();
    if missing.is_empty() {
        return;
    }
    if let Err(e) = cargo_build(&missing) {
        panic!("{e}");
    }
    built.extend(missing.iter().map(|p| p.to_string()));
}

/// The `troupe` CLI.
pub fn troupe_bin() -> PathBuf {
    ensure_built();
    profile_dir().join("troupe")
}

/// A plugin library by crate name with underscores, e.g. `troupe_test_faulty`.
pub fn plugin_lib(name: &str) -> PathBuf {
    ensure_built();
    let p = profile_dir().join(format!("lib{name}.so"));
    assert!(p.exists(), "plugin {} was not built", p.display());
    p
}

/// The hostile test plugin (`tests/plugins/hostile`), built on demand.
pub fn hostile_lib() -> PathBuf {
    ensure_built_packages(&["troupe-test-hostile"]);
    plugin_lib("troupe_test_hostile")
}

/// `tests/plugins/abort` built with `-C panic=abort`, in a target directory of its own
/// (`<target>/abort`) so that it never replaces the ordinary build of the crate.
pub fn abort_lib() -> PathBuf {
    static LIB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match LIB.get_or_init(build_abort_lib) {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// `cargo rustc` of the abort plugin as a cdylib with `-C panic=abort`.
fn build_abort_lib() -> Result<PathBuf, String> {
    let target = profile_dir().parent().expect("the profile dir is inside the target dir").join("abort");
    let out = cargo()
        .args(["rustc", "--quiet", "-p", "troupe-test-abort", "--crate-type", "cdylib", "--manifest-path"])
        .arg(workspace_manifest())
        .arg("--target-dir")
        .arg(&target)
        .args(["--", "-C", "panic=abort"])
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building troupe-test-abort with panic=abort failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target.join("debug").join("libtroupe_test_abort.so"))
}
