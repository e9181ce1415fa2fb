//! The commands that talk to nodes or pack sources, one module per command or family, and
//! what they share: the node address a port means, connecting, and the progress line shown
//! while a request takes a moment. The command line itself and the exit-code mapping are in
//! the crate root; plugin-author tooling is in `dev.rs`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use troupe_node::client::Client;

use anyhow::anyhow;

use crate::{usage, Failure};

pub(crate) mod app;
pub(crate) mod chgcap;
pub(crate) mod dashboard;
pub(crate) mod foreground;
pub(crate) mod load;
pub(crate) mod logs;
pub(crate) mod pack;
pub(crate) mod start;
pub(crate) mod status;
pub(crate) mod stop;
pub(crate) mod top;
pub(crate) mod upgrade;
pub(crate) mod watch;

/// `1900` → `127.0.0.1:1900`; `host:port` stays.
pub fn node_addr(port: &str) -> String {
    if port.contains(':') {
        port.to_string()
    } else {
        format!("127.0.0.1:{port}")
    }
}

/// A client of the node at `port` (see [`node_addr`]).
pub(crate) async fn connect(port: &str) -> Result<Client, Failure> {
    connect_addr(&node_addr(port)).await
}

/// A client of the node at `addr` (`host:port`), once the shared secret, if one is named,
/// could be read: a secret file that is missing or malformed is the command line's fault
/// (exit 2), said before anything is sent.
pub(crate) async fn connect_addr(addr: &str) -> Result<Client, Failure> {
    troupe_node::client::secret_from_env().map_err(|e| {
        usage(anyhow!("cannot read the shared secret named by --secret-file (or TROUPE_SECRET_FILE): {e}"))
    })?;
    Ok(Client::connect(addr).await?)
}

/// Runs `work`, showing what is going on (with elapsed time) on stderr when it takes a moment
/// and stderr is a terminal; nothing is printed to pipes, and no colour is used.
pub(crate) async fn with_progress<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_become_loopback_addresses() {
        assert_eq!(node_addr("1900"), "127.0.0.1:1900");
        assert_eq!(node_addr("10.0.0.2:1900"), "10.0.0.2:1900");
    }
}
