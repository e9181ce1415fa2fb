//! The convention: nodes joined around a leader, placing actors by capability.
//!
//! - **Leaders.** `--convention A,B,C` lists the nodes that may lead, the same list on every
//!   node; the first one a node knows to be live leads ([`crate::tables::leadership`]). A
//!   member registers with its leader every heartbeat; when the leader refuses connections or
//!   stays silent for `dead_after`, the member declares it lost and registers with the next
//!   listed node at once. Every node keeps asking the listed nodes before its leader, so a
//!   first listed node that comes back leads again.
//! - **Directory.** The leader answers a registration with what changed in its directory
//!   since the member's copy (joins, changes, departures), or with all of it; a member sends
//!   its full entry only when it changed or the leader asks. So members know each other and
//!   each other's versions, at a cost per heartbeat that grows with the changes, not with the
//!   convention.
//! - **No state only the leader holds.** What the leader holds is rebuilt from the members
//!   whenever leadership moves (this, not a replicated log: the list's semantics are
//!   Thespian's, "the first live listed node leads", which a majority quorum cannot give with
//!   two leaders listed or one left): members bring a new leader their global names, the
//!   members they know and their copy of the groups when they join it; it answers name claims
//!   once every member it expects has joined (or after `dead_after`). Two holders of one name
//!   (a partition healed, a stalled leader resumed) are resolved as Erlang's `global` does:
//!   the first one adopted keeps it, the other actor is asked to exit and its parent hears
//!   `NameClash`.
//! - **Incarnations and fencing.** Each life of a node has an incarnation. A node declared
//!   lost is remembered with its incarnation; when it speaks again in that incarnation, it is
//!   told it was lost (`Fenced`). It then stops every actor whose parent was on another node
//!   and tells its actors their children elsewhere are gone (the other nodes did the same on
//!   their side when they declared it lost), and rejoins as a new incarnation. No orphan
//!   survives a stall.
//! - **Loss.** When a node is lost, every local actor with a child there gets
//!   `ChildActorExited` (`NodeLost`), and every local actor whose parent was there is stopped.
//!   Watchers hear of it.
//! - **A new convention, and a lone node.** A single listed leader with no record of having
//!   led members ([`record`]) answers claims at once; one that led members before, or with
//!   other leaders listed, gathers first. An unlisted node that no leader has answered, with
//!   nobody listening at any listed address, serves alone until a leader starts ([`alone`]).
//! - **Global names** ([`names`]) are unique in the convention: the leader holds the table;
//!   without a leader, a named create waits for one up to its timeout, then fails; it never
//!   registers a second holder.

mod alone;
pub(crate) mod names;
mod record;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use troupe_actor_abi::message::{Address, ConventionChange, ExitReason};

use crate::peers::LinkError;
use crate::runtime::core::Core;
use crate::tables::leadership::Change;
use crate::tables::members::update;
use crate::tables::names::NameChanges;
use crate::wire::{DirectoryVersion, MemberInfo, PeerRequest, Registration, Response};

/// Starts the membership task: registration with the leader (members), expiry of silent
/// members (the leader), and asking the listed leaders before the current one (everyone).
pub(crate) fn start(core: &Arc<Core>) {
    if core.is_leader() {
        core.begin_leading();
        // A leader that led members before (its record says so) may have been restarted while
        // they hold names it granted: they come back within a heartbeat, so it waits that long
        // for their names. Members it hears of from those (their `known`) are waited for up to
        // `dead_after`: a live member speaks within that, by definition. With other leaders
        // listed, one of them may have led while this one was down, so it waits as well. A
        // fresh single leader was never part of an earlier convention: it answers at once.
        if core.led_members_before() || core.leadership.list().len() > 1 {
            core.leadership.wait_at_least(core.conv.heartbeat + GATHER_MARGIN, core.conv.dead_after);
        } else {
            tracing::info!(
                "a new convention (no earlier life of this leader led members): names are answered at once"
            );
        }
    }
    let weak = Arc::downgrade(core);
    let heartbeat = core.conv.heartbeat;
    tokio::spawn(async move {
        loop {
            let Some(s) = weak.upgrade() else { break };
            if s.stopping() {
                break;
            }
            let stalled = s.leadership.tick(s.conv.dead_after);
            s.clone().spawn_asking_earlier_leaders();
            if s.is_leader() {
                s.lead(stalled);
            } else {
                let _ = s.refresh_membership().await;
            }
            // Not answered by a leader yet (and not listed): is anybody there at all?
            if s.leadership.may_be_alone() {
                s.probe_listed().await;
            }
            let period = if s.is_leader() { heartbeat / 2 } else { heartbeat };
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = s.reregister.notified() => {}
            }
        }
    });
}

