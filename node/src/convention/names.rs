//! Global names across the convention: claims and releases go to the leader, which holds the
//! table ([`crate::tables::names`]); without a reachable leader, a claim falls back to this
//! node's own names.

use std::time::Duration;

use troupe_actor_abi::message::Address;

use crate::runtime::core::Core;
use crate::wire::{PeerRequest, Response};

impl Core {
    /// The leader's side of a name claim.
    pub fn handle_claim(&self, name: &str, candidate: Option<Address>) -> Option<Address> {
        // A holder here that exited without release is replaced.
        let live = |holder: &Address| !self.is_local(holder) || self.actors.contains(holder.id);
        self.names.claim(name, candidate, live)
    }

    /// Claims a convention-wide name: the holder if there is one, else `candidate` (now the
    /// holder). Without a reachable leader, falls back to this node's own names.
    pub(crate) async fn claim_name(&self, name: &str, candidate: Option<Address>) -> Option<Address> {
        if self.is_leader() {
            return self.handle_claim(name, candidate);
        }
        let req = PeerRequest::ClaimName { name: name.to_string(), candidate: candidate.clone() };
        match self.peers.call(&self.conv.leader, req, Duration::from_secs(5)).await {
            Ok(Response::Name { holder }) => return holder,
            Ok(other) => tracing::warn!("unexpected answer to a name claim: {other:?}"),
            Err(e) => {
                tracing::warn!(%name, "the leader is unreachable for a name claim ({e}); using this node's names")
            }
        }
        match self.names.held_here(name) {
            Some(id) if self.actors.contains(id) => Some(self.address(id)),
            _ => candidate,
        }
    }

    /// A named actor exited (or never started): give its name back.
    pub(crate) fn release_name(&self, name: &str, holder: &Address) {
        if self.is_leader() {
            self.handle_release(name, holder);
        } else {
            let req = PeerRequest::ReleaseName { name: name.to_string(), holder: holder.clone() };
            self.peers.notify(&self.conv.leader, req);
        }
    }

    /// The leader's side of a release.
    pub fn handle_release(&self, name: &str, holder: &Address) {
        self.names.release(name, holder);
    }
}
