//! The `extern "C"` entry points a plugin root points at, and the type erasure behind them.
//!
//! [`export_plugin!`](crate::export_plugin) fills the root with these (through small
//! per-plugin shims for the three that need the plugin's own constructor table, importer table
//! and unload hook).
//! Each runs its body inside [`guarded`], so a panic or an error becomes a status and a message
//! for the node, never an unwind across the boundary. Not for plugin authors: everything public
//! here is `#[doc(hidden)]` and only public so the macro can name it.

use crate::abi::{self, HostApi, OutSink, RawStr, Status};
use crate::message::{self, Incoming, Migration, Payload, SystemMessage};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Actor, ActorResult, Context, Message, State, Upgrade, HOST};

/// The object the node holds (opaquely) for each actor.
#[doc(hidden)]
pub trait ErasedActor {
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult;
    fn export_state(&self) -> Option<ActorResult<State>>;
    fn status(&self) -> Vec<(String, String)>;
}
impl<A: Actor> ErasedActor for A {
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        Actor::receive(self, ctx, msg)
    }
    fn export_state(&self) -> Option<ActorResult<State>> {
        Actor::export_state(self)
    }
    fn status(&self) -> Vec<(String, String)> {
        Actor::status(self)
    }
}

/// What the node holds (opaquely) for each actor: the actor and what the SDK counts for its
/// status. Private to the plugin, like the actor itself.
pub(super) struct Slot {
    actor: Box<dyn ErasedActor>,
    type_name: String,
    /// Messages handed to the actor's handler (status requests excluded).
    handled: u64,
    born: Instant,
}

impl Slot {
    /// The answer to a `StatusRequest` (`mailbox` as the node filled it in).
    pub(super) fn status(&self, mailbox: Option<u64>) -> SystemMessage {
        SystemMessage::ActorStatus {
            type_name: self.type_name.clone(),
            handled: self.handled,
            mailbox: mailbox.unwrap_or(0),
            age_ms: u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX),
            extra: self.actor.status(),
        }
    }
}

/// Boxes a freshly created actor; used by [`export_plugin!`](crate::export_plugin).
#[doc(hidden)]
pub fn __construct<A: Actor>(ctx: &mut Context) -> ActorResult<Box<dyn ErasedActor>> {
    Ok(Box::new(A::create(ctx)?))
}

/// The constructor table an exported plugin provides.
#[doc(hidden)]
pub type Constructor = fn(&str, &mut Context) -> Option<ActorResult<Box<dyn ErasedActor>>>;

/// Boxes an actor built from another version's state; used by
/// [`export_plugin!`](crate::export_plugin).
#[doc(hidden)]
pub fn __import<A: Actor>(ctx: &mut Context, from: Upgrade) -> ActorResult<Box<dyn ErasedActor>> {
    Ok(Box::new(A::import_state(ctx, from)?))
}

/// The importer table an exported plugin provides: like [`Constructor`], `None` for a type the
/// plugin does not export.
#[doc(hidden)]
pub type Importer = fn(&str, &mut Context, Upgrade) -> Option<ActorResult<Box<dyn ErasedActor>>>;

pub(super) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

/// Runs `f`, turning a panic into `STATUS_PANIC` with its message in `err`.
pub(super) fn guarded(err: OutSink, f: impl FnOnce() -> Result<(), (Status, String)>) -> Status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => abi::STATUS_OK,
        Ok(Err((st, m))) => {
            err.write_bytes(m.as_bytes());
            st
        }
        Err(p) => {
            // Formatting the message cannot unwind past here: it is plain string work.
            err.write_bytes(panic_message(p).as_bytes());
            abi::STATUS_PANIC
        }
    }
}

#[doc(hidden)]
pub unsafe extern "C" fn __init(host: *const HostApi, err: OutSink) -> Status {
    guarded(err, || {
        // SAFETY: the node passes a pointer to its own table, valid for the process lifetime.
        let size = unsafe { host.as_ref() }.map(|h| h.size as usize).unwrap_or(0);
        if size < std::mem::size_of::<HostApi>() {
            return Err((abi::STATUS_ERROR, format!("host API table too small ({size} bytes)")));
        }
        HOST.store(host as *mut HostApi, Ordering::Release);
        // A silent hook: no output from our own std copy and, above all, no backtrace capture.
        std::panic::set_hook(Box::new(|_| {}));
        Ok(())
    })
}

/// The type name the node passed, as text.
///
/// # Safety
/// `type_name` must be valid for `'a` (the node's contract: for the call).
unsafe fn type_name_of<'a>(type_name: RawStr) -> Result<&'a str, (Status, String)> {
    // SAFETY: guaranteed by the caller.
    let name = unsafe { type_name.as_bytes() };
    std::str::from_utf8(name).map_err(|_| (abi::STATUS_BAD_INPUT, "type name is not UTF-8".into()))
}

/// Hands a constructor's or importer's result to the node: the boxed actor in `*out_actor`,
/// or the status and message of why there is none.
///
/// # Safety
/// `out_actor` must be valid for a write (the node's contract: for the call).
unsafe fn deliver(
    name: &str,
    made: Option<ActorResult<Box<dyn ErasedActor>>>,
    out_actor: *mut *mut c_void,
) -> Result<(), (Status, String)> {
    match made {
        None => Err((abi::STATUS_UNKNOWN_TYPE, format!("this plugin exports no actor type {name}"))),
        Some(Err(e)) => Err((abi::STATUS_ERROR, e.0)),
        Some(Ok(actor)) => {
            let slot =
                Box::new(Slot { actor, type_name: name.to_string(), handled: 0, born: Instant::now() });
            // SAFETY: guaranteed by the caller.
            unsafe { *out_actor = Box::into_raw(slot) as *mut c_void };
            Ok(())
        }
    }
}

