//! The convention: nodes joined around a leader, placing actors by capability.
//!
//! - **Membership.** The node whose admin address equals the configured convention address
//!   leads. Every other node registers with it every heartbeat (`Register`, carrying its
//!   capabilities, fetch policy and active versions); the leader answers with every member, so
//!   members know each other and each other's versions (the *directory*), not just the leader.
//!   A member whose registration is older than `dead_after` is declared lost by the leader; a
//!   leader that has not answered for `dead_after` is declared lost by its members, who keep
//!   registering every heartbeat, so a restarted leader has everyone back within one. A peer
//!   link that cannot connect (the process is gone) declares the peer lost at once.
//! - **Loss.** When a node is lost, every local actor with a child there gets
//!   `ChildActorExited` (`NodeLost`), and every local actor whose parent was there is stopped
//!   (no orphans). Watchers hear of it.
//! - **Global names** ([`names`]) are unique in the convention: the leader holds the table;
//!   hosting nodes release a name when its actor exits; names of a lost node are dropped.

pub(crate) mod names;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use troupe_actor_abi::message::{Address, ConventionChange, ExitReason};

use crate::peers::LinkError;
use crate::runtime::core::Core;
use crate::tables::members::update;
use crate::wire::{MemberInfo, PeerRequest, Response};

/// Starts the membership task: registration with the leader (members) or expiry of silent
/// members (the leader).
pub(crate) fn start(core: &Arc<Core>) {
    let weak = Arc::downgrade(core);
    let leader = core.is_leader();
    let heartbeat = core.conv.heartbeat;
    tokio::spawn(async move {
        loop {
            let Some(s) = weak.upgrade() else { break };
            if s.stopping() {
                break;
            }
            if leader {
                s.expire_members();
            } else {
                let _ = s.refresh_membership().await;
            }
            let period = if leader { heartbeat / 2 } else { heartbeat };
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = s.reregister.notified() => {}
            }
        }
    });
}

impl Core {
    /// What this node tells the convention about itself.
    pub(crate) fn self_info(&self) -> MemberInfo {
        MemberInfo {
            node: self.addr.clone(),
            capabilities: self.caps.list(),
            remote_sources: self.conv.remote_sources,
            sources: self.versions.active_sources(),
            pid: std::process::id(),
        }
    }

    /// Registers with the leader now and takes its member list (members only).
    pub(crate) async fn refresh_membership(&self) -> Result<(), LinkError> {
        if self.is_leader() {
            return Ok(());
        }
        let leader = self.conv.leader.clone();
        let t0 = Instant::now();
        let timeout = self.conv.heartbeat.max(Duration::from_millis(500));
        match self.peers.call(&leader, PeerRequest::Register(self.self_info()), timeout).await {
            Ok(Response::Registered { members, groups }) => {
                self.metrics.heartbeat_rtt(t0.elapsed());
                self.groups.replace(groups);
                self.apply_members(members);
                Ok(())
            }
            Ok(other) => {
                tracing::warn!(%leader, "unexpected answer to a registration: {other:?}");
                Ok(())
            }
            Err(e) => {
                if self.members.leader_silent(&leader, self.conv.dead_after) {
                    self.node_lost(&leader, ConventionChange::Lost);
                }
                Err(e)
            }
        }
    }

    /// A member takes the leader's list: joins, departures, restarts and capability changes.
    fn apply_members(&self, members: Vec<MemberInfo>) {
        let listed: BTreeMap<String, MemberInfo> =
            members.into_iter().filter(|m| m.node != self.addr).map(|m| (m.node.clone(), m)).collect();
        for g in self.members.missing_from(&listed) {
            self.node_lost(&g, ConventionChange::Lost);
        }
        let updates: Vec<_> = listed.into_values().filter_map(|info| self.members.upsert(info)).collect();
        self.notify_watchers(&self.members.watchers(), &updates);
    }

