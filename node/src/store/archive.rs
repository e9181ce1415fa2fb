//! Source archives: the zip files that carry plugin code into a node.
//!
//! A *source* is a zip holding a manifest ([`MANIFEST_NAME`], TOML, see [`Manifest`]) plus the
//! cdylibs it lists. Its identity is its [hash](Source::hash): the lowercase hex sha256 of the
//! zip bytes exactly as given (DESIGN.md §3).
//!
//! Two entry points, one per side of the wire:
//!
//! - [`pack`] is what `troupe pack` calls. It hashes each cdylib, writes the manifest first and
//!   then the cdylibs, with fixed timestamps and permissions so the same build always gives the
//!   same bytes and therefore the same hash.
//! - [`open`] is the only way the node reads a zip. Every load, and every source fetched from a
//!   peer, goes through it before the source authority sees it and long before any code is
//!   loaded. It treats the bytes as hostile: it checks sizes, entry names and types, and the
//!   manifest against the directory *before* inflating any cdylib, then inflates each one under
//!   a hard cap and checks its sha256 against the manifest.
//!
//! Nothing here touches the file system; the store decides where the checked bytes go.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

/// Name of the manifest inside every source archive. Fixed so the node can find it without
/// guessing, and namespaced so it cannot be mistaken for a plugin file.
pub const MANIFEST_NAME: &str = "troupe.toml";

/// Name of the optional signature entry (see [`crate::store::signing`]): it signs the manifest, which
/// holds every cdylib's sha256, so it covers the whole source.
pub const SIGNATURE_NAME: &str = "troupe.sig";

/// A signature file is two short hex strings; anything bigger is not one.
const MAX_SIGNATURE_BYTES: u64 = 4096;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Default for [`ArchiveLimits::max_zip_bytes`]: a whole source travels in one protocol frame
/// and is held in memory while it is checked; our debug builds with debuginfo are tens of MiB,
/// so 256 MiB leaves headroom without letting one load exhaust a node.
pub const DEFAULT_MAX_ZIP_BYTES: u64 = 256 * MIB;
/// Default for [`ArchiveLimits::max_entries`]: a source is a manifest plus a handful of
/// cdylibs; 64 is generous for that and bounds the per-entry work a crafted directory can cause.
pub const DEFAULT_MAX_ENTRIES: usize = 64;
/// Default for [`ArchiveLimits::max_entry_bytes`]: the largest single cdylib we expect (a debug
/// build with full debuginfo) is well under this; same bound as the zip itself.
pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 256 * MIB;
/// Default for [`ArchiveLimits::max_total_bytes`]: every inflated cdylib is held in memory at
/// once before the store writes it out, so the sum needs its own bound.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 512 * MIB;
/// Default for [`ArchiveLimits::max_ratio`]: machine code and debuginfo deflate by 3–20×; zip
/// bombs inflate by 1000× and more. 200× keeps a wide margin on both sides.
pub const DEFAULT_MAX_RATIO: u64 = 200;
/// Default for [`ArchiveLimits::max_manifest_bytes`]: a hand-readable manifest with dozens of
/// actor types is a few KiB; the manifest is parsed before anything else is trusted, so keep
/// what the TOML parser sees small.
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 64 * KIB;

/// Entries this small are never reported for their compression ratio: inflating them cannot
/// hurt anyone, and tiny runs of repeated bytes (padding, empty tables) legitimately deflate
/// by more than [`DEFAULT_MAX_RATIO`]. The size limits still apply to them.
const RATIO_EXEMPT_BYTES: u64 = 64 * KIB;

/// What a central directory header starts with (APPNOTE 4.3.12).
const CENTRAL_HEADER_SIG: &[u8; 4] = b"PK\x01\x02";
/// The zip reader parses the whole central directory before we can count its entries, and
/// each parsed entry costs a few hundred bytes of memory against ~50 bytes on the wire: a zip
/// of nothing but tiny entries could cost GiBs. Counting the header signature first bounds
/// what that parse can produce. The slack stops signature bytes that happen to occur inside
/// file data from ever refusing a real source.
const CENTRAL_HEADER_SLACK: usize = 1024;

/// Fixed modification time of every entry [`pack`] writes (the earliest a zip can express), so
/// packing the same build twice gives the same bytes.
const PACK_MTIME: DateTime = DateTime::DEFAULT;
/// Fixed permissions of the manifest in packed archives.
const PACK_MANIFEST_MODE: u32 = 0o644;
/// Fixed permissions of cdylibs in packed archives: shared libraries are conventionally
/// executable; the node sets its own modes on the copies it loads anyway.
const PACK_CDYLIB_MODE: u32 = 0o755;

// File-type bits of a unix mode (`st_mode & S_IFMT`), as stored in the high 16 bits of a zip
// entry's external attributes. Spelled out because the zip crate keeps its copies private.
const S_IFMT: u32 = 0o170_000;
const S_IFSOCK: u32 = 0o140_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFREG: u32 = 0o100_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFIFO: u32 = 0o010_000;

/// Caps applied by [`open`]. The node uses [`ArchiveLimits::default`]; tests use small ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Largest zip accepted, in bytes.
    pub max_zip_bytes: u64,
    /// Most entries (manifest included) a zip may list.
    pub max_entries: usize,
    /// Largest uncompressed size of any one entry, in bytes.
    pub max_entry_bytes: u64,
    /// Largest sum of the uncompressed sizes of all entries, in bytes.
    pub max_total_bytes: u64,
    /// Largest compression ratio (uncompressed / compressed) of any one entry.
    pub max_ratio: u64,
    /// Largest uncompressed size of the manifest, in bytes.
    pub max_manifest_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_zip_bytes: DEFAULT_MAX_ZIP_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_ratio: DEFAULT_MAX_RATIO,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
        }
    }
}

