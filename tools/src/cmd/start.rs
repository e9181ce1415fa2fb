//! `troupe start`: the node's settings ([`StartArgs`]) and the detached start, which checks
//! them, re-runs this executable with `--foreground` in a session of its own and returns once
//! the node answers. The re-run's arguments come from [`NodeArgs::argv`], the one writer of a
//! node's command line, through `From<StartArgs> for NodeArgs`, which names every setting.
//! The node itself (`--foreground`) is in `foreground.rs`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use troupe_node::client::{Client, ClientError};
use troupe_node::launch::{AuthorityKind, NodeArgs, DEFAULT_CONVENTION};
use troupe_node::{AuthorityConfig, LibCopies, RemoteSources};

use super::chgcap::CapabilityArg;
use crate::{refused, usage, Failure, EXIT_OK};

/// How long a detached node may take to answer its first hello before `start` gives up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(clap::Args, Debug)]
pub(crate) struct StartArgs {
    /// The admin port to listen on.
    pub(crate) port: u16,
    /// Comma-separated capabilities, each a name or name=value, e.g. "morse,Caesar cipher" or
    /// "gpu=A100,mem=64,morse" (a plain name has the value true). Actors may require a value
    /// (gpu=A100) or a comparison (mem>=32).
    #[arg(default_value = "", value_parser = CapabilityArg { list: true })]
    pub(crate) capabilities: String,
    /// Address to bind (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) bind: IpAddr,
    /// Directory for the node's store and log (default: $TROUPE_HOME/node-PORT, TROUPE_HOME
    /// defaulting to /tmp/troupe-$UID).
    #[arg(long)]
    pub(crate) state_dir: Option<PathBuf>,
    /// Source authority: `accept-all` (as the tutorial's start script), `ed25519` (only sources
    /// signed by a key in --trusted-keys) or `none` (loads are rejected until an actor
    /// registers itself as authority).
    #[arg(long, default_value = "accept-all", value_parser = one_of(["accept-all", "ed25519", "none"], authority))]
    pub(crate) authority: AuthorityKind,
    /// Directory of trusted public keys (`*.pub`, from `troupe keygen`) for `--authority ed25519`.
    #[arg(long, value_name = "DIR", required_if_eq("authority", "ed25519"))]
    pub(crate) trusted_keys: Option<PathBuf>,
    /// Allow binding a non-loopback address without a shared secret: its links are then not
    /// encrypted, and anyone who can reach the port could run native code in the node unless
    /// the ed25519 authority refuses it.
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Log lines as `text` or `json` (to stderr and to node.log in the state directory;
    /// RUST_LOG filters, e.g. RUST_LOG=troupe_node=debug).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub(crate) log_format: String,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default; loopback addresses only,
    /// unless --insecure).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<SocketAddr>,
    /// Run in the foreground instead of detaching (for supervisors).
    #[arg(long)]
    pub(crate) foreground: bool,
    /// The convention's leaders, in order: host:port (or a port) each, comma-separated, the
    /// same list on every node. The first listed node that is live leads; a listed node takes
    /// over when the ones before it are lost, and hands back when they return. A node that
    /// finds nobody listening at any of them serves alone until a leader starts there (once
    /// a leader has answered it, it waits for a leader instead).
    #[arg(long, default_value = DEFAULT_CONVENTION, env = "TROUPE_CONVENTION", value_name = "ADDR[,ADDR...]", value_parser = parse_leaders)]
    pub(crate) convention: String,
    /// How often members register with the leader.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) heartbeat: Duration,
    /// Silence after which a node is declared lost.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub(crate) dead_after: Duration,
    /// Whether this node fetches versions it lacks from peers: yes, no or leader-only.
    #[arg(long, default_value = "yes", value_parser = one_of(["yes", "no", "leader-only"], str::parse::<RemoteSources>))]
    pub(crate) remote_sources: RemoteSources,
    /// Where each loaded version's libraries are copied to be opened: `memory` (anonymous
    /// memory files; nothing on disk, falls back to the store where the kernel refuses them)
    /// or `store` (files in the state directory's store, deleted at unload).
    #[arg(long, default_value = "memory", value_parser = one_of(["memory", "store"], str::parse::<LibCopies>))]
    pub(crate) lib_copies: LibCopies,
    /// The most threads each loaded version runs its actors on (default: the cores). A version
    /// starts with one thread and adds one when work waits while all of its threads are busy,
    /// so one slow handler stalls only its own actor; idle threads exit after a while.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024).map(usize::from))]
    pub(crate) version_threads: Option<usize>,
    /// A handler running longer than this is reported in the log, in `status` and in the
    /// metrics (it keeps its thread; the version's other actors are served by other threads).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) long_handler: Duration,
    /// The most connections (clients and peers) the node keeps open at once; one more is
    /// told why and closed. The node lowers it to keep 256 descriptors below its open-file
    /// limit for its own work (store files, loaded libraries, peer links, metrics).
    #[arg(long, value_name = "N", default_value_t = troupe_node::model::config::DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub(crate) max_connections: usize,
    /// A client connection that sends nothing for this long after its handshake is closed
    /// (`0` or `off`: never). Peer links are not; the CLI keeps its own alive while it waits.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = idle_timeout)]
    pub(crate) idle_timeout: Duration,
    /// Let actors make system calls: load and unload sources (through the source authority,
    /// as `troupe load` does), change this node's capabilities and stop it. Off by default:
    /// each such call is answered with an error saying so.
    #[arg(long)]
    pub(crate) actor_system_calls: bool,
    /// How long a load waits for a source authority actor's answer before it fails (and the
    /// version's creates fail with InvalidActorSourceHash).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) authority_timeout: Duration,
}

impl From<StartArgs> for NodeArgs {
    fn from(args: StartArgs) -> NodeArgs {
        // Every field by name, no `..`: a flag added to StartArgs (or a setting to NodeArgs)
        // and not carried over here does not compile, so the detached start cannot drop it.
        let StartArgs {
            port,
            capabilities: caps,
            bind,
            state_dir,
            authority,
            trusted_keys,
            insecure,
            log_format,
            metrics,
            foreground,
            convention,
            heartbeat,
            dead_after,
            remote_sources,
            lib_copies,
            version_threads,
            long_handler,
            max_connections,
            idle_timeout,
            actor_system_calls,
            authority_timeout,
        } = args;
        NodeArgs {
            port,
            capabilities: capabilities(&caps),
            bind,
            state_dir,
            authority,
            trusted_keys,
            insecure,
            log_format,
            metrics,
            foreground,
            convention,
            heartbeat,
            dead_after,
            remote_sources,
            lib_copies,
            version_threads,
            long_handler,
            max_connections,
            idle_timeout,
            actor_system_calls,
            authority_timeout,
        }
    }
}

/// `--idle-timeout`'s value: a duration, or `off` (as `0`: never).
fn idle_timeout(s: &str) -> Result<Duration, String> {
    if s == "off" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (or `off`)"))
}

/// A flag's value parser: `values` are what `--help` and the error for a wrong value list
/// (clap checks them first), and `parse` turns the one given into its type.
fn one_of<T, const N: usize>(
    values: [&'static str; N],
    parse: fn(&str) -> Result<T, String>,
) -> impl TypedValueParser<Value = T>
where
    T: Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(values).try_map(move |s| parse(&s))
}

/// `--authority`'s value (`AuthorityKind` is the node's, so it gets no `FromStr` here).
fn authority(s: &str) -> Result<AuthorityKind, String> {
    [AuthorityKind::AcceptAll, AuthorityKind::Ed25519, AuthorityKind::None]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("--authority takes accept-all, ed25519 or none, not {s:?}"))
}

