//! # troupe-tests
//!
//! The harness of the end-to-end tests in `tests/tests/`: every test gets its own temporary
//! directory ([`TestDir`]) and its own node process ([`NodeProc`], `troupe start --foreground`
//! on a loopback port chosen at run time), drives it with the real `troupe` CLI ([`troupe`],
//! [`Cli`]) or with the client library ([`troupe_node::client::Client`]) where a test must act
//! as an actor-facing client, and looks at what a user (or an operator) would see: CLI output
//! and exit codes, `status --json`, `/proc/<pid>/maps`, the store directory.
//!
//! [`ensure_built`] builds the CLI and the plugins once per test process, so `cargo test`
//! alone is enough.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use troupe_actor_abi::message::{Address, CreateSpec, Incoming, Payload};
use troupe_node::client::Client;
use troupe_node::protocol::{self, Request, Response, ServerFrame, PROTOCOL_VERSION};
use troupe_node::status::StatusReport;

/// The crates whose artefacts the tests use: the CLI and every plugin.
const PACKAGES: &[&str] =
    &["troupe", "troupe-encoders", "troupe-encoders-v2", "troupe-test-faulty", "troupe-test-bad-abi"];

/// How long a node may take to answer its first hello: generous, because two cores are shared
/// by several test processes and cargo.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a reply from an actor may take before a test gives up (a deadline, not a sleep).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

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

/// Runs `cargo build -p PACKAGE...` into the test binary's own target dir and profile, so
/// the built files are where [`plugin_lib`] and [`troupe_bin`] look.
fn cargo_build(packages: &[&str]) -> Result<(), String> {
    let profile = profile_dir();
    let target = profile.parent().expect("the profile dir is inside the target dir");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build").arg("--quiet").arg("--manifest-path").arg(&manifest).arg("--target-dir").arg(target);
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

// ---- CLI ------------------------------------------------------------------------------------

/// What a `troupe` command printed and how it exited.
#[derive(Debug)]
pub struct Cli {
    /// The command line, for failure messages.
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    /// The exit code (`-1` if killed by a signal).
    pub code: i32,
}

impl Cli {
    /// Panics (showing everything) unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code from `{}`:\n{self}", self.command);
        self
    }

    /// Panics unless the command succeeded.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        self.assert_code(0)
    }

    /// Panics unless stderr contains every one of `needles`.
    #[track_caller]
    pub fn assert_stderr_has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(self.stderr.contains(n), "stderr of `{}` lacks {n:?}:\n{self}", self.command);
        }
        self
    }

    /// stdout's lines.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lines().map(str::to_string).collect()
    }

    /// stdout's lines, sorted (result lines arrive in any order).
    pub fn sorted_lines(&self) -> Vec<String> {
        let mut l = self.lines();
        l.sort();
        l
    }
}

