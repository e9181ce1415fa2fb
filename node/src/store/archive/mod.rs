//! Source archives: the zip files that carry plugin code into a node.
//!
//! A *source* is a zip holding a manifest ([`MANIFEST_NAME`], TOML, see [`Manifest`]) plus the
//! cdylibs it lists. Its identity is its [hash](Source::hash): the lowercase hex sha256 of the
//! zip bytes exactly as given (DESIGN.md §3).
//!
//! Two entry points, one per side of the wire:
//!
//! - [`pack`](fn@pack) is what `troupe pack` calls. It hashes each cdylib, writes the manifest
//!   first and then the cdylibs, with fixed timestamps and permissions so the same build always
//!   gives the same bytes and therefore the same hash.
//! - [`open`] is the only way the node reads a zip. Every load, and every source fetched from a
//!   peer, goes through it before the source authority sees it and long before any code is
//!   loaded. It treats the bytes as hostile: it checks sizes, entry names and types, and the
//!   manifest against the directory *before* inflating any cdylib, then inflates each one under
//!   a hard cap and checks its sha256 against the manifest.
//!
//! Nothing here touches the file system; the store decides where the checked bytes go.
//!
//! The work is split by job, one way: `read` and `pack` use `manifest`, and `read` uses
//! `directory` and `inflate`; nothing below calls back up.
//!
//! - this file: the public vocabulary (names, limits, errors, [`Source`], [`sha256_hex`]);
//! - `manifest`: the [`Manifest`] types, TOML in and out, and what serde cannot check;
//! - `pack`: writing archives ([`pack`](fn@pack), [`pack_signed`]);
//! - `read`: [`open`], which runs the checks in order and hashes on a second core;
//! - `directory`: what the central directory says about each entry, checked before inflating;
//! - `inflate`: inflating one entry under a hard cap.

use sha2::{Digest, Sha256};

mod directory;
mod inflate;
mod manifest;
mod pack;
mod read;
#[cfg(test)]
mod tests;

pub use manifest::{ActorTypeEntry, CdylibEntry, Manifest, PackageInfo};
pub use pack::{pack, pack_signed, pack_signed_at, Compression, PackInput};
pub use read::open;

/// Name of the manifest inside every source archive. Fixed so the node can find it without
/// guessing, and namespaced so it cannot be mistaken for a plugin file.
pub const MANIFEST_NAME: &str = "troupe.toml";

/// Name of the optional signature entry (see [`crate::store::signing`]): it signs the manifest, which
/// holds every cdylib's sha256, so it covers the whole source.
pub const SIGNATURE_NAME: &str = "troupe.sig";

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

/// Lowercase hex sha256 of `bytes`: the hash of a source, and of each cdylib in its manifest.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

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
