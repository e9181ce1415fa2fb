//! Loading a version: the zip is opened and checked ([`crate::store::archive`]), admitted into
//! the version registry, decided by the source authority, started on its own thread
//! ([`crate::host::executor`]) and made active. The caller is answered only then: with the
//! hash, or the reason for the rejection. The zip is written into the store for peers after
//! the answer (served from memory meanwhile).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use troupe_actor_abi::abi;
use troupe_actor_abi::message::{Payload, SystemMessage, ADMIN_ID};

use crate::host::effect::{Cmd, VersionStats};
use crate::host::executor::{self, Libraries, Ready, StartError};
use crate::host::pthread_keys::{pthread_keys_free, PTHREAD_KEYS_MAX, PTHREAD_KEYS_REFUSE_AT};
use crate::host::NodeSeam;
use crate::model::error::LoadError;
use crate::runtime::core::Core;
use crate::store::archive::{self, ArchiveLimits, Source};
use crate::store::libcopy;
use crate::tables::authority::Decision;
use crate::tables::versions::{Admission, NewVersion};
use crate::wire::Response;

impl Core {
    /// Where the store keeps the zip of one generation of a version (a flat layout: deleting it
    /// leaves nothing behind).
    pub(crate) fn zip_file(&self, hash: &str, gen: u64) -> PathBuf {
        self.store.join(format!("{hash}-{gen}.zip"))
    }

    /// Validates and loads a zip; answers once the version is active or rejected. A member
    /// then tells the leader at once, so the whole convention can use the version.
    pub async fn load(self: &Arc<Self>, zip: Vec<u8>, info: String) -> Result<Response, LoadError> {
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
    ) -> Result<Response, LoadError> {
        let t0 = std::time::Instant::now();
        // The archive limit first, whatever the frame limit let through.
        let (size, limit) = (zip.len() as u64, ArchiveLimits::default().max_zip_bytes);
        if size > limit {
            return Err(archive::ArchiveError::TooLarge { size, limit }.into());
        }
        let zip = Arc::new(zip);
        let z2 = zip.clone();
        let source = tokio::task::spawn_blocking(move || archive::open(&z2, &ArchiveLimits::default()))
            .await
            .map_err(|e| LoadError::Internal(format!("archive reader failed: {e}")))??;
        check_source(&source, expected)?;
        let hash = source.hash.clone();
        let m = &source.manifest;
        let new = NewVersion {
            hash: hash.clone(),
            package: format!("{} {}", m.package.name, m.package.version),
            info: info.clone(),
            types: m
                .cdylibs
                .iter()
                .flat_map(|c| c.actors.iter().map(|a| (a.type_name.clone(), a.requires.clone())))
                .collect(),
            files: m.cdylibs.iter().map(|c| c.file.clone()).collect(),
            name: m.package.name.clone(),
            renames: m.renames(),
        };
        let (gen, stats, decision) = match self.versions.admit(new, || self.authority.decide())? {
            Admission::AlreadyActive => {
                return Ok(Response::Loaded { hash, already_active: true, revived: false })
            }
            Admission::Revived { gen } => {
                tracing::info!(%hash, generation = gen, "reloaded while draining: the draining generation serves again");
                self.send_notices(self.source_watch.loaded(&hash, &info));
                return Ok(Response::Loaded { hash, already_active: false, revived: true });
            }
            Admission::Wait(rx) => {
                // The same bytes are being validated (another load, or a fetch): wait for that.
                return match rx.await {
                    Ok(Ok(())) => Ok(Response::Loaded { hash, already_active: true, revived: false }),
                    Ok(Err(e)) => Err(LoadError::Concurrent(e)),
                    Err(_) => {
                        Err(LoadError::Concurrent(format!("the concurrent load of {hash} was abandoned")))
                    }
                };
            }
            Admission::New { gen, stats, decision } => (gen, stats, decision),
        };
        tracing::debug!(%hash, "opened and checked in {:?}", t0.elapsed());
        let result = self.load_validated(source, zip, gen, stats, decision, info).await;
        if let Err(e) = &result {
            self.metrics.load_rejected();
            self.versions.reject(gen, &e.to_string());
            tracing::info!(%hash, "load rejected: {e}");
        } else {
            self.metrics.load_ok();
        }
        result
    }

