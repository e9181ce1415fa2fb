//! Unloading a version: it turns draining everywhere it is held (no new actor from it; live
//! ones keep serving) and is really unloaded — `on_unload`, thread joined, `dlclose`, copies
//! freed — when its last actor exits. With a grace period, the stragglers are asked to exit.
//!
//! A version a live upgrade holds here (`tables::upgrades`) is not unloaded under it: an
//! operator's unload is refused with `upgrade_in_progress`; an unload a peer spreads, or a
//! group's kept window asks for, waits until the upgrade ends.

use std::sync::Arc;
use std::time::Duration;

use troupe_actor_abi::message::{CreateError, ExitReason};

use crate::host::effect::Cmd;
use crate::model::error::OpError;
use crate::runtime::core::Core;
use crate::tables::versions::Drain;
use crate::wire::{PeerRequest, Response};

/// What an unload does about a live upgrade that holds the version here.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WhenBusy {
    /// Refused with `upgrade_in_progress` (an operator's `troupe unload`).
    Refuse,
    /// It waits for the upgrade to end (a group's kept window).
    Wait,
    /// This upgrade unloads its own FROM: not in its way; others are refused.
    Exempt(u64),
}

impl Core {
    /// Unloads a version here and on every member. With a grace period, actors still alive
    /// after it are asked to exit and the answer waits until the version is gone here.
    /// Refused while a live upgrade here holds the version.
    pub async fn unload(self: &Arc<Self>, hash: &str, grace: Option<Duration>) -> Result<Response, OpError> {
        self.unload_as(hash, grace, WhenBusy::Refuse).await
    }

    /// [`Core::unload`], with what to do about an upgrade that holds the version here.
    pub(crate) async fn unload_as(
        self: &Arc<Self>,
        hash: &str,
        grace: Option<Duration>,
        busy: WhenBusy,
    ) -> Result<Response, OpError> {
        let full = self.resolve_hash(hash)?;
        let except = match busy {
            WhenBusy::Refuse => None,
            WhenBusy::Wait => {
                self.upgrades.until_free(&full, None).await;
                None
            }
            WhenBusy::Exempt(upgrade) => Some(upgrade),
        };
        if let Some(running) = self.upgrades.busy_with(&full, except) {
            return Err(running.refusal(&full));
        }
        let members = self.members.addrs();
        // Every member hears of it, whether or not we know it holds the version (it may have
        // fetched it a moment ago); a node without it ignores the request.
        for m in &members {
            let req = PeerRequest::UnloadSpread {
                hash: full.clone(),
                grace_ms: grace.map(|g| g.as_millis() as u64),
            };
            self.peers.notify(m, req);
        }
        let held_elsewhere = self.members.anyone_holds(&full);
        match self.drain_here(&full, grace, except).await {
            Ok(Response::Unloaded { hash, live_actors, gone, .. }) => {
                Ok(Response::Unloaded { hash, live_actors, gone, spread_to: members })
            }
            Err(_) if held_elsewhere => {
                Ok(Response::Unloaded { hash: full, live_actors: 0, gone: false, spread_to: members })
            }
            other => other,
        }
    }

    /// Unloads a version on this node only (a peer's `UnloadSpread`): after any live upgrade
    /// that holds it here has ended.
    pub(crate) async fn unload_local(
        &self,
        hash: &str,
        grace: Option<Duration>,
    ) -> Result<Response, OpError> {
        self.drain_here(hash, grace, None).await
    }

    /// Unloads a version on this node only, once no upgrade but `except` holds it here.
    async fn drain_here(
        &self,
        hash: &str,
        grace: Option<Duration>,
        except: Option<u64>,
    ) -> Result<Response, OpError> {
        let hash = self.resolve_hash(hash)?;
        self.upgrades.until_free(&hash, except).await;
        let done = |live_actors, gone| {
            Ok(Response::Unloaded { hash: hash.clone(), live_actors, gone, spread_to: Vec::new() })
        };
        let (gen, live, mut gone) = match self.versions.drain(&hash) {
            Drain::Unknown => {
                return Err(CreateError::InvalidActorSourceHash {
                    hash: hash.clone(),
                    detail: "does not match any loaded source".into(),
                }
                .into())
            }
            Drain::AlreadyGone => return done(0, true),
            Drain::Cancelled => {
                self.authority.cancel(&hash);
                return done(0, true);
            }
            Drain::Draining { gen, live, gone, retire } => {
                tracing::info!(%hash, generation = gen, live, "unloading: version is draining");
                self.send_notices(self.source_watch.unloaded(&hash));
                if let Some(host) = retire {
                    let _ = host.send(Cmd::Retire);
                }
                (gen, live, gone)
            }
        };
        if live == 0 {
            let gone = gone.await.is_ok();
            return done(0, gone);
        }
        let Some(grace) = grace else {
            return done(live, false);
        };
        match tokio::time::timeout(grace, &mut gone).await {
            Ok(Ok(())) => return done(0, true),
            // Reloaded while it drained: it serves again, nobody is asked to exit.
            Ok(Err(_)) => return done(self.actors.of_generation(gen).len(), false),
            Err(_) => {}
        }
        let stragglers = self.actors.of_generation(gen);
        tracing::info!(%hash, count = stragglers.len(), "grace period over: asking the remaining actors to exit");
        for id in stragglers {
            self.request_exit(id, ExitReason::Unloaded, None);
        }
        let gone = gone.await.is_ok();
        done(0, gone)
    }
}
