//! # troupe-node
//!
//! The Troupe node as a library: everything `troupe start` runs, and what tests drive. The
//! modules are grouped by job, and each depends only on the ones listed before it
//! (`docs/architecture.md` has the map, who owns what, and the path of a load, a message and
//! an unload):
//!
//! - [`store`]: source zips, signing, each version's private library copies;
//! - [`wire`] (also `protocol`): frames, requests, responses, replies, status;
//! - [`model`]: configuration, ids, placement, the core's typed errors, metric families, a
//!   node's argv;
//! - [`peers`]: links to other nodes;
//! - [`host`]: version hosts, the threads that alone run a version's code;
//! - [`tables`]: the node's tables, one owner each;
//! - [`runtime`]: the core that holds the tables; routing, creates and exits;
//! - [`ops`]: loads, fetches, unloads, stop, capabilities, groups, status;
//! - [`convention`]: membership, failures, global names;
//! - [`node`]: the handle that makes a node and starts its convention task;
//! - [`admin`]: the admin server, its dispatcher, the client, the metrics endpoint.

pub mod admin;
pub(crate) mod convention;
pub mod host;
pub mod model;
pub mod node;
pub(crate) mod ops;
pub(crate) mod peers;
pub mod runtime;
pub mod store;
pub(crate) mod tables;
pub mod wire;

pub use admin::{client, metrics, server};
pub use host::plugin;
pub use host::pthread_keys::{pthread_keys_in_use, PTHREAD_KEYS_MAX, PTHREAD_KEYS_REFUSE_AT};
pub use model::config::{
    AuthorityConfig, ConnectionLimits, ConventionConfig, LibCopies, NodeConfig, RemoteSources,
};
pub use model::launch;
pub use model::placement::MIN_HASH_PREFIX;
pub use node::Node;
pub use runtime::core::Core;
pub use store::{archive, signing};
pub use wire as protocol;
pub use wire::status;

/// The target triple this node was built for; a source packed for another is refused.
pub const TARGET: &str = env!("TROUPE_TARGET");
