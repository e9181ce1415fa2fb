//! `troupe start --foreground`: the node process itself, as supervisors (and the detached
//! start) run it. Sets the process up for a long-running node (logging, signals, malloc
//! arenas, the descriptor limit), then serves the admin port until the node is stopped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::anyhow;
use tokio::net::TcpListener;

use super::node_addr;
use super::start::{capabilities, node_security, state_dir, StartArgs};
use crate::{refused, Failure, EXIT_OK};

/// `troupe start PORT --foreground`: runs the node until it is stopped.
pub(crate) fn run_foreground(args: StartArgs) -> Result<u8, Failure> {
    let dir = state_dir(&args);
    init_logging(&dir, &args.log_format)?;
    tune_process();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("troupe-worker")
        .build()
        .map_err(|e| refused(anyhow!("cannot start the async runtime: {e}")))?;
    rt.block_on(serve(args, dir))
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
        BoxMakeWriter::new(std::io::stderr.and(Arc::new(file)))
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(false);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
    Ok(())
}

/// Process settings a long-running node needs; called before the runtime starts any thread.
fn tune_process() {
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

/// Binds the admin port, creates the node and serves until it is stopped.
async fn serve(args: StartArgs, dir: PathBuf) -> Result<u8, Failure> {
    let bind = SocketAddr::new(args.bind, args.port);
    let listener = TcpListener::bind(bind).await.map_err(|e| {
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
            leaders: args.convention.split(',').map(node_addr).collect(),
            heartbeat: args.heartbeat,
            dead_after: args.dead_after,
            remote_sources: args.remote_sources,
        },
        lib_copies: args.lib_copies,
        version_threads: args
            .version_threads
            .unwrap_or_else(troupe_node::model::config::default_version_threads),
        long_handler: args.long_handler,
        connections: troupe_node::ConnectionLimits {
            max_connections: args.max_connections,
            idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
            ..troupe_node::ConnectionLimits::default()
        },
        actor_system_calls: args.actor_system_calls,
        authority_timeout: args.authority_timeout,
    };
    let node = troupe_node::Node::new(config)
        .map_err(|e| refused(anyhow!("cannot create the store in {}: {e}", dir.display())))?;
    if let Some(m) = args.metrics {
        let l = TcpListener::bind(m).await.map_err(|e| {
            refused(anyhow!("cannot serve metrics on {m}: {e} — choose another --metrics address"))
        })?;
        tokio::spawn(troupe_node::metrics::serve(Arc::downgrade(node.core()), l));
        tracing::info!(%m, "metrics at http://{m}/metrics");
    }
    tracing::info!(%addr, pid = std::process::id(), capabilities = %args.capabilities, "node listening");
    troupe_node::server::serve(node, listener).await.map_err(|e| refused(anyhow!("server failed: {e}")))?;
    Ok(EXIT_OK)
}
