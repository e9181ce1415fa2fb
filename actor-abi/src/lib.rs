//! # troupe-actor-abi
//!
//! The contract between a Troupe node and the actor plugins it loads, and the SDK plugins are
//! written with. Small on purpose and versioned on its own (like `nextest-metadata` beside
//! nextest): a node and a plugin built from different releases of this crate work together as
//! long as [`abi::ABI_VERSION`] and [`abi::MSG_SCHEMA`] match.
//!
//! - [`abi`]: the raw `#[repr(C)]` plugin root and host API table (what the node reads);
//! - [`caps`]: capabilities with values and the requirements matched against them;
//! - [`message`]: the msgpack message shapes (addresses, payloads, system messages);
//! - [`restart`]: supervision's restart policy and the node's floor and cap on its waits;
//! - [`sdk`]: the safe actor trait, context and [`export_plugin!`] macro (what plugins use).
//!
//! No tokio, no threads: everything here runs on whatever thread the node calls from.

pub mod abi;
pub mod caps;
pub mod message;
pub mod restart;
pub mod sdk;

/// `rustc --version` of the build, recorded in every plugin root for diagnostics.
/// ```
/// assert!(troupe_actor_abi::RUSTC_VERSION.starts_with("rustc"));
/// ```
pub const RUSTC_VERSION: &str = env!("TROUPE_RUSTC_VERSION");

/// Everything a plugin author needs in scope.
/// ```
/// use troupe_actor_abi::prelude::*;
///
/// struct Hello;
/// impl Actor for Hello {
///     fn create(_ctx: &mut Context) -> ActorResult<Self> {
///         Ok(Hello)
///     }
///     fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
///         if let (Some(from), Some(name)) = (msg.sender().cloned(), msg.text()) {
///             ctx.send(&from, format!("hello, {name}"));
///         }
///         Ok(())
///     }
/// }
/// troupe_actor_abi::export_plugin!(actors: ["hello.Greeter" => Hello]);
/// # fn main() {}
/// ```
pub mod prelude {
    pub use crate::abi::log_level;
    pub use crate::message::{
        Address, ConventionChange, CreateError, CreateSpec, ExitReason, Payload, RestartPolicy, SystemCall,
        SystemMessage, VersionIdentity,
    };
    pub use crate::sdk::{
        decode_payload, Actor, ActorError, ActorResult, Context, IntoPayload, Message, RequestId, State,
        Typed, Upgrade,
    };
}
