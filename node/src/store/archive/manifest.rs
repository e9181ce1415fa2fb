//! The manifest, `troupe.toml`: its types, TOML in and out, and the checks serde cannot make.
//!
//! [`Manifest::parse`] is how both [`open`](super::open) and [`pack`](fn@super::pack) see a
//! manifest, so a source that packs is a source that opens. The name checks here are also used
//! by `directory` for entry names, so both sides agree on what a plain file name is.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use troupe_actor_abi::caps::Requirement;

use super::{ArchiveError, MANIFEST_NAME, SIGNATURE_NAME};

/// The manifest, `troupe.toml`: what a source contains and what each cdylib exports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub package: PackageInfo,
    #[serde(rename = "cdylib")]
    pub cdylibs: Vec<CdylibEntry>,
}

/// The `[package]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageInfo {
    pub name: String,
    pub version: String,
    /// Version of the `actor-abi` plugin root the cdylibs were built against; the loader
    /// compares it, this module only carries it.
    pub abi_version: u32,
    /// Version of the message schema the actors speak.
    pub msg_schema: u32,
    /// Target triple the cdylibs were built for.
    pub target: String,
}

/// One `[[cdylib]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdylibEntry {
    /// Plain file name inside the archive, ending in `.so`.
    pub file: String,
    /// Lowercase hex sha256 of the file's bytes.
    pub sha256: String,
    #[serde(rename = "actor", default, skip_serializing_if = "Vec::is_empty")]
    pub actors: Vec<ActorTypeEntry>,
}

/// One `[[cdylib.actor]]` table: an actor type the cdylib exports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorTypeEntry {
    /// `module.Type`, unique across the manifest.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Capabilities a node needs to host this type.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Types of earlier versions this type takes over in a live upgrade (renames): their
    /// actors become actors of this type. A type always takes over its own name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
}

impl Manifest {
    /// Renders the manifest as `troupe.toml` text.
    pub fn to_toml(&self) -> String {
        // Only strings, integers, arrays and tables, with plain values before sub-tables: the
        // serializer has nothing to refuse, so a failure here is a bug in these types.
        toml::to_string(self).expect("a Manifest always serializes to TOML")
    }

    /// Parses `troupe.toml` text and checks it (see [`Manifest::validate`]).
    pub fn parse(text: &str) -> Result<Manifest, ArchiveError> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| ArchiveError::BadManifest(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks what serde cannot: at least one cdylib; plain, unique `.so` file names; sha256
    /// values in lowercase hex; actor types of the form `module.Type`, unique across the
    /// manifest.
    pub fn validate(&self) -> Result<(), ArchiveError> {
        let bad = |msg: String| Err(ArchiveError::BadManifest(msg));
        let package = &self.package;
        for (field, value) in
            [("name", &package.name), ("version", &package.version), ("target", &package.target)]
        {
            if value.trim().is_empty() {
                return bad(format!("package.{field} is empty"));
            }
        }
        if self.cdylibs.is_empty() {
            return bad("no [[cdylib]] entries: a source must ship at least one cdylib".into());
        }
        let mut files = HashSet::new();
        let mut types = HashSet::new();
        for cdylib in &self.cdylibs {
            let file = &cdylib.file;
            if !is_plain_name(file) || file == MANIFEST_NAME || file == SIGNATURE_NAME {
                return bad(format!("cdylib file `{file}` is not a plain file name inside the archive"));
            }
            if !file.ends_with(".so") || file.len() == ".so".len() {
                return bad(format!("cdylib file `{file}` does not end in `.so`"));
            }
            if !files.insert(file.as_str()) {
                return bad(format!("cdylib file `{file}` is listed twice"));
            }
            if !is_sha256_hex(&cdylib.sha256) {
                return bad(format!(
                    "sha256 of `{file}` is `{}`: expected 64 lowercase hex digits",
                    cdylib.sha256
                ));
            }
            for actor in &cdylib.actors {
                let type_name = &actor.type_name;
                if !is_type_name(type_name) {
                    return bad(format!(
                        "actor type `{type_name}` in `{file}` is not of the form `module.Type` \
                         (ASCII letters, digits and `_` on each side of one dot)"
                    ));
                }
                if !types.insert(type_name.as_str()) {
                    return bad(format!("actor type `{type_name}` is declared twice"));
                }
                if actor.requires.iter().any(|cap| cap.trim().is_empty()) {
                    return bad(format!("actor type `{type_name}` requires an empty capability"));
                }
                if let Some(e) = actor.requires.iter().find_map(|r| Requirement::parse(r).err()) {
                    return bad(format!("actor type `{type_name}` has a bad requirement {e}"));
                }
                if let Some(old) = actor.replaces.iter().find(|old| !is_type_name(old)) {
                    return bad(format!(
                        "actor type `{type_name}` replaces `{old}`, which is not of the form `module.Type`"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Renames for a live upgrade: old `module.Type` → the type of this manifest that replaces
    /// it (see [`ActorTypeEntry::replaces`]).
    pub fn renames(&self) -> std::collections::BTreeMap<String, String> {
        let types = self.cdylibs.iter().flat_map(|c| c.actors.iter());
        types.flat_map(|a| a.replaces.iter().map(|old| (old.clone(), a.type_name.clone()))).collect()
    }

    /// The cdylib exporting `type_name`, and its entry for that type.
    pub fn find_type(&self, type_name: &str) -> Option<(&CdylibEntry, &ActorTypeEntry)> {
        self.cdylibs.iter().find_map(|cdylib| {
            cdylib.actors.iter().find(|actor| actor.type_name == type_name).map(|actor| (cdylib, actor))
        })
    }
}

/// A name usable as-is as one file inside a flat archive and a directory on disk.
pub(super) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_type_name(s: &str) -> bool {
    let part_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match s.split_once('.') {
        Some((module, ty)) => part_ok(module) && part_ok(ty),
        None => false,
    }
}
