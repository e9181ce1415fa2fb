//! `troupe status`: a node's capabilities, versions, actors and global names, as a table
//! ([`render_status`]) or JSON, and with `--convention` every node of its convention
//! ([`ConventionNode`]). `troupe top` and `troupe logs` ask for the status through
//! [`node_status`] too.

use std::io::Write;

use anyhow::anyhow;
use serde::{Deserialize, Serialize};
use troupe_node::protocol::{Request, Response};
use troupe_node::status::{ConventionStatus, StatusReport};

use super::node_addr;
use crate::{refused, Failure, EXIT_OK};

/// The status of the node at `addr` (`host:port`).
pub(crate) async fn node_status(addr: &str) -> Result<StatusReport, Failure> {
    let mut c = super::connect_addr(addr).await?;
    match c.request(Request::Status).await? {
        Response::Status(report) => Ok(*report),
        _ => Err(refused(anyhow!("unexpected answer to status"))),
    }
}

/// One node in `status --convention`.
#[derive(Serialize, Deserialize, Debug)]
pub struct ConventionNode {
    /// Admin address.
    pub node: String,
    /// `leader` or `member`.
    pub role: String,
    /// Whether it answered.
    pub alive: bool,
    /// Its status (when it answered).
    pub status: Option<StatusReport>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// `troupe status PORT [--json] [--convention]`.
pub(crate) async fn status(port: &str, json: bool, convention: bool) -> Result<u8, Failure> {
    let report = node_status(&node_addr(port)).await?;
    let text = if convention {
        let nodes = convention_nodes(&report).await;
        if json {
            serde_json::to_string_pretty(&nodes).map_err(|e| refused(anyhow!(e)))? + "\n"
        } else {
            render_convention(&report, &nodes)
        }
    } else if json {
        serde_json::to_string_pretty(&report).map_err(|e| refused(anyhow!(e)))? + "\n"
    } else {
        render_status(&report)
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`troupe status 1900 | head`) is not an error.
    let _ = out.write_all(text.as_bytes());
    Ok(EXIT_OK)
}

/// Every node `report`'s node knows of (itself included), leader first, each with its own
/// status or the reason it did not answer.
async fn convention_nodes(report: &StatusReport) -> Vec<ConventionNode> {
    let mut nodes = vec![ConventionNode {
        node: report.node.clone(),
        role: report.convention.role.clone(),
        alive: true,
        status: None,
        error: None,
    }];
    for m in &report.convention.members {
        nodes.push(ConventionNode {
            node: m.node.clone(),
            role: m.role.clone(),
            alive: false,
            status: None,
            error: None,
        });
    }
    nodes.sort_by(|a, b| (a.role != "leader", &a.node).cmp(&(b.role != "leader", &b.node)));
    for n in nodes.iter_mut() {
        if n.node == report.node {
            n.status = Some(report.clone());
            continue;
        }
        match node_status(&n.node).await {
            Ok(r) => {
                n.alive = true;
                n.status = Some(r);
            }
            Err(f) => n.error = Some(f.error.to_string()),
        }
    }
    nodes
}

/// The `status --convention` text: one table per node, or why it did not answer.
fn render_convention(report: &StatusReport, nodes: &[ConventionNode]) -> String {
    let mut s = if report.convention.role == "alone" {
        format!("{}: {}\n", report.node, convention_place(&report.convention))
    } else {
        format!(
            "convention led by {} ({} node{})\n",
            report.convention.leader,
            nodes.len(),
            if nodes.len() == 1 { "" } else { "s" }
        )
    };
    for n in nodes {
        s += &format!(
            "\n=== {} ({}, {}) ===\n",
            n.node,
            n.role,
            if n.alive { "alive" } else { "NOT ANSWERING" }
        );
        match (&n.status, &n.error) {
            (Some(r), _) => s += &render_status(r),
            (None, Some(e)) => s += &format!("  {e}\n"),
            _ => {}
        }
    }
    s
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// The human-readable status table.
pub fn render_status(r: &StatusReport) -> String {
    let mut s = render_header(r);
    render_members(r, &mut s);
    render_versions(r, &mut s);
    render_actors(r, &mut s);
    render_names(r, &mut s);
    s
}

/// Where a node stands in its convention, as `status` and `start` say it.
pub(crate) fn convention_place(c: &ConventionStatus) -> String {
    match c.role.as_str() {
        "alone" => format!(
            "serving alone: nobody listens at the convention address ({}); it joins a leader that starts there",
            c.leaders.join(", ")
        ),
        "leader" if c.gathering => {
            format!("leader of the convention led by {}, gathering its members' names", c.leader)
        }
        "member" if !c.joined => format!("member of the convention led by {}, not answered yet", c.leader),
        role => format!("{role} of the convention led by {}", c.leader),
    }
}

/// The node itself: address, role, capabilities, authority, store and pthread keys.
fn render_header(r: &StatusReport) -> String {
    let caps = if r.capabilities.is_empty() { "none".to_string() } else { r.capabilities.join(", ") };
    format!(
        "node {} (pid {}, {})\n  capabilities: {caps}\n  source authority: {}\n  remote sources: {}\n  store: {}\n  pthread keys: {} in use of {} (loads refused from {})\n",
        r.node,
        r.pid,
        convention_place(&r.convention),
        r.authority,
        r.convention.remote_sources,
        r.store,
        r.pthread_keys_in_use,
        r.pthread_keys_max,
        r.pthread_keys_refuse_at
    )
}

/// The other nodes of the convention, as this node sees them (nothing when there are none).
fn render_members(r: &StatusReport, s: &mut String) {
    if r.convention.members.is_empty() {
        return;
    }
    *s += &format!("\nmembers ({}):\n", r.convention.members.len());
    for m in &r.convention.members {
        let caps =
            if m.capabilities.is_empty() { "no capabilities".to_string() } else { m.capabilities.join(", ") };
        *s += &format!(
            "  {:<21} {:<7} {:<5} seen {} ms ago  [{caps}]  {} version{}\n",
            m.node,
            m.role,
            if m.alive { "alive" } else { "LOST?" },
            m.last_seen_ms,
            m.sources.len(),
            if m.sources.len() == 1 { "" } else { "s" }
        );
    }
}

/// The loaded versions, then the last few unloaded ones.
fn render_versions(r: &StatusReport, s: &mut String) {
    *s += &format!("\nversions ({}):\n", r.versions.len());
    for v in &r.versions {
        *s += &format!(
            "  {}  {:<10} gen {:<3} {:>3} actor{}  {}  ({})\n",
            short(&v.hash),
            v.state,
            v.generation,
            v.live_actors,
            if v.live_actors == 1 { " " } else { "s" },
            v.package,
            v.info
        );
        if v.threads.limit > 0 {
            let t = &v.threads;
            *s += &format!(
                "        threads: {} busy, {} idle (at most {}); {} queued\n",
                t.busy, t.idle, t.limit, v.queue_depth
            );
        }
        for l in &v.long_handlers {
            *s += &format!(
                "        long handler: {} {} running for {:.1} s\n",
                l.actor,
                l.type_name,
                l.running_ms as f64 / 1000.0
            );
        }
    }
    if !r.gone.is_empty() {
        *s += &format!("\nrecently unloaded ({}):\n", r.gone.len());
        for g in r.gone.iter().rev().take(5) {
            *s += &format!("  {}  gen {:<3} closed in {:.2} ms\n", short(&g.hash), g.generation, g.unload_ms);
        }
    }
}

/// The live actors, with their parent and global name.
fn render_actors(r: &StatusReport, s: &mut String) {
    *s += &format!("\nactors ({}):\n", r.actors.len());
    for a in &r.actors {
        let parent = a.parent.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let name = a.global_name.as_deref().map(|n| format!("  name {n}")).unwrap_or_default();
        *s += &format!("  {}  {:<22} {}  parent {parent}{name}\n", a.address, a.type_name, short(&a.hash));
    }
}

/// The groups (named releases) and the global names (nothing for either when there are none).
fn render_names(r: &StatusReport, s: &mut String) {
    if !r.groups.is_empty() {
        *s += &format!("\ngroups ({}):\n", r.groups.len());
        for (name, g) in &r.groups {
            let active = g.active.as_deref().map(short).unwrap_or("-");
            let others: Vec<&str> = g
                .versions
                .iter()
                .filter(|v| Some(v.as_str()) != g.active.as_deref())
                .map(|v| short(v))
                .collect();
            *s += &format!(
                "  @{name:<16} active {active}  kept {}\n",
                if others.is_empty() { "-".into() } else { others.join(", ") }
            );
        }
    }
    if !r.global_names.is_empty() {
        *s += &format!("\nglobal names ({}):\n", r.global_names.len());
        for (n, a) in &r.global_names {
            *s += &format!("  {n} -> {a}\n");
        }
    }
}
