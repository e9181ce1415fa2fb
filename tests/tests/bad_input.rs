//! Misbehaving plugins and bad input: each gets a clear error, and the node keeps serving
//! (checked with `troupe status` after each). Also the source authority.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use troupe_actor_abi::message::{Payload, SystemMessage};
use troupe_node::archive::{self, ActorTypeEntry, PackInput, PackageInfo};
use troupe_tests::{
    ask, create, files_under, manifest_of, next_message, next_text, send_text, troupe, wait_for, zip_of,
    NodeProc, TestDir,
};

/// `troupe status` answers and lists what we expect to be loaded.
#[track_caller]
fn assert_serving(node: &NodeProc, loaded: usize) {
    let st = node.status();
    assert_eq!(st.versions.len(), loaded, "{:?}", st.versions);
    assert_eq!(st.pid, node.pid());
}

/// `troupe load PORT ZIP` of `bytes` written to `<dir>/<name>`: must be refused (exit 1) with
/// every one of `needles` in the message; nothing may be left in the store.
#[track_caller]
fn assert_load_refused(dir: &TestDir, node: &NodeProc, name: &str, bytes: &[u8], needles: &[&str]) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = node.run("load", &[&path.display().to_string()]);
    out.assert_code(1);
    out.assert_stderr_has(needles);
    assert!(out.stdout.is_empty(), "a refused load printed a hash:\n{out}");
    wait_for("the store to be empty", Duration::from_secs(30), || {
        files_under(&node.store()).is_empty().then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_returns_the_message_and_the_actor_lives_on() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hash = node.load(&dir.faulty_zip());
    let mut client = node.client().await;

    let actor = create(&mut client, "faulty.PanicOnMessage", &hash).await.unwrap();
    send_text(&mut client, &actor, "panic").await;
    match next_message(&mut client).await.payload {
        Payload::System(SystemMessage::PoisonMessage { message, target, details }) => {
            assert_eq!(*message, Payload::Text("panic".into()));
            assert_eq!(target, actor);
            assert!(details.contains("panic"), "details do not mention the panic: {details}");
            assert!(details.contains("asked to panic"), "details do not carry the panic message: {details}");
        }
        other => panic!("expected a PoisonMessage, got {other:?}"),
    }
    assert_eq!(ask(&mut client, &actor, "hi").await, "echo: hi");

    // A handler that returns an error twice: same treatment.
    let failing = create(&mut client, "faulty.FailOnMessage", &hash).await.unwrap();
    send_text(&mut client, &failing, "fail").await;
    match next_message(&mut client).await.payload {
        Payload::System(SystemMessage::PoisonMessage { details, .. }) => {
            assert!(details.contains("asked to fail"), "{details}")
        }
        other => panic!("expected a PoisonMessage, got {other:?}"),
    }
    assert_eq!(ask(&mut client, &failing, "hi").await, "echo: hi");
    assert_serving(&node, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_constructor_reaches_the_parent_as_a_plugin_error() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hash = node.load(&dir.faulty_zip());
    let mut client = node.client().await;

    let spawner = create(&mut client, "faulty.Spawner", &hash).await.unwrap();
    let created = ask(&mut client, &spawner, "create faulty.PanicInCreate").await;
    assert!(created.starts_with("created "), "{created}");
    let exited = next_text(&mut client).await;
    assert!(exited.starts_with("child exited: "), "{exited}");
    for needle in ["PluginError", "faulty.PanicInCreate", "constructor panicked"] {
        assert!(exited.contains(needle), "{needle:?} missing from: {exited}");
    }
    // The Spawner (same library) is fine and can create a healthy child.
    let created = ask(&mut client, &spawner, "create faulty.Echo").await;
    assert!(created.starts_with("created "), "{created}");
    send_text(&mut client, &spawner, "send ping").await;
    assert_eq!(next_text(&mut client).await, "relay: echo: ping");
    assert_serving(&node, 1);
}

#[test]
fn a_plugin_built_for_another_abi_version_is_refused() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let lib = troupe_tests::plugin_lib("troupe_test_bad_abi");

    // `troupe pack` refuses it from its root alone.
    let out =
        troupe(&["pack", "-o", &dir.join("bad.zip").display().to_string(), &lib.display().to_string()], None);
    assert_ne!(out.code, 0, "{out}");
    out.assert_stderr_has(&["ABI version 999"]);
    assert!(!dir.join("bad.zip").exists(), "pack wrote a zip it refused");

    let input = PackInput {
        file_name: "libtroupe_test_bad_abi.so".into(),
        bytes: std::fs::read(&lib).unwrap(),
        actors: vec![ActorTypeEntry { type_name: "bad.Actor".into(), requires: vec![], replaces: vec![] }],
    };
    let package = |abi_version| PackageInfo {
        name: "bad-abi".into(),
        version: "0.1.0".into(),
        abi_version,
        msg_schema: troupe_actor_abi::abi::MSG_SCHEMA,
        target: troupe_node::TARGET.into(),
    };
    // A manifest that lies about the ABI: the library's own root is checked before any of its code runs.
    let lying =
        archive::pack(&package(troupe_actor_abi::abi::ABI_VERSION), std::slice::from_ref(&input)).unwrap();
    assert_load_refused(&dir, &node, "lying.zip", &lying, &["ABI version 999"]);
    // An honest manifest: refused from the manifest.
    let honest = archive::pack(&package(999), &[input]).unwrap();
    assert_load_refused(&dir, &node, "honest.zip", &honest, &["ABI version 999"]);
    assert!(!node.maps().contains("bad_abi"), "the bad library is still mapped");
    assert_serving(&node, 0);
}

/// The faulty plugin's manifest and library bytes (stripped, to keep the hand-made zips small).
fn faulty_parts(dir: &TestDir) -> (String, String, Vec<u8>) {
    let lib = dir.stripped("troupe_test_faulty");
    let zip = dir.pack("faulty-parts.zip", std::slice::from_ref(&lib));
    let name = lib.file_name().unwrap().to_str().unwrap().to_string();
    (manifest_of(&zip), name, std::fs::read(&lib).unwrap())
}

#[test]
fn malformed_zips_are_refused_with_clear_errors() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let (manifest, lib_name, lib) = faulty_parts(&dir);

    // Entries that would escape the store.
    for evil in ["../libevil.so", "/tmp/libevil.so", "sub/../../libevil.so"] {
        let m = manifest.replace(&lib_name, "libevil.so");
        let z = zip_of(&[("troupe.toml", m.as_bytes()), (evil, &lib)]);
        assert_load_refused(&dir, &node, "evil.zip", &z, &["escapes the archive", evil]);
        assert_serving(&node, 0);
    }
    assert!(
        !files_under(dir.path()).iter().any(|f| f.ends_with("libevil.so")),
        "an escaping entry was written somewhere"
    );
    assert!(!Path::new("/tmp/libevil.so").exists());

    // No manifest.
    let z = zip_of(&[(lib_name.as_str(), &lib)]);
    assert_load_refused(&dir, &node, "no-manifest.zip", &z, &["no troupe.toml", "troupe pack"]);
    assert_serving(&node, 0);

    // A manifest whose sha256 does not match the library.
    let real = archive::sha256_hex(&lib);
    let wrong = archive::sha256_hex(b"something else");
    let m = manifest.replace(&real, &wrong);
    assert_ne!(m, manifest);
    let z = zip_of(&[("troupe.toml", m.as_bytes()), (lib_name.as_str(), &lib)]);
    assert_load_refused(&dir, &node, "mismatch.zip", &z, &["sha256", &lib_name, &real, &wrong]);
    assert_serving(&node, 0);

    // A truncated zip.
    let good = std::fs::read(dir.pack("good.zip", &[dir.stripped("troupe_test_faulty")])).unwrap();
    assert_load_refused(&dir, &node, "truncated.zip", &good[..good.len() / 2], &["not a zip archive"]);
    assert_serving(&node, 0);

    // Not a zip at all.
    assert_load_refused(&dir, &node, "text.zip", b"hello, I am not a zip\n", &["not a zip archive"]);
    assert_serving(&node, 0);

    // After all that, the good one loads.
    node.load(&dir.join("good.zip"));
    assert_serving(&node, 1);
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let missing = dir.join("does-not-exist.zip");
    let out = node.run("load", &[&missing.display().to_string()]);
    out.assert_code(2);
    out.assert_stderr_has(&["cannot read", &missing.display().to_string()]);
    assert_serving(&node, 0);
}

