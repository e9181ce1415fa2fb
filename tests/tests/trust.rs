//! Trust in what is loaded: signed sources (checked by `troupe verify` and by a node with the
//! ed25519 authority, including a member fetching from its leader) and bad archives through
//! `troupe load`. The admin port's handshake and hostile input on it are in
//! `trust_handshake.rs`.
//!
//! Every test drives real node processes on loopback ports chosen at run time.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use troupe_node::client::{Client, ClientError};
use troupe_node::protocol::{Request, Response};
use troupe_tests::*;

// ---- zips ------------------------------------------------------------------------------------

/// The entries of a zip, inflated, in order.
fn entries_of(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
    (0..a.len())
        .map(|i| {
            let mut f = a.by_index(i).expect("zip entry");
            let mut v = Vec::new();
            f.read_to_end(&mut v).expect("zip read");
            (f.name().expect("entry name").to_string(), v)
        })
        .collect()
}

/// The zip rewritten (entries stored) after `edit` changed an entry's bytes.
fn rewrite(zip: &[u8], mut edit: impl FnMut(&str, &mut Vec<u8>)) -> Vec<u8> {
    let mut entries = entries_of(zip);
    for (name, bytes) in &mut entries {
        edit(name, bytes);
    }
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    zip_of(&refs)
}

fn keygen(dir: &TestDir, name: &str) -> (PathBuf, PathBuf) {
    let base = dir.join(name);
    troupe(&["keygen", "-o", &base.display().to_string()], None).assert_ok();
    (base.with_extension("key"), base.with_extension("pub"))
}

/// The `code` of the node's refusal of a load of `zip`, or `None` if it loaded.
async fn load_code(client: &mut Client, zip: Vec<u8>) -> Option<(String, String)> {
    match client.request(Request::Load { zip, info: "trust test".into() }).await {
        Ok(Response::Loaded { .. }) => None,
        Err(ClientError::Refused(r)) => Some((r.code, r.message)),
        other => panic!("unexpected answer to a load: {other:?}"),
    }
}

fn write_zip(dir: &TestDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("cannot write a zip");
    p
}

// ---- signed sources -----------------------------------------------------------------------------

/// A directory of trusted public keys: each `(key, name)` copied in as `name`.
fn trusted_keys(dir: &TestDir, keys: &[(&Path, &str)]) -> PathBuf {
    let trusted = dir.join("trusted");
    std::fs::create_dir(&trusted).expect("mkdir");
    for (key, name) in keys {
        std::fs::copy(key, trusted.join(name)).expect("copy");
    }
    trusted
}

/// `troupe pack --sign KEY` of `lib`.
fn pack_signed(dir: &TestDir, name: &str, lib: &Path, key: &Path) -> PathBuf {
    dir.pack_with(name, &[lib.to_path_buf()], &["--sign", &key.display().to_string()])
}

/// `troupe verify ZIP --trusted-keys DIR`.
fn verify(zip: &Path, trusted: &str) -> Cli {
    troupe(&["verify", &zip.display().to_string(), "--trusted-keys", trusted], None)
}

