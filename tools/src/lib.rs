//! # troupe (CLI)
//!
//! The `troupe` command: start and stop nodes, pack, load and unload sources, run the demo
//! app, show status. The binary (`main.rs`) only calls [`run`]; every command lives here so
//! tests can call it too. Talking to nodes goes through [`troupe_node::client`]; packing and
//! plugin inspection through [`troupe_node::archive`] and [`troupe_node::plugin`].
//!
//! Exit codes (DESIGN §7): 0 success, 1 the request was refused, 2 usage error, 3 node
//! unreachable.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use troupe_actor_abi::message::{Address, CreateSpec, Payload, SystemMessage};
use troupe_node::client::{Client, ClientError};
use troupe_node::protocol::{ErrorKind, Request, Response};
use troupe_node::status::StatusReport;

mod dev;

/// Success.
pub const EXIT_OK: u8 = 0;
/// The node refused the request (rejected source, unknown hash, no compatible node, failures).
pub const EXIT_REFUSED: u8 = 1;
/// The command line or its input was wrong.
pub const EXIT_USAGE: u8 = 2;
/// No node answers at that address.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Troupe: native actor plugins, hot-loaded into running nodes.
#[derive(Parser, Debug)]
#[command(
    name = "troupe",
    version,
    about = "Troupe: native actor plugins (cdylibs in zips), hot-loaded into running nodes, several versions side by side, really unloaded.",
    after_help = "Quick start:\n  troupe start 1900 \"morse,Caesar cipher,64bit encoder\"\n  make load PORT=1900                 # builds, packs src.zip, loads it, prints the hash\n  echo hello | troupe app <hash>\n  troupe stop 1900\n\nExit codes: 0 ok, 1 refused by the node, 2 usage error, 3 node unreachable."
)]
pub struct Cli {
    /// The convention's shared secret: required to talk to nodes started with --secret-file.
    #[arg(long, global = true, env = "TROUPE_SECRET_FILE", value_name = "FILE")]
    secret_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a node on PORT (detaches and returns once the node answers).
    #[command(
        after_help = "Examples:\n  troupe start 1900\n  troupe start 10000 \"morse,Caesar cipher\"\n  troupe start 1900 --foreground      # for supervisors (systemd, tests)"
    )]
    Start(StartArgs),
    /// Stop nodes gracefully: actors get ActorExitRequest, versions unload, files are removed.
    #[command(after_help = "Example:\n  troupe stop 10101 10000 1900")]
    Stop {
        /// Admin ports (or host:port) of the nodes to stop.
        #[arg(required = true)]
        ports: Vec<String>,
    },
    /// Pack cdylib plugins into a source zip with its manifest.
    #[command(
        after_help = "Examples:\n  troupe pack -o src.zip target/release/libtroupe_encoders.so\n  troupe pack -o src.zip --build encoders     # cargo build --release the crate, pack its cdylib\n  troupe pack -o src.zip --no-strip target/release/libtroupe_encoders.so   # keep symbols and debug info\n\nThe manifest (troupe.toml) lists each library's sha256 and the actor types it exports,\nread from the library's plugin root (no plugin code runs). Libraries are packed stripped\n(`strip`, or the program in $STRIP): a library built with debug info is several times\nlarger, and every node inflates, hashes and writes every byte of it at each load."
    )]
    Pack {
        /// The zip to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Package name in the manifest (default: the first plugin's crate name).
        #[arg(long)]
        name: Option<String>,
        /// Package version in the manifest (default: the first plugin's crate version).
        #[arg(long = "package-version")]
        package_version: Option<String>,
        /// Build this plugin crate (a directory with Cargo.toml) in release mode and pack its
        /// cdylib(s), in addition to any files given.
        #[arg(long, value_name = "CRATE_DIR")]
        build: Option<PathBuf>,
        /// Sign the manifest with this secret key (from `troupe keygen`).
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
        /// Pack the libraries as they are, with their symbols and debug info.
        #[arg(long)]
        no_strip: bool,
        /// The cdylib files (`lib*.so`).
        #[arg(required_unless_present = "build")]
        cdylibs: Vec<PathBuf>,
    },
    /// Create an ed25519 key pair for signing sources: NAME.key (secret) and NAME.pub.
    #[command(
        after_help = "Example:\n  troupe keygen -o release-2026\n  troupe pack -o src.zip --sign release-2026.key --build encoders\n  troupe start 1900 --authority ed25519 --trusted-keys keys/   # keys/ holds release-2026.pub"
    )]
    Keygen {
        /// Base name of the two files.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Check a zip's manifest, hashes and signature against trusted public keys.
    #[command(after_help = "Example:\n  troupe verify src.zip --trusted-keys keys/")]
    Verify {
        /// The zip.
        zip: PathBuf,
        /// Directory of trusted `*.pub` files.
        #[arg(long, value_name = "DIR")]
        trusted_keys: PathBuf,
    },
    /// Load a source zip into a node; prints its hash once validated, or why it was rejected.
    #[command(after_help = "Example:\n  HASH=$(troupe load 1900 src.zip)")]
    Load {
        /// Admin port (or host:port).
        port: String,
        /// The zip written by `troupe pack`.
        zip: PathBuf,
    },
    /// Load a zip as the new active version of a named release (group).
    #[command(
        after_help = "Examples:\n  troupe deploy 1900 v2.zip --group encoders           # v2 active; v1 kept for rollback\n  troupe deploy 1900 v3.zip --group encoders --keep 0  # v3 active; older versions drain and unload\n  echo hi | troupe app @encoders                      # @NAME works wherever a hash does\n\nNew creates through @NAME (and global names that mention it) go to the new version at\nonce; actors of older versions keep serving until they exit."
    )]
    Deploy {
        /// Admin port (or host:port).
        port: String,
        /// The zip written by `troupe pack`.
        zip: PathBuf,
        /// The group's name.
        #[arg(long)]
        group: String,
        /// How many older versions stay loaded besides the active one (for rollback).
        #[arg(long, default_value_t = 1)]
        keep: usize,
        /// Versions that fall out of the kept window drain this long, then their remaining
        /// actors are asked to exit and they unload.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        grace: Duration,
    },
    /// Make a group's previous version active again (while it is still loaded).
    #[command(after_help = "Example:\n  troupe rollback 1900 encoders")]
    Rollback {
        /// Admin port (or host:port).
        port: String,
        /// The group's name.
        group: String,
    },
    /// Unload a version: it drains (no new actors) and is unloaded when its last actor exits.
    #[command(
        after_help = "Examples:\n  troupe unload 1900 3f2a9c1e\n  troupe unload 1900 3f2a9c1e --grace 5s   # then ask the remaining actors to exit"
    )]
    Unload {
        /// Admin port (or host:port).
        port: String,
        /// Hash, or a unique prefix of at least 8 hex digits.
        hash: String,
        /// After this long, ask the remaining actors to exit, and wait until the version is gone.
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: Option<Duration>,
    },
    /// Run the encoders demo: send stdin's text to the Acceptor of HASH and print each result line.
    #[command(
        after_help = "Example:\n  echo hello | troupe app 3f2a9c1e\n\nCreates app.Acceptor from HASH with the global name Acceptor:<hash> (or reuses the\nrunning one), prints each result line as it arrives, and exits when all arrived."
    )]
    App {
        /// Hash, or a unique prefix of at least 8 hex digits.
        hash: String,
        /// Admin port (or host:port) of the node to talk to.
        #[arg(long, default_value = "1900")]
        port: String,
        /// How long to wait for all result lines.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Show a node's capabilities, versions, actors and global names (or every node's).
    #[command(
        after_help = "Examples:\n  troupe status 1900\n  troupe status 1900 --convention          # every node of the convention\n  troupe status 1900 --convention --json"
    )]
    Status {
        /// Admin port (or host:port).
        port: String,
        /// Print JSON (for scripts).
        #[arg(long)]
        json: bool,
        /// Show every node of the node's convention: address, role, capabilities, liveness,
        /// versions and actors.
        #[arg(long)]
        convention: bool,
    },
    /// Print a node's log (node.log in its state directory); -f follows it.
    #[command(
        after_help = "Examples:\n  troupe logs 1900\n  troupe logs 1900 -f            # follow, like tail -f (Ctrl-C ends)\n  troupe logs 1900 --lines 50"
    )]
    Logs {
        /// Admin port (or host:port).
        port: String,
        /// Keep printing lines as they are written.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(short = 'n', long)]
        lines: Option<usize>,
    },
    /// Show a node's status, refreshed live (Ctrl-C ends).
    #[command(after_help = "Examples:\n  troupe top 1900\n  troupe top 1900 --interval 500ms --convention")]
    Top {
        /// Admin port (or host:port).
        port: String,
        /// Refresh period.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Show every node of the convention.
        #[arg(long)]
        convention: bool,
        /// Stop after this many refreshes (default: until Ctrl-C).
        #[arg(long)]
        iterations: Option<u64>,
    },
    /// Add (+) or remove (-) a capability of a running node.
    #[command(
        after_help = "Examples:\n  troupe chgcap 10101 + morse\n  troupe chgcap 10101 - \"64bit encoder\""
    )]
    Chgcap {
        /// Admin port (or host:port).
        port: String,
        /// `+` to add, `-` to remove.
        #[arg(value_parser = ["+", "-"])]
        op: String,
        /// The capability name.
        capability: String,
    },
    // Plugin tooling (new, create, tell, ask, completions): arguments and code in dev.rs.
    New(dev::NewArgs),
    Create(dev::CreateArgs),
    Tell(dev::TellArgs),
    Ask(dev::AskArgs),
    Completions(dev::CompletionsArgs),
}

