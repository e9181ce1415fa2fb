//! Reading a plugin's root from the library file, without loading it: what `troupe pack`
//! (and `pack --sign`) records in the manifest, and what the node checks *before* `dlopen`,
//! so that a library without a valid root is refused before its ELF constructors run and
//! signing never runs the code it signs.
//!
//! [`read`] finds `TROUPE_PLUGIN_ROOT_V1` in the dynamic symbol table, reads the root's bytes
//! at its virtual address through the `PT_LOAD` program headers, checks the header as
//! [`check_header`] does after `dlopen`, then follows the root's pointers (`RawStr`s, the
//! actor-type table, each type's requirements) the way the loader would fill them: through
//! the relative relocations of `DT_RELA` (the addend is the target) or `DT_RELR` (the word in
//! the file is). Function pointers are only checked to be relocated, never followed. Every
//! length is bounded by the limits below, strings must be UTF-8, and a malformed file is an
//! error, never a panic.
//!
//! The node keeps its checks after `dlopen` too (host/plugin.rs) and refuses a library whose
//! mapped root says something else than its file.

mod image;
#[cfg(test)]
mod tests;

use std::mem::{offset_of, size_of};
use std::path::Path;

use troupe_actor_abi::abi::{self, ActorTypeDesc, PluginRoot, RawStr, RootHeader};

use image::{Image, Target};

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
    /// The file is not a library whose root can be read (not ELF, another machine, …).
    #[error("{path} is not a plugin library: {detail}")]
    NotALibrary {
        /// The file.
        path: String,
        /// Why.
        detail: String,
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
#[derive(Clone, Debug, PartialEq, Eq)]
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

impl PluginInfo {
    /// The manifest's entries for its actor types (`troupe pack`, the testkit): each with the
    /// requirements it declares, replacing nothing.
    pub fn manifest_entries(&self) -> Vec<crate::store::archive::ActorTypeEntry> {
        self.actor_types
            .iter()
            .map(|t| crate::store::archive::ActorTypeEntry {
                type_name: t.name.clone(),
                requires: t.requirements.clone(),
                replaces: vec![],
            })
            .collect()
    }
}

/// A root as read from the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRoot {
    /// What it declares.
    pub info: PluginInfo,
    /// Its `root_size` (which fields exist).
    pub root_size: u32,
}

/// Upper bounds on what a root may declare; a real plugin is far below them, a corrupt one is
/// refused instead of making the reader copy megabytes of garbage.
pub(crate) const MAX_ROOT_STRING: usize = 4096;
pub(crate) const MAX_ACTOR_TYPES: usize = 4096;
pub(crate) const MAX_REQUIREMENTS: usize = 256;

/// Checks a root's frozen header: magic, ABI version, size, panic strategy, message schema,
/// in that order.
pub(crate) fn check_header(p: &str, h: &RootHeader) -> Result<(), PluginError> {
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

/// Reads the root of the library at `path` from its bytes (see the module documentation).
pub fn read_file(path: &Path) -> Result<FileRoot, PluginError> {
    let p = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|e| PluginError::Open { path: p.clone(), message: e.to_string() })?;
    read(&p, &bytes)
}

/// Reads the root of a library from its bytes; `path` names it in errors.
pub fn read(path: &str, bytes: &[u8]) -> Result<FileRoot, PluginError> {
    let image =
        Image::parse(bytes).map_err(|detail| PluginError::NotALibrary { path: path.into(), detail })?;
    let r = Reader { p: path, image };
    let symbol = r.image.dynamic_symbol(&abi::ROOT_SYMBOL[..abi::ROOT_SYMBOL.len() - 1]);
    let Some((at, size)) = symbol.map_err(|detail| PluginError::NotALibrary { path: path.into(), detail })?
    else {
        return Err(PluginError::NoRoot { path: path.into() });
    };
    let header = r.header(at)?;
    check_header(path, &header)?;
    let known = (header.root_size as usize).min(size_of::<PluginRoot>()) as u64;
    if size != 0 && size < known {
        return Err(r.malformed(format!("the symbol is {size} bytes, the root says {}", header.root_size)));
    }
    r.bytes(at, known)?;
    r.functions(at, header.root_size)?;
    let info = r.info(at)?;
    Ok(FileRoot { info, root_size: header.root_size })
}

/// Reads one library's root (see [`read`]).
struct Reader<'a> {
    p: &'a str,
    image: Image<'a>,
}