/// The state directory: `--state-dir`, or `$TROUPE_HOME/node-PORT`.
pub(crate) fn state_dir(args: &StartArgs) -> PathBuf {
    if let Some(d) = &args.state_dir {
        return d.clone();
    }
    troupe_home().join(format!("node-{}", args.port))
}

/// `$TROUPE_HOME`, defaulting to `/tmp/troupe-$UID`.
pub(crate) fn troupe_home() -> PathBuf {
    std::env::var_os("TROUPE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        PathBuf::from(format!("/tmp/troupe-{uid}"))
    })
}

/// `"morse, Caesar cipher,,mem = 64"` → `["morse", "Caesar cipher", "mem=64"]` (the
/// argument was checked by [`CapabilityArg`]; an entry that does not parse is dropped).
pub(crate) fn capabilities(s: &str) -> Vec<String> {
    troupe_actor_abi::caps::parse_list(s)
        .unwrap_or_else(|_| s.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect())
}

/// The authority and secret a node starts with, and the refusal to expose an open node.
pub(crate) fn node_security(
    args: &StartArgs,
) -> Result<(AuthorityConfig, Option<troupe_node::signing::Secret>), Failure> {
    let secret = troupe_node::client::secret_from_env().map_err(|e| usage(anyhow!(e)))?;
    let authority = match args.authority {
        AuthorityKind::None => AuthorityConfig::None,
        AuthorityKind::Ed25519 => {
            let dir = args
                .trusted_keys
                .as_deref()
                .ok_or_else(|| usage(anyhow!("--authority ed25519 needs --trusted-keys DIR")))?;
            AuthorityConfig::Ed25519(
                troupe_node::signing::TrustedKeys::load(dir).map_err(|e| usage(anyhow!(e)))?,
            )
        }
        AuthorityKind::AcceptAll => AuthorityConfig::AcceptAll,
    };
    if let Some(m) = args.metrics.filter(|m| !m.ip().is_loopback() && !args.insecure) {
        return Err(usage(anyhow!(
            "metrics are served on loopback only ({m} is not) — use 127.0.0.1:PORT, or --insecure"
        )));
    }
    let exposed = !args.bind.is_loopback();
    // A signing authority checks code, not the link: only a secret (encrypted links) or
    // --insecure opens a public address.
    if exposed && secret.is_none() && !args.insecure {
        return Err(usage(anyhow!(
            "refusing to listen on {} with no shared secret: its links would not be encrypted, and anyone who can reach the port could run native code in this node — use --secret-file FILE (every link is then encrypted and authenticated), or --insecure if you really mean it",
            args.bind
        )));
    }
    Ok((authority, secret))
}