/// Beyond a heartbeat, how long a starting leader waits for members' names.
const GATHER_MARGIN: Duration = Duration::from_millis(250);

/// Why a registration got no answer from the leader that counts.
enum Refusal {
    /// The link failed.
    Link(LinkError),
    /// It does not lead (or asks for this node's full entry, or this node was fenced): ask
    /// again at once.
    Again,
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
            incarnation: self.incarnation(),
        }
    }

    /// A registration with `leader`: a full one when joining it (names, members known,
    /// groups), else the heartbeat with only what changed.
    fn registration(&self, joining: bool) -> Registration {
        let info = self.self_info();
        let copy = self.members.copy().filter(|_| !joining);
        // A probe of another listed node is not what the leader got: only our leader's
        // registrations count as sent.
        let changed = !joining && self.members.sent_info(&info);
        let send_info = copy.is_none() || changed;
        Registration {
            node: self.addr.clone(),
            incarnation: info.incarnation,
            info: send_info.then_some(info),
            since: copy,
            names: copy.is_none().then(|| self.names.held()),
            known: copy.is_none().then(|| self.members.addrs()),
            groups: copy.is_none().then(|| self.groups.copy()),
            groups_version: self.groups.version(),
        }
    }

    /// Registers with the leader now and takes what changed in its directory (members only).
    pub(crate) async fn refresh_membership(&self) -> Result<(), LinkError> {
        // A leader that says it does not lead, or asks for our entry: ask again (bounded).
        for _ in 0..3 {
            if self.is_leader() {
                return Ok(());
            }
            match self.register_once().await {
                Ok(()) => return Ok(()),
                Err(Refusal::Again) => continue,
                Err(Refusal::Link(e)) => return Err(e),
            }
        }
        Ok(())
    }

    async fn register_once(&self) -> Result<(), Refusal> {
        let leader = self.leader();
        let t0 = Instant::now();
        let timeout = self.conv.heartbeat.max(Duration::from_millis(500));
        let reg = self.registration(false);
        let sent_as = reg.incarnation;
        match self.peers.call(&leader, PeerRequest::Register(reg), timeout).await {
            Ok(answer) => {
                self.metrics.heartbeat_rtt(t0.elapsed());
                self.registered(&leader, answer, sent_as)
            }
            Err(e) => {
                // What we sent may not have arrived: join again next time.
                self.members.set_copy(None);
                // A process that is gone refuses at once; a silent one is given `dead_after`;
                // one still sending us earlier answers (fetched zips) is alive.
                let silent = self.leadership.silent(self.conv.dead_after) && !e.peer_was_busy();
                if matches!(e, LinkError::Unreachable { .. }) || silent {
                    tracing::warn!(%leader, "the convention's leader is lost ({e})");
                    self.node_lost(&leader, ConventionChange::Lost);
                }
                Err(Refusal::Link(e))
            }
        }
    }

    /// A member takes its leader's answer.
    fn registered(&self, leader: &str, answer: Response, sent_as: u64) -> Result<(), Refusal> {
        match answer {
            Response::Registered {
                directory,
                full,
                complete,
                members,
                removed,
                groups,
                send_info,
                names,
                names_full,
            } => {
                if self.fenced_leader(leader, directory) {
                    return Err(Refusal::Again);
                }
                self.leadership.answered();
                self.names.apply(NameChanges { full: names_full, names });
                if let Some(g) = groups {
                    self.groups.take_newer(g);
                }
                self.apply_directory(full, complete, members, removed);
                // The leader vouches for every member it lists: heard from within `dead_after`.
                self.members.grace();
                // Only a complete answer may serve as the base of deltas: until the leader has
                // heard from everyone, we join it again (and hear the whole list) each time.
                let keep = complete && !send_info;
                self.members.set_copy(keep.then_some(directory));
                if send_info {
                    return Err(Refusal::Again);
                }
                Ok(())
            }
            Response::NotLeader { leader: follows } => {
                tracing::info!(%leader, ?follows, "a listed leader answered that it does not lead");
                // It is alive and follows another: follow its hint (a listed node it knows to be
                // live, before it in the list); with no hint it cannot lead (misconfigured).
                let change = match follows.filter(|f| f != leader) {
                    Some(f) => self.leadership.set_live(&f),
                    None => self.leadership.set_down(leader),
                };
                if let Some(c) = change {
                    self.leader_changed(c);
                }
                Err(Refusal::Again)
            }
            Response::Fenced => {
                // An answer about a life this node already left (it fenced meanwhile) is old news.
                if sent_as == self.incarnation() {
                    self.fence();
                }
                Err(Refusal::Again)
            }
            other => {
                tracing::warn!(%leader, "unexpected answer to a registration: {other:?}");
                Ok(())
            }
        }
    }

    /// Whether `leader` answers in an incarnation this node declared lost: then it is told so
    /// (it fences itself and answers again as a new one) and not followed meanwhile.
    fn fenced_leader(&self, leader: &str, directory: DirectoryVersion) -> bool {
        if !self.members.was_lost(leader, directory.leader) {
            return false;
        }
        tracing::warn!(%leader, "a leader this node declared lost answers: telling it to fence itself");
        self.peers.notify(leader, PeerRequest::Fenced { incarnation: directory.leader });
        if let Some(c) = self.leadership.set_down(leader) {
            self.leader_changed(c);
        }
        true
    }

    /// A member takes the leader's directory (whole or changes): joins, departures, restarts
    /// and capability changes. Only a complete whole list says who left.
    fn apply_directory(&self, full: bool, complete: bool, members: Vec<MemberInfo>, removed: Vec<String>) {
        let listed: BTreeMap<String, MemberInfo> =
            members.into_iter().filter(|m| m.node != self.addr).map(|m| (m.node.clone(), m)).collect();
        let mut gone: Vec<String> = removed.into_iter().filter(|a| *a != self.addr).collect();
        if full && complete {
            gone.extend(self.members.missing_from(&listed));
        } else {
            gone.extend(listed.values().filter(|m| self.members.restarted(m)).map(|m| m.node.clone()));
        }
        for g in gone {
            self.node_lost(&g, ConventionChange::Lost);
        }
        // A listed node the leader lists is live (it registered lately), whatever we thought.
        let back: Vec<String> =
            listed.keys().filter(|a| self.leadership.list().contains(a)).cloned().collect();
        let updates: Vec<_> = listed.into_values().filter_map(|info| self.members.upsert(info)).collect();
        self.notify_watchers(&self.members.watchers(), &updates);
        for a in back {
            if let Some(c) = self.leadership.set_live(&a) {
                self.leader_changed(c);
            }
        }
    }

    /// Every heartbeat, the listed nodes before the current leader that were down are asked
    /// again, on a task of their own (a stalled one must not delay heartbeats): the first that
    /// answers as leader leads.
    fn spawn_asking_earlier_leaders(self: Arc<Self>) {
        if self.leadership.down_before_current().is_empty() || !self.leadership.start_asking() {
            return;
        }
        tokio::spawn(async move {
            self.ask_earlier_leaders().await;
            self.leadership.done_asking();
        });
    }

    async fn ask_earlier_leaders(&self) {
        for addr in self.leadership.down_before_current() {
            let reg = self.registration(true);
            let sent_as = reg.incarnation;
            let call = self.peers.call(&addr, PeerRequest::Register(reg), self.conv.heartbeat);
            let answer = call.await;
            if let Ok(Response::Fenced) = answer {
                if sent_as == self.incarnation() {
                    self.fence();
                }
                return;
            }
            if let Ok(Response::Registered { directory, .. }) = answer {
                if self.fenced_leader(&addr, directory) {
                    continue;
                }
                tracing::info!(leader = %addr, "a listed leader before ours is back");
                self.leadership.mark_joined();
                if let Some(c) = self.leadership.set_live(&addr) {
                    self.leader_changed(c);
                }
                return;
            }
        }
    }

    /// The leader changed (as this node sees it).
    pub(crate) fn leader_changed(&self, c: Change) {
        tracing::info!(from = %c.from, to = %c.to, "the convention's leader changed");
        self.metrics.leader_changed();
        self.members.set_copy(None);
        if c.from == self.addr {
            // Stepping down: the names and groups are the new leader's to keep.
            self.names.clear_convention();
            self.members.clear_own();
        }
        if c.to == self.addr {
            self.begin_leading();
        }
        self.reregister.notify_one();
    }

    /// This node starts to lead: its table of names is rebuilt from its own names and from
    /// what members bring when they join; it answers claims once they all did (or after
    /// `dead_after`).
    pub(crate) fn begin_leading(&self) {
        self.names.clear_convention();
        for (name, id) in self.names.held() {
            self.names.adopt(&name, self.address(id), |_| true);
        }
        self.members.grace();
        let expected: BTreeSet<String> = self.members.addrs().into_iter().collect();
        tracing::info!(members = expected.len(), "leading the convention: gathering names from the members");
        self.leadership.start_gathering(expected, self.conv.dead_after);
        self.members.set_own(self.self_info());
    }

    /// The leader's periodic duty: the members that fell silent (its own entry is brought up to
    /// date as each registration is answered). A leader that was not running itself (stopped,
    /// starved) for `dead_after` does not blame the members: it gives them time to speak
    /// again, and they tell it whether they declared it lost meanwhile (then it fences itself).
    fn lead(&self, stalled: Option<Duration>) {
        if let Some(gap) = stalled {
            tracing::warn!(
                ?gap,
                "this node did not run for longer than dead-after: members are not blamed for its silence"
            );
            self.members.grace();
            return;
        }
        for d in self.members.silent(self.conv.dead_after) {
            tracing::warn!(node = %d, "member silent for {:?}: declared lost", self.conv.dead_after);
            self.node_lost(&d, ConventionChange::Lost);
        }
    }

    /// The leader handles a member's registration (join or heartbeat).
    pub fn handle_register(&self, reg: Registration) -> Response {
        if reg.node == self.addr {
            // Misconfigured: another process claims our address.
            return Response::NotLeader { leader: None };
        }
        if !self.is_leader() {
            return Response::NotLeader { leader: Some(self.leader()) };
        }
        if self.leadership.alone() {
            // It leads nobody's convention but its own: whoever lists it is misconfigured.
            return Response::NotLeader { leader: None };
        }
        if self.members.was_lost(&reg.node, reg.incarnation) {
            tracing::warn!(node = %reg.node, "a member declared lost registers again: fencing it");
            return Response::Fenced;
        }
        // Before any member may hold a name this node answers for: a restart must gather.
        self.record_leading_members();
        // Our own entry as it is now (a version loaded here a moment ago is listed).
        self.members.set_own(self.self_info());
        let known = self.members.touch(&reg.node, reg.incarnation);
        let send_info = match reg.info {
            Some(info) => {
                if self.members.restarted(&info) {
                    self.node_lost(&info.node, ConventionChange::Lost);
                }
                let updates: Vec<_> = self.members.upsert(info).into_iter().collect();
                self.notify_watchers(&self.members.watchers(), &updates);
                false
            }
            None => !known,
        };
        if let Some(names) = reg.names {
            for (name, id) in names {
                let holder = Address { node: reg.node.clone(), id };
                self.adopt_name(&name, holder);
            }
        }
        if let Some(groups) = reg.groups {
            self.groups.take_newer(groups);
        }
        if let Some(known) = reg.known {
            let unknown: Vec<String> = known.into_iter().filter(|a| !self.members.contains(a)).collect();
            self.leadership.expect(unknown);
        }
        if !send_info {
            self.leadership.joined(&reg.node);
        }
        let directory = DirectoryVersion {
            leader: self.incarnation(),
            version: self.members.version(),
            names: self.names.version(),
        };
        let since = reg.since.filter(|d| d.leader == directory.leader);
        let (full, members, removed) = self.members.since(since.map(|d| d.version));
        let names = self.names.since(since.map(|d| d.names));
        let groups = (reg.groups_version < self.groups.version()).then(|| self.groups.copy());
        let complete = self.leadership.gathered();
        Response::Registered {
            directory,
            full,
            complete,
            members,
            removed,
            groups,
            send_info,
            names: names.names,
            names_full: names.full,
        }
    }

    /// A node that was declared lost learned it: the other nodes stopped its actors' children
    /// there and told their parents its actors are gone, so it does the same on its side, and
    /// rejoins as a new incarnation.
    pub(crate) fn fence(&self) {
        let old = self.incarnation();
        let new = self.next_incarnation();
        let linked = self.actors.linked_nodes(&self.addr);
        tracing::warn!(
            incarnation = old,
            next = new,
            nodes = linked.len(),
            "this node was declared lost by the convention: stopping what other nodes gave up, rejoining"
        );
        self.metrics.fenced();
        for node in linked {
            self.sever(&node);
        }
        self.members.set_copy(None);
        if self.is_leader() {
            self.begin_leading();
        }
        self.reregister.notify_one();
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
        let caps = self.members.remove(addr, change);
        if caps.is_some() && change != ConventionChange::Left && self.is_leader() {
            self.leadership.lost_member_silently();
        }
        self.names.drop_node(addr);
        let severed = self.sever(addr);
        self.peers.forget(
            addr,
            if change == ConventionChange::Left { "it left the convention" } else { "it was declared lost" },
        );
        if let Some(c) = self.leadership.set_down(addr) {
            self.leader_changed(c);
        }
        if caps.is_none() && !severed {
            return;
        }
        tracing::info!(node = %addr, ?change, "node left the convention");
        if let Some(caps) = caps {
            self.notify_watchers(&self.members.watchers(), &[update(addr, &caps, false, change)]);
        }
    }

    /// Cuts every link between actors here and actors on `node`: actors whose parent ran there
    /// are stopped, actors with a child there are told it is gone. Whether there was any.
    fn sever(&self, node: &str) -> bool {
        let (orphans, bereaved) = self.actors.lose_node(node);
        if orphans.is_empty() && bereaved.is_empty() {
            return false;
        }
        tracing::info!(%node, orphans = orphans.len(), children_lost = bereaved.len(), "links to a lost node cut");
        let reason = ExitReason::NodeLost { node: node.to_string() };
        for id in orphans {
            self.request_exit(id, reason.clone(), None);
        }
        for (parent, child) in bereaved {
            self.notify_parent(self.address(parent), child, reason.clone());
        }
        true
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
        } else {
            let leader = self.leader();
            if members.contains(&leader) {
                self.peers.notify(&leader, bye());
            }
        }
        self.forget_record_if_unneeded();
        self.peers.flush(Duration::from_secs(3)).await;
    }
}

#[cfg(test)]
mod tests;
