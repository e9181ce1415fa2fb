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
//! - **Global names** are unique in the convention: the leader holds the table; hosting nodes
//!   release a name when its actor exits; names of a lost node are dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use troupe_actor_abi::message::{Address, ConventionChange, ExitReason, Incoming, Payload, SystemMessage};

use crate::node::{Shared, State, VersionState};
use crate::protocol::{MemberInfo, RemoteSources, Request, Response, SourceSummary};
use crate::status::{ConventionStatus, MemberStatus};

/// How a node takes part in a convention.
#[derive(Clone, Debug)]
pub struct ConventionConfig {
    /// The leader's admin address (`host:port`); the node with this address leads.
    pub leader: String,
    /// How often members register with the leader.
    pub heartbeat: Duration,
    /// Silence after which a node is declared lost.
    pub dead_after: Duration,
    /// Whether this node fetches versions it lacks from peers.
    pub remote_sources: RemoteSources,
}

impl Default for ConventionConfig {
    fn default() -> Self {
        ConventionConfig {
            leader: "127.0.0.1:1900".into(),
            // Seconds, not Thespian's 7 minutes: failures must be noticed while a user waits.
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
            remote_sources: RemoteSources::Yes,
        }
    }
}

/// What a node knows of another member.
pub(crate) struct Member {
    pub(crate) info: MemberInfo,
    pub(crate) last_seen: Instant,
}

impl Member {
    pub(crate) fn has_source(&self, hash: &str) -> bool {
        self.info.sources.iter().any(|s| s.hash == hash)
    }
    pub(crate) fn source_types(&self, hash: &str) -> Option<&BTreeMap<String, Vec<String>>> {
        self.info.sources.iter().find(|s| s.hash == hash).map(|s| &s.types)
    }
}