/// `troupe start` without `--foreground`.
pub(crate) fn start_detached(args: StartArgs) -> Result<u8, Failure> {
    // Refuse an unsafe configuration before detaching, where the user sees the message.
    node_security(&args)?;
    let addr = format!("{}:{}", args.bind, args.port);
    let probe_addr =
        if args.bind.is_unspecified() { format!("127.0.0.1:{}", args.port) } else { addr.clone() };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| refused(anyhow!("cannot start the async runtime: {e}")))?;
    refuse_taken_port(&rt, &probe_addr, &addr, args.port)?;
    let dir = state_dir(&args);
    let caps = capabilities(&args.capabilities);
    let settle = args.heartbeat + SETTLE_MARGIN;
    let mut node = NodeArgs::from(args);
    node.foreground = true;
    node.state_dir = Some(dir.clone());
    let log_path = dir.join("node.log");
    let mut child = spawn_node(&node, &dir, &log_path)?;
    wait_until_answering(&rt, &mut child, &probe_addr, &log_path)?;
    println!(
        "node {addr} started (pid {}, capabilities: {}, log: {})",
        child.id(),
        if caps.is_empty() { "none".to_string() } else { caps.join(", ") },
        log_path.display()
    );
    println!("  {}", convention_line(&rt, &probe_addr, settle));
    Ok(EXIT_OK)
}

/// Beyond a heartbeat, how long `start` waits for a new node to find its place in the
/// convention (a leader's answer, or nobody at the convention address) before saying where it
/// stands: a refused port or a loopback leader answers in milliseconds.
const SETTLE_MARGIN: Duration = Duration::from_secs(1);