impl std::fmt::Display for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}\n--- stdout ---\n{}--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs `troupe ARGS` with `stdin` as its input (none if `None`).
pub fn troupe(args: &[&str], stdin: Option<&str>) -> Cli {
    let mut cmd = Command::new(troupe_bin());
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("cannot run troupe");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes()).expect("cannot write troupe's stdin");
    }
    let out = child.wait_with_output().expect("cannot wait for troupe");
    Cli {
        command: format!("troupe {}", args.join(" ")),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

// ---- temporary directories and packing --------------------------------------------------------

/// A test's own directory, deleted when dropped.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDir {
    /// A fresh directory (and the build, so that what follows can use it).
    pub fn new() -> TestDir {
        ensure_built();
        TestDir {
            dir: tempfile::Builder::new().prefix("troupe-test-").tempdir().expect("cannot create a temp dir"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `troupe pack -o <dir>/<name> EXTRA... LIBS...`; returns the zip.
    pub fn pack_with(&self, name: &str, libs: &[PathBuf], extra: &[&str]) -> PathBuf {
        let out = self.join(name);
        let out_s = out.display().to_string();
        let mut args: Vec<String> = vec!["pack".into(), "-o".into(), out_s];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(libs.iter().map(|l| l.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        troupe(&args, None).assert_ok();
        out
    }

    /// `troupe pack` of `libs` into `<dir>/<name>`.
    pub fn pack(&self, name: &str, libs: &[PathBuf]) -> PathBuf {
        self.pack_with(name, libs, &[])
    }

    /// The demo encoders, packed.
    pub fn encoders_zip(&self) -> PathBuf {
        self.pack("encoders.zip", &[plugin_lib("troupe_encoders")])
    }

    /// The v2 encoders (Encoder reverses), packed.
    pub fn encoders_v2_zip(&self) -> PathBuf {
        self.pack("encoders-v2.zip", &[plugin_lib("troupe_encoders_v2")])
    }

    /// The faulty test plugin, packed.
    pub fn faulty_zip(&self) -> PathBuf {
        self.pack("faulty.zip", &[plugin_lib("troupe_test_faulty")])
    }

    /// A stripped copy of a plugin (same code, a fraction of the bytes): for tests that load
    /// many times, where hashing and inflating debug builds would dominate. Falls back to the
    /// library itself when `strip` is not installed.
    pub fn stripped(&self, name: &str) -> PathBuf {
        let lib = plugin_lib(name);
        let out = self.join(&format!("lib{name}.so"));
        let ok = Command::new("strip")
            .arg("-o")
            .arg(&out)
            .arg(&lib)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            out
        } else {
            lib
        }
    }
}

/// Copies of a packed zip that differ only in the manifest's package version (so each has its
/// own hash), made without re-compressing the libraries.
pub struct ZipVariants {
    base: Vec<u8>,
    manifest: String,
    version_line: String,
}

impl ZipVariants {
    /// From a zip written by `troupe pack`.
    pub fn new(zip: &Path) -> ZipVariants {
        let base = std::fs::read(zip).expect("cannot read the base zip");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&base)).expect("the base zip is a zip");
        let mut manifest = String::new();
        archive
            .by_name("troupe.toml")
            .expect("the base zip has a manifest")
            .read_to_string(&mut manifest)
            .expect("the manifest is text");
        let version_line = manifest
            .lines()
            .find(|l| l.trim_start().starts_with("version ="))
            .expect("the manifest has a package version")
            .to_string();
        ZipVariants { base, manifest, version_line }
    }

    /// The variant with package version `version`.
    pub fn make(&self, version: &str) -> Vec<u8> {
        let manifest = self.manifest.replacen(&self.version_line, &format!("version = \"{version}\""), 1);
        let mut archive =
            zip::ZipArchive::new(std::io::Cursor::new(&self.base)).expect("the base zip is a zip");
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("troupe.toml", opts).expect("zip write");
        w.write_all(manifest.as_bytes()).expect("zip write");
        for i in 0..archive.len() {
            let f = archive.by_index_raw(i).expect("zip entry");
            if f.name().map(|n| n != "troupe.toml").unwrap_or(true) {
                w.raw_copy_file(f).expect("zip copy");
            }
        }
        w.finish().expect("zip finish").into_inner()
    }
}

/// A zip with exactly these `(name, bytes)` entries, stored uncompressed: for hand-made bad
/// sources.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        w.start_file(*name, opts).expect("zip write");
        w.write_all(bytes).expect("zip write");
    }
    w.finish().expect("zip finish").into_inner()
}

/// The manifest (`troupe.toml` text) of a packed zip.
pub fn manifest_of(zip: &Path) -> String {
    let bytes = std::fs::read(zip).expect("cannot read zip");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let mut s = String::new();
    archive.by_name("troupe.toml").expect("a manifest").read_to_string(&mut s).expect("text");
    s
}

// ---- nodes --------------------------------------------------------------------------------------

/// A node process (`troupe start PORT CAPS --foreground --state-dir DIR`), killed and reaped
/// when dropped if it is still running.
pub struct NodeProc {
    child: Child,
    port: u16,
    state_dir: PathBuf,
    log: PathBuf,
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind an ephemeral port");
    l.local_addr().expect("a bound listener has an address").port()
}

/// Says hello to `addr` with plain blocking I/O (so it works in and out of async tests).
fn hello_answers(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    // A node speaks first: its challenge says it is up and speaking our protocol.
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return false;
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    if s.read_exact(&mut body).is_err() {
        return false;
    }
    matches!(
        protocol::decode::<ServerFrame>(&body),
        Ok(ServerFrame::Challenge { protocol: PROTOCOL_VERSION, .. })
    )
}

