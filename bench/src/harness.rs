//! Nodes, clients and zips for the figures: node processes on free loopback ports under one
//! temporary directory (killed, reaped and deleted at the end), a pipelined raw client, and
//! zip variants that differ only in their package version (so each has its own hash).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use troupe_actor_abi::message::{Address, CreateSpec, Incoming, Payload};
use troupe_node::client::Client;
use troupe_node::launch::NodeArgs;
use troupe_node::protocol::SealedCodec;
use troupe_node::protocol::{self, ClientFrame, Request, Response, ServerFrame};
use troupe_node::status::StatusReport;

/// How long a node may take to answer its first hello on a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the binaries are and where everything temporary goes.
pub struct Env {
    /// `target/release`.
    pub bin_dir: PathBuf,
    /// Deleted when dropped.
    pub tmp: tempfile::TempDir,
}

impl Env {
    /// The release directory this executable was built into.
    pub fn new() -> Result<Env> {
        let exe = std::env::current_exe()?;
        let bin_dir = exe.parent().ok_or_else(|| anyhow!("the executable has no directory"))?.to_path_buf();
        let mut tmp = tempfile::Builder::new().prefix("troupe-bench-").tempdir()?;
        if std::env::var_os("TROUPE_BENCH_KEEP").is_some() {
            // For reading the nodes' logs afterwards.
            tmp.disable_cleanup(true);
            eprintln!("keeping {}", tmp.path().display());
        }
        Ok(Env { bin_dir, tmp })
    }

    /// `target/release/troupe`.
    pub fn troupe(&self) -> PathBuf {
        self.bin_dir.join("troupe")
    }

    /// A plugin library by crate name with underscores.
    pub fn lib(&self, name: &str) -> Result<PathBuf> {
        let p = self.bin_dir.join(format!("lib{name}.so"));
        if !p.exists() {
            bail!("{} is not built (run `make bench`)", p.display());
        }
        Ok(p)
    }

