//! The host's leaf types: the commands a version's executor runs, the messages it hands to
//! plugins, and its counters. They name nothing else of the host, so the pool, the worker and
//! the node's effects can all use them without an import cycle.

use std::sync::atomic::AtomicU64;

use troupe_actor_abi::message::{self, Incoming, Payload};

/// Per-version message counters (for metrics): queued minus handled is the mailbox depth.
#[derive(Default)]
pub struct VersionStats {
    /// Messages queued to the version's actors.
    pub enqueued: AtomicU64,
    /// Messages its actors handled.
    pub handled: AtomicU64,
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
