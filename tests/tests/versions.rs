//! Versions side by side, unload while actors live, hash prefixes, and many load/unload
//! cycles: what `/proc/<pid>/maps`, the store and the thread count show afterwards.

use std::time::Duration;

use troupe_actor_abi::message::{Payload, SystemMessage};
use troupe_node::client::ClientError;
use troupe_node::protocol::{Request, Response};
use troupe_tests::{
    ask, create, files_under, mapping_owner, next_message, send_text, status_of, wait_for, NodeProc, TestDir,
    ZipVariants, ALL_CAPS,
};

/// How long an unloaded version may take to be gone once its last actor exited.
const GONE_TIMEOUT: Duration = Duration::from_secs(20);

fn encoder_line(lines: &[String]) -> String {
    lines.iter().find(|l| l.starts_with("Encoder ")).cloned().unwrap_or_default()
}

#[test]
fn two_builds_answer_side_by_side_and_reloading_changes_nothing() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, ALL_CAPS);
    let v1_zip = dir.encoders_zip();
    let v1 = node.load(&v1_zip);
    let v2 = node.load(&dir.encoders_v2_zip());
    assert_ne!(v1, v2);

    // Both at the same time: two `app` processes in parallel.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| node.app(&v1, "hello world\n"));
        let b = s.spawn(|| node.app(&v2, "hello world\n"));
        (a.join().unwrap(), b.join().unwrap())
    });
    a.assert_ok();
    b.assert_ok();
    assert_eq!(a.lines().len(), 4, "{a}");
    assert_eq!(b.lines().len(), 4, "{b}");
    assert_eq!(encoder_line(&a.lines()), "Encoder [density=1.000]  hello world", "{a}");
    assert_eq!(encoder_line(&b.lines()), "Encoder [density=1.000]  dlrow olleh", "{b}");
    // The other encoders are the same in both builds.
    let rest = |c: &troupe_tests::Cli| {
        c.sorted_lines().into_iter().filter(|l| !l.starts_with("Encoder ")).collect::<Vec<_>>()
    };
    assert_eq!(rest(&a), rest(&b));

    // Loading the same zip again: same hash, nothing changes.
    let before = node.status();
    let again = node.run("load", &[&v1_zip.display().to_string()]);
    again.assert_ok();
    assert_eq!(again.stdout.trim(), v1, "{again}");
    assert!(again.stderr.contains("already loaded"), "{again}");
    let after = node.status();
    let summary = |r: &troupe_node::status::StatusReport| {
        r.versions
            .iter()
            .map(|v| (v.hash.clone(), v.generation, v.state.clone(), v.live_actors))
            .collect::<Vec<_>>()
    };
    assert_eq!(summary(&before), summary(&after));
    assert_eq!(after.versions.iter().filter(|v| v.hash == v1).count(), 1);
    assert_eq!(before.actors.len(), after.actors.len());

    // v1 still answers as v1 after the reload.
    let a = node.app(&v1, "abc\n");
    a.assert_ok();
    assert_eq!(encoder_line(&a.lines()), "Encoder [density=1.000]  abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unload_drains_live_actors_then_really_unloads() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, ALL_CAPS);
    let v1 = node.load(&dir.encoders_zip());
    let v2 = node.load(&dir.encoders_v2_zip());

    // A live v1 Acceptor (with its Analyzer and encoders), as `app` leaves it.
    node.app(&v1, "hello\n").assert_ok();
    let st = node.status();
    let acceptor =
        st.global_names.get(&format!("Acceptor:{v1}")).cloned().expect("the Acceptor has its global name");
    assert!(node.maps_hash(&v1), "v1's library should be mapped while loaded");

    let out = node.run("unload", &[&v1]);
    out.assert_ok();
    assert!(out.stdout.contains("draining"), "{out}");
    let st = node.status();
    let v = st.versions.iter().find(|v| v.hash == v1).expect("v1 is still listed while draining");
    assert_eq!(v.state, "draining");
    assert!(v.live_actors >= 1);

    // New creates naming v1 fail: through `app` (global name Acceptor:v1) ...
    let out = node.app(&v1, "hello\n");
    out.assert_code(1);
    out.assert_stderr_has(&["InvalidActorSourceHash"]);
    // ... and directly, for another type.
    let mut client = node.client().await;
    match create(&mut client, "encoder.Encoder", &v1).await {
        Err(e) => match e.downcast_ref::<ClientError>() {
            Some(ClientError::Refused(r)) => {
                assert_eq!(r.code, "InvalidActorSourceHash", "{r:?}");
                assert!(r.message.contains("InvalidActorSourceHash"), "{r:?}");
            }
            other => panic!("unexpected error {other:?}"),
        },
        Ok(a) => panic!("create from a draining version succeeded: {a}"),
    }

    // The living v1 Acceptor still answers at its address, with v1's behaviour.
    send_text(&mut client, &acceptor, "still here").await;
    let mut lines = Vec::new();
    while lines.len() < 4 {
        match next_message(&mut client).await.payload {
            Payload::Text(t) => lines.push(t),
            Payload::Typed { .. } => {} // app/Expect
            other => panic!("unexpected answer from the draining Acceptor: {other:?}"),
        }
    }
    assert!(lines.contains(&"Encoder [density=1.000]  still here".to_string()), "{lines:?}");

    // v1 goes once its actors exit.
    let exit = Payload::System(SystemMessage::ActorExitRequest { recursive: true });
    match client.request(Request::Send { to: acceptor.clone(), payload: exit }).await {
        Ok(Response::Sent) => {}
        other => panic!("{other:?}"),
    }
    wait_for("v1 to be gone", GONE_TIMEOUT, || {
        let st = node.status();
        (st.gone.iter().any(|g| g.hash == v1) && !st.versions.iter().any(|v| v.hash == v1)).then_some(())
    });
    assert!(!node.maps_hash(&v1), "v1's library is still mapped:\n{}", node.maps());
    let left: Vec<_> = files_under(&node.store())
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&v1)))
        .collect();
    assert!(left.is_empty(), "v1's files are still in the store: {left:?}");

    // v2 keeps answering, as v2.
    let out = node.app(&v2, "hello\n");
    out.assert_ok();
    assert_eq!(encoder_line(&out.lines()), "Encoder [density=1.000]  olleh", "{out}");
    assert!(node.maps_hash(&v2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unload_with_grace_asks_the_stragglers_to_exit() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hash = node.load(&dir.faulty_zip());
    let mut client = node.client().await;
    let echo = create(&mut client, "faulty.Echo", &hash).await.unwrap();
    assert_eq!(ask(&mut client, &echo, "one").await, "echo: one");

    let out = node.run("unload", &[&hash]);
    out.assert_ok();
    assert!(out.stdout.contains("1 actor still alive"), "{out}");
    // Still answering while draining.
    assert_eq!(ask(&mut client, &echo, "two").await, "echo: two");

    // Unloading again with a grace period: the Echo is asked to exit, and the answer waits
    // until the version is gone.
    let out = node.run("unload", &[&hash, "--grace", "200ms"]);
    out.assert_ok();
    assert!(out.stdout.contains("library closed and files deleted"), "{out}");
    let st = node.status();
    assert!(st.versions.is_empty(), "{:?}", st.versions);
    assert!(st.actors.is_empty(), "{:?}", st.actors);
    assert!(!node.maps_hash(&hash));
    assert!(files_under(&node.store()).is_empty(), "{:?}", files_under(&node.store()));

    // A message to the exited Echo comes back with the reason.
    send_text(&mut client, &echo, "three").await;
    match next_message(&mut client).await.payload {
        Payload::System(SystemMessage::PoisonMessage { details, .. }) => {
            assert!(details.contains("exited"), "{details}")
        }
        other => panic!("expected a PoisonMessage, got {other:?}"),
    }
}

#[test]
fn hash_prefixes_of_eight_digits_work_and_shorter_ones_are_refused() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "morse,Caesar cipher,64bit encoder");
    let hash = node.load(&dir.encoders_zip());

    // `app` takes a prefix too.
    node.app(&hash[..8], "hello\n").assert_ok();

    let out = node.run("unload", &[&hash[..7]]);
    assert_ne!(out.code, 0, "{out}");
    out.assert_stderr_has(&["at least 8 hex digits"]);
    assert_eq!(node.status().versions.len(), 1, "a refused unload changes nothing");

    let out = node.run("unload", &[&hash[..8], "--grace", "100ms"]);
    out.assert_ok();
    assert!(out.stdout.contains(&hash), "the full hash is named: {out}");
    let st = node.status();
    assert!(st.versions.is_empty() && st.gone.iter().any(|g| g.hash == hash), "{st:?}");
}

