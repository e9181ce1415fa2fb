//! A test's own directory ([`TestDir`]) with the packing every test needs, and reading what a
//! node leaves on disk and in its mappings: which version a store file or a mapped library
//! copy belongs to, and every file under a directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::build::{ensure_built, plugin_lib};
use crate::cli::troupe;

/// A test's own directory, deleted when dropped.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDir {
    /// A fresh directory (and the build, so that what follows can use it).
    pub fn new() -> TestDir {
        ensure_built();
        TestDir {
            dir: tempfile::Builder::new().prefix("troupe-test-").tempdir().expect("cannot create a temp dir"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `troupe pack -o <dir>/<name> EXTRA... LIBS...`; returns the zip.
    pub fn pack_with(&self, name: &str, libs: &[PathBuf], extra: &[&str]) -> PathBuf {
        let out = self.join(name);
        let out_s = out.display().to_string();
        let mut args: Vec<String> = vec!["pack".into(), "-o".into(), out_s];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(libs.iter().map(|l| l.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        troupe(&args, None).assert_ok();
        out
    }

    /// `troupe pack` of `libs` into `<dir>/<name>`.
    pub fn pack(&self, name: &str, libs: &[PathBuf]) -> PathBuf {
        self.pack_with(name, libs, &[])
    }

    /// The demo encoders, packed.
    pub fn encoders_zip(&self) -> PathBuf {
        self.pack("encoders.zip", &[plugin_lib("troupe_encoders")])
    }

    /// The v2 encoders (Encoder reverses), packed.
    pub fn encoders_v2_zip(&self) -> PathBuf {
        self.pack("encoders-v2.zip", &[plugin_lib("troupe_encoders_v2")])
    }

    /// The faulty test plugin, packed.
    pub fn faulty_zip(&self) -> PathBuf {
        self.pack("faulty.zip", &[plugin_lib("troupe_test_faulty")])
    }

    /// A stripped copy of a plugin (same code, a fraction of the bytes): for tests that load
    /// many times, where hashing and inflating debug builds would dominate. Falls back to the
    /// library itself when `strip` is not installed.
    pub fn stripped(&self, name: &str) -> PathBuf {
        let lib = plugin_lib(name);
        let out = self.join(&format!("lib{name}.so"));
        let ok = Command::new("strip")
            .arg("-o")
            .arg(&out)
            .arg(&lib)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            out
        } else {
            lib
        }
    }
}

/// The version (`<hash>-<generation>`) a line of `/proc/<pid>/maps` maps a library copy of: a
/// memory file `/memfd:troupe:<hash>-<gen>:<file>`, or a store file `<store>/<hash>-<gen>.<file>`.
pub fn mapping_owner(line: &str, store: &Path) -> Option<String> {
    let path = line.split_whitespace().nth(5)?;
    if let Some(rest) = path.strip_prefix("/memfd:troupe:") {
        return rest.split(':').next().map(str::to_string);
    }
    Path::new(path).strip_prefix(store).ok().and_then(store_file_owner)
}

/// The version (`<hash>-<generation>`) a store file belongs to: the zip `<hash>-<gen>.zip`, a
/// library copy `<hash>-<gen>.<file>`, or one of them being written (`….part`).
pub fn store_file_owner(rel: &Path) -> Option<String> {
    let name = rel.to_str()?;
    let (stem, _) = name.split_once('.')?;
    let (hash, gen) = stem.rsplit_once('-')?;
    (hash.len() == 64 && gen.parse::<u64>().is_ok()).then(|| stem.to_string())
}

/// Every regular file under `dir` (none if it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn store_files_name_their_version() {
        for name in [".zip", ".libtroupe_encoders.so", ".zip.part"] {
            let file = format!("{HASH}-3{name}");
            assert_eq!(store_file_owner(Path::new(&file)), Some(format!("{HASH}-3")), "{file}");
        }
        assert_eq!(store_file_owner(Path::new("node.log")), None);
        assert_eq!(store_file_owner(Path::new("abc-1.zip")), None, "a hash has 64 digits");
        assert_eq!(store_file_owner(Path::new(&format!("{HASH}-x.zip"))), None, "a generation is a number");
    }

    #[test]
    fn mappings_of_memory_files_and_store_copies_name_their_version() {
        let store = Path::new("/tmp/s/store");
        let memfd = format!("7f00-7f01 r-xp 00000000 00:01 42 /memfd:troupe:{HASH}-2:libx.so (deleted)");
        assert_eq!(mapping_owner(&memfd, store), Some(format!("{HASH}-2")));
        let copy = format!("7f00-7f01 r-xp 00000000 08:01 42 /tmp/s/store/{HASH}-5.libx.so");
        assert_eq!(mapping_owner(&copy, store), Some(format!("{HASH}-5")));
        assert_eq!(mapping_owner("7f00-7f01 r-xp 00000000 08:01 42 /usr/lib/libc.so.6", store), None);
        assert_eq!(mapping_owner("7f00-7f01 rw-p 00000000 00:00 0", store), None);
    }
}
