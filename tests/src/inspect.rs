//! What a test asks of a running [`NodeProc`], as a user or an operator would see it: the
//! `troupe` CLI against its port, its status, and from `/proc` the library copies it maps, its
//! open files and its threads.

use std::path::Path;

use troupe_node::status::StatusReport;

use crate::cli::{troupe_with_secret, Cli};
use crate::files::mapping_owner;
use crate::node::NodeProc;

impl NodeProc {
    /// `troupe CMD PORT REST...` (the port inserted after the subcommand), with the node's
    /// shared secret if it has one.
    pub fn run(&self, cmd: &str, rest: &[&str]) -> Cli {
        let port = self.port_arg();
        let mut args = vec![cmd, port.as_str()];
        args.extend_from_slice(rest);
        troupe_with_secret(&args, None, self.secret_file.as_deref())
    }

    /// `troupe load PORT ZIP`, expected to succeed; returns the hash it printed.
    #[track_caller]
    pub fn load(&self, zip: &Path) -> String {
        let out = self.run("load", &[&zip.display().to_string()]);
        out.assert_ok();
        let hash = out.stdout.trim().to_string();
        assert!(
            hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "load printed no hash:\n{out}"
        );
        hash
    }

    /// `echo TEXT | troupe app HASH --port PORT`.
    pub fn app(&self, hash: &str, text: &str) -> Cli {
        let port = self.port_arg();
        troupe_with_secret(&["app", hash, "--port", &port], Some(text), self.secret_file.as_deref())
    }

    /// `troupe status PORT --json`, parsed.
    #[track_caller]
    pub fn status(&self) -> StatusReport {
        let out = self.run("status", &["--json"]);
        out.assert_ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json is not a StatusReport: {e}\n{out}"))
    }

    /// The status, or `None` if the node does not answer (it is stopping or gone).
    pub fn try_status(&self) -> Option<StatusReport> {
        let out = self.run("status", &["--json"]);
        if out.code != 0 {
            return None;
        }
        serde_json::from_str(&out.stdout).ok()
    }

    /// Type names of the live actors on this node (sorted), `[]` if it does not answer.
    pub fn actor_types(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .try_status()
            .map(|s| s.actors.iter().map(|a| a.type_name.clone()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// `/proc/<pid>/maps`.
    pub fn maps(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/maps", self.pid())).expect("cannot read the node's maps")
    }

    /// The `<hash>-<generation>` of every version whose library copy the process maps.
    pub fn mapped_versions(&self) -> Vec<String> {
        let store = self.store();
        let mut v: Vec<String> = self.maps().lines().filter_map(|l| mapping_owner(l, &store)).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Whether a library copy of `hash` (any generation) is mapped.
    pub fn maps_hash(&self, hash: &str) -> bool {
        self.mapped_versions().iter().any(|v| v.starts_with(&format!("{hash}-")))
    }

    /// Whether the process maps any version's library copy (a memory file or a store file).
    pub fn maps_any_version(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/maps", self.pid()))
            .is_ok_and(|m| m.lines().any(|l| mapping_owner(l, &self.store()).is_some()))
    }

    /// How many file descriptors the node has open.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("cannot list the node's fds").count()
    }

    /// The node's thread count (`Threads:` of `/proc/<pid>/status`).
    pub fn threads(&self) -> usize {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("cannot read the node's status");
        s.lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("Threads: in /proc/pid/status")
    }
}
