//! Creating actors. A create returns its address at once: the creator's node resolves the
//! version, places the actor ([`crate::model::placement`]) and allocates its id, so the address
//! is known before the actor exists. Messages sent to it queue behind the create, on the
//! version's executor or on the peer link to the node that hosts it; a message that reached the
//! host by another link (the address came from the leader) waits there for the create
//! ([`super::router`]). A create that fails reaches the creator as `ChildActorExited`, never
//! only as a log line.

use troupe_actor_abi::message::{Address, CreateError, CreateSpec, ExitReason};

use super::core::Core;
use crate::host::effect::{Cmd, Effect, LocalQueue};
use crate::model::error::OpError;
use crate::model::log_limit::Repeats;
use crate::model::placement::{self, HereView, LocalVersion, MemberView, Plan, Target};
use crate::tables::actors::{ActorKind, ActorRec};
use crate::wire::{HeldOutcome, PeerRequest, Response, SourceHint, SourceSummary};

impl Core {
    /// Resolves a full hash, a unique prefix, or `@group`, among versions known here or in the
    /// convention.
    pub(crate) fn resolve_hash(&self, hash: &str) -> Result<String, CreateError> {
        if let Some(group) = hash.trim().strip_prefix('@') {
            return self.groups.resolve(group);
        }
        let (mut known, gone) = self.versions.hashes();
        known.extend(self.members.hashes());
        placement::resolve_prefix(hash, known.iter(), gone.iter())
    }

    /// Resolves, checks and places a create (see [`placement::plan`]).
    pub(crate) fn plan_create(
        &self,
        spec: &CreateSpec,
        inherit: Option<&str>,
        forced_local: bool,
    ) -> Result<Plan, CreateError> {
        if self.stopping() {
            return Err(CreateError::ActorSystemShuttingDown);
        }
        let Some(hash) = spec.source_hash.as_deref().or(inherit) else {
            return Err(CreateError::InvalidActorSourceHash {
                hash: String::new(),
                detail: "was not given: a client must name the version to create from".into(),
            });
        };
        let hash = self.resolve_hash(hash)?;
        let (mut version, draining, mut types) = self.versions.local_view(&hash);
        if !matches!(version, LocalVersion::Active(_)) && self.fetches.in_flight(&hash) {
            // On its way here (fetched, maybe validating already): a create that qualifies
            // here waits for that fetch rather than going elsewhere.
            version = LocalVersion::Fetching;
        }
        if types.is_none() && !draining {
            types = self.members.types_of(&hash);
        }
        let snapshot = self.members.placement_view(&hash);
        let members: Vec<MemberView<'_>> = snapshot
            .iter()
            .map(|m| MemberView {
                addr: &m.addr,
                capabilities: &m.capabilities,
                remote_sources: m.remote_sources,
                has_source: m.has_source,
            })
            .collect();
        let turn = self.placement_turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let leader = self.leader();
        let req = placement::Request {
            hash: &hash,
            type_name: &spec.type_name,
            extra_requirements: &spec.requirements,
            forced_local,
            turn,
        };
        // Planning is pure and quick: it runs under the capability set's lock, not on a copy.
        self.caps.with(|capabilities| {
            let here = HereView {
                addr: &self.addr,
                capabilities,
                remote_sources: self.conv.remote_sources,
                leader: &leader,
                version,
                draining,
                types,
            };
            placement::plan(&req, here, &members)
        })
    }

    /// A version loaded elsewhere moments ago may not be in our directory yet.
    fn needs_directory_refresh(&self, plan: &Result<Plan, CreateError>) -> bool {
        !self.is_leader()
            && matches!(plan, Err(CreateError::InvalidActorSourceHash { detail, .. }) if detail == "does not match any loaded source")
    }

    /// The address actor `id` gets at `target`.
    pub(crate) fn target_address(&self, target: &Target, id: u64) -> Address {
        match target {
            Target::Local(_) => self.address(id),
            Target::Remote(node) => Address { node: node.clone(), id },
        }
    }

