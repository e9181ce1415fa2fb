//! What `troupe status` shows of a node: a snapshot gathered from each table in turn.

use crate::host::pthread_keys::{pthread_keys_in_use, PTHREAD_KEYS_MAX, PTHREAD_KEYS_REFUSE_AT};
use crate::model::metrics::{short_hash, Metrics, MetricsSource, PeerSample, Snapshot, VersionSample};
use crate::runtime::core::Core;
use crate::wire::status::{ConventionStatus, StatusReport};

impl Core {
    /// A snapshot for `troupe status`.
    pub fn status(&self) -> StatusReport {
        let (mut versions, gone) = self.versions.status(self.long_handler);
        for l in versions.iter_mut().flat_map(|v| v.long_handlers.iter_mut()) {
            l.actor.node = self.addr.clone();
            l.type_name = self.actors.identity(l.actor.id).map(|i| i.3).unwrap_or_default();
        }
        StatusReport {
            node: self.addr.clone(),
            pid: std::process::id(),
            capabilities: self.caps.list(),
            authority: self.authority.describe(),
            store: self.store.display().to_string(),
            versions,
            gone,
            actors: self.actors.status(&self.addr),
            global_names: self.names.here(&self.addr),
            convention: self.convention_status(),
            pthread_keys_in_use: pthread_keys_in_use(),
            pthread_keys_max: PTHREAD_KEYS_MAX,
            pthread_keys_refuse_at: PTHREAD_KEYS_REFUSE_AT,
            groups: self.groups.all(),
        }
    }

    /// This node's view of its convention.
    pub(crate) fn convention_status(&self) -> ConventionStatus {
        let leader = self.leader();
        let leading = leader == self.addr;
        let role = match (leading, self.leadership.alone()) {
            (true, true) => "alone",
            (true, false) => "leader",
            (false, _) => "member",
        };
        ConventionStatus {
            role: role.into(),
            joined: self.leadership.was_answered(),
            remote_sources: format!("{:?}", self.conv.remote_sources).to_lowercase(),
            heartbeat_ms: self.conv.heartbeat.as_millis() as u64,
            dead_after_ms: self.conv.dead_after.as_millis() as u64,
            members: self.members.status(&leader, self.conv.dead_after),
            leaders: self.leadership.list().to_vec(),
            incarnation: self.incarnation(),
            leader_changes: self.leadership.changes(),
            gathering: leading && !self.leadership.gathered(),
            names: if leading { self.names.convention() } else { Default::default() },
            leader,
        }
    }
}

impl MetricsSource for Core {
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn snapshot(&self) -> Snapshot {
        let actors = self
            .actors
            .count_by_type()
            .into_iter()
            .map(|((type_name, hash), n)| ((type_name, short_hash(&hash).to_string()), n))
            .fold(std::collections::BTreeMap::new(), |mut m, (k, n)| {
                *m.entry(k).or_default() += n;
                m
            });
        let versions = self
            .versions
            .counters(self.long_handler)
            .into_iter()
            .map(|v| VersionSample {
                version: short_hash(&v.hash).to_string(),
                state: v.state,
                mailbox_depth: v.queued.saturating_sub(v.handled),
                handled: v.handled,
                threads_busy: v.busy as u64,
                threads_idle: v.idle as u64,
                long_handlers: v.long as u64,
            })
            .collect();
        let peers = self
            .members
            .status(&self.leader(), self.conv.dead_after)
            .into_iter()
            .map(|m| PeerSample { node: m.node, up: m.alive })
            .collect();
        Snapshot { actors, versions, peers, pthread_keys_in_use: pthread_keys_in_use() }
    }
}
