//! Where a version's libraries live while they are loaded: one private copy per (hash,
//! generation), never a path that was ever used for other bytes
//! (`reference/dylib-unloading.md` §5: dlopen of a reused path returns the old library).
//!
//! By default a copy is an anonymous memory file (`memfd_create`), opened through
//! `/proc/self/fd/N`. Writing it touches no filesystem: a load never waits for disk writeback or
//! a journal, which on a busy disk made loads 2–3 × slower, and nothing is left behind if the
//! node dies. `/proc/<pid>/maps` names the mapping `/memfd:troupe:<hash>-<gen>:<file> (deleted)`.
//! Where the kernel refuses memory files (`vm.memfd_noexec = 2`, or no descriptor left), the
//! copy is a file `<store>/<hash>-<gen>.<file>` instead, deleted when the version is gone.
//!
//! glibc looks a name up among the loaded libraries *before* it opens anything, so a
//! `/proc/self/fd/N` path must never be reused while a library loaded through it is still
//! mapped. [`LibImage::release`] therefore runs only after `dlclose`, checks with `RTLD_NOLOAD`
//! that the library is really gone, and keeps the descriptor open forever if it is not (a pinned
//! library, §2.3).

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a node copies each version's libraries to open them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LibCopies {
    /// Anonymous memory files (`memfd_create`): no disk write on the load path. Falls back to
    /// the store where the kernel refuses them.
    #[default]
    Memory,
    /// Files in the store (`<store>/<hash>-<gen>.<file>`), deleted when the version is gone.
    Store,
}

impl LibCopies {
    /// The value `--lib-copies` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            LibCopies::Memory => "memory",
            LibCopies::Store => "store",
        }
    }
}

impl std::str::FromStr for LibCopies {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "memory" => Ok(LibCopies::Memory),
            "store" => Ok(LibCopies::Store),
            other => Err(format!("--lib-copies takes memory or store, not {other:?}")),
        }
    }
}

/// The prefix of every memory file's name (after `memfd:` in `/proc/<pid>/maps`).
pub const MEMFD_PREFIX: &str = "troupe:";

/// One private copy of a library.
pub(crate) struct LibImage {
    /// What dlopen is given.
    path: PathBuf,
    /// The memory file, or `None` for a file in the store.
    memfd: Option<OwnedFd>,
    /// How status shows it.
    shown: String,
}

impl LibImage {
    /// Copies `bytes`, the library `file` of version `stem` (`<hash>-<gen>`), with
    /// `DF_1_NODELETE` cleared if it sets it (see [`super::elf`]: only the copy changes). The
    /// error says where the copy failed, or why the flag could not be cleared.
    pub(crate) fn create(
        copies: LibCopies,
        store: &Path,
        stem: &str,
        file: &str,
        bytes: &[u8],
    ) -> std::io::Result<LibImage> {
        let cleared = super::elf::without_nodelete(bytes).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("cannot load {file} of {stem}: {e}"))
        })?;
        if cleared.is_some() {
            tracing::info!(
                version = stem,
                library = file,
                "DF_1_NODELETE cleared in the private copy, so that unloading unmaps it"
            );
        }
        let bytes = cleared.as_deref().unwrap_or(bytes);
        let name = format!("{MEMFD_PREFIX}{stem}:{file}");
        let context =
            |what: String| move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"));
        let memfd = match copies {
            LibCopies::Memory => memfd_create(&name),
            LibCopies::Store => Err(std::io::Error::other("--lib-copies store")),
        };
        match memfd {
            Ok(fd) => {
                let mut f = std::fs::File::from(fd);
                f.write_all(bytes).map_err(context(format!("cannot copy {file} into a memory file")))?;
                let fd = OwnedFd::from(f);
                let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                Ok(LibImage { path, memfd: Some(fd), shown: format!("memfd:{name}") })
            }
            Err(e) => {
                if copies == LibCopies::Memory && !MEMFD_REFUSED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "memory files refused ({e}); version libraries are copied into the store instead"
                    );
                }
                let path = store.join(format!("{stem}.{file}"));
                write_file(&path, bytes).map_err(context(format!("cannot write {}", path.display())))?;
                Ok(LibImage { shown: path.display().to_string(), path, memfd: None })
            }
        }
    }

    /// The path to dlopen.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Where the copy is, for status: `memfd:troupe:<hash>-<gen>:<file>` or a store path.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Keeps the copy for good: for a library that may still be mapped and can never be closed
    /// safely.
    pub(crate) fn leak(self) {
        if let Some(fd) = self.memfd {
            std::mem::forget(fd);
        }
    }

    /// Frees the copy. Call only after the library opened from it was closed.
    pub(crate) fn release(self) {
        match self.memfd {
            None => remove_if_there(&self.path),
            Some(fd) => {
                if still_loaded(&self.path) {
                    // Its path must stay unique for as long as the mapping lives: never close.
                    tracing::warn!(library = %self.shown, "library still mapped after dlclose (pinned); its memory file is kept");
                    std::mem::forget(fd);
                }
            }
        }
    }
}

