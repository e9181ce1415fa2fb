//! # troupe (CLI)
//!
//! The `troupe` command: start and stop nodes, pack, load and unload sources, upgrade live
//! actors to a new version, watch a plugin crate, run the demo app, show status. The binary (`main.rs`) only calls [`run`]. This file holds the command
//! line ([`Cli`]), the dispatch to the commands and the mapping of failures to exit codes;
//! each command lives in a module of its own under `cmd/` (plugin-author tooling in `dev.rs`),
//! in the library so tests can call it too. Talking to nodes goes through
//! [`troupe_node::client`]; packing and plugin inspection through [`troupe_node::archive`] and
//! [`troupe_node::plugin`].
//!
//! Exit codes (DESIGN §7): 0 success, 1 the request was refused, 2 usage error, 3 node
//! unreachable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Parser, Subcommand};
use troupe_node::client::ClientError;
use troupe_node::protocol::ErrorKind;

mod cmd;
mod dev;
mod shell;

// The public names stay at the crate root, where they were before the commands moved into
// `cmd/`; dev.rs takes its helpers from here too.
pub(crate) use cmd::connect;
pub use cmd::node_addr;
use cmd::start::StartArgs;
pub use cmd::status::{render_status, ConventionNode};

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
        after_help = "Examples:\n  troupe pack -o src.zip target/release/libtroupe_encoders.so\n  troupe pack -o src.zip --build encoders     # cargo build --release the crate, pack its cdylib\n  troupe pack -o src.zip --no-strip target/release/libtroupe_encoders.so   # keep symbols and debug info\n  troupe pack -o v2.zip --build counter --rename counter.Counter=counter.Tally\n\nThe manifest (troupe.toml) lists each library's sha256 and the actor types it exports,\nread from the library's plugin root (no plugin code runs). Libraries are packed stripped\n(`strip`, or the program in $STRIP): a library built with debug info is several times\nlarger, and every node inflates, hashes and writes every byte of it at each load.\n\n--rename OLD=NEW records in the manifest that type NEW replaces OLD: a live upgrade\n(troupe upgrade, deploy --migrate, watch) moves actors of OLD to NEW. NEW must be a type\nthe libraries export."
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
        /// Type NEW takes over the actors of type OLD (of an earlier version) in a live
        /// upgrade: sets `replaces` on NEW in the manifest. Repeat for several.
        #[arg(long = "rename", value_name = "OLD=NEW", value_parser = cmd::upgrade::type_pair)]
        renames: Vec<(String, String)>,
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
        after_help = "Examples:\n  troupe deploy 1900 v2.zip --group encoders           # v2 active; v1 kept for rollback\n  troupe deploy 1900 v3.zip --group encoders --keep 0  # v3 active; older versions drain and unload\n  echo hi | troupe app @encoders                      # @NAME works wherever a hash does\n  troupe deploy 1900 v2.zip --group counter --migrate  # and move v1's live actors to v2\n\nNew creates through @NAME (and global names that mention it) go to the new version at\nonce; actors of older versions keep serving until they exit.\n\nWith --migrate, the live actors of the version that was active move to the new one at the\nsame address, with their state, as `troupe upgrade` does (see its --help): actors whose type\ndoes not migrate stay (`stayed`), an actor whose export or import fails stays and is listed\n(`failed`, exit 1), and with --all-or-nothing one failure moves them all back (exit 1)."
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
        #[command(flatten)]
        migrate: cmd::upgrade::MigrateArgs,
    },
    /// Move every live actor of a version to another, at the same address, with its state.
    Upgrade(cmd::upgrade::UpgradeArgs),
    /// Rebuild, reload and live-upgrade a plugin crate each time its source changes.
    Watch(cmd::watch::WatchArgs),
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
    /// Serve a live web page of the convention (nodes, versions, actors, charts, log, upgrades).
    ///
    /// The page's server is a client of the node's admin protocol, as the CLI is (the same
    /// secret, TROUPE_SECRET_FILE or --secret-file). It listens on loopback unless told
    /// otherwise; on any other address every request needs the token it prints at start.
    /// Actions (load, deploy, upgrade, rollback, unload, chgcap) are off unless
    /// --allow-actions, and need the token too.
    #[command(
        after_help = "Examples:\n  troupe dashboard 1900                      # http://127.0.0.1:8080/\n  troupe dashboard 1900 --listen 127.0.0.1:0 # a free port, printed at start\n  troupe dashboard 1900 --allow-actions      # prints the page's address with its token\n  troupe dashboard 1900 --listen 0.0.0.0:8080 --allow-actions"
    )]
    Dashboard {
        /// Admin port (or host:port) of a node of the convention.
        port: String,
        /// Where to serve the page (loopback by default; elsewhere needs the token).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Allow actions from the page (each needs the token).
        #[arg(long)]
        allow_actions: bool,
        /// How often the nodes are asked for their status (an event reaches the page within
        /// about one refresh).
        #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
        refresh: Duration,
    },
    /// Set (+) or remove (-) a capability of a running node.
    ///
    /// Actors whose requirements no longer hold are asked to exit.
    #[command(
        after_help = "Examples:\n  troupe chgcap 10101 + morse\n  troupe chgcap 10101 + gpu=A100      # set a value (replaces the old one)\n  troupe chgcap 10101 + mem=16        # an actor requiring mem>=32 exits\n  troupe chgcap 10101 - \"64bit encoder\""
    )]
    Chgcap {
        /// Admin port (or host:port).
        port: String,
        /// `+` to set, `-` to remove.
        #[arg(value_parser = ["+", "-"])]
        op: String,
        /// `NAME` or `NAME=VALUE` to set (a plain name has the value true); `NAME` to remove.
        #[arg(value_parser = cmd::chgcap::CapabilityArg { list: false })]
        capability: String,
    },
    // Plugin tooling (new, create, tell, ask, completions): arguments and code in dev.rs.
    New(dev::NewArgs),
    Create(dev::CreateArgs),
    Tell(dev::TellArgs),
    Ask(dev::AskArgs),
    Completions(dev::CompletionsArgs),
    Shell(shell::ShellArgs),
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
        Command::Start(args) if args.foreground => report(cmd::foreground::run_foreground(args)),
        Command::Start(args) => report(cmd::start::start_detached(args)),
        Command::Shell(args) => shell::run(args),
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

