//! Unit tests for the whole archive module: manifest parsing, pack/open round trips, and one
//! test per way [`open`](super::open) refuses a hostile zip (each asserting the error kind a
//! user would see). Hand-built zips stand in for crafted input.

use std::collections::HashSet;
use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::directory::{S_IFDIR, S_IFIFO};
use super::read::CENTRAL_HEADER_SLACK;
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
        replaces: vec![],
    }
}

fn inputs() -> Vec<PackInput> {
    vec![
        PackInput {
            file_name: "libencoders.so".into(),
            bytes: b"\x7fELF pretend encoders".to_vec(),
            actors: vec![actor("encoder.Base64Encoder", &["64bit encoder"]), actor("encoder.Encoder", &[])],
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
fn manifest_requirements_may_ask_for_values_and_bad_ones_are_named() {
    let values = SAMPLE_TOML.replace(r#"["64bit encoder"]"#, r#"["64bit encoder", "mem>=32", "gpu=A100"]"#);
    let m = Manifest::parse(&values).expect("requirements with values");
    assert_eq!(m.find_type("encoder.Base64Encoder").unwrap().1.requires[1], "mem>=32");
    let bad = SAMPLE_TOML.replace(r#"["64bit encoder"]"#, r#"["mem>=lots"]"#);
    let err = Manifest::parse(&bad).expect_err("a comparison with a word");
    assert_eq!(err.kind(), "bad_manifest");
    assert!(err.to_string().contains("mem>=lots") && err.to_string().contains("not a number"), "{err}");
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
        ArchiveError::HashMismatch { file: String::new(), expected: String::new(), actual: String::new() },
        ArchiveError::Io(std::io::Error::other("x")),
        ArchiveError::Zip(String::new()),
    ];
    let kinds: HashSet<&str> = errors.iter().map(ArchiveError::kind).collect();
    assert_eq!(kinds.len(), errors.len());
}
