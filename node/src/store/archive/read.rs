//! Reading a source archive: [`open`], the only way the node reads a zip.
//!
//! The checks run in a fixed order, cheapest and most telling first, and everything the zip
//! declares is checked before any cdylib is inflated (see [`open`] for the list). Each step is
//! a helper below, called in that order by [`open_entries`]. Hashing runs beside inflating: a
//! library's pieces go to an [`Assembler`], on a second core for all but tiny zips.

use std::collections::HashMap;
use std::io::Cursor;

use sha2::{Digest, Sha256};
use zip::ZipArchive;

use super::directory::{check_declared_sizes, list_entries, EntryInfo};
use super::inflate::{fill_pieces, inflate};
use super::{sha256_hex, ArchiveError, ArchiveLimits, Manifest, Source, SourceFile};
use super::{MANIFEST_NAME, SIGNATURE_NAME};

/// A signature file is two short hex strings; anything bigger is not one.
const MAX_SIGNATURE_BYTES: u64 = 4096;

/// What a central directory header starts with (APPNOTE 4.3.12).
const CENTRAL_HEADER_SIG: &[u8; 4] = b"PK\x01\x02";
/// The zip reader parses the whole central directory before we can count its entries, and
/// each parsed entry costs a few hundred bytes of memory against ~50 bytes on the wire: a zip
/// of nothing but tiny entries could cost GiBs. Counting the header signature first bounds
/// what that parse can produce. The slack stops signature bytes that happen to occur inside
/// file data from ever refusing a real source.
pub(super) const CENTRAL_HEADER_SLACK: usize = 1024;

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
    let mut archive = read_directory(bytes, limits)?;
    let entries = list_entries(&archive)?;
    let manifest_entry =
        entries.iter().find(|e| e.name == MANIFEST_NAME).ok_or(ArchiveError::MissingManifest)?;
    let (manifest, manifest_bytes) = read_manifest(&mut archive, manifest_entry, limits)?;
    let signature = read_signature(&mut archive, &entries)?;
    let by_name = match_entries(&entries, &manifest)?;
    check_declared_sizes(&entries, limits)?;
    let files = inflate_cdylibs(&mut archive, &manifest, &by_name, manifest_entry.size, limits, hash)?;
    Ok(Source { hash: String::new(), manifest, manifest_bytes, signature, files })
}

/// Checks the zip as a whole, then parses its central directory: the size and the count of
/// header signatures come first, so that a crafted directory is refused before the zip reader
/// spends memory on it.
fn read_directory<'b>(
    bytes: &'b [u8],
    limits: &ArchiveLimits,
) -> Result<ZipArchive<Cursor<&'b [u8]>>, ArchiveError> {
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
    let archive = ZipArchive::new(Cursor::new(bytes)).map_err(|e| ArchiveError::NotAZip(e.to_string()))?;
    if archive.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries { count: archive.len(), limit: limits.max_entries });
    }
    Ok(archive)
}

/// Inflates the manifest under its own, smaller cap and parses it; returns it with its exact
/// bytes (what a signature covers).
fn read_manifest(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    entry: &EntryInfo,
    limits: &ArchiveLimits,
) -> Result<(Manifest, Vec<u8>), ArchiveError> {
    let too_large = |size| ArchiveError::ManifestTooLarge { size, limit: limits.max_manifest_bytes };
    if entry.size > limits.max_manifest_bytes {
        return Err(too_large(entry.size));
    }
    let bytes = inflate(archive, entry, limits.max_manifest_bytes, too_large)?;
    let text =
        String::from_utf8(bytes.clone()).map_err(|_| ArchiveError::BadManifest("not valid UTF-8".into()))?;
    let manifest = Manifest::parse(&text)?;
    Ok((manifest, bytes))
}

/// Inflates the signature entry, if the source has one. Only its size is checked here; what it
/// says is for [`crate::store::signing`].
fn read_signature(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    entries: &[EntryInfo],
) -> Result<Option<Vec<u8>>, ArchiveError> {
    let Some(entry) = entries.iter().find(|e| e.name == SIGNATURE_NAME) else {
        return Ok(None);
    };
    let too_large =
        |size| ArchiveError::EntryTooLarge { name: SIGNATURE_NAME.into(), size, limit: MAX_SIGNATURE_BYTES };
    if entry.size > MAX_SIGNATURE_BYTES {
        return Err(too_large(entry.size));
    }
    Ok(Some(inflate(archive, entry, MAX_SIGNATURE_BYTES, too_large)?))
}

/// Matches the entries with the manifest one to one: each entry is the manifest, the
/// signature or a listed cdylib, and each listed cdylib is there. Returns the entries by name.
fn match_entries<'e>(
    entries: &'e [EntryInfo],
    manifest: &Manifest,
) -> Result<HashMap<&'e str, &'e EntryInfo>, ArchiveError> {
    let by_name: HashMap<&str, &EntryInfo> = entries.iter().map(|e| (e.name.as_str(), e)).collect();
    for entry in entries {
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
    Ok(by_name)
}

/// Inflates the cdylibs in the manifest's order, their pieces going to `hash`, and keeps the
/// running total under the limit; `counted` is what the manifest already added to it. The
/// files come back empty: their bytes are put together where they are hashed (see [`open`]).
fn inflate_cdylibs(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    manifest: &Manifest,
    by_name: &HashMap<&str, &EntryInfo>,
    counted: u64,
    limits: &ArchiveLimits,
    hash: &mut dyn FnMut(Piece),
) -> Result<Vec<SourceFile>, ArchiveError> {
    let mut files = Vec::with_capacity(manifest.cdylibs.len());
    let mut total = counted;
    for cdylib in &manifest.cdylibs {
        let Some(entry) = by_name.get(cdylib.file.as_str()) else {
            return Err(ArchiveError::MissingCdylib { name: cdylib.file.clone() });
        };
        let actual_size = inflate_cdylib(archive, entry, limits, hash)?;
        total = total.saturating_add(actual_size);
        if total > limits.max_total_bytes {
            return Err(ArchiveError::TotalTooLarge { total, limit: limits.max_total_bytes });
        }
        files.push(SourceFile { name: cdylib.file.clone(), bytes: Vec::new() });
    }
    Ok(files)
}

/// Inflates one cdylib into `hash` ([`Piece::Begin`], its pieces, [`Piece::End`]) and checks
/// that it holds exactly the bytes it declares; returns that size.
fn inflate_cdylib(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    entry: &EntryInfo,
    limits: &ArchiveLimits,
    hash: &mut dyn FnMut(Piece),
) -> Result<u64, ArchiveError> {
    // The declared size already passed the limits; reading one byte past it catches an
    // entry that inflates to more than it claims, whatever the zip reader itself checks.
    let cap = entry.size.min(limits.max_entry_bytes);
    let overrun =
        |actual| ArchiveError::SizeMismatch { name: entry.name.clone(), declared: entry.size, actual };
    hash(Piece::Begin(usize::try_from(entry.size).unwrap_or(0)));
    let actual_size = fill_pieces(archive, entry, cap, overrun, |piece| hash(Piece::Bytes(piece)))?;
    hash(Piece::End);
    if actual_size != entry.size {
        return Err(ArchiveError::SizeMismatch {
            name: entry.name.clone(),
            declared: entry.size,
            actual: actual_size,
        });
    }
    Ok(actual_size)
}
