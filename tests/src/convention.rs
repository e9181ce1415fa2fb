//! Conventions of test nodes: a leader and its members ([`Convention`]), what a node knows of
//! its fellow members, and waiting (within [`CONVENTION_TIMEOUT`]) until joins, losses and
//! moves have happened.

use std::time::{Duration, Instant};

use crate::files::TestDir;
use crate::node::NodeProc;

/// How long a convention may take to notice a join, a loss or a change: generous, because
/// the tests share two cores (the nodes themselves use heartbeats of a second or less); a
/// guard against a hang, never a latency claim.
pub const CONVENTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Extra `troupe start` arguments for fast failure detection in tests that wait for losses.
pub const FAST_HEARTBEAT: &[&str] = &["--heartbeat", "200ms", "--dead-after", "1s"];

/// A leader and its members, all on loopback ports chosen at run time.
pub struct Convention {
    /// `nodes[0]` is the leader; the others are members, in the order they were started.
    /// `None` where a test stopped or killed a node and took it out.
    pub nodes: Vec<Option<NodeProc>>,
    leader_addr: String,
}

impl Convention {
    /// Starts a leader with `specs[0]` (capabilities, extra `troupe start` arguments) and a
    /// member for every other spec, then waits until the leader lists every member as alive
    /// and every member lists every other node.
    pub fn start(dir: &TestDir, specs: &[(&str, &[&str])]) -> Convention {
        let (caps, extra) = specs.first().copied().unwrap_or(("", &[]));
        let leader = NodeProc::start_with(dir, caps, extra);
        let leader_addr = leader.addr();
        let mut nodes = vec![Some(leader)];
        for (caps, extra) in &specs[1.min(specs.len())..] {
            nodes.push(Some(NodeProc::start_member(dir, &leader_addr, caps, extra)));
        }
        let conv = Convention { nodes, leader_addr };
        conv.wait_settled();
        conv
    }

    /// A convention of nodes a test started itself (`nodes[0]` must be the leader).
    pub fn from_nodes(nodes: Vec<NodeProc>, leader_addr: &str) -> Convention {
        Convention { nodes: nodes.into_iter().map(Some).collect(), leader_addr: leader_addr.to_string() }
    }

    /// Waits until every running node knows every other running node as alive.
    #[track_caller]
    pub fn wait_settled(&self) {
        let addrs: Vec<String> = self.nodes.iter().flatten().map(NodeProc::addr).collect();
        for n in self.nodes.iter().flatten() {
            let others: Vec<String> = addrs.iter().filter(|a| **a != n.addr()).cloned().collect();
            n.wait_members(&others);
        }
    }

    /// The leader's address (`--convention` of every member).
    pub fn leader_addr(&self) -> &str {
        &self.leader_addr
    }

    /// The leader's port.
    pub fn leader_port(&self) -> u16 {
        self.leader_addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("host:port")
    }

    /// The leader.
    #[track_caller]
    pub fn leader(&self) -> &NodeProc {
        self.node(0)
    }

    /// Node `i` (0 is the leader).
    #[track_caller]
    pub fn node(&self, i: usize) -> &NodeProc {
        self.nodes[i].as_ref().unwrap_or_else(|| panic!("node {i} was taken out"))
    }

    /// Node `i`, mutably.
    #[track_caller]
    pub fn node_mut(&mut self, i: usize) -> &mut NodeProc {
        self.nodes[i].as_mut().unwrap_or_else(|| panic!("node {i} was taken out"))
    }

    /// Starts another member; returns its index.
    pub fn add_member(&mut self, dir: &TestDir, caps: &str, extra: &[&str]) -> usize {
        let n = NodeProc::start_member(dir, &self.leader_addr, caps, extra);
        self.nodes.push(Some(n));
        self.nodes.len() - 1
    }

    /// The index of the running node with admin address `addr`.
    pub fn index_of(&self, addr: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.as_ref().is_some_and(|n| n.addr() == addr))
    }

    /// Running nodes' `(index, actor type names)`.
    pub fn placement(&self) -> Vec<(usize, Vec<String>)> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| n.as_ref().map(|n| (i, n.actor_types()))).collect()
    }

    /// The index of the node hosting a live actor of `type_name` (the first, if several).
    pub fn host_of(&self, type_name: &str) -> Option<usize> {
        self.placement().into_iter().find(|(_, t)| t.iter().any(|t| t == type_name)).map(|(i, _)| i)
    }
}

/// Polls until `check` holds for the convention (within [`CONVENTION_TIMEOUT`]), or panics
/// naming `what` and where every actor runs now.
#[track_caller]
pub fn wait_conv(conv: &Convention, what: &str, mut check: impl FnMut(&Convention) -> bool) {
    let deadline = Instant::now() + CONVENTION_TIMEOUT;
    while !check(conv) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; placement now: {:?}",
            conv.placement()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl NodeProc {
    /// `troupe status PORT --convention --json`, parsed as JSON: an array of
    /// `{node, role, alive, status, error}`.
    #[track_caller]
    pub fn status_convention_json(&self) -> Vec<serde_json::Value> {
        let out = self.run("status", &["--convention", "--json"]);
        out.assert_ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("status --convention --json is not a JSON array: {e}\n{out}"))
    }

    /// The members this node knows (address → alive), from its status.
    pub fn known_members(&self) -> Vec<(String, bool)> {
        self.try_status()
            .map(|s| s.convention.members.iter().map(|m| (m.node.clone(), m.alive)).collect())
            .unwrap_or_default()
    }

    /// Waits until this node lists exactly `members` as alive members (in any order).
    #[track_caller]
    pub fn wait_members(&self, members: &[String]) {
        let mut want: Vec<String> = members.to_vec();
        want.sort();
        let what = format!("{} to list members {want:?}", self.addr());
        let deadline = Instant::now() + CONVENTION_TIMEOUT;
        loop {
            let mut alive: Vec<String> =
                self.known_members().into_iter().filter(|(_, a)| *a).map(|(n, _)| n).collect();
            alive.sort();
            if alive == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {CONVENTION_TIMEOUT:?} waiting for {what}; last seen {alive:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
