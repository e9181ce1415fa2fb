//! The one place that turns a node's settings into the arguments of `troupe start`.
//!
//! A node process is started in three places: the detached `troupe start` (which re-runs
//! itself with `--foreground`), the end-to-end tests and the benchmark. Each used to write the
//! argument list by hand, and the detached start once dropped `--lib-copies` that way. They all
//! build a [`NodeArgs`] and call [`NodeArgs::argv`], which writes every setting.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::{LibCopies, RemoteSources};

/// A handler running longer than this is reported (log, status, metrics): a second is long
/// for an actor's handler, which should answer in micro- to milliseconds.
pub const DEFAULT_LONG_HANDLER: Duration = Duration::from_secs(1);

pub use super::config::DEFAULT_CONVENTION;

/// Which source authority `troupe start --authority` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthorityKind {
    /// `accept-all`: every well-formed source (the default, as the tutorial's start script).
    #[default]
    AcceptAll,
    /// `ed25519`: only sources signed by a key in `--trusted-keys`.
    Ed25519,
    /// `none`: loads are rejected until an actor registers itself as authority.
    None,
}

impl AuthorityKind {
    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorityKind::AcceptAll => "accept-all",
            AuthorityKind::Ed25519 => "ed25519",
            AuthorityKind::None => "none",
        }
    }
}

/// Everything `troupe start` takes. [`NodeArgs::new`] gives the CLI's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeArgs {
    /// The admin port.
    pub port: u16,
    /// Capability names (joined with commas on the command line).
    pub capabilities: Vec<String>,
    /// The address to bind.
    pub bind: IpAddr,
    /// The state directory (none: the CLI's default under `$TROUPE_HOME`).
    pub state_dir: Option<PathBuf>,
    /// The source authority.
    pub authority: AuthorityKind,
    /// Trusted public keys for `--authority ed25519`.
    pub trusted_keys: Option<PathBuf>,
    /// `--insecure`.
    pub insecure: bool,
    /// `text` or `json`.
    pub log_format: String,
    /// Where to serve `/metrics`.
    pub metrics: Option<SocketAddr>,
    /// Run in the calling process's child without detaching.
    pub foreground: bool,
    /// The convention's leader address.
    pub convention: String,
    /// How often members register with the leader.
    pub heartbeat: Duration,
    /// Silence after which a node is declared lost.
    pub dead_after: Duration,
    /// Whether the node fetches versions it lacks.
    pub remote_sources: RemoteSources,
    /// Where library copies are made.
    pub lib_copies: LibCopies,
    /// The most threads one version runs its actors on (none: the node's default, the cores).
    pub version_threads: Option<usize>,
    /// A handler running longer than this is reported.
    pub long_handler: Duration,
    /// The most admin-port connections open at once.
    pub max_connections: usize,
    /// A client connection idle this long is closed (zero: never; `off` on the command line).
    pub idle_timeout: Duration,
    /// Whether actors may make system calls (load, unload, change capabilities, stop).
    pub actor_system_calls: bool,
    /// How long a load waits for an actor source authority.
    pub authority_timeout: Duration,
}