#[derive(clap::Args, Debug)]
struct StartArgs {
    /// The admin port to listen on.
    port: u16,
    /// Comma-separated capability names, e.g. "morse,Caesar cipher".
    #[arg(default_value = "")]
    capabilities: String,
    /// Address to bind (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Directory for the node's store and log (default: $TROUPE_HOME/node-PORT, TROUPE_HOME
    /// defaulting to /tmp/troupe-$UID).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Source authority: `accept-all` (as the tutorial's start script), `ed25519` (only sources
    /// signed by a key in --trusted-keys) or `none` (loads are rejected until an actor
    /// registers itself as authority).
    #[arg(long, default_value = "accept-all", value_parser = ["accept-all", "ed25519", "none"])]
    authority: String,
    /// Directory of trusted public keys (`*.pub`, from `troupe keygen`) for `--authority ed25519`.
    #[arg(long, value_name = "DIR", required_if_eq("authority", "ed25519"))]
    trusted_keys: Option<PathBuf>,
    /// Allow binding a non-loopback address without a shared secret and with the accept-all
    /// authority (anyone who can reach the port could then run native code in the node).
    #[arg(long)]
    insecure: bool,
    /// Log lines as `text` or `json` (to stderr and to node.log in the state directory;
    /// RUST_LOG filters, e.g. RUST_LOG=troupe_node=debug).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default; loopback addresses only,
    /// unless --insecure).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Run in the foreground instead of detaching (for supervisors).
    #[arg(long)]
    foreground: bool,
    /// The convention's leader (host:port). The node whose own address equals it leads.
    #[arg(long, default_value = "127.0.0.1:1900", env = "TROUPE_CONVENTION")]
    convention: String,
    /// How often members register with the leader.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// Silence after which a node is declared lost.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    dead_after: Duration,
    /// Whether this node fetches versions it lacks from peers: yes, no or leader-only.
    #[arg(long, default_value = "yes", value_parser = ["yes", "no", "leader-only"])]
    remote_sources: String,
    /// Where each loaded version's libraries are copied to be opened: `memory` (anonymous
    /// memory files; nothing on disk, falls back to the store where the kernel refuses them)
    /// or `store` (files in the state directory's store, deleted at unload).
    #[arg(long, default_value = "memory", value_parser = ["memory", "store"])]
    lib_copies: String,
}

/// Parses the command line and runs it.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    if let Some(f) = &cli.secret_file {
        // The client library reads it from the environment; a node started detached inherits it.
        std::env::set_var("TROUPE_SECRET_FILE", f);
    }
    let code = match cli.command {
        Command::Start(args) if args.foreground => report(run_foreground(args)),
        Command::Start(args) => report(start_detached(args)),
        command => {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("troupe: cannot start the async runtime: {e}");
                    return ExitCode::from(EXIT_REFUSED);
                }
            };
            report(rt.block_on(dispatch(command)))
        }
    };
    ExitCode::from(code)
}

