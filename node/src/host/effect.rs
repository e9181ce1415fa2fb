//! What passes between the node and a version's executor: the commands it runs, the messages
//! it hands to plugins, the effects a plugin call asks for, and the handle the node keeps to
//! reach a running version.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use troupe_actor_abi::message::{self, Address, CreateSpec, Incoming, Payload};

use super::pool::Pool;
use crate::model::placement::Plan;

/// Per-version message counters (for metrics): queued minus handled is the mailbox depth.
#[derive(Default)]
pub struct VersionStats {
    /// Messages queued to the version's actors.
    pub enqueued: AtomicU64,
    /// Messages its actors handled.
    pub handled: AtomicU64,
}

/// How the node reaches a running version: its run queue and its counters. Each of the
/// version's actors keeps a copy, so that routing a message needs only the actor table; one
/// pointer, so that costs an actor 8 bytes.
#[derive(Clone)]
pub(crate) struct HostHandle(Arc<Pool>);

impl HostHandle {
    /// A handle on `pool`.
    pub(crate) fn new(pool: Arc<Pool>) -> HostHandle {
        HostHandle(pool)
    }

    /// The run queue itself (a moved actor's old version forwards to it).
    pub(crate) fn pool(&self) -> Arc<Pool> {
        self.0.clone()
    }
}

impl std::ops::Deref for HostHandle {
    type Target = Pool;
    fn deref(&self) -> &Pool {
        &self.0
    }
}

/// Work for a version's executor.
pub(crate) enum Cmd {
    /// Construct actor `id` of `type_name`.
    Create { id: u64, type_name: String },
    /// Hand `msg` to actor `id`.
    Deliver { id: u64, msg: Delivery },
    /// No actors are left: run `on_unload` and stop.
    Retire,
}

/// A message on its way to a plugin actor.
pub(crate) enum Delivery {
    /// Decoded (runtime messages, and anything from a client or a peer).
    Msg(Incoming),
    /// The msgpack of an [`Incoming`] with a text or typed payload, as spliced together from a
    /// plugin's send: handed to the receiving plugin as it is, never decoded by the node.
    Raw(Vec<u8>),
}

impl Delivery {
    /// The decoded message, for the rare paths that need one (buffering, clients, poison).
    pub(crate) fn into_incoming(self) -> Incoming {
        match self {
            Delivery::Msg(m) => m,
            // Raw bytes are only made by `host_send` from a payload that was read once and by
            // `incoming_bytes`; they always decode. Should they not, the message is replaced by
            // a text saying so rather than lost silently.
            Delivery::Raw(b) => message::decode(&b).unwrap_or_else(|e| Incoming {
                sender: None,
                payload: Payload::Text(format!("troupe: undecodable message ({e})")),
            }),
        }
    }
}

impl From<Incoming> for Delivery {
    fn from(m: Incoming) -> Delivery {
        Delivery::Msg(m)
    }
}

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
