//! The typed messages of `troupe-bench-plugin`, from the plugin's own source, and how the
//! benchmark sends and reads them.

use troupe_actor_abi::message::{self, Payload};
use troupe_actor_abi::prelude::Typed;

#[path = "../plugin/src/msgs.rs"]
mod shared;
pub use shared::*;

/// A typed message as a payload a client can send.
pub trait Tagged: Typed {
    /// As a payload.
    fn payload(&self) -> Payload {
        Payload::Typed { tag: Self::TAG.into(), body: message::encode(self) }
    }
}
impl<T: Typed> Tagged for T {}

/// Decodes `p` as `T` if its tag says so.
pub fn decode<T: Typed>(p: &Payload) -> Option<T> {
    match p {
        Payload::Typed { tag, body } if tag == T::TAG => message::decode(body).ok(),
        _ => None,
    }
}
