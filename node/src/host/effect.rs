//! What passes between the node and a version's executor: the effects a plugin call asks for
//! and the queue of a call's local messages; the commands it runs, the messages it hands to
//! plugins and its counters ([`super::types`]) and the handle the node keeps to reach a
//! running version ([`HostHandle`], beside the pool it wraps) are re-exported here.

use std::collections::VecDeque;

use troupe_actor_abi::message::{self, Address, CreateSpec, Incoming, Payload};

// Defined below the pool (so that the pool needs nothing of this module), named here as well,
// where the rest of the node has always found them.
pub(crate) use super::pool::HostHandle;
pub use super::types::VersionStats;
pub(crate) use super::types::{Cmd, Delivery};
use crate::model::placement::Plan;

/// Where a plugin's message goes.
pub(crate) enum Dest {
    /// An actor of this node, by id.
    Here(u64),
    /// An actor elsewhere.
    Peer(Address),
}

/// Something an actor asked for during a call; applied after the call returns, in order.
pub(crate) enum Effect {
    Send {
        to: Address,
        payload: Payload,
    },
    /// A text or typed message, already in its final bytes (see [`Delivery::Raw`]).
    SendRaw {
        to: Dest,
        bytes: Vec<u8>,
    },
    Create {
        id: u64,
        spec: CreateSpec,
        plan: Plan,
        /// Held until its global name is claimed (see `Core::create_held`).
        hold: bool,
    },
    /// A create of a version the directory does not list yet: placed after a refresh.
    CreateLater {
        id: u64,
        spec: CreateSpec,
        inherit: String,
    },
    CreateFailed {
        id: u64,
        error: message::CreateError,
    },
    Nothing,
    ExitSelf,
    Wakeup {
        delay_ms: u64,
        payload: Option<Payload>,
    },
    RegisterAuthority,
}

/// Where a version's executor keeps messages between its own actors.
pub(crate) struct LocalQueue<'a> {
    pub gen: u64,
    pub queue: &'a mut VecDeque<Cmd>,
    /// Peer links with frames queued and not written yet.
    pub corked: crate::peers::Corked,
    /// Messages to clients of this node, not handed to their connections yet (in order).
    pub clients: Vec<ClientSend>,
}

/// A message to a client connection of this node, held back with the executor's peer frames.
pub(crate) type ClientSend = (tokio::sync::mpsc::UnboundedSender<Incoming>, Incoming);
