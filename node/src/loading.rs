//! Loading and unloading versions, serving and fetching them between nodes, capability
//! changes, status and stop: the parts of [`Shared`] that follow a version through its life.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use troupe_actor_abi::abi;
use troupe_actor_abi::message::{Address, CreateError, ExitReason, Payload, SystemMessage};

use crate::archive::{self, ArchiveLimits};
use crate::image;
use crate::node::{
    refused, retire_if_idle, ActorKind, Authority, PendingValidation, Shared, VersionRec, VersionState,
    ZipCopy,
};
use crate::protocol::{ErrorReply, Request, Response};
use crate::status::{ActorStatus, GoneStatus, StatusReport, VersionStatus};
use crate::version::{self, Cmd};

/// How long a source authority actor may take to answer a `ValidateSource`.
const AUTHORITY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many unloaded versions `status` lists.
const GONE_HISTORY: usize = 64;
/// How long fetching a version from a peer may take (a zip is a few MB on a LAN).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// How the authority in force decides a load.
enum Decision {
    AcceptAll,
    Ed25519(crate::signing::TrustedKeys),
    Actor(Address),
}

/// glibc's PTHREAD_KEYS_MAX: a process has this many pthread keys, ever (§2.5 of the unloading
/// reference: std leaks one per loaded instance of a plugin that calls `thread::current`).
pub const PTHREAD_KEYS_MAX: u32 = 1024;
/// Loads are refused from this many keys in use: what is left keeps the node itself (tokio,
/// std) working until it is restarted.
pub const PTHREAD_KEYS_REFUSE_AT: u32 = 896;

/// How many pthread keys the process uses, counted exactly: create keys until glibc refuses,
/// then delete them all. (Reading the index of one new key undercounts: glibc hands out the
/// lowest free slot, so one freed low key hides every key above it.) About a thousand cheap
/// libc calls, only when status asks (a load only counts the free keys up to its threshold).
pub fn pthread_keys_in_use() -> u32 {
    PTHREAD_KEYS_MAX.saturating_sub(pthread_keys_free(PTHREAD_KEYS_MAX))
}

/// How many more pthread keys the process could create, counting no further than `limit`.
fn pthread_keys_free(limit: u32) -> u32 {
    let limit = limit.min(PTHREAD_KEYS_MAX) as usize;
    let mut keys = Vec::with_capacity(limit);
    while keys.len() < limit {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: pthread_key_create writes a new key into `key`; no destructor is attached and
        // no value is ever set; every key created here is deleted below.
        if unsafe { libc::pthread_key_create(&mut key, None) } != 0 {
            break;
        }
        keys.push(key);
    }
    let free = keys.len() as u32;
    for k in keys {
        // SAFETY: `k` was created above and is deleted once.
        unsafe { libc::pthread_key_delete(k) };
    }
    free
}

impl Shared {
    /// Where the store keeps the zip of one generation of a version (a flat layout: deleting it
    /// leaves nothing behind).
    pub(crate) fn zip_file(&self, hash: &str, gen: u64) -> PathBuf {
        self.store.join(format!("{hash}-{gen}.zip"))
    }

    /// Writes an active version's zip into the store, then serves it from there. Runs under
    /// the version's store lock, as [`Self::forget_zip`] does, so that a version going away
    /// meanwhile never leaves its zip behind.
    fn store_zip(&self, gen: u64, zip: &[u8]) {
        let Some((path, store_lock)) = ({
            let st = self.lock();
            st.versions.get(&gen).map(|v| (self.zip_file(&v.hash, gen), v.store_lock.clone()))
        }) else {
            return;
        };
        let _writing = store_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Forgotten meanwhile (the version is going): nothing to write.
        if !self.lock().versions.get(&gen).is_some_and(|v| matches!(v.zip, ZipCopy::Memory(_))) {
            return;
        }
        let written = image::write_file(&path, zip);
        let mut st = self.lock();
        match (st.versions.get_mut(&gen), written) {
            (Some(v), Ok(())) => v.zip = ZipCopy::Stored(path),
            (Some(v), Err(e)) => {
                tracing::warn!(hash = %v.hash, "cannot write the zip into the store ({e}); it is kept in memory for peers");
            }
            (None, _) => {}
        }
    }

