//! `troupe dashboard PORT`: binds the page (after checking the node answers), prints its
//! address, with the token when there is one, as Jupyter does, and serves until Ctrl-C. The
//! server itself is the `troupe-dashboard` crate.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;
use troupe_dashboard::{Dashboard, DashboardError, Options};

use super::node_addr;
use crate::{refused, usage, Failure, EXIT_OK};

/// `troupe dashboard PORT [--listen ADDR] [--allow-actions] [--refresh D]`.
pub(crate) async fn dashboard(
    port: &str,
    listen: SocketAddr,
    allow_actions: bool,
    refresh: Duration,
) -> Result<u8, Failure> {
    if refresh.is_zero() {
        return Err(usage(anyhow!("--refresh must be longer than 0")));
    }
    let options = Options { node: node_addr(port), listen, allow_actions, refresh };
    let d = Dashboard::bind(options).await.map_err(|e| match e {
        DashboardError::Node(c) => Failure::from(c),
        other => refused(anyhow!(other)),
    })?;
    let addr = d.addr();
    println!("troupe dashboard of {} on http://{addr}/", node_addr(port));
    if let Some(token) = d.token() {
        println!("token: {token}");
    }
    if !addr.ip().is_loopback() {
        println!("(not loopback: every request needs the token)");
    }
    println!("open: {}", d.url());
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    d.serve(shutdown).await.map_err(|e| refused(anyhow!(e)))?;
    Ok(EXIT_OK)
}
