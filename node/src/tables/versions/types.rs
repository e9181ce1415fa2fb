//! What the version registry takes and gives: a load's declaration, an admission, a drain,
//! an upgrade's target, metrics counters and what `status` shows of a host (kept apart so
//! that `versions.rs`, which owns the lock, stays readable).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::host::effect::{HostHandle, VersionStats};
use crate::model::version_state::VersionState;
use crate::wire::status::{LongHandlerStatus, ThreadsStatus};

/// One generation's numbers for metrics.
pub(crate) struct VersionCounters {
    pub(crate) hash: String,
    pub(crate) state: VersionState,
    /// Messages queued to its actors, ever.
    pub(crate) queued: u64,
    /// Messages its actors handled, ever.
    pub(crate) handled: u64,
    pub(crate) busy: usize,
    pub(crate) idle: usize,
    /// Handlers running longer than the threshold now.
    pub(crate) long: usize,
}

/// What a load declares of a new version.
pub(crate) struct NewVersion {
    pub(crate) hash: String,
    pub(crate) package: String,
    pub(crate) info: String,
    /// `module.Type` → declared requirements.
    pub(crate) types: BTreeMap<String, Vec<String>>,
    /// The libraries' names in the zip.
    pub(crate) files: Vec<String>,
    /// The package's name (the manifest's).
    pub(crate) name: String,
    /// Live upgrade renames: old `module.Type` → the type of this version that takes over.
    pub(crate) renames: BTreeMap<String, String>,
}

/// What a live upgrade needs of its new version.
pub(crate) struct UpgradeTarget {
    pub(crate) gen: u64,
    pub(crate) host: HostHandle,
    /// Its exported types.
    pub(crate) types: std::collections::BTreeSet<String>,
    /// Old type → the type that takes it over (the manifest's `replaces`).
    pub(crate) renames: BTreeMap<String, String>,
}

/// What a load of bytes gets.
pub(crate) enum Admission<D> {
    /// The same bytes are active: nothing to do.
    AlreadyActive,
    /// The same bytes were draining, with actors left: that generation is active again.
    Revived { gen: u64 },
    /// The same bytes are being validated: wait for that.
    Wait(oneshot::Receiver<Result<(), String>>),
    /// A new generation, validating, with the authority's decision.
    New { gen: u64, stats: Arc<VersionStats>, decision: D },
}

/// What an unload of one hash did here.
pub(crate) enum Drain {
    /// No generation of it is here, and none was unloaded here.
    Unknown,
    /// It was unloaded here before and is gone.
    AlreadyGone,
    /// It was still being validated: the load is abandoned.
    Cancelled,
    /// It is draining; `gone` answers when it is.
    Draining { gen: u64, live: usize, gone: oneshot::Receiver<()>, retire: Option<HostHandle> },
}

/// A host's threads, for `status`.
pub(super) fn host_threads(h: &HostHandle) -> ThreadsStatus {
    let (busy, idle, limit, _) = h.load();
    ThreadsStatus { busy, idle, limit }
}

/// A host's handlers running longer than `threshold`, for `status` (by actor id: the caller
/// names them).
pub(super) fn long_handlers(h: &HostHandle, threshold: Duration) -> Vec<LongHandlerStatus> {
    h.long_calls(threshold)
        .into_iter()
        .map(|(id, running, _)| LongHandlerStatus {
            actor: troupe_actor_abi::message::Address { node: String::new(), id },
            type_name: String::new(),
            running_ms: running.as_millis() as u64,
        })
        .collect()
}