/// A failure with its exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn usage(e: anyhow::Error) -> Failure {
    Failure { code: EXIT_USAGE, error: e }
}

fn refused(e: anyhow::Error) -> Failure {
    Failure { code: EXIT_REFUSED, error: e }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = match &e {
            ClientError::Unreachable { .. } => EXIT_UNREACHABLE,
            ClientError::Refused(r) if r.kind == ErrorKind::BadRequest => EXIT_USAGE,
            _ => EXIT_REFUSED,
        };
        let error = match &e {
            ClientError::Unreachable { addr, .. } => {
                let port = addr.rsplit(':').next().unwrap_or(addr);
                anyhow!(e.to_string())
                    .context(format!("no node is listening on {addr} — start one with: troupe start {port}"))
            }
            _ => anyhow!(e),
        };
        Failure { code, error }
    }
}

fn report(r: Result<u8, Failure>) -> u8 {
    match r {
        Ok(c) => c,
        Err(f) => {
            // The chain, outermost first, as ripgrep does.
            eprintln!("troupe: {}", f.error);
            for cause in f.error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            f.code
        }
    }
}

/// `1900` → `127.0.0.1:1900`; `host:port` stays.
pub fn node_addr(port: &str) -> String {
    if port.contains(':') {
        port.to_string()
    } else {
        format!("127.0.0.1:{port}")
    }
}

/// Runs `work`, showing what is going on (with elapsed time) on stderr when it takes a moment
/// and stderr is a terminal; nothing is printed to pipes, and no colour is used.
async fn with_progress<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let t0 = Instant::now();
    tokio::pin!(work);
    let mut shown = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.tick().await;
    loop {
        tokio::select! {
            out = &mut work => {
                if shown {
                    eprint!("\r\x1b[K");
                }
                return out;
            }
            _ = tick.tick() => {
                shown = true;
                eprint!("\r{what}… {:.1}s", t0.elapsed().as_secs_f64());
            }
        }
    }
}

async fn connect(port: &str) -> Result<Client, Failure> {
    Ok(Client::connect(&node_addr(port)).await?)
}

async fn dispatch(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Start(_) => unreachable!("handled in run"),
        Command::Stop { ports } => stop(&ports).await,
        Command::Pack { output, name, package_version, build, sign, no_strip, mut cdylibs } => {
            if let Some(dir) = build {
                cdylibs.extend(build_cdylibs(&dir)?);
            }
            pack(&output, name, package_version, sign.as_deref(), !no_strip, &cdylibs)
        }
        Command::Keygen { output } => keygen(&output),
        Command::Verify { zip, trusted_keys } => verify(&zip, &trusted_keys),
        Command::Load { port, zip } => load(&port, &zip).await,
        Command::Unload { port, hash, grace } => unload(&port, &hash, grace).await,
        Command::Deploy { port, zip, group, keep, grace } => deploy(&port, &zip, &group, keep, grace).await,
        Command::Rollback { port, group } => rollback(&port, &group).await,
        Command::App { hash, port, timeout } => app(&hash, &port, timeout).await,
        Command::Status { port, json, convention } => status(&port, json, convention).await,
        Command::Chgcap { port, op, capability } => chgcap(&port, &op, &capability).await,
        Command::New(args) => dev::new(args),
        Command::Create(args) => dev::create(args).await,
        Command::Tell(args) => dev::tell(args).await,
        Command::Ask(args) => dev::ask(args).await,
        Command::Completions(args) => dev::completions(args),
        Command::Logs { port, follow, lines } => logs(&port, follow, lines).await,
        Command::Top { port, interval, convention, iterations } => {
            top(&port, interval, convention, iterations).await
        }
    }
}

// ---- start ----------------------------------------------------------------------------------

fn state_dir(args: &StartArgs) -> PathBuf {
    if let Some(d) = &args.state_dir {
        return d.clone();
    }
    let home = std::env::var_os("TROUPE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        PathBuf::from(format!("/tmp/troupe-{uid}"))
    });
    home.join(format!("node-{}", args.port))
}

fn capabilities(s: &str) -> Vec<String> {
    s.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()
}

/// Logs to stderr and to `node.log` in the state directory (unless stderr already is that
/// file, as for a node `troupe start` detached), as text or JSON lines; `RUST_LOG` filters.
fn init_logging(dir: &Path, format: &str) -> Result<(), Failure> {
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
    std::fs::create_dir_all(dir).map_err(|e| refused(anyhow!("cannot create {}: {e}", dir.display())))?;
    let log_path = dir.join("node.log");
    let stderr_is_log = {
        use std::os::unix::fs::MetadataExt;
        let stderr_meta = std::fs::metadata("/proc/self/fd/2").ok();
        let log_meta = std::fs::metadata(&log_path).ok();
        matches!((stderr_meta, log_meta), (Some(a), Some(b)) if a.ino() == b.ino() && a.dev() == b.dev())
    };
    let writer = if stderr_is_log {
        BoxMakeWriter::new(std::io::stderr)
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| refused(anyhow!("cannot open {}: {e}", log_path.display())))?;
        BoxMakeWriter::new(std::io::stderr.and(std::sync::Arc::new(file)))
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(false);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
    Ok(())
}