/// Why a source archive was refused. Messages are meant for the person who ran `troupe load`;
/// [`ArchiveError::kind`] is the stable name for tests and the protocol.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a zip archive (truncated or corrupt): {0}")]
    NotAZip(String),
    #[error("archive is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error(
        "archive lists {count} entries, over the limit of {limit}: a source is a manifest plus its cdylibs"
    )]
    TooManyEntries { count: usize, limit: usize },
    #[error(
        "entry `{name}` escapes the archive: only plain file names are allowed (no directories, `..`, absolute paths, backslashes or control characters)"
    )]
    UnsafePath { name: String },
    #[error("entry `{name}` is a {kind}: only regular files are allowed in a source archive")]
    NotRegularFile { name: String, kind: &'static str },
    #[error("entry `{name}` is encrypted: source archives must not be encrypted")]
    Encrypted { name: String },
    #[error(
        "the archive lists the same file name more than once (a later copy could hide behind the first): repack it with `troupe pack`"
    )]
    DuplicateEntry,
    #[error("no {MANIFEST_NAME} in the archive — build it with `troupe pack`")]
    MissingManifest,
    #[error("bad {MANIFEST_NAME}: {0}")]
    BadManifest(String),
    #[error("{MANIFEST_NAME} is {size} bytes, over the limit of {limit} bytes")]
    ManifestTooLarge { size: u64, limit: u64 },
    #[error("entry `{name}` is not listed in {MANIFEST_NAME}: every file in a source must be declared")]
    UnlistedEntry { name: String },
    #[error("{MANIFEST_NAME} lists cdylib `{name}` but the archive does not contain it")]
    MissingCdylib { name: String },
    #[error("entry `{name}` is {size} bytes uncompressed, over the limit of {limit} bytes")]
    EntryTooLarge { name: String, size: u64, limit: u64 },
    #[error("entries add up to {total} bytes uncompressed, over the limit of {limit} bytes")]
    TotalTooLarge { total: u64, limit: u64 },
    #[error(
        "entry `{name}` inflates from {compressed} to {size} bytes, more than {limit}× — refusing a likely zip bomb"
    )]
    SuspiciousRatio { name: String, size: u64, compressed: u64, limit: u64 },
    #[error("entry `{name}` declares {declared} bytes but inflates to {actual}{}: the archive is corrupt or crafted", if *.actual > *.declared { " or more" } else { "" })]
    SizeMismatch { name: String, declared: u64, actual: u64 },
    #[error(
        "sha256 of `{file}` is {actual} but {MANIFEST_NAME} says {expected}: the archive was altered or built from a different file"
    )]
    HashMismatch { file: String, expected: String, actual: String },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("zip error: {0}")]
    Zip(String),
}

impl ArchiveError {
    /// A stable snake_case name for the variant, for tests and the wire protocol.
    pub fn kind(&self) -> &'static str {
        match self {
            ArchiveError::NotAZip(_) => "not_a_zip",
            ArchiveError::TooLarge { .. } => "too_large",
            ArchiveError::TooManyEntries { .. } => "too_many_entries",
            ArchiveError::UnsafePath { .. } => "unsafe_path",
            ArchiveError::NotRegularFile { .. } => "not_regular_file",
            ArchiveError::Encrypted { .. } => "encrypted",
            ArchiveError::DuplicateEntry => "duplicate_entry",
            ArchiveError::MissingManifest => "missing_manifest",
            ArchiveError::BadManifest(_) => "bad_manifest",
            ArchiveError::ManifestTooLarge { .. } => "manifest_too_large",
            ArchiveError::UnlistedEntry { .. } => "unlisted_entry",
            ArchiveError::MissingCdylib { .. } => "missing_cdylib",
            ArchiveError::EntryTooLarge { .. } => "entry_too_large",
            ArchiveError::TotalTooLarge { .. } => "total_too_large",
            ArchiveError::SuspiciousRatio { .. } => "suspicious_ratio",
            ArchiveError::SizeMismatch { .. } => "size_mismatch",
            ArchiveError::HashMismatch { .. } => "hash_mismatch",
            ArchiveError::Io(_) => "io",
            ArchiveError::Zip(_) => "zip",
        }
    }
}

impl From<zip::result::ZipError> for ArchiveError {
    fn from(e: zip::result::ZipError) -> Self {
        ArchiveError::Zip(e.to_string())
    }
}

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
            }
        }
        Ok(())
    }

    /// The cdylib exporting `type_name`, and its entry for that type.
    pub fn find_type(&self, type_name: &str) -> Option<(&CdylibEntry, &ActorTypeEntry)> {
        self.cdylibs.iter().find_map(|cdylib| {
            cdylib.actors.iter().find(|actor| actor.type_name == type_name).map(|actor| (cdylib, actor))
        })
    }
}

/// A name usable as-is as one file inside a flat archive and a directory on disk.
fn is_plain_name(name: &str) -> bool {
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

/// Lowercase hex sha256 of `bytes`: the hash of a source, and of each cdylib in its manifest.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One cdylib handed to [`pack`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackInput {
    /// Name inside the archive: a plain file name ending in `.so`.
    pub file_name: String,
    pub bytes: Vec<u8>,
    /// The actor types this cdylib exports.
    pub actors: Vec<ActorTypeEntry>,
}

/// Builds a source archive: `troupe.toml` first, then the cdylibs in the order given, all
/// deflated, with fixed timestamps and permissions so identical input gives identical bytes
/// (and so the same hash). The manifest is validated before anything is written.
pub fn pack(package: &PackageInfo, cdylibs: &[PackInput]) -> Result<Vec<u8>, ArchiveError> {
    pack_signed(package, cdylibs, None::<fn(&[u8]) -> Vec<u8>>)
}

