//! The [`export_plugin!`](crate::export_plugin) macro: it turns a list of actor types into the
//! `TROUPE_PLUGIN_ROOT_V1` static the node reads.
//!
//! As a `#[macro_export]` macro it is exported at the crate root (`troupe_actor_abi::
//! export_plugin!`), not from this module. It reaches the SDK only through `$crate::abi` and
//! `$crate::sdk` paths, so those re-exports are part of its contract.

/// Exports a crate's actor types as a Troupe plugin. Use it once, in a `cdylib` crate built
/// with `panic = "unwind"` (the default).
///
/// Each entry is `"module.Type" => RustType`, optionally followed by `requires [..]`: the
/// capabilities a node must have to host that type. Type names are ASCII letters, digits and
/// `_` on each side of one dot. `on_unload` (optional) is called once, after the last actor of
/// the version was dropped and before the library is closed: release there anything your
/// statics own (caches, registries), so that nothing outlives the library.
///
/// The same list serves live upgrade: the root's `export_state` asks an actor for
/// [`Actor::export_state`](crate::sdk::Actor::export_state), and an actor of another version
/// that moves to `"module.Type"` is built with `RustType::import_state`.
///
/// ```
/// use std::sync::Mutex;
/// use troupe_actor_abi::prelude::*;
///
/// struct Encoder;
/// impl Actor for Encoder {
///     fn create(_ctx: &mut Context) -> ActorResult<Self> {
///         Ok(Encoder)
///     }
///     fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
///         if let (Some(from), Some(text)) = (msg.sender().cloned(), msg.text()) {
///             CACHE.lock().map_err(|_| ActorError::msg("cache poisoned"))?.push(text.to_string());
///             ctx.send(&from, text.to_uppercase());
///         }
///         Ok(())
///     }
/// }
/// struct Base64Encoder;
/// impl Actor for Base64Encoder {
///     fn create(_ctx: &mut Context) -> ActorResult<Self> {
///         Ok(Base64Encoder)
///     }
///     fn receive(&mut self, _ctx: &mut Context, _msg: Message) -> ActorResult {
///         Ok(())
///     }
/// }
///
/// /// A static that owns heap memory: emptied in `on_unload`.
/// static CACHE: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// fn clear_caches() {
///     if let Ok(mut c) = CACHE.lock() {
///         *c = Vec::new();
///     }
/// }
///
/// troupe_actor_abi::export_plugin!(
///     actors: [
///         "encoder.Encoder" => Encoder,
///         "encoder.Base64Encoder" => Base64Encoder requires ["64bit encoder"],
///     ],
///     on_unload: clear_caches, // optional: fn() releasing what your statics own
/// );
///
/// // The root the node reads: two actor types, built to unwind.
/// fn main() {
///     assert_eq!(TROUPE_PLUGIN_ROOT_V1.n_actor_types, 2);
///     assert_eq!(TROUPE_PLUGIN_ROOT_V1.header.panic_unwind, 1);
/// }
/// ```
#[macro_export]
macro_rules! export_plugin {
    (actors: [ $( $name:literal => $ty:ident $( requires [ $($req:literal),* $(,)? ] )? ),* $(,)? ] $(, on_unload: $unload:path)? $(,)?) => {
        const __TROUPE_ACTOR_TYPES: &[$crate::abi::ActorTypeDesc] = &[
            $( $crate::abi::ActorTypeDesc {
                name: $crate::abi::RawStr::from_static($name),
                requirements: {
                    const R: &[$crate::abi::RawStr] = &[ $( $( $crate::abi::RawStr::from_static($req) ),* )? ];
                    R.as_ptr()
                },
                n_requirements: {
                    const R: &[&str] = &[ $( $( $req ),* )? ];
                    R.len()
                },
            } ),*
        ];

        fn __troupe_constructors(
            name: &str,
            ctx: &mut $crate::sdk::Context,
        ) -> ::core::option::Option<$crate::sdk::ActorResult<::std::boxed::Box<dyn $crate::sdk::ErasedActor>>> {
            match name {
                $( $name => ::core::option::Option::Some($crate::sdk::__construct::<$ty>(ctx)), )*
                _ => ::core::option::Option::None,
            }
        }

        unsafe extern "C" fn __troupe_new_actor(
            call: *mut ::std::ffi::c_void,
            type_name: $crate::abi::RawStr,
            out_actor: *mut *mut ::std::ffi::c_void,
            err: $crate::abi::OutSink,
        ) -> $crate::abi::Status {
            // SAFETY: forwarded unchanged from the node, which upholds the entry point's contract.
            unsafe { $crate::sdk::__new_actor(call, type_name, out_actor, err, __troupe_constructors) }
        }

        #[allow(unused_variables)]
        fn __troupe_importers(
            name: &str,
            ctx: &mut $crate::sdk::Context,
            upgrade: $crate::sdk::Upgrade,
        ) -> ::core::option::Option<$crate::sdk::ActorResult<::std::boxed::Box<dyn $crate::sdk::ErasedActor>>> {
            match name {
                $( $name => ::core::option::Option::Some($crate::sdk::__import::<$ty>(ctx, upgrade)), )*
                _ => ::core::option::Option::None,
            }
        }

        unsafe extern "C" fn __troupe_import_actor(
            call: *mut ::std::ffi::c_void,
            type_name: $crate::abi::RawStr,
            from: $crate::abi::RawStr,
            out_actor: *mut *mut ::std::ffi::c_void,
            err: $crate::abi::OutSink,
        ) -> $crate::abi::Status {
            // SAFETY: forwarded unchanged from the node, which upholds the entry point's contract.
            unsafe { $crate::sdk::__import_actor_with(call, type_name, from, out_actor, err, __troupe_importers) }
        }

        unsafe extern "C" fn __troupe_on_unload(err: $crate::abi::OutSink) -> $crate::abi::Status {
            #[allow(unused_mut, unused_assignments)]
            let mut user: ::core::option::Option<fn()> = ::core::option::Option::None;
            $( user = ::core::option::Option::Some($unload); )?
            // SAFETY: forwarded unchanged from the node.
            unsafe { $crate::sdk::__on_unload(err, user) }
        }

        /// The plugin root the Troupe node reads.
        #[unsafe(no_mangle)]
        pub static TROUPE_PLUGIN_ROOT_V1: $crate::abi::PluginRoot = $crate::abi::PluginRoot {
            header: $crate::abi::RootHeader {
                magic: $crate::abi::MAGIC,
                abi_version: $crate::abi::ABI_VERSION,
                root_size: ::core::mem::size_of::<$crate::abi::PluginRoot>() as u32,
                panic_unwind: cfg!(panic = "unwind") as u32,
                msg_schema: $crate::abi::MSG_SCHEMA,
            },
            rustc_version: $crate::abi::RawStr::from_static($crate::RUSTC_VERSION),
            plugin_name: $crate::abi::RawStr::from_static(env!("CARGO_PKG_NAME")),
            plugin_version: $crate::abi::RawStr::from_static(env!("CARGO_PKG_VERSION")),
            actor_types: __TROUPE_ACTOR_TYPES.as_ptr(),
            n_actor_types: __TROUPE_ACTOR_TYPES.len(),
            init: $crate::sdk::__init,
            new_actor: __troupe_new_actor,
            handle: $crate::sdk::__handle,
            drop_actor: $crate::sdk::__drop_actor,
            on_unload: __troupe_on_unload,
            export_state: $crate::sdk::__export_state,
            import_actor: __troupe_import_actor,
        };
    };
}