impl NodeProc {
    /// A node with capabilities `caps` (comma-separated), state in `dir`.
    pub fn start(dir: &TestDir, caps: &str) -> NodeProc {
        Self::start_with(dir, caps, &[])
    }

    /// As [`NodeProc::start`], with extra `troupe start` arguments (e.g. `--authority none`).
    pub fn start_with(dir: &TestDir, caps: &str, extra: &[&str]) -> NodeProc {
        Self::start_inner(dir, None, caps, extra)
    }

    /// A node on a given `port` (e.g. to restart a node where it was): waits up to
    /// [`START_TIMEOUT`] for the port to be free and the node to answer.
    pub fn start_on(dir: &TestDir, port: u16, caps: &str, extra: &[&str]) -> NodeProc {
        Self::start_inner(dir, Some(port), caps, extra)
    }

    /// A member of the convention led by `leader` (`host:port`).
    pub fn start_member(dir: &TestDir, leader: &str, caps: &str, extra: &[&str]) -> NodeProc {
        let mut args = vec!["--convention", leader];
        args.extend_from_slice(extra);
        Self::start_inner(dir, None, caps, &args)
    }

    fn start_inner(dir: &TestDir, fixed: Option<u16>, caps: &str, extra: &[&str]) -> NodeProc {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let fixed_deadline = Instant::now() + START_TIMEOUT;
        for attempt in 0.. {
            let port = fixed.unwrap_or_else(free_port);
            let state_dir = dir.join(&format!("node-{port}"));
            // A node restarted on the same port gets a log of its own.
            let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let log = dir.join(&format!("node-{port}-{n}.log"));
            let log_file = std::fs::File::create(&log).expect("cannot create the node log");
            let child = Command::new(troupe_bin())
                .arg("start")
                .arg(port.to_string())
                .arg(caps)
                .arg("--foreground")
                .arg("--state-dir")
                .arg(&state_dir)
                // A node leads its own convention unless the test joins it to another one:
                // never the default 127.0.0.1:1900, which a demo on this machine may be using.
                .args(if extra.contains(&"--convention") {
                    Vec::new()
                } else {
                    vec!["--convention".to_string(), format!("127.0.0.1:{port}")]
                })
                .args(extra)
                .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("dup log"))
                .stderr(log_file)
                .spawn()
                .expect("cannot start troupe");
            let mut node = NodeProc { child, port, state_dir, log };
            let deadline = Instant::now() + START_TIMEOUT;
            let mut delay = Duration::from_millis(5);
            loop {
                if let Ok(Some(status)) = node.child.try_wait() {
                    let log = node.log_text();
                    if log.contains("taken") && fixed.is_none() && attempt < 4 {
                        break; // someone grabbed the port in between: try another
                    }
                    if log.contains("taken") && fixed.is_some() && Instant::now() < fixed_deadline {
                        std::thread::sleep(Duration::from_millis(50)); // the old process's port
                        break;
                    }
                    panic!("the node exited during start ({status}):\n{log}");
                }
                if hello_answers(&node.addr()) {
                    return node;
                }
                assert!(
                    Instant::now() < deadline,
                    "the node did not answer within {START_TIMEOUT:?}:\n{}",
                    node.log_text()
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
        }
        unreachable!("the attempts either return or panic")
    }

    /// The admin port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port as the CLI takes it.
    pub fn port_arg(&self) -> String {
        self.port.to_string()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The node's process id (the `--foreground` node runs in the process we started).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The node's store (`<state>/store`).
    pub fn store(&self) -> PathBuf {
        self.state_dir.join("store")
    }

    /// What the node logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `troupe CMD PORT REST...` (the port inserted after the subcommand).
    pub fn run(&self, cmd: &str, rest: &[&str]) -> Cli {
        let port = self.port_arg();
        let mut args = vec![cmd, port.as_str()];
        args.extend_from_slice(rest);
        troupe(&args, None)
    }

    /// `troupe load PORT ZIP`, expected to succeed; returns the hash it printed.
    #[track_caller]
    pub fn load(&self, zip: &Path) -> String {
        let out = self.run("load", &[&zip.display().to_string()]);
        out.assert_ok();
        let hash = out.stdout.trim().to_string();
        assert!(
            hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "load printed no hash:\n{out}"
        );
        hash
    }

    /// `echo TEXT | troupe app HASH --port PORT`.
    pub fn app(&self, hash: &str, text: &str) -> Cli {
        let port = self.port_arg();
        troupe(&["app", hash, "--port", &port], Some(text))
    }

    /// `troupe status PORT --json`, parsed.
    #[track_caller]
    pub fn status(&self) -> StatusReport {
        let out = self.run("status", &["--json"]);
        out.assert_ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json is not a StatusReport: {e}\n{out}"))
    }

    /// `/proc/<pid>/maps`.
    pub fn maps(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/maps", self.pid())).expect("cannot read the node's maps")
    }

    /// The `<hash>-<generation>` of every version whose library copy the process maps.
    pub fn mapped_versions(&self) -> Vec<String> {
        let store = self.store();
        let mut v: Vec<String> = self.maps().lines().filter_map(|l| mapping_owner(l, &store)).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Whether a library copy of `hash` (any generation) is mapped.
    pub fn maps_hash(&self, hash: &str) -> bool {
        self.mapped_versions().iter().any(|v| v.starts_with(&format!("{hash}-")))
    }

    /// How many file descriptors the node has open.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("cannot list the node's fds").count()
    }

    /// The node's thread count (`Threads:` of `/proc/<pid>/status`).
    pub fn threads(&self) -> usize {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("cannot read the node's status");
        s.lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("Threads: in /proc/pid/status")
    }

    /// A client connected to the node.
    pub async fn client(&self) -> Client {
        Client::connect(&self.addr()).await.expect("cannot connect to the node")
    }

    /// Waits up to `timeout` for the node process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

// ---- conventions ---------------------------------------------------------------------------------

/// How long a convention may take to notice a join, a loss or a change: generous, because
/// the tests share two cores (the nodes themselves use heartbeats of a second or less).
pub const CONVENTION_TIMEOUT: Duration = Duration::from_secs(20);

/// Extra `troupe start` arguments for fast failure detection in tests that wait for losses.
pub const FAST_HEARTBEAT: &[&str] = &["--heartbeat", "200ms", "--dead-after", "1s"];

impl NodeProc {
    /// Kills the node with SIGKILL (no goodbye to the convention) and reaps it.
    pub fn kill9(&mut self) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet (so the pid is ours).
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "cannot SIGKILL node {}", self.addr());
        let _ = self.child.wait();
    }

    /// `troupe stop PORT` (graceful), then waits for the process to exit.
    #[track_caller]
    pub fn stop(&mut self) {
        self.run_stop().assert_ok();
        assert!(self.wait_exit(CONVENTION_TIMEOUT).is_some(), "node {} did not exit after stop", self.addr());
    }

    fn run_stop(&self) -> Cli {
        troupe(&["stop", &self.port_arg()], None)
    }

    /// Whether the process has exited (and been reaped).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// `troupe status PORT --convention --json`, parsed as JSON: an array of
    /// `{node, role, alive, status, error}`.
    #[track_caller]
    pub fn status_convention_json(&self) -> Vec<serde_json::Value> {
        let out = self.run("status", &["--convention", "--json"]);
        out.assert_ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("status --convention --json is not a JSON array: {e}\n{out}"))
    }

