//! The central directory, checked before anything is inflated: entry names and types,
//! duplicates, and the sizes and compression ratios each entry declares.
//!
//! Everything here reads only what the zip reader parsed from the directory; `inflate` is what
//! later checks the declared sizes against the bytes themselves.

use std::collections::HashSet;
use std::io::Cursor;

use zip::ZipArchive;

use super::manifest::is_plain_name;
use super::{ArchiveError, ArchiveLimits, KIB};

/// Entries this small are never reported for their compression ratio: inflating them cannot
/// hurt anyone, and tiny runs of repeated bytes (padding, empty tables) legitimately deflate
/// by more than [`DEFAULT_MAX_RATIO`](super::DEFAULT_MAX_RATIO). The size limits still apply
/// to them.
const RATIO_EXEMPT_BYTES: u64 = 64 * KIB;

// File-type bits of a unix mode (`st_mode & S_IFMT`), as stored in the high 16 bits of a zip
// entry's external attributes. Spelled out because the zip crate keeps its copies private.
const S_IFMT: u32 = 0o170_000;
const S_IFSOCK: u32 = 0o140_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFREG: u32 = 0o100_000;
const S_IFBLK: u32 = 0o060_000;
pub(super) const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
pub(super) const S_IFIFO: u32 = 0o010_000;

/// What [`open`](super::open) learns about an entry from the central directory, before
/// inflating it.
pub(super) struct EntryInfo {
    pub(super) index: usize,
    pub(super) name: String,
    pub(super) size: u64,
    pub(super) compressed: u64,
}

/// Reads the central directory: every entry must be an unencrypted regular file with a plain
/// name, and no name may appear twice.
pub(super) fn list_entries(archive: &ZipArchive<Cursor<&[u8]>>) -> Result<Vec<EntryInfo>, ArchiveError> {
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
pub(super) fn check_declared_sizes(
    entries: &[EntryInfo],
    limits: &ArchiveLimits,
) -> Result<(), ArchiveError> {
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
