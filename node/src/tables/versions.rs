//! The version registry and its state machine:
//!
//! ```text
//! validating ──activate──▶ active ──drain──▶ draining ──(last actor gone: retire)──▶ gone
//!     │                                         │
//!     └──reject / cancelled──▶ (removed)        └──on_unload hangs──▶ quarantined
//! ```
//!
//! Each load of a hash gets a new *generation*, so a reload can never revive a closing
//! instance of the same file. At most one generation per hash is validating or active (the
//! *current* one). Callers waiting for a generation to be ready (a second load of the same
//! bytes) or gone (`unload --grace`, stop) are answered here, on every transition. A draining
//! generation with no actors left is *retired*: its host handle is handed out exactly once, and
//! the caller sends it `Retire`. The lock is private and never held while anything else is
//! called.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::host::effect::{HostHandle, VersionStats};
use crate::model::error::LoadError;
use crate::model::placement::LocalVersion;
use crate::model::version_state::VersionState;
use crate::wire::peer::SourceSummary;
use crate::wire::status::{GoneStatus, VersionStatus};

/// How many unloaded versions `status` lists.
const GONE_HISTORY: usize = 64;

/// The zip of a version as loaded, for peers that fetch it.
enum ZipCopy {
    /// Not active (yet, or any more).
    None,
    /// Active, and not (yet) in the store: served from memory.
    Memory(Arc<Vec<u8>>),
    /// In the store, at this path.
    Stored(PathBuf),
}

/// Where a peer is served a version's zip from.
pub(crate) enum ZipSource {
    Memory(Arc<Vec<u8>>),
    Stored(PathBuf),
}

struct VersionRec {
    hash: String,
    state: VersionState,
    package: String,
    info: String,
    name: String,
    renames: BTreeMap<String, String>,
    /// Set once the host runs; taken when the version retires.
    host: Option<HostHandle>,
    /// Its actors: the actor table's records of this generation, plus creates admitted and not
    /// recorded there yet. It changes only with the actor table: an admission
    /// ([`Versions::add_actor`]) before the record enters, a record leaving
    /// ([`Versions::actor_left`]), and a move the table made ([`Versions::actor_moved`], from
    /// what `Actors::rehost` returns), so the two cannot drift apart.
    live: usize,
    types: BTreeMap<String, Vec<String>>,
    /// The libraries: their names in the zip, and once active where their copies are.
    files: Vec<String>,
    zip: ZipCopy,
    /// Held while the zip is written into the store or deleted from it.
    store_lock: Arc<Mutex<()>>,
    /// Callers waiting for this generation to be gone.
    gone_waiters: Vec<oneshot::Sender<()>>,
    /// Callers waiting for validation to finish.
    ready_waiters: Vec<oneshot::Sender<Result<(), String>>>,
    /// Set when unloaded during validation: the load is abandoned.
    cancelled: bool,
    stats: Arc<VersionStats>,
    draining_since: Option<Instant>,
}

impl VersionRec {
    fn answer_gone(&mut self) {
        for w in self.gone_waiters.drain(..) {
            let _ = w.send(());
        }
    }
    fn answer_ready(&mut self, result: Result<(), String>) {
        for w in self.ready_waiters.drain(..) {
            let _ = w.send(result.clone());
        }
    }
    fn start_draining(&mut self) {
        self.state = VersionState::Draining;
        self.draining_since.get_or_insert_with(Instant::now);
    }
    /// A draining generation with no actors left gives up its host, once.
    fn retire_if_idle(&mut self) -> Option<HostHandle> {
        (self.state == VersionState::Draining && self.live == 0).then(|| self.host.take()).flatten()
    }
}

#[derive(Default)]
struct Inner {
    by_gen: HashMap<u64, VersionRec>,
    /// hash → its validating or active generation.
    current: HashMap<String, u64>,
    gone: VecDeque<GoneStatus>,
    /// The node is stopping: nothing new is admitted.
    closed: bool,
}

impl Inner {
    fn current_rec(&self, hash: &str) -> Option<&VersionRec> {
        self.current.get(hash).and_then(|g| self.by_gen.get(g))
    }
    fn draining_gen(&self, hash: &str) -> Option<u64> {
        self.by_gen.iter().find(|(_, v)| v.hash == hash && v.state == VersionState::Draining).map(|(g, _)| *g)
    }
    /// Every generation left is quarantined (or none is left).
    /// A draining generation of `hash` that still has its host and actors: a reload of the
    /// same bytes brings it back instead of starting another.
    fn revivable(&self, hash: &str) -> Option<u64> {
        let found = self.by_gen.iter().filter(|(_, v)| {
            v.hash == hash && v.state == VersionState::Draining && v.live > 0 && v.host.is_some()
        });
        found.map(|(g, _)| *g).max()
    }
    fn all_done(&self) -> bool {
        self.by_gen.values().all(|v| v.state == VersionState::Quarantined)
    }
}

