//! Named releases (groups): `troupe deploy ZIP --group NAME` loads a version and makes it the
//! group's active one; `@NAME` wherever a hash is accepted means that active version; versions
//! beyond the kept window drain and unload; `troupe rollback` makes the previous one active
//! again while it is still loaded.
//!
//! A deploy touches no version a live upgrade holds here: `--migrate` from or to one is
//! refused (`upgrade_in_progress`), and a version beyond the kept window unloads once such an
//! upgrade ends.
//!
//! The leader holds the groups ([`crate::tables::groups`]) and hands them to members with every
//! registration, so a member that restarts has them back within a heartbeat.

use std::sync::Arc;
use std::time::Duration;

use crate::model::error::OpError;
use crate::ops::unload::WhenBusy;
use crate::peers::LinkError;
use crate::runtime::core::Core;
use crate::wire::{PeerRequest, Response, UpgradeOptions};

/// How long a member waits for the leader to record a deploy or rollback.
const LEADER_TIMEOUT: Duration = Duration::from_secs(10);

impl Core {
    /// Loads `zip` here and makes it the active version of `group`.
    pub async fn deploy(
        self: &Arc<Self>,
        zip: Vec<u8>,
        info: String,
        group: String,
        keep: usize,
        grace_ms: Option<u64>,
        migrate: Option<UpgradeOptions>,
    ) -> Result<Response, OpError> {
        if group.is_empty() || group.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(OpError::Usage(format!(
                "{group:?} is not a group name: use letters, digits, '-', '_' or '.'"
            )));
        }
        let Response::Loaded { hash, .. } = self.load(zip, info).await? else {
            return Err(OpError::Internal("load gave an unexpected answer".into()));
        };
        if migrate.is_some() {
            // Refused before the group changes: the migration could not run (its claim would be
            // refused the same way, but after the new version became the group's active one).
            let previous = self.groups.resolve(&group).ok();
            for h in previous.iter().chain(std::iter::once(&hash)) {
                if let Some(busy) = self.upgrades.busy_with(h, None) {
                    return Err(busy.refusal(h));
                }
            }
        }
        let mut answer = self
            .group_request(PeerRequest::GroupActivate { group, hash: hash.clone(), keep, grace_ms })
            .await?;
        let (Some(options), Response::Group { previous, upgrade, .. }) = (migrate, &mut answer) else {
            return Ok(answer);
        };
        if let Some(from) = previous.clone().filter(|p| *p != hash) {
            // The group's window decides whether the previous version stays loaded.
            *upgrade = Some(self.upgrade_everywhere(&from, &hash, &options).await?);
        }
        Ok(answer)
    }

    /// Makes the previous version of `group` active again.
    pub async fn rollback(self: &Arc<Self>, group: String) -> Result<Response, OpError> {
        self.group_request(PeerRequest::GroupRollback { group }).await
    }

    /// Runs a group change on the leader (here, or by asking it), then refreshes our copy.
    async fn group_request(self: &Arc<Self>, request: PeerRequest) -> Result<Response, OpError> {
        if self.is_leader() {
            return match request {
                PeerRequest::GroupActivate { group, hash, keep, grace_ms } => {
                    Ok(self.activate(group, hash, keep, grace_ms))
                }
                PeerRequest::GroupRollback { group } => self.roll_back(group),
                _ => Err(OpError::Internal("not a group request".into())),
            };
        }
        let leader = self.leader();
        let answer = match self.peers.call(&leader, request, LEADER_TIMEOUT).await {
            Ok(answer) => answer,
            // The leader's own refusal (no such group, nothing to roll back) keeps its code.
            Err(LinkError::Refused(reply)) => return Err(OpError::Remote(reply)),
            Err(e) => return Err(OpError::LeaderUnreachable { leader, why: e.to_string() }),
        };
        let _ = self.refresh_membership().await;
        Ok(answer)
    }

    /// The leader's side of a deploy: `hash` becomes active; versions beyond the `keep` newest
    /// others are unloaded (they drain everywhere, in the background: the deploy answers at
    /// once).
    pub fn activate(
        self: &Arc<Self>,
        group: String,
        hash: String,
        keep: usize,
        grace_ms: Option<u64>,
    ) -> Response {
        let done = self.groups.activate(&group, &hash, keep);
        tracing::info!(%group, active = %hash, unloaded = ?done.unloaded, "group deployed");
        for h in &done.unloaded {
            // Draining versions keep serving the requests they have; nothing new reaches them.
            let me = self.clone();
            let (h, group) = (h.clone(), group.clone());
            tokio::spawn(async move {
                // A version a live upgrade holds (a `deploy --migrate` moving its actors away)
                // is unloaded once that upgrade ends.
                let grace = grace_ms.map(Duration::from_millis);
                if let Err(e) = me.unload_as(&h, grace, WhenBusy::Wait).await {
                    tracing::warn!(%group, hash = %h, "could not unload an old version: {e}");
                }
            });
        }
        Response::Group {
            group,
            info: done.info,
            previous: done.previous,
            unloaded: done.unloaded,
            upgrade: None,
        }
    }

    /// The leader's side of a rollback.
    pub fn roll_back(&self, group: String) -> Result<Response, OpError> {
        let loaded = |h: &str| self.versions.is_active(h) || self.members.anyone_holds(h);
        let (info, was) = self.groups.roll_back(&group, loaded)?;
        tracing::info!(%group, active = ?info.active, "group rolled back");
        Ok(Response::Group { group, info, previous: Some(was), unloaded: Vec::new(), upgrade: None })
    }
}
