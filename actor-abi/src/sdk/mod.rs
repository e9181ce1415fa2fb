//! The safe SDK plugin authors write actors with.
//!
//! An actor is a type implementing [`Actor`]; [`export_plugin!`](crate::export_plugin) exports a
//! crate's actor types (with the capabilities each requires) as the plugin root. Inside a
//! handler, the [`Context`] sends messages, creates children, asks for wake-ups, logs through
//! the node and exits.
//!
//! What the SDK does for you, so that the node can really unload your plugin
//! (`reference/dylib-unloading.md` §2–§3):
//! - every entry point runs inside `catch_unwind`; a panic becomes an error status carrying the
//!   panic message, never an unwind across the boundary;
//! - a silent panic hook is installed at init, so a panic never captures a backtrace (which
//!   would map the plugin file and leak that mapping at unload);
//! - everything you hand the node is copied during the call; nothing you allocate is kept;
//! - the SDK itself never touches `std::thread::current`, thread-locals with destructors, or
//!   threads. Your code must not either: no `thread::spawn`, `thread::current`, blocking
//!   `std::sync::mpsc`, `park`, rayon or crossbeam channels, no `#[global_allocator]`, no
//!   `println!` (use [`Context::log`]), and release in [`on_unload`](crate::export_plugin)
//!   anything your statics own.
//!
//! ```
//! use troupe_actor_abi::prelude::*;
//!
//! struct Echo;
//! impl Actor for Echo {
//!     fn create(_ctx: &mut Context) -> ActorResult<Self> {
//!         Ok(Echo)
//!     }
//!     fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
//!         if let (Some(text), Some(from)) = (msg.text(), msg.sender()) {
//!             ctx.send_text(from, &format!("echo: {text}"));
//!         }
//!         Ok(())
//!     }
//! }
//! troupe_actor_abi::export_plugin!(actors: ["demo.Echo" => Echo]);
//! ```
//!
//! The SDK is split by job; the files are private and everything public is re-exported here,
//! so every path stays `troupe_actor_abi::sdk::NAME`:
//! - `actor`: what an author implements and receives ([`Actor`], [`Message`], [`ActorError`]);
//! - `typed`: typed messages and what can be sent ([`Typed`], [`IntoPayload`]);
//! - `context`: the [`Context`] a handler acts through, a thin shell over the node's table;
//! - `upgrade`: live upgrade, what an actor hands its next version ([`State`]) and what that
//!   version builds it from ([`Upgrade`]);
//! - `entry`: the `extern "C"` entry points the plugin root points at, each behind
//!   `catch_unwind`;
//! - `export`: the [`export_plugin!`](crate::export_plugin) macro that builds the root (as a
//!   `#[macro_export]` macro it lives at the crate root whatever its file).

use crate::abi::HostApi;
use std::sync::atomic::{AtomicPtr, Ordering};

mod actor;
mod context;
mod entry;
mod export;
#[cfg(test)]
mod tests;
mod typed;
mod upgrade;

pub use actor::{Actor, ActorError, ActorResult, Message};
pub use context::{Context, RequestId};
#[doc(hidden)]
pub use entry::{
    __construct, __drop_actor, __export_state, __handle, __import, __import_actor, __import_actor_with,
    __init, __new_actor, __on_unload, Constructor, ErasedActor, Importer,
};
pub use typed::{decode_payload, IntoPayload, Typed};
pub use upgrade::{State, Upgrade};

/// The node's function table, set by `init` and cleared by `on_unload`. A plain atomic static:
/// no destructor, no thread-local, nothing that pins the library.
static HOST: AtomicPtr<HostApi> = AtomicPtr::new(std::ptr::null_mut());

fn host() -> Option<&'static HostApi> {
    let p = HOST.load(Ordering::Acquire);
    // SAFETY: HOST is only ever set to the table the node passed to `init`, which lives in the
    // node (never unloaded) for the whole process.
    unsafe { p.as_ref() }
}