/// Writes `bytes` on a fresh connection, then reads until the node closes it or says what was
/// wrong; returns what it read.
fn garbage(node: &NodeProc, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(node.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!(
                    "the node neither answered nor closed the connection after {} garbage bytes",
                    bytes.len()
                )
            }
            Err(_) => break, // reset: closed
        }
    }
    got
}

#[test]
fn garbage_on_the_admin_port_does_not_disturb_the_node() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hash = node.load(&dir.faulty_zip());

    // A connection that says nothing at all stays open meanwhile.
    let _silent = TcpStream::connect(node.addr()).unwrap();

    // Pseudo-random bytes (fixed seed, so a failure can be replayed).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    garbage(&node, &noise);
    assert_serving(&node, 1);

    // A length prefix far above the frame limit.
    let mut huge = 0xffff_fff0u32.to_be_bytes().to_vec();
    huge.extend_from_slice(b"and then some");
    garbage(&node, &huge);
    assert_serving(&node, 1);

    // A well-framed body that is not msgpack of a hello.
    let mut framed = 5u32.to_be_bytes().to_vec();
    framed.extend_from_slice(b"\xc1\xc1\xc1\xc1\xc1");
    let answer = garbage(&node, &framed);
    assert!(!answer.is_empty(), "a framed non-hello should get a ProtocolError frame before the close");
    assert_serving(&node, 1);

    // HTTP.
    garbage(&node, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_serving(&node, 1);

    // Everything still works end to end.
    let out = node.run("unload", &[&hash]);
    out.assert_ok();
    assert_serving(&node, 0);
}

