//! Faults: plugins that panic where the node cannot see it coming (drop, `on_unload`), write
//! malformed output, were built with `panic=abort`, or hang in `on_unload`; SIGKILL of a node
//! in the middle of a load, a fetch and an unload; a full disk under the store; the pthread-key
//! budget. After each, the node keeps serving and every accepted request got an answer or an
//! error.

use std::path::PathBuf;
use std::time::Duration;

use troupe_actor_abi::message::{Address, Payload, SystemMessage};
use troupe_node::client::{Client, ClientError};
use troupe_node::protocol::{Request, Response};
use troupe_tests::*;

/// Stripped hostile-plugin zips that differ only in the package version (each its own hash,
/// so each load is its own instance with its own statics).
struct Hostile {
    variants: ZipVariants,
    dir_zip: PathBuf,
}

impl Hostile {
    fn new(dir: &TestDir) -> Hostile {
        let lib = dir.stripped_path(&hostile_lib());
        let dir_zip = dir.pack("hostile.zip", &[lib]);
        Hostile { variants: ZipVariants::new(&dir_zip), dir_zip }
    }

    /// Variant `n`, written to the test directory.
    fn zip(&self, dir: &TestDir, n: usize) -> PathBuf {
        let p = dir.join(&format!("hostile-{n}.zip"));
        std::fs::write(&p, self.variants.make(&format!("0.1.{n}"))).expect("write a zip");
        p
    }
}

trait StripPath {
    fn stripped_path(&self, lib: &std::path::Path) -> PathBuf;
}

impl StripPath for TestDir {
    /// A stripped copy of `lib` in the test directory (the library itself without `strip`).
    fn stripped_path(&self, lib: &std::path::Path) -> PathBuf {
        let out = self.join(lib.file_name().and_then(|n| n.to_str()).expect("a library file name"));
        let ok = std::process::Command::new("strip")
            .arg("-o")
            .arg(&out)
            .arg(lib)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            out
        } else {
            lib.to_path_buf()
        }
    }
}

async fn load_bytes(client: &mut Client, zip: Vec<u8>) -> Result<String, troupe_node::protocol::ErrorReply> {
    match client.request(Request::Load { zip, info: "faults test".into() }).await {
        Ok(Response::Loaded { hash, .. }) => Ok(hash),
        Err(ClientError::Refused(r)) => Err(r),
        other => panic!("unexpected answer to a load: {other:?}"),
    }
}

/// Unloads `hash`, asking its actors to exit at once, and waits until it is gone.
async fn unload_now(client: &mut Client, hash: &str) -> Response {
    client
        .request(Request::Unload { hash: hash.into(), grace_ms: Some(0) })
        .await
        .unwrap_or_else(|e| panic!("unload of {hash} failed: {e}"))
}

/// Asks `n` echo questions of `echo` and checks every answer (no request lost).
async fn echo_round(client: &mut Client, echo: &Address, tag: &str, n: usize) {
    for i in 0..n {
        let q = format!("{tag} {i}");
        assert_eq!(ask(client, echo, &q).await, format!("echo: {q}"), "an echo was lost after {tag}");
    }
}