/// The version registry (see the module's documentation).
pub(crate) struct Versions {
    inner: Mutex<Inner>,
    next_gen: AtomicU64,
}

impl Default for Versions {
    fn default() -> Self {
        Versions { inner: Mutex::default(), next_gen: AtomicU64::new(1) }
    }
}

impl Versions {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- validating ---------------------------------------------------------------------------

    /// Admits a load of `v`: already active, being validated (wait), or a new validating
    /// generation if `decide` (the authority, asked only then) allows it.
    pub(crate) fn admit<D>(
        &self,
        v: NewVersion,
        decide: impl FnOnce() -> Result<D, LoadError>,
    ) -> Result<Admission<D>, LoadError> {
        let mut st = self.lock();
        if st.closed {
            return Err(LoadError::Stopping);
        }
        if let Some(g) = st.current.get(&v.hash).copied() {
            let Some(rec) = st.by_gen.get_mut(&g) else {
                return Err(LoadError::Internal("version table out of step".into()));
            };
            if rec.state == VersionState::Active {
                return Ok(Admission::AlreadyActive);
            }
            let (tx, rx) = oneshot::channel();
            rec.ready_waiters.push(tx);
            return Ok(Admission::Wait(rx));
        }
        if let Some(gen) = st.revivable(&v.hash) {
            // The same bytes are draining with actors still on them: that generation serves
            // again, rather than a second one beside it (its code is the same; nothing moves).
            if let Some(rec) = st.by_gen.get_mut(&gen) {
                rec.state = VersionState::Active;
                rec.draining_since = None;
                // An `unload --grace` waiting for it to go stops waiting: it was reloaded.
                rec.gone_waiters.clear();
            }
            st.current.insert(v.hash, gen);
            return Ok(Admission::Revived { gen });
        }
        let decision = decide()?;
        let gen = self.next_gen.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::<VersionStats>::default();
        st.current.insert(v.hash.clone(), gen);
        let rec = VersionRec {
            hash: v.hash,
            state: VersionState::Validating,
            package: v.package,
            info: v.info,
            name: v.name,
            renames: v.renames,
            host: None,
            live: 0,
            types: v.types,
            files: v.files,
            zip: ZipCopy::None,
            store_lock: Arc::default(),
            gone_waiters: Vec::new(),
            ready_waiters: Vec::new(),
            cancelled: false,
            stats: stats.clone(),
            draining_since: None,
        };
        st.by_gen.insert(gen, rec);
        Ok(Admission::New { gen, stats, decision })
    }

    /// Whether generation `gen` was unloaded (or vanished) while it was being validated.
    pub(crate) fn abandoned(&self, gen: u64) -> bool {
        self.lock().by_gen.get(&gen).is_none_or(|v| v.cancelled)
    }

    /// Validation and start succeeded: the generation turns active with its running `host`, if
    /// it still may. On `Err` the caller retires the host.
    pub(crate) fn activate(
        &self,
        gen: u64,
        hash: &str,
        host: HostHandle,
        shown: Vec<String>,
        zip: Arc<Vec<u8>>,
        exported: &BTreeMap<String, Vec<String>>,
    ) -> Result<String, (LoadError, HostHandle)> {
        let mut st = self.lock();
        let Some(v) = st.by_gen.get_mut(&gen) else {
            return Err((LoadError::Unloaded { hash: hash.to_string(), stage: "loaded" }, host));
        };
        if *exported != v.types {
            let e = LoadError::ManifestMismatch {
                declared: format!("{:?}", v.types),
                exported: format!("{exported:?}"),
            };
            return Err((e, host));
        }
        if v.cancelled {
            return Err((LoadError::Unloaded { hash: hash.to_string(), stage: "loaded" }, host));
        }
        v.host = Some(host);
        v.state = VersionState::Active;
        v.files = shown;
        // Peers are served the zip from memory until it is in the store.
        v.zip = ZipCopy::Memory(zip);
        v.answer_ready(Ok(()));
        Ok(v.package.clone())
    }

