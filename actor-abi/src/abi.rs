//! The raw, `#[repr(C)]` contract between a node and a plugin.
//!
//! A plugin exports exactly one data symbol, [`ROOT_SYMBOL`], holding a [`PluginRoot`]. The node
//! reads the root's leading fields (magic, ABI version, size, panic strategy) and copies its
//! strings *without calling any plugin function*; only when they check out does it call
//! [`PluginRoot::init`] with the node's [`HostApi`].
//!
//! Rules every field obeys (see `reference/dylib-unloading.md` §3):
//! - data crosses only as bytes: borrowed `(ptr, len)` inputs valid for one call, and outputs
//!   pushed through an [`OutSink`] that copies them into node memory during the call;
//! - actor state is opaque and owned by the plugin: only `drop_actor` frees it;
//! - the node never keeps a pointer into plugin memory after a call returns (the root's
//!   strings are copied at load);
//! - fields are only ever appended; `root_size` says which exist.

use std::ffi::c_void;

/// Name of the one exported data symbol (NUL-terminated for `dlsym`).
pub const ROOT_SYMBOL: &[u8] = b"TROUPE_PLUGIN_ROOT_V1\0";

/// First eight bytes of every root: "TROUPE" + ABI generation. Frozen forever, so that any
/// future node can recognise (and refuse) any past plugin.
pub const MAGIC: u64 = u64::from_le_bytes(*b"TROUPE\x00\x01");

/// Version of this contract. The node requires an exact match.
pub const ABI_VERSION: u32 = 1;

/// Version of the message contract (the msgpack shapes in [`crate::message`]).
pub const MSG_SCHEMA: u32 = 1;

/// Status codes returned by every plugin entry point and host function.
pub type Status = i32;
/// The call succeeded.
pub const STATUS_OK: Status = 0;
/// The actor (or host) reported an error; a message was written to the error sink.
pub const STATUS_ERROR: Status = 1;
/// Plugin code panicked; the panic was caught and its message written to the error sink.
pub const STATUS_PANIC: Status = 2;
/// `new_actor` was asked for a type this plugin does not export.
pub const STATUS_UNKNOWN_TYPE: Status = 3;
/// The bytes handed over could not be decoded.
pub const STATUS_BAD_INPUT: Status = 4;
/// The actor does not take part in live upgrade: `export_state` has nothing to give (the
/// actor stays on its version and drains as before).
pub const STATUS_UNSUPPORTED: Status = 5;

/// A borrowed byte string: valid only for the duration of the call it is passed to, or for the
/// library's lifetime when it sits in the root (the node copies those at load).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawStr {
    /// First byte; may dangle when `len` is 0.
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

impl RawStr {
    /// A `RawStr` over a static string, usable in constants.
    pub const fn from_static(s: &'static str) -> RawStr {
        RawStr { ptr: s.as_ptr(), len: s.len() }
    }

    /// A `RawStr` over a borrowed byte slice.
    pub fn from_bytes(b: &[u8]) -> RawStr {
        RawStr { ptr: b.as_ptr(), len: b.len() }
    }

    /// Borrows the bytes.
    ///
    /// # Safety
    /// `ptr` must be valid for `len` bytes for the lifetime `'a`.
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            &[]
        } else {
            // SAFETY: the caller guarantees ptr is valid for len bytes during 'a.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Where a callee writes bytes that the caller keeps: `write` copies `len` bytes from `ptr` into
/// memory owned by whoever made the sink. It may be called several times; writes append.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OutSink {
    /// The sink owner's context (for the node: a `*mut Vec<u8>`).
    pub ctx: *mut c_void,
    /// Appends `len` bytes at `ptr` to the sink.
    pub write: unsafe extern "C" fn(ctx: *mut c_void, ptr: *const u8, len: usize),
}

impl OutSink {
    /// Appends `bytes` to the sink.
    pub fn write_bytes(&self, bytes: &[u8]) {
        // SAFETY: an OutSink is only ever constructed by its owner with a `write` that accepts
        // any (ptr, len) pair valid for reading, which a slice is.
        unsafe { (self.write)(self.ctx, bytes.as_ptr(), bytes.len()) }
    }
}