impl NodeArgs {
    /// A node on `port` with the CLI's defaults.
    pub fn new(port: u16) -> NodeArgs {
        NodeArgs {
            port,
            capabilities: Vec::new(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            state_dir: None,
            authority: AuthorityKind::AcceptAll,
            trusted_keys: None,
            insecure: false,
            log_format: "text".into(),
            metrics: None,
            foreground: false,
            convention: DEFAULT_CONVENTION.into(),
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
            remote_sources: RemoteSources::Yes,
            lib_copies: LibCopies::Memory,
            version_threads: None,
            long_handler: DEFAULT_LONG_HANDLER,
            max_connections: crate::model::config::DEFAULT_MAX_CONNECTIONS,
            idle_timeout: crate::model::config::DEFAULT_IDLE_TIMEOUT,
            actor_system_calls: false,
            authority_timeout: crate::model::config::DEFAULT_AUTHORITY_TIMEOUT,
        }
    }

    /// The arguments after the program name: `start PORT CAPS` and every setting as a flag.
    pub fn argv(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["start".into(), self.port.to_string().into()];
        a.push(self.capabilities.join(",").into());
        let mut flag = |name: &str, value: OsString| {
            a.push(name.into());
            a.push(value);
        };
        flag("--bind", self.bind.to_string().into());
        if let Some(d) = &self.state_dir {
            flag("--state-dir", d.clone().into_os_string());
        }
        flag("--authority", self.authority.as_str().into());
        if let Some(k) = &self.trusted_keys {
            flag("--trusted-keys", k.clone().into_os_string());
        }
        flag("--log-format", self.log_format.clone().into());
        if let Some(m) = &self.metrics {
            flag("--metrics", m.to_string().into());
        }
        flag("--convention", self.convention.clone().into());
        flag("--heartbeat", duration_arg(self.heartbeat).into());
        flag("--dead-after", duration_arg(self.dead_after).into());
        flag("--remote-sources", self.remote_sources.as_str().into());
        flag("--lib-copies", self.lib_copies.as_str().into());
        if let Some(n) = self.version_threads {
            flag("--version-threads", n.to_string().into());
        }
        flag("--long-handler", duration_arg(self.long_handler).into());
        flag("--max-connections", self.max_connections.to_string().into());
        let idle = if self.idle_timeout.is_zero() { "off".into() } else { duration_arg(self.idle_timeout) };
        flag("--idle-timeout", idle.into());
        flag("--authority-timeout", duration_arg(self.authority_timeout).into());
        if self.actor_system_calls {
            a.push("--actor-system-calls".into());
        }
        if self.insecure {
            a.push("--insecure".into());
        }
        if self.foreground {
            a.push("--foreground".into());
        }
        a
    }
}

/// A duration as `troupe start` parses it (humantime's units), exactly: milliseconds when it
/// is a whole number of them, else nanoseconds.
fn duration_arg(d: Duration) -> String {
    if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_written() {
        let mut n = NodeArgs::new(4100);
        n.capabilities = vec!["morse".into(), "Caesar cipher".into()];
        n.state_dir = Some("/tmp/s".into());
        n.authority = AuthorityKind::Ed25519;
        n.trusted_keys = Some("/tmp/k".into());
        n.insecure = true;
        n.metrics = Some("127.0.0.1:9464".parse().unwrap());
        n.foreground = true;
        n.heartbeat = Duration::from_millis(200);
        n.dead_after = Duration::from_micros(1500);
        n.remote_sources = RemoteSources::LeaderOnly;
        n.lib_copies = LibCopies::Store;
        n.version_threads = Some(3);
        n.long_handler = Duration::from_millis(300);
        n.max_connections = 8;
        n.idle_timeout = Duration::from_millis(300);
        n.actor_system_calls = true;
        n.authority_timeout = Duration::from_millis(1500);
        let argv: Vec<String> = n.argv().into_iter().map(|s| s.into_string().unwrap()).collect();
        let text = argv.join(" ");
        assert_eq!(&argv[..3], ["start", "4100", "morse,Caesar cipher"]);
        for want in [
            "--state-dir /tmp/s",
            "--authority ed25519",
            "--trusted-keys /tmp/k",
            "--metrics 127.0.0.1:9464",
            "--heartbeat 200ms",
            "--dead-after 1500000ns",
            "--remote-sources leader-only",
            "--lib-copies store",
            "--version-threads 3",
            "--long-handler 300ms",
            "--max-connections 8",
            "--idle-timeout 300ms",
            "--authority-timeout 1500ms",
            "--actor-system-calls",
            "--insecure",
            "--foreground",
        ] {
            assert!(text.contains(want), "{want:?} missing from {text}");
        }
        n.idle_timeout = Duration::ZERO;
        let text: Vec<String> = n.argv().into_iter().map(|s| s.into_string().unwrap()).collect();
        assert!(text.join(" ").contains("--idle-timeout off"), "{text:?}");
    }
}