    /// A path in the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `troupe pack -o <tmp>/<name> LIB` (which strips the library), or with `strip == false`
    /// `troupe pack --no-strip`; returns the zip.
    pub fn pack(&self, name: &str, lib: &str, strip: bool) -> Result<PathBuf> {
        let lib_path = self.lib(lib)?;
        let zip = self.path(name);
        let mut pack = Command::new(self.troupe());
        pack.arg("pack").arg("-o").arg(&zip);
        if !strip {
            pack.arg("--no-strip");
        }
        let out = pack.arg(&lib_path).output()?;
        if !out.status.success() {
            bail!("troupe pack failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(zip)
    }
}

/// A node process, killed and reaped when dropped.
pub struct Node {
    child: Child,
    /// Admin port.
    pub port: u16,
    /// State directory.
    pub state: PathBuf,
    /// The convention's shared secret, if the node has one (its links are then encrypted).
    pub secret: Option<troupe_node::signing::Secret>,
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `n` distinct loopback ports that were free a moment ago.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let p = free_port()?;
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    Ok(ports)
}

/// The `--convention` list naming `ports` on loopback, in order (`127.0.0.1:A,127.0.0.1:B`).
pub fn leader_list(ports: &[u16]) -> String {
    ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
}

impl Node {
    /// Spawns `troupe start PORT CAPS --foreground` in the convention led by `leader` (itself if
    /// `None`), without waiting for it to answer.
    pub fn spawn(env: &Env, caps: &str, leader: Option<u16>) -> Result<Node> {
        Node::spawn_with(env, caps, leader, |_| {})
    }

    /// [`Node::spawn`], with `tune` changing the other settings (`version_threads`, say).
    pub fn spawn_with(
        env: &Env,
        caps: &str,
        leader: Option<u16>,
        tune: impl FnOnce(&mut NodeArgs),
    ) -> Result<Node> {
        Node::spawn_secret(env, caps, leader, None, tune)
    }

    /// [`Node::spawn_with`], with the shared secret in `secret_file` (`--secret-file`).
    pub fn spawn_secret(
        env: &Env,
        caps: &str,
        leader: Option<u16>,
        secret_file: Option<&std::path::Path>,
        tune: impl FnOnce(&mut NodeArgs),
    ) -> Result<Node> {
        let port = free_port()?;
        // Never the default 127.0.0.1:1900, which a demo on this machine may be using.
        let convention = format!("127.0.0.1:{}", leader.unwrap_or(port));
        Node::spawn_at(env, port, caps, &convention, secret_file, tune)
    }

    /// Spawns a node on `port` (chosen by the caller, so that a `--convention A,B,C` list can
    /// name it before it starts, and so that it can be started again on the same port) in the
    /// convention `convention` (one address or a list of leaders, as `--convention` takes).
    /// Its state directory and log are kept across restarts on the same port (the log is
    /// appended to).
    pub fn spawn_listed(env: &Env, port: u16, caps: &str, convention: &str) -> Result<Node> {
        Node::spawn_at(env, port, caps, convention, None, |_| {})
    }

    fn spawn_at(
        env: &Env,
        port: u16,
        caps: &str,
        convention: &str,
        secret_file: Option<&std::path::Path>,
        tune: impl FnOnce(&mut NodeArgs),
    ) -> Result<Node> {
        let state = env.path(&format!("node-{port}"));
        std::fs::create_dir_all(&state)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(state.join("stdout.log"))?;
        let mut args = NodeArgs::new(port);
        args.capabilities = caps.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect();
        args.state_dir = Some(state.clone());
        args.foreground = true;
        args.convention = convention.to_string();
        tune(&mut args);
        let mut cmd = Command::new(env.troupe());
        // `--secret-file` sets this variable for the node; never inherited from the bench's.
        cmd.env_remove("TROUPE_SECRET_FILE");
        let secret = match secret_file {
            Some(f) => {
                cmd.env("TROUPE_SECRET_FILE", f);
                Some(troupe_node::signing::Secret::load(f)?)
            }
            None => None,
        };
        let child = cmd
            .args(args.argv())
            // TROUPE_BENCH_NODE_LOG=troupe_node=debug shows each load's timings in the logs.
            .env("RUST_LOG", std::env::var("TROUPE_BENCH_NODE_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start troupe")?;
        Ok(Node { child, port, state, secret })
    }

    /// Waits until the node answers a hello.
    pub async fn ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                bail!("node {} exited during start ({st}): {}", self.port, self.log_tail());
            }
            if self.client().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("node {} did not answer within {START_TIMEOUT:?}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Spawns and waits.
    pub async fn start(env: &Env, caps: &str, leader: Option<u16>) -> Result<Node> {
        Node::start_with(env, caps, leader, |_| {}).await
    }

    /// [`Node::spawn_with`], then waits.
    pub async fn start_with(
        env: &Env,
        caps: &str,
        leader: Option<u16>,
        tune: impl FnOnce(&mut NodeArgs),
    ) -> Result<Node> {
        let mut n = Node::spawn_with(env, caps, leader, tune)?;
        n.ready().await?;
        Ok(n)
    }

    /// A client of this node (with its secret, if any).
    pub async fn client(&self) -> Result<Client> {
        Ok(Client::connect_with(&self.addr(), self.secret.as_ref()).await?)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of the node's output, for error messages.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.state.join("stdout.log")).unwrap_or_default();
        let start = s.len().saturating_sub(600);
        s.get(start..).unwrap_or_default().to_string()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful stop), then SIGKILL if it takes more than 5 s; reaps the process.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet (so not reused).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).ok_or_else(|| anyhow!("bad VmRSS"))?.parse()?)
}

/// The CPU time (user and system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command in parentheses: field 3 (state) onwards; utime and stime are 14 and 15.
    let rest = s.get(s.rfind(')').ok_or_else(|| anyhow!("bad stat"))? + 2..).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> { Ok(f.get(i).ok_or_else(|| anyhow!("short stat"))?.parse()?) };
    let ticks = field(11)? + field(12)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Duration::from_secs_f64(ticks as f64 / hz))
}

/// `/proc/<pid>/maps` lines.
pub fn maps(pid: u32) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(format!("/proc/{pid}/maps"))?.lines().map(str::to_string).collect())
}

// ---- control client ---------------------------------------------------------------------------

/// Loads zip bytes; returns the hash.
pub async fn load(c: &mut Client, zip: Vec<u8>) -> Result<String> {
    match c.request(Request::Load { zip, info: "troupe-bench".into() }).await? {
        Response::Loaded { hash, .. } => Ok(hash),
        other => bail!("unexpected answer to load: {other:?}"),
    }
}

/// Creates a top-level actor of `type_name` from `hash`.
pub async fn create(c: &mut Client, hash: &str, type_name: &str, global: Option<String>) -> Result<Address> {
    let spec = CreateSpec {
        type_name: type_name.into(),
        requirements: Vec::new(),
        global_name: global,
        source_hash: Some(hash.into()),
    };
    match c.request(Request::Create { spec }).await? {
        Response::Created { address, .. } => Ok(address),
        other => bail!("unexpected answer to create: {other:?}"),
    }
}

/// A create of `type_name` from `hash` with the global name `name`: the holder's address,
/// and whether it already existed (the name was held) rather than being created now.
pub async fn create_named(
    c: &mut Client,
    hash: &str,
    type_name: &str,
    name: &str,
) -> Result<(Address, bool)> {
    let spec = CreateSpec {
        type_name: type_name.into(),
        requirements: Vec::new(),
        global_name: Some(name.into()),
        source_hash: Some(hash.into()),
    };
    match c.request(Request::Create { spec }).await? {
        Response::Created { address, existing, .. } => Ok((address, existing)),
        other => bail!("unexpected answer to create: {other:?}"),
    }
}

