//! Every input kept under `fuzz/regressions/<target>/` (crashes `make fuzz` found, and seeds)
//! fed to the same functions as the fuzz target of that name, so `make test` keeps them fixed
//! on stable Rust. A panic here is a regression.

use std::path::{Path, PathBuf};

use troupe_node::archive::{open, ArchiveLimits, Manifest};
use troupe_node::protocol::{decode, ClientFrame, ServerFrame, NONCE_BYTES};
use troupe_node::signing::Secret;

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

/// Runs `f` on every input of `target`, naming the input that panics.
fn each(target: &str, f: impl Fn(&[u8])) {
    for path in inputs(target) {
        let bytes = std::fs::read(&path).expect("read a regression input");
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&bytes))).is_err() {
            panic!("fuzz regression {} panics again", path.display());
        }
    }
}

#[test]
fn frame_inputs_decode_or_fail_cleanly() {
    each("frame", |data| {
        if let Ok(ClientFrame::Hello { auth: Some(a), .. }) = decode::<ClientFrame>(data) {
            let secret = Secret::from_bytes(b"fuzzing secret, 32 bytes long!!!");
            let nonce = [7u8; NONCE_BYTES];
            let _ = a.client_nonce.len() == NONCE_BYTES
                && secret.verify(&[b"client", &nonce, &a.client_nonce], &a.mac);
        }
        let _ = decode::<ServerFrame>(data);
    });
}

#[test]
fn manifest_inputs_parse_or_fail_cleanly() {
    each("manifest", |data| {
        if let Ok(text) = std::str::from_utf8(data) {
            if let Ok(m) = Manifest::parse(text) {
                let _ = m.validate();
                let _ = m.to_toml();
            }
        }
    });
}

#[test]
fn archive_inputs_open_or_fail_cleanly() {
    each("archive", |data| {
        let _ = open(data, &ArchiveLimits::default());
    });
}
