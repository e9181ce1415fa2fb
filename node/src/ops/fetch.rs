//! Versions between nodes: serving an active version's zip to a peer, and fetching a version
//! this node was asked to host but lacks (from a holder the fetch policy allows), checked
//! against its hash and run through this node's own source authority.

use std::sync::Arc;
use std::time::Duration;

use troupe_actor_abi::message::CreateError;

use crate::host::effect::Cmd;
use crate::model::config::RemoteSources;
use crate::model::error::OpError;
use crate::runtime::core::Core;
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

    /// Actor `id` was placed here but its version is not: fetch it from a peer that has it,
    /// validate it with our own authority, then create the actor and hand it what waited.
    pub(crate) async fn fetch_then_create(self: Arc<Self>, id: u64, hash: String) {
        let error = match (self.fetch_version(&hash).await, self.versions.active(&hash)) {
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

    /// Makes `hash` active here, fetching it from a peer if needed (policy permitting).
    pub(crate) async fn fetch_version(self: &Arc<Self>, hash: &str) -> Result<(), String> {
        if self.versions.is_active(hash) {
            return Ok(());
        }
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