#[test]
fn a_node_without_source_authority_refuses_loads() {
    let dir = TestDir::new();
    let node = NodeProc::start_with(&dir, "", &["--authority", "none"]);
    let zip = dir.faulty_zip();
    let out = node.run("load", &[&zip.display().to_string()]);
    out.assert_code(1);
    out.assert_stderr_has(&["no source authority"]);
    assert_serving(&node, 0);
    assert_eq!(node.status().authority, "none");
    assert!(files_under(&node.store()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_registered_as_source_authority_decides_loads() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "morse,Caesar cipher,64bit encoder");
    let faulty = node.load(&dir.faulty_zip());
    let mut client = node.client().await;
    let gatekeeper = create(&mut client, "faulty.Gatekeeper", &faulty).await.unwrap();
    assert_eq!(ask(&mut client, &gatekeeper, "register").await, "registered");
    assert_eq!(node.status().authority, format!("actor {gatekeeper}"));

    let rejected = dir.pack_with(
        "rejected.zip",
        &[troupe_tests::plugin_lib("troupe_test_faulty")],
        &["--name", "rejected-thing"],
    );
    let out = node.run("load", &[&rejected.display().to_string()]);
    out.assert_code(1);
    out.assert_stderr_has(&[
        "rejected by the source authority",
        "the gatekeeper refuses packages named rejected-*",
    ]);
    assert_serving(&node, 1);

    let hash = node.load(&dir.encoders_zip());
    node.app(&hash, "hello\n").assert_ok();
    assert_serving(&node, 2);
}

/// Issue 21 point 8: `upgrade` to a full hash no node had loaded exited 2 (a usage error), and
/// from one it answered "moved 0" (exit 0), while an unknown prefix exited 1. A hash or prefix
/// that names no loaded version is a refusal (`InvalidActorSourceHash`, exit 1) in every
/// command that takes one.
#[test]
fn a_hash_or_prefix_that_names_no_loaded_version_is_refused_alike_everywhere() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hash = node.load(&dir.faulty_zip());
    let full = "ab".repeat(32);
    for unknown in [full.as_str(), "abababab"] {
        for args in [
            vec!["upgrade", &hash, unknown],
            vec!["upgrade", unknown, &hash],
            vec!["unload", unknown],
            vec!["create", unknown, "faulty.Echo"],
        ] {
            let out = node.run(args[0], &args[1..]);
            assert_eq!(out.code, 1, "{out}");
            assert!(out.stderr.contains("InvalidActorSourceHash") && out.stderr.contains(unknown), "{out}");
        }
    }
    assert_serving(&node, 1);
}
