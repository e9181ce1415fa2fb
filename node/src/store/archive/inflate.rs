//! Inflating one entry under a hard cap. The size an entry declares is never trusted: at most
//! one byte past the cap is read, so a lying header cannot make the node allocate more.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use super::directory::EntryInfo;
use super::ArchiveError;

/// Inflates one entry, reading at most `cap + 1` bytes so a lying header cannot make us
/// allocate more; `too_large` builds the error when the entry holds more than `cap`.
pub(super) fn inflate(
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
pub(super) fn fill_pieces(
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