/// Set once memfd_create failed, so the fallback is reported once.
static MEMFD_REFUSED: AtomicBool = AtomicBool::new(false);

fn memfd_create(name: &str) -> std::io::Result<OwnedFd> {
    let cname = CString::new(name).map_err(|_| std::io::Error::other("NUL in a library name"))?;
    // SAFETY: a valid C string and flags; the result is checked.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether a library opened from `path` is still loaded (a probe that loads nothing).
fn still_loaded(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: with RTLD_NOLOAD dlopen never loads a library; a handle it returns holds one more
    // reference, dropped at once.
    unsafe {
        let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_LOCAL);
        if h.is_null() {
            false
        } else {
            libc::dlclose(h);
            true
        }
    }
}

/// Deletes a store file that may not exist (any other failure is logged).
pub(crate) fn remove_if_there(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), "cannot delete: {e}");
        }
    }
}

/// Writes `bytes` at `path` through a temporary name and a rename: a crash never leaves a
/// half-written file at a path that could be opened. No fsync: the store is emptied at start.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Named after the file it becomes (`<hash>-<gen>.zip.XXXXXX.part`), so that even a write in
    // progress shows whose it is.
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new().prefix(&format!("{name}.")).suffix(".part").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_file_holds_the_bytes_and_is_named_for_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let image = LibImage::create(LibCopies::Memory, dir.path(), "abc-7", "libx.so", b"hello").unwrap();
        assert_eq!(std::fs::read(image.path()).unwrap(), b"hello");
        assert_eq!(image.shown(), "memfd:troupe:abc-7:libx.so");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing was written to the store");
        let path = image.path().to_path_buf();
        image.release();
        // Closed: the number is free (or already reused by another test's descriptor).
        let target = std::fs::read_link(&path).map(|l| l.display().to_string()).unwrap_or_default();
        assert!(!target.starts_with("/memfd:troupe:abc-7:"), "the memory file is still open: {target}");
    }

    #[test]
    fn a_copy_of_a_nodelete_library_has_the_flag_cleared_and_the_source_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let (tiny, little) = (crate::store::elf::tests::tiny, object::elf::ELFDATA2LSB);
        let source = tiny(little, object::elf::DF_1_NOW.0 | object::elf::DF_1_NODELETE.0);
        let before = source.clone();
        for copies in [LibCopies::Memory, LibCopies::Store] {
            let image = LibImage::create(copies, dir.path(), "abc-8", "libn.so", &source).unwrap();
            let copy = std::fs::read(image.path()).unwrap();
            assert_eq!(
                copy,
                tiny(little, object::elf::DF_1_NOW.0),
                "{copies:?}: the copy is without the flag"
            );
            image.release();
        }
        assert_eq!(source, before, "the source bytes (the zip's) are not changed");
    }

    #[test]
    fn a_store_copy_is_a_file_named_for_the_version_and_deleted_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let image = LibImage::create(LibCopies::Store, dir.path(), "abc-7", "libx.so", b"hello").unwrap();
        let path = dir.path().join("abc-7.libx.so");
        assert_eq!(image.path(), path);
        assert_eq!(image.shown(), path.display().to_string());
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        image.release();
        assert!(!path.exists());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing is left in the store");
    }
}
