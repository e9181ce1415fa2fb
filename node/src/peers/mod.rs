//! Links to other nodes of the convention: one outgoing connection per peer ([`link`]), each
//! with an outbox of frames not yet written ([`outbox`]).
//!
//! The links reach the node only through [`LinkEvents`]: what could not be delivered, and which
//! peer could not be reached. They hold the node weakly, so a link never keeps it alive.

pub(crate) mod link;
pub(crate) mod outbox;

use std::time::Duration;

use troupe_actor_abi::message::{Address, Incoming};

use crate::wire::ErrorReply;

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

/// Why a call to another node got no answer (or a refusal).
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// The link could not connect, or died before the call was written.
    #[error("{addr} is unreachable ({why})")]
    Unreachable { addr: String, why: String },
    /// The link broke while the call waited.
    #[error("the link to {addr} broke: {why}")]
    Broke { addr: String, why: String },
    /// The link was dropped while the call waited.
    #[error("the link to {addr} closed")]
    Closed { addr: String },
    /// This node dropped the link while the call waited (`why`: the peer left the convention
    /// or was declared lost; see [`Peers::forget`]).
    #[error("the link to {addr} was dropped: {why}")]
    Dropped { addr: String, why: String },
    /// No answer in time; `busy`: bytes from the peer kept arriving on the link meanwhile (its
    /// answers to earlier calls), so it is alive, only busy.
    #[error("{addr} did not answer within {after:?}{}", busy_note(*.busy))]
    Timeout { addr: String, after: Duration, busy: bool },
    /// The peer answered with a refusal.
    #[error("{}", .0.message)]
    Refused(ErrorReply),
}

/// What a timeout adds when the peer was busy.
fn busy_note(busy: bool) -> &'static str {
    if busy {
        " (it was busy sending earlier answers on the same link)"
    } else {
        ""
    }
}

impl LinkError {
    /// Whether the peer was heard from while the call waited: a timeout of a busy peer is no
    /// sign that it is gone.
    pub(crate) fn peer_was_busy(&self) -> bool {
        matches!(self, LinkError::Timeout { busy: true, .. })
    }
}

#[cfg(test)]
mod tests;