async fn dispatch(command: Command) -> Result<u8, Failure> {
    use cmd::{app, chgcap, load, logs, pack, status, stop, top, upgrade, watch};
    match command {
        Command::Start(_) | Command::Shell(_) => unreachable!("handled in run"),
        Command::Stop { ports } => stop::stop(&ports).await,
        Command::Pack { output, name, package_version, build, sign, no_strip, renames, mut cdylibs } => {
            if let Some(dir) = build {
                cdylibs.extend(pack::build_cdylibs(&dir)?);
            }
            let options =
                pack::PackOptions { name, version: package_version, sign, no_strip, renames, fast: false };
            pack::pack(&output, &options, &cdylibs)
        }
        Command::Keygen { output } => pack::keygen(&output),
        Command::Verify { zip, trusted_keys } => pack::verify(&zip, &trusted_keys),
        Command::Load { port, zip } => load::load(&port, &zip).await,
        Command::Unload { port, hash, grace } => load::unload(&port, &hash, grace).await,
        Command::Deploy { port, zip, group, keep, grace, migrate } => {
            load::deploy(&port, &zip, &group, keep, grace, migrate.options()?).await
        }
        Command::Upgrade(args) => upgrade::upgrade(args).await,
        Command::Watch(args) => watch::watch(args).await,
        Command::Rollback { port, group } => load::rollback(&port, &group).await,
        Command::App { hash, port, timeout } => app::app(&hash, &port, timeout).await,
        Command::Status { port, json, convention } => status::status(&port, json, convention).await,
        Command::Chgcap { port, op, capability } => chgcap::chgcap(&port, &op, &capability).await,
        Command::New(args) => dev::new(args),
        Command::Create(args) => dev::create(args).await,
        Command::Tell(args) => dev::tell(args).await,
        Command::Ask(args) => dev::ask(args).await,
        Command::Completions(args) => dev::completions(args),
        Command::Logs { port, follow, lines } => logs::logs(&port, follow, lines).await,
        Command::Top { port, interval, convention, iterations } => {
            top::top(&port, interval, convention, iterations).await
        }
        Command::Dashboard { port, listen, allow_actions, refresh } => {
            cmd::dashboard::dashboard(&port, listen, allow_actions, refresh).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
