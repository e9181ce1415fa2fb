//! The handle the admin server and the binary hold: it makes a node's core and starts its
//! convention task; the admin server serves it.

use std::sync::Arc;

use crate::model::config::{ConnectionLimits, NodeConfig};
use crate::runtime::core::Core;

/// A running node.
#[derive(Clone)]
pub struct Node {
    core: Arc<Core>,
    /// What the admin server enforces on its connections.
    connections: ConnectionLimits,
}

impl Node {
    /// Creates a node (its store is emptied and created) and starts its convention tasks. Must
    /// be called inside a tokio runtime.
    pub fn new(config: NodeConfig) -> std::io::Result<Node> {
        let connections = config.connections;
        let core = Core::new(config)?;
        crate::convention::start(&core);
        crate::ops::long_handlers::watch(&core);
        Ok(Node { core, connections })
    }

    /// The core (for the server, metrics and version hosts).
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// The bounds on the admin port's connections.
    pub fn connections(&self) -> ConnectionLimits {
        self.connections
    }

    /// The admin address.
    pub fn addr(&self) -> &str {
        &self.core.addr
    }
}