    /// The status, or `None` if the node does not answer (it is stopping or gone).
    pub fn try_status(&self) -> Option<StatusReport> {
        let out = self.run("status", &["--json"]);
        if out.code != 0 {
            return None;
        }
        serde_json::from_str(&out.stdout).ok()
    }

    /// The members this node knows (address → alive), from its status.
    pub fn known_members(&self) -> Vec<(String, bool)> {
        self.try_status()
            .map(|s| s.convention.members.iter().map(|m| (m.node.clone(), m.alive)).collect())
            .unwrap_or_default()
    }

    /// Waits until this node lists exactly `members` as alive members (in any order).
    #[track_caller]
    pub fn wait_members(&self, members: &[String]) {
        let mut want: Vec<String> = members.to_vec();
        want.sort();
        let what = format!("{} to list members {want:?}", self.addr());
        let deadline = Instant::now() + CONVENTION_TIMEOUT;
        loop {
            let mut alive: Vec<String> =
                self.known_members().into_iter().filter(|(_, a)| *a).map(|(n, _)| n).collect();
            alive.sort();
            if alive == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {CONVENTION_TIMEOUT:?} waiting for {what}; last seen {alive:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Type names of the live actors on this node (sorted), `[]` if it does not answer.
    pub fn actor_types(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .try_status()
            .map(|s| s.actors.iter().map(|a| a.type_name.clone()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Whether the process maps any version's library copy (a memory file or a store file).
    pub fn maps_any_version(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/maps", self.pid()))
            .is_ok_and(|m| m.lines().any(|l| mapping_owner(l, &self.store()).is_some()))
    }
}

/// A leader and its members, all on loopback ports chosen at run time.
pub struct Convention {
    /// `nodes[0]` is the leader; the others are members, in the order they were started.
    /// `None` where a test stopped or killed a node and took it out.
    pub nodes: Vec<Option<NodeProc>>,
    leader_addr: String,
}

impl Convention {
    /// Starts a leader with `specs[0]` (capabilities, extra `troupe start` arguments) and a
    /// member for every other spec, then waits until the leader lists every member as alive
    /// and every member lists every other node.
    pub fn start(dir: &TestDir, specs: &[(&str, &[&str])]) -> Convention {
        let (caps, extra) = specs.first().copied().unwrap_or(("", &[]));
        let leader = NodeProc::start_with(dir, caps, extra);
        let leader_addr = leader.addr();
        let mut nodes = vec![Some(leader)];
        for (caps, extra) in &specs[1.min(specs.len())..] {
            nodes.push(Some(NodeProc::start_member(dir, &leader_addr, caps, extra)));
        }
        let conv = Convention { nodes, leader_addr };
        conv.wait_settled();
        conv
    }

    /// A convention of nodes a test started itself (`nodes[0]` must be the leader).
    pub fn from_nodes(nodes: Vec<NodeProc>, leader_addr: &str) -> Convention {
        Convention { nodes: nodes.into_iter().map(Some).collect(), leader_addr: leader_addr.to_string() }
    }

    /// Waits until every running node knows every other running node as alive.
    #[track_caller]
    pub fn wait_settled(&self) {
        let addrs: Vec<String> = self.nodes.iter().flatten().map(NodeProc::addr).collect();
        for n in self.nodes.iter().flatten() {
            let others: Vec<String> = addrs.iter().filter(|a| **a != n.addr()).cloned().collect();
            n.wait_members(&others);
        }
    }

    /// The leader's address (`--convention` of every member).
    pub fn leader_addr(&self) -> &str {
        &self.leader_addr
    }

    /// The leader's port.
    pub fn leader_port(&self) -> u16 {
        self.leader_addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("host:port")
    }

    /// The leader.
    #[track_caller]
    pub fn leader(&self) -> &NodeProc {
        self.node(0)
    }

    /// Node `i` (0 is the leader).
    #[track_caller]
    pub fn node(&self, i: usize) -> &NodeProc {
        self.nodes[i].as_ref().unwrap_or_else(|| panic!("node {i} was taken out"))
    }

    /// Node `i`, mutably.
    #[track_caller]
    pub fn node_mut(&mut self, i: usize) -> &mut NodeProc {
        self.nodes[i].as_mut().unwrap_or_else(|| panic!("node {i} was taken out"))
    }

    /// Starts another member; returns its index.
    pub fn add_member(&mut self, dir: &TestDir, caps: &str, extra: &[&str]) -> usize {
        let n = NodeProc::start_member(dir, &self.leader_addr, caps, extra);
        self.nodes.push(Some(n));
        self.nodes.len() - 1
    }

    /// The index of the running node with admin address `addr`.
    pub fn index_of(&self, addr: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.as_ref().is_some_and(|n| n.addr() == addr))
    }

    /// Running nodes' `(index, actor type names)`.
    pub fn placement(&self) -> Vec<(usize, Vec<String>)> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| n.as_ref().map(|n| (i, n.actor_types()))).collect()
    }

    /// The index of the node hosting a live actor of `type_name` (the first, if several).
    pub fn host_of(&self, type_name: &str) -> Option<usize> {
        self.placement().into_iter().find(|(_, t)| t.iter().any(|t| t == type_name)).map(|(i, _)| i)
    }
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub fn port_listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

/// The four result lines of `troupe app` for `hello`, sorted.
pub fn hello_lines() -> Vec<String> {
    let mut v: Vec<String> = [
        "Encoder [density=1.000]  hello",
        "Base64Encoder [density=0.625]  aGVsbG8=",
        "MorseEncoder [density=0.250]  .... . .-.. .-.. ---",
        "Rot13Encoder [density=1.000]  uryyb",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.sort();
    v
}

/// The demo's capabilities per node (DESIGN §1): leader none, then morse+Caesar, then base64.
pub const MORSE_CAESAR: &str = "morse,Caesar cipher";
/// The base64 node's capability.
pub const BASE64: &str = "64bit encoder";

impl Drop for NodeProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- log of node {} ----\n{}", self.addr(), self.log_text());
        }
    }
}

// ---- waiting and files -------------------------------------------------------------------------

/// Calls `check` until it returns `Some`, or panics after `timeout` naming `what`.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(5);
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// The version (`<hash>-<generation>`) a line of `/proc/<pid>/maps` maps a library copy of: a
/// memory file `/memfd:troupe:<hash>-<gen>:<file>`, or a store file `<store>/<hash>-<gen>.<file>`.
pub fn mapping_owner(line: &str, store: &Path) -> Option<String> {
    let path = line.split_whitespace().nth(5)?;
    if let Some(rest) = path.strip_prefix("/memfd:troupe:") {
        return rest.split(':').next().map(str::to_string);
    }
    Path::new(path).strip_prefix(store).ok().and_then(store_file_owner)
}

/// The version (`<hash>-<generation>`) a store file belongs to: the zip `<hash>-<gen>.zip`, a
/// library copy `<hash>-<gen>.<file>`, or one of them being written (`….part`).
pub fn store_file_owner(rel: &Path) -> Option<String> {
    let name = rel.to_str()?;
    let (stem, _) = name.split_once('.')?;
    let (hash, gen) = stem.rsplit_once('-')?;
    (hash.len() == 64 && gen.parse::<u64>().is_ok()).then(|| stem.to_string())
}

/// Every regular file under `dir` (none if it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

// ---- client helpers ------------------------------------------------------------------------------

/// Creates a top-level actor through `client`.
pub async fn create(client: &mut Client, type_name: &str, hash: &str) -> anyhow::Result<Address> {
    let spec =
        CreateSpec { type_name: type_name.into(), source_hash: Some(hash.into()), ..CreateSpec::default() };
    match client.request(Request::Create { spec }).await? {
        Response::Created { address, .. } => Ok(address),
        other => anyhow::bail!("unexpected answer to create: {other:?}"),
    }
}

/// Sends text to `to` from `client`'s own address.
pub async fn send_text(client: &mut Client, to: &Address, text: &str) {
    match client.request(Request::Send { to: to.clone(), payload: Payload::Text(text.into()) }).await {
        Ok(Response::Sent) => {}
        other => panic!("send to {to} failed: {other:?}"),
    }
}

/// The next message for `client`, within [`REPLY_TIMEOUT`].
pub async fn next_message(client: &mut Client) -> Incoming {
    match tokio::time::timeout(REPLY_TIMEOUT, client.next_message()).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => panic!("the connection failed while waiting for a message: {e}"),
        Err(_) => panic!("no message within {REPLY_TIMEOUT:?}"),
    }
}

/// The next message for `client`, which must be text.
pub async fn next_text(client: &mut Client) -> String {
    match next_message(client).await.payload {
        Payload::Text(t) => t,
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Sends `text` and returns the text answer.
pub async fn ask(client: &mut Client, to: &Address, text: &str) -> String {
    send_text(client, to, text).await;
    next_text(client).await
}

/// The node's status through `client` (no CLI process: for loops).
pub async fn status_of(client: &mut Client) -> StatusReport {
    match client.request(Request::Status).await {
        Ok(Response::Status(r)) => *r,
        other => panic!("status failed: {other:?}"),
    }
}

/// Reads messages for `client` until a text satisfies `pred` (returned) or `timeout` passes
/// (panics, listing what did arrive). Other messages are dropped.
pub async fn text_matching(client: &mut Client, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, client.next_message()).await {
            Ok(Ok(m)) => match m.payload {
                Payload::Text(t) if pred(&t) => return t,
                other => seen.push(format!("{other:?}")),
            },
            Ok(Err(e)) => panic!("the connection failed while waiting for a message: {e}; before: {seen:#?}"),
            Err(_) => panic!("no matching message within {timeout:?}; got instead: {seen:#?}"),
        }
    }
}

/// Creates a top-level actor with an explicit spec through `client`.
pub async fn create_spec(client: &mut Client, spec: CreateSpec) -> anyhow::Result<Address> {
    match client.request(Request::Create { spec }).await? {
        Response::Created { address, .. } => Ok(address),
        other => anyhow::bail!("unexpected answer to create: {other:?}"),
    }
}

// ---- trust and resilience: extra plugins, limited nodes -------------------------------------------

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

/// The hostile test plugin (`tests/plugins/hostile`), built on demand.
pub fn hostile_lib() -> PathBuf {
    ensure_built_packages(&["troupe-test-hostile"]);
    plugin_lib("troupe_test_hostile")
}

/// `tests/plugins/abort` built with `-C panic=abort`, in a target directory of its own
/// (`<target>/abort`) so that it never replaces the ordinary build of the crate.
pub fn abort_lib() -> PathBuf {
    static LIB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = LIB.get_or_init(|| {
        let target = profile_dir().parent().expect("the profile dir is inside the target dir").join("abort");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "rustc",
                "--quiet",
                "-p",
                "troupe-test-abort",
                "--crate-type",
                "cdylib",
                "--manifest-path",
            ])
            .arg(&manifest)
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
    });
    match r {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

impl NodeProc {
    /// As [`NodeProc::start_with`], but the node process may write files of at most
    /// `max_file_bytes` (`RLIMIT_FSIZE`): a full disk as the store sees it. (The node ignores
    /// `SIGXFSZ`, so a write past the limit fails with `EFBIG` instead of killing it.)
    pub fn start_with_file_size_limit(
        dir: &TestDir,
        caps: &str,
        extra: &[&str],
        max_file_bytes: u64,
    ) -> NodeProc {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let state_dir = dir.join(&format!("node-{port}"));
        let log = dir.join(&format!("node-{port}-fsize.log"));
        let log_file = std::fs::File::create(&log).expect("cannot create the node log");
        let mut cmd = Command::new(troupe_bin());
        cmd.arg("start")
            .arg(port.to_string())
            .arg(caps)
            .arg("--foreground")
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--convention")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file);
        let limit = libc::rlimit {
            rlim_cur: max_file_bytes as libc::rlim_t,
            rlim_max: max_file_bytes as libc::rlim_t,
        };
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // setrlimit(2), which is async-signal-safe; `limit` is a plain value copied into it.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("cannot start troupe");
        let mut node = NodeProc { child, port, state_dir, log };
        let addr = node.addr();
        wait_for("the size-limited node to answer", START_TIMEOUT, || {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("the node exited during start ({status}):\n{}", node.log_text());
            }
            hello_answers(&addr).then_some(())
        });
        node
    }
}

/// Polls until `check` holds for the convention (within [`CONVENTION_TIMEOUT`]), or panics
/// naming `what` and where every actor runs now.
#[track_caller]
pub fn wait_conv(conv: &Convention, what: &str, mut check: impl FnMut(&Convention) -> bool) {
    let deadline = Instant::now() + CONVENTION_TIMEOUT;
    while !check(conv) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; placement now: {:?}",
            conv.placement()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every capability the encoders need: one node with these hosts all six actors.
pub const ALL_CAPS: &str = "morse,Caesar cipher,64bit encoder";
