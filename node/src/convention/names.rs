//! Global names across the convention: claims and releases go to the leader, which holds the
//! table ([`crate::tables::names`]). Without a leader that answers, a claim waits for one (a
//! new leader first gathers the names members hold) up to [`CLAIM_TIMEOUT`], then fails: a
//! node never registers a holder on its own, so a name never has two holders by a claim. The
//! one exception is a node that serves alone (nobody listens at any listed address and no
//! leader ever answered it): it is its own leader, and a leader that appears later settles a
//! clash as after a partition.
//! Two holders can only meet when a table is rebuilt (a partition healed, a stalled leader
//! resumed); the leader then keeps the first and asks the other to exit.

use std::time::{Duration, Instant};

use troupe_actor_abi::message::{Address, CreateError, ExitReason};

use crate::peers::LinkError;
use crate::runtime::core::Core;
use crate::wire::{PeerRequest, Response};

/// How long a claim waits for a leader (a failover takes about a heartbeat; a new leader
/// gathers names for up to `dead_after`).
pub(crate) const CLAIM_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a waiting claim looks again.
const RETRY: Duration = Duration::from_millis(25);

impl Core {
    /// The leader's side of a claim: the live holder if there is one, else `candidate` (now
    /// the holder). None while this node does not lead, or is still gathering the members'
    /// names (the claimant asks again).
    pub(crate) fn try_claim(&self, name: &str, candidate: Option<Address>) -> Option<Option<Address>> {
        if !self.is_leader() || !self.leadership.gathered() {
            return None;
        }
        // A holder here that exited without release is replaced.
        let live = |holder: &Address| !self.is_local(holder) || self.actors.contains(holder.id);
        Some(self.names.claim(name, candidate, live))
    }

    /// A claim from another node: answered once this node has gathered the names (waiting up
    /// to `dead_after`), or refused with `NotLeader`.
    pub async fn handle_claim(&self, name: &str, candidate: Option<Address>) -> Response {
        if self.leadership.alone() {
            // A lone node grants names to itself only (whoever lists it is misconfigured).
            return Response::NotLeader { leader: None };
        }
        if self.is_leader() {
            // Before another node may hold a name this node granted: a restart must gather.
            self.record_leading_members();
        }
        let deadline = Instant::now() + self.conv.dead_after;
        loop {
            if let Some(holder) = self.try_claim(name, candidate.clone()) {
                return Response::Name { holder };
            }
            if !self.is_leader() || Instant::now() >= deadline {
                return Response::NotLeader { leader: Some(self.leader()) };
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Claims a convention-wide name: the holder if there is one, else `candidate` (now the
    /// holder). Waits for a leader up to [`CLAIM_TIMEOUT`]; then fails with `NoLeader`.
    pub(crate) async fn claim_name(
        &self,
        name: &str,
        candidate: Option<Address>,
    ) -> Result<Option<Address>, CreateError> {
        let start = Instant::now();
        let mut last = String::from("no leader was reachable");
        loop {
            if self.stopping() {
                return Err(CreateError::ActorSystemShuttingDown);
            }
            if let Some(holder) = self.try_claim(name, candidate.clone()) {
                return Ok(holder);
            }
            let left = CLAIM_TIMEOUT.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(CreateError::NoLeader {
                    name: name.to_string(),
                    detail: format!(
                        "no leader of the convention ({}) answered within {:?}; last: {last}",
                        self.leadership.list().join(", "),
                        CLAIM_TIMEOUT
                    ),
                });
            }
            if !self.is_leader() {
                let leader = self.leader();
                let req = PeerRequest::ClaimName { name: name.to_string(), candidate: candidate.clone() };
                let wait = left.min(self.conv.dead_after + self.conv.heartbeat);
                match self.peers.call(&leader, req, wait).await {
                    Ok(Response::Name { holder }) => {
                        if let Some(h) = &holder {
                            self.names.learn(name, h);
                        }
                        return Ok(holder);
                    }
                    Ok(Response::NotLeader { .. }) => last = format!("{leader} does not lead (yet)"),
                    Ok(other) => last = format!("{leader} answered {other:?}"),
                    Err(LinkError::Refused(reply)) => last = format!("{leader} refused: {}", reply.message),
                    Err(e) => last = format!("{leader}: {e}"),
                }
            }
            tokio::time::sleep(RETRY.min(left)).await;
        }
    }

    /// A named actor exited (or never started): give its name back.
    pub(crate) fn release_name(&self, name: &str, holder: &Address) {
        if self.is_leader() {
            self.handle_release(name, holder);
        } else {
            let req = PeerRequest::ReleaseName { name: name.to_string(), holder: holder.clone() };
            self.peers.notify(&self.leader(), req);
        }
    }

    /// The leader's side of a release.
    pub fn handle_release(&self, name: &str, holder: &Address) {
        self.names.release(name, holder);
    }

    /// Whether `holder` may still exist: an actor here that does, or an actor on a member.
    pub(crate) fn holder_live(&self, holder: &Address) -> bool {
        if self.is_local(holder) {
            self.actors.contains(holder.id)
        } else {
            self.members.contains(&holder.node)
        }
    }

    /// A new leader takes a name a member's actor holds; two holders: the first adopted keeps
    /// it, the other actor is asked to exit.
    pub(crate) fn adopt_name(&self, name: &str, holder: Address) {
        if let Some((loser, kept)) = self.names.adopt(name, holder, |a| self.holder_live(a)) {
            tracing::warn!(%name, loser = %loser, kept = %kept, "two actors held one global name: keeping the first");
            self.metrics.name_clash();
            if self.is_local(&loser) {
                self.lose_name(name, loser, kept);
            } else {
                let node = loser.node.clone();
                self.peers.notify(&node, PeerRequest::NameClash { name: name.to_string(), loser, kept });
            }
        }
    }

    /// Actor `loser` (here) lost `name` in a clash: it exits, its parent hears why.
    pub fn lose_name(&self, name: &str, loser: Address, kept: Address) {
        if !self.is_local(&loser) || self.names.held_here(name) != Some(loser.id) {
            return;
        }
        self.names.drop_here(name, loser.id);
        self.request_exit(loser.id, ExitReason::NameClash { name: name.to_string(), kept }, None);
    }
}
