//! Named releases (groups): `troupe deploy ZIP --group NAME` loads a version and makes it the
//! group's active one; `@NAME` wherever a hash is accepted means that active version; versions
//! beyond the kept window drain and unload; `troupe rollback` makes the previous one active
//! again while it is still loaded.
//!
//! The leader holds the groups and hands them to members with every registration, so a
//! member that restarts has them back within a heartbeat.

use std::sync::Arc;
use std::time::Duration;

use crate::node::{refused, Shared, VersionState};
use crate::protocol::{ErrorReply, Request, Response};

/// How long a member waits for the leader to record a deploy or rollback.
const LEADER_TIMEOUT: Duration = Duration::from_secs(10);

impl Shared {
    /// Loads `zip` here and makes it the active version of `group`.
    pub async fn deploy(
        self: &Arc<Self>,
        zip: Vec<u8>,
        info: String,
        group: String,
        keep: usize,
        grace_ms: Option<u64>,
    ) -> Result<Response, ErrorReply> {
        if group.is_empty() || group.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(ErrorReply::bad_request(
                "usage",
                format!("{group:?} is not a group name: use letters, digits, '-', '_' or '.'"),
            ));
        }
        let Response::Loaded { hash, .. } = self.load(zip, info).await? else {
            return Err(refused("internal", "load gave an unexpected answer"));
        };
        self.group_request(Request::GroupActivate { group, hash, keep, grace_ms }).await
    }

    /// Makes the previous version of `group` active again.
    pub async fn rollback(self: &Arc<Self>, group: String) -> Result<Response, ErrorReply> {
        self.group_request(Request::Rollback { group }).await
    }

    /// Runs a group change on the leader (here, or by asking it), then refreshes our copy.
    async fn group_request(self: &Arc<Self>, request: Request) -> Result<Response, ErrorReply> {
        if self.is_leader() {
            return match request {
                Request::GroupActivate { group, hash, keep, grace_ms } => {
                    self.activate(group, hash, keep, grace_ms).await
                }
                Request::Rollback { group } => self.roll_back(group),
                _ => Err(refused("internal", "not a group request")),
            };
        }
        let leader = self.conv.leader.clone();
        let answer = self.peers().call(self, &leader, request, LEADER_TIMEOUT).await.map_err(|e| {
            refused(
                "leader_unreachable",
                format!("the leader {leader} holds the groups and could not be asked: {e}"),
            )
        })?;
        let _ = self.refresh_membership().await;
        Ok(answer)
    }

    /// The leader's side of a deploy: `hash` becomes active; versions beyond the `keep` newest
    /// others are unloaded (they drain everywhere).
    pub async fn activate(
        self: &Arc<Self>,
        group: String,
        hash: String,
        keep: usize,
        grace_ms: Option<u64>,
    ) -> Result<Response, ErrorReply> {
        let (info, previous, unloaded) = {
            let mut st = self.lock();
            let g = st.groups.entry(group.clone()).or_default();
            let previous = g.active.clone().filter(|p| *p != hash);
            g.versions.retain(|h| *h != hash);
            g.versions.push(hash.clone());
            g.active = Some(hash.clone());
            let others: Vec<String> = g.versions.iter().filter(|h| **h != hash).cloned().collect();
            let drop_count = others.len().saturating_sub(keep);
            let unloaded: Vec<String> = others.into_iter().take(drop_count).collect();
            g.versions.retain(|h| !unloaded.contains(h));
            (g.clone(), previous, unloaded)
        };
        tracing::info!(%group, active = %hash, ?unloaded, "group deployed");
        for h in &unloaded {
            // Draining versions keep serving the requests they have; nothing new reaches them.
            // The grace period runs in the background: the deploy answers at once.
            let me = self.clone();
            let (h, group) = (h.clone(), group.clone());
            tokio::spawn(async move {
                if let Err(e) = me.unload(&h, grace_ms.map(Duration::from_millis)).await {
                    tracing::warn!(%group, hash = %h, "could not unload an old version: {}", e.message);
                }
            });
        }
        Ok(Response::Group { group, info, previous, unloaded })
    }

    /// The leader's side of a rollback.
    pub fn roll_back(&self, group: String) -> Result<Response, ErrorReply> {
        let mut st = self.lock();
        let loaded = |st: &crate::node::State, h: &str| {
            st.current
                .get(h)
                .and_then(|g| st.versions.get(g))
                .is_some_and(|v| v.state == VersionState::Active)
                || st.members.values().any(|m| m.has_source(h))
        };
        let Some(g) = st.groups.get(&group).cloned() else {
            return Err(refused(
                "no_group",
                format!(
                    "there is no group {group:?} — deploy one with troupe deploy PORT ZIP --group {group}"
                ),
            ));
        };
        let Some(active) = g.active.clone() else {
            return Err(refused("no_group", format!("group {group:?} has no active version")));
        };
        let pos = g.versions.iter().position(|h| *h == active).unwrap_or(g.versions.len());
        let Some(prev) = g.versions[..pos].iter().rev().find(|h| loaded(&st, h)).cloned() else {
            return Err(refused(
                "nothing_to_roll_back",
                format!("group {group:?} has no earlier version still loaded (deploy with --keep 1 or more to keep one for rollback)"),
            ));
        };
        let entry = st.groups.entry(group.clone()).or_default();
        entry.active = Some(prev.clone());
        let info = entry.clone();
        tracing::info!(%group, active = %prev, "group rolled back");
        Ok(Response::Group { group, info, previous: Some(active), unloaded: Vec::new() })
    }
}
