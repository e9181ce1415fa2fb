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
use troupe_node::protocol::{self, ClientFrame, Request, Response, ServerFrame, PROTOCOL_VERSION};
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

/// Builds the CLI and the plugins (once per process); panics with cargo's output on failure.
pub fn ensure_built() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
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
        for p in PACKAGES {
            cmd.arg("-p").arg(p);
        }
        let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "building the CLI and plugins failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
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
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind an ephemeral port");
    l.local_addr().expect("a bound listener has an address").port()
}

/// Says hello to `addr` with plain blocking I/O (so it works in and out of async tests).
fn hello_answers(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let hello = ClientFrame::Hello { protocol: PROTOCOL_VERSION, agent: "troupe-tests".into() };
    let body = protocol::encode(&hello);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    if s.write_all(&frame).is_err() {
        return false;
    }
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return false;
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    if s.read_exact(&mut body).is_err() {
        return false;
    }
    matches!(protocol::decode::<ServerFrame>(&body), Ok(ServerFrame::Hello { .. }))
}

impl NodeProc {
    /// A node with capabilities `caps` (comma-separated), state in `dir`.
    pub fn start(dir: &TestDir, caps: &str) -> NodeProc {
        Self::start_with(dir, caps, &[])
    }

    /// As [`NodeProc::start`], with extra `troupe start` arguments (e.g. `--authority none`).
    pub fn start_with(dir: &TestDir, caps: &str, extra: &[&str]) -> NodeProc {
        for attempt in 0..5 {
            let port = free_port();
            let state_dir = dir.join(&format!("node-{port}"));
            let log = dir.join(&format!("node-{port}.log"));
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
                    if log.contains("taken") && attempt < 4 {
                        break; // someone grabbed the port in between: try another
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
        unreachable!("five attempts either return or panic")
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
