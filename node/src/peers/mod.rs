//! Links to other nodes of the convention: one outgoing connection per peer ([`link`]), each
//! with an outbox of frames not yet written ([`outbox`]).
//!
//! The links reach the node only through [`LinkEvents`]: what could not be delivered, and which
//! peer could not be reached. They hold the node weakly, so a link never keeps it alive.

pub(crate) mod link;
pub(crate) mod outbox;

use troupe_actor_abi::message::{Address, Incoming};

pub(crate) use link::{Corked, Peers};

/// What a link tells the node when something it queued cannot be sent.
pub(crate) trait LinkEvents: Send + Sync + 'static {
    /// A message to `to` could not be sent: back to its sender.
    fn undelivered(&self, msg: Incoming, to: Address, why: String);
    /// A create placed on node `node` could not reach it: its parent is told.
    fn create_unreachable(&self, id: u64, node: &str, parent: Option<Address>, type_name: &str, why: &str);
    /// The link to `addr` could not connect or broke (`why`).
    fn unreachable(&self, addr: &str, why: &str);
}