/// The node's status.
pub async fn status(c: &mut Client) -> Result<StatusReport> {
    match c.request(Request::Status).await? {
        Response::Status(s) => Ok(*s),
        other => bail!("unexpected answer to status: {other:?}"),
    }
}

// ---- pipelined client ---------------------------------------------------------------------------

type Framed_ = Framed<TcpStream, SealedCodec>;

/// A client connection that sends without waiting for each reply: sends go out as requests
/// (so that the node uses the connection's address as the sender) and their `Sent` replies are
/// skipped on the way in.
pub struct Raw {
    sink: SplitSink<Framed_, bytes::Bytes>,
    stream: SplitStream<Framed_>,
    /// This connection's address.
    pub me: Address,
    next_id: u64,
}

impl Raw {
    /// Connects and says hello.
    pub async fn connect(addr: &str) -> Result<Raw> {
        Raw::connect_with(addr, None).await
    }

    /// Connects and says hello, with `secret` (an encrypted link) or none.
    pub async fn connect_with(addr: &str, secret: Option<&troupe_node::signing::Secret>) -> Result<Raw> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut framed = Framed::new(stream, SealedCodec::new(protocol::codec()));
        let welcome =
            protocol::client_handshake(&mut framed, "troupe-bench", secret).await.map_err(|e| anyhow!(e))?;
        let (sink, stream) = framed.split();
        Ok(Raw { sink, stream, me: welcome.client, next_id: 1 })
    }

    /// Queues a send (call [`Raw::flush`] to push queued frames out).
    pub async fn feed(&mut self, to: &Address, payload: Payload) -> Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = ClientFrame::Request { id, request: Request::Send { to: to.clone(), payload } };
        self.sink.feed(protocol::encode(&frame)).await?;
        Ok(())
    }

    /// Writes queued frames.
    pub async fn flush(&mut self) -> Result<()> {
        self.sink.flush().await?;
        Ok(())
    }

    /// Sends one message now.
    pub async fn send(&mut self, to: &Address, payload: Payload) -> Result<()> {
        self.feed(to, payload).await?;
        self.flush().await
    }

    /// The next message delivered to this connection (a refused send is an error).
    pub async fn next(&mut self) -> Result<Incoming> {
        loop {
            let bytes = match self.stream.next().await {
                Some(b) => b?,
                None => bail!("the node closed the connection"),
            };
            match protocol::decode::<ServerFrame>(&bytes)? {
                ServerFrame::Deliver(m) => return Ok(m),
                ServerFrame::Reply { result: Err(e), .. } => bail!("send refused: {e}"),
                ServerFrame::ProtocolError { message } => bail!("protocol error: {message}"),
                _ => {}
            }
        }
    }

    /// [`Raw::next`] with a deadline.
    pub async fn next_within(&mut self, t: Duration) -> Result<Incoming> {
        match tokio::time::timeout(t, self.next()).await {
            Ok(r) => r,
            Err(_) => bail!("no message within {t:?}"),
        }
    }
}

// ---- zips ------------------------------------------------------------------------------------------

/// Copies of a packed zip that differ only in the manifest's package version.
#[derive(Clone)]
pub struct ZipVariants {
    base: Vec<u8>,
    manifest: String,
    version_line: String,
}

impl ZipVariants {
    /// From a zip written by `troupe pack`.
    pub fn new(zip: &Path) -> Result<ZipVariants> {
        let base = std::fs::read(zip)?;
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&base))?;
        let mut manifest = String::new();
        archive.by_name("troupe.toml")?.read_to_string(&mut manifest)?;
        let version_line = manifest
            .lines()
            .find(|l| l.trim_start().starts_with("version ="))
            .ok_or_else(|| anyhow!("the manifest has no package version"))?
            .to_string();
        Ok(ZipVariants { base, manifest, version_line })
    }

    /// The variant with package version `version`.
    pub fn make(&self, version: &str) -> Result<Vec<u8>> {
        let manifest = self.manifest.replacen(&self.version_line, &format!("version = \"{version}\""), 1);
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&self.base))?;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("troupe.toml", opts)?;
        w.write_all(manifest.as_bytes())?;
        for i in 0..archive.len() {
            let f = archive.by_index_raw(i)?;
            if f.name().map(|n| n != "troupe.toml").unwrap_or(true) {
                w.raw_copy_file(f)?;
            }
        }
        Ok(w.finish()?.into_inner())
    }
}