/// Where the node at `addr` stands in its convention, once it knows (or after `wait`): it
/// leads, serves alone, or a leader answered it.
fn convention_line(rt: &tokio::runtime::Runtime, addr: &str, wait: Duration) -> String {
    let deadline = Instant::now() + wait;
    loop {
        let report = rt.block_on(super::status::node_status(addr));
        let late = Instant::now() >= deadline;
        match report {
            Ok(r) if late || r.convention.role != "member" || r.convention.joined => {
                return super::status::convention_place(&r.convention)
            }
            Err(f) if late => return format!("its convention is not known yet: {}", f.error),
            _ => {}
        }
        // Nothing announces the node's first registration: ask again, soon.
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// How long `start` waits for a port that is in use but does not answer as a troupe node: a
/// node that was just killed keeps its listening socket until its process is torn down (the
/// kernel tears the memory down first, which takes a moment for a big node), and meanwhile the
/// kernel still completes connections to it that are then reset.
const PORT_WAIT: Duration = Duration::from_secs(3);

/// How long one probe of the port may take: a node answers its challenge at once.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What listens on a port.
enum Probe {
    /// Nothing: the connection was refused.
    Free,
    /// A troupe node (it answered the hello).
    Node,
    /// Something that accepted the connection but did not answer as a troupe node (yet).
    Other,
}

fn probe(rt: &tokio::runtime::Runtime, addr: &str) -> Probe {
    match rt.block_on(async { tokio::time::timeout(PROBE_TIMEOUT, Client::connect(addr)).await }) {
        Ok(Ok(_)) => Probe::Node,
        Ok(Err(ClientError::Unreachable { .. })) => Probe::Free,
        Ok(Err(_)) | Err(_) => Probe::Other,
    }
}

/// Fails if something already listens on the node's port: a node, or something else. A port
/// in use that does not answer as a node is tried again for up to [`PORT_WAIT`] (saying so).
fn refuse_taken_port(
    rt: &tokio::runtime::Runtime,
    probe_addr: &str,
    addr: &str,
    port: u16,
) -> Result<(), Failure> {
    let deadline = Instant::now() + PORT_WAIT;
    let mut said = false;
    loop {
        match probe(rt, probe_addr) {
            Probe::Free => return Ok(()),
            Probe::Node => {
                return Err(refused(anyhow!(
                    "a troupe node is already running on {addr} — stop it first: troupe stop {port}"
                )))
            }
            Probe::Other if Instant::now() < deadline => {
                if !said {
                    eprintln!(
                        "waiting for port {port}: it is in use (a node that just died?) — up to {}",
                        humantime::format_duration(PORT_WAIT)
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Probe::Other => {
                return Err(refused(anyhow!(
                    "port {port} is taken by something that is not a troupe node (waited {}) — choose another port",
                    humantime::format_duration(PORT_WAIT)
                )))
            }
        }
    }
}

/// Starts this executable with `node`'s arguments in a session of its own, its output going
/// to a fresh `log_path` in `dir`.
fn spawn_node(node: &NodeArgs, dir: &Path, log_path: &Path) -> Result<Child, Failure> {
    std::fs::create_dir_all(dir).map_err(|e| refused(anyhow!("cannot create {}: {e}", dir.display())))?;
    let log = std::fs::File::create(log_path)
        .map_err(|e| refused(anyhow!("cannot create {}: {e}", log_path.display())))?;
    let exe = std::env::current_exe().map_err(|e| refused(anyhow!("cannot find my own executable: {e}")))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(node.argv())
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
    cmd.spawn().map_err(|e| refused(anyhow!("cannot start the node process: {e}")))
}

/// Waits until the node answers its hello, or fails with the end of its log if its process
/// exits first, or after [`START_TIMEOUT`].
fn wait_until_answering(
    rt: &tokio::runtime::Runtime,
    child: &mut Child,
    probe_addr: &str,
    log_path: &Path,
) -> Result<(), Failure> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut delay = Duration::from_millis(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(refused(anyhow!("the node exited during start ({status}):\n{}", tail.join("\n"))));
        }
        if rt.block_on(Client::connect(probe_addr)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(refused(anyhow!(
                "the node did not answer within {}; see {}",
                humantime::format_duration(START_TIMEOUT),
                log_path.display()
            )));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// Checks `--convention`: one or more leader addresses (host:port, or a port on 127.0.0.1),
/// comma-separated, none twice.
pub(crate) fn parse_leaders(list: &str) -> Result<String, String> {
    let mut seen = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!("{list:?} has an empty entry: give host:port (or a port) for each leader"));
        }
        let addr = super::node_addr(item);
        let port = addr.rsplit_once(':').map(|(_, p)| p).unwrap_or("");
        if port.parse::<u16>().ok().filter(|p| *p != 0).is_none() {
            return Err(format!("{item:?} is not host:port (or a port from 1 to 65535)"));
        }
        if seen.contains(&addr) {
            return Err(format!("{addr} is listed twice"));
        }
        seen.push(addr);
    }
    Ok(seen.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::{CommandFactory, Parser};
    use std::ffi::OsString;

    #[test]
    fn a_leader_list_is_host_ports_or_ports_none_twice() {
        assert_eq!(parse_leaders("1900").unwrap(), "127.0.0.1:1900");
        assert_eq!(parse_leaders("10.0.0.1:1900, 1901").unwrap(), "10.0.0.1:1900,127.0.0.1:1901");
        assert!(parse_leaders("1900,").unwrap_err().contains("empty entry"));
        assert!(parse_leaders("1900,host:x").unwrap_err().contains("is not host:port"));
        assert!(parse_leaders("0").unwrap_err().contains("is not host:port"));
        assert!(parse_leaders("1900,127.0.0.1:1900").unwrap_err().contains("listed twice"));
    }

    #[test]
    fn capabilities_are_comma_separated_and_trimmed() {
        assert_eq!(capabilities("morse, Caesar cipher,,"), vec!["morse", "Caesar cipher"]);
        assert!(capabilities("").is_empty());
        assert_eq!(capabilities("gpu = A100,mem=64,morse"), vec!["gpu=A100", "mem=64", "morse"]);
        let e = Cli::try_parse_from(["troupe", "start", "1", "mem>=64"]).unwrap_err().to_string();
        assert!(e.contains("cannot contain `>`"), "{e}");
        let long = format!("a={}", "b".repeat(100_000));
        let e = Cli::try_parse_from(["troupe", "start", "1", &long]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(e.to_string().len() < 400, "the refusal repeats the argument: {} bytes", e.to_string().len());
    }

    /// `troupe ARGV...` parsed as `troupe start`.
    fn start_args(argv: Vec<OsString>) -> StartArgs {
        let cli = Cli::try_parse_from(std::iter::once(OsString::from("troupe")).chain(argv))
            .unwrap_or_else(|e| panic!("the argv does not parse: {e}"));
        match cli.command {
            Command::Start(args) => args,
            other => panic!("not a start: {other:?}"),
        }
    }

    #[test]
    fn every_setting_survives_argv_and_back() {
        // Every field differs from NodeArgs::new, so a setting that argv() does not write or
        // StartArgs does not read comes back as its default and the comparison fails.
        let sent = NodeArgs {
            port: 4100,
            capabilities: vec!["morse".into(), "Caesar cipher".into()],
            bind: "10.1.2.3".parse().expect("an address"),
            state_dir: Some("/tmp/troupe state".into()),
            authority: AuthorityKind::Ed25519,
            trusted_keys: Some("/tmp/keys".into()),
            insecure: true,
            log_format: "json".into(),
            metrics: Some("127.0.0.1:9464".parse().expect("an address")),
            foreground: true,
            convention: "10.1.2.4:1901".into(),
            heartbeat: Duration::from_millis(250),
            dead_after: Duration::from_millis(4500),
            remote_sources: RemoteSources::LeaderOnly,
            lib_copies: LibCopies::Store,
            version_threads: Some(7),
            long_handler: Duration::from_millis(250),
            max_connections: 8,
            idle_timeout: Duration::from_millis(300),
            actor_system_calls: true,
            authority_timeout: Duration::from_millis(1500),
        };
        let defaults = NodeArgs::new(sent.port);
        assert_ne!(sent.bind, defaults.bind);
        assert_ne!(sent.convention, defaults.convention);
        assert_ne!(sent.heartbeat, defaults.heartbeat);
        assert_ne!(sent.dead_after, defaults.dead_after);
        assert_ne!(sent.remote_sources, defaults.remote_sources);
        assert_ne!(sent.lib_copies, defaults.lib_copies);
        assert_ne!(sent.max_connections, defaults.max_connections);
        assert_ne!(sent.idle_timeout, defaults.idle_timeout);
        let back = NodeArgs::from(start_args(sent.argv()));
        assert_eq!(back, sent);
    }

    #[test]
    fn the_defaults_survive_argv_and_back() {
        let sent = NodeArgs::new(1900);
        assert_eq!(NodeArgs::from(start_args(sent.argv())), sent);
        let mut off = NodeArgs::new(1900);
        off.idle_timeout = Duration::ZERO;
        assert_eq!(NodeArgs::from(start_args(off.argv())), off);
        assert_eq!(idle_timeout("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn every_listed_value_parses_to_the_value_of_that_name() {
        let cmd = Cli::command();
        let start = cmd.find_subcommand("start").expect("a start subcommand");
        let arg =
            |id: &str| start.get_arguments().find(|a| a.get_id() == id).expect("the flag exists").clone();
        let names = |id: &str| -> Vec<String> {
            arg(id).get_possible_values().iter().map(|v| v.get_name().to_string()).collect()
        };
        for name in names("authority") {
            assert_eq!(authority(&name).map(AuthorityKind::as_str), Ok(name.as_str()));
        }
        for name in names("remote_sources") {
            assert_eq!(name.parse::<RemoteSources>().map(RemoteSources::as_str), Ok(name.as_str()));
        }
        for name in names("lib_copies") {
            assert_eq!(name.parse::<LibCopies>().map(LibCopies::as_str), Ok(name.as_str()));
        }
        assert_eq!(names("lib_copies"), ["memory", "store"]);
        assert!(authority("all").is_err());
    }

    #[test]
    fn ed25519_needs_trusted_keys() {
        let e = Cli::try_parse_from(["troupe", "start", "1", "--authority", "ed25519"]).err();
        assert_eq!(e.map(|e| e.kind()), Some(clap::error::ErrorKind::MissingRequiredArgument));
    }
}