// ---- plugin faults ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn panics_in_constructor_handler_drop_and_on_unload_leave_the_node_serving() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hostile = Hostile::new(&dir);
    let faulty = node.load(&dir.pack("faulty.zip", &[dir.stripped("troupe_test_faulty")]));
    let mut client = node.client().await;
    let echo = create(&mut client, "faulty.Echo", &faulty).await.expect("create an echo");
    echo_round(&mut client, &echo, "start", 3).await;

    // Constructor: the creator is told, with the panic's message.
    let spawner = create(&mut client, "faulty.Spawner", &faulty).await.expect("create a spawner");
    let created = ask(&mut client, &spawner, "create faulty.PanicInCreate").await;
    assert!(created.starts_with("created "), "{created}");
    let exited = text_matching(&mut client, REPLY_TIMEOUT, |t| t.starts_with("child exited")).await;
    assert!(exited.contains("constructor panicked"), "{exited}");
    echo_round(&mut client, &echo, "after a constructor panic", 3).await;

    // Handler: the message comes back as poison, the actor serves on.
    let panicky = create(&mut client, "faulty.PanicOnMessage", &faulty).await.expect("create");
    send_text(&mut client, &panicky, "panic").await;
    match next_message(&mut client).await.payload {
        Payload::System(SystemMessage::PoisonMessage { details, .. }) => {
            assert!(details.contains("asked to panic"), "{details}")
        }
        other => panic!("expected a PoisonMessage, got {other:?}"),
    }
    assert_eq!(ask(&mut client, &panicky, "still there").await, "echo: still there");

    // Drop: the version unloads all the same (library closed, files deleted).
    let h1 = load_bytes(&mut client, std::fs::read(hostile.zip(&dir, 1)).expect("read")).await.expect("load");
    let dropper = create(&mut client, "hostile.PanicOnDrop", &h1).await.expect("create");
    assert_eq!(ask(&mut client, &dropper, "hi").await, "echo: hi");
    match unload_now(&mut client, &h1).await {
        Response::Unloaded { gone: true, .. } => {}
        other => panic!("the version with a panicking drop did not unload: {other:?}"),
    }
    echo_round(&mut client, &echo, "after a drop panic", 3).await;

    // on_unload: the panic is caught at the boundary; the version is gone, not stuck.
    let h2 = load_bytes(&mut client, std::fs::read(hostile.zip(&dir, 2)).expect("read")).await.expect("load");
    let arm = create(&mut client, "hostile.Arm", &h2).await.expect("create");
    assert_eq!(ask(&mut client, &arm, "arm panic").await, "armed panic");
    match unload_now(&mut client, &h2).await {
        Response::Unloaded { gone: true, .. } => {}
        other => panic!("the version with a panicking on_unload did not unload: {other:?}"),
    }
    echo_round(&mut client, &echo, "after an on_unload panic", 3).await;

    let st = node.status();
    let gone: Vec<&str> = st.gone.iter().map(|g| g.hash.as_str()).collect();
    assert!(gone.contains(&h1.as_str()) && gone.contains(&h2.as_str()), "not listed as gone: {gone:?}");
    assert!(st.versions.iter().all(|v| v.hash == faulty), "leftover versions: {:#?}", st.versions);
    for h in [&h1, &h2] {
        assert!(!node.maps_hash(h), "{h} is still mapped:\n{}", node.maps());
    }
    let _ = hostile.dir_zip;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_output_from_a_plugin_gets_an_error_status_and_the_actor_keeps_working() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hostile = Hostile::new(&dir);
    let hash = node.load(&hostile.zip(&dir, 0));
    let mut client = node.client().await;
    let garbage = create(&mut client, "hostile.Garbage", &hash).await.expect("create");
    for round in 0..3 {
        let answer = ask(&mut client, &garbage, "garbage").await;
        let statuses: Vec<i32> = answer
            .strip_prefix("statuses: ")
            .unwrap_or_else(|| panic!("unexpected answer {answer:?}"))
            .split(',')
            .map(|s| s.parse().expect("a status"))
            .collect();
        assert_eq!(statuses.len(), 4);
        assert!(
            statuses.iter().all(|s| *s != 0),
            "round {round}: the node accepted malformed bytes from a plugin (statuses {statuses:?})"
        );
        // Nothing half-decoded reached anyone: the next message is the echo.
        assert_eq!(ask(&mut client, &garbage, "ok?").await, "echo: ok?");
    }
    node.status();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_built_with_panic_abort_is_refused_by_pack_and_by_load() {
    let dir = TestDir::new();
    let abort = abort_lib();
    let out = troupe(
        &["pack", "-o", &dir.join("abort.zip").display().to_string(), &abort.display().to_string()],
        None,
    );
    assert_ne!(out.code, 0, "pack accepted a panic=abort plugin:\n{out}");
    out.assert_stderr_has(&["panic=abort"]);

    // A zip made by hand around it (the manifest's sha256 fixed up) reaches the node's loader.
    ensure_built_packages(&["troupe-test-abort"]);
    let unwinding = plugin_lib("troupe_test_abort");
    let honest = dir.pack("honest.zip", &[unwinding]);
    let manifest = manifest_of(&honest);
    let abort_bytes = std::fs::read(&abort).expect("read");
    // The hash troupe pack wrote (of the library it stripped) becomes the abort build's.
    let packed =
        troupe_node::archive::Manifest::parse(&manifest).expect("manifest").cdylibs[0].sha256.clone();
    let manifest = manifest.replace(&packed, &troupe_node::archive::sha256_hex(&abort_bytes));
    let crafted = zip_of(&[("troupe.toml", manifest.as_bytes()), ("libtroupe_test_abort.so", &abort_bytes)]);
    let crafted_path = dir.join("crafted.zip");
    std::fs::write(&crafted_path, &crafted).expect("write");

    let node = NodeProc::start(&dir, "");
    node.run("load", &[&crafted_path.display().to_string()])
        .assert_code(1)
        .assert_stderr_has(&["panic=abort"]);
    assert!(node.status().versions.is_empty());
    assert!(files_under(&node.store()).is_empty(), "the refused library is still in the store");
    assert!(!node.maps().contains("libtroupe_test_abort"), "the refused library is still mapped");
    // The honest build of the same crate loads and answers.
    let hash = node.load(&honest);
    let mut client = node.client().await;
    let echo = create(&mut client, "abort.Echo", &hash).await.expect("create");
    assert_eq!(ask(&mut client, &echo, "hi").await, "echo: hi");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_on_unload_that_hangs_is_quarantined_and_the_node_serves_on_and_still_stops() {
    let dir = TestDir::new();
    let mut node = NodeProc::start(&dir, "");
    let hostile = Hostile::new(&dir);
    let mut client = node.client().await;
    let stuck = node.load(&hostile.zip(&dir, 1));
    let arm = create(&mut client, "hostile.Arm", &stuck).await.expect("create");
    assert_eq!(ask(&mut client, &arm, "arm hang").await, "armed hang");
    let healthy = node.load(&hostile.zip(&dir, 2));
    let echo = create(&mut client, "hostile.Echo", &healthy).await.expect("create");
    // Problems are collected and reported together at the end, so one node bug does not hide
    // the next (and a hanging answer never hangs the test).
    let mut problems: Vec<String> = Vec::new();

    // `unload --grace 0s` asks the actor to exit; on_unload never returns. The answer must still
    // come: ON_UNLOAD_LIMIT (5 s) after the last actor exits, the version is quarantined.
    let mut unloader = node.client().await;
    let stuck2 = stuck.clone();
    let unload = tokio::spawn(async move {
        let t = std::time::Instant::now();
        let r = unloader.request(Request::Unload { hash: stuck2, grace_ms: Some(0) }).await;
        (r, t.elapsed())
    });
    let quarantined = wait_for("the version to be quarantined", Duration::from_secs(30), || {
        node.try_status()?.versions.into_iter().find(|v| v.state == "quarantined")
    });
    assert_eq!(quarantined.hash, stuck);
    assert!(node.log_text().contains("quarantined"), "the quarantine is not logged");

    // The node serves: the other version answers, a new load works.
    echo_round(&mut client, &echo, "beside a quarantined version", 3).await;
    let h3 = node.load(&hostile.zip(&dir, 3));
    let e3 = create(&mut client, "hostile.Echo", &h3).await.expect("create");
    assert_eq!(ask(&mut client, &e3, "new").await, "echo: new");
    assert_eq!(status_of(&mut client).await.versions.iter().filter(|v| v.state == "quarantined").count(), 1);

    // The version is quarantined already: the answer is due now; 60 s only guards a hang.
    match tokio::time::timeout(Duration::from_secs(60), unload).await {
        Ok(Ok((Ok(Response::Unloaded { .. }), took))) => eprintln!("unload answered after {took:?}"),
        Ok(Ok((other, _))) => problems.push(format!("the unload of the hanging version answered {other:?}")),
        Ok(Err(e)) => problems.push(format!("the unload task failed: {e}")),
        Err(_) => problems.push(
            "`unload --grace` of a version whose on_unload hangs never answers, even after the version was quarantined"
                .into(),
        ),
    }

    // A graceful stop still completes, and does not wait for the version it already gave up on:
    // the node's own log says whether its stop ran out of time (a clock here would race it).
    node.stop();
    if node.log_text().contains("stop timed out with versions still loaded") {
        problems.push("`troupe stop` waited for the quarantined version until its own timeout".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---- SIGKILL mid-operation, full disk --------------------------------------------------------

/// After a restart on the same port and state directory: no version, an empty store.
#[track_caller]
fn assert_clean_restart(node: &NodeProc, what: &str) {
    let st = node.status();
    assert!(
        st.versions.is_empty(),
        "after SIGKILL {what}, the restarted node lists versions: {:#?}",
        st.versions
    );
    let left = files_under(&node.store());
    assert!(left.is_empty(), "after SIGKILL {what}, the restarted node's store holds {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_a_load_a_fetch_and_an_unload_leaves_no_half_installed_version() {
    let dir = TestDir::new();
    // A big zip (the unstripped debug library): the load takes long enough to be caught in it.
    let big = dir.pack("big.zip", &[hostile_lib()]);
    let big_bytes = std::fs::read(&big).expect("read");

    // During a load: kill as soon as the node lists the version (validating, or just active).
    let mut node = NodeProc::start(&dir, "");
    let port = node.port();
    let mut client = node.client().await;
    let load =
        tokio::spawn(
            async move { client.request(Request::Load { zip: big_bytes, info: "kill".into() }).await },
        );
    wait_for("the load to start", REPLY_TIMEOUT, || {
        (node.try_status().is_some_and(|s| !s.versions.is_empty()) || load.is_finished()).then_some(())
    });
    node.kill9();
    let _ = load.await;
    let node = NodeProc::start_on(&dir, port, "", &[]);
    assert_clean_restart(&node, "during a load");
    drop(node);

    // During an unload: an actor, an unload with a grace period, SIGKILL at once.
    let mut node = NodeProc::start(&dir, "");
    let port = node.port();
    let hash = node.load(&big);
    let mut client = node.client().await;
    let echo = create(&mut client, "hostile.Echo", &hash).await.expect("create");
    assert_eq!(ask(&mut client, &echo, "hi").await, "echo: hi");
    let unload =
        tokio::spawn(async move { client.request(Request::Unload { hash, grace_ms: Some(50) }).await });
    let log_has = |n: &NodeProc| n.log_text().contains("unloading: version is draining");
    wait_for("the unload to start", REPLY_TIMEOUT, || log_has(&node).then_some(()));
    node.kill9();
    let _ = unload.await;
    let node = NodeProc::start_on(&dir, port, "", &[]);
    assert_clean_restart(&node, "during an unload");
    drop(node);

    // During a remote fetch: the leader holds the version, the member must fetch it to host
    // hostile.Echo required... by placement: the leader has no capability the member lacks, so
    // a `requirements` entry only the member has sends the create there.
    let leader = NodeProc::start(&dir, "");
    let hash = leader.load(&big);
    let mut member = NodeProc::start_member(&dir, &leader.addr(), "fetcher", &[]);
    leader.wait_members(&[member.addr()]);
    let member_port = member.port();
    let mut client = leader.client().await;
    let spec = troupe_actor_abi::message::CreateSpec {
        type_name: "hostile.Echo".into(),
        requirements: vec!["fetcher".into()],
        source_hash: Some(hash.clone()),
        ..Default::default()
    };
    create_spec(&mut client, spec).await.expect("the create is accepted");
    wait_for("the member to start fetching", REPLY_TIMEOUT, || {
        let started = !files_under(&member.store()).is_empty()
            || member.log_text().contains(&hash[..12])
            || member.try_status().is_some_and(|s| !s.versions.is_empty());
        started.then_some(())
    });
    member.kill9();
    let member = NodeProc::start_on(&dir, member_port, "fetcher", &["--convention", &leader.addr()]);
    assert_clean_restart(&member, "during a remote fetch");
    // The convention heals: the restarted member can still fetch and host it.
    leader.wait_members(&[member.addr()]);
    let spec = troupe_actor_abi::message::CreateSpec {
        type_name: "hostile.Echo".into(),
        requirements: vec!["fetcher".into()],
        source_hash: Some(hash.clone()),
        ..Default::default()
    };
    let echo = create_spec(&mut client, spec).await.expect("create after the restart");
    assert_eq!(ask(&mut client, &echo, "again").await, "echo: again");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_library_that_cannot_be_copied_fails_the_load_clearly_and_the_node_serves_on() {
    let dir = TestDir::new();
    // The process may not write files above 256 KiB (memory files included): no room for the
    // copy of a debug library.
    let node = NodeProc::start_with_file_size_limit(&dir, "", &[], 256 * 1024);
    let big = dir.pack("big.zip", &[hostile_lib()]);
    let out = node.run("load", &[&big.display().to_string()]);
    out.assert_code(1).assert_stderr_has(&["cannot copy libtroupe_test_hostile.so", "File too large"]);
    let st = node.status();
    assert!(st.versions.is_empty(), "a version is listed after a failed write: {:#?}", st.versions);
    let left = files_under(&node.store());
    assert!(left.is_empty(), "the failed write left files in the store: {left:?}");
    // It keeps serving: again the same clear answer, and a status.
    node.run("load", &[&big.display().to_string()])
        .assert_code(1)
        .assert_stderr_has(&["cannot copy libtroupe_test_hostile.so"]);
    let mut client = node.client().await;
    status_of(&mut client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_cannot_be_written_loses_nothing_peers_get_the_zip_from_memory() {
    let dir = TestDir::new();
    let leader = NodeProc::start(&dir, "");
    // The store is gone and a plain file sits where it was: no zip can be written there.
    std::fs::remove_dir_all(leader.store()).expect("remove the store");
    std::fs::write(leader.store(), b"not a directory").expect("block the store");
    let hash = leader.load(&dir.faulty_zip());
    wait_for("the failed store write to be reported", REPLY_TIMEOUT, || {
        leader.log_text().contains("cannot write the zip into the store").then_some(())
    });
    // A member that must host an actor of the version fetches it from the leader's memory.
    let member = NodeProc::start_member(&dir, &leader.addr(), "fetcher", &[]);
    leader.wait_members(&[member.addr()]);
    let mut client = leader.client().await;
    let spec = troupe_actor_abi::message::CreateSpec {
        type_name: "faulty.Echo".into(),
        requirements: vec!["fetcher".into()],
        source_hash: Some(hash.clone()),
        ..Default::default()
    };
    let echo = create_spec(&mut client, spec).await.expect("create on the member");
    assert_eq!(echo.node, member.addr(), "placed on the member");
    assert_eq!(ask(&mut client, &echo, "fetched").await, "echo: fetched");
    assert!(member.status().versions.iter().any(|v| v.hash == hash), "the member holds the version");
}

// ---- the pthread-key budget -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn each_leaking_instance_costs_one_pthread_key_and_loads_are_refused_before_the_budget_runs_out() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hostile = Hostile::new(&dir);
    let mut client = node.client().await;
    let st = status_of(&mut client).await;
    assert_eq!(st.pthread_keys_max, 1024);
    assert_eq!(st.pthread_keys_refuse_at, 896);
    // A probe from inside the node process (exact: it counts how many keys can still be made).
    let probe_hash =
        load_bytes(&mut client, std::fs::read(hostile.zip(&dir, 999)).expect("read")).await.expect("load");
    let prober = create(&mut client, "hostile.KeyHog", &probe_hash).await.expect("create");
    let exact = |answer: String| -> u32 {
        answer
            .strip_prefix("keys ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("probe said {answer:?}"))
    };
    let start = exact(ask(&mut client, &prober, "probe").await);
    let mut problems: Vec<String> = Vec::new();

    // Load, use (thread::current once), unload: 20 distinct instances, each leaking a key
    // (dylib-unloading reference §2.5).
    const CYCLES: u32 = 20;
    for i in 0..CYCLES as usize {
        let zip = std::fs::read(hostile.zip(&dir, 100 + i)).expect("read");
        let hash = load_bytes(&mut client, zip).await.expect("load");
        let actor = create(&mut client, "hostile.ThreadKey", &hash).await.expect("create");
        assert_eq!(ask(&mut client, &actor, "x").await, "thread: x");
        match unload_now(&mut client, &hash).await {
            Response::Unloaded { gone: true, .. } => {}
            other => panic!("cycle {i}: not unloaded: {other:?}"),
        }
    }
    let after = exact(ask(&mut client, &prober, "probe").await);
    let shown = status_of(&mut client).await.pthread_keys_in_use;
    eprintln!("pthread keys in use: {start} → {after} after {CYCLES} instances; status shows {shown}");
    let grown = after - start;
    assert!(
        (CYCLES - 2..=CYCLES + 2).contains(&grown),
        "expected about one leaked key per instance ({CYCLES}); the count grew by {grown} ({start} → {after})"
    );
    if shown.abs_diff(after) > 2 {
        problems.push(format!(
            "status shows pthread_keys_in_use = {shown}, but {after} keys are in use (measured inside the node)"
        ));
    }

    // Spend the rest of the budget in one go, then load: refused, with a message that says
    // why and what to do.
    let need = st.pthread_keys_refuse_at.saturating_sub(after);
    assert_eq!(ask(&mut client, &prober, &format!("hog {need}")).await, format!("hogged {need}"));
    let now = exact(ask(&mut client, &prober, "probe").await);
    assert!(now >= 896, "the hog did not reach the budget: {now}");
    let zip = hostile.zip(&dir, 1000);
    let out = node.run("load", &[&zip.display().to_string()]);
    if out.code != 1 || !out.stderr.contains("pthread keys") {
        problems.push(format!("with {now} pthread keys in use, a load was not refused for it:\n{out}"));
    }
    // Already-loaded versions keep working.
    assert_eq!(ask(&mut client, &prober, "still here").await, "echo: still here");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_library_that_pins_itself_keeps_its_copy_and_later_loads_still_get_their_own_code() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hostile = Hostile::new(&dir);
    let pinned = node.load(&hostile.zip(&dir, 0));
    let mut client = node.client().await;
    let pin = create(&mut client, "hostile.Pin", &pinned).await.expect("create");
    let answer = ask(&mut client, &pin, "pin").await;
    assert!(answer.starts_with("pinned /proc/self/fd/"), "{answer}");
    node.run("unload", &[&pinned, "--grace", "200ms"]).assert_ok();
    wait_for("the pinned copy to be kept", REPLY_TIMEOUT, || {
        node.log_text().contains("its memory file is kept").then_some(())
    });
    // dlclose could not unmap it: its copy stays, and so does its `/proc/self/fd` path, which
    // glibc would otherwise hand back for the next library opened under the same number.
    assert!(node.maps_hash(&pinned), "{}", node.maps());
    // Five more versions at once, loaded over the open connection (a new connection would take
    // the lowest free descriptor number itself): their copies take the lowest free numbers,
    // where the pinned copy's would be if it had been closed.
    let variants = ZipVariants::new(&dir.faulty_zip());
    for n in 0..5 {
        let zip = variants.make(&format!("0.9.{n}"));
        let hash = match client.request(Request::Load { zip, info: format!("after the pin {n}") }).await {
            Ok(Response::Loaded { hash, .. }) => hash,
            other => panic!("load {n} after the pin: {other:?}"),
        };
        let echo = create(&mut client, "faulty.Echo", &hash).await.expect("create faulty.Echo");
        assert_eq!(ask(&mut client, &echo, "own code").await, "echo: own code");
    }
}
