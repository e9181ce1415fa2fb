//! A test's node process ([`NodeProc`]): `troupe start --foreground` on a loopback port chosen
//! at run time, with its state and log in the test's directory; started until it answers a
//! hello, stopped gracefully or killed, and killed and reaped when dropped.
//!
//! What a test asks of a running node (the CLI against it, its status, its mappings) is in
//! `inspect.rs`; its membership of a convention in `convention.rs`.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use troupe_node::client::Client;
use troupe_node::protocol::{self, ServerFrame, PROTOCOL_VERSION};

use crate::argv::node_argv;
use crate::build::troupe_bin;
use crate::cli::{troupe, Cli};
use crate::files::TestDir;

/// How long a node may take to answer its first hello: generous, because two cores are shared
/// by several test processes and cargo.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stopped node may take to exit (a hang guard).
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a node on a port of our choosing is started again when another process
/// took the port between [`free_port`] and the node's bind.
const PORT_RACE_RETRIES: usize = 4;

/// A node process (`troupe start PORT CAPS --foreground --state-dir DIR`), killed and reaped
/// when dropped if it is still running.
pub struct NodeProc {
    child: Child,
    port: u16,
    state_dir: PathBuf,
    log: PathBuf,
    /// The node's `--secret-file`, if any: the CLI run against it ([`NodeProc::run`]) gets it.
    pub(crate) secret_file: Option<String>,
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind an ephemeral port");
    l.local_addr().expect("a bound listener has an address").port()
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub fn port_listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
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

/// What a test asks of a node process it starts.
#[derive(Clone, Copy)]
struct Launch<'a> {
    /// The port to use, or none for one chosen now.
    port: Option<u16>,
    /// Capabilities, comma-separated.
    caps: &'a str,
    /// Extra `troupe start` arguments.
    extra: &'a [&'a str],
    /// `RLIMIT_FSIZE` of the process, if limited.
    max_file_bytes: Option<u64>,
}

impl<'a> Launch<'a> {
    fn new(port: Option<u16>, caps: &'a str, extra: &'a [&'a str]) -> Launch<'a> {
        Launch { port, caps, extra, max_file_bytes: None }
    }
}

impl NodeProc {
    /// A node with capabilities `caps` (comma-separated), state in `dir`.
    pub fn start(dir: &TestDir, caps: &str) -> NodeProc {
        Self::start_with(dir, caps, &[])
    }

    /// As [`NodeProc::start`], with extra `troupe start` arguments (e.g. `--authority none`).
    pub fn start_with(dir: &TestDir, caps: &str, extra: &[&str]) -> NodeProc {
        Self::start_inner(dir, Launch::new(None, caps, extra))
    }

    /// A node on a given `port` (e.g. to restart a node where it was): waits up to
    /// [`START_TIMEOUT`] for the port to be free and the node to answer.
    pub fn start_on(dir: &TestDir, port: u16, caps: &str, extra: &[&str]) -> NodeProc {
        Self::start_inner(dir, Launch::new(Some(port), caps, extra))
    }

    /// A member of the convention led by `leader` (`host:port`).
    pub fn start_member(dir: &TestDir, leader: &str, caps: &str, extra: &[&str]) -> NodeProc {
        let mut args = vec!["--convention", leader];
        args.extend_from_slice(extra);
        Self::start_inner(dir, Launch::new(None, caps, &args))
    }

    /// As [`NodeProc::start_with`], but the node process may write files of at most
    /// `max_file_bytes` (`RLIMIT_FSIZE`): a full disk as the store sees it. (The node ignores
    /// `SIGXFSZ`, so a write past the limit fails with `EFBIG` instead of killing it.)
    pub fn start_with_file_size_limit(
        dir: &TestDir,
        caps: &str,
        extra: &[&str],
        max_file_bytes: u64,
    ) -> NodeProc {
        Self::start_inner(
            dir,
            Launch { max_file_bytes: Some(max_file_bytes), ..Launch::new(None, caps, extra) },
        )
    }

    /// Starts the node until it answers, starting it again while its port is taken: on another
    /// port after a race for a free one, on the same port (up to [`START_TIMEOUT`]) while a
    /// process that had it lets go.
    fn start_inner(dir: &TestDir, launch: Launch<'_>) -> NodeProc {
        let fixed_deadline = Instant::now() + START_TIMEOUT;
        for attempt in 0.. {
            let port = launch.port.unwrap_or_else(free_port);
            let mut node = Self::spawn(dir, port, launch);
            let Err(status) = node.wait_started() else {
                return node;
            };
            let log = node.log_text();
            if log.contains("taken") && launch.port.is_none() && attempt < PORT_RACE_RETRIES {
                continue;
            }
            if log.contains("taken") && launch.port.is_some() && Instant::now() < fixed_deadline {
                // The old process's port: nothing tells us when the kernel lets it go.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            panic!("the node exited during start ({status}):\n{log}");
        }
        unreachable!("the attempts either return or panic")
    }

    /// Runs `troupe start` for a node on `port`, its output going to a log of its own.
    fn spawn(dir: &TestDir, port: u16, launch: Launch<'_>) -> NodeProc {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let state_dir = dir.join(&format!("node-{port}"));
        // A node restarted on the same port gets a log of its own.
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let log = dir.join(&format!("node-{port}-{n}.log"));
        let log_file = std::fs::File::create(&log).expect("cannot create the node log");
        // A size-limited node logs at info whatever the caller's RUST_LOG, so that its own log
        // stays far below the limit.
        let rust_log = match launch.max_file_bytes {
            Some(_) => "info".to_string(),
            None => std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        };
        let mut cmd = Command::new(troupe_bin());
        cmd.args(node_argv(port, launch.caps, &state_dir, launch.extra))
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file);
        if let Some(max) = launch.max_file_bytes {
            limit_file_size(&mut cmd, max);
        }
        let child = cmd.spawn().expect("cannot start troupe");
        let secret_file = launch.extra.windows(2).find(|w| w[0] == "--secret-file").map(|w| w[1].to_string());
        NodeProc { child, port, state_dir, log, secret_file }
    }

    /// Waits up to [`START_TIMEOUT`] for the node to answer a hello; the exit status if it
    /// exited first. Panics if it neither answers nor exits.
    fn wait_started(&mut self) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut delay = Duration::from_millis(5);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(status);
            }
            if hello_answers(&self.addr()) {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "the node did not answer within {START_TIMEOUT:?}:\n{}",
                self.log_text()
            );
            // Nothing announces that the node listens: ask again, soon.
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(100));
        }
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

    /// A client connected to the node.
    pub async fn client(&self) -> Client {
        Client::connect(&self.addr()).await.expect("cannot connect to the node")
    }

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
        assert!(self.wait_exit(EXIT_TIMEOUT).is_some(), "node {} did not exit after stop", self.addr());
    }

    fn run_stop(&self) -> Cli {
        troupe(&["stop", &self.port_arg()], None)
    }

    /// Whether the process has exited (and been reaped).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `timeout` for the node process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            // A child's exit is not an event std lets us wait on with a deadline.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Limits the files the process of `cmd` may write to `max_file_bytes` (`RLIMIT_FSIZE`).
fn limit_file_size(cmd: &mut Command, max_file_bytes: u64) {
    use std::os::unix::process::CommandExt;
    let limit =
        libc::rlimit { rlim_cur: max_file_bytes as libc::rlim_t, rlim_max: max_file_bytes as libc::rlim_t };
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
