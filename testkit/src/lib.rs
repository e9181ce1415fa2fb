//! # troupe-testkit
//!
//! Test a Troupe actor plugin from `cargo test`, with no node process and no port: a
//! [`TestNode`] runs a real node inside the test process (the node crate as a library, with
//! its version threads, its loader and its unloader), loads the crate's cdylib (built by
//! cargo and packed as `troupe pack` packs it), and offers [`TestNode::create`],
//! [`TestNode::tell`], [`TestNode::ask`] and [`TestNode::expect`], each with a timeout and an
//! error that says what did not happen.
//!
//! ```no_run
//! use std::time::Duration;
//! use troupe_testkit::TestNode;
//!
//! let mut node = TestNode::start().unwrap();
//! node.load_this_crate().unwrap(); // cargo build + pack of the crate under test
//! let greeter = node.create("hello.Greeter").unwrap();
//! assert_eq!(node.ask_text(&greeter, "world").unwrap(), "hello, world");
//! // A reply to a `tell` comes to the test's own address: `expect` waits for it.
//! node.tell(&greeter, "again");
//! assert_eq!(node.expect_text(Duration::from_secs(5)).unwrap(), "hello, again");
//! // Dropped (or `shutdown()`): actors exit, versions unload, threads are joined, the
//! // library is dlclosed and the node's files are deleted.
//! ```
//!
//! Plugin code runs only on its version's threads, exactly as in a node process; the test's
//! thread only sends and waits. The node leads a convention of one (nothing is dialled), so
//! actors whose type requires capabilities need a node started with them
//! ([`TestNode::with_capabilities`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use troupe_actor_abi::message::{Address, CreateSpec, Incoming, Payload, SystemMessage};
use troupe_actor_abi::sdk::IntoPayload;
use troupe_node::archive::{Compression, PackInput, PackageInfo};
use troupe_node::protocol::Response;
use troupe_node::status::StatusReport;
use troupe_node::{AuthorityConfig, ConventionConfig, Node, NodeConfig};

pub use troupe_actor_abi::message;

/// How long [`TestNode::ask_text`] waits for a reply: a guard against a reply that never
/// comes, not a latency claim. `cargo test` runs many tests at once, on machines as loaded as
/// CI runners, so the guard sits far above any honest reply (milliseconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long dropping a [`TestNode`] waits for its versions to unload: the SDK's `on_unload`
/// limit (5 s) plus the time to drain what is queued.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// What went wrong, said so that the test's failure message is enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node could not be made (its temporary directory or runtime).
    #[error("cannot start the in-process node: {0}")]
    Start(String),
    /// cargo failed, or built no cdylib.
    #[error("{0}")]
    Build(String),
    /// The node refused the source (the message says why, with its code).
    #[error("the node refused the source: {0}")]
    Load(String),
    /// A create needs a version and none was loaded.
    #[error("no version is loaded: call load_this_crate (or load_crate, load_cdylib, load_zip) first")]
    NothingLoaded,
    /// The node refused the create (`NoCompatibleSystemForActor`, `InvalidActorSpecification`…).
    #[error("create {type_name} failed: {reason}")]
    Create {
        /// The type asked for.
        type_name: String,
        /// The node's answer.
        reason: String,
    },
    /// Nothing arrived in time.
    #[error("no message {what} within {timeout:?}")]
    Timeout {
        /// What was awaited (`from 127.0.0.1:…#1f`, `to the test's address`).
        what: String,
        /// How long the test waited.
        timeout: Duration,
    },
    /// The message came back: the actor does not exist, or its handler failed twice on it.
    #[error("the message came back from {target} as a PoisonMessage: {details}")]
    Poison {
        /// Who it was sent to.
        target: Address,
        /// Why it came back.
        details: String,
    },
    /// A reply arrived, but not of the kind asked for.
    #[error("expected {expected}, got {got:?}")]
    Unexpected {
        /// What the call wanted (`text`).
        expected: &'static str,
        /// What came.
        got: Box<Incoming>,
    },
    /// The node refused a request that is not a load or a create (a bad capability).
    #[error("the node refused: {0}")]
    Refused(String),
    /// At shutdown, versions were still loaded when the wait ran out.
    #[error("versions still loaded {STOP_TIMEOUT:?} after shutdown began: {0}")]
    Shutdown(String),
}

