//! Test plugin: a plugin built for another ABI version.
//!
//! It hand-writes the root that `export_plugin!` would generate, valid in every respect (magic,
//! size, panic strategy, message schema, one actor type `bad.Actor`) except `abi_version`,
//! which is 999. A node must refuse it from the header alone, before calling any of its
//! functions; should one be called anyway, it only reports an error.

use std::ffi::c_void;
use troupe_actor_abi::abi::{
    ActorTypeDesc, HostApi, OutSink, PluginRoot, RawStr, RootHeader, Status, MAGIC, MSG_SCHEMA, STATUS_ERROR,
};

/// Not [`troupe_actor_abi::abi::ABI_VERSION`]: the one thing wrong with this plugin.
const WRONG_ABI_VERSION: u32 = 999;

const NOT_CALLABLE: &str = "troupe-test-bad-abi: this plugin must never be called";

const ACTOR_TYPES: &[ActorTypeDesc] = &[ActorTypeDesc {
    name: RawStr::from_static("bad.Actor"),
    requirements: {
        const R: &[RawStr] = &[];
        R.as_ptr()
    },
    n_requirements: 0,
}];

unsafe extern "C" fn init(_host: *const HostApi, err: OutSink) -> Status {
    err.write_bytes(NOT_CALLABLE.as_bytes());
    STATUS_ERROR
}

unsafe extern "C" fn new_actor(
    _call: *mut c_void,
    _type_name: RawStr,
    _out_actor: *mut *mut c_void,
    err: OutSink,
) -> Status {
    err.write_bytes(NOT_CALLABLE.as_bytes());
    STATUS_ERROR
}

unsafe extern "C" fn handle(_actor: *mut c_void, _call: *mut c_void, _msg: RawStr, err: OutSink) -> Status {
    err.write_bytes(NOT_CALLABLE.as_bytes());
    STATUS_ERROR
}

unsafe extern "C" fn drop_actor(_actor: *mut c_void, err: OutSink) -> Status {
    err.write_bytes(NOT_CALLABLE.as_bytes());
    STATUS_ERROR
}

unsafe extern "C" fn on_unload(err: OutSink) -> Status {
    err.write_bytes(NOT_CALLABLE.as_bytes());
    STATUS_ERROR
}

/// The plugin root, as `export_plugin!` writes it but for the ABI version.
#[unsafe(no_mangle)]
pub static TROUPE_PLUGIN_ROOT_V1: PluginRoot = PluginRoot {
    header: RootHeader {
        magic: MAGIC,
        abi_version: WRONG_ABI_VERSION,
        root_size: std::mem::size_of::<PluginRoot>() as u32,
        panic_unwind: cfg!(panic = "unwind") as u32,
        msg_schema: MSG_SCHEMA,
    },
    rustc_version: RawStr::from_static(troupe_actor_abi::RUSTC_VERSION),
    plugin_name: RawStr::from_static(env!("CARGO_PKG_NAME")),
    plugin_version: RawStr::from_static(env!("CARGO_PKG_VERSION")),
    actor_types: ACTOR_TYPES.as_ptr(),
    n_actor_types: ACTOR_TYPES.len(),
    init,
    new_actor,
    handle,
    drop_actor,
    on_unload,
    export_state: troupe_actor_abi::sdk::__export_state,
    import_actor: troupe_actor_abi::sdk::__import_actor,
};