    /// A create requested by an actor, during its plugin call (on its version's thread):
    /// resolves and places it now, so that the address returned to the actor is where the
    /// child will live (or, for a global name held here or known to the leader here, the
    /// holder). Nothing here waits on the network: a name the leader is elsewhere for, or a
    /// version the directory does not list yet, is settled after the call, with the create
    /// *held* at its address meanwhile (messages to it wait). The work itself is an effect
    /// applied after the call returns; a failure then reaches the actor as `ChildActorExited`.
    pub(crate) fn prepare_actor_create(&self, inherit: &str, spec: CreateSpec) -> (Address, Effect) {
        let id = self.ids.allocate();
        let plan = self.plan_create(&spec, Some(inherit), false);
        if self.needs_directory_refresh(&plan) {
            // A version loaded elsewhere moments ago: held here while the directory is
            // refreshed, then created here if it can run here.
            return (self.address(id), Effect::CreateLater { id, spec, inherit: inherit.to_string() });
        }
        let plan = match plan {
            Ok(p) => p,
            Err(error) => return (self.address(id), Effect::CreateFailed { id, error }),
        };
        if let Some(name) = &spec.global_name {
            if let Some(held) = self.names.held_here(name).filter(|h| self.actors.contains(*h)) {
                return (self.address(held), Effect::Nothing);
            }
            // A member's copy of the convention's names (as current as its last heartbeat).
            if !self.is_leader() {
                if let Some(holder) = self.names.known(name).filter(|h| self.holder_live(h)) {
                    return (holder, Effect::Nothing);
                }
            }
            let candidate = plan.target.as_ref().ok().map(|t| self.target_address(t, id));
            match self.try_claim(name, candidate.clone()) {
                Some(Some(holder)) if Some(&holder) != candidate.as_ref() => {
                    return (holder, Effect::Nothing)
                }
                Some(_) => {}
                None => {
                    let at = candidate.unwrap_or_else(|| self.address(id));
                    return (at, Effect::Create { id, spec, plan, hold: true });
                }
            }
        }
        match &plan.target {
            Ok(t) => (self.target_address(t, id), Effect::Create { id, spec, plan, hold: false }),
            Err(e) => {
                let error = e.clone();
                (self.address(id), Effect::CreateFailed { id, error })
            }
        }
    }

    /// An actor's create whose global name is claimed after its call: the child is held at
    /// its address (here, or on the node placement chose) until the leader answers; then it
    /// starts, becomes an alias of the name's holder, or fails.
    pub(crate) fn create_held(&self, id: u64, parent: Address, spec: CreateSpec, plan: Plan) {
        let Some(name) = spec.global_name.clone() else { return };
        let placed = plan.target.clone();
        let at = match &placed {
            Ok(Target::Remote(node)) => {
                let at = Address { node: node.clone(), id };
                if self.is_local(&parent) {
                    self.actors.add_child(parent.id, at.clone());
                }
                self.send_create(id, Some(parent.clone()), spec, plan.clone(), node, true);
                at
            }
            _ => {
                self.hold(id, Some(parent.clone()), &spec, &plan);
                self.address(id)
            }
        };
        let Some(me) = self.arc() else { return };
        self.rt.spawn(async move {
            let candidate = placed.as_ref().ok().map(|_| at.clone());
            let outcome = match (me.claim_name(&name, candidate).await, placed) {
                (Ok(Some(holder)), _) if holder == at => HeldOutcome::Start,
                (Ok(Some(holder)), _) => HeldOutcome::Forward(holder),
                (Ok(None), Err(e)) | (Err(e), _) => HeldOutcome::Fail(e),
                (Ok(None), Ok(_)) => HeldOutcome::Start,
            };
            if let HeldOutcome::Forward(_) = &outcome {
                // Another actor holds the name: it is not the creator's child.
                if me.is_local(&parent) {
                    me.actors.remove_child(parent.id, &at);
                }
            }
            if me.is_local(&at) {
                me.held_decided(id, outcome);
            } else {
                me.peers.notify(&at.node, PeerRequest::Held { id, outcome });
            }
        });
    }

