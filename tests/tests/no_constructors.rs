//! Reading a plugin's root never runs the library: `troupe pack`, `pack --sign` and `verify`
//! read it from the file's bytes (node/src/store/root), and a node refuses a library without a
//! valid root before `dlopen`. The `ctor` test plugin has an ELF constructor that leaves a
//! marker file (its path in `TROUPE_TEST_CTOR_MARK`) when the library is loaded. Also the
//! errors of issue 16 item 4: the archive limit before a zip is read, a missing secret file,
//! and dlerror's text.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use troupe_node::archive::{ActorTypeEntry, PackInput, PackageInfo};
use troupe_tests::{
    abort_lib, ask, create, ensure_built_packages, hostile_lib, plugin_lib, troupe, NodeProc, TestDir,
};

/// The ctor plugin, built on demand.
fn ctor_lib() -> PathBuf {
    ensure_built_packages(&["troupe-test-ctor"]);
    plugin_lib("troupe_test_ctor")
}

/// The marker the ctor plugin's constructor writes, named in this process's environment (the
/// CLI and the nodes the tests start inherit it). Only one test of this file touches the ctor
/// plugin, so nothing else writes it.
fn marker() -> &'static Path {
    static MARK: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = MARK.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("constructor-ran");
        // SAFETY (of intent): set once, before any process that reads it is started.
        std::env::set_var("TROUPE_TEST_CTOR_MARK", &path);
        (dir, path)
    });
    path
}

#[track_caller]
fn assert_no_marker(after: &str) {
    let m = marker();
    assert!(
        !m.exists(),
        "the constructor ran during {after}: {}",
        std::fs::read_to_string(m).unwrap_or_default()
    );
}

/// `bytes` with every occurrence of `from` replaced by `to` (same length); how many there were.
fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

