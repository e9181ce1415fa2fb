//! Zips for the tests: variants of a packed zip that differ only in their package version,
//! hand-made zips for bad sources, and the manifest of a packed zip.

use std::io::{Read, Write};
use std::path::Path;

/// Copies of a packed zip that differ only in the manifest's package version (so each has its
/// own hash), made without re-compressing the libraries.
pub struct ZipVariants {
    base: Vec<u8>,
    manifest: String,
    version_line: String,
}

impl ZipVariants {
    /// From a zip written by `troupe pack`.
    pub fn new(zip: &Path) -> ZipVariants {
        let base = std::fs::read(zip).expect("cannot read the base zip");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&base)).expect("the base zip is a zip");
        let mut manifest = String::new();
        archive
            .by_name("troupe.toml")
            .expect("the base zip has a manifest")
            .read_to_string(&mut manifest)
            .expect("the manifest is text");
        let version_line = manifest
            .lines()
            .find(|l| l.trim_start().starts_with("version ="))
            .expect("the manifest has a package version")
            .to_string();
        ZipVariants { base, manifest, version_line }
    }

    /// The variant with package version `version`.
    pub fn make(&self, version: &str) -> Vec<u8> {
        let manifest = self.manifest.replacen(&self.version_line, &format!("version = \"{version}\""), 1);
        let mut archive =
            zip::ZipArchive::new(std::io::Cursor::new(&self.base)).expect("the base zip is a zip");
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("troupe.toml", opts).expect("zip write");
        w.write_all(manifest.as_bytes()).expect("zip write");
        for i in 0..archive.len() {
            let f = archive.by_index_raw(i).expect("zip entry");
            if f.name().map(|n| n != "troupe.toml").unwrap_or(true) {
                w.raw_copy_file(f).expect("zip copy");
            }
        }
        w.finish().expect("zip finish").into_inner()
    }
}

/// A zip with exactly these `(name, bytes)` entries, stored uncompressed: for hand-made bad
/// sources.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        w.start_file(*name, opts).expect("zip write");
        w.write_all(bytes).expect("zip write");
    }
    w.finish().expect("zip finish").into_inner()
}

/// The manifest (`troupe.toml` text) of a packed zip.
pub fn manifest_of(zip: &Path) -> String {
    let bytes = std::fs::read(zip).expect("cannot read zip");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let mut s = String::new();
    archive.by_name("troupe.toml").expect("a manifest").read_to_string(&mut s).expect("text");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_differ_only_in_the_package_version() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = dir.path().join("base.zip");
        let manifest = "[package]\nname = \"demo\"\nversion = \"0.1.0\"\n";
        std::fs::write(&base, zip_of(&[("troupe.toml", manifest.as_bytes()), ("lib.so", b"code")]))
            .expect("write the base zip");
        let variant = dir.path().join("v.zip");
        std::fs::write(&variant, ZipVariants::new(&base).make("9.9.9")).expect("write the variant");
        assert_eq!(manifest_of(&variant), manifest.replace("0.1.0", "9.9.9"));
        let mut archive =
            zip::ZipArchive::new(std::fs::File::open(&variant).expect("open")).expect("the variant is a zip");
        let mut code = String::new();
        archive.by_name("lib.so").expect("the library is kept").read_to_string(&mut code).expect("read");
        assert_eq!(code, "code");
    }
}