    /// Registers a create here as pending, messages waiting: a held one (started by
    /// [`Core::held_decided`]) or one whose version is being fetched.
    fn hold(&self, id: u64, parent: Option<Address>, spec: &CreateSpec, plan: &Plan) {
        let kind = ActorKind::Pending {
            hash: plan.hash.clone(),
            type_name: spec.type_name.clone(),
            buffer: Vec::new(),
        };
        let rec = ActorRec::new(kind, parent.clone(), spec.global_name.clone(), plan.requirements.clone());
        self.actors.insert(id, rec);
        if let Some(p) = parent.filter(|p| self.is_local(p)) {
            self.actors.add_child(p.id, self.address(id));
        }
    }

    /// The claim a held create here waited for is decided.
    pub fn held_decided(&self, id: u64, outcome: HeldOutcome) {
        match outcome {
            HeldOutcome::Start => {
                let Some(hash) = self.actors.pending_hash(id) else { return };
                if let Some(name) = self.actors.name_of(id) {
                    self.names.hold_here(&name, id);
                }
                if let Some(me) = self.arc() {
                    me.fetch_then_create(id, hash);
                }
            }
            HeldOutcome::Forward(to) => {
                if let Some((_, waited)) = self.actors.alias(id, to.clone()) {
                    for m in waited {
                        self.route(m, &to, None);
                    }
                }
            }
            HeldOutcome::Fail(error) => self.create_failed(id, None, error),
        }
    }

    /// An actor's create of a version the directory did not list: held here while the
    /// directory is refreshed (off the version's thread), then created here if the version
    /// and this node's capabilities allow it, or failed with the reason.
    pub(crate) fn create_later(&self, id: u64, parent: Address, spec: CreateSpec, inherit: String) {
        let hash = spec.source_hash.clone().unwrap_or_else(|| inherit.clone());
        let kind = ActorKind::Pending { hash, type_name: spec.type_name.clone(), buffer: Vec::new() };
        self.actors.insert(id, ActorRec::new(kind, Some(parent.clone()), None, Vec::new()));
        self.actors.add_child(parent.id, self.address(id));
        let Some(me) = self.arc() else { return };
        self.rt.spawn(async move {
            let _ = me.refresh_membership().await;
            let plan = me.plan_create(&spec, Some(&inherit), true);
            match plan.and_then(|p| p.target.clone().map(|t| (p, t))) {
                Ok((plan, target)) => {
                    // Replace the placeholder by the real create at the same address.
                    let waited =
                        me.actors.remove(id, |_| "it was being placed".into()).map(|r| match r.kind {
                            ActorKind::Pending { buffer, .. } => buffer,
                            _ => Vec::new(),
                        });
                    me.create_planned(id, Some(parent), spec, plan, target, None);
                    for m in waited.unwrap_or_default() {
                        me.route(m, &me.address(id), None);
                    }
                }
                Err(error) => me.create_failed(id, None, error),
            }
        });
    }