/// A sink writing into a `Vec<u8>`; what both sides use to build [`OutSink`]s.
///
/// # Safety
/// `ctx` must be a valid `*mut Vec<u8>` and `ptr` valid for `len` bytes.
pub unsafe extern "C" fn vec_sink_write(ctx: *mut c_void, ptr: *const u8, len: usize) {
    // SAFETY: guaranteed by the caller (see above).
    unsafe {
        let v = &mut *(ctx as *mut Vec<u8>);
        v.extend_from_slice(RawStr { ptr, len }.as_bytes());
    }
}

impl OutSink {
    /// A sink appending to `v`; `v` must outlive every use of the sink.
    pub fn for_vec(v: &mut Vec<u8>) -> OutSink {
        OutSink { ctx: v as *mut Vec<u8> as *mut c_void, write: vec_sink_write }
    }
}

/// Log levels for [`HostApi::log`].
/// Plugins pass them to [`Context::log`](crate::sdk::Context::log).
///
/// ```
/// use troupe_actor_abi::prelude::*;
///
/// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
///     let level = if msg.system().is_some() { log_level::DEBUG } else { log_level::INFO };
///     ctx.log(level, "a message");
///     Ok(())
/// }
/// assert!(log_level::ERROR < log_level::WARN && log_level::INFO < log_level::DEBUG);
/// ```
pub mod log_level {
    /// Errors.
    pub const ERROR: u32 = 1;
    /// Warnings.
    pub const WARN: u32 = 2;
    /// Information.
    pub const INFO: u32 = 3;
    /// Debugging detail.
    pub const DEBUG: u32 = 4;
}

/// Functions the node offers to plugin code. Every pointer points into the node, which is never
/// unloaded, so a plugin may keep the table for as long as it is loaded.
///
/// `call` is the node's context for the call in progress (`new_actor` or `handle`); it is valid
/// only during that call, and only on the thread making it. Effects are applied by the node
/// after the call returns, in the order they were requested.
#[repr(C)]
pub struct HostApi {
    /// `size_of::<HostApi>()` as the node built it; fields are only appended.
    pub size: u32,
    /// Sends `msg` (msgpack [`crate::message::Payload`]) to `to` (msgpack
    /// [`crate::message::Address`]).
    pub send: unsafe extern "C" fn(call: *mut c_void, to: RawStr, msg: RawStr) -> Status,
    /// Creates a child from `spec` (msgpack [`crate::message::CreateSpec`]) and writes its
    /// address (msgpack [`crate::message::Address`]) to `out` at once; the actor itself is
    /// created after the call returns, and messages sent to it wait until it exists.
    pub create: unsafe extern "C" fn(call: *mut c_void, spec: RawStr, out: OutSink) -> Status,
    /// Asks the node to stop the calling actor once this call returns (it receives an
    /// `ActorExitRequest` first, like any actor being stopped).
    pub exit_self: unsafe extern "C" fn(call: *mut c_void) -> Status,
    /// Delivers a `Wakeup` carrying `payload` (msgpack [`crate::message::Payload`], may be
    /// empty) to the calling actor after `delay_ms` milliseconds.
    pub wakeup: unsafe extern "C" fn(call: *mut c_void, delay_ms: u64, payload: RawStr) -> Status,
    /// Writes a line to the node's log. `call` may be null (e.g. in `on_unload`).
    pub log: unsafe extern "C" fn(call: *mut c_void, level: u32, text: RawStr),
    /// Writes the calling actor's [`crate::message::CallInfo`] (msgpack) to `out`.
    pub info: unsafe extern "C" fn(call: *mut c_void, out: OutSink) -> Status,
    /// Registers the calling actor as this node's source authority: every later load is sent
    /// to it as a `ValidateSource` message, and it answers with `ValidatedSource`.
    pub register_authority: unsafe extern "C" fn(call: *mut c_void) -> Status,
}

/// One actor type a plugin exports, with the capabilities a node must have to host it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ActorTypeDesc {
    /// `module.Type`.
    pub name: RawStr,
    /// Capability names, all required.
    pub requirements: *const RawStr,
    /// Number of entries at `requirements`.
    pub n_requirements: usize,
}