/// Each loaded library is held by a memory-file descriptor, and each peer and client by a
/// socket: raise the soft descriptor limit to the hard one (often 1 024 → 500 000), as servers
/// do, so that hundreds of versions and connections fit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid resource and pointer; the result is checked.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn run_foreground(args: StartArgs) -> Result<u8, Failure> {
    let dir = state_dir(&args);
    init_logging(&dir, &args.log_format)?;
    // A file-size limit or a full disk must make a store write fail with an error the node
    // reports, not kill the process with SIGXFSZ.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // Every version runs on threads of its own; glibc would give each new thread that allocates
    // a malloc arena of its own (up to 8 per core) and never return them, so each load/unload
    // cycle left the node bigger. One arena keeps a long-running node's RSS flat (the per-thread
    // caches still serve small allocations without the arena's lock). MALLOC_ARENA_MAX, if
    // set, wins.
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called before the runtime starts any thread; mallopt has no other precondition.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("troupe-worker")
        .build()
        .map_err(|e| refused(anyhow!("cannot start the async runtime: {e}")))?;
    rt.block_on(async move {
        let bind = std::net::SocketAddr::new(args.bind, args.port);
        let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
            refused(anyhow!(
                "cannot listen on {bind}: {e} — port {} is taken; choose another port or stop what uses it (troupe stop {})",
                args.port,
                args.port
            ))
        })?;
        let addr = format!("{}:{}", args.bind, args.port);
        let (authority, secret) = node_security(&args)?;
        let config = troupe_node::NodeConfig {
            addr: addr.clone(),
            capabilities: capabilities(&args.capabilities),
            state_dir: dir.clone(),
            authority,
            secret,
            convention: troupe_node::ConventionConfig {
                leader: node_addr(&args.convention),
                heartbeat: args.heartbeat,
                dead_after: args.dead_after,
                remote_sources: args.remote_sources.parse().map_err(|e: String| usage(anyhow!(e)))?,
            },
            lib_copies: if args.lib_copies == "store" {
                troupe_node::LibCopies::Store
            } else {
                troupe_node::LibCopies::Memory
            },
        };
        let node = troupe_node::Node::new(config)
            .map_err(|e| refused(anyhow!("cannot create the store in {}: {e}", dir.display())))?;
        if let Some(m) = args.metrics {
            let l = tokio::net::TcpListener::bind(m)
                .await
                .map_err(|e| refused(anyhow!("cannot serve metrics on {m}: {e} — choose another --metrics address")))?;
            tokio::spawn(troupe_node::metrics::serve(std::sync::Arc::downgrade(node.shared()), l));
            tracing::info!(%m, "metrics at http://{m}/metrics");
        }
        tracing::info!(%addr, pid = std::process::id(), capabilities = %args.capabilities, "node listening");
        troupe_node::server::serve(node, listener).await.map_err(|e| refused(anyhow!("server failed: {e}")))?;
        Ok(EXIT_OK)
    })
}

/// The authority and secret a node starts with, and the refusal to expose an open node.
fn node_security(
    args: &StartArgs,
) -> Result<(troupe_node::AuthorityConfig, Option<troupe_node::signing::Secret>), Failure> {
    let secret = troupe_node::client::secret_from_env().map_err(|e| usage(anyhow!(e)))?;
    let authority = match args.authority.as_str() {
        "none" => troupe_node::AuthorityConfig::None,
        "ed25519" => {
            let dir = args
                .trusted_keys
                .as_deref()
                .ok_or_else(|| usage(anyhow!("--authority ed25519 needs --trusted-keys DIR")))?;
            troupe_node::AuthorityConfig::Ed25519(
                troupe_node::signing::TrustedKeys::load(dir).map_err(|e| usage(anyhow!(e)))?,
            )
        }
        _ => troupe_node::AuthorityConfig::AcceptAll,
    };
    if let Some(m) = args.metrics.filter(|m| !m.ip().is_loopback() && !args.insecure) {
        return Err(usage(anyhow!(
            "metrics are served on loopback only ({m} is not) — use 127.0.0.1:PORT, or --insecure"
        )));
    }
    let exposed = !args.bind.is_loopback();
    if exposed
        && secret.is_none()
        && matches!(authority, troupe_node::AuthorityConfig::AcceptAll)
        && !args.insecure
    {
        return Err(usage(anyhow!(
            "refusing to listen on {} with no shared secret and the accept-all authority: anyone who can reach the port could run native code in this node — use --secret-file FILE and/or --authority ed25519 --trusted-keys DIR, or --insecure if you really mean it",
            args.bind
        )));
    }
    Ok((authority, secret))
}

fn start_detached(args: StartArgs) -> Result<u8, Failure> {
    // Refuse an unsafe configuration before detaching, where the user sees the message.
    node_security(&args)?;
    let addr = format!("{}:{}", args.bind, args.port);
    let probe_addr =
        if args.bind.is_unspecified() { format!("127.0.0.1:{}", args.port) } else { addr.clone() };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| refused(anyhow!("cannot start the async runtime: {e}")))?;
    match rt.block_on(Client::connect(&probe_addr)) {
        Ok(_) => {
            return Err(refused(anyhow!(
                "a troupe node is already running on {addr} — stop it first: troupe stop {}",
                args.port
            )))
        }
        Err(ClientError::Unreachable { .. }) => {}
        Err(_) => {
            return Err(refused(anyhow!(
                "port {} is taken by something that is not a troupe node — choose another port",
                args.port
            )))
        }
    }
    let dir = state_dir(&args);
    std::fs::create_dir_all(&dir).map_err(|e| refused(anyhow!("cannot create {}: {e}", dir.display())))?;
    let log_path = dir.join("node.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| refused(anyhow!("cannot create {}: {e}", log_path.display())))?;
    let exe = std::env::current_exe().map_err(|e| refused(anyhow!("cannot find my own executable: {e}")))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("start")
        .arg(args.port.to_string())
        .arg(&args.capabilities)
        .arg("--bind")
        .arg(args.bind.to_string())
        .arg("--state-dir")
        .arg(&dir)
        .arg("--authority")
        .arg(&args.authority)
        .args(
            args.trusted_keys
                .iter()
                .flat_map(|k| [std::ffi::OsString::from("--trusted-keys"), k.clone().into_os_string()]),
        )
        .args(if args.insecure { vec!["--insecure"] } else { Vec::new() })
        .arg("--log-format")
        .arg(&args.log_format)
        .args(args.metrics.iter().flat_map(|m| ["--metrics".to_string(), m.to_string()]))
        .arg("--convention")
        .arg(&args.convention)
        .arg("--heartbeat")
        .arg(humantime::format_duration(args.heartbeat).to_string())
        .arg("--dead-after")
        .arg(humantime::format_duration(args.dead_after).to_string())
        .arg("--remote-sources")
        .arg(&args.remote_sources)
        .arg("--foreground")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| refused(anyhow!("{e}")))?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and only detaches the child from our session, so
    // that closing the terminal does not stop the node.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| refused(anyhow!("cannot start the node process: {e}")))?;
    // Wait until the node answers its hello, or its process exits.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut delay = Duration::from_millis(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(refused(anyhow!("the node exited during start ({status}):\n{}", tail.join("\n"))));
        }
        if rt.block_on(Client::connect(&probe_addr)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(refused(anyhow!("the node did not answer within 20s; see {}", log_path.display())));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(100));
    }
    let caps = capabilities(&args.capabilities);
    println!(
        "node {addr} started (pid {}, capabilities: {}, log: {})",
        child.id(),
        if caps.is_empty() { "none".to_string() } else { caps.join(", ") },
        log_path.display()
    );
    Ok(EXIT_OK)
}

