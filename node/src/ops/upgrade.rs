//! Live upgrade (DESIGN §8): every live actor of one version moves to another at the same
//! address, with its state, on every node of the convention.
//!
//! The node asked (`troupe upgrade`, `deploy --migrate`) runs [`Core::upgrade_here`] itself and
//! asks every member to do the same (`PeerRequest::UpgradeHere`). On each node the version
//! hosts do the moving (`host::migrate`): an actor is paused between two messages, its state
//! exported on a thread of the old version, imported on a thread of the new one, and what
//! arrived meanwhile follows it in order. An actor whose export or import fails keeps running
//! the old version and is reported. With `all_or_nothing` every node holds its moved actors
//! paused until all have answered; then each commits, or every actor goes back.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::mpsc;
use troupe_actor_abi::message::CreateError;

use crate::host::effect::HostHandle;
use crate::host::migrate::{self, Outcome, Report};
use crate::host::NodeSeam;
use crate::model::error::OpError;
use crate::model::metrics::short_hash;
use crate::ops::unload::WhenBusy;
use crate::runtime::core::Core;
use crate::tables::progress::Key;
use crate::tables::upgrades::{Claim, HeldMove};
use crate::tables::versions::UpgradeTarget;
use crate::wire::Coded;
use crate::wire::{
    NodeUpgrade, PeerRequest, Response, SourceHint, SourceSummary, TypeOutcome, UpgradeFailure,
    UpgradeOptions, UpgradeReport,
};

/// How long a node waits for its actors to pause unless the upgrade says otherwise: an actor
/// pauses between two messages, so a handler that runs longer than this keeps its actor on the
/// old version (reported).
const PAUSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the node running the upgrade waits for a member's report, beyond the pause
/// timeout (the member may have to fetch the new version first).
const MEMBER_MARGIN: Duration = Duration::from_secs(15);
/// How long the node running the upgrade waits for a member to apply a decision.
const DECIDE_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a node holds moves for a decision, beyond the longest the node running the upgrade
/// may wait for the others, before it rolls them back by itself.
const DECIDE_MARGIN: Duration = Duration::from_secs(30);

mod moves;

use moves::{Moves, Pending};

impl Core {
    /// `troupe upgrade`: moves every live actor of `from` to `to`, here and on every member;
    /// then `from` drains (empty but for actors that do not migrate) and unloads, unless the
    /// upgrade was rolled back. Refused while another upgrade here holds either version.
    pub async fn upgrade(
        self: &Arc<Self>,
        from: &str,
        to: &str,
        options: UpgradeOptions,
    ) -> Result<UpgradeReport, OpError> {
        let claimed = self.claim_upgrade(from, to)?;
        let report = self.upgrade_claimed(&claimed, &options).await?;
        if !report.rolled_back {
            // Still under the claim: no other upgrade of FROM can start before it drains.
            let by = WhenBusy::Exempt(claimed.claim.upgrade());
            if let Err(e) = self.unload_as(&report.from, None, by).await {
                tracing::warn!(from = %report.from, "upgraded, but the old version could not be unloaded: {e}");
            }
        }
        Ok(report)
    }

    /// Moves every live actor of `from` to `to` on every node (see the module's documentation).
    pub(crate) async fn upgrade_everywhere(
        self: &Arc<Self>,
        from: &str,
        to: &str,
        options: &UpgradeOptions,
    ) -> Result<UpgradeReport, OpError> {
        let claimed = self.claim_upgrade(from, to)?;
        self.upgrade_claimed(&claimed, options).await
    }

    /// Resolves both versions and claims them here for a new upgrade: refused with
    /// `upgrade_in_progress` if an upgrade under way here holds either.
    fn claim_upgrade(&self, from: &str, to: &str) -> Result<Claimed, OpError> {
        let (from, to) = (self.resolve_hash(from)?, self.resolve_hash(to)?);
        self.known_somewhere(&from)?;
        if from == to {
            return Err(OpError::Usage(format!("FROM and TO are the same version ({from})")));
        }
        let upgrade = self.ids.allocate();
        match self.upgrades.claim(upgrade, &from, &to, &self.addr) {
            Ok(claim) => Ok(Claimed { claim, from, to }),
            Err(busy) => {
                let hash = if busy.touches(&from) { from } else { to };
                Err(busy.refusal(&hash))
            }
        }
    }