/// As [`pack`], and when `sign` is given, adds a [`SIGNATURE_NAME`] entry holding what `sign`
/// returns for the manifest's exact bytes.
pub fn pack_signed(
    package: &PackageInfo,
    cdylibs: &[PackInput],
    sign: Option<impl FnOnce(&[u8]) -> Vec<u8>>,
) -> Result<Vec<u8>, ArchiveError> {
    let manifest = Manifest {
        package: package.clone(),
        cdylibs: cdylibs
            .iter()
            .map(|input| CdylibEntry {
                file: input.file_name.clone(),
                sha256: sha256_hex(&input.bytes),
                actors: input.actors.clone(),
            })
            .collect(),
    };
    let text = manifest.to_toml();
    Manifest::parse(&text)?;

    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(PACK_MTIME);
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file(MANIFEST_NAME, options.unix_permissions(PACK_MANIFEST_MODE))?;
    zip.write_all(text.as_bytes())?;
    if let Some(sign) = sign {
        let signature = sign(text.as_bytes());
        zip.start_file(SIGNATURE_NAME, options.unix_permissions(PACK_MANIFEST_MODE))?;
        zip.write_all(&signature)?;
    }
    // Libraries are compressed with zstd: about as small as deflate, and inflated three to
    // four times faster, which is most of a load's time in the node. `open` reads deflate too.
    let lib_options = options
        .compression_method(CompressionMethod::Zstd)
        .compression_level(Some(PACK_ZSTD_LEVEL))
        .unix_permissions(PACK_CDYLIB_MODE);
    for input in cdylibs {
        zip.start_file(input.file_name.as_str(), lib_options)?;
        zip.write_all(&input.bytes)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// The zstd level `pack` compresses libraries with (decompression speed does not depend on it).
const PACK_ZSTD_LEVEL: i64 = 9;

/// A source archive that passed every check in [`open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Lowercase hex sha256 of the whole zip: the source's identity.
    pub hash: String,
    pub manifest: Manifest,
    /// The manifest exactly as stored (what a signature covers).
    pub manifest_bytes: Vec<u8>,
    /// The [`SIGNATURE_NAME`] entry, if the source is signed.
    pub signature: Option<Vec<u8>>,
    /// The cdylibs, in manifest order, each already checked against its sha256.
    pub files: Vec<SourceFile>,
}

/// One inflated cdylib of a [`Source`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// What [`open`] learns about an entry from the central directory, before inflating it.
struct EntryInfo {
    index: usize,
    name: String,
    size: u64,
    compressed: u64,
}

/// Reads and checks a source archive. This is the only way the node reads a zip.
///
/// Checks, in order, before any cdylib is inflated: the zip's size; that it is a readable zip;
/// the entry count; that every entry is a regular, unencrypted file with a plain name, and no
/// name appears twice; that the manifest exists, is small enough, parses and validates; that
/// the entries and the manifest's cdylibs match one to one; that declared sizes and
/// compression ratios are within `limits`. Then each cdylib is inflated under a hard cap (the
/// declared size is never trusted) and its sha256 compared with the manifest.
pub fn open(bytes: &[u8], limits: &ArchiveLimits) -> Result<Source, ArchiveError> {
    if bytes.len() < PARALLEL_HASH_BYTES {
        let mut assembled = Assembler::default();
        let source = open_entries(bytes, limits, &mut |piece| assembled.take(piece))?;
        return assembled.finish(source, sha256_hex(bytes));
    }
    // A second core hashes the zip (its identity), then each library piece by piece while the
    // next pieces are inflated on this one: inflating and hashing take about as long each.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<Piece>();
        let helper = scope.spawn(move || {
            let zip_hash = sha256_hex(bytes);
            let mut assembled = Assembler::default();
            for piece in rx {
                assembled.take(piece);
            }
            (zip_hash, assembled)
        });
        let source = open_entries(bytes, limits, &mut |piece| {
            let _ = tx.send(piece);
        });
        drop(tx);
        let (zip_hash, assembled) =
            helper.join().map_err(|_| ArchiveError::Zip("the hashing thread panicked".into()))?;
        assembled.finish(source?, zip_hash)
    })
}

/// What [`open_entries`] hands over for each library, in the manifest's order: its declared
/// size, the pieces as they are inflated, then its end.
enum Piece {
    Begin(usize),
    Bytes(Vec<u8>),
    End,
}

/// Puts each library together from its pieces and hashes it on the way.
#[derive(Default)]
struct Assembler {
    hasher: Sha256,
    data: Vec<u8>,
    done: Vec<([u8; 32], Vec<u8>)>,
}

impl Assembler {
    fn take(&mut self, piece: Piece) {
        match piece {
            Piece::Begin(size) => self.data = Vec::with_capacity(size),
            Piece::Bytes(b) => {
                self.hasher.update(&b);
                self.data.extend_from_slice(&b);
            }
            Piece::End => {
                let digest = std::mem::take(&mut self.hasher).finalize().into();
                self.done.push((digest, std::mem::take(&mut self.data)));
            }
        }
    }

    /// Checks each library's sha256 against the manifest and hands the bytes to `source`.
    fn finish(self, mut source: Source, hash: String) -> Result<Source, ArchiveError> {
        let mut done = self.done.into_iter();
        for (cdylib, file) in source.manifest.cdylibs.iter().zip(source.files.iter_mut()) {
            let (digest, data) = done.next().unwrap_or_default();
            let actual = hex::encode(digest);
            if actual != cdylib.sha256 {
                return Err(ArchiveError::HashMismatch {
                    file: cdylib.file.clone(),
                    expected: cdylib.sha256.clone(),
                    actual,
                });
            }
            file.bytes = data;
        }
        Ok(Source { hash, ..source })
    }
}

/// From this size on, [`open`] hashes on a thread of its own.
const PARALLEL_HASH_BYTES: usize = 64 * 1024;