    /// The leader handles a member's registration (join or heartbeat).
    pub fn handle_register(&self, info: MemberInfo) -> Response {
        if info.node == self.addr {
            // Misconfigured: another process claims our address.
            return Response::Registered { members: Vec::new(), groups: BTreeMap::new() };
        }
        if self.members.restarted(&info) {
            self.node_lost(&info.node, ConventionChange::Lost);
        }
        let updates: Vec<_> = self.members.upsert(info).into_iter().collect();
        let mut members = self.members.infos();
        members.push(self.self_info());
        self.notify_watchers(&self.members.watchers(), &updates);
        Response::Registered { members, groups: self.groups.all() }
    }

    /// The leader drops members it has not heard from for `dead_after`.
    fn expire_members(&self) {
        for d in self.members.silent(self.conv.dead_after) {
            tracing::warn!(node = %d, "member silent for {:?}: declared lost", self.conv.dead_after);
            self.node_lost(&d, ConventionChange::Lost);
        }
    }

    /// The connection a member registers over closed. If its process is gone, it is lost now,
    /// not `dead_after` later: its port refuses a connection, or (while a killed process is
    /// being torn down, its listening socket may still complete a handshake) the connection
    /// closes without the challenge every live node sends first. A member that answers, or a
    /// host that does not answer at all, is left to the heartbeat.
    pub fn member_link_closed(self: &Arc<Self>, member: &str) {
        let me = self.clone();
        let member = member.to_string();
        tracing::debug!(%member, "the link of a member closed: probing it");
        tokio::spawn(async move {
            let probe = async {
                let mut s = tokio::net::TcpStream::connect(&member).await?;
                let mut first = [0u8; 1];
                tokio::io::AsyncReadExt::read(&mut s, &mut first).await
            };
            let gone = match tokio::time::timeout(me.conv.heartbeat, probe).await {
                Ok(Ok(0)) => Some("its link closed and it closes connections unanswered"),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Some("its link closed and its port refuses connections")
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    Some("its link closed and it resets connections unanswered")
                }
                _ => None,
            };
            if let Some(why) = gone {
                me.peer_unreachable(&member, why);
            }
        });
    }

    /// A peer link could not connect or broke.
    pub(crate) fn peer_unreachable(&self, addr: &str, why: &str) {
        if self.members.contains(addr) {
            tracing::warn!(node = %addr, "peer unreachable ({why}): declared lost");
            self.node_lost(addr, ConventionChange::Lost);
        }
    }

    /// A peer left or was lost: tell parents of its actors, stop children of its actors,
    /// forget its names, tell watchers.
    pub fn node_lost(&self, addr: &str, change: ConventionChange) {
        let caps = self.members.remove(addr);
        self.names.drop_node(addr);
        let (orphans, bereaved) = self.actors.lose_node(addr);
        self.peers.forget(addr);
        if caps.is_none() && orphans.is_empty() && bereaved.is_empty() {
            return;
        }
        tracing::info!(node = %addr, ?change, orphans = orphans.len(), children_lost = bereaved.len(), "node left the convention");
        let reason = ExitReason::NodeLost { node: addr.to_string() };
        for id in orphans {
            self.request_exit(id, reason.clone(), None);
        }
        for (parent, child) in bereaved {
            self.notify_parent(self.address(parent), child, reason.clone());
        }
        if let Some(caps) = caps {
            self.notify_watchers(&self.members.watchers(), &[update(addr, &caps, false, change)]);
        }
    }

    /// An actor starts or stops watching the convention; on start it hears of every member.
    pub(crate) fn watch(&self, watcher: Address, enable: bool) {
        let updates = self.members.watch(watcher.clone(), enable);
        self.notify_watchers(&[watcher], &updates);
    }

    /// On stop: tell the convention we are leaving, and flush everything queued to peers.
    pub(crate) async fn leave_convention(&self) {
        let members = self.members.addrs();
        let bye = || PeerRequest::Deregister { node: self.addr.clone() };
        if self.is_leader() {
            for m in &members {
                self.peers.notify(m, bye());
            }
        } else if members.contains(&self.conv.leader) {
            self.peers.notify(&self.conv.leader, bye());
        }
        self.peers.flush(Duration::from_secs(3)).await;
    }
}

#[cfg(test)]
mod tests;