// ---- stop, load, unload, chgcap -------------------------------------------------------------

async fn stop(ports: &[String]) -> Result<u8, Failure> {
    let mut worst = EXIT_OK;
    for port in ports {
        let addr = node_addr(port);
        let result: Result<(), Failure> = async {
            let mut c = connect(port).await?;
            c.request(Request::Stop).await?;
            // The node exits after answering: wait until it closes the connection.
            let _ = tokio::time::timeout(Duration::from_secs(10), c.next_message()).await;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => println!("stopped {addr}"),
            Err(f) => {
                worst = worst.max(f.code);
                report(Err(f));
            }
        }
    }
    Ok(worst)
}

/// Builds the plugin crate in `dir` with cargo (release) and returns its cdylib files, as cargo
/// reports them (so workspace target dirs and renamed libraries just work).
fn build_cdylibs(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(usage(anyhow!(
            "{} has no Cargo.toml — give the directory of a plugin crate",
            dir.display()
        )));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["build", "--release", "--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(&manifest)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| refused(anyhow!("cannot run cargo: {e}")))?;
    if !out.status.success() {
        return Err(refused(anyhow!("cargo build of {} failed", dir.display())));
    }
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let is_ours = msg["manifest_path"].as_str().map(Path::new).is_some_and(|p| p == manifest);
        let is_cdylib = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if is_ours && is_cdylib {
            for f in msg["filenames"].as_array().into_iter().flatten() {
                if let Some(f) = f.as_str().filter(|f| f.ends_with(".so")) {
                    libs.push(PathBuf::from(f));
                }
            }
        }
    }
    if libs.is_empty() {
        return Err(usage(anyhow!(
            "{} builds no cdylib — set crate-type = [\"cdylib\"] in its [lib]",
            dir.display()
        )));
    }
    Ok(libs)
}

fn keygen(output: &Path) -> Result<u8, Failure> {
    let (secret, public) = troupe_node::signing::keygen(output).map_err(|e| refused(anyhow!(e)))?;
    println!(
        "secret key: {} (keep it private)\npublic key: {} (copy it into a --trusted-keys directory)",
        secret.display(),
        public.display()
    );
    Ok(EXIT_OK)
}

fn verify(zip: &Path, trusted: &Path) -> Result<u8, Failure> {
    let bytes = std::fs::read(zip).map_err(|e| usage(anyhow!("cannot read {}: {e}", zip.display())))?;
    let keys = troupe_node::signing::TrustedKeys::load(trusted).map_err(|e| usage(anyhow!(e)))?;
    let source = troupe_node::archive::open(&bytes, &troupe_node::archive::ArchiveLimits::default())
        .map_err(|e| refused(anyhow!("{}: {e}", zip.display())))?;
    let signer = keys.verify(&source).map_err(|e| refused(anyhow!("{}: {e}", zip.display())))?;
    println!(
        "{}: signed by {signer}; {} {}, {} librar{}, hash {}",
        zip.display(),
        source.manifest.package.name,
        source.manifest.package.version,
        source.files.len(),
        if source.files.len() == 1 { "y" } else { "ies" },
        source.hash
    );
    Ok(EXIT_OK)
}

fn pack(
    output: &Path,
    name: Option<String>,
    version: Option<String>,
    sign: Option<&Path>,
    strip: bool,
    cdylibs: &[PathBuf],
) -> Result<u8, Failure> {
    let key = match sign {
        Some(k) => Some(troupe_node::signing::SecretKey::load(k).map_err(|e| usage(anyhow!(e)))?),
        None => None,
    };
    let mut inputs = Vec::new();
    let mut first: Option<troupe_node::plugin::PluginInfo> = None;
    for path in cdylibs {
        let mut bytes =
            std::fs::read(path).map_err(|e| usage(anyhow!("cannot read {}: {e}", path.display())))?;
        if strip {
            match stripped(path) {
                Ok(b) => bytes = b,
                Err(e) => {
                    eprintln!("troupe: packing {} unstripped: {e} (--no-strip silences this)", path.display())
                }
            }
        }
        let info = troupe_node::plugin::inspect(path).map_err(|e| {
            refused(anyhow!(e).context(format!("{} is not a loadable plugin", path.display())))
        })?;
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| usage(anyhow!("{} has no usable file name", path.display())))?
            .to_string();
        inputs.push(troupe_node::archive::PackInput {
            file_name,
            bytes,
            actors: info
                .actor_types
                .iter()
                .map(|t| troupe_node::archive::ActorTypeEntry {
                    type_name: t.name.clone(),
                    requires: t.requirements.clone(),
                })
                .collect(),
        });
        first.get_or_insert(info);
    }
    let Some(first) = first else {
        return Err(usage(anyhow!("no cdylib given")));
    };
    let package = troupe_node::archive::PackageInfo {
        name: name.unwrap_or(first.name),
        version: version.unwrap_or(first.version),
        abi_version: troupe_actor_abi::abi::ABI_VERSION,
        msg_schema: troupe_actor_abi::abi::MSG_SCHEMA,
        target: troupe_node::TARGET.to_string(),
    };
    let signer = key.as_ref().map(|k| |manifest: &[u8]| k.sign_manifest(manifest));
    let zip =
        troupe_node::archive::pack_signed(&package, &inputs, signer).map_err(|e| refused(anyhow!(e)))?;
    std::fs::write(output, &zip).map_err(|e| refused(anyhow!("cannot write {}: {e}", output.display())))?;
    eprintln!(
        "packed {} ({} bytes, {} librar{}): {}",
        output.display(),
        zip.len(),
        inputs.len(),
        if inputs.len() == 1 { "y" } else { "ies" },
        troupe_node::archive::sha256_hex(&zip)
    );
    Ok(EXIT_OK)
}