impl Reader<'_> {
    fn malformed(&self, detail: String) -> PluginError {
        PluginError::Malformed { path: self.p.into(), detail }
    }

    fn bytes(&self, at: u64, len: u64) -> Result<&[u8], PluginError> {
        self.image.bytes_at(at, len).map_err(|d| self.malformed(d))
    }

    fn word(&self, at: u64) -> Result<u64, PluginError> {
        self.image.word_at(at).map_err(|d| self.malformed(d))
    }

    fn header(&self, at: u64) -> Result<RootHeader, PluginError> {
        let b = self.bytes(at, size_of::<RootHeader>() as u64)?;
        let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let magic = u64::from_ne_bytes(b[..8].try_into().unwrap_or_default());
        Ok(RootHeader {
            magic,
            abi_version: u32_at(offset_of!(RootHeader, abi_version)),
            root_size: u32_at(offset_of!(RootHeader, root_size)),
            panic_unwind: u32_at(offset_of!(RootHeader, panic_unwind)),
            msg_schema: u32_at(offset_of!(RootHeader, msg_schema)),
        })
    }

    /// Where the pointer at `at` points, refusing null and symbol-bound data pointers.
    fn data_pointer(&self, at: u64, what: &str) -> Result<u64, PluginError> {
        match self.image.pointer_at(at).map_err(|d| self.malformed(format!("{what}: {d}")))? {
            Target::Local(to) => Ok(to),
            Target::Null => Err(self.malformed(format!("{what} is null"))),
            Target::Symbolic => Err(self.malformed(format!("{what} points outside the library"))),
        }
    }

    /// Every entry point the root has is relocated (not null); none is followed.
    fn functions(&self, root: u64, root_size: u32) -> Result<(), PluginError> {
        let mut fields = vec![
            ("init", offset_of!(PluginRoot, init)),
            ("new_actor", offset_of!(PluginRoot, new_actor)),
            ("handle", offset_of!(PluginRoot, handle)),
            ("drop_actor", offset_of!(PluginRoot, drop_actor)),
            ("on_unload", offset_of!(PluginRoot, on_unload)),
        ];
        if PluginRoot::has_upgrade(root_size) {
            fields.push(("export_state", offset_of!(PluginRoot, export_state)));
            fields.push(("import_actor", offset_of!(PluginRoot, import_actor)));
        }
        for (name, offset) in fields {
            let target = self
                .image
                .pointer_at(root + offset as u64)
                .map_err(|d| self.malformed(format!("{name}: {d}")))?;
            if matches!(target, Target::Null | Target::Local(0)) {
                return Err(self.malformed(format!("entry point {name} is null")));
            }
        }
        Ok(())
    }

    /// The `RawStr` at `at`, copied: bounded, and UTF-8, as `copy_info` requires after dlopen.
    fn string(&self, at: u64, what: &str) -> Result<String, PluginError> {
        let len = self.word(at + offset_of!(RawStr, len) as u64)?;
        if len > MAX_ROOT_STRING as u64 {
            return Err(self.malformed(format!("{what} is not a valid string")));
        }
        if len == 0 {
            return Ok(String::new());
        }
        let to = self.data_pointer(at + offset_of!(RawStr, ptr) as u64, what)?;
        let bytes = self.bytes(to, len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.malformed(format!("{what} is not UTF-8")))
    }

    /// A table of `n` entries of `size` bytes whose pointer is at `at`: its address (none when empty).
    fn table(&self, at: u64, n: u64, size: usize, what: &str) -> Result<Option<u64>, PluginError> {
        if n == 0 {
            return Ok(None);
        }
        let to = self.data_pointer(at, what)?;
        self.bytes(to, n * size as u64)?;
        Ok(Some(to))
    }

    fn info(&self, root: u64) -> Result<PluginInfo, PluginError> {
        let field = |offset: usize| root + offset as u64;
        let n = self.word(field(offset_of!(PluginRoot, n_actor_types)))?;
        if n > MAX_ACTOR_TYPES as u64 {
            return Err(self.malformed("bad actor type table".into()));
        }
        let desc = size_of::<ActorTypeDesc>();
        let table =
            self.table(field(offset_of!(PluginRoot, actor_types)), n, desc, "bad actor type table")?;
        let mut actor_types = Vec::with_capacity(n as usize);
        for i in 0..n {
            let Some(t) = table.map(|t| t + i * desc as u64) else { break };
            actor_types.push(self.actor_type(t)?);
        }
        Ok(PluginInfo {
            name: self.string(field(offset_of!(PluginRoot, plugin_name)), "plugin name")?,
            version: self.string(field(offset_of!(PluginRoot, plugin_version)), "plugin version")?,
            rustc_version: self.string(field(offset_of!(PluginRoot, rustc_version)), "rustc version")?,
            actor_types,
        })
    }

    fn actor_type(&self, t: u64) -> Result<ActorTypeInfo, PluginError> {
        let name = self.string(t + offset_of!(ActorTypeDesc, name) as u64, "actor type name")?;
        let bad = || format!("bad requirements of {name}");
        let n = self.word(t + offset_of!(ActorTypeDesc, n_requirements) as u64)?;
        if n > MAX_REQUIREMENTS as u64 {
            return Err(self.malformed(bad()));
        }
        let at = t + offset_of!(ActorTypeDesc, requirements) as u64;
        let table = self.table(at, n, size_of::<RawStr>(), &bad())?;
        let mut requirements = Vec::with_capacity(n as usize);
        for i in 0..n {
            let Some(r) = table.map(|r| r + i * size_of::<RawStr>() as u64) else { break };
            requirements.push(self.string(r, "requirement")?);
        }
        Ok(ActorTypeInfo { name, requirements })
    }
}
