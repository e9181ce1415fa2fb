//! A plugin linked with `-z nodelete` (`DF_1_NODELETE`, which makes `dlclose` a no-op) loads,
//! answers, and is really unloaded: the node clears the flag in its private copy of the library
//! (node/src/store/elf.rs), with memory-file copies and with store copies.

use std::path::Path;
use std::process::Command;

use troupe_tests::{ask, create, ensure_built_packages, files_under, plugin_lib, NodeProc, TestDir};

/// The test plugin, built on demand.
fn nodelete_lib() -> std::path::PathBuf {
    ensure_built_packages(&["troupe-test-nodelete"]);
    plugin_lib("troupe_test_nodelete")
}

/// What `readelf -d` says of `lib`'s `DT_FLAGS_1` (empty without one).
fn flags_1(lib: &Path) -> String {
    let out = Command::new("readelf").arg("-d").arg(lib).output().expect("readelf (binutils) is installed");
    assert!(out.status.success(), "readelf -d {}: {}", lib.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find(|l| l.contains("(FLAGS_1)")).unwrap_or_default().to_string()
}

/// Loads the plugin on a node started with `extra`, asks its actor, unloads with a grace
/// period, and checks that nothing of the library stays mapped.
async fn loads_answers_and_unmaps(extra: &[&str]) {
    let dir = TestDir::new();
    let lib = nodelete_lib();
    // The premise: the library as built and packed really sets the flag.
    assert!(
        flags_1(&lib).contains("NODELETE"),
        "the plugin is not linked with -z nodelete: {}",
        flags_1(&lib)
    );
    let zip = dir.join("nodelete.zip");
    let packed =
        troupe_tests::troupe(&["pack", "-o", &zip.display().to_string(), &lib.display().to_string()], None);
    packed.assert_ok();
    // Packing says so, and packs the library as it is (the node clears its own copy).
    assert!(packed.stderr.contains("sets DF_1_NODELETE (linked with -z nodelete)"), "{packed}");
    let node = NodeProc::start_with(&dir, "", extra);

    let hash = node.load(&zip);
    assert!(node.maps_hash(&hash), "the library is mapped while loaded:\n{}", node.maps());
    let mut client = node.client().await;
    let echo = create(&mut client, "nodelete.Echo", &hash).await.unwrap();
    assert_eq!(ask(&mut client, &echo, "still here").await, "echo: still here");

    let out = node.run("unload", &[&hash, "--grace", "200ms"]);
    out.assert_ok();
    assert!(out.stdout.contains("library closed and files deleted"), "{out}");
    let st = node.status();
    assert!(st.versions.is_empty() && st.gone.iter().any(|g| g.hash == hash), "{st:?}");
    assert!(!node.maps_hash(&hash), "the library is still mapped after unload:\n{}", node.maps());
    let maps = node.maps();
    let left: Vec<&str> = maps.lines().filter(|l| l.contains("troupe_test_nodelete")).collect();
    assert!(left.is_empty(), "mappings of the library remain:\n{}", left.join("\n"));
    assert!(files_under(&node.store()).is_empty(), "{:?}", files_under(&node.store()));

    let log = node.log_text();
    assert!(!log.contains("still mapped after dlclose"), "{log}");
    // The info line (unless RUST_LOG filters it out).
    if std::env::var_os("RUST_LOG").is_none() {
        let line = log.lines().find(|l| l.contains("DF_1_NODELETE cleared")).unwrap_or_default();
        assert!(line.contains(&hash) && line.contains("libtroupe_test_nodelete.so"), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodelete_plugin_in_a_memory_file_is_really_unloaded() {
    loads_answers_and_unmaps(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodelete_plugin_in_a_store_copy_is_really_unloaded() {
    loads_answers_and_unmaps(&["--lib-copies", "store"]).await;
}
