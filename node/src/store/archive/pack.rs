//! Writing source archives: what `troupe pack` calls.
//!
//! The output is deterministic (fixed order, timestamps and permissions) because a source's
//! identity is the sha256 of its bytes: packing the same build twice must give the same hash.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::{sha256_hex, ActorTypeEntry, ArchiveError, CdylibEntry, Manifest, PackageInfo};
use super::{MANIFEST_NAME, SIGNATURE_NAME};

/// Fixed modification time of every entry [`pack`] writes (the earliest a zip can express), so
/// packing the same build twice gives the same bytes.
const PACK_MTIME: DateTime = DateTime::DEFAULT;
/// Fixed permissions of the manifest in packed archives.
const PACK_MANIFEST_MODE: u32 = 0o644;
/// Fixed permissions of cdylibs in packed archives: shared libraries are conventionally
/// executable; the node sets its own modes on the copies it loads anyway.
const PACK_CDYLIB_MODE: u32 = 0o755;

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
    pack_signed_at(package, cdylibs, sign, Compression::Small)
}

/// How hard [`pack_signed_at`] compresses the libraries. A node inflates either as fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// zstd level 9: about as small as deflate at its best (what `troupe pack` writes).
    Small,
    /// zstd level 1: a few times larger, ten times faster to write (the developer's loop,
    /// `troupe watch`, where packing is on the path from a save to the new code answering).
    Fast,
}

/// As [`pack_signed`], compressing the libraries as `compression` says.
pub fn pack_signed_at(
    package: &PackageInfo,
    cdylibs: &[PackInput],
    sign: Option<impl FnOnce(&[u8]) -> Vec<u8>>,
    compression: Compression,
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
        .compression_level(Some(match compression {
            Compression::Small => PACK_ZSTD_LEVEL,
            Compression::Fast => 1,
        }))
        .unix_permissions(PACK_CDYLIB_MODE);
    for input in cdylibs {
        zip.start_file(input.file_name.as_str(), lib_options)?;
        zip.write_all(&input.bytes)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// The zstd level `pack` compresses libraries with (decompression speed does not depend on it).
const PACK_ZSTD_LEVEL: i64 = 9;
