//! Opening one plugin cdylib and checking its root before any plugin function runs.
//!
//! [`Plugin::open`] dlopens a file with `RTLD_NOW | RTLD_LOCAL` (never `RTLD_GLOBAL`: a global
//! version would capture the symbol references of every later version), finds the root data
//! symbol, and checks magic, ABI version, root size and panic strategy in that order, copying the
//! root's strings and type table into node memory. Only the library's own ELF constructors run
//! at dlopen; no plugin function is called here. Callers that go on to call the plugin do so on
//! the version's own thread (see [`crate::host::executor`]).

use std::path::Path;

use troupe_actor_abi::abi::{self, ActorTypeDesc, PluginRoot, RawStr, RootHeader};

/// Why a cdylib was refused.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// dlopen failed.
    #[error("cannot open {path}: {message}")]
    Open {
        /// The file.
        path: String,
        /// dlerror's text.
        message: String,
    },
    /// The root symbol is missing.
    #[error("{path} is not a Troupe plugin: it exports no TROUPE_PLUGIN_ROOT_V1 (build it with troupe_actor_abi::export_plugin!)")]
    NoRoot {
        /// The file.
        path: String,
    },
    /// Magic mismatch.
    #[error("{path} has a TROUPE_PLUGIN_ROOT_V1 symbol but not a Troupe root (bad magic)")]
    BadMagic {
        /// The file.
        path: String,
    },
    /// ABI version mismatch.
    #[error("{path} was built for plugin ABI version {found}, this node speaks version {expected}: rebuild it against troupe-actor-abi {expected}")]
    AbiVersion {
        /// The file.
        path: String,
        /// The plugin's version.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// The root is smaller than this ABI version's root.
    #[error("{path}: plugin root is {found} bytes, at least {expected} are required")]
    RootSize {
        /// The file.
        path: String,
        /// The plugin's size.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// Built with panic=abort.
    #[error("{path} was built with panic=abort; Troupe plugins must use panic=unwind so a panic cannot kill the node")]
    PanicAbort {
        /// The file.
        path: String,
    },
    /// Message schema mismatch.
    #[error("{path} speaks message schema {found}, this node speaks {expected}")]
    MsgSchema {
        /// The file.
        path: String,
        /// The plugin's schema.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// A string or table in the root is not valid.
    #[error("{path}: malformed plugin root: {detail}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

/// An actor type as the plugin declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorTypeInfo {
    /// `module.Type`.
    pub name: String,
    /// Capabilities it requires.
    pub requirements: Vec<String>,
}

/// What a plugin's root says about it, copied into node memory.
#[derive(Clone, Debug)]
pub struct PluginInfo {
    /// Crate name.
    pub name: String,
    /// Crate version.
    pub version: String,
    /// The rustc that built it.
    pub rustc_version: String,
    /// Exported actor types.
    pub actor_types: Vec<ActorTypeInfo>,
}

/// An open, checked plugin library. Dropping it dlcloses the library.
pub struct Plugin {
    /// The root inside the library; valid while `lib` is open.
    root: *const PluginRoot,
    /// Copied facts.
    pub info: PluginInfo,
    /// The root has the live-upgrade entry points (`export_state`, `import_actor`).
    migrates: bool,
    // Declared last so that it is dropped last.
    lib: libloading::Library,
}

// SAFETY: the root pointer refers to immutable static data of the library owned by `self`;
// moving the owner between threads does not invalidate it. Which thread *calls* plugin
// functions is governed by the version host, not by this type.
unsafe impl Send for Plugin {}

// SAFETY: shared by a version's threads, which call the root's functions concurrently for
// *different* actors (never two calls on one actor at once: see `host::pool`). The root is
// immutable; what the functions touch besides the actor is the plugin's statics, which Rust
// requires to be `Sync`, and the SDK's host table, an atomic set once by `init`. `init` and
// `on_unload` run while no other thread of the version is in a call.
unsafe impl Sync for Plugin {}

impl Plugin {
    /// Opens and checks the cdylib at `path`.
    pub fn open(path: &Path) -> Result<Plugin, PluginError> {
        let p = path.display().to_string();
        // SAFETY: loading a library runs its ELF constructors. Troupe plugins are built on the
        // SDK, whose std has only trivial constructors; a hostile library is the trust problem
        // the source authority exists for, not something dlopen can guard against.
        let lib = unsafe {
            libloading::os::unix::Library::open(
                Some(path),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
            )
        }
        .map_err(|e| PluginError::Open { path: p.clone(), message: e.to_string() })?;
        let lib: libloading::Library = lib.into();
        // SAFETY: we only take the symbol's address; we read through it below after checks.
        let sym = unsafe { lib.get::<*const PluginRoot>(abi::ROOT_SYMBOL) }
            .map_err(|_| PluginError::NoRoot { path: p.clone() })?;
        // For a data symbol, `get::<*const T>` yields the symbol's address as the pointer value.
        let root: *const PluginRoot = *sym;
        if root.is_null() {
            return Err(PluginError::NoRoot { path: p });
        }
        // SAFETY: the symbol exists; every root starts with the frozen RootHeader, which we read
        // by value before trusting anything else.
        let header: RootHeader = unsafe { std::ptr::read_unaligned(root as *const RootHeader) };
        check_header(&p, &header)?;
        // SAFETY: the header says this is a root of our ABI version and at least our size.
        let info = unsafe { copy_info(&p, &*root) }?;
        let migrates = PluginRoot::has_upgrade(header.root_size);
        Ok(Plugin { root, info, migrates, lib })
    }

    /// Whether the root has the live-upgrade entry points; a root built before them is
    /// smaller, and those fields of [`Plugin::root`] must not be read.
    pub fn migrates(&self) -> bool {
        self.migrates
    }

    /// The root, for calling plugin functions (on the version's own thread only).
    pub fn root(&self) -> &PluginRoot {
        // SAFETY: checked in `open`; valid while `self.lib` is open, i.e. while `self` lives.
        unsafe { &*self.root }
    }

    /// Closes the library (the same as dropping it, but says so).
    pub fn close(self) {
        drop(self.lib);
    }
}

fn check_header(p: &str, h: &RootHeader) -> Result<(), PluginError> {
    if h.magic != abi::MAGIC {
        return Err(PluginError::BadMagic { path: p.to_string() });
    }
    if h.abi_version != abi::ABI_VERSION {
        return Err(PluginError::AbiVersion {
            path: p.to_string(),
            found: h.abi_version,
            expected: abi::ABI_VERSION,
        });
    }
    let need = abi::ROOT_SIZE_BEFORE_UPGRADE;
    if h.root_size < need {
        return Err(PluginError::RootSize { path: p.to_string(), found: h.root_size, expected: need });
    }
    if h.panic_unwind != 1 {
        return Err(PluginError::PanicAbort { path: p.to_string() });
    }
    if h.msg_schema != abi::MSG_SCHEMA {
        return Err(PluginError::MsgSchema {
            path: p.to_string(),
            found: h.msg_schema,
            expected: abi::MSG_SCHEMA,
        });
    }
    Ok(())
}

/// Upper bounds on what a root may declare; a real plugin is far below them, a corrupt one is
/// refused instead of making the node read megabytes of garbage.
const MAX_ROOT_STRING: usize = 4096;
const MAX_ACTOR_TYPES: usize = 4096;
const MAX_REQUIREMENTS: usize = 256;

fn copy_str(p: &str, what: &str, s: RawStr) -> Result<String, PluginError> {
    if s.len > MAX_ROOT_STRING || (s.ptr.is_null() && s.len > 0) {
        return Err(PluginError::Malformed {
            path: p.into(),
            detail: format!("{what} is not a valid string"),
        });
    }
    // SAFETY: root strings point into the library's static data and are valid while it is open.
    let bytes = unsafe { s.as_bytes() };
    String::from_utf8(bytes.to_vec())
        .map_err(|_| PluginError::Malformed { path: p.into(), detail: format!("{what} is not UTF-8") })
}

/// # Safety
/// `root` must be a checked root of our ABI version inside an open library.
unsafe fn copy_info(p: &str, root: &PluginRoot) -> Result<PluginInfo, PluginError> {
    if root.n_actor_types > MAX_ACTOR_TYPES || (root.actor_types.is_null() && root.n_actor_types > 0) {
        return Err(PluginError::Malformed { path: p.into(), detail: "bad actor type table".into() });
    }
    let types: &[ActorTypeDesc] = if root.n_actor_types == 0 {
        &[]
    } else {
        // SAFETY: pointer and length come from a checked root and point to static data.
        unsafe { std::slice::from_raw_parts(root.actor_types, root.n_actor_types) }
    };
    let mut actor_types = Vec::with_capacity(types.len());
    for t in types {
        let name = copy_str(p, "actor type name", t.name)?;
        if t.n_requirements > MAX_REQUIREMENTS || (t.requirements.is_null() && t.n_requirements > 0) {
            return Err(PluginError::Malformed {
                path: p.into(),
                detail: format!("bad requirements of {name}"),
            });
        }
        let reqs: &[RawStr] = if t.n_requirements == 0 {
            &[]
        } else {
            // SAFETY: as above.
            unsafe { std::slice::from_raw_parts(t.requirements, t.n_requirements) }
        };
        let requirements =
            reqs.iter().map(|r| copy_str(p, "requirement", *r)).collect::<Result<Vec<_>, _>>()?;
        actor_types.push(ActorTypeInfo { name, requirements });
    }
    Ok(PluginInfo {
        name: copy_str(p, "plugin name", root.plugin_name)?,
        version: copy_str(p, "plugin version", root.plugin_version)?,
        rustc_version: copy_str(p, "rustc version", root.rustc_version)?,
        actor_types,
    })
}

/// Reads a plugin's declared facts (for `troupe pack`): opens, checks, copies, closes. No plugin
/// function is called.
pub fn inspect(path: &Path) -> Result<PluginInfo, PluginError> {
    // dlopen searches the library path for a name without a slash: `lib.so` must mean the file
    // in the current directory, as it does for every other command.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let plugin = Plugin::open(&absolute)?;
    let info = plugin.info.clone();
    plugin.close();
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(root_size: u32) -> RootHeader {
        RootHeader {
            magic: abi::MAGIC,
            abi_version: abi::ABI_VERSION,
            root_size,
            panic_unwind: 1,
            msg_schema: abi::MSG_SCHEMA,
        }
    }

    #[test]
    fn a_root_from_before_live_upgrade_is_accepted_and_does_not_migrate() {
        let full = std::mem::size_of::<PluginRoot>() as u32;
        assert!(check_header("p", &header(full)).is_ok());
        assert!(PluginRoot::has_upgrade(full));
        // A plugin built before export_state/import_actor were appended: loads, never moves.
        assert!(check_header("p", &header(abi::ROOT_SIZE_BEFORE_UPGRADE)).is_ok());
        assert!(!PluginRoot::has_upgrade(abi::ROOT_SIZE_BEFORE_UPGRADE));
        // Anything smaller lacks fields every node calls.
        let short = check_header("p", &header(abi::ROOT_SIZE_BEFORE_UPGRADE - 8));
        assert!(matches!(short, Err(PluginError::RootSize { .. })), "{short:?}");
    }
}
