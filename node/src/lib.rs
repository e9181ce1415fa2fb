//! # troupe-node
//!
//! The Troupe node as a library: everything `troupe start` runs, and what tests drive.
//!
//! - [`archive`]: reading and writing source zips (manifest, limits, hashes);
//! - [`plugin`]: opening a cdylib and checking its root before any plugin code runs;
//! - [`version`]: version hosts, the threads that alone run a version's code;
//! - [`node`]: actors, versions, routing, loads and unloads;
//! - [`protocol`], [`server`], [`client`]: the admin port;
//! - [`status`]: what `troupe status` reports.

pub mod archive;
pub mod client;
pub mod node;
pub mod plugin;
pub mod protocol;
pub mod server;
pub mod status;
pub(crate) mod version;

pub use node::{AuthorityConfig, Node, NodeConfig};

/// The target triple this node was built for; a source packed for another is refused.
pub const TARGET: &str = env!("TROUPE_TARGET");