    /// The authority decides; then the version's own thread copies and opens its libraries.
    async fn load_validated(
        self: &Arc<Self>,
        source: Source,
        zip: Arc<Vec<u8>>,
        gen: u64,
        stats: Arc<VersionStats>,
        decision: Decision,
        info: String,
    ) -> Result<Response, LoadError> {
        let hash = source.hash.clone();
        self.validate(&source, decision, info.clone()).await?;
        if self.versions.abandoned(gen) {
            return Err(LoadError::Unloaded { hash, stage: "validated" });
        }
        // The version's own thread copies every library to a place unique to (hash,
        // generation) and opens it there; this task waits without blocking a worker.
        let t1 = std::time::Instant::now();
        let libs = Libraries { files: source.files, copies: self.lib_copies, store: self.store.clone() };
        let seam: Arc<dyn NodeSeam> = self.clone();
        let (host, ready) = executor::start(seam, hash.clone(), gen, libs, stats, self.version_threads)
            .map_err(|e| LoadError::Internal(format!("rejected: {e}")))?;
        let ready = ready
            .await
            .map_err(|_| LoadError::Internal("the version's thread exited during start".into()))?;
        let Ready { infos, shown, copy } = ready.map_err(|e| match e {
            StartError::Copy(e) => LoadError::Copy(e),
            StartError::Plugin(e) => LoadError::Plugin(e),
        })?;
        // The manifest was written by `troupe pack` from the libraries' roots; insist they agree.
        let exported: BTreeMap<String, Vec<String>> = infos
            .iter()
            .flat_map(|i| i.actor_types.iter().map(|t| (t.name.clone(), t.requirements.clone())))
            .collect();
        let package = match self.versions.activate(gen, &hash, host, shown, zip.clone(), &exported) {
            Ok(package) => package,
            Err((e, host)) => {
                let _ = host.send(Cmd::Retire);
                return Err(e);
            }
        };
        self.send_notices(self.source_watch.loaded(&hash, &info));
        tracing::info!(%hash, generation = gen, %package, copy_us = copy.as_micros() as u64, start_us = t1.elapsed().as_micros() as u64, "source loaded");
        let me = self.clone();
        let path = self.zip_file(&hash, gen);
        tokio::task::spawn_blocking(move || {
            me.versions.store_zip(gen, path, |p| libcopy::write_file(p, &zip))
        });
        Ok(Response::Loaded { hash, already_active: false, revived: false })
    }

    /// The source authority in force decides the load.
    async fn validate(&self, source: &Source, decision: Decision, info: String) -> Result<(), LoadError> {
        let hash = &source.hash;
        match decision {
            Decision::AcceptAll => Ok(()),
            Decision::Ed25519(keys) => {
                let signer = keys.verify(source)?;
                tracing::info!(%hash, %signer, "signature verified");
                Ok(())
            }
            Decision::Actor(auth) => {
                let answer = self.authority.begin(hash);
                let m = &source.manifest;
                let ask = SystemMessage::ValidateSource {
                    hash: hash.clone(),
                    info,
                    package: m.package.name.clone(),
                    version: m.package.version.clone(),
                    actor_types: m
                        .cdylibs
                        .iter()
                        .flat_map(|c| c.actors.iter().map(|a| a.type_name.clone()))
                        .collect(),
                };
                self.send(Some(self.address(ADMIN_ID)), &auth, Payload::System(ask));
                let answer = tokio::time::timeout(self.authority_timeout, answer).await;
                self.authority.end(hash);
                match answer {
                    Ok(Ok(Ok(()))) => Ok(()),
                    Ok(Ok(Err(reason))) => Err(LoadError::AuthorityRejected(reason)),
                    Ok(Err(_)) | Err(_) => Err(LoadError::AuthorityTimeout {
                        authority: auth.to_string(),
                        secs: self.authority_timeout.as_secs(),
                    }),
                }
            }
        }
    }
}

/// Checks what a source was built for, and what this process can still load.
fn check_source(source: &Source, expected: Option<&str>) -> Result<(), LoadError> {
    if let Some(h) = expected.filter(|h| *h != source.hash) {
        return Err(LoadError::HashMismatch { got: source.hash.clone(), want: h.to_string() });
    }
    let p = &source.manifest.package;
    if p.abi_version != abi::ABI_VERSION {
        return Err(LoadError::AbiVersion { found: p.abi_version, ours: abi::ABI_VERSION });
    }
    if p.msg_schema != abi::MSG_SCHEMA {
        return Err(LoadError::MsgSchema { found: p.msg_schema, ours: abi::MSG_SCHEMA });
    }
    if p.target != crate::TARGET {
        return Err(LoadError::Target { found: p.target.clone(), ours: crate::TARGET });
    }
    // Refused from PTHREAD_KEYS_REFUSE_AT keys in use, i.e. when no more than MAX - REFUSE_AT
    // are free: counting one more than that is enough to decide.
    let free = pthread_keys_free(PTHREAD_KEYS_MAX - PTHREAD_KEYS_REFUSE_AT + 1);
    let keys = PTHREAD_KEYS_MAX - free;
    if keys >= PTHREAD_KEYS_REFUSE_AT {
        return Err(LoadError::PthreadKeys { keys, max: PTHREAD_KEYS_MAX });
    }
    Ok(())
}
