//! The `extern "C"` entry points a plugin root points at, and the type erasure behind them.
//!
//! [`export_plugin!`](crate::export_plugin) fills the root with these (through small
//! per-plugin shims for the two that need the plugin's own constructor table and unload hook).
//! Each runs its body inside [`guarded`], so a panic or an error becomes a status and a message
//! for the node, never an unwind across the boundary. Not for plugin authors: everything public
//! here is `#[doc(hidden)]` and only public so the macro can name it.

use crate::abi::{self, HostApi, OutSink, RawStr, Status};
use crate::message::{self, Incoming};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use super::{Actor, ActorResult, Context, Message, HOST};

/// The object the node holds (opaquely) for each actor.
#[doc(hidden)]
pub trait ErasedActor {
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult;
}
impl<A: Actor> ErasedActor for A {
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        Actor::receive(self, ctx, msg)
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
        let name = unsafe { type_name.as_bytes() };
        let name = std::str::from_utf8(name)
            .map_err(|_| (abi::STATUS_BAD_INPUT, "type name is not UTF-8".into()))?;
        let mut ctx = Context::new(call);
        match constructors(name, &mut ctx) {
            None => Err((abi::STATUS_UNKNOWN_TYPE, format!("this plugin exports no actor type {name}"))),
            Some(Err(e)) => Err((abi::STATUS_ERROR, e.0)),
            Some(Ok(actor)) => {
                let thin: Box<Box<dyn ErasedActor>> = Box::new(actor);
                // SAFETY: the node passes a valid out pointer for this call.
                unsafe { *out_actor = Box::into_raw(thin) as *mut c_void };
                Ok(())
            }
        }
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
        // SAFETY: `actor` came from `__new_actor` and has not been dropped (the node's
        // contract); the node calls one actor from one thread at a time.
        let actor = unsafe { &mut *(actor as *mut Box<dyn ErasedActor>) };
        // SAFETY: (ptr, len) valid for this call.
        let bytes = unsafe { msg.as_bytes() };
        let incoming: Incoming = message::decode(bytes)
            .map_err(|e| (abi::STATUS_BAD_INPUT, format!("undecodable message: {e}")))?;
        let mut ctx = Context::new(call);
        actor
            .receive(&mut ctx, Message { sender: incoming.sender, payload: incoming.payload })
            .map_err(|e| (abi::STATUS_ERROR, e.0))
    })
}

#[doc(hidden)]
pub unsafe extern "C" fn __drop_actor(actor: *mut c_void, err: OutSink) -> Status {
    guarded(err, || {
        // SAFETY: `actor` came from `__new_actor`; the node drops each actor exactly once.
        drop(unsafe { Box::from_raw(actor as *mut Box<dyn ErasedActor>) });
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

#[doc(hidden)]
pub unsafe extern "C" fn __export_state(
    _actor: *mut c_void,
    _call: *mut c_void,
    _out: OutSink,
    err: OutSink,
) -> Status {
    guarded(err, || Err((abi::STATUS_UNSUPPORTED, "this actor does not export its state".into())))
}

#[doc(hidden)]
pub unsafe extern "C" fn __import_actor(
    _call: *mut c_void,
    type_name: RawStr,
    _from: RawStr,
    _out_actor: *mut *mut c_void,
    err: OutSink,
) -> Status {
    guarded(err, || {
        // SAFETY: the node passes a (ptr, len) valid for this call.
        let name = String::from_utf8_lossy(unsafe { type_name.as_bytes() }).into_owned();
        Err((abi::STATUS_UNSUPPORTED, format!("{name} does not import state")))
    })
}