    /// Runs a claimed upgrade here and on every member.
    async fn upgrade_claimed(
        self: &Arc<Self>,
        claimed: &Claimed,
        options: &UpgradeOptions,
    ) -> Result<UpgradeReport, OpError> {
        let Claimed { claim, from, to } = claimed;
        let (from, to) = (from.clone(), to.clone());
        let source = self.source_of(&to)?;
        let upgrade = claim.upgrade();
        let hold = options.all_or_nothing;
        let members = self.members.addrs();
        let member_timeout = options.timeout_ms.map_or(PAUSE_TIMEOUT, Duration::from_millis) + MEMBER_MARGIN;
        let here = self.move_here(claim, &from, &to, options, hold, None);
        let there = join_all(members.iter().map(|m| {
            let request = PeerRequest::UpgradeHere {
                upgrade,
                from: from.clone(),
                to: to.clone(),
                options: options.clone(),
                hold,
                source: Some(source.clone()),
            };
            self.peers.call(m, request, member_timeout)
        }));
        let (here, there) = futures::join!(here, there);
        let mut nodes = vec![here];
        for (member, answer) in members.iter().zip(there) {
            nodes.extend(member_report(member, answer));
        }
        let failed = nodes.iter().any(|n| !n.failed.is_empty());
        let rolled_back = hold && failed;
        if hold {
            self.decide_everywhere(upgrade, !rolled_back, &members, &mut nodes).await;
        }
        Ok(UpgradeReport { from, to, nodes, rolled_back })
    }

    /// Refuses a FROM that no node knows (loaded, or unloaded lately), as an unknown prefix is
    /// refused: `InvalidActorSourceHash`, exit 1, rather than "moved 0".
    fn known_somewhere(&self, hash: &str) -> Result<(), OpError> {
        let (mut known, gone) = self.versions.hashes();
        known.extend(self.members.hashes());
        if known.iter().chain(&gone).any(|h| h == hash) {
            return Ok(());
        }
        let detail = "does not match any loaded source".to_string();
        Err(CreateError::InvalidActorSourceHash { hash: hash.to_string(), detail }.into())
    }

    /// Where `to` is loaded, for members that must fetch it; an error if it is loaded nowhere
    /// (`InvalidActorSourceHash`, a refusal like every hash that names no loaded version).
    fn source_of(&self, to: &str) -> Result<SourceHint, OpError> {
        let mut holders = self.members.holders(to, "");
        let (_, _, local_types) = self.versions.local_view(to);
        if self.versions.is_active(to) {
            holders.insert(0, self.addr.clone());
        }
        let types = local_types.or_else(|| self.members.types_of(to));
        match types {
            Some(types) if !holders.is_empty() => {
                Ok(SourceHint { summary: SourceSummary { hash: to.to_string(), types }, holders })
            }
            _ => Err(CreateError::InvalidActorSourceHash {
                hash: to.to_string(),
                detail: "is not active on any node: load it (troupe load) before upgrading to it".into(),
            }
            .into()),
        }
    }

    /// Commits (or rolls back) a held upgrade here and on every member; the pauses go into
    /// the nodes' reports.
    async fn decide_everywhere(
        &self,
        upgrade: u64,
        commit: bool,
        members: &[String],
        nodes: &mut [NodeUpgrade],
    ) {
        let mut decided = vec![self.decide_upgrade(upgrade, commit)];
        let calls = members
            .iter()
            .map(|m| self.peers.call(m, PeerRequest::UpgradeDecide { upgrade, commit }, DECIDE_CALL_TIMEOUT));
        for (member, answer) in members.iter().zip(join_all(calls).await) {
            match answer {
                Ok(Response::Upgraded(r)) => decided.extend(r.nodes),
                other => {
                    tracing::warn!(%member, "no answer to an upgrade decision ({other:?}); it rolls back by itself")
                }
            }
        }
        for node in nodes.iter_mut() {
            if let Some(d) = decided.iter().find(|d| d.node == node.node) {
                node.pause_p50_us = d.pause_p50_us;
                node.pause_p99_us = d.pause_p99_us;
                node.pause_max_us = d.pause_max_us;
            }
            if !commit {
                node.types.iter_mut().for_each(|t| t.moved = 0);
            }
        }
    }