/// The bytes of `path` without symbols or debug info, as `strip` (or `$STRIP`) writes them.
fn stripped(path: &Path) -> Result<Vec<u8>, String> {
    let program = std::env::var_os("STRIP").unwrap_or_else(|| "strip".into());
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let out = dir.path().join("stripped.so");
    let result = std::process::Command::new(&program)
        .arg("-o")
        .arg(&out)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
    if !result.status.success() {
        return Err(format!(
            "{} failed: {}",
            program.to_string_lossy(),
            String::from_utf8_lossy(&result.stderr).trim()
        ));
    }
    std::fs::read(&out).map_err(|e| format!("cannot read the stripped library: {e}"))
}

async fn load(port: &str, zip: &Path) -> Result<u8, Failure> {
    let bytes =
        std::fs::read(zip).with_context(|| format!("cannot read {}", zip.display())).map_err(|e| {
            usage(e.context("give the path of a zip written by `troupe pack` (or run `make load`)"))
        })?;
    let mut c = connect(port).await?;
    let info = zip.display().to_string();
    let what = format!("loading {} ({} KiB) into {}", zip.display(), bytes.len() / 1024, c.node());
    match with_progress(&what, c.request(Request::Load { zip: bytes, info })).await? {
        Response::Loaded { hash, already_active } => {
            if already_active {
                eprintln!("already loaded; nothing changed");
            }
            println!("{hash}");
            Ok(EXIT_OK)
        }
        other => Err(refused(anyhow!("unexpected answer {other:?}"))),
    }
}

fn print_group(response: Response) -> Result<u8, Failure> {
    match response {
        Response::Group { group, info, previous, unloaded } => {
            let active = info.active.unwrap_or_default();
            println!("{group}: active {active}");
            if let Some(p) = previous {
                println!("{group}: previous {p} (still loaded: troupe rollback)");
            }
            for u in unloaded {
                println!("{group}: unloading {u} (drains, then unloads everywhere)");
            }
            Ok(EXIT_OK)
        }
        other => Err(refused(anyhow!("unexpected answer {other:?}"))),
    }
}

async fn deploy(port: &str, zip: &Path, group: &str, keep: usize, grace: Duration) -> Result<u8, Failure> {
    let bytes = std::fs::read(zip)
        .with_context(|| format!("cannot read {}", zip.display()))
        .map_err(|e| usage(e.context("give the path of a zip written by `troupe pack`")))?;
    let mut c = connect(port).await?;
    let request = Request::Deploy {
        zip: bytes,
        info: zip.display().to_string(),
        group: group.into(),
        keep,
        grace_ms: Some(grace.as_millis() as u64),
    };
    print_group(with_progress(&format!("deploying {} as @{group}", zip.display()), c.request(request)).await?)
}

async fn rollback(port: &str, group: &str) -> Result<u8, Failure> {
    let mut c = connect(port).await?;
    print_group(c.request(Request::Rollback { group: group.into() }).await?)
}

async fn unload(port: &str, hash: &str, grace: Option<Duration>) -> Result<u8, Failure> {
    let mut c = connect(port).await?;
    let grace_ms = grace.map(|g| g.as_millis() as u64);
    let what = format!("unloading {hash} (draining)");
    match with_progress(&what, c.request(Request::Unload { hash: hash.into(), grace_ms })).await? {
        Response::Unloaded { hash, live_actors, gone, spread_to } => {
            if !spread_to.is_empty() {
                println!("unload sent to {}", spread_to.join(", "));
            }
            if gone {
                println!("unloaded {hash}: library closed and files deleted");
            } else {
                println!(
                    "unloading {hash}: draining, {live_actors} actor{} still alive; it is unloaded when {} exit (or use --grace)",
                    if live_actors == 1 { "" } else { "s" },
                    if live_actors == 1 { "it" } else { "they" }
                );
            }
            Ok(EXIT_OK)
        }
        other => Err(refused(anyhow!("unexpected answer {other:?}"))),
    }
}

async fn chgcap(port: &str, op: &str, cap: &str) -> Result<u8, Failure> {
    let mut c = connect(port).await?;
    match c.request(Request::ChangeCapability { add: op == "+", name: cap.into() }).await? {
        Response::Capabilities { capabilities, stopped_actors } => {
            println!(
                "{}: capabilities now [{}]; {stopped_actors} actor{} asked to exit",
                c.node(),
                capabilities.join(", "),
                if stopped_actors == 1 { "" } else { "s" }
            );
            Ok(EXIT_OK)
        }
        other => Err(refused(anyhow!("unexpected answer {other:?}"))),
    }
}

// ---- status -----------------------------------------------------------------------------------

async fn logs(port: &str, follow: bool, lines: Option<usize>) -> Result<u8, Failure> {
    // The node knows where its state is; a stopped node's log is where `start` puts it.
    let path = match node_status(&node_addr(port)).await {
        Ok(r) => Path::new(&r.store).parent().map(|p| p.join("node.log")).unwrap_or_default(),
        Err(f) if f.code == EXIT_UNREACHABLE => {
            let home = std::env::var_os("TROUPE_HOME").map(PathBuf::from).unwrap_or_else(|| {
                // SAFETY: getuid has no preconditions and cannot fail.
                PathBuf::from(format!("/tmp/troupe-{}", unsafe { libc::getuid() }))
            });
            let p = home.join(format!("node-{}", port.rsplit(':').next().unwrap_or(port))).join("node.log");
            eprintln!("(no node answers on {}; showing {})", node_addr(port), p.display());
            p
        }
        Err(f) => return Err(f),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        refused(anyhow!(
            "cannot read {}: {e} — was the node started with --state-dir elsewhere?",
            path.display()
        ))
    })?;
    let all: Vec<&str> = text.lines().collect();
    let start = lines.map(|n| all.len().saturating_sub(n)).unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for l in &all[start..] {
        if writeln!(out, "{l}").is_err() {
            return Ok(EXIT_OK); // a closed pipe is not an error
        }
    }
    let _ = out.flush();
    if !follow {
        return Ok(EXIT_OK);
    }
    let mut pos = text.len() as u64;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.len() < pos {
            pos = 0; // the node restarted and truncated its log
        }
        if meta.len() > pos {
            let mut f = std::fs::File::open(&path).map_err(|e| refused(anyhow!("{e}")))?;
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(pos))
                .map_err(|e| refused(anyhow!("{e}")))?;
            let mut buf = Vec::new();
            let n = f.read_to_end(&mut buf).map_err(|e| refused(anyhow!("{e}")))?;
            pos += n as u64;
            if out.write_all(&buf).and_then(|_| out.flush()).is_err() {
                return Ok(EXIT_OK);
            }
        }
    }
}