    /// A version is going: peers are no longer served its zip, and its store copy is deleted
    /// (after a write in progress is done).
    pub(crate) fn forget_zip(&self, hash: &str, gen: u64) {
        let Some(store_lock) = self.lock().versions.get(&gen).map(|v| v.store_lock.clone()) else {
            return;
        };
        let _held = store_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = self.lock().versions.get_mut(&gen) {
            v.zip = ZipCopy::None;
        }
        image::remove_if_there(&self.zip_file(hash, gen));
    }

    /// Validates and loads a zip; answers once the version is active or rejected. A member
    /// then tells the leader at once, so the whole convention can use the version.
    pub async fn load(self: &Arc<Self>, zip: Vec<u8>, info: String) -> Result<Response, ErrorReply> {
        let r = self.load_source(zip, info, None).await;
        if matches!(r, Ok(Response::Loaded { already_active: false, .. })) && !self.is_leader() {
            let _ = self.refresh_membership().await;
        }
        r
    }

    /// Loads a zip; with `expected`, the zip's sha256 must be that hash (a fetched version).
    pub(crate) async fn load_source(
        self: &Arc<Self>,
        zip: Vec<u8>,
        info: String,
        expected: Option<&str>,
    ) -> Result<Response, ErrorReply> {
        let t0 = std::time::Instant::now();
        let zip = Arc::new(zip);
        let z2 = zip.clone();
        let source = tokio::task::spawn_blocking(move || archive::open(&z2, &ArchiveLimits::default()))
            .await
            .map_err(|e| refused("internal", format!("archive reader failed: {e}")))?
            .map_err(|e| refused(e.kind(), format!("rejected: {e}")))?;
        if let Some(h) = expected {
            if source.hash != h {
                return Err(refused(
                    "hash_mismatch",
                    format!(
                        "rejected: the peer sent bytes whose sha256 is {}, not the {h} that was asked for",
                        source.hash
                    ),
                ));
            }
        }
        let m = &source.manifest;
        if m.package.abi_version != abi::ABI_VERSION {
            return Err(refused(
                "abi_version",
                format!(
                    "rejected: the source was packed for plugin ABI version {}, this node speaks {} — rebuild it against this troupe-actor-abi",
                    m.package.abi_version,
                    abi::ABI_VERSION
                ),
            ));
        }
        if m.package.msg_schema != abi::MSG_SCHEMA {
            return Err(refused(
                "msg_schema",
                format!(
                    "rejected: message schema {} (this node speaks {})",
                    m.package.msg_schema,
                    abi::MSG_SCHEMA
                ),
            ));
        }
        if m.package.target != crate::TARGET {
            return Err(refused(
                "target",
                format!("rejected: built for {}, this node runs on {}", m.package.target, crate::TARGET),
            ));
        }
        let hash = source.hash.clone();
        // Refused from PTHREAD_KEYS_REFUSE_AT keys in use, i.e. when no more than MAX - REFUSE_AT
        // are free: counting one more than that is enough to decide.
        let free = pthread_keys_free(PTHREAD_KEYS_MAX - PTHREAD_KEYS_REFUSE_AT + 1);
        let keys = PTHREAD_KEYS_MAX - free;
        if keys >= PTHREAD_KEYS_REFUSE_AT {
            return Err(refused(
                "pthread_keys",
                format!(
                    "rejected: this node has used {keys} of its {PTHREAD_KEYS_MAX} pthread keys (plugins that call std::thread::current or spawn threads leak one per load) — restart the node to load more"
                ),
            ));
        }
        let gen = self.next_gen.fetch_add(1, Ordering::Relaxed);
        let types: BTreeMap<String, Vec<String>> = m
            .cdylibs
            .iter()
            .flat_map(|c| c.actors.iter().map(|a| (a.type_name.clone(), a.requires.clone())))
            .collect();
        let package = format!("{} {}", m.package.name, m.package.version);
        let mut wait_for = None;
        let decision = 'locked: {
            let mut st = self.lock();
            if st.stopping {
                return Err(ErrorReply {
                    kind: crate::protocol::ErrorKind::Unavailable,
                    code: "stopping".into(),
                    message: "the node is stopping".into(),
                });
            }
            if let Some(g) = st.current.get(&hash).copied() {
                let Some(v) = st.versions.get_mut(&g) else {
                    return Err(refused("internal", "version table out of step"));
                };
                if v.state == VersionState::Active {
                    return Ok(Response::Loaded { hash, already_active: true });
                }
                // The same bytes are being validated (another load, or a fetch): wait for that.
                let (tx, rx) = oneshot::channel();
                v.ready_waiters.push(tx);
                wait_for = Some(rx);
                break 'locked Decision::AcceptAll;
            }
            let decision = match &st.authority {
                Authority::None => {
                    return Err(refused(
                        "no_authority",
                        "rejected: no source authority is registered on this node, so nothing can be loaded — start the node with the default accept-all authority (troupe start) or have an actor register itself",
                    ))
                }
                Authority::AcceptAll => Decision::AcceptAll,
                Authority::Ed25519(keys) => Decision::Ed25519(keys.clone()),
                Authority::Actor(a) => Decision::Actor(a.clone()),
            };
            st.current.insert(hash.clone(), gen);
            st.versions.insert(
                gen,
                VersionRec {
                    hash: hash.clone(),
                    state: VersionState::Validating,
                    package: package.clone(),
                    info: info.clone(),
                    tx: None,
                    live: 0,
                    types: types.clone(),
                    files: m.cdylibs.iter().map(|c| c.file.clone()).collect(),
                    zip: ZipCopy::None,
                    store_lock: Arc::default(),
                    gone_waiters: Vec::new(),
                    ready_waiters: Vec::new(),
                    cancelled: false,
                    stats: Arc::default(),
                    draining_since: None,
                },
            );
            decision
        };
        if let Some(rx) = wait_for {
            return match rx.await {
                Ok(Ok(())) => Ok(Response::Loaded { hash, already_active: true }),
                Ok(Err(e)) => Err(refused("rejected", e)),
                Err(_) => Err(refused("rejected", format!("the concurrent load of {hash} was abandoned"))),
            };
        }
        tracing::debug!(%hash, "opened and checked in {:?}", t0.elapsed());
        let result = self.load_validated(source, zip, gen, decision, info).await;
        let counter = if result.is_ok() { &self.counters.loads_ok } else { &self.counters.loads_rejected };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result {
            let mut st = self.lock();
            if let Some(v) = st.versions.remove(&gen) {
                for w in v.gone_waiters {
                    let _ = w.send(());
                }
                for w in v.ready_waiters {
                    let _ = w.send(Err(e.message.clone()));
                }
            }
            if st.current.get(&hash) == Some(&gen) {
                st.current.remove(&hash);
            }
            tracing::info!(%hash, "load rejected: {}", e.message);
        }
        result
    }

    async fn load_validated(
        self: &Arc<Self>,
        source: archive::Source,
        zip: Arc<Vec<u8>>,
        gen: u64,
        decision: Decision,
        info: String,
    ) -> Result<Response, ErrorReply> {
        let hash = source.hash.clone();
        if let Decision::Ed25519(keys) = &decision {
            match keys.verify(&source) {
                Ok(signer) => tracing::info!(%hash, %signer, "signature verified"),
                Err(e) => return Err(refused(e.kind(), format!("rejected by the ed25519 authority: {e}"))),
            }
        }
        if let Decision::Actor(auth) = decision {
            let (tx, rx) = oneshot::channel();
            self.lock().validations.insert(hash.clone(), PendingValidation { reply: tx });
            let ask = SystemMessage::ValidateSource {
                hash: hash.clone(),
                info,
                package: source.manifest.package.name.clone(),
                version: source.manifest.package.version.clone(),
                actor_types: source
                    .manifest
                    .cdylibs
                    .iter()
                    .flat_map(|c| c.actors.iter().map(|a| a.type_name.clone()))
                    .collect(),
            };
            self.send(Some(self.address(troupe_actor_abi::message::ADMIN_ID)), &auth, Payload::System(ask));
            let answer = tokio::time::timeout(AUTHORITY_TIMEOUT, rx).await;
            self.lock().validations.remove(&hash);
            match answer {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(reason))) => {
                    return Err(refused(
                        "authority_rejected",
                        format!("rejected by the source authority: {reason}"),
                    ))
                }
                Ok(Err(_)) | Err(_) => {
                    return Err(refused(
                        "authority_timeout",
                        format!(
                            "rejected: the source authority {auth} did not answer within {}s",
                            AUTHORITY_TIMEOUT.as_secs()
                        ),
                    ))
                }
            }
        }
        if self.lock().versions.get(&gen).is_none_or(|v| v.cancelled) {
            return Err(refused("unloaded", format!("{hash} was unloaded while it was being validated")));
        }
        // The version's own thread copies every library to a place unique to (hash,
        // generation) and opens it there; this task waits without blocking a worker.
        let t1 = std::time::Instant::now();
        let stats = self.lock().versions.get(&gen).map(|v| v.stats.clone()).unwrap_or_default();
        let libs =
            version::Libraries { files: source.files, copies: self.lib_copies, store: self.store.clone() };
        let (tx, ready) = version::start(self.clone(), hash.clone(), gen, libs, stats)
            .map_err(|e| refused("internal", format!("rejected: {e}")))?;
        let ready =
            ready.await.map_err(|_| refused("internal", "the version's thread exited during start"))?;
        let version::Ready { infos, shown, copy } = ready.map_err(|e| match e {
            version::StartError::Copy(e) => refused("store", format!("rejected: {e}")),
            version::StartError::Plugin(e) => refused("plugin", format!("rejected: {e}")),
        })?;
        // The manifest was written by `troupe pack` from the libraries' roots; insist they agree.
        let exported: BTreeMap<String, Vec<String>> = infos
            .iter()
            .flat_map(|i| i.actor_types.iter().map(|t| (t.name.clone(), t.requirements.clone())))
            .collect();
        let mut st = self.lock();
        let Some(v) = st.versions.get_mut(&gen) else {
            let _ = tx.send(Cmd::Retire);
            return Err(refused("unloaded", format!("{hash} was unloaded while it was being loaded")));
        };
        if exported != v.types {
            let _ = tx.send(Cmd::Retire);
            return Err(refused(
                "manifest_mismatch",
                format!("rejected: the manifest's actor types {:?} differ from what the libraries export {:?} — repack with troupe pack", v.types, exported),
            ));
        }
        if v.cancelled {
            let _ = tx.send(Cmd::Retire);
            return Err(refused("unloaded", format!("{hash} was unloaded while it was being loaded")));
        }
        v.tx = Some(tx);
        v.state = VersionState::Active;
        v.files = shown;
        // Peers are served the zip from memory until it is in the store; the load does not wait
        // for the disk.
        v.zip = ZipCopy::Memory(zip.clone());
        for w in std::mem::take(&mut v.ready_waiters) {
            let _ = w.send(Ok(()));
        }
        tracing::info!(%hash, generation = gen, package = %v.package, copy_us = copy.as_micros() as u64, start_us = t1.elapsed().as_micros() as u64, "source loaded");
        drop(st);
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.store_zip(gen, &zip));
        Ok(Response::Loaded { hash, already_active: false })
    }

    /// Unloads a version: it turns draining, and is really unloaded when its last actor exits.
    /// With a grace period, actors still alive after it are asked to exit and the answer waits
    /// until the version is gone.
    pub async fn unload(
        self: &Arc<Self>,
        hash: &str,
        grace: Option<Duration>,
    ) -> Result<Response, ErrorReply> {
        let (full, members) = {
            let st = self.lock();
            let full = Self::resolve_hash(&st, hash).map_err(|e| refused(e.kind(), e.to_string()))?;
            (full, st.members.keys().cloned().collect::<Vec<_>>())
        };
        // Every member hears of it, whether or not we know it holds the version (it may have
        // fetched it a moment ago); a node without it ignores the request.
        for m in &members {
            let req =
                Request::UnloadSpread { hash: full.clone(), grace_ms: grace.map(|g| g.as_millis() as u64) };
            self.peers().notify(self, m, req);
        }
        let held_elsewhere = {
            let st = self.lock();
            st.members.values().any(|m| m.has_source(&full))
        };
        match self.unload_local(&full, grace).await {
            Ok(Response::Unloaded { hash, live_actors, gone, .. }) => {
                Ok(Response::Unloaded { hash, live_actors, gone, spread_to: members })
            }
            Err(_) if held_elsewhere => {
                Ok(Response::Unloaded { hash: full, live_actors: 0, gone: false, spread_to: members })
            }
            other => other,
        }
    }

    /// Unloads a version on this node only.
    pub(crate) async fn unload_local(
        self: &Arc<Self>,
        hash: &str,
        grace: Option<Duration>,
    ) -> Result<Response, ErrorReply> {
        let (hash, gen, live, waiter, retire) = {
            let mut st = self.lock();
            let hash = Self::resolve_hash(&st, hash).map_err(|e| refused(e.kind(), e.to_string()))?;
            let gen = match st.current.remove(&hash) {
                Some(g) => g,
                None => {
                    // Unloading again a version that is already draining: apply the grace
                    // period (if any) to it.
                    let draining =
                        st.versions.iter().find(|(_, v)| v.hash == hash && v.state == VersionState::Draining);
                    match draining {
                        Some((g, _)) => *g,
                        None if st.gone.iter().any(|g| g.hash == hash) => {
                            return Ok(Response::Unloaded {
                                hash,
                                live_actors: 0,
                                gone: true,
                                spread_to: Vec::new(),
                            });
                        }
                        None => {
                            return Err(refused(
                                "InvalidActorSourceHash",
                                format!(
                                "InvalidActorSourceHash: source hash {hash} does not match any loaded source"
                            ),
                            ))
                        }
                    }
                }
            };
            let Some(v) = st.versions.get_mut(&gen) else {
                return Err(refused("internal", "version table out of step"));
            };
            if v.state == VersionState::Validating {
                // Thespian crashed here; we abandon the load, and its caller is told.
                v.cancelled = true;
                if let Some(p) = st.validations.remove(&hash) {
                    let _ = p.reply.send(Err("the source was unloaded while being validated".into()));
                }
                return Ok(Response::Unloaded { hash, live_actors: 0, gone: true, spread_to: Vec::new() });
            }
            v.state = VersionState::Draining;
            v.draining_since.get_or_insert_with(Instant::now);
            let live = v.live;
            let (wtx, wrx) = oneshot::channel();
            v.gone_waiters.push(wtx);
            let retire = retire_if_idle(&mut st);
            tracing::info!(%hash, generation = gen, live, "unloading: version is draining");
            (hash, gen, live, wrx, retire)
        };
        for tx in retire {
            let _ = tx.send(Cmd::Retire);
        }
        if live == 0 {
            let _ = waiter.await;
            return Ok(Response::Unloaded { hash, live_actors: 0, gone: true, spread_to: Vec::new() });
        }
        let Some(grace) = grace else {
            return Ok(Response::Unloaded { hash, live_actors: live, gone: false, spread_to: Vec::new() });
        };
        let mut waiter = waiter;
        if tokio::time::timeout(grace, &mut waiter).await.is_ok() {
            return Ok(Response::Unloaded { hash, live_actors: 0, gone: true, spread_to: Vec::new() });
        }
        let stragglers: Vec<u64> = {
            let st = self.lock();
            st.actors
                .iter()
                .filter(|(_, r)| matches!(&r.kind, ActorKind::Plugin { gen: g, .. } if *g == gen))
                .map(|(id, _)| *id)
                .collect()
        };
        tracing::info!(%hash, count = stragglers.len(), "grace period over: asking the remaining actors to exit");
        for id in stragglers {
            self.request_exit(id, ExitReason::Unloaded, None);
        }
        let _ = waiter.await;
        Ok(Response::Unloaded { hash, live_actors: 0, gone: true, spread_to: Vec::new() })
    }

    /// The version's `on_unload` hangs.
    pub(crate) fn version_quarantined(&self, gen: u64) {
        let mut st = self.lock();
        if let Some(v) = st.versions.get_mut(&gen) {
            v.state = VersionState::Quarantined;
            // Whoever waits for it to be gone (unload --grace, deploy) gets an answer now.
            for w in std::mem::take(&mut v.gone_waiters) {
                let _ = w.send(());
            }
        }
        // A stop waiting for every version counts a quarantined one as done.
        if st.stopping && st.versions.values().all(|v| v.state == VersionState::Quarantined) {
            self.stopped.notify_waiters();
        }
    }

    /// The version host of `gen` has exited and its files are gone.
    pub(crate) fn version_gone(&self, hash: &str, gen: u64, close_time: Duration) {
        let mut st = self.lock();
        if let Some(v) = st.versions.remove(&gen) {
            for w in v.gone_waiters {
                let _ = w.send(());
            }
            if st.current.get(hash) == Some(&gen) {
                st.current.remove(hash);
            }
            for w in v.ready_waiters {
                let _ = w.send(Err("the version is gone".into()));
            }
            // Only versions that were really running count as unloaded.
            if matches!(v.state, VersionState::Draining | VersionState::Quarantined) {
                st.gone.push_back(GoneStatus {
                    hash: hash.to_string(),
                    generation: gen,
                    unload_ms: close_time.as_secs_f64() * 1000.0,
                    drain_ms: v.draining_since.map(|t| t.elapsed().as_secs_f64() * 1000.0).unwrap_or(0.0),
                });
                while st.gone.len() > GONE_HISTORY {
                    st.gone.pop_front();
                }
                tracing::info!(%hash, generation = gen, "version unloaded: library closed and files deleted");
            }
        }
        if st.stopping && st.versions.values().all(|v| v.state == VersionState::Quarantined) {
            self.stopped.notify_waiters();
        }
    }

    // ---- capabilities ----------------------------------------------------------------------------

    /// Adds or removes a capability; actors whose requirements no longer hold are asked to exit.
    pub fn change_capability(&self, add: bool, name: &str) -> Result<Response, ErrorReply> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ErrorReply::bad_request("usage", "a capability name cannot be empty"));
        }
        let (caps, victims) = {
            let mut st = self.lock();
            if add {
                st.capabilities.insert(name.to_string());
            } else {
                st.capabilities.remove(name);
            }
            let caps: Vec<String> = st.capabilities.iter().cloned().collect();
            let victims: Vec<(u64, Vec<String>)> = st
                .actors
                .iter()
                .filter(|(_, r)| {
                    r.exit_reason.is_none() && !r.requirements.iter().all(|q| st.capabilities.contains(q))
                })
                .map(|(id, r)| (*id, r.requirements.clone()))
                .collect();
            (caps, victims)
        };
        let n = victims.len();
        for (id, requirements) in victims {
            self.request_exit(id, ExitReason::CapabilityLost { requirements }, None);
        }
        tracing::info!(capabilities = ?caps, stopped = n, "capabilities changed");
        self.reregister.notify_one();
        Ok(Response::Capabilities { capabilities: caps, stopped_actors: n })
    }

    // ---- between nodes ------------------------------------------------------------------------

    /// The zip of an active version, for a peer that fetches it.
    pub async fn serve_source(&self, hash: &str) -> Result<Response, ErrorReply> {
        let copy = {
            let st = self.lock();
            match st.current.get(hash).and_then(|g| st.versions.get(g)) {
                Some(v) if v.state == VersionState::Active => match &v.zip {
                    ZipCopy::Memory(zip) => Ok(zip.clone()),
                    ZipCopy::Stored(path) => Err(Some(path.clone())),
                    ZipCopy::None => Err(None),
                },
                _ => Err(None),
            }
        };
        let zip = match copy {
            Ok(zip) => zip.as_ref().clone(),
            Err(Some(path)) => tokio::fs::read(&path)
                .await
                .map_err(|e| refused("store", format!("cannot read {}: {e}", path.display())))?,
            Err(None) => {
                return Err(refused(
                    "InvalidActorSourceHash",
                    format!("{hash} is not active on {}", self.addr),
                ))
            }
        };
        Ok(Response::Source { zip })
    }

    /// Actor `id` was placed here but its version is not: fetch it from a peer that has it,
    /// validate it with our own authority, then create the actor and hand it what waited.
    pub(crate) async fn fetch_then_create(self: Arc<Self>, id: u64, hash: String) {
        let result = self.fetch_version(&hash).await;
        let mut st = self.lock();
        let gen = st
            .current
            .get(&hash)
            .copied()
            .filter(|g| st.versions.get(g).is_some_and(|v| v.state == VersionState::Active));
        let error = match (result, gen) {
            (Ok(()), Some(gen)) => {
                let Some(rec) = st.actors.get_mut(&id) else {
                    return;
                };
                let ActorKind::Pending { type_name, buffer, .. } = &mut rec.kind else {
                    return;
                };
                let type_name = type_name.clone();
                let buffer = std::mem::take(buffer);
                rec.kind = ActorKind::Plugin { gen, hash: hash.clone(), type_name: type_name.clone() };
                let tx = st.versions.get_mut(&gen).and_then(|v| {
                    v.live += 1;
                    v.tx.clone()
                });
                drop(st);
                if let Some(tx) = tx {
                    let _ = tx.send(Cmd::Create { id, type_name });
                    for msg in buffer {
                        let _ = tx.send(Cmd::Deliver { id, msg: msg.into() });
                    }
                }
                return;
            }
            (Ok(()), None) => CreateError::InvalidActorSourceHash {
                hash: hash.clone(),
                detail: "was unloaded while it was being fetched".into(),
            },
            (Err(e), _) => CreateError::InvalidActorSourceHash {
                hash: hash.clone(),
                detail: format!("could not be fetched: {e}"),
            },
        };
        drop(st);
        self.create_failed(id, None, error);
    }

    /// Makes `hash` active here, fetching it from a peer if needed (policy permitting).
    async fn fetch_version(self: &Arc<Self>, hash: &str) -> Result<(), String> {
        let holders: Vec<String> = {
            let st = self.lock();
            if st
                .current
                .get(hash)
                .and_then(|g| st.versions.get(g))
                .is_some_and(|v| v.state == VersionState::Active)
            {
                return Ok(());
            }
            let mut h: Vec<String> =
                st.members.iter().filter(|(_, m)| m.has_source(hash)).map(|(a, _)| a.clone()).collect();
            // Prefer the leader, then the others.
            h.sort_by_key(|a| *a != self.conv.leader);
            h
        };
        let holders: Vec<String> = match self.conv.remote_sources {
            crate::protocol::RemoteSources::Yes => holders,
            crate::protocol::RemoteSources::LeaderOnly => {
                holders.into_iter().filter(|a| *a == self.conv.leader).collect()
            }
            crate::protocol::RemoteSources::No => {
                return Err("this node does not fetch sources (--remote-sources no)".into())
            }
        };
        if holders.is_empty() {
            return Err("no reachable member holds it".into());
        }
        let mut last = String::new();
        for peer in holders {
            let zip = match self
                .peers()
                .call(self, &peer, Request::FetchSource { hash: hash.to_string() }, FETCH_TIMEOUT)
                .await
            {
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
            match self.load_source(zip, format!("fetched from {peer}"), Some(hash)).await {
                Ok(_) => {
                    self.reregister.notify_one();
                    return Ok(());
                }
                Err(e) => return Err(e.message),
            }
        }
        Err(last)
    }
    // ---- status and stop -------------------------------------------------------------------------

    /// A snapshot for `troupe status`.
    pub fn status(&self) -> StatusReport {
        let st = self.lock();
        let mut versions: Vec<VersionStatus> = st
            .versions
            .iter()
            .map(|(gen, v)| VersionStatus {
                hash: v.hash.clone(),
                generation: *gen,
                state: v.state.name().into(),
                package: v.package.clone(),
                info: v.info.clone(),
                live_actors: v.live,
                actor_types: v.types.clone(),
                files: v.files.clone(),
            })
            .collect();
        versions.sort_by_key(|v| v.generation);
        let mut actors: Vec<ActorStatus> =
            st.actors
                .iter()
                .filter_map(|(id, r)| match &r.kind {
                    ActorKind::Plugin { hash, type_name, .. }
                    | ActorKind::Pending { hash, type_name, .. } => Some(ActorStatus {
                        address: self.address(*id),
                        type_name: type_name.clone(),
                        hash: hash.clone(),
                        parent: r.parent.clone(),
                        global_name: r.global_name.clone(),
                    }),
                    ActorKind::Client { .. } => None,
                })
                .collect();
        actors.sort_by_key(|a| a.address.id);
        StatusReport {
            node: self.addr.clone(),
            pid: std::process::id(),
            capabilities: st.capabilities.iter().cloned().collect(),
            authority: match &st.authority {
                Authority::None => "none".into(),
                Authority::AcceptAll => "accept-all".into(),
                Authority::Ed25519(keys) => format!("ed25519 (trusted keys: {})", keys.names().join(", ")),
                Authority::Actor(a) => format!("actor {a}"),
            },
            store: self.store.display().to_string(),
            versions,
            gone: st.gone.iter().cloned().collect(),
            actors,
            global_names: st.names.iter().map(|(n, id)| (n.clone(), self.address(*id))).collect(),
            convention: self.convention_status(&st),
            pthread_keys_in_use: pthread_keys_in_use(),
            pthread_keys_max: PTHREAD_KEYS_MAX,
            pthread_keys_refuse_at: PTHREAD_KEYS_REFUSE_AT,
            groups: st.groups.clone(),
        }
    }

    /// Stops the node gracefully: every actor gets `ActorExitRequest`, every version drains and
    /// unloads, and the store is deleted. Returns when that is done (or after `timeout`).
    pub async fn stop(self: &Arc<Self>, timeout: Duration) -> Result<Response, ErrorReply> {
        let (roots, retire) = {
            let mut st = self.lock();
            st.stopping = true;
            for (_, p) in st.validations.drain() {
                let _ = p.reply.send(Err("the node is stopping".into()));
            }
            let gens: Vec<u64> = st.versions.keys().copied().collect();
            for g in gens {
                if let Some(v) = st.versions.get_mut(&g) {
                    if v.state == VersionState::Quarantined {
                        continue;
                    }
                    if v.state == VersionState::Validating {
                        v.cancelled = true;
                    }
                    v.state = VersionState::Draining;
                    v.draining_since.get_or_insert_with(Instant::now);
                    v.draining_since.get_or_insert_with(Instant::now);
                }
            }
            st.current.clear();
            // Stop top-level actors; the rest go with their parents.
            let roots: Vec<u64> = st
                .actors
                .iter()
                .filter(|(id, r)| {
                    !matches!(r.kind, ActorKind::Client { .. })
                        && r.parent.as_ref().is_none_or(|p| {
                            !self.is_local(p) || !st.actors.contains_key(&p.id) || p.id == **id
                        })
                })
                .map(|(id, _)| *id)
                .collect();
            (roots, retire_if_idle(&mut st))
        };
        for tx in retire {
            let _ = tx.send(Cmd::Retire);
        }
        for id in roots {
            self.request_exit(id, ExitReason::NodeStopping, None);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.stopped.notified();
            if self.lock().versions.values().all(|v| v.state == VersionState::Quarantined) {
                break;
            }
            if tokio::time::timeout_at(deadline.into(), notified).await.is_err() {
                let left = self.lock().versions.len();
                tracing::warn!(versions = left, "stop timed out with versions still loaded");
                break;
            }
        }
        self.leave_convention().await;
        if let Err(e) = std::fs::remove_dir_all(&self.store) {
            tracing::warn!(store = %self.store.display(), "cannot delete the store: {e}");
        }
        tracing::info!("node stopped");
        Ok(Response::Stopped)
    }
}
