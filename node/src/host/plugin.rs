//! Opening one plugin cdylib and checking its root before any plugin function runs.
//!
//! [`Plugin::open`] first reads the root from the file's bytes ([`crate::store::root`]): a
//! library without a valid root is refused *before* `dlopen`, so its ELF constructors never
//! run. Only then does it dlopen the file with `RTLD_NOW | RTLD_LOCAL` (never `RTLD_GLOBAL`: a
//! global version would capture the symbol references of every later version), find the root
//! data symbol, and check magic, ABI version, root size and panic strategy again in memory,
//! copying the root's strings and type table into node memory; the mapped root must say what
//! the file said. Only the library's own ELF constructors run at dlopen; no plugin function is
//! called here. Callers that go on to call the plugin do so on the version's own thread (see
//! [`crate::host::executor`]).

use std::path::Path;

use troupe_actor_abi::abi::{self, ActorTypeDesc, PluginRoot, RawStr, RootHeader};

use crate::store::root::{self, check_header, MAX_ACTOR_TYPES, MAX_REQUIREMENTS, MAX_ROOT_STRING};
pub use crate::store::root::{ActorTypeInfo, FileRoot, PluginError, PluginInfo};

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
    /// Reads the root from the file at `path`, then opens and checks the cdylib.
    pub fn open(path: &Path) -> Result<Plugin, PluginError> {
        let file = root::read_file(path)?;
        Plugin::open_read(path, &file)
    }

    /// Opens and checks the cdylib at `path`, whose root `file` was read from its bytes
    /// (`root::read_file`) before: what the loader maps must say the same.
    pub fn open_read(path: &Path, file: &FileRoot) -> Result<Plugin, PluginError> {
        let p = path.display().to_string();
        // SAFETY: loading a library runs its ELF constructors. Its root was read from the file
        // first, so only libraries with a valid Troupe root get here; a hostile library with
        // one is the trust problem the source authority exists for, not something dlopen can
        // guard against.
        let lib = unsafe {
            libloading::os::unix::Library::open(
                Some(path),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
            )
        }
        .map_err(|e| PluginError::Open { path: p.clone(), message: with_sources(&e) })?;
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
        if info != file.info || header.root_size != file.root_size {
            return Err(PluginError::Malformed {
                path: p,
                detail: "the root the loader mapped differs from the one in the file".into(),
            });
        }
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

/// Reads a plugin's declared facts by loading it: reads the file's root, opens, checks, copies,
/// closes. No plugin function is called, but the library's constructors run: `troupe pack`
/// uses [`root::read`] instead; this is for comparing the two.
pub fn inspect(path: &Path) -> Result<PluginInfo, PluginError> {
    // dlopen searches the library path for a name without a slash: `lib.so` must mean the file
    // in the current directory, as it does for every other command.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let plugin = Plugin::open(&absolute)?;
    let info = plugin.info.clone();
    plugin.close();
    Ok(info)
}

/// An error's text followed by its sources' (libloading says "dlopen failed" and keeps
/// dlerror's text in its source).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dlerror_text_is_kept_when_dlopen_fails() {
        // A valid root cannot be had without a plugin build; a file dlopen refuses shows the
        // message path: the reader's refusal comes first for a non-ELF file.
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib.so");
        std::fs::write(&lib, "not a library\n").unwrap();
        let e = Plugin::open(&lib).err().unwrap();
        assert!(e.to_string().contains("is not a plugin library: not a 64-bit ELF file"), "{e}");
        let file = FileRoot {
            info: PluginInfo {
                name: "x".into(),
                version: "1".into(),
                rustc_version: "r".into(),
                actor_types: vec![],
            },
            root_size: 0,
        };
        let e = Plugin::open_read(&lib, &file).err().unwrap().to_string();
        assert!(e.starts_with(&format!("cannot open {}: dlopen failed: ", lib.display())), "{e}");
        assert!(e.contains("invalid ELF header") || e.contains("too short"), "dlerror's text: {e}");
    }
}