async fn top(
    port: &str,
    interval: Duration,
    convention: bool,
    iterations: Option<u64>,
) -> Result<u8, Failure> {
    let tty = std::io::stdout().is_terminal();
    let mut n = 0u64;
    loop {
        let mut text = String::new();
        let report = node_status(&node_addr(port)).await?;
        if convention {
            let mut nodes = vec![report.clone()];
            for m in &report.convention.members {
                if let Ok(r) = node_status(&m.node).await {
                    nodes.push(r);
                }
            }
            for r in &nodes {
                text += &render_status(r);
                text += "\n";
            }
        } else {
            text = render_status(&report);
        }
        let mut out = std::io::stdout().lock();
        // Clear and home only on a terminal; piped output gets one snapshot after another.
        let frame = if tty { format!("\x1b[2J\x1b[H{text}") } else { format!("{text}\n") };
        if out.write_all(frame.as_bytes()).and_then(|_| out.flush()).is_err() {
            return Ok(EXIT_OK);
        }
        n += 1;
        if iterations.is_some_and(|max| n >= max) {
            return Ok(EXIT_OK);
        }
        tokio::time::sleep(interval).await;
    }
}

async fn node_status(addr: &str) -> Result<StatusReport, Failure> {
    let mut c = Client::connect(addr).await?;
    match c.request(Request::Status).await? {
        Response::Status(report) => Ok(*report),
        _ => Err(refused(anyhow!("unexpected answer to status"))),
    }
}

/// One node in `status --convention`.
#[derive(Serialize, Deserialize, Debug)]
pub struct ConventionNode {
    /// Admin address.
    pub node: String,
    /// `leader` or `member`.
    pub role: String,
    /// Whether it answered.
    pub alive: bool,
    /// Its status (when it answered).
    pub status: Option<StatusReport>,
    /// Why it did not answer.
    pub error: Option<String>,
}