    /// Creates a top-level actor for a client.
    pub async fn create_for_client(&self, mut spec: CreateSpec) -> Result<Response, OpError> {
        let id = self.ids.allocate();
        // A create through a group names the group's active version *now*; a global name that
        // mentions the group is bound to that version, so a deploy moves new requests to the
        // new version while the old one drains.
        if let Some(group) = spec.source_hash.clone().filter(|h| h.starts_with('@')) {
            if !self.groups.contains(&group[1..]) && !self.is_leader() {
                let _ = self.refresh_membership().await;
            }
            let resolved = self.resolve_hash(&group)?;
            spec.global_name = spec.global_name.map(|n| n.replace(&group, &resolved));
            spec.source_hash = Some(resolved);
        }
        let mut plan = self.plan_create(&spec, None, false);
        if self.needs_directory_refresh(&plan) {
            let _ = self.refresh_membership().await;
            plan = self.plan_create(&spec, None, false);
        }
        let plan = plan?;
        if let Some(name) = &spec.global_name {
            let candidate = plan.target.as_ref().ok().map(|t| self.target_address(t, id));
            if let Some(holder) = self.claim_name(name, candidate.clone()).await? {
                if Some(&holder) != candidate.as_ref() {
                    return Ok(Response::Created { address: holder, hash: plan.hash, existing: true });
                }
            }
        }
        let target = plan.target.clone()?;
        let hash = plan.hash.clone();
        let name = spec.global_name.clone();
        match self.commit_create(id, None, spec, plan, target, None) {
            Ok(address) => Ok(Response::Created { address, hash, existing: false }),
            Err(e) => {
                if let Some(name) = name {
                    self.release_name(&name, &self.address(id));
                }
                Err(e.into())
            }
        }
    }

    /// A peer placed an actor here (held until [`PeerRequest::Held`] with `hold`).
    pub fn peer_create(
        &self,
        id: u64,
        parent: Option<Address>,
        spec: CreateSpec,
        source: Option<SourceHint>,
        hold: bool,
    ) {
        if let Some(hint) = &source {
            self.members.learn(hint);
        }
        let result = self.plan_create(&spec, None, true).and_then(|plan| {
            let target = plan.target.clone()?;
            Ok((plan, target))
        });
        match result {
            Ok((plan, _)) if hold => self.hold(id, parent, &spec, &plan),
            Ok((plan, target)) => self.create_planned(id, parent, spec, plan, target, None),
            // A held create's name is the creator's to give back.
            Err(e) if hold => self.create_failed(id, parent, e),
            Err(e) => self.abandon_create(id, parent, spec.global_name.as_deref(), e),
        }
    }

    /// Registers and starts a planned create; a failure goes to the parent.
    pub(crate) fn create_planned(
        &self,
        id: u64,
        parent: Option<Address>,
        spec: CreateSpec,
        plan: Plan,
        target: Target,
        local: Option<&mut LocalQueue<'_>>,
    ) {
        let name = spec.global_name.clone();
        if let Err(e) = self.commit_create(id, parent.clone(), spec, plan, target, local) {
            self.abandon_create(id, parent, name.as_deref(), e);
        }
    }

    /// A create that will not happen: its claimed name is given back, its parent told why.
    pub(crate) fn abandon_create(
        &self,
        id: u64,
        parent: Option<Address>,
        name: Option<&str>,
        error: CreateError,
    ) {
        if let Some(name) = name {
            self.release_name(name, &self.address(id));
        }
        self.create_failed(id, parent, error);
    }