    /// The load of generation `gen` failed: it is forgotten and its waiters told why.
    pub(crate) fn reject(&self, gen: u64, why: &str) {
        let mut st = self.lock();
        if let Some(mut v) = st.by_gen.remove(&gen) {
            v.answer_gone();
            v.answer_ready(Err(why.to_string()));
            if st.current.get(&v.hash) == Some(&gen) {
                st.current.remove(&v.hash);
            }
        }
    }

    // ---- active -------------------------------------------------------------------------------

    /// The active generation of `hash` and its host.
    pub(crate) fn active(&self, hash: &str) -> Option<(u64, HostHandle)> {
        let st = self.lock();
        let g = *st.current.get(hash)?;
        let v = st.by_gen.get(&g).filter(|v| v.state == VersionState::Active)?;
        Some((g, v.host.clone()?))
    }

    /// Whether `hash` is active here.
    pub(crate) fn is_active(&self, hash: &str) -> bool {
        self.lock().current_rec(hash).is_some_and(|v| v.state == VersionState::Active)
    }

    /// What placement needs to know of `hash` here: its state, whether a generation drains, and
    /// its declared types (none if only a draining generation has it).
    pub(crate) fn local_view(
        &self,
        hash: &str,
    ) -> (LocalVersion, bool, Option<BTreeMap<String, Vec<String>>>) {
        let st = self.lock();
        let draining = st.draining_gen(hash).is_some();
        match st.current.get(hash).and_then(|g| st.by_gen.get(g).map(|v| (*g, v))) {
            Some((g, v)) if v.state == VersionState::Active => {
                (LocalVersion::Active(g), draining, Some(v.types.clone()))
            }
            Some((_, v)) => (LocalVersion::Validating, draining, Some(v.types.clone())),
            None => (LocalVersion::Absent, draining, None),
        }
    }

    /// Live upgrade, old side: every generation of `hash` that runs here (active or
    /// draining), with its host and its package's name.
    pub(crate) fn running(&self, hash: &str) -> Vec<(u64, HostHandle, String)> {
        let st = self.lock();
        let mut found: Vec<(u64, HostHandle, String)> = st
            .by_gen
            .iter()
            .filter(|(_, v)| {
                v.hash == hash && matches!(v.state, VersionState::Active | VersionState::Draining)
            })
            .filter_map(|(g, v)| Some((*g, v.host.clone()?, v.name.clone())))
            .collect();
        found.sort_unstable_by_key(|(g, _, _)| *g);
        found
    }

    /// Live upgrade, new side: the active generation of `hash` here.
    pub(crate) fn upgrade_target(&self, hash: &str) -> Option<UpgradeTarget> {
        let st = self.lock();
        let gen = *st.current.get(hash)?;
        let v = st.by_gen.get(&gen).filter(|v| v.state == VersionState::Active)?;
        Some(UpgradeTarget {
            gen,
            host: v.host.clone()?,
            types: v.types.keys().cloned().collect(),
            renames: v.renames.clone(),
        })
    }

    /// An actor of `gen` is admitted (before its record enters the actor table): it counts,
    /// so the generation cannot retire under it; its host, unless the generation has retired.
    pub(crate) fn add_actor(&self, gen: u64) -> Option<HostHandle> {
        let mut st = self.lock();
        let v = st.by_gen.get_mut(&gen)?;
        let host = v.host.clone()?;
        v.live += 1;
        Some(host)
    }

    /// An actor of `gen` left the actor table (or an admitted one never entered it); the host
    /// to retire if that was the last one of a draining generation.
    pub(crate) fn actor_left(&self, gen: u64) -> Option<HostHandle> {
        let mut st = self.lock();
        let v = st.by_gen.get_mut(&gen)?;
        v.live = v.live.saturating_sub(1);
        v.retire_if_idle()
    }

    /// Live upgrade: the actor table moved an actor from generation `from` to `to` (called only
    /// when it did, once per move: see `Actors::rehost`); the host of `from` to retire if that
    /// was its last actor and it drains.
    pub(crate) fn actor_moved(&self, from: u64, to: u64) -> Option<HostHandle> {
        if from == to {
            return None;
        }
        let mut st = self.lock();
        if let Some(v) = st.by_gen.get_mut(&to) {
            v.live += 1;
        }
        let v = st.by_gen.get_mut(&from)?;
        v.live = v.live.saturating_sub(1);
        v.retire_if_idle()
    }

    // ---- draining and gone --------------------------------------------------------------------

