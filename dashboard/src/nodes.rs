//! The dashboard's one way into a convention: requests on the nodes' admin ports, as any
//! client makes them ([`troupe_node::client::Client`]: the same secret from
//! `TROUPE_SECRET_FILE`, the same encryption, the node's limits and idle timeout).
//!
//! [`Nodes`] keeps one connection per node for polling, made again after a failure. Actions
//! and actor status questions take a connection of their own ([`Nodes::fresh`]), as the CLI
//! does, so a long upgrade never holds up the poll of its node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use troupe_node::client::{Client, ClientError};
use troupe_node::protocol::{Request, Response};

/// How long one poll request may take before the node counts as not answering: far above a
/// status round trip (well under a millisecond on loopback), short enough that a stalled node
/// is shown as such within a few refreshes.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(3);

/// One cached connection per node, each behind its own async lock (a node's poll requests go
/// one after the other on its connection; different nodes are polled at once).
#[derive(Default)]
pub struct Nodes {
    conns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Client>>>>>,
}

impl Nodes {
    /// Sends `request` to `node` on its cached connection (connecting first if there is none),
    /// within [`POLL_TIMEOUT`]. Any failure drops the connection, so the next poll reconnects.
    pub async fn poll(&self, node: &str, request: Request) -> Result<Response, ClientError> {
        let slot = {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.entry(node.to_string()).or_default().clone()
        };
        let mut conn = slot.lock().await;
        let answer = tokio::time::timeout(POLL_TIMEOUT, async {
            let client = match conn.as_mut() {
                Some(c) => c,
                None => conn.insert(Client::connect(node).await?),
            };
            client.request(request).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::Timeout { what: format!("an answer from {node}"), after: POLL_TIMEOUT })
        });
        if answer.is_err() {
            *conn = None;
        }
        answer
    }

    /// A connection of its own to `node`, for an action or a question to an actor.
    pub async fn fresh(&self, node: &str) -> Result<Client, ClientError> {
        Client::connect(node).await
    }

    /// Forgets the connections to nodes not in `keep` (nodes that left for good).
    pub fn retain(&self, keep: &[String]) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|k, _| keep.contains(k));
    }
}