/// Loads variant `i` and unloads it (no actors: the answer comes once it is gone).
async fn cycle(client: &mut troupe_node::client::Client, variants: &ZipVariants, i: usize) -> String {
    let zip = variants.make(&format!("0.0.{i}"));
    let hash = match client.request(Request::Load { zip, info: format!("cycle {i}") }).await {
        Ok(Response::Loaded { hash, already_active: false, .. }) => hash,
        other => panic!("load {i}: {other:?}"),
    };
    match client.request(Request::Unload { hash: hash.clone(), grace_ms: None }).await {
        Ok(Response::Unloaded { gone: true, .. }) => {}
        other => panic!("unload {i}: {other:?}"),
    }
    hash
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_load_unload_cycles_leave_nothing_behind() {
    const CYCLES: usize = 200;
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let lib = dir.stripped("troupe_test_faulty");
    let base = dir.pack("faulty-base.zip", &[lib]);
    let variants = ZipVariants::new(&base);
    let mut client = node.client().await;

    // Warm up (the runtime's blocking pool, allocator arenas), then take the baseline.
    for i in 0..3 {
        cycle(&mut client, &variants, i).await;
    }
    let baseline_threads = node.threads();

    let mut hashes = std::collections::BTreeSet::new();
    for i in 3..3 + CYCLES {
        hashes.insert(cycle(&mut client, &variants, i).await);
    }
    assert_eq!(hashes.len(), CYCLES, "every variant has its own hash");

    let st = status_of(&mut client).await;
    assert!(st.versions.is_empty(), "{:?}", st.versions);
    let maps = node.maps();
    let mapped: Vec<&str> = maps
        .lines()
        .filter(|l| mapping_owner(l, &node.store()).is_some() || l.contains("troupe_test_faulty"))
        .collect();
    assert!(mapped.is_empty(), "version libraries still mapped:\n{}", mapped.join("\n"));
    let files = files_under(&node.store());
    assert!(files.is_empty(), "{} files left in the store, e.g. {:?}", files.len(), files.first());
    // Version threads exit right after reporting the version gone; idle blocking-pool threads
    // of the runtime may linger a little.
    let threads = wait_for("the thread count to return to its baseline", Duration::from_secs(20), || {
        let n = node.threads();
        (n <= baseline_threads).then_some(n)
    });
    assert!(threads <= baseline_threads);

    // Still serving: a fresh load works and its actor answers.
    let hash = match client.request(Request::Load { zip: variants.make("1.0.0"), info: "final".into() }).await
    {
        Ok(Response::Loaded { hash, .. }) => hash,
        other => panic!("{other:?}"),
    };
    let echo = create(&mut client, "faulty.Echo", &hash).await.unwrap();
    assert_eq!(ask(&mut client, &echo, "alive").await, "echo: alive");
}

#[test]
fn unloading_leaves_no_directory_behind_in_the_store() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hash = node.load(&dir.faulty_zip());
    node.run("unload", &[&hash]).assert_ok();
    assert!(files_under(&node.store()).is_empty());
    // Not only the files: every load must not leave an (empty) directory per hash behind,
    // or a long-running node collects one directory per version it ever loaded.
    let entries: Vec<_> = std::fs::read_dir(node.store())
        .expect("the store exists while the node runs")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(entries.is_empty(), "left in the store after unload: {entries:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libraries_are_memory_files_by_default_and_store_files_with_lib_copies_store() {
    let dir = TestDir::new();
    // Default: the library is a memory file named for the version; the store holds only the
    // zip (for peers), and nothing once the version is gone.
    let node = NodeProc::start(&dir, "");
    let hash = node.load(&dir.faulty_zip());
    let v = node.status().versions.into_iter().find(|v| v.hash == hash).expect("listed");
    let stem = format!("{hash}-{}", v.generation);
    assert_eq!(v.files, vec![format!("memfd:troupe:{stem}:libtroupe_test_faulty.so")]);
    let mut client = node.client().await;
    let echo = create(&mut client, "faulty.Echo", &hash).await.unwrap();
    assert_eq!(ask(&mut client, &echo, "m").await, "echo: m");
    assert_eq!(node.mapped_versions(), vec![stem.clone()], "{}", node.maps());
    let zip = node.store().join(format!("{stem}.zip"));
    wait_for("the zip in the store", GONE_TIMEOUT, || zip.exists().then_some(()));
    assert_eq!(files_under(&node.store()), vec![zip.clone()]);
    node.run("unload", &[&hash, "--grace", "200ms"]).assert_ok();
    assert!(node.mapped_versions().is_empty(), "{}", node.maps());
    assert!(files_under(&node.store()).is_empty(), "{:?}", files_under(&node.store()));

    // --lib-copies store: the library is a file in the store, mapped from there, deleted at
    // unload.
    let node = NodeProc::start_with(&dir, "", &["--lib-copies", "store"]);
    let hash = node.load(&dir.faulty_zip());
    let v = node.status().versions.into_iter().find(|v| v.hash == hash).expect("listed");
    let stem = format!("{hash}-{}", v.generation);
    let lib = node.store().join(format!("{stem}.libtroupe_test_faulty.so"));
    assert_eq!(v.files, vec![lib.display().to_string()]);
    assert!(lib.exists());
    let mut client = node.client().await;
    let echo = create(&mut client, "faulty.Echo", &hash).await.unwrap();
    assert_eq!(ask(&mut client, &echo, "s").await, "echo: s");
    assert!(node.maps().contains(&lib.display().to_string()), "{}", node.maps());
    assert_eq!(node.mapped_versions(), vec![stem]);
    node.run("unload", &[&hash, "--grace", "200ms"]).assert_ok();
    assert!(node.mapped_versions().is_empty(), "{}", node.maps());
    assert!(files_under(&node.store()).is_empty(), "{:?}", files_under(&node.store()));
}