/// A node inside the test process, with an address of the test's own.
pub struct TestNode {
    /// `None` once shut down.
    node: Option<Node>,
    /// Runs the node's tasks (routing, creates, timers) on its own worker threads, so that
    /// they progress while the test's thread waits.
    rt: Option<tokio::runtime::Runtime>,
    /// The test's address: replies to [`TestNode::tell`] arrive at [`TestNode::expect`].
    me: Address,
    inbox: mpsc::UnboundedReceiver<Incoming>,
    /// The version [`TestNode::create`] uses: the last one loaded.
    hash: Option<String>,
    /// The node's state directory (its store), deleted after the node stopped.
    dir: Option<tempfile::TempDir>,
}

/// Distinguishes the nodes of one test process (several tests run at once).
static NEXT: AtomicU64 = AtomicU64::new(1);

impl TestNode {
    /// A node with no capabilities.
    pub fn start() -> Result<TestNode, Error> {
        TestNode::with_capabilities(&[])
    }

    /// A node with capabilities, each `name` or `name=value` (as `troupe start PORT "…"`).
    pub fn with_capabilities(capabilities: &[&str]) -> Result<TestNode, Error> {
        let dir = tempfile::Builder::new()
            .prefix("troupe-testkit-")
            .tempdir()
            .map_err(|e| Error::Start(format!("cannot make a temporary directory: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("troupe-testkit")
            .enable_all()
            .build()
            .map_err(|e| Error::Start(format!("cannot start a tokio runtime: {e}")))?;
        // No port is bound: the address only names this node in actor addresses. It leads
        // its own convention, so it never dials anyone.
        let addr = format!("testkit-{}-{}:0", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let config = NodeConfig {
            addr: addr.clone(),
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            state_dir: dir.path().to_path_buf(),
            authority: AuthorityConfig::AcceptAll,
            // Alone in its convention: a short heartbeat keeps a starting leader's wait for
            // members' names (one heartbeat) out of the tests' way.
            convention: ConventionConfig {
                leaders: vec![addr],
                heartbeat: Duration::from_millis(50),
                ..ConventionConfig::default()
            },
            secret: None,
            lib_copies: troupe_node::LibCopies::Memory,
            version_threads: 2,
            long_handler: Duration::from_secs(1),
            connections: troupe_node::ConnectionLimits::default(),
            // Actors under test may use every system call (load, unload, capabilities, stop):
            // the node is the test's own.
            actor_system_calls: true,
            authority_timeout: troupe_node::model::config::DEFAULT_AUTHORITY_TIMEOUT,
        };
        let node = {
            let _entered = rt.enter();
            Node::new(config).map_err(|e| Error::Start(format!("cannot create the node's store: {e}")))?
        };
        let (tx, inbox) = mpsc::unbounded_channel();
        let me = node.core().register_client(tx);
        Ok(TestNode { node: Some(node), rt: Some(rt), me, inbox, hash: None, dir: Some(dir) })
    }

    fn node(&self) -> &Node {
        self.node.as_ref().expect("the node runs until the TestNode is dropped")
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("the runtime runs until the TestNode is dropped").block_on(f)
    }

    /// The test's own address: what actors see as the sender of [`TestNode::tell`].
    pub fn address(&self) -> &Address {
        &self.me
    }

    /// Builds the crate under test (`CARGO_MANIFEST_DIR`, which `cargo test` sets), packs its
    /// cdylib and loads it; its hash. Later creates use it.
    pub fn load_this_crate(&mut self) -> Result<String, Error> {
        let dir = std::env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| {
            Error::Build("CARGO_MANIFEST_DIR is not set: run under cargo test, or use load_crate(DIR)".into())
        })?;
        self.load_crate(Path::new(&dir))
    }

    /// Builds the plugin crate in `dir` with cargo (the dev profile, the crate's own target
    /// directory or `CARGO_TARGET_DIR`), packs its cdylib(s) and loads them; the hash.
    pub fn load_crate(&mut self, dir: &Path) -> Result<String, Error> {
        let libs = build_cdylibs(dir)?;
        self.load_cdylibs(&libs)
    }

    /// Packs cdylib files (`lib*.so`) as `troupe pack` does, unstripped, and loads them.
    pub fn load_cdylibs(&mut self, libs: &[PathBuf]) -> Result<String, Error> {
        let zip = pack(libs)?;
        self.load_zip(zip)
    }

    /// Loads a source zip (what `troupe pack` writes); the hash.
    pub fn load_zip(&mut self, zip: Vec<u8>) -> Result<String, Error> {
        let core = self.node().core().clone();
        match self.block_on(core.load(zip, "troupe-testkit".into())) {
            Ok(Response::Loaded { hash, .. }) => {
                self.hash = Some(hash.clone());
                Ok(hash)
            }
            Ok(other) => Err(Error::Load(format!("unexpected answer {other:?}"))),
            Err(e) => Err(Error::Load(e.to_string())),
        }
    }

    /// Creates an actor of `type_name` (`module.Type`) from the version loaded last.
    pub fn create(&self, type_name: &str) -> Result<Address, Error> {
        let hash = self.hash.clone().ok_or(Error::NothingLoaded)?;
        self.create_spec(CreateSpec {
            type_name: type_name.into(),
            source_hash: Some(hash),
            ..CreateSpec::default()
        })
    }

    /// Creates an actor as `spec` says (requirements, a global name, another version); with
    /// no `source_hash`, from the version loaded last.
    pub fn create_spec(&self, mut spec: CreateSpec) -> Result<Address, Error> {
        if spec.source_hash.is_none() {
            spec.source_hash = Some(self.hash.clone().ok_or(Error::NothingLoaded)?);
        }
        let type_name = spec.type_name.clone();
        let core = self.node().core().clone();
        match self.block_on(core.create_for_client(spec)) {
            Ok(Response::Created { address, .. }) => Ok(address),
            Ok(other) => Err(Error::Create { type_name, reason: format!("unexpected answer {other:?}") }),
            Err(e) => Err(Error::Create { type_name, reason: e.to_string() }),
        }
    }

    /// Sends `msg` (text, a [`Typed`](troupe_actor_abi::sdk::Typed) value or a
    /// [`Payload`]) from the test's address: replies come to [`TestNode::expect`].
    pub fn tell(&self, to: &Address, msg: impl IntoPayload) {
        self.node().core().send(Some(self.me.clone()), to, msg.into_payload());
    }

    /// Asks `ActorExitRequest` of `to` (its children exit too).
    pub fn kill(&self, to: &Address) {
        self.tell(to, Payload::System(SystemMessage::ActorExitRequest { recursive: true }));
    }

    /// Sends `msg` from a fresh address and returns the first message sent back to it, within
    /// `timeout`. A message that came back undelivered is [`Error::Poison`].
    pub fn ask(&self, to: &Address, msg: impl IntoPayload, timeout: Duration) -> Result<Incoming, Error> {
        let core = self.node().core().clone();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let asker = core.register_client(tx);
        core.send(Some(asker.clone()), to, msg.into_payload());
        let reply = self.block_on(async { tokio::time::timeout(timeout, rx.recv()).await });
        core.unregister_client(&asker);
        match reply {
            Ok(Some(m)) => poison_to_error(m),
            _ => Err(Error::Timeout { what: format!("back from {to}"), timeout }),
        }
    }

    /// [`TestNode::ask`] with text, expecting text back, within [`DEFAULT_TIMEOUT`].
    pub fn ask_text(&self, to: &Address, text: &str) -> Result<String, Error> {
        text_of(self.ask(to, text, DEFAULT_TIMEOUT)?)
    }

    /// The next message sent to the test's address ([`TestNode::address`]), within `timeout`.
    /// Runtime messages (a `PoisonMessage` for a `tell` that could not be delivered, for
    /// instance) arrive here as they are.
    pub fn expect(&mut self, timeout: Duration) -> Result<Incoming, Error> {
        let rt = self.rt.as_ref().expect("the runtime runs until the TestNode is dropped");
        match rt.block_on(async { tokio::time::timeout(timeout, self.inbox.recv()).await }) {
            Ok(Some(m)) => Ok(m),
            _ => Err(Error::Timeout { what: format!("to the test's address {}", self.me), timeout }),
        }
    }

    /// [`TestNode::expect`], expecting text.
    pub fn expect_text(&mut self, timeout: Duration) -> Result<String, Error> {
        text_of(poison_to_error(self.expect(timeout)?)?)
    }

    /// Nothing arrives at the test's address for `quiet`; else the message that did.
    pub fn expect_nothing(&mut self, quiet: Duration) -> Result<(), Box<Incoming>> {
        match self.expect(quiet) {
            Ok(m) => Err(Box::new(m)),
            Err(_) => Ok(()),
        }
    }

    /// The node's status, as `troupe status --json` shows it: versions, actors, capabilities.
    pub fn status(&self) -> StatusReport {
        self.node().core().status()
    }

    /// Sets (`add`: `name` or `name=value`) or removes a capability, as `troupe chgcap` does:
    /// actors whose requirements no longer hold are asked to exit.
    pub fn change_capability(&self, add: bool, capability: &str) -> Result<(), Error> {
        self.node()
            .core()
            .change_capability(add, capability)
            .map(|_| ())
            .map_err(|e| Error::Refused(e.to_string()))
    }

    /// Stops the node: every actor gets `ActorExitRequest`, every version drains, its threads
    /// are joined and its library closed, and the node's files are deleted. Dropping the
    /// `TestNode` does the same, ignoring the result.
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), Error> {
        let (Some(node), Some(rt)) = (self.node.take(), self.rt.take()) else {
            return Ok(());
        };
        let core = node.core().clone();
        core.unregister_client(&self.me);
        rt.block_on(core.stop(STOP_TIMEOUT));
        let left: Vec<String> = core.status().versions.iter().map(|v| v.hash[..12].to_string()).collect();
        drop(node);
        drop(core);
        rt.shutdown_timeout(Duration::from_secs(5));
        drop(self.dir.take());
        if left.is_empty() {
            Ok(())
        } else {
            Err(Error::Shutdown(left.join(", ")))
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            // A drop cannot fail the test; say it where the test's output shows it.
            eprintln!("troupe-testkit: {e}");
        }
    }
}

fn poison_to_error(m: Incoming) -> Result<Incoming, Error> {
    match m.payload {
        Payload::System(SystemMessage::PoisonMessage { target, details, .. }) => {
            Err(Error::Poison { target, details })
        }
        _ => Ok(m),
    }
}

fn text_of(m: Incoming) -> Result<String, Error> {
    match m.payload {
        Payload::Text(t) => Ok(t),
        _ => Err(Error::Unexpected { expected: "text", got: Box::new(m) }),
    }
}

/// `cargo build --lib` of the crate in `dir`; the `.so` files of its cdylib targets, as cargo
/// reports them (so a workspace target directory or `CARGO_TARGET_DIR` just works). Cargo's
/// diagnostics go to the test's stderr.
pub fn build_cdylibs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(Error::Build(format!(
            "{} has no Cargo.toml: give a plugin crate's directory",
            dir.display()
        )));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--lib", "--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::Build(format!("cannot run {}: {e}", cargo.to_string_lossy())))?;
    if !out.status.success() {
        return Err(Error::Build(format!("cargo build of {} failed (its errors are above)", dir.display())));
    }
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let ours = msg["manifest_path"].as_str().map(Path::new).is_some_and(|p| p == manifest);
        let cdylib = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if msg["reason"] == "compiler-artifact" && ours && cdylib {
            let files = msg["filenames"].as_array().into_iter().flatten().filter_map(|f| f.as_str());
            libs.extend(files.filter(|f| f.ends_with(".so")).map(PathBuf::from));
        }
    }
    if libs.is_empty() {
        return Err(Error::Build(format!(
            "{} builds no cdylib: set crate-type = [\"cdylib\"] in its [lib]",
            dir.display()
        )));
    }
    Ok(libs)
}