/// [`open`] without the hashes: the zip's is left empty, and each library's pieces go to
/// `hash` (then [`Piece::End`]), in the manifest's order.
fn open_entries(
    bytes: &[u8],
    limits: &ArchiveLimits,
    hash: &mut dyn FnMut(Piece),
) -> Result<Source, ArchiveError> {
    let zip_size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if zip_size > limits.max_zip_bytes {
        return Err(ArchiveError::TooLarge { size: zip_size, limit: limits.max_zip_bytes });
    }
    if bytes.is_empty() {
        return Err(ArchiveError::NotAZip("the input is empty".into()));
    }
    let signatures = memchr::memmem::find_iter(bytes, CENTRAL_HEADER_SIG).count();
    if signatures > limits.max_entries.saturating_add(CENTRAL_HEADER_SLACK) {
        return Err(ArchiveError::TooManyEntries { count: signatures, limit: limits.max_entries });
    }
    let mut archive =
        ZipArchive::new(Cursor::new(bytes)).map_err(|e| ArchiveError::NotAZip(e.to_string()))?;

    if archive.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries { count: archive.len(), limit: limits.max_entries });
    }

    let entries = list_entries(&archive)?;

    let manifest_entry =
        entries.iter().find(|e| e.name == MANIFEST_NAME).ok_or(ArchiveError::MissingManifest)?;
    let manifest_too_large = |size| ArchiveError::ManifestTooLarge { size, limit: limits.max_manifest_bytes };
    if manifest_entry.size > limits.max_manifest_bytes {
        return Err(manifest_too_large(manifest_entry.size));
    }
    let manifest_bytes =
        inflate(&mut archive, manifest_entry, limits.max_manifest_bytes, manifest_too_large)?;
    let manifest_text = String::from_utf8(manifest_bytes.clone())
        .map_err(|_| ArchiveError::BadManifest("not valid UTF-8".into()))?;
    let manifest = Manifest::parse(&manifest_text)?;
    let signature = match entries.iter().find(|e| e.name == SIGNATURE_NAME) {
        None => None,
        Some(entry) => {
            let too_large = |size| ArchiveError::EntryTooLarge {
                name: SIGNATURE_NAME.into(),
                size,
                limit: MAX_SIGNATURE_BYTES,
            };
            if entry.size > MAX_SIGNATURE_BYTES {
                return Err(too_large(entry.size));
            }
            Some(inflate(&mut archive, entry, MAX_SIGNATURE_BYTES, too_large)?)
        }
    };

    let by_name: HashMap<&str, &EntryInfo> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
    for entry in &entries {
        let listed = entry.name == MANIFEST_NAME
            || entry.name == SIGNATURE_NAME
            || manifest.cdylibs.iter().any(|c| c.file == entry.name);
        if !listed {
            return Err(ArchiveError::UnlistedEntry { name: entry.name.clone() });
        }
    }
    for cdylib in &manifest.cdylibs {
        if !by_name.contains_key(cdylib.file.as_str()) {
            return Err(ArchiveError::MissingCdylib { name: cdylib.file.clone() });
        }
    }

    check_declared_sizes(&entries, limits)?;

    let mut files = Vec::with_capacity(manifest.cdylibs.len());
    let mut total = manifest_entry.size;
    for cdylib in &manifest.cdylibs {
        let Some(entry) = by_name.get(cdylib.file.as_str()) else {
            return Err(ArchiveError::MissingCdylib { name: cdylib.file.clone() });
        };
        // The declared size already passed the limits; reading one byte past it catches an
        // entry that inflates to more than it claims, whatever the zip reader itself checks.
        let cap = entry.size.min(limits.max_entry_bytes);
        let overrun =
            |actual| ArchiveError::SizeMismatch { name: entry.name.clone(), declared: entry.size, actual };
        hash(Piece::Begin(usize::try_from(entry.size).unwrap_or(0)));
        let actual_size = fill_pieces(&mut archive, entry, cap, overrun, |piece| hash(Piece::Bytes(piece)))?;
        hash(Piece::End);
        if actual_size != entry.size {
            return Err(ArchiveError::SizeMismatch {
                name: entry.name.clone(),
                declared: entry.size,
                actual: actual_size,
            });
        }
        total = total.saturating_add(actual_size);
        if total > limits.max_total_bytes {
            return Err(ArchiveError::TotalTooLarge { total, limit: limits.max_total_bytes });
        }
        // The bytes are put together where they are hashed (see `open`).
        files.push(SourceFile { name: cdylib.file.clone(), bytes: Vec::new() });
    }

    Ok(Source { hash: String::new(), manifest, manifest_bytes, signature, files })
}

/// Reads the central directory: every entry must be an unencrypted regular file with a plain
/// name, and no name may appear twice.
fn list_entries(archive: &ZipArchive<Cursor<&[u8]>>) -> Result<Vec<EntryInfo>, ArchiveError> {
    // The reader keys entries by raw name, so a repeated name leaves only one of them visible;
    // it still counts them, and we refuse rather than guess which copy was meant.
    if archive.has_duplicate_names() {
        return Err(ArchiveError::DuplicateEntry);
    }
    let mut entries = Vec::with_capacity(archive.len());
    let mut seen = HashSet::new();
    for index in 0..archive.len() {
        let entry = archive.by_index_data(index).map_err(|e| ArchiveError::NotAZip(e.to_string()))?;
        let name = match entry.name() {
            Ok(name) => name.into_owned(),
            // Undecodable names cannot be plain file names.
            Err(_) => {
                return Err(ArchiveError::UnsafePath {
                    name: String::from_utf8_lossy(entry.name_raw()).into_owned(),
                });
            }
        };
        // The type first: "`lib/` is a directory" says more than "`lib/` escapes".
        if let Some(kind) = non_regular_kind(&name, entry.unix_mode()) {
            return Err(ArchiveError::NotRegularFile { name, kind });
        }
        if !is_plain_name(&name) {
            return Err(ArchiveError::UnsafePath { name });
        }
        if entry.encrypted() {
            return Err(ArchiveError::Encrypted { name });
        }
        // Distinct raw names can decode to the same text (CP437 vs UTF-8).
        if !seen.insert(name.clone()) {
            return Err(ArchiveError::DuplicateEntry);
        }
        entries.push(EntryInfo { index, name, size: entry.size(), compressed: entry.compressed_size() });
    }
    Ok(entries)
}