    /// Registers and starts a planned create. Returns the new actor's address.
    pub(crate) fn commit_create(
        &self,
        id: u64,
        parent: Option<Address>,
        spec: CreateSpec,
        plan: Plan,
        target: Target,
        local: Option<&mut LocalQueue<'_>>,
    ) -> Result<Address, CreateError> {
        if self.stopping() {
            return Err(CreateError::ActorSystemShuttingDown);
        }
        let addr = self.target_address(&target, id);
        let local_parent = parent.as_ref().filter(|p| self.is_local(p)).map(|p| p.id);
        match target {
            Target::Remote(node) => {
                if let Some(p) = local_parent {
                    self.actors.add_child(p, addr.clone());
                }
                self.send_create(id, parent, spec, plan, &node, false);
            }
            Target::Local(None) => {
                if let Some(name) = &spec.global_name {
                    self.names.hold_here(name, id);
                }
                // Pending, as a held create is, until its version is fetched; it joins the fetch
                // now, so the next create placed here sees the version coming.
                self.hold(id, parent, &spec, &plan);
                if let Some(me) = self.arc() {
                    me.fetch_then_create(id, plan.hash);
                }
            }
            Target::Local(Some(gen)) => {
                let Some(host) = self.versions.add_actor(gen) else {
                    return Err(CreateError::InvalidActorSourceHash {
                        hash: plan.hash,
                        detail: "was unloaded meanwhile".into(),
                    });
                };
                if let Some(name) = &spec.global_name {
                    self.names.hold_here(name, id);
                }
                let tx = host.clone();
                let kind =
                    ActorKind::Plugin { gen, hash: plan.hash, type_name: spec.type_name.clone(), host };
                self.actors.insert(id, ActorRec::new(kind, parent, spec.global_name, plan.requirements));
                if let Some(p) = local_parent {
                    self.actors.add_child(p, addr.clone());
                }
                let cmd = Cmd::Create { id, type_name: spec.type_name };
                match local {
                    Some(l) if l.gen == gen => l.queue.push_back(cmd),
                    // The executor outlives every actor it hosts (it retires only when none is
                    // left), and we just counted this one, so this cannot fail.
                    _ => {
                        let _ = tx.send(cmd);
                    }
                }
            }
        }
        Ok(addr)
    }

    /// Sends a create to the node placement chose, with where its version can be fetched.
    fn send_create(
        &self,
        id: u64,
        parent: Option<Address>,
        spec: CreateSpec,
        plan: Plan,
        node: &str,
        hold: bool,
    ) {
        let mut holders = self.members.holders(&plan.hash, "");
        if self.versions.is_active(&plan.hash) {
            holders.insert(0, self.addr.clone());
        }
        let source = Some(SourceHint {
            summary: SourceSummary { hash: plan.hash.clone(), types: plan.types },
            holders,
        });
        let spec = CreateSpec { source_hash: Some(plan.hash), ..spec };
        self.peers.notify(node, PeerRequest::PeerCreate { id, parent, spec, source, hold });
    }

    /// Actor `id` could not be created: tell its parent why. `creator` names the parent of an
    /// actor that was refused before it was ever registered.
    pub(crate) fn create_failed(&self, id: u64, creator: Option<Address>, error: CreateError) {
        let text = error.to_string();
        let (parent, buffered, retire) = match self.actors.remove(id, |_| text.clone()) {
            Some(mut rec) => {
                if let Some(name) = &rec.global_name {
                    if self.names.held_here(name) == Some(id) {
                        self.release_name(name, &self.address(id));
                    }
                }
                let retire = self.forget(id, &rec);
                let buffered = match &mut rec.kind {
                    ActorKind::Pending { buffer, .. } => std::mem::take(buffer),
                    _ => Vec::new(),
                };
                (rec.parent, buffered, retire)
            }
            None => {
                self.actors.tombstone(id, text.clone());
                (creator, Vec::new(), None)
            }
        };
        if let Some(host) = retire {
            let _ = host.send(Cmd::Retire);
        }
        // Creates that keep failing (a supervised child whose constructor always fails) would
        // repeat this line without bound.
        static CREATE_FAILED: Repeats = Repeats::new();
        if let Some(held) = CREATE_FAILED.admit_now() {
            tracing::info!(actor = id, "create failed: {text}{held}");
        }
        for m in buffered {
            self.poison(m, self.address(id), text.clone());
        }
        if let Some(parent) = parent {
            self.notify_parent(parent, self.address(id), ExitReason::CreateFailed(error));
        }
    }

    /// A `PeerCreate` could not reach `node`.
    pub(crate) fn remote_create_unreachable(
        &self,
        id: u64,
        node: &str,
        parent: Option<Address>,
        type_name: &str,
        why: &str,
    ) {
        tracing::info!(actor = id, %node, %type_name, "create could not reach its node: {why}");
        if let Some(parent) = parent {
            let child = Address { node: node.to_string(), id };
            self.notify_parent(parent, child, ExitReason::NodeLost { node: node.to_string() });
        }
    }
}
