//! # troupe-dashboard
//!
//! `troupe dashboard PORT`: a live web page of a convention. It is a client of the nodes'
//! admin protocol like the CLI (the same secret, encryption and limits): the nodes gain no
//! port and no code path of their own beyond one request, `Observe`. Its own crate, so that
//! the web server's dependencies stay out of the node library.
//!
//! The modules, by job:
//! - `nodes`: the connections to the nodes (the dashboard's only way in);
//! - `poller`: the refresh loop, which owns what is remembered between refreshes:
//!   `tracker` (nodes seen, losses, events) and `history` (the charts' series);
//! - `upgrades`: the live upgrades the nodes report, whoever started them, added up;
//! - `view`: the JSON document each refresh sends to the page;
//! - `http`: the axum server, its compiled-in assets and read endpoints; `actions`: the
//!   actions; `auth`: the token and who may read or act.
//!
//! [`Dashboard::bind`] checks the node answers and binds the page's address; [`Dashboard::serve`]
//! serves until its shutdown future completes.

mod actions;
pub mod auth;
mod history;
mod http;
mod nodes;
mod poller;
mod tracker;
mod upgrades;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use troupe_node::client::ClientError;
use troupe_node::protocol::{Request, Response};

pub use auth::Access;

/// The default refresh period. An event reaches the page within one refresh and one poll
/// round (a few milliseconds on loopback); 500 ms keeps that under the goal of 1 s with
/// room for a loaded machine (B11 measures it).
pub const DEFAULT_REFRESH: Duration = Duration::from_millis(500);

/// What `troupe dashboard` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The node to start from (`host:port`); the others are found through it.
    pub node: String,
    /// Where the page is served.
    pub listen: SocketAddr,
    /// `--allow-actions`.
    pub allow_actions: bool,
    /// How often the nodes are asked.
    pub refresh: Duration,
}

/// Why the dashboard could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The node does not answer (or refuses the status).
    #[error(transparent)]
    Node(#[from] ClientError),
    /// The page's address cannot be bound.
    #[error("cannot listen on {addr}: {source} — choose another address with --listen")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No random bytes for the token.
    #[error("cannot make a token: {0}")]
    Token(String),
    /// The server failed.
    #[error("the web server stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// A dashboard bound to its address, not serving yet.
pub struct Dashboard {
    listener: tokio::net::TcpListener,
    access: Arc<Access>,
    options: Options,
    addr: SocketAddr,
}

impl Dashboard {
    /// Checks that the node answers, makes the token if one is needed and binds the page's
    /// address.
    pub async fn bind(options: Options) -> Result<Dashboard, DashboardError> {
        let mut c = troupe_node::client::Client::connect(&options.node).await?;
        match c.request(Request::Status).await? {
            Response::Status(_) => {}
            other => {
                let message = format!("unexpected answer to a status request: {other:?}");
                return Err(ClientError::Protocol { addr: options.node.clone(), message }.into());
            }
        }
        let access = Access::new(options.listen, options.allow_actions)
            .map_err(|e| DashboardError::Token(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| DashboardError::Bind { addr: options.listen, source })?;
        let addr =
            listener.local_addr().map_err(|source| DashboardError::Bind { addr: options.listen, source })?;
        Ok(Dashboard { listener, access: Arc::new(access), options, addr })
    }

    /// The address the page is served on (the port chosen, if `--listen` said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token, if there is one.
    pub fn token(&self) -> Option<&str> {
        self.access.token()
    }

    /// The page's address to open, with the token when there is one (as Jupyter prints it).
    pub fn url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.addr.ip().to_string()
        };
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        match self.token() {
            Some(t) => format!("http://{host}:{}/?token={t}", self.addr.port()),
            None => format!("http://{host}:{}/", self.addr.port()),
        }
    }

    /// Polls the convention and serves the page until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), DashboardError> {
        let (tx, rx) = watch::channel(Arc::new(poller::Published::default()));
        let nodes = Arc::new(nodes::Nodes::default());
        let wake = Arc::new(Notify::new());
        let poller = poller::Poller {
            nodes: nodes.clone(),
            entry: self.options.node.clone(),
            refresh: self.options.refresh,
            wake: wake.clone(),
            tx,
        };
        let polling = tokio::spawn(poller.run());
        let state = http::AppState {
            access: self.access,
            nodes,
            published: rx,
            wake,
            entry: self.options.node,
            refresh: self.options.refresh,
        };
        let served = axum::serve(self.listener, http::router(state)).with_graceful_shutdown(shutdown).await;
        polling.abort();
        served.map_err(DashboardError::Serve)
    }
}