    /// Unloads `hash` here: its current generation drains (a validating one is abandoned); an
    /// already draining one is found again, so a grace period can apply to it.
    pub(crate) fn drain(&self, hash: &str) -> Drain {
        let mut st = self.lock();
        let gen = match st.current.remove(hash) {
            Some(g) => g,
            None => match st.draining_gen(hash) {
                Some(g) => g,
                None if st.gone.iter().any(|g| g.hash == hash) => return Drain::AlreadyGone,
                None => return Drain::Unknown,
            },
        };
        let Some(v) = st.by_gen.get_mut(&gen) else {
            return Drain::Unknown;
        };
        if v.state == VersionState::Validating {
            // Thespian crashed here; we abandon the load, and its caller is told.
            v.cancelled = true;
            return Drain::Cancelled;
        }
        v.start_draining();
        let (tx, gone) = oneshot::channel();
        v.gone_waiters.push(tx);
        Drain::Draining { gen, live: v.live, gone, retire: v.retire_if_idle() }
    }

    /// The node stops: nothing new is admitted, every generation drains (validating ones are
    /// abandoned); the hosts to retire now.
    pub(crate) fn close(&self) -> Vec<HostHandle> {
        let mut st = self.lock();
        st.closed = true;
        st.current.clear();
        let mut retire = Vec::new();
        for v in st.by_gen.values_mut().filter(|v| v.state != VersionState::Quarantined) {
            if v.state == VersionState::Validating {
                v.cancelled = true;
            }
            v.start_draining();
            retire.extend(v.retire_if_idle());
        }
        retire
    }

    /// Whether the node is stopping.
    pub(crate) fn closed(&self) -> bool {
        self.lock().closed
    }

    /// Whether nothing but quarantined generations is left.
    pub(crate) fn all_done(&self) -> bool {
        self.lock().all_done()
    }

    /// How many generations are left.
    pub(crate) fn count(&self) -> usize {
        self.lock().by_gen.len()
    }

    /// Generation `gen` will never close. Returns whether a stop was waiting only for it.
    pub(crate) fn quarantine(&self, gen: u64) -> bool {
        let mut st = self.lock();
        if let Some(v) = st.by_gen.get_mut(&gen) {
            v.state = VersionState::Quarantined;
            // Whoever waits for it to be gone (unload --grace, deploy) gets an answer now.
            v.answer_gone();
        }
        st.closed && st.all_done()
    }

    /// Generation `gen` is gone: closed and its files deleted. Returns its record in the
    /// history (if it was really running), and whether a stop was waiting only for it.
    pub(crate) fn gone(&self, gen: u64, close_time: Duration) -> (Option<GoneStatus>, bool) {
        let mut st = self.lock();
        let mut record = None;
        if let Some(mut v) = st.by_gen.remove(&gen) {
            v.answer_gone();
            if st.current.get(&v.hash) == Some(&gen) {
                st.current.remove(&v.hash);
            }
            v.answer_ready(Err("the version is gone".into()));
            // Only versions that were really running count as unloaded.
            if matches!(v.state, VersionState::Draining | VersionState::Quarantined) {
                let g = GoneStatus {
                    hash: v.hash.clone(),
                    generation: gen,
                    unload_ms: close_time.as_secs_f64() * 1000.0,
                    drain_ms: v.draining_since.map(|t| t.elapsed().as_secs_f64() * 1000.0).unwrap_or(0.0),
                };
                st.gone.push_back(g.clone());
                while st.gone.len() > GONE_HISTORY {
                    st.gone.pop_front();
                }
                record = Some(g);
            }
        }
        (record, st.closed && st.all_done())
    }

    // ---- the zip peers fetch -----------------------------------------------------------------

    /// Writes an active generation's zip with `write` (into the store), then serves it from
    /// there. Runs under the generation's store lock, as [`Self::forget_zip`] does, so that a
    /// version going away meanwhile never leaves its zip behind.
    pub(crate) fn store_zip(
        &self,
        gen: u64,
        path: PathBuf,
        write: impl FnOnce(&PathBuf) -> std::io::Result<()>,
    ) {
        let Some(store_lock) = self.lock().by_gen.get(&gen).map(|v| v.store_lock.clone()) else {
            return;
        };
        let _writing = store_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Forgotten meanwhile (the version is going): nothing to write.
        if !self.lock().by_gen.get(&gen).is_some_and(|v| matches!(v.zip, ZipCopy::Memory(_))) {
            return;
        }
        let written = write(&path);
        let mut st = self.lock();
        match (st.by_gen.get_mut(&gen), written) {
            (Some(v), Ok(())) => v.zip = ZipCopy::Stored(path),
            (Some(v), Err(e)) => {
                tracing::warn!(hash = %v.hash, "cannot write the zip into the store ({e}); it is kept in memory for peers");
            }
            (None, _) => {}
        }
    }