    /// A member's part of upgrade `upgrade` (`PeerRequest::UpgradeHere`): claims both versions
    /// here, then [`Core::move_here`]. If an upgrade under way here holds either, nothing moves
    /// and the report says why (the node running the upgrade rolls back an all-or-nothing one).
    pub(crate) async fn upgrade_here(
        self: &Arc<Self>,
        upgrade: u64,
        from: &str,
        to: &str,
        options: &UpgradeOptions,
        hold: bool,
        source: Option<SourceHint>,
    ) -> NodeUpgrade {
        match self.upgrades.claim(upgrade, from, to, "another node") {
            Ok(claim) => self.move_here(&claim, from, to, options, hold, source).await,
            Err(busy) => {
                let hash = if busy.touches(from) { from } else { to };
                let error = busy.refusal(hash);
                let address = troupe_actor_abi::message::Address { node: self.addr.clone(), id: 0 };
                let reason = format!("{}: {error}", error.code());
                let failed = vec![UpgradeFailure { address, type_name: "*".into(), reason }];
                NodeUpgrade { node: self.addr.clone(), failed, ..NodeUpgrade::default() }
            }
        }
    }

    /// Moves this node's live actors of `from` to `to` (fetched first if it is not here),
    /// under `claim`; with `hold`, moved actors stay paused (and the claim kept) until
    /// [`Core::decide_upgrade`].
    async fn move_here(
        self: &Arc<Self>,
        claim: &Claim,
        from: &str,
        to: &str,
        options: &UpgradeOptions,
        hold: bool,
        source: Option<SourceHint>,
    ) -> NodeUpgrade {
        let started = Instant::now();
        let mut report = NodeUpgrade { node: self.addr.clone(), ..NodeUpgrade::default() };
        let running = self.versions.running(from);
        let actors: Vec<_> = running.iter().map(|(gen, _, _)| self.actors.movable(*gen)).collect();
        if actors.iter().all(Vec::is_empty) {
            return report;
        }
        // Watchers see this share as it goes. The node that runs the upgrade has TO already and
        // passes no source hint; a member is always given one.
        let key = Key { upgrade: claim.upgrade(), from, to };
        self.progress.begin(&key, source.is_none(), actors.iter().map(Vec::len).sum());
        let target = match self.upgrade_target(to, source).await {
            Ok(target) => target,
            Err(why) => {
                for (id, ty) in actors.into_iter().flatten() {
                    report.failed.push(self.failure(id, &ty, why.clone()));
                }
                self.progress.add(&key, 0, 0, report.failed.len(), &[]);
                self.progress.end(&key);
                return report;
            }
        };
        let mut queue = VecDeque::new();
        for ((_, host, package), list) in running.iter().zip(actors) {
            for (id, from_type) in list {
                let to_type = renamed(&from_type, options, &target);
                if !target.types.contains(&to_type) {
                    let why = format!(
                        "version {} exports no type {to_type} (map it: --map {from_type}=module.Type)",
                        short_hash(to)
                    );
                    report.failed.push(self.failure(id, &from_type, why));
                    continue;
                }
                queue.push_back(Pending {
                    id,
                    from_type,
                    to_type,
                    from: host.clone(),
                    package: package.clone(),
                });
            }
        }
        self.progress.add(&key, 0, 0, report.failed.len(), &[]);
        let timeout = options.timeout_ms.map_or(PAUSE_TIMEOUT, Duration::from_millis);
        let moves = Moves::new(&target, &key, hold, timeout).run(self, queue, &mut report).await;
        report.types = moves
            .outcomes
            .iter()
            .map(|((from_type, to_type), t)| TypeOutcome {
                from_type: from_type.clone(),
                to_type: to_type.clone(),
                ..*t
            })
            .collect();
        let held = moves.finish(self, claim);
        if hold {
            self.hold_moves(claim, held, timeout + MEMBER_MARGIN + DECIDE_MARGIN);
        }
        report.elapsed_us = started.elapsed().as_micros() as u64;
        self.progress.end(&key);
        report
    }

    /// The new version, here: loaded already, or fetched from a member that has it.
    async fn upgrade_target(
        self: &Arc<Self>,
        to: &str,
        source: Option<SourceHint>,
    ) -> Result<UpgradeTarget, String> {
        if let Some(target) = self.versions.upgrade_target(to) {
            return Ok(target);
        }
        if let Some(hint) = &source {
            self.members.learn(hint);
        }
        self.fetch_version(to)
            .await
            .map_err(|e| format!("version {} could not be fetched here: {e}", short_hash(to)))?;
        self.versions
            .upgrade_target(to)
            .ok_or_else(|| format!("version {} was unloaded while the upgrade ran", short_hash(to)))
    }

