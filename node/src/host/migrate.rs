//! Live upgrade inside the version hosts: an actor's state leaves one version and an actor of
//! another is built from it, each on a thread of its own version.
//!
//! 1. The node queues [`Work::Export`](super::pool::Work) at the front of the actor's mailbox in
//!    the old version (F). A thread of F runs it after the actor's current turn: the plugin's
//!    `export_state`, then the mailbox is **paused** (the actor stays in F, untouched; what
//!    arrives waits) and an `Import` is queued in the new version (T).
//! 2. A thread of T runs the plugin's `import_actor`. On failure F resumes the actor as if
//!    nothing happened. On success, unless the upgrade holds every actor until all are ready
//!    (`--all-or-nothing`), the move is committed at once ([`commit`]): F hands over what
//!    waited and forwards whatever still reaches it, T puts that first, the node routes the
//!    address to T, and a thread of F drops the old state.
//!
//! Every outcome is reported on the move's channel. Plugin code runs only on its own version's
//! threads; this module only decides which thread does what.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Instant;

use troupe_actor_abi::abi::{self, OutSink, RawStr};
use troupe_actor_abi::message::{self, MigratedState, Migration, VersionIdentity};

use super::host_api::CallCtx;
// A move travels in the pools' mailboxes and holds both pools' handles, so its types live with
// the pool ([`super::pool::handle`]); named here too, where the upgrade finds them.
use super::pool::{ActorState, HostHandle, Work};
pub(crate) use super::pool::{Gate, Import, Move, Outcome, Report};
use super::worker::{err_text, Step, Worker};
use crate::model::metrics::short_hash;

/// Commits a held move: what waited on the old version goes first on the new one, which
/// resumes the actor; the old state is dropped by the old version. The caller routes the
/// address to the new version.
pub(crate) fn commit(id: u64, from: &HostHandle, to: &HostHandle) {
    let waiting = from.hand_over(id, to.pool());
    to.take_over(id, waiting, None);
}

/// Rolls back a held move: the new version drops what it built, the old one resumes.
pub(crate) fn roll_back(id: u64, from: &HostHandle, to: &HostHandle) {
    to.drop_import(id);
    from.resume(id);
}

impl Worker {
    /// Old side: exports actor `id`'s state and pauses it (`rest`: the turn's remaining work,
    /// which waits with it), or reports why it stays.
    pub(super) fn export(
        &mut self,
        id: u64,
        mv: Box<Move>,
        actor: Option<ActorState>,
        rest: &mut dyn Iterator<Item = Work>,
    ) -> Step {
        let Some(a) = actor else {
            mv.tell(Outcome::Failed("the actor is gone".into()));
            return Step::Continue(None);
        };
        if !mv.gate.start() {
            // The node gave up on it and reported it; it stays.
            let mut mv = mv;
            mv.done = true;
            return Step::Continue(Some(a));
        }
        let run = self.runner().clone();
        if !Arc::ptr_eq(&mv.from.pool(), &run.pool) {
            // The export followed the actor to another version (it waited in the mailbox that
            // an earlier move handed over): moving it from here would hand it over from the
            // version it left, and leave this copy paused for ever.
            mv.tell(Outcome::Failed("it moved to another version meanwhile".into()));
            return Step::Continue(Some(a));
        }
        let plugin = &run.plugins[a.plugin as usize];
        if !plugin.migrates() {
            mv.tell(Outcome::Stayed);
            return Step::Continue(Some(a));
        }
        let paused_at = Instant::now();
        let mut ctx = CallCtx::new(run.node.as_ref(), id, &run.hash, Vec::new());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        run.pool.call_started(self.slot(), id);
        // SAFETY: one of the version's own threads holds the actor's mailbox; `a.state` came
        // from this plugin and is live; the root has the entry point (`migrates`).
        let st = unsafe {
            (plugin.root().export_state)(
                a.state,
                &mut ctx as *mut CallCtx as *mut c_void,
                OutSink::for_vec(&mut out),
                OutSink::for_vec(&mut err),
            )
        };
        run.pool.call_ended(self.slot());
        let effects = std::mem::take(&mut ctx.effects);
        self.apply_effects(id, effects);
        let state = match st {
            abi::STATUS_OK => message::decode::<MigratedState>(&out)
                .map_err(|e| format!("export_state gave an undecodable state: {e}")),
            abi::STATUS_UNSUPPORTED => {
                mv.tell(Outcome::Stayed);
                return Step::Continue(Some(a));
            }
            abi::STATUS_PANIC => Err(format!("export_state {}", err_text(&err))),
            _ => Err(format!("export_state failed: {}", err_text(&err))),
        };
        let state = match state {
            Ok(state) => state,
            Err(why) => {
                mv.tell(Outcome::Failed(why));
                return Step::Continue(Some(a));
            }
        };
        let from = VersionIdentity {
            package: mv.package.clone(),
            version: plugin.info.version.clone(),
            hash: run.hash.clone(),
        };
        let migration = message::encode(&Migration { from, from_type: mv.from_type.clone(), state });
        run.pool.pause(id, a, rest.collect());
        let to = mv.to.clone();
        if let Err(job) = to.import(id, Box::new(Import { migration, paused_at, mv })) {
            run.pool.resume(id);
            job.mv.tell(Outcome::Failed("the new version is closing".into()));
        }
        Step::Paused
    }

