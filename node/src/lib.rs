//! # troupe-node
//!
//! The Troupe node as a library: everything `troupe start` runs, and what tests drive.
//!
//! - [`archive`]: reading and writing source zips (manifest, limits, hashes);
//! - [`plugin`]: opening a cdylib and checking its root before any plugin code runs;
//! - [`version`]: version hosts, the threads that alone run a version's code;
//! - [`node`]: actors, versions, routing, creates and exits; `loading`: loads, unloads,
//!   fetches between nodes, status and stop;
//! - [`convention`]: members, placement across nodes, global names, failures; `peer`: links
//!   to other nodes;
//! - [`protocol`], [`server`], [`client`]: the admin port;
//! - [`signing`]: signed sources (ed25519) and the convention's shared secret (HMAC);
//! - [`status`]: what `troupe status` reports.

pub mod archive;
pub mod client;
pub mod convention;
mod groups;
pub(crate) mod image;
pub mod launch;
mod loading;
pub mod metrics;
pub mod node;
mod peer;
pub mod plugin;
pub mod protocol;
pub mod server;
pub mod signing;
pub mod status;
pub(crate) mod version;

pub use convention::ConventionConfig;
pub use loading::{pthread_keys_in_use, PTHREAD_KEYS_MAX, PTHREAD_KEYS_REFUSE_AT};
pub use node::{AuthorityConfig, LibCopies, Node, NodeConfig};
pub use protocol::RemoteSources;

/// The target triple this node was built for; a source packed for another is refused.
pub const TARGET: &str = env!("TROUPE_TARGET");