/// A load the node must refuse: what the zip is, the zip, the refusal's code and words.
type Refusal = (&'static str, Vec<u8>, &'static str, &'static str);

/// Copies of the signed zip `a` with one thing changed each (the byte of the cdylib, of the
/// manifest or of the signature, or the whole signature entry), and how each must be refused.
fn tampered_copies(a: &[u8]) -> Vec<Refusal> {
    let one_byte_of_cdylib = rewrite(a, |name, bytes| {
        if name.ends_with(".so") {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x01;
        }
    });
    let one_byte_of_manifest = rewrite(a, |name, bytes| {
        if name == "troupe.toml" {
            let text = String::from_utf8(bytes.clone()).expect("manifest text");
            let at = text.find("version = \"").expect("a version line") + "version = \"".len();
            bytes[at] = if bytes[at] == b'9' { b'8' } else { b'9' };
        }
    });
    let one_byte_of_signature = rewrite(a, |name, bytes| {
        if name == "troupe.sig" {
            let text = String::from_utf8(bytes.clone()).expect("signature text");
            let at = text.find("signature = \"").expect("a signature line") + "signature = \"".len();
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        }
    });
    let malformed_signature = rewrite(a, |name, bytes| {
        if name == "troupe.sig" {
            *bytes = b"this is [[ not a signature".to_vec();
        }
    });
    vec![
        ("one byte of the cdylib changed", one_byte_of_cdylib, "hash_mismatch", "sha256"),
        ("one byte of the manifest changed", one_byte_of_manifest, "bad_signature", "altered"),
        ("one byte of the signature changed", one_byte_of_signature, "bad_signature", "altered"),
        ("a malformed signature entry", malformed_signature, "malformed_signature", "malformed"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_sources_load_and_unsigned_untrusted_or_tampered_ones_are_refused_with_distinct_reasons() {
    let dir = TestDir::new();
    let (key_a, pub_a) = keygen(&dir, "release-a");
    let (key_b, _pub_b) = keygen(&dir, "stranger");
    let (key_c, pub_c) = keygen(&dir, "release-c");
    // Two trusted keys at once: a rotation from release-a to release-c.
    let trusted = trusted_keys(&dir, &[(&pub_a, "release-a.pub"), (&pub_c, "release-c.pub")]);
    let trusted_s = trusted.display().to_string();

    let lib = dir.stripped("troupe_test_faulty");
    let signed_a = pack_signed(&dir, "signed-a.zip", &lib, &key_a);
    let signed_b = pack_signed(&dir, "signed-b.zip", &lib, &key_b);
    let signed_c = pack_signed(&dir, "signed-c.zip", &lib, &key_c);
    let unsigned = dir.pack("unsigned.zip", std::slice::from_ref(&lib));

    // `troupe verify` says the same as the node will, before anything is loaded.
    let ok = verify(&signed_a, &trusted_s);
    ok.assert_ok();
    let bad = verify(&unsigned, &trusted_s);
    assert_ne!(bad.code, 0, "verify accepted an unsigned zip:\n{bad}");
    assert!(bad.stderr.contains("not signed"), "verify does not say the zip is unsigned:\n{bad}");

    let node = NodeProc::start_with(&dir, "", &["--authority", "ed25519", "--trusted-keys", &trusted_s]);
    let mut client = node.client().await;
    let a = std::fs::read(&signed_a).expect("read");

    // A plain rewrite (same entries, stored) still verifies: the tampered copies below differ
    // from it by the one byte named, nothing else.
    let control = rewrite(&a, |_, _| {});
    assert_eq!(load_code(&mut client, control).await, None, "a signed zip, rewritten unchanged, was refused");

    let mut cases: Vec<Refusal> = vec![
        ("unsigned", std::fs::read(&unsigned).expect("read"), "unsigned", "not signed"),
        (
            "signed by an untrusted key",
            std::fs::read(&signed_b).expect("read"),
            "untrusted_key",
            "not one of the trusted keys",
        ),
    ];
    cases.extend(tampered_copies(&a));
    let mut codes = Vec::new();
    for (what, zip, code, words) in cases {
        let Some((got, message)) = load_code(&mut client, zip).await else {
            panic!("the ed25519 node loaded a zip that is {what}");
        };
        assert_eq!(got, code, "a zip that is {what} was refused as {got}: {message}");
        assert!(
            message.contains(words),
            "the refusal of a zip that is {what} does not say {words:?}: {message}"
        );
        codes.push(got);
    }
    codes.dedup();
    assert!(codes.len() >= 4, "the reasons are not distinct: {codes:?}");

    // The CLI shows the reason and exits 1.
    let out = node.run("load", &[&unsigned.display().to_string()]);
    out.assert_code(1).assert_stderr_has(&["not signed"]);

    // Signed by either trusted key: loads.
    node.load(&signed_a);
    node.load(&signed_c);
    let st = node.status();
    assert!(st.authority.starts_with("ed25519"), "status shows the authority {:?}", st.authority);
    let active = st.versions.iter().filter(|v| v.state == "active").count();
    assert_eq!(active, 3, "expected the control copy and the two signed zips active: {:#?}", st.versions);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_with_the_ed25519_authority_refuses_a_version_its_leader_accepted_unsigned() {
    let dir = TestDir::new();
    let (_key, public) = keygen(&dir, "release");
    let trusted = trusted_keys(&dir, &[(&public, "release.pub")]);

    // The leader (accept-all) loads the faulty plugin unsigned and hosts a Spawner before the
    // member joins, so the Spawner lives on the leader.
    let leader = NodeProc::start(&dir, "");
    let zip = dir.pack("faulty.zip", &[dir.stripped("troupe_test_faulty")]);
    let hash = leader.load(&zip);
    let mut client = leader.client().await;
    let spawner = create(&mut client, "faulty.Spawner", &hash).await.expect("create the spawner");

    let leader_addr = leader.addr();
    let trusted_s = trusted.display().to_string();
    let member = NodeProc::start_member(
        &dir,
        &leader_addr,
        "picky",
        &["--authority", "ed25519", "--trusted-keys", &trusted_s],
    );
    leader.wait_members(&[member.addr()]);

    // faulty.Picky needs `picky`, which only the member has: the member must fetch the version
    // from the leader, and its authority refuses the unsigned bytes.
    send_text(&mut client, &spawner, &format!("create faulty.Picky {hash}")).await;
    let created = text_matching(&mut client, REPLY_TIMEOUT, |t| {
        t.starts_with("created") || t.starts_with("create failed")
    })
    .await;
    let outcome = if created.starts_with("create failed") {
        created
    } else {
        text_matching(&mut client, REPLY_TIMEOUT, |t| t.starts_with("child exited")).await
    };
    assert!(
        outcome.contains("sign"),
        "the create failed, but the reason does not mention the signature: {outcome}"
    );
    let st = member.status();
    assert!(
        st.versions.is_empty(),
        "the member installed a version it should have refused: {:#?}",
        st.versions
    );
    assert!(st.actors.is_empty(), "an actor runs on the member: {:#?}", st.actors);
    assert!(files_under(&member.store()).is_empty(), "the refused version left files in the member's store");
    // The leader keeps serving.
    leader.status();
}

// ---- bad archives through `troupe load` -------------------------------------------------------------

#[test]
fn troupe_load_refuses_a_symlink_entry_and_too_many_entries_and_the_node_keeps_serving() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let good = dir.pack("faulty.zip", &[dir.stripped("troupe_test_faulty")]);
    let entries = entries_of(&std::fs::read(&good).expect("read"));

    // The packed entries plus a symlink to /etc/passwd.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in &entries {
        w.start_file(name.as_str(), opts).expect("zip write");
        w.write_all(bytes).expect("zip write");
    }
    w.add_symlink("passwd", "/etc/passwd", opts).expect("zip symlink");
    let symlinked = write_zip(&dir, "symlink.zip", &w.finish().expect("zip finish").into_inner());
    node.run("load", &[&symlinked.display().to_string()]).assert_code(1).assert_stderr_has(&["symlink"]);

    // 65 entries: more than any source needs.
    let names: Vec<String> = (0..65).map(|i| format!("f{i}.txt")).collect();
    let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let too_many = write_zip(&dir, "many.zip", &zip_of(&many));
    node.run("load", &[&too_many.display().to_string()])
        .assert_code(1)
        .assert_stderr_has(&["65 entries", "limit"]);

    // Not a zip at all.
    let junk = write_zip(&dir, "junk.zip", b"PK\x03\x04 but not really");
    node.run("load", &[&junk.display().to_string()]).assert_code(1).assert_stderr_has(&["not a zip"]);

    assert!(node.status().versions.is_empty());
    assert!(files_under(&node.store()).is_empty(), "a refused archive left files in the store");
    node.load(&good);
}