    /// New side: builds actor `id` from the old version's state, then commits the move (or
    /// holds it), or resumes the actor on the old version and reports why.
    pub(super) fn import(&mut self, id: u64, job: Import, rest: &mut dyn Iterator<Item = Work>) -> Step {
        let Import { migration, paused_at, mv } = job;
        let run = self.runner().clone();
        let built = self.call_import(id, &mv.to_type, &migration);
        let a = match built {
            Ok(a) => a,
            Err(why) => {
                mv.from.resume(id);
                mv.tell(Outcome::Failed(why));
                return Step::Continue(None);
            }
        };
        if mv.hold {
            run.pool.pause(id, a, rest.collect());
            mv.tell(Outcome::Held { paused_at });
            return Step::Paused;
        }
        let here = HostHandle::new(run.pool.clone());
        let waiting = mv.from.hand_over(id, run.pool.clone());
        run.pool.take_over(id, waiting, None);
        run.node.moved(id, run.gen, &run.hash, &mv.to_type, here);
        mv.tell(Outcome::Moved { pause: paused_at.elapsed() });
        Step::Continue(Some(a))
    }

    /// Calls the plugin's `import_actor` for `type_name`.
    fn call_import(&mut self, id: u64, type_name: &str, migration: &[u8]) -> Result<ActorState, String> {
        let run = self.runner().clone();
        let Some(&(pi, kind)) = run.types.get(type_name) else {
            return Err(format!("version {} exports no type {type_name}", short_hash(&run.hash)));
        };
        let plugin = &run.plugins[pi as usize];
        if !plugin.migrates() {
            return Err(format!(
                "{} was built before live upgrade: it cannot import state",
                plugin.info.name
            ));
        }
        let mut ctx = CallCtx::new(run.node.as_ref(), id, &run.hash, Vec::new());
        let mut err = Vec::new();
        let mut out: *mut c_void = std::ptr::null_mut();
        run.pool.call_started(self.slot(), id);
        // SAFETY: one of the version's own threads; every pointer outlives the call; the root
        // has the entry point (`migrates`).
        let st = unsafe {
            (plugin.root().import_actor)(
                &mut ctx as *mut CallCtx as *mut c_void,
                RawStr::from_bytes(type_name.as_bytes()),
                RawStr::from_bytes(migration),
                &mut out,
                OutSink::for_vec(&mut err),
            )
        };
        run.pool.call_ended(self.slot());
        let effects = std::mem::take(&mut ctx.effects);
        if st == abi::STATUS_OK && !out.is_null() {
            self.apply_effects(id, effects);
            return Ok(ActorState { plugin: pi, kind, state: out });
        }
        // What a failed import asked for is dropped with it, as for a failed constructor.
        drop(effects);
        Err(match st {
            abi::STATUS_PANIC => format!("import_state of {type_name} {}", err_text(&err)),
            _ => format!("import_state of {type_name} failed: {}", err_text(&err)),
        })
    }

    /// Drops a state that moved away (`counted`: it counted among this version's actors) or
    /// an import that was rolled back.
    pub(super) fn drop_moved(&mut self, id: u64, actor: Option<ActorState>, counted: bool) {
        if let Some(a) = actor {
            self.drop_actor(id, a);
        }
        if counted {
            let run = self.runner().clone();
            run.node.moved_out(id, run.gen);
        }
    }
}