/// A zip holding `bytes` as the ctor library, with the manifest `troupe pack` would write,
/// made with the archive API so that libraries `pack` refuses can reach a node.
fn zip_of(dir: &TestDir, name: &str, bytes: Vec<u8>) -> PathBuf {
    let package = PackageInfo {
        name: "troupe-test-ctor".into(),
        version: "0.1.0".into(),
        abi_version: troupe_actor_abi::abi::ABI_VERSION,
        msg_schema: troupe_actor_abi::abi::MSG_SCHEMA,
        target: troupe_node::TARGET.into(),
    };
    let actors = vec![ActorTypeEntry { type_name: "ctor.Echo".into(), requires: vec![], replaces: vec![] }];
    let input = PackInput { file_name: "libtroupe_test_ctor.so".into(), bytes, actors };
    let zip = troupe_node::archive::pack(&package, &[input]).expect("the archive packs");
    let path = dir.join(name);
    std::fs::write(&path, zip).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packing_signing_and_refusing_a_library_never_run_its_constructor() {
    let dir = TestDir::new();
    let lib = ctor_lib();
    let lib_s = lib.display().to_string();
    assert_no_marker("the build");

    let out = troupe(&["pack", "-o", &dir.join("ctor.zip").display().to_string(), &lib_s], None);
    out.assert_ok();
    assert_no_marker("troupe pack");

    std::fs::create_dir(dir.join("keys")).unwrap();
    let key = dir.join("keys").join("release");
    troupe(&["keygen", "-o", &key.display().to_string()], None).assert_ok();
    let secret = key.with_extension("key").display().to_string();
    let signed = dir.join("signed.zip").display().to_string();
    troupe(&["pack", "--sign", &secret, "-o", &signed, &lib_s], None).assert_ok();
    assert_no_marker("troupe pack --sign");
    let keys = dir.join("keys").display().to_string();
    let out = troupe(&["verify", &signed, "--trusted-keys", &keys], None);
    out.assert_ok();
    assert!(out.stdout.contains("signed by") && out.stdout.contains("troupe-test-ctor"), "{out}");
    assert_no_marker("troupe verify");

    // The root's magic flipped: pack refuses it, with the reason.
    let mut corrupt = std::fs::read(&lib).unwrap();
    assert!(replace_all(&mut corrupt, b"TROUPE\x00\x01", b"TROUPX\x00\x01") >= 1, "the magic is in the file");
    std::fs::create_dir(dir.join("corrupt")).unwrap();
    let corrupt_lib = dir.join("corrupt").join("libtroupe_test_ctor.so");
    std::fs::write(&corrupt_lib, &corrupt).unwrap();
    let out = troupe(
        &["pack", "-o", &dir.join("bad.zip").display().to_string(), &corrupt_lib.display().to_string()],
        None,
    );
    out.assert_code(1).assert_stderr_has(&["is not a loadable plugin", "not a Troupe root (bad magic)"]);
    assert_no_marker("troupe pack of a corrupt root");

    // The node refuses it too, before dlopen.
    let node = NodeProc::start(&dir, "");
    let bad = zip_of(&dir, "bad-magic.zip", corrupt);
    let out = node.run("load", &[&bad.display().to_string()]);
    out.assert_code(1).assert_stderr_has(&["not a Troupe root (bad magic)"]);
    assert_no_marker("a node's refusal of a corrupt root");

    refusals_keep_their_reasons(&dir, &node, &lib);

    // The premise: loading it for real does run the constructor.
    let hash = node.load(&dir.join("ctor.zip"));
    let mut client = node.client().await;
    let echo = create(&mut client, "ctor.Echo", &hash).await.unwrap();
    assert_eq!(ask(&mut client, &echo, "hi").await, "echo: hi");
    let mark = std::fs::read_to_string(marker()).expect("the constructor ran in the node");
    assert_eq!(mark.trim(), format!("constructor ran in process {}", node.pid()));
}

/// A file that is not ELF is refused by the reader, clearly; a valid plugin whose dependency
/// is missing gets past the reader and fails in dlopen, with dlerror's text kept.
fn refusals_keep_their_reasons(dir: &TestDir, node: &NodeProc, lib: &Path) {
    let text = zip_of(dir, "text.zip", b"just some text, named like a library\n".to_vec());
    let out = node.run("load", &[&text.display().to_string()]);
    out.assert_code(1).assert_stderr_has(&["is not a plugin library: not a 64-bit ELF file"]);

    let mut needs = std::fs::read(lib).unwrap();
    assert_eq!(replace_all(&mut needs, b"libc.so.6\0", b"libq.so.6\0"), 1, "one DT_NEEDED libc");
    let missing = zip_of(dir, "missing-dep.zip", needs);
    let out = node.run("load", &[&missing.display().to_string()]);
    out.assert_code(1).assert_stderr_has(&["dlopen failed: ", "libq.so.6: cannot open shared object file"]);
    assert_no_marker("a dlopen that fails on a missing dependency");
}

#[test]
fn the_file_reader_and_dlopen_agree_on_every_plugin() {
    ensure_built_packages(&["troupe-test-nodelete", "troupe-test-counter-v2"]);
    let mut libs: Vec<PathBuf> = [
        "troupe_encoders",
        "troupe_encoders_v2",
        "troupe_test_faulty",
        "troupe_test_bad_abi",
        "troupe_test_counter_v1",
        "troupe_test_counter_v2",
        "troupe_test_nodelete",
    ]
    .iter()
    .map(|n| plugin_lib(n))
    .collect();
    libs.push(hostile_lib());
    libs.push(abort_lib());
    for lib in libs {
        let lib = std::path::absolute(&lib).unwrap();
        let from_file = troupe_node::store::root::read_file(&lib).map(|r| r.info);
        let loaded = troupe_node::plugin::inspect(&lib);
        match (&from_file, &loaded) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", lib.display()),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{}", lib.display()),
            _ => panic!("{}: the file says {from_file:?}, dlopen says {loaded:?}", lib.display()),
        }
    }
}

#[test]
fn a_missing_secret_file_is_a_usage_error() {
    let out = troupe(&["status", "1", "--secret-file", "/nonexistent/secret"], None);
    out.assert_code(2).assert_stderr_has(&[
        "cannot read the shared secret named by --secret-file (or TROUPE_SECRET_FILE)",
        "/nonexistent/secret",
    ]);
    assert!(!out.stderr.contains("protocol error"), "{out}");
}

#[test]
fn a_zip_over_the_archive_limit_is_refused_before_it_is_read_or_sent() {
    let dir = TestDir::new();
    let big = dir.join("big.zip");
    // Sparse: 600 MB on paper, nothing on disk.
    std::fs::File::create(&big).unwrap().set_len(600_000_000).unwrap();
    let big_s = big.display().to_string();
    let keys = dir.path().display().to_string();
    // Port 1: nothing listens there, and nothing is tried (that would be exit 3).
    for args in [
        vec!["load", "1", &big_s],
        vec!["deploy", "1", &big_s, "--group", "g"],
        vec!["verify", &big_s, "--trusted-keys", &keys],
    ] {
        let out = troupe(&args, None);
        out.assert_code(1).assert_stderr_has(&[
            "archive is 600000000 bytes, over the limit of 268435456 bytes",
            "(a node would refuse it), so it was not read",
        ]);
    }
}