/// What kind of non-regular file an entry is, if it is one. A trailing slash marks a
/// directory in any zip; the unix mode, when the writer recorded one, tells the rest. Writers
/// that record permission bits without a file type are treated as regular files.
fn non_regular_kind(name: &str, unix_mode: Option<u32>) -> Option<&'static str> {
    if name.ends_with('/') || name.ends_with('\\') {
        return Some("directory");
    }
    match unix_mode? & S_IFMT {
        0 | S_IFREG => None,
        S_IFLNK => Some("symlink"),
        S_IFDIR => Some("directory"),
        S_IFCHR => Some("character device"),
        S_IFBLK => Some("block device"),
        S_IFIFO => Some("fifo"),
        S_IFSOCK => Some("socket"),
        _ => Some("file of unknown type"),
    }
}

/// Checks the sizes the central directory declares, before anything is inflated.
fn check_declared_sizes(entries: &[EntryInfo], limits: &ArchiveLimits) -> Result<(), ArchiveError> {
    let mut total: u64 = 0;
    for entry in entries {
        if entry.size > limits.max_entry_bytes {
            return Err(ArchiveError::EntryTooLarge {
                name: entry.name.clone(),
                size: entry.size,
                limit: limits.max_entry_bytes,
            });
        }
        if entry.size > RATIO_EXEMPT_BYTES && entry.size > entry.compressed.saturating_mul(limits.max_ratio) {
            return Err(ArchiveError::SuspiciousRatio {
                name: entry.name.clone(),
                size: entry.size,
                compressed: entry.compressed,
                limit: limits.max_ratio,
            });
        }
        total = total.saturating_add(entry.size);
        if total > limits.max_total_bytes {
            return Err(ArchiveError::TotalTooLarge { total, limit: limits.max_total_bytes });
        }
    }
    Ok(())
}

/// Inflates one entry, reading at most `cap + 1` bytes so a lying header cannot make us
/// allocate more; `too_large` builds the error when the entry holds more than `cap`.
fn inflate(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    entry: &EntryInfo,
    cap: u64,
    too_large: impl FnOnce(u64) -> ArchiveError,
) -> Result<Vec<u8>, ArchiveError> {
    // The declared size passed the limits before this call.
    let mut data = Vec::with_capacity(usize::try_from(entry.size.min(cap)).unwrap_or(0));
    fill_pieces(archive, entry, cap, too_large, |piece| data.extend_from_slice(&piece))?;
    Ok(data)
}

/// Inflates `entry` in pieces handed to `piece` as soon as each is in, reading at most `cap`
/// bytes (one more is an error); returns how many bytes it held.
fn fill_pieces(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    entry: &EntryInfo,
    cap: u64,
    too_large: impl FnOnce(u64) -> ArchiveError,
    mut piece: impl FnMut(Vec<u8>),
) -> Result<u64, ArchiveError> {
    const PIECE: u64 = 64 * 1024;
    let mut reader = entry_reader(archive, entry, cap)?;
    let mut read = 0u64;
    loop {
        let mut buf = Vec::with_capacity(PIECE as usize);
        let n = (&mut reader).take(PIECE).read_to_end(&mut buf).map_err(|e| corrupt(entry, &e))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        piece(buf);
    }
    if read > cap {
        return Err(too_large(read));
    }
    Ok(read)
}

/// A reader of `entry`'s inflated bytes that stops one byte past `cap` (so that an entry that
/// holds more than it declares is seen, whatever the zip reader itself checks).
fn entry_reader<'a, 'b>(
    archive: &'a mut ZipArchive<Cursor<&'b [u8]>>,
    entry: &EntryInfo,
    cap: u64,
) -> Result<std::io::Take<zip::read::ZipFile<'a, Cursor<&'b [u8]>>>, ArchiveError> {
    let file = archive.by_index(entry.index).map_err(|e| corrupt(entry, &e))?;
    Ok(file.take(cap.saturating_add(1)))
}