#[doc(hidden)]
pub unsafe fn __new_actor(
    call: *mut c_void,
    type_name: RawStr,
    out_actor: *mut *mut c_void,
    err: OutSink,
    constructors: Constructor,
) -> Status {
    guarded(err, || {
        // SAFETY: the node passes a (ptr, len) valid for this call.
        let name = unsafe { type_name_of(type_name) }?;
        let mut ctx = Context::new(call);
        let made = constructors(name, &mut ctx);
        // SAFETY: the node passes a valid out pointer for this call.
        unsafe { deliver(name, made, out_actor) }
    })
}

#[doc(hidden)]
pub unsafe extern "C" fn __handle(
    actor: *mut c_void,
    call: *mut c_void,
    msg: RawStr,
    err: OutSink,
) -> Status {
    guarded(err, || {
        // SAFETY: `actor` came from `__new_actor` or `__import_actor_with` and has not been
        // dropped (the node's contract); the node calls one actor from one thread at a time.
        let slot = unsafe { &mut *(actor as *mut Slot) };
        // SAFETY: (ptr, len) valid for this call.
        let bytes = unsafe { msg.as_bytes() };
        let incoming: Incoming = message::decode(bytes)
            .map_err(|e| (abi::STATUS_BAD_INPUT, format!("undecodable message: {e}")))?;
        let mut ctx = Context::new(call);
        if let Payload::System(SystemMessage::StatusRequest { mailbox }) = incoming.payload {
            // Answered here: the actor adds to it through `Actor::status`, its handler never
            // sees the request.
            if let Some(to) = incoming.sender {
                let status = slot.status(mailbox);
                ctx.send(&to, Payload::System(status));
            }
            return Ok(());
        }
        slot.handled += 1;
        slot.actor
            .receive(&mut ctx, Message { sender: incoming.sender, payload: incoming.payload })
            .map_err(|e| (abi::STATUS_ERROR, e.0))
    })
}

#[doc(hidden)]
pub unsafe extern "C" fn __drop_actor(actor: *mut c_void, err: OutSink) -> Status {
    guarded(err, || {
        // SAFETY: `actor` came from `__new_actor` or `__import_actor_with`; the node drops each
        // actor exactly once.
        drop(unsafe { Box::from_raw(actor as *mut Slot) });
        Ok(())
    })
}

#[doc(hidden)]
pub unsafe fn __on_unload(err: OutSink, user: Option<fn()>) -> Status {
    guarded(err, || {
        if let Some(f) = user {
            f();
        }
        // Drop our boxed hook (restoring std's default one) and forget the host table.
        let _ = std::panic::take_hook();
        HOST.store(std::ptr::null_mut(), Ordering::Release);
        Ok(())
    })
}

/// Live upgrade, old side: the actor's [`State`] as msgpack
/// [`MigratedState`](crate::message::MigratedState) in `out`, or `STATUS_UNSUPPORTED` when it
/// does not opt in. Takes the actor by shared reference: it is left as it was.
#[doc(hidden)]
pub unsafe extern "C" fn __export_state(
    actor: *mut c_void,
    _call: *mut c_void,
    out: OutSink,
    err: OutSink,
) -> Status {
    guarded(err, || {
        // SAFETY: `actor` came from `__new_actor` or `__import_actor_with` and has not been
        // dropped; the node calls one actor from one thread at a time.
        let slot = unsafe { &*(actor as *const Slot) };
        match slot.actor.export_state() {
            None => Err((abi::STATUS_UNSUPPORTED, "this actor does not export its state".into())),
            Some(Err(e)) => Err((abi::STATUS_ERROR, e.0)),
            Some(Ok(state)) => {
                out.write_bytes(&message::encode(&state.into_migrated()));
                Ok(())
            }
        }
    })
}

/// Live upgrade, new side: decodes the [`Migration`] and builds the actor with the plugin's
/// importer table, as [`__new_actor`] does with its constructors.
#[doc(hidden)]
pub unsafe fn __import_actor_with(
    call: *mut c_void,
    type_name: RawStr,
    from: RawStr,
    out_actor: *mut *mut c_void,
    err: OutSink,
    importers: Importer,
) -> Status {
    guarded(err, || {
        // SAFETY: the node passes (ptr, len) pairs valid for this call.
        let (name, bytes) = unsafe { (type_name_of(type_name)?, from.as_bytes()) };
        let migration: Migration = message::decode(bytes)
            .map_err(|e| (abi::STATUS_BAD_INPUT, format!("undecodable migration: {e}")))?;
        let mut ctx = Context::new(call);
        let made = importers(name, &mut ctx, Upgrade::new(migration));
        // SAFETY: the node passes a valid out pointer for this call.
        unsafe { deliver(name, made, out_actor) }
    })
}

/// The `import_actor` of a root without an importer table (a root written by hand rather than
/// by [`export_plugin!`](crate::export_plugin)): it imports no type.
#[doc(hidden)]
pub unsafe extern "C" fn __import_actor(
    call: *mut c_void,
    type_name: RawStr,
    from: RawStr,
    out_actor: *mut *mut c_void,
    err: OutSink,
) -> Status {
    fn none(_: &str, _: &mut Context, _: Upgrade) -> Option<ActorResult<Box<dyn ErasedActor>>> {
        None
    }
    // SAFETY: forwarded unchanged from the node.
    unsafe { __import_actor_with(call, type_name, from, out_actor, err, none) }
}