async fn status(port: &str, json: bool, convention: bool) -> Result<u8, Failure> {
    let report = node_status(&node_addr(port)).await?;
    let text = if convention {
        let mut nodes = vec![ConventionNode {
            node: report.node.clone(),
            role: report.convention.role.clone(),
            alive: true,
            status: None,
            error: None,
        }];
        for m in &report.convention.members {
            nodes.push(ConventionNode {
                node: m.node.clone(),
                role: m.role.clone(),
                alive: false,
                status: None,
                error: None,
            });
        }
        nodes.sort_by(|a, b| (a.role != "leader", &a.node).cmp(&(b.role != "leader", &b.node)));
        for n in nodes.iter_mut() {
            if n.node == report.node {
                n.status = Some(report.clone());
                continue;
            }
            match node_status(&n.node).await {
                Ok(r) => {
                    n.alive = true;
                    n.status = Some(r);
                }
                Err(f) => n.error = Some(f.error.to_string()),
            }
        }
        if json {
            serde_json::to_string_pretty(&nodes).map_err(|e| refused(anyhow!(e)))? + "\n"
        } else {
            let mut s = format!(
                "convention led by {} ({} node{})\n",
                report.convention.leader,
                nodes.len(),
                if nodes.len() == 1 { "" } else { "s" }
            );
            for n in &nodes {
                s += &format!(
                    "\n=== {} ({}, {}) ===\n",
                    n.node,
                    n.role,
                    if n.alive { "alive" } else { "NOT ANSWERING" }
                );
                match (&n.status, &n.error) {
                    (Some(r), _) => s += &render_status(r),
                    (None, Some(e)) => s += &format!("  {e}\n"),
                    _ => {}
                }
            }
            s
        }
    } else if json {
        serde_json::to_string_pretty(&report).map_err(|e| refused(anyhow!(e)))? + "\n"
    } else {
        render_status(&report)
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`troupe status 1900 | head`) is not an error.
    let _ = out.write_all(text.as_bytes());
    Ok(EXIT_OK)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// The human-readable status table.
pub fn render_status(r: &StatusReport) -> String {
    let mut s = String::new();
    let caps = if r.capabilities.is_empty() { "none".to_string() } else { r.capabilities.join(", ") };
    s += &format!(
        "node {} (pid {}, {} of the convention led by {})\n  capabilities: {caps}\n  source authority: {}\n  remote sources: {}\n  store: {}\n  pthread keys: {} in use of {} (loads refused from {})\n",
        r.node,
        r.pid,
        r.convention.role,
        r.convention.leader,
        r.authority,
        r.convention.remote_sources,
        r.store,
        r.pthread_keys_in_use,
        r.pthread_keys_max,
        r.pthread_keys_refuse_at
    );
    if !r.convention.members.is_empty() {
        s += &format!("\nmembers ({}):\n", r.convention.members.len());
        for m in &r.convention.members {
            let caps = if m.capabilities.is_empty() {
                "no capabilities".to_string()
            } else {
                m.capabilities.join(", ")
            };
            s += &format!(
                "  {:<21} {:<7} {:<5} seen {} ms ago  [{caps}]  {} version{}\n",
                m.node,
                m.role,
                if m.alive { "alive" } else { "LOST?" },
                m.last_seen_ms,
                m.sources.len(),
                if m.sources.len() == 1 { "" } else { "s" }
            );
        }
    }
    s += &format!("\nversions ({}):\n", r.versions.len());
    for v in &r.versions {
        s += &format!(
            "  {}  {:<10} gen {:<3} {:>3} actor{}  {}  ({})\n",
            short(&v.hash),
            v.state,
            v.generation,
            v.live_actors,
            if v.live_actors == 1 { " " } else { "s" },
            v.package,
            v.info
        );
    }
    if !r.gone.is_empty() {
        s += &format!("\nrecently unloaded ({}):\n", r.gone.len());
        for g in r.gone.iter().rev().take(5) {
            s += &format!("  {}  gen {:<3} closed in {:.2} ms\n", short(&g.hash), g.generation, g.unload_ms);
        }
    }
    s += &format!("\nactors ({}):\n", r.actors.len());
    for a in &r.actors {
        let parent = a.parent.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let name = a.global_name.as_deref().map(|n| format!("  name {n}")).unwrap_or_default();
        s += &format!("  {}  {:<22} {}  parent {parent}{name}\n", a.address, a.type_name, short(&a.hash));
    }
    if !r.groups.is_empty() {
        s += &format!("\ngroups ({}):\n", r.groups.len());
        for (name, g) in &r.groups {
            let active = g.active.as_deref().map(short).unwrap_or("-");
            let others: Vec<&str> = g
                .versions
                .iter()
                .filter(|v| Some(v.as_str()) != g.active.as_deref())
                .map(|v| short(v))
                .collect();
            s += &format!(
                "  @{name:<16} active {active}  kept {}\n",
                if others.is_empty() { "-".into() } else { others.join(", ") }
            );
        }
    }
    if !r.global_names.is_empty() {
        s += &format!("\nglobal names ({}):\n", r.global_names.len());
        for (n, a) in &r.global_names {
            s += &format!("  {n} -> {a}\n");
        }
    }
    s
}

// ---- app -------------------------------------------------------------------------------------

/// `app/Expect`: the encoders the Acceptor is about to use (mirrors the encoders plugin).
#[derive(Serialize, Deserialize, Debug)]
struct Expect {
    encoders: Vec<String>,
}
/// `app/Failed`: one encoder could not answer, and why.
#[derive(Serialize, Deserialize, Debug)]
struct Failed {
    encoder: String,
    reason: String,
}

fn decode_typed<T: for<'de> Deserialize<'de>>(payload: &Payload, tag: &str) -> Option<T> {
    match payload {
        Payload::Typed { tag: t, body } if t == tag => troupe_actor_abi::message::decode(body).ok(),
        _ => None,
    }
}

/// Finds the full hash for a prefix among the node's versions (so the global name is
/// `Acceptor:<full hash>` whatever the user typed). Unknown prefixes are passed on as given
/// and the node explains.
fn full_hash(report: &StatusReport, hash: &str) -> String {
    if hash.starts_with('@') {
        // A group: the node resolves it when it creates, and binds the name to that version.
        return hash.to_string();
    }
    let h = hash.trim().to_ascii_lowercase();
    let matches: Vec<&String> =
        report.versions.iter().map(|v| &v.hash).filter(|v| v.starts_with(&h)).collect();
    match matches.as_slice() {
        [one] => (*one).clone(),
        _ => h,
    }
}

async fn app(hash: &str, port: &str, timeout: Duration) -> Result<u8, Failure> {
    let mut input = String::new();
    if std::io::stdin().is_terminal() {
        eprintln!("(reading the text to encode from stdin; end with Ctrl-D)");
    }
    std::io::stdin().read_to_string(&mut input).map_err(|e| usage(anyhow!("cannot read stdin: {e}")))?;
    let text = input.trim();
    if text.is_empty() {
        return Err(usage(anyhow!(
            "nothing to encode: stdin is empty — try: echo hello | troupe app {hash}"
        )));
    }
    let mut c = connect(port).await?;
    let Response::Status(report) = c.request(Request::Status).await? else {
        return Err(refused(anyhow!("unexpected answer to status")));
    };
    let full = full_hash(&report, hash);
    let spec = CreateSpec {
        type_name: "app.Acceptor".into(),
        requirements: Vec::new(),
        global_name: Some(format!("Acceptor:{full}")),
        source_hash: Some(full.clone()),
    };
    let acceptor: Address = match c.request(Request::Create { spec }).await? {
        Response::Created { address, .. } => address,
        other => return Err(refused(anyhow!("unexpected answer {other:?}"))),
    };
    c.request(Request::Send { to: acceptor.clone(), payload: Payload::Text(text.to_string()) }).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut expected: Option<Vec<String>> = None;
    let mut answered: Vec<String> = Vec::new();
    let mut failed = 0usize;
    let mut stdout = std::io::stdout().lock();
    loop {
        if let Some(exp) = &expected {
            if exp.iter().all(|e| answered.contains(e)) {
                break;
            }
        }
        // Until the first answer (a cold start: nodes fetching the version from peers and
        // creating the actors), a terminal shows that something is going on.
        let next = tokio::time::timeout_at(deadline, c.next_message());
        let waited = if expected.is_none() && answered.is_empty() {
            with_progress("waiting for the Acceptor (nodes may be fetching the version)", next).await
        } else {
            next.await
        };
        let msg = match waited {
            Ok(m) => m?,
            Err(_) => {
                let missing: Vec<String> = match &expected {
                    Some(exp) => exp.iter().filter(|e| !answered.contains(e)).cloned().collect(),
                    None => vec!["the Acceptor (it never said what to expect)".into()],
                };
                return Err(refused(anyhow!(
                    "timed out after {}: no answer from {}",
                    humantime::format_duration(timeout),
                    missing.join(", ")
                )));
            }
        };
        match &msg.payload {
            Payload::Text(line) => {
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
                let name = line.split_whitespace().next().unwrap_or_default().to_string();
                answered.push(name);
            }
            Payload::System(SystemMessage::PoisonMessage { details, .. }) => {
                return Err(refused(anyhow!("the Acceptor could not take the request: {details}")));
            }
            p => {
                if let Some(e) = decode_typed::<Expect>(p, "app/Expect") {
                    expected = Some(e.encoders);
                } else if let Some(f) = decode_typed::<Failed>(p, "app/Failed") {
                    // A late notice for an encoder that already answered (its node was lost
                    // after it did its work) changes nothing.
                    if !answered.contains(&f.encoder) {
                        eprintln!("{}: {}", f.encoder, f.reason);
                        failed += 1;
                        answered.push(f.encoder);
                    }
                }
            }
        }
    }
    Ok(if failed == 0 { EXIT_OK } else { EXIT_REFUSED })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_become_loopback_addresses() {
        assert_eq!(node_addr("1900"), "127.0.0.1:1900");
        assert_eq!(node_addr("10.0.0.2:1900"), "10.0.0.2:1900");
    }

    #[test]
    fn capabilities_are_comma_separated_and_trimmed() {
        assert_eq!(capabilities("morse, Caesar cipher,,"), vec!["morse", "Caesar cipher"]);
        assert!(capabilities("").is_empty());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
