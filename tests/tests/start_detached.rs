//! `troupe start` without `--foreground`, as a user runs it: the CLI re-runs itself detached,
//! and the node it leaves behind must have every setting given on the command line. The
//! detached start once rebuilt the node's arguments by hand and dropped `--lib-copies`, so
//! `--lib-copies store` still copied libraries into memory files; here the library must be
//! mapped from the store.

use std::path::{Path, PathBuf};

use troupe_node::status::StatusReport;
use troupe_tests::{free_port, mapping_owner, troupe, wait_for, TestDir, REPLY_TIMEOUT};

/// A node that `troupe start` detached: not our child, so it is stopped with `troupe stop`
/// (and killed if that fails) when dropped, also when an assertion failed first.
struct Detached {
    port: String,
    pid: Option<u32>,
    stopped: bool,
}

impl Detached {
    /// `troupe stop PORT`, expected to succeed.
    fn stop(&mut self) {
        troupe(&["stop", &self.port], None).assert_ok();
        self.stopped = true;
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if troupe(&["stop", &self.port], None).code == 0 {
            return;
        }
        if let Some(pid) = self.pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is the node's, as its
            // status reported it, and the node did not answer `troupe stop`.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn status(port: &str) -> StatusReport {
    let out = troupe(&["status", port, "--json"], None);
    out.assert_ok();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not a StatusReport: {e}\n{out}"))
}

#[test]
fn detached_start_keeps_lib_copies_store() {
    let dir = TestDir::new();
    let port = free_port().to_string();
    let state = dir.join("state");
    let state_arg = state.display().to_string();
    let convention = format!("127.0.0.1:{port}");
    let start = troupe(
        &["start", &port, "--lib-copies", "store", "--state-dir", &state_arg, "--convention", &convention],
        None,
    );
    let mut node = Detached { port: port.clone(), pid: None, stopped: false };
    start.assert_ok();
    let report = status(&port);
    node.pid = Some(report.pid);
    assert!(start.stdout.contains(&format!("pid {}", report.pid)), "{start}");

    let hash = troupe(&["load", &port, &dir.faulty_zip().display().to_string()], None);
    hash.assert_ok();
    let hash = hash.stdout.trim().to_string();
    let version = status(&port).versions.into_iter().find(|v| v.hash == hash).expect("the version is listed");
    let stem = format!("{hash}-{}", version.generation);
    let store = state.join("store");
    let lib: PathBuf = store.join(format!("{stem}.libtroupe_test_faulty.so"));
    assert_eq!(version.files, vec![lib.display().to_string()], "the library was not copied into the store");

    // An actor of the version answers, so its library is open and mapped.
    let created = troupe(&["create", &port, &hash, "faulty.Echo"], None);
    created.assert_ok();
    let echo = created.stdout.trim().to_string();
    let reply = troupe(&["ask", &port, &echo, "hi"], None);
    reply.assert_ok();
    assert_eq!(reply.stdout.trim(), "echo: hi", "{reply}");

    let maps_path = format!("/proc/{}/maps", report.pid);
    let maps = wait_for("the library in the node's maps", REPLY_TIMEOUT, || {
        let maps = std::fs::read_to_string(&maps_path).expect("cannot read the node's maps");
        maps.contains(&lib.display().to_string()).then_some(maps)
    });
    let owners: Vec<String> = maps.lines().filter_map(|l| mapping_owner(l, Path::new(&store))).collect();
    assert!(owners.iter().all(|o| *o == stem), "{maps}");
    assert!(!maps.contains("/memfd:troupe:"), "a library copy is a memory file:\n{maps}");

    node.stop();
    wait_for("the node's exit", REPLY_TIMEOUT, || {
        (!Path::new(&format!("/proc/{}", report.pid)).exists()).then_some(())
    });
}