/// A source zip of `libs`, with the manifest `troupe pack` writes (package name and version,
/// and the actor types, read from each library's plugin root in its bytes: nothing is loaded
/// to pack it).
pub fn pack(libs: &[PathBuf]) -> Result<Vec<u8>, Error> {
    let mut inputs = Vec::new();
    let mut package = None;
    for path in libs {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::Build(format!("cannot read {shown}: {e}")))?;
        let info = troupe_node::store::root::read(&shown, &bytes)
            .map_err(|e| Error::Build(format!("{shown} is not a loadable plugin: {e}")))?
            .info;
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Build(format!("{shown} has no usable file name")))?
            .to_string();
        let actors = info.manifest_entries();
        package.get_or_insert((info.name, info.version));
        inputs.push(PackInput { file_name, bytes, actors });
    }
    let (name, version) = package.ok_or_else(|| Error::Build("no cdylib to pack".into()))?;
    let package = PackageInfo {
        name,
        version,
        abi_version: troupe_actor_abi::abi::ABI_VERSION,
        msg_schema: troupe_actor_abi::abi::MSG_SCHEMA,
        target: troupe_node::TARGET.to_string(),
    };
    troupe_node::archive::pack_signed_at(&package, &inputs, None::<fn(&[u8]) -> Vec<u8>>, Compression::Fast)
        .map_err(|e| Error::Build(format!("cannot pack {}: {e}", libs[0].display())))
}