fn corrupt(entry: &EntryInfo, e: &dyn std::fmt::Display) -> ArchiveError {
    ArchiveError::Zip(format!("cannot read entry `{}`: {e}", entry.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package() -> PackageInfo {
        PackageInfo {
            name: "encoders".into(),
            version: "0.1.0".into(),
            abi_version: 1,
            msg_schema: 1,
            target: "x86_64-unknown-linux-gnu".into(),
        }
    }

    fn actor(type_name: &str, requires: &[&str]) -> ActorTypeEntry {
        ActorTypeEntry {
            type_name: type_name.into(),
            requires: requires.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn inputs() -> Vec<PackInput> {
        vec![
            PackInput {
                file_name: "libencoders.so".into(),
                bytes: b"\x7fELF pretend encoders".to_vec(),
                actors: vec![
                    actor("encoder.Base64Encoder", &["64bit encoder"]),
                    actor("encoder.Encoder", &[]),
                ],
            },
            PackInput {
                file_name: "libmorse.so".into(),
                bytes: b"\x7fELF pretend morse".to_vec(),
                actors: vec![actor("morse.MorseEncoder", &["morse"])],
            },
        ]
    }

    fn packed() -> Vec<u8> {
        pack(&package(), &inputs()).expect("pack")
    }

    fn open_default(bytes: &[u8]) -> Result<Source, ArchiveError> {
        open(bytes, &ArchiveLimits::default())
    }

    #[track_caller]
    fn assert_kind(result: Result<Source, ArchiveError>, kind: &str) {
        match result {
            Ok(_) => panic!("expected {kind}, but the archive was accepted"),
            Err(e) => {
                assert_eq!(e.kind(), kind, "unexpected error: {e}");
                assert!(!e.to_string().is_empty());
            }
        }
    }

    fn opts() -> SimpleFileOptions {
        SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
    }

    /// A manifest listing `files` (name, bytes) under one actor type each.
    fn manifest_for(files: &[(&str, &[u8])]) -> String {
        Manifest {
            package: package(),
            cdylibs: files
                .iter()
                .enumerate()
                .map(|(i, (name, bytes))| CdylibEntry {
                    file: name.to_string(),
                    sha256: sha256_hex(bytes),
                    actors: vec![actor(&format!("m.T{i}"), &[])],
                })
                .collect(),
        }
        .to_toml()
    }

    /// Writes a zip by hand: a manifest (if given) and then raw entries, in order.
    fn hand_zip(manifest: Option<&str>, entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        if let Some(text) = manifest {
            zip.start_file(MANIFEST_NAME, opts()).expect("start");
            zip.write_all(text.as_bytes()).expect("write");
        }
        for (name, bytes) in entries {
            zip.start_file(*name, opts()).expect("start");
            zip.write_all(bytes).expect("write");
        }
        zip.finish().expect("finish").into_inner()
    }

    const SAMPLE_TOML: &str = r#"
[package]
name = "encoders"
version = "0.1.0"
abi_version = 1
msg_schema = 1
target = "x86_64-unknown-linux-gnu"

[[cdylib]]
file = "libencoders.so"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[[cdylib.actor]]
type = "encoder.Base64Encoder"
requires = ["64bit encoder"]

[[cdylib.actor]]
type = "encoder.Encoder"
requires = []
"#;

    #[test]
    fn manifest_parses_design_example_and_round_trips() {
        let manifest = Manifest::parse(SAMPLE_TOML).expect("parse");
        assert_eq!(manifest.cdylibs.len(), 1);
        assert_eq!(manifest.cdylibs[0].actors.len(), 2);
        let (cdylib, entry) = manifest.find_type("encoder.Base64Encoder").expect("find");
        assert_eq!(cdylib.file, "libencoders.so");
        assert_eq!(entry.requires, vec!["64bit encoder".to_string()]);
        assert!(manifest.find_type("encoder.Nope").is_none());
        assert_eq!(Manifest::parse(&manifest.to_toml()).expect("reparse"), manifest);
    }

    #[test]
    fn manifest_rejects_unknown_fields_and_bad_names() {
        let unknown = SAMPLE_TOML.replace("msg_schema = 1", "msg_schema = 1\nextra = 2");
        let bad_file = SAMPLE_TOML.replace("libencoders.so", "../libencoders.so");
        let not_so = SAMPLE_TOML.replace("libencoders.so", "libencoders.dll");
        let two_dots = SAMPLE_TOML.replace("encoder.Encoder", "a.b.C");
        for text in [&unknown, &bad_file, &not_so, &two_dots] {
            let err = Manifest::parse(text).expect_err(text);
            assert_eq!(err.kind(), "bad_manifest", "{err}");
        }
        let no_cdylib = "[package]\nname = \"x\"\nversion = \"1\"\nabi_version = 1\n\
                         msg_schema = 1\ntarget = \"t\"\ncdylib = []\n";
        assert_eq!(Manifest::parse(no_cdylib).expect_err("empty").kind(), "bad_manifest");
    }

    #[test]
    fn round_trip_pack_open() {
        let bytes = packed();
        let source = open_default(&bytes).expect("open");
        assert_eq!(source.hash, sha256_hex(&bytes));
        let expected = Manifest {
            package: package(),
            cdylibs: inputs()
                .into_iter()
                .map(|i| CdylibEntry { file: i.file_name, sha256: sha256_hex(&i.bytes), actors: i.actors })
                .collect(),
        };
        assert_eq!(source.manifest, expected);
        let files: Vec<SourceFile> =
            inputs().into_iter().map(|i| SourceFile { name: i.file_name, bytes: i.bytes }).collect();
        assert_eq!(source.files, files);

        // The manifest is written first.
        let archive = ZipArchive::new(Cursor::new(&bytes[..])).expect("zip");
        assert_eq!(archive.name_for_index(0).expect("0").expect("name"), MANIFEST_NAME);
    }

    #[test]
    fn pack_is_deterministic() {
        assert_eq!(packed(), packed());
        let mut other = inputs();
        other[0].bytes.push(0);
        assert_ne!(packed(), pack(&package(), &other).expect("pack"));
    }

    #[test]
    fn pack_rejects_what_open_would_reject() {
        let mut bad = inputs();
        bad[1].file_name = "sub/libmorse.so".into();
        let err = pack(&package(), &bad).expect_err("nested name");
        assert_eq!(err.kind(), "bad_manifest");
        let mut dup = inputs();
        dup[1].actors = vec![actor("encoder.Encoder", &[])];
        let err = pack(&package(), &dup).expect_err("duplicate type");
        assert_eq!(err.kind(), "bad_manifest");
        let err = pack(&package(), &[]).expect_err("no cdylib");
        assert_eq!(err.kind(), "bad_manifest");
    }

    #[test]
    fn sha256_hex_is_lowercase_hex() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn garbage_is_not_a_zip() {
        assert_kind(open_default(b"this is not a zip archive at all"), "not_a_zip");
    }

    #[test]
    fn truncated_zip_is_not_a_zip() {
        let bytes = packed();
        assert_kind(open_default(&bytes[..bytes.len() / 2]), "not_a_zip");
    }

    #[test]
    fn empty_input_is_not_a_zip() {
        assert_kind(open_default(b""), "not_a_zip");
    }

    #[test]
    fn oversized_zip_is_refused_first() {
        let limits = ArchiveLimits { max_zip_bytes: 16, ..ArchiveLimits::default() };
        assert_kind(open(&packed(), &limits), "too_large");
        // The size check comes before any parsing.
        assert_kind(open(&[0u8; 17], &limits), "too_large");
    }

    #[test]
    fn missing_manifest() {
        let bytes = hand_zip(None, &[("liba.so", b"a")]);
        assert_kind(open_default(&bytes), "missing_manifest");
    }

    #[test]
    fn unparsable_manifest() {
        let bytes = hand_zip(Some("[package\nname = "), &[("liba.so", b"a")]);
        assert_kind(open_default(&bytes), "bad_manifest");
    }

    #[test]
    fn manifest_with_bad_type_name() {
        let text = manifest_for(&[("liba.so", b"a")]).replace("m.T0", "NoModule");
        assert_kind(open_default(&hand_zip(Some(&text), &[("liba.so", b"a")])), "bad_manifest");
    }

    #[test]
    fn manifest_with_bad_sha_format() {
        let text = manifest_for(&[("liba.so", b"a")]).replace(&sha256_hex(b"a"), "ABCDEF");
        assert_kind(open_default(&hand_zip(Some(&text), &[("liba.so", b"a")])), "bad_manifest");
        let upper = sha256_hex(b"a").to_uppercase();
        let text = manifest_for(&[("liba.so", b"a")]).replace(&sha256_hex(b"a"), &upper);
        assert_kind(open_default(&hand_zip(Some(&text), &[("liba.so", b"a")])), "bad_manifest");
    }

    #[test]
    fn manifest_with_duplicate_type() {
        let files: &[(&str, &[u8])] = &[("liba.so", b"a"), ("libb.so", b"b")];
        let text = manifest_for(files).replace("m.T1", "m.T0");
        assert_kind(open_default(&hand_zip(Some(&text), files)), "bad_manifest");
    }

    #[test]
    fn manifest_too_large() {
        let text = format!("# {}\n{}", "x".repeat(200), manifest_for(&[("liba.so", b"a")]));
        let limits = ArchiveLimits { max_manifest_bytes: 100, ..ArchiveLimits::default() };
        assert_kind(open(&hand_zip(Some(&text), &[("liba.so", b"a")]), &limits), "manifest_too_large");
    }

    #[test]
    fn sha256_mismatch() {
        let text = manifest_for(&[("liba.so", b"the real bytes")]);
        let bytes = hand_zip(Some(&text), &[("liba.so", b"some other bytes")]);
        assert_kind(open_default(&bytes), "hash_mismatch");
    }

    #[test]
    fn unsafe_entry_names() {
        for name in ["../evil.so", "/abs.so", "dir/x.so", "a\\b.so", "..", "new\nline.so"] {
            let text = manifest_for(&[("liba.so", b"a")]);
            let bytes = hand_zip(Some(&text), &[("liba.so", b"a"), (name, b"evil")]);
            match open_default(&bytes) {
                Err(ArchiveError::UnsafePath { name: got }) => assert_eq!(got, name),
                other => panic!("{name:?}: expected unsafe_path, got {other:?}"),
            }
        }
    }

    #[test]
    fn symlink_entry() {
        let text = manifest_for(&[("liba.so", b"a")]);
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file(MANIFEST_NAME, opts()).expect("start");
        zip.write_all(text.as_bytes()).expect("write");
        zip.add_symlink("liba.so", "/etc/passwd", opts()).expect("symlink");
        let bytes = zip.finish().expect("finish").into_inner();
        match open_default(&bytes) {
            Err(ArchiveError::NotRegularFile { name, kind }) => {
                assert_eq!((name.as_str(), kind), ("liba.so", "symlink"));
            }
            other => panic!("expected not_regular_file, got {other:?}"),
        }
    }

    #[test]
    fn directory_entry() {
        let text = manifest_for(&[("liba.so", b"a")]);
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file(MANIFEST_NAME, opts()).expect("start");
        zip.write_all(text.as_bytes()).expect("write");
        zip.start_file("liba.so", opts()).expect("start");
        zip.write_all(b"a").expect("write");
        zip.add_directory("lib", opts()).expect("dir");
        let bytes = zip.finish().expect("finish").into_inner();
        assert_kind(open_default(&bytes), "not_regular_file");
    }

    #[test]
    fn special_files_by_unix_mode() {
        // A directory without the trailing slash, and a fifo: only the mode gives them away.
        for (mode, kind) in [(S_IFDIR | 0o755, "directory"), (S_IFIFO | 0o644, "fifo")] {
            let text = manifest_for(&[("liba.so", b"a")]);
            let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
            zip.start_file(MANIFEST_NAME, opts()).expect("start");
            zip.write_all(text.as_bytes()).expect("write");
            zip.start_file("liba.so", opts().external_attributes(mode << 16)).expect("start");
            let bytes = zip.finish().expect("finish").into_inner();
            match open_default(&bytes) {
                Err(ArchiveError::NotRegularFile { kind: got, .. }) => assert_eq!(got, kind),
                other => panic!("expected not_regular_file, got {other:?}"),
            }
        }
    }

    #[test]
    fn duplicate_entry_names() {
        // `ZipWriter` refuses duplicate names, so write two distinct names of the same length
        // and patch the second into the first, in both the local and the central headers.
        let text = manifest_for(&[("liba.so", b"a")]);
        let mut bytes = hand_zip(Some(&text), &[("liba.so", b"a"), ("libz.so", b"z")]);
        let (from, to) = (b"libz.so", b"liba.so");
        let mut patched = 0;
        for i in 0..=bytes.len() - from.len() {
            if &bytes[i..i + from.len()] == from {
                bytes[i..i + from.len()].copy_from_slice(to);
                patched += 1;
            }
        }
        assert_eq!(patched, 2, "one local and one central header");
        assert_kind(open_default(&bytes), "duplicate_entry");
    }

    #[test]
    fn unlisted_extra_file() {
        let text = manifest_for(&[("liba.so", b"a")]);
        let bytes = hand_zip(Some(&text), &[("liba.so", b"a"), ("README", b"hi")]);
        match open_default(&bytes) {
            Err(ArchiveError::UnlistedEntry { name }) => assert_eq!(name, "README"),
            other => panic!("expected unlisted_entry, got {other:?}"),
        }
    }

    #[test]
    fn listed_cdylib_missing() {
        let text = manifest_for(&[("liba.so", b"a"), ("libb.so", b"b")]);
        let bytes = hand_zip(Some(&text), &[("liba.so", b"a")]);
        match open_default(&bytes) {
            Err(ArchiveError::MissingCdylib { name }) => assert_eq!(name, "libb.so"),
            other => panic!("expected missing_cdylib, got {other:?}"),
        }
    }

    #[test]
    fn too_many_entries() {
        let limits = ArchiveLimits { max_entries: 2, ..ArchiveLimits::default() };
        // The manifest and two cdylibs make three entries.
        assert_kind(open(&packed(), &limits), "too_many_entries");
        let limits = ArchiveLimits { max_entries: 3, ..ArchiveLimits::default() };
        assert!(open(&packed(), &limits).is_ok());
    }

    #[test]
    fn thousands_of_entries_are_refused_before_parsing() {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
        for i in 0..CENTRAL_HEADER_SLACK + 100 {
            zip.start_file(format!("{i}.so"), opts()).expect("start");
        }
        let bytes = zip.finish().expect("finish").into_inner();
        match open_default(&bytes) {
            Err(ArchiveError::TooManyEntries { count, .. }) => {
                assert_eq!(count, CENTRAL_HEADER_SLACK + 100)
            }
            other => panic!("expected too_many_entries, got {other:?}"),
        }
    }

    #[test]
    fn entry_too_large() {
        let big = vec![7u8; 4096];
        let text = manifest_for(&[("liba.so", &big)]);
        let bytes = hand_zip(Some(&text), &[("liba.so", &big)]);
        let limits = ArchiveLimits { max_entry_bytes: 1024, ..ArchiveLimits::default() };
        assert_kind(open(&bytes, &limits), "entry_too_large");
    }

    #[test]
    fn total_too_large() {
        let (a, b) = (vec![1u8; 3000], vec![2u8; 3000]);
        let files: &[(&str, &[u8])] = &[("liba.so", &a), ("libb.so", &b)];
        let bytes = hand_zip(Some(&manifest_for(files)), files);
        let limits = ArchiveLimits { max_total_bytes: 5000, ..ArchiveLimits::default() };
        assert_kind(open(&bytes, &limits), "total_too_large");
    }

    #[test]
    fn ratio_too_high() {
        let zeros = vec![0u8; 1024 * 1024];
        let text = manifest_for(&[("liba.so", &zeros)]);
        let bytes = hand_zip(Some(&text), &[("liba.so", &zeros)]);
        assert_kind(open_default(&bytes), "suspicious_ratio");
        // The same entry passes with the check relaxed: the ratio is what was refused.
        let limits = ArchiveLimits { max_ratio: 100_000, ..ArchiveLimits::default() };
        assert!(open(&bytes, &limits).is_ok());
    }

    /// Rewrites the uncompressed size the central directory declares for `name`.
    fn patch_declared_size(bytes: &mut [u8], name: &str, size: u32) {
        let sig = b"PK\x01\x02";
        let at = (0..bytes.len() - 46)
            .find(|&i| &bytes[i..i + 4] == sig && bytes[i + 46..].starts_with(name.as_bytes()))
            .expect("central header");
        bytes[at + 24..at + 28].copy_from_slice(&size.to_le_bytes());
    }

    #[test]
    fn entry_inflating_past_its_declared_size() {
        // Varied bytes, so the entry is not exempted or refused for its ratio.
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        let text = manifest_for(&[("liba.so", &data)]);
        let mut bytes = hand_zip(Some(&text), &[("liba.so", &data)]);
        patch_declared_size(&mut bytes, "liba.so", 10);
        // The zip reader notices too; either way the entry is refused and nothing past
        // the declared size plus one byte is inflated.
        let err = open_default(&bytes).expect_err("lying size");
        assert!(matches!(err.kind(), "size_mismatch" | "zip"), "unexpected error: {err}");
    }

    #[test]
    fn entry_shorter_than_its_declared_size() {
        let data = b"short".to_vec();
        let text = manifest_for(&[("liba.so", &data)]);
        let mut bytes = hand_zip(Some(&text), &[("liba.so", &data)]);
        patch_declared_size(&mut bytes, "liba.so", 100);
        let err = open_default(&bytes).expect_err("lying size");
        assert!(matches!(err.kind(), "size_mismatch" | "zip"), "unexpected error: {err}");
    }

    #[test]
    fn kinds_are_distinct() {
        let errors = [
            ArchiveError::NotAZip(String::new()),
            ArchiveError::TooLarge { size: 0, limit: 0 },
            ArchiveError::TooManyEntries { count: 0, limit: 0 },
            ArchiveError::UnsafePath { name: String::new() },
            ArchiveError::NotRegularFile { name: String::new(), kind: "" },
            ArchiveError::Encrypted { name: String::new() },
            ArchiveError::DuplicateEntry,
            ArchiveError::MissingManifest,
            ArchiveError::BadManifest(String::new()),
            ArchiveError::ManifestTooLarge { size: 0, limit: 0 },
            ArchiveError::UnlistedEntry { name: String::new() },
            ArchiveError::MissingCdylib { name: String::new() },
            ArchiveError::EntryTooLarge { name: String::new(), size: 0, limit: 0 },
            ArchiveError::TotalTooLarge { total: 0, limit: 0 },
            ArchiveError::SuspiciousRatio { name: String::new(), size: 0, compressed: 0, limit: 0 },
            ArchiveError::SizeMismatch { name: String::new(), declared: 0, actual: 0 },
            ArchiveError::HashMismatch {
                file: String::new(),
                expected: String::new(),
                actual: String::new(),
            },
            ArchiveError::Io(std::io::Error::other("x")),
            ArchiveError::Zip(String::new()),
        ];
        let kinds: HashSet<&str> = errors.iter().map(ArchiveError::kind).collect();
        assert_eq!(kinds.len(), errors.len());
    }
}
