//! The node's tables, each with one owner: a type with private fields behind a private lock,
//! and methods that say what they do. No lock leaves its module, and no method calls out of
//! its table while holding it (the one exception, versions → authority, is documented in
//! [`authority`]).
//!
//! - [`actors`]: the actor table and tombstones; [`awaited`]: messages to creates still on
//!   their way here;
//! - [`versions`]: the version registry and its `validating → active → draining → gone`
//!   machine, with its waiters;
//! - [`authority`]: the source authority and pending validations;
//! - [`members`]: the convention's other nodes, the leader's directory versions, lost
//!   incarnations, and the watchers;
//! - [`leadership`]: who leads, as this node sees it, and a new leader's gathering;
//! - [`names`]: global names; [`groups`]: named releases;
//! - [`capabilities`]: this node's capabilities;
//! - [`upgrades`]: live upgrades held until every node is ready (`--all-or-nothing`);
//! - [`progress`]: how far each live upgrade got here (moved, stayed, failed, pauses), for watchers;
//! - [`source_watch`]: the actors that hear `LoadedSource` / `UnloadedSource`;
//! - [`supervised`]: children created with a restart policy, and their restarts;
//! - [`fetches`]: versions being fetched from a peer, one fetch per hash at a time.

pub(crate) mod actors;
pub(crate) mod authority;
pub(crate) mod awaited;
pub(crate) mod capabilities;
pub(crate) mod fetches;
pub(crate) mod groups;
pub(crate) mod leadership;
pub(crate) mod members;
pub(crate) mod names;
pub(crate) mod progress;
pub(crate) mod source_watch;
pub(crate) mod supervised;
pub(crate) mod upgrades;
pub(crate) mod versions;
