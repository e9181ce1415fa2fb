//! The host API table handed to plugins: the functions a plugin calls back into during one of
//! its calls (send, create, exit, wake-up, log, info, register as authority). Each records an
//! [`Effect`] on the call's context; the executor applies them after the call returns.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use troupe_actor_abi::abi::{self, HostApi, OutSink, RawStr, Status};
use troupe_actor_abi::message::{self, Address, AddressRef, CreateSpec, Payload, PayloadRef};

use super::effect::{Dest, Effect};
use super::NodeSeam;

/// The node's context for one plugin call, passed to the plugin as the opaque `call` pointer.
pub(super) struct CallCtx<'a> {
    node: &'a dyn NodeSeam,
    /// The calling actor's id.
    me: u64,
    /// The calling actor's address as msgpack, made at its first send of the call.
    me_bytes: Option<Vec<u8>>,
    /// The calling actor's version (children inherit it).
    hash: &'a str,
    pub(super) effects: Vec<Effect>,
}

impl<'a> CallCtx<'a> {
    pub(super) fn new(node: &'a dyn NodeSeam, me: u64, hash: &'a str, effects: Vec<Effect>) -> Self {
        CallCtx { node, me, me_bytes: None, hash, effects }
    }
}

/// The node's function table. A static in the node binary, which is never unloaded, so plugins
/// may keep pointers to it.
pub(crate) static HOST_API: HostApi = HostApi {
    size: std::mem::size_of::<HostApi>() as u32,
    send: host_send,
    create: host_create,
    exit_self: host_exit_self,
    wakeup: host_wakeup,
    log: host_log,
    info: host_info,
    register_authority: host_register_authority,
};

/// Runs `f` on the call context, refusing a null context and never letting a panic unwind into
/// the plugin.
fn with_ctx(call: *mut c_void, f: impl FnOnce(&mut CallCtx) -> Status) -> Status {
    if call.is_null() {
        return abi::STATUS_BAD_INPUT;
    }
    // SAFETY: the plugin passes back the `call` pointer the node handed it for the current call,
    // on the same thread, while that call is running; it points to a live CallCtx.
    let ctx = unsafe { &mut *(call as *mut CallCtx) };
    catch_unwind(AssertUnwindSafe(|| f(ctx))).unwrap_or(abi::STATUS_ERROR)
}

unsafe extern "C" fn host_send(call: *mut c_void, to: RawStr, msg: RawStr) -> Status {
    with_ctx(call, |ctx| {
        // SAFETY: the plugin passes slices valid for this call.
        let (to, msg) = unsafe { (to.as_bytes(), msg.as_bytes()) };
        // The fast path: a text or typed message is read in place (no copy), checked, and
        // copied once into the bytes the receiver will be handed.
        if let (Ok(addr), Ok(PayloadRef::Text(_) | PayloadRef::Typed { .. })) =
            (message::decode::<AddressRef>(to), message::decode::<PayloadRef>(msg))
        {
            let dest =
                if addr.node == ctx.node.addr() { Dest::Here(addr.id) } else { Dest::Peer(addr.to_owned()) };
            let me = ctx.me;
            let sender = ctx.me_bytes.get_or_insert_with(|| {
                message::encode(&Address { node: ctx.node.addr().to_string(), id: me })
            });
            let bytes = message::incoming_bytes(Some(sender), msg);
            ctx.effects.push(Effect::SendRaw { to: dest, bytes });
            return abi::STATUS_OK;
        }
        match (message::decode::<Address>(to), message::decode::<Payload>(msg)) {
            (Ok(to), Ok(payload)) => {
                ctx.effects.push(Effect::Send { to, payload });
                abi::STATUS_OK
            }
            _ => abi::STATUS_BAD_INPUT,
        }
    })
}

unsafe extern "C" fn host_create(call: *mut c_void, spec: RawStr, out: OutSink) -> Status {
    with_ctx(call, |ctx| {
        // SAFETY: valid for this call.
        let spec = unsafe { spec.as_bytes() };
        match message::decode::<CreateSpec>(spec) {
            Ok(spec) => {
                let (addr, effect) = ctx.node.create_child(ctx.hash, spec);
                out.write_bytes(&message::encode(&addr));
                ctx.effects.push(effect);
                abi::STATUS_OK
            }
            Err(e) => {
                out.write_bytes(format!("bad create spec: {e}").as_bytes());
                abi::STATUS_BAD_INPUT
            }
        }
    })
}

unsafe extern "C" fn host_exit_self(call: *mut c_void) -> Status {
    with_ctx(call, |ctx| {
        ctx.effects.push(Effect::ExitSelf);
        abi::STATUS_OK
    })
}

unsafe extern "C" fn host_wakeup(call: *mut c_void, delay_ms: u64, payload: RawStr) -> Status {
    with_ctx(call, |ctx| {
        // SAFETY: valid for this call.
        let bytes = unsafe { payload.as_bytes() };
        let payload = if bytes.is_empty() {
            None
        } else {
            match message::decode::<Payload>(bytes) {
                Ok(p) => Some(p),
                Err(_) => return abi::STATUS_BAD_INPUT,
            }
        };
        ctx.effects.push(Effect::Wakeup { delay_ms, payload });
        abi::STATUS_OK
    })
}

unsafe extern "C" fn host_log(call: *mut c_void, level: u32, text: RawStr) {
    // SAFETY: valid for this call.
    let text = String::from_utf8_lossy(unsafe { text.as_bytes() }).into_owned();
    let who = if call.is_null() {
        String::from("plugin")
    } else {
        // SAFETY: as in `with_ctx`.
        let ctx = unsafe { &*(call as *const CallCtx) };
        Address { node: ctx.node.addr().to_string(), id: ctx.me }.to_string()
    };
    let _ = catch_unwind(|| match level {
        abi::log_level::ERROR => tracing::error!(actor = %who, "{text}"),
        abi::log_level::WARN => tracing::warn!(actor = %who, "{text}"),
        abi::log_level::INFO => tracing::info!(actor = %who, "{text}"),
        _ => tracing::debug!(actor = %who, "{text}"),
    });
}

unsafe extern "C" fn host_info(call: *mut c_void, out: OutSink) -> Status {
    with_ctx(call, |ctx| match ctx.node.call_info(ctx.me) {
        Some(info) => {
            out.write_bytes(&message::encode(&info));
            abi::STATUS_OK
        }
        None => abi::STATUS_ERROR,
    })
}

unsafe extern "C" fn host_register_authority(call: *mut c_void) -> Status {
    with_ctx(call, |ctx| {
        ctx.effects.push(Effect::RegisterAuthority);
        abi::STATUS_OK
    })
}