/// Starts the membership task: registration with the leader (members) or expiry of silent
/// members (the leader).
pub(crate) fn start(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    let leader = shared.is_leader();
    let heartbeat = shared.conv.heartbeat;
    tokio::spawn(async move {
        loop {
            let Some(s) = weak.upgrade() else { break };
            if s.lock().stopping {
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

fn update(node: &str, caps: &[String], added: bool, change: ConventionChange) -> Payload {
    Payload::System(SystemMessage::ActorSystemConventionUpdate {
        node: node.to_string(),
        capabilities: caps.to_vec(),
        added,
        change,
    })
}

/// Records a member heard from now; returns the update watchers get (a join or a capability
/// change), if any.
fn upsert_member(st: &mut State, info: MemberInfo) -> Option<Payload> {
    match st.members.get_mut(&info.node) {
        Some(m) => {
            let changed = (m.info.capabilities != info.capabilities)
                .then(|| update(&info.node, &info.capabilities, true, ConventionChange::CapabilitiesChanged));
            m.info = info;
            m.last_seen = Instant::now();
            changed
        }
        None => {
            tracing::info!(node = %info.node, "member joined");
            let joined = update(&info.node, &info.capabilities, true, ConventionChange::Joined);
            st.members.insert(info.node.clone(), Member { info, last_seen: Instant::now() });
            Some(joined)
        }
    }
}

impl Shared {
    /// What this node tells the convention about itself.
    pub(crate) fn self_info(&self, st: &State) -> MemberInfo {
        let mut sources: Vec<SourceSummary> = st
            .versions
            .values()
            .filter(|v| v.state == VersionState::Active)
            .map(|v| SourceSummary { hash: v.hash.clone(), types: v.types.clone() })
            .collect();
        sources.sort_by(|a, b| a.hash.cmp(&b.hash));
        MemberInfo {
            node: self.addr.clone(),
            capabilities: st.capabilities.iter().cloned().collect(),
            remote_sources: self.conv.remote_sources,
            sources,
            pid: std::process::id(),
        }
    }

    fn notify_watchers(&self, watchers: Vec<Address>, updates: Vec<Payload>) {
        for w in &watchers {
            for u in &updates {
                self.route(Incoming { sender: None, payload: u.clone() }, w, None);
            }
        }
    }

    /// Registers with the leader now and takes its member list (members only).
    pub(crate) async fn refresh_membership(&self) -> Result<(), String> {
        if self.is_leader() {
            return Ok(());
        }
        let Some(me) = self.arc() else {
            return Err("stopping".into());
        };
        let info = self.self_info(&self.lock());
        let leader = self.conv.leader.clone();
        let t0 = Instant::now();
        let answer = self
            .peers()
            .call(&me, &leader, Request::Register(info), self.conv.heartbeat.max(Duration::from_millis(500)))
            .await;
        match answer {
            Ok(Response::Registered { members, groups }) => {
                self.counters
                    .heartbeat_rtt_us
                    .store(t0.elapsed().as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
                self.lock().groups = groups;
                self.apply_members(members);
                Ok(())
            }
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => {
                let lost = {
                    let st = self.lock();
                    st.members.contains_key(&leader) && st.leader_last_ok.elapsed() > self.conv.dead_after
                };
                if lost {
                    self.node_lost(&leader, ConventionChange::Lost);
                }
                Err(e)
            }
        }
    }

    /// A member takes the leader's list: joins, departures, restarts and capability changes.
    fn apply_members(&self, members: Vec<MemberInfo>) {
        let mut gone = Vec::new();
        let mut updates = Vec::new();
        let watchers;
        {
            let mut st = self.lock();
            st.leader_last_ok = Instant::now();
            let listed: BTreeMap<String, MemberInfo> =
                members.into_iter().filter(|m| m.node != self.addr).map(|m| (m.node.clone(), m)).collect();
            for (addr, old) in &st.members {
                match listed.get(addr) {
                    None => gone.push(addr.clone()),
                    // Same address, new process: the old one and its actors are gone.
                    Some(new) if new.pid != old.info.pid => gone.push(addr.clone()),
                    _ => {}
                }
            }
            drop(st);
            for g in &gone {
                self.node_lost(g, ConventionChange::Lost);
            }
            st = self.lock();
            for info in listed.into_values() {
                updates.extend(upsert_member(&mut st, info));
            }
            watchers = st.watchers.iter().cloned().collect::<Vec<_>>();
        }
        self.notify_watchers(watchers, updates);
    }

    /// The leader handles a member's registration (join or heartbeat).
    pub fn handle_register(&self, info: MemberInfo) -> Response {
        if info.node == self.addr {
            // Misconfigured: another process claims our address.
            return Response::Registered { members: Vec::new(), groups: BTreeMap::new() };
        }
        let restarted = self.lock().members.get(&info.node).is_some_and(|m| m.info.pid != info.pid);
        if restarted {
            self.node_lost(&info.node, ConventionChange::Lost);
        }
        let (members, watchers, updates) = {
            let mut st = self.lock();
            let updates: Vec<Payload> = upsert_member(&mut st, info).into_iter().collect();
            let mut members: Vec<MemberInfo> = st.members.values().map(|m| m.info.clone()).collect();
            members.push(self.self_info(&st));
            (members, st.watchers.iter().cloned().collect::<Vec<_>>(), updates)
        };
        self.notify_watchers(watchers, updates);
        Response::Registered { members, groups: self.lock().groups.clone() }
    }

    /// The leader drops members it has not heard from for `dead_after`.
    fn expire_members(&self) {
        let dead: Vec<String> = {
            let st = self.lock();
            st.members
                .iter()
                .filter(|(_, m)| m.last_seen.elapsed() > self.conv.dead_after)
                .map(|(a, _)| a.clone())
                .collect()
        };
        for d in dead {
            tracing::warn!(node = %d, "member silent for {:?}: declared lost", self.conv.dead_after);
            self.node_lost(&d, ConventionChange::Lost);
        }
    }

    /// The connection a member registers over closed. If its process is gone, it is lost now,
    /// not `dead_after` later: its port refuses a connection, or (while a killed process is
    /// being torn down, its listening socket may still complete a handshake) the connection
    /// closes without the challenge every live node sends first. A member that answers, or a
    /// host that does not answer at all, is left to the heartbeat.
    pub(crate) fn member_link_closed(self: &Arc<Self>, member: &str) {
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
        let known = self.lock().members.contains_key(addr);
        if known {
            tracing::warn!(node = %addr, "peer unreachable ({why}): declared lost");
            self.node_lost(addr, ConventionChange::Lost);
        }
    }

    /// A peer left or was lost: tell parents of its actors, stop children of its actors,
    /// forget its names, tell watchers.
    pub fn node_lost(&self, addr: &str, change: ConventionChange) {
        let (member, orphans, bereaved, watchers) = {
            let mut st = self.lock();
            let member = st.members.remove(addr);
            st.conv_names.retain(|_, a| a.node != addr);
            let orphans: Vec<u64> = st
                .actors
                .iter()
                .filter(|(_, r)| r.parent.as_ref().is_some_and(|p| p.node == addr))
                .map(|(id, _)| *id)
                .collect();
            let mut bereaved = Vec::new();
            for (id, rec) in st.actors.iter_mut() {
                let lost: Vec<Address> = rec.children.iter().filter(|c| c.node == addr).cloned().collect();
                for c in lost {
                    rec.children.remove(&c);
                    bereaved.push((*id, c));
                }
            }
            (member, orphans, bereaved, st.watchers.iter().cloned().collect::<Vec<_>>())
        };
        self.peers().forget(addr);
        if member.is_none() && orphans.is_empty() && bereaved.is_empty() {
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
        if let Some(m) = member {
            self.notify_watchers(watchers, vec![update(addr, &m.info.capabilities, false, change)]);
        }
    }

    /// An actor starts or stops watching the convention; on start it hears of every member.
    pub(crate) fn watch(&self, watcher: Address, enable: bool) {
        let updates = {
            let mut st = self.lock();
            if !enable {
                st.watchers.remove(&watcher);
                return;
            }
            st.watchers.insert(watcher.clone());
            st.members
                .values()
                .map(|m| update(&m.info.node, &m.info.capabilities, true, ConventionChange::Joined))
                .collect::<Vec<_>>()
        };
        self.notify_watchers(vec![watcher], updates);
    }

    // ---- global names ---------------------------------------------------------------------------

    /// The leader's side of a name claim.
    pub fn handle_claim(&self, name: &str, candidate: Option<Address>) -> Option<Address> {
        let mut st = self.lock();
        if let Some(holder) = st.conv_names.get(name).cloned() {
            // A holder here that exited without release (cannot happen, but be safe): replace.
            let stale = self.is_local(&holder) && !st.actors.contains_key(&holder.id);
            if !stale {
                return Some(holder);
            }
        }
        if let Some(c) = candidate {
            st.conv_names.insert(name.to_string(), c.clone());
            return Some(c);
        }
        None
    }

    /// Claims a convention-wide name: the holder if there is one, else `candidate` (now the
    /// holder). Without a reachable leader, falls back to this node's own names.
    pub(crate) async fn claim_name(&self, name: &str, candidate: Option<Address>) -> Option<Address> {
        if self.is_leader() {
            return self.handle_claim(name, candidate);
        }
        if let Some(me) = self.arc() {
            let req = Request::ClaimName { name: name.to_string(), candidate: candidate.clone() };
            match self.peers().call(&me, &self.conv.leader, req, Duration::from_secs(5)).await {
                Ok(Response::Name { holder }) => return holder,
                Ok(other) => tracing::warn!("unexpected answer to a name claim: {other:?}"),
                Err(e) => {
                    tracing::warn!(%name, "the leader is unreachable for a name claim ({e}); using this node's names")
                }
            }
        }
        let st = self.lock();
        match st.names.get(name) {
            Some(id) if st.actors.contains_key(id) => Some(self.address(*id)),
            _ => candidate,
        }
    }

    /// A named actor exited (or never started): give its name back.
    pub(crate) fn release_name(&self, name: &str, holder: &Address) {
        if self.is_leader() {
            self.handle_release(name, holder);
        } else if let Some(me) = self.arc() {
            let req = Request::ReleaseName { name: name.to_string(), holder: holder.clone() };
            self.peers().notify(&me, &self.conv.leader, req);
        }
    }

    /// The leader's side of a release.
    pub fn handle_release(&self, name: &str, holder: &Address) {
        let mut st = self.lock();
        if st.conv_names.get(name) == Some(holder) {
            st.conv_names.remove(name);
        }
    }

    // ---- status and leaving ----------------------------------------------------------------------

    pub(crate) fn convention_status(&self, st: &State) -> ConventionStatus {
        let mut members: Vec<MemberStatus> = st
            .members
            .values()
            .map(|m| MemberStatus {
                node: m.info.node.clone(),
                role: if m.info.node == self.conv.leader { "leader".into() } else { "member".into() },
                capabilities: m.info.capabilities.clone(),
                alive: m.last_seen.elapsed() <= self.conv.dead_after,
                last_seen_ms: m.last_seen.elapsed().as_millis() as u64,
                pid: m.info.pid,
                sources: m.info.sources.iter().map(|s| s.hash.clone()).collect(),
            })
            .collect();
        members.sort_by(|a, b| a.node.cmp(&b.node));
        ConventionStatus {
            leader: self.conv.leader.clone(),
            role: if self.is_leader() { "leader".into() } else { "member".into() },
            remote_sources: format!("{:?}", self.conv.remote_sources).to_lowercase(),
            heartbeat_ms: self.conv.heartbeat.as_millis() as u64,
            dead_after_ms: self.conv.dead_after.as_millis() as u64,
            members,
        }
    }

    /// On stop: tell the convention we are leaving, and flush everything queued to peers.
    pub(crate) async fn leave_convention(self: &Arc<Self>) {
        let members: Vec<String> = self.lock().members.keys().cloned().collect();
        if self.is_leader() {
            for m in &members {
                self.peers().notify(self, m, Request::Deregister { node: self.addr.clone() });
            }
        } else if members.contains(&self.conv.leader) {
            self.peers().notify(self, &self.conv.leader, Request::Deregister { node: self.addr.clone() });
        }
        self.peers().flush(Duration::from_secs(3)).await;
    }
}