    /// A generation is going: peers are no longer served its zip, and `delete` removes its
    /// store copy (after a write in progress is done).
    pub(crate) fn forget_zip(&self, gen: u64, delete: impl FnOnce()) {
        let Some(store_lock) = self.lock().by_gen.get(&gen).map(|v| v.store_lock.clone()) else {
            return;
        };
        let _held = store_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = self.lock().by_gen.get_mut(&gen) {
            v.zip = ZipCopy::None;
        }
        delete();
    }

    /// Where the active zip of `hash` can be read from.
    pub(crate) fn zip_for_peer(&self, hash: &str) -> Option<ZipSource> {
        let st = self.lock();
        match st.current_rec(hash) {
            Some(v) if v.state == VersionState::Active => match &v.zip {
                ZipCopy::Memory(zip) => Some(ZipSource::Memory(zip.clone())),
                ZipCopy::Stored(path) => Some(ZipSource::Stored(path.clone())),
                ZipCopy::None => None,
            },
            _ => None,
        }
    }

    // ---- reports ------------------------------------------------------------------------------

    /// Every hash with a generation here, and every hash unloaded recently.
    pub(crate) fn hashes(&self) -> (Vec<String>, Vec<String>) {
        let st = self.lock();
        (
            st.by_gen.values().map(|v| v.hash.clone()).collect(),
            st.gone.iter().map(|g| g.hash.clone()).collect(),
        )
    }

    /// The active versions, as the convention's directory lists them.
    pub(crate) fn active_sources(&self) -> Vec<SourceSummary> {
        let st = self.lock();
        let mut sources: Vec<SourceSummary> = st
            .by_gen
            .values()
            .filter(|v| v.state == VersionState::Active)
            .map(|v| SourceSummary { hash: v.hash.clone(), types: v.types.clone() })
            .collect();
        sources.sort_by(|a, b| a.hash.cmp(&b.hash));
        sources
    }

    /// For `status`: every generation, and the recent unloads.
    /// Handlers running longer than `threshold` are listed by actor id (`actor.node` empty): the
    /// caller names them.
    pub(crate) fn status(&self, threshold: Duration) -> (Vec<VersionStatus>, Vec<GoneStatus>) {
        let st = self.lock();
        let mut versions: Vec<VersionStatus> = st
            .by_gen
            .iter()
            .map(|(gen, v)| VersionStatus {
                hash: v.hash.clone(),
                generation: *gen,
                state: v.state.label().into(),
                package: v.package.clone(),
                info: v.info.clone(),
                live_actors: v.live,
                actor_types: v.types.clone(),
                files: v.files.clone(),
                threads: v.host.as_ref().map(host_threads).unwrap_or_default(),
                queue_depth: v.host.as_ref().map(|h| h.load().3).unwrap_or(0),
                long_handlers: v.host.as_ref().map(|h| long_handlers(h, threshold)).unwrap_or_default(),
            })
            .collect();
        versions.sort_by_key(|v| v.generation);
        (versions, st.gone.iter().cloned().collect())
    }

    /// The running versions' hosts, with their hashes (for the long-handler watch).
    pub(crate) fn hosts(&self) -> Vec<(String, HostHandle)> {
        self.lock().by_gen.values().filter_map(|v| Some((v.hash.clone(), v.host.clone()?))).collect()
    }

    /// For metrics: each generation's counters, threads, and handlers running longer than
    /// `threshold`.
    pub(crate) fn counters(&self, threshold: Duration) -> Vec<VersionCounters> {
        self.lock()
            .by_gen
            .values()
            .map(|v| {
                let (busy, idle, _, _) = v.host.as_ref().map(|h| h.load()).unwrap_or_default();
                VersionCounters {
                    hash: v.hash.clone(),
                    state: v.state,
                    queued: v.stats.enqueued.load(Ordering::Relaxed),
                    handled: v.stats.handled.load(Ordering::Relaxed),
                    busy,
                    idle,
                    long: v.host.as_ref().map(|h| h.long_calls(threshold).len()).unwrap_or(0),
                }
            })
            .collect()
    }
}

mod types;
use types::{host_threads, long_handlers};
pub(crate) use types::{Admission, Drain, NewVersion, UpgradeTarget, VersionCounters};

#[cfg(test)]
mod tests;