    /// Outcomes that arrive after the node stopped waiting: a late move stands (it is
    /// complete and consistent); a late held move is rolled back, as its actor was reported
    /// as not moved. The upgrade's claim is kept until the last of them.
    pub(super) fn settle_late(
        &self,
        mut rx: mpsc::UnboundedReceiver<Report>,
        from: HashMap<u64, HostHandle>,
        to: HostHandle,
        claim: Claim,
    ) {
        self.rt.spawn(async move {
            let _claim = claim;
            while let Some(Report { id, outcome }) = rx.recv().await {
                tracing::info!(actor = id, ?outcome, "a late outcome of an upgrade");
                if let (Outcome::Held { .. }, Some(from)) = (outcome, from.get(&id)) {
                    migrate::roll_back(id, from, &to);
                }
            }
        });
    }

    /// Keeps held moves (and the upgrade's claim) for the decision, and rolls them back if
    /// none comes in time.
    fn hold_moves(self: &Arc<Self>, claim: &Claim, held: Vec<HeldMove>, patience: Duration) {
        let upgrade = claim.upgrade();
        self.upgrades.hold(upgrade, held, Some(claim.clone()));
        let weak = self.weak.clone();
        self.rt.spawn(async move {
            tokio::time::sleep(patience).await;
            if let Some(core) = weak.upgrade() {
                let left = core.upgrades.take(upgrade);
                if !left.is_empty() {
                    tracing::warn!(upgrade, actors = left.len(), "no upgrade decision came: rolling back");
                    for h in left {
                        migrate::roll_back(h.id, &h.from, &h.to);
                    }
                }
            }
        });
    }

    /// Commits or rolls back the moves upgrade `upgrade` holds here.
    pub(crate) fn decide_upgrade(&self, upgrade: u64, commit: bool) -> NodeUpgrade {
        let mut report = NodeUpgrade { node: self.addr.clone(), ..NodeUpgrade::default() };
        let mut pauses = Vec::new();
        let held = self.upgrades.take(upgrade);
        let to_hash = held.first().map(|h| h.to_hash.clone()).unwrap_or_default();
        for h in held {
            if commit {
                migrate::commit(h.id, &h.from, &h.to);
                NodeSeam::moved(self, h.id, h.to_gen, &h.to_hash, &h.to_type, h.to.clone());
                pauses.push(h.paused_at.elapsed());
            } else {
                migrate::roll_back(h.id, &h.from, &h.to);
            }
        }
        self.metrics.upgraded(pauses.len(), 0, 0, &pauses);
        self.progress.decided(upgrade, &to_hash, commit, &pauses);
        set_pauses(&mut report, &mut pauses);
        report
    }

    pub(super) fn failure(&self, id: u64, type_name: &str, reason: String) -> UpgradeFailure {
        UpgradeFailure { address: self.address(id), type_name: type_name.to_string(), reason }
    }
}

/// An upgrade's claim here, with its versions resolved.
struct Claimed {
    claim: Claim,
    from: String,
    to: String,
}

/// The type an actor of `from_type` becomes: the command's map, else the new version's
/// `replaces`, else the same name.
fn renamed(from_type: &str, options: &UpgradeOptions, target: &UpgradeTarget) -> String {
    let mapped = options.map.get(from_type).or_else(|| target.renames.get(from_type));
    mapped.cloned().unwrap_or_else(|| from_type.to_string())
}

/// A member's part of the report: nothing if it had no actors of the old version; a failure
/// line if it could not be asked.
fn member_report(member: &str, answer: Result<Response, crate::peers::LinkError>) -> Vec<NodeUpgrade> {
    let why = match answer {
        Ok(Response::Upgraded(r)) => {
            return r.nodes.into_iter().filter(|n| !n.types.is_empty() || !n.failed.is_empty()).collect()
        }
        Ok(other) => format!("unexpected answer {other:?}"),
        Err(e) => e.to_string(),
    };
    let address = troupe_actor_abi::message::Address { node: member.to_string(), id: 0 };
    let reason = format!("the node could not be asked: {why}");
    let failed = vec![UpgradeFailure { address, type_name: "*".into(), reason }];
    vec![NodeUpgrade { node: member.to_string(), failed, ..NodeUpgrade::default() }]
}

/// Median, 99th percentile and longest pause.
pub(super) fn set_pauses(report: &mut NodeUpgrade, pauses: &mut [Duration]) {
    if pauses.is_empty() {
        return;
    }
    pauses.sort_unstable();
    let at = |q: f64| pauses[((pauses.len() - 1) as f64 * q).round() as usize].as_micros() as u64;
    report.pause_p50_us = at(0.5);
    report.pause_p99_us = at(0.99);
    report.pause_max_us = at(1.0);
}
