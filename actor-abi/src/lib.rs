//! # troupe-actor-abi
//!
//! The contract between a Troupe node and the actor plugins it loads, and the SDK plugins are
//! written with. Small on purpose and versioned on its own (like `nextest-metadata` beside
//! nextest): a node and a plugin built from different releases of this crate work together as
//! long as [`abi::ABI_VERSION`] and [`abi::MSG_SCHEMA`] match.
//!
//! - [`abi`]: the raw `#[repr(C)]` plugin root and host API table (what the node reads);
//! - [`message`]: the msgpack message shapes (addresses, payloads, system messages);
//! - [`sdk`]: the safe actor trait, context and [`export_plugin!`] macro (what plugins use).
//!
//! No tokio, no threads: everything here runs on whatever thread the node calls from.

pub mod abi;
pub mod message;
pub mod sdk;

/// `rustc --version` of the build, recorded in every plugin root for diagnostics.
pub const RUSTC_VERSION: &str = env!("TROUPE_RUSTC_VERSION");

/// Everything a plugin author needs in scope.
pub mod prelude {
    pub use crate::abi::log_level;
    pub use crate::message::{
        Address, ConventionChange, CreateError, CreateSpec, ExitReason, Payload, SystemMessage,
    };
    pub use crate::sdk::{
        decode_payload, Actor, ActorError, ActorResult, Context, IntoPayload, Message, Typed,
    };
}
