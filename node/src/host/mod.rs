//! Version hosts: the threads that own a loaded version and are the only ones to run its code.
//!
//! - [`executor`]: starts a version: its first thread copies and opens its libraries;
//! - [`pool`]: the version's run queue (one mailbox per actor) and its threads' count;
//! - [`worker`]: what each of the version's threads runs: an actor's turn at a time;
//! - [`closer`]: joins every thread of a finished version, then dlcloses and frees the copies;
//! - [`migrate`]: live upgrade: an actor's state leaves one version for another;
//! - [`host_api`]: the function table plugins call back into during a call.
//! - [`effect`]: the effects a plugin call asks for, and the names the node uses for what
//!   passes between it and an executor;
//! - [`types`]: the leaf types: commands, deliveries, per-version counters.
//! - [`plugin`]: opening a cdylib and checking its root before any plugin code runs.
//!
//! The host reaches the rest of the node only through [`NodeSeam`], which the runtime
//! implements: routing, creates and exits, and the end of a version. No plugin code ever runs
//! on the node's tokio workers.

pub(crate) mod closer;
pub(crate) mod effect;
pub(crate) mod executor;
pub(crate) mod host_api;
pub(crate) mod migrate;
pub mod plugin;
pub(crate) mod pool;
pub(crate) mod pthread_keys;
pub(crate) mod types;
pub(crate) mod worker;

use std::time::Duration;

use troupe_actor_abi::message::{Address, CallInfo, CreateError, CreateSpec, Incoming};

use effect::{Effect, LocalQueue};

/// How a version host ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VersionEnd {
    /// Its libraries are closed and their copies freed (`close_time` after its thread exited),
    /// or it never started.
    Gone { close_time: Duration },
    /// Its `on_unload` hangs, or no thread could be started to close it: it stays mapped.
    Quarantined,
}

/// What a version host needs of the node, between plugin calls (never during one, except
/// [`NodeSeam::create_child`] and [`NodeSeam::call_info`], which plugins call synchronously).
pub(crate) trait NodeSeam: Send + Sync + 'static {
    /// The node's admin address.
    fn addr(&self) -> &str;
    /// A plugin creates a child (inheriting version `inherit` unless the spec names one): its
    /// address now, and the effect that does the work after the call.
    fn create_child(&self, inherit: &str, spec: CreateSpec) -> (Address, Effect);
    /// What the calling actor may know about itself.
    fn call_info(&self, id: u64) -> Option<CallInfo>;
    /// Applies what actor `me` asked for during a call, in order, emptying `effects`.
    fn apply(&self, me: u64, effects: &mut Vec<Effect>, local: &mut LocalQueue<'_>);
    /// Actor `id` handled its exit request and was dropped; `recursive`: its children stop too.
    fn exited(&self, id: u64, recursive: bool, local: &mut LocalQueue<'_>);
    /// Actor `id`'s handler failed twice on one message (already returned to its sender): a
    /// supervised actor is stopped, to be restarted by its parent's node.
    fn failed_twice(&self, id: u64, details: &str, local: &mut LocalQueue<'_>);
    /// Actor `id` could not be constructed.
    fn create_failed(&self, id: u64, error: CreateError);
    /// A message for an actor this version does not have: back to its sender with the reason.
    fn undeliverable(&self, id: u64, msg: Incoming);
    /// A message the actor failed to handle twice: back to its sender.
    fn poison(&self, msg: Incoming, target: Address, details: String);
    /// Writes the peer frames the executor's calls queued.
    fn uncork(&self, corked: &mut crate::peers::Corked);
    /// The version's host has ended.
    fn version_ended(&self, hash: &str, gen: u64, end: VersionEnd);
    /// Live upgrade: actor `id` now runs on generation `gen` (`hash`, as `type_name`, reached
    /// through `host`); its count moves with its record in the actor table.
    fn moved(&self, id: u64, gen: u64, hash: &str, type_name: &str, host: effect::HostHandle);
    /// Live upgrade: the old state of actor `id` was dropped by generation `gen`.
    fn moved_out(&self, id: u64, gen: u64);
}
