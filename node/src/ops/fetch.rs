//! Versions between nodes: serving an active version's zip to a peer, and fetching a version
//! this node was asked to host but lacks (from a holder the fetch policy allows), checked
//! against its hash and run through this node's own source authority. One fetch per hash at a
//! time ([`crate::tables::fetches`]): the first create or upgrade that needs the version leads
//! it, the others wait for its outcome.

use std::sync::Arc;
use std::time::Duration;

use troupe_actor_abi::message::CreateError;

use crate::host::effect::Cmd;
use crate::model::config::RemoteSources;
use crate::model::error::OpError;
use crate::runtime::core::Core;
use crate::tables::fetches::{FetchOutcome, Turn};
use crate::tables::versions::ZipSource;
use crate::wire::{PeerRequest, Response};

/// How long fetching a version from a peer may take (a zip is a few MB on a LAN).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

impl Core {
    /// The zip of an active version, for a peer that fetches it.
    pub async fn serve_source(&self, hash: &str) -> Result<Response, OpError> {
        let zip = match self.versions.zip_for_peer(hash) {
            Some(ZipSource::Memory(zip)) => zip.as_ref().clone(),
            Some(ZipSource::Stored(path)) => tokio::fs::read(&path)
                .await
                .map_err(|e| OpError::Store(format!("cannot read {}: {e}", path.display())))?,
            None => {
                return Err(CreateError::InvalidActorSourceHash {
                    hash: hash.to_string(),
                    detail: format!("is not active on {}", self.addr),
                }
                .into())
            }
        };
        Ok(Response::Source { zip })
    }

    /// Actor `id` was placed here but its version is not: joins the fetch of it now (so that
    /// a fetch already under way is the one it waits for, and placement sees the version as
    /// coming here), then, off the caller, creates the actor and hands it what waited once the
    /// version is active, or fails it with the fetch's reason.
    pub(crate) fn fetch_then_create(self: Arc<Self>, id: u64, hash: String) {
        let turn = self.fetch_turn(&hash);
        let me = self.clone();
        self.rt.spawn(async move { me.create_after_fetch(id, hash, turn).await });
    }

    async fn create_after_fetch(self: Arc<Self>, id: u64, hash: String, turn: Option<Turn>) {
        let fetched = match turn {
            None => Ok(()),
            Some(turn) => self.take_turn(&hash, turn).await,
        };
        let error = match (fetched, self.versions.active(&hash)) {
            (Ok(()), Some((gen, host))) if self.versions.add_actor(gen).is_some() => {
                let Some(promoted) = self.actors.promote(id, gen, host.clone()) else {
                    // The pending actor was stopped meanwhile: it never counted.
                    if let Some(retire) = self.versions.actor_left(gen) {
                        let _ = retire.send(Cmd::Retire);
                    }
                    return;
                };
                let _ = host.send(Cmd::Create { id, type_name: promoted.type_name });
                for msg in promoted.buffer {
                    let _ = host.send(Cmd::Deliver { id, msg: msg.into() });
                }
                return;
            }
            (Ok(()), _) => CreateError::InvalidActorSourceHash {
                hash,
                detail: "was unloaded while it was being fetched".into(),
            },
            (Err(e), _) => {
                CreateError::InvalidActorSourceHash { hash, detail: format!("could not be fetched: {e}") }
            }
        };
        self.create_failed(id, None, error);
    }

    /// Makes `hash` active here, fetching it from a peer if needed (policy permitting): one
    /// fetch per hash at a time, which every caller that needs it meanwhile waits for.
    pub(crate) async fn fetch_version(self: &Arc<Self>, hash: &str) -> Result<(), String> {
        match self.fetch_turn(hash) {
            None => Ok(()),
            Some(turn) => self.take_turn(hash, turn).await,
        }
    }

    /// `None` if `hash` is active here; else this caller's turn in the fetch of it.
    fn fetch_turn(&self, hash: &str) -> Option<Turn> {
        (!self.versions.is_active(hash)).then(|| self.fetches.join(hash))
    }

    /// Leads the fetch of `hash` or waits for the one under way; its outcome.
    async fn take_turn(self: &Arc<Self>, hash: &str, turn: Turn) -> FetchOutcome {
        let flight = match turn {
            Turn::Wait(waiter) => return waiter.outcome().await,
            Turn::Lead(flight) => flight,
        };
        // The fetch before this one may have ended between our look at the versions and
        // joining: then the version is here, and nothing is fetched again.
        let outcome = if self.versions.is_active(hash) {
            Ok(())
        } else {
            let fetched = self.fetch_from_peers(hash).await;
            self.metrics.fetched(fetched.is_ok());
            fetched
        };
        flight.finish(outcome.clone());
        outcome
    }

    /// Fetches `hash` from the first holder that serves it (the leader first) and loads it.
    async fn fetch_from_peers(self: &Arc<Self>, hash: &str) -> Result<(), String> {
        // Prefer the leader, then the others.
        let leader = self.leader();
        let holders = self.members.holders(hash, &leader);
        let holders: Vec<String> = match self.conv.remote_sources {
            RemoteSources::Yes => holders,
            RemoteSources::LeaderOnly => holders.into_iter().filter(|a| *a == leader).collect(),
            RemoteSources::No => return Err("this node does not fetch sources (--remote-sources no)".into()),
        };
        if holders.is_empty() {
            return Err("no reachable member holds it".into());
        }
        let mut last = String::new();
        for peer in holders {
            let req = PeerRequest::FetchSource { hash: hash.to_string() };
            let zip = match self.peers.call(&peer, req, FETCH_TIMEOUT).await {
                Ok(Response::Source { zip }) => zip,
                Ok(other) => {
                    last = format!("{peer} answered {other:?}");
                    continue;
                }
                Err(e) => {
                    last = format!("{peer}: {e}");
                    continue;
                }
            };
            tracing::info!(%hash, %peer, bytes = zip.len(), "fetched version from peer");
            return match self.load_source(zip, format!("fetched from {peer}"), Some(hash)).await {
                Ok(_) => {
                    self.reregister.notify_one();
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            };
        }
        Err(last)
    }
}