/// The fields every root starts with, whatever its ABI version. Their offsets never change, so
/// the node can read them from any plugin before trusting the rest.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RootHeader {
    /// Must equal [`MAGIC`].
    pub magic: u64,
    /// Must equal [`ABI_VERSION`].
    pub abi_version: u32,
    /// `size_of::<PluginRoot>()` as the plugin was built.
    pub root_size: u32,
    /// 1 when the plugin was built with `panic = "unwind"`; the node refuses anything else.
    pub panic_unwind: u32,
    /// Version of the message contract the plugin speaks.
    pub msg_schema: u32,
}

/// The plugin root: the one exported data symbol.
#[repr(C)]
pub struct PluginRoot {
    /// Frozen header, see [`RootHeader`].
    pub header: RootHeader,
    /// `rustc --version` of the plugin's build (diagnostics only).
    pub rustc_version: RawStr,
    /// The plugin crate's name.
    pub plugin_name: RawStr,
    /// The plugin crate's version.
    pub plugin_version: RawStr,
    /// The actor types this plugin exports.
    pub actor_types: *const ActorTypeDesc,
    /// Number of entries at `actor_types`.
    pub n_actor_types: usize,
    /// Called once, on the version's own thread, before any other function.
    pub init: unsafe extern "C" fn(host: *const HostApi, err: OutSink) -> Status,
    /// Creates an actor of `type_name`; on success stores its opaque state in `*out_actor`.
    pub new_actor: unsafe extern "C" fn(
        call: *mut c_void,
        type_name: RawStr,
        out_actor: *mut *mut c_void,
        err: OutSink,
    ) -> Status,
    /// Hands one message (msgpack [`crate::message::Incoming`]) to an actor.
    pub handle:
        unsafe extern "C" fn(actor: *mut c_void, call: *mut c_void, msg: RawStr, err: OutSink) -> Status,
    /// Frees an actor's state with the plugin's allocator. The pointer is dead afterwards.
    pub drop_actor: unsafe extern "C" fn(actor: *mut c_void, err: OutSink) -> Status,
    /// Called once after the last actor was dropped and before the library is closed: the
    /// plugin releases everything its statics own.
    pub on_unload: unsafe extern "C" fn(err: OutSink) -> Status,
    /// Live upgrade, old side: writes the actor's state (msgpack
    /// [`crate::message::MigratedState`]) to `out`, leaving the actor as it was (it keeps
    /// running here if the new version refuses the state). [`STATUS_UNSUPPORTED`]: the actor
    /// does not migrate. Called between two messages, on one of the version's threads.
    /// Absent (root smaller than its offset) in plugins built before live upgrade.
    pub export_state:
        unsafe extern "C" fn(actor: *mut c_void, call: *mut c_void, out: OutSink, err: OutSink) -> Status,
    /// Live upgrade, new side: builds an actor of `type_name` from another version's state
    /// (`from`: msgpack [`crate::message::Migration`]) and stores it in `*out_actor`, as
    /// `new_actor` does. `call` is a context like `new_actor`'s.
    pub import_actor: unsafe extern "C" fn(
        call: *mut c_void,
        type_name: RawStr,
        from: RawStr,
        out_actor: *mut *mut c_void,
        err: OutSink,
    ) -> Status,
}

/// The size of a root built before live upgrade (no `export_state`, `import_actor`): the
/// smallest root a node accepts. Such a plugin's actors never migrate.
pub const ROOT_SIZE_BEFORE_UPGRADE: u32 = std::mem::offset_of!(PluginRoot, export_state) as u32;

impl PluginRoot {
    /// Whether a root of `root_size` bytes has the live-upgrade entry points.
    pub fn has_upgrade(root_size: u32) -> bool {
        root_size as usize >= std::mem::size_of::<PluginRoot>()
    }
}

// SAFETY: the root and its tables are immutable data in the plugin image; every pointer in them
// points to other immutable statics of that image. Sharing references across threads is sound.
unsafe impl Sync for PluginRoot {}
// SAFETY: as above; an ActorTypeDesc is immutable static data.
unsafe impl Sync for ActorTypeDesc {}
// SAFETY: a RawStr in a static points to static immutable bytes.
unsafe impl Sync for RawStr {}
// SAFETY: the host API table is immutable after construction and holds only fn pointers.
unsafe impl Sync for HostApi {}
