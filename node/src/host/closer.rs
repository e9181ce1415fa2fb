//! The closer: a short-lived thread started by a version's last thread. It times the plugin's
//! `on_unload` (a plugin that hangs there has its version quarantined, never closed while its
//! thread is stuck in it), waits for every thread of the version to exit, and only then
//! dlcloses the libraries and frees their copies (`reference/dylib-unloading.md` §2.3).

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::thread::JoinHandle;

use super::plugin::Plugin;
use super::worker::Runner;
use super::{NodeSeam, VersionEnd};
use crate::store::libcopy::LibImage;

/// How long a plugin's `on_unload` may take. Clearing statics and flushing takes microseconds;
/// seconds mean it hangs.
pub(crate) const ON_UNLOAD_LIMIT: Duration = Duration::from_secs(5);

/// Where the executor is in its life, for the closer.
pub(super) enum Phase {
    /// It is calling `on_unload`.
    Retiring,
}

/// The version's threads, as the closer joins them: the first one's handle (sent by
/// [`super::executor::start`] once it has spawned it) and every one the pool started.
pub(super) struct Threads {
    pub(super) first: Receiver<JoinHandle<()>>,
    pub(super) others: Vec<JoinHandle<()>>,
}

/// The libraries to close once every thread has exited: the ones a failed start opened, or
/// the running version's (shared by its threads until they are all gone).
pub(super) enum Libraries {
    Opened(Vec<Plugin>),
    Running(Arc<Runner>),
}

impl Libraries {
    /// The libraries, once nothing else holds them; `None` if something still does (a node
    /// bug), in which case they must stay mapped.
    fn into_plugins(self) -> Option<Vec<Plugin>> {
        match self {
            Libraries::Opened(p) => Some(p),
            Libraries::Running(run) => Arc::try_unwrap(run).ok().map(|r| r.plugins),
        }
    }
}

/// What a closer needs.
pub(super) struct Closing {
    pub(super) node: Arc<dyn NodeSeam>,
    pub(super) hash: String,
    pub(super) gen: u64,
    pub(super) images: Vec<LibImage>,
    pub(super) threads: Threads,
    pub(super) libraries: Libraries,
}

/// Started by a version's last thread: watches its `on_unload` (a plugin that hangs there has
/// its version quarantined, never closed while its thread is stuck in it), waits for every
/// thread of the version to exit, then closes the libraries, frees their copies and reports
/// the version gone.
pub(super) fn start_closer(c: Closing, phase: Receiver<Phase>) -> std::io::Result<()> {
    let short = c.hash.chars().take(8).collect::<String>();
    // If the thread cannot be started, the closure is dropped with everything in it: the
    // libraries must then stay mapped (threads may still run their code), so they are only
    // ever dropped by the closer itself.
    let c = std::mem::ManuallyDrop::new(c);
    std::thread::Builder::new().name(format!("troupe-c-{short}")).spawn(move || {
        let Closing { node, hash, gen, images, threads, libraries } = std::mem::ManuallyDrop::into_inner(c);
        if let Ok(Phase::Retiring) = phase.recv() {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = phase.recv_timeout(ON_UNLOAD_LIMIT) {
                tracing::error!(%hash, "on_unload did not return within {ON_UNLOAD_LIMIT:?}: version quarantined");
                node.version_ended(&hash, gen, VersionEnd::Quarantined);
            }
        }
        let mut joined = threads.first.recv().map(|h| h.join().is_ok()).unwrap_or(false);
        for h in threads.others {
            joined &= h.join().is_ok();
        }
        let plugins = match libraries.into_plugins().filter(|_| joined) {
            Some(plugins) => plugins,
            None => {
                // Host code on a version thread panicked (a node bug, not a plugin panic:
                // those are caught in the plugin), or the libraries are still referenced:
                // never close what may still be used.
                tracing::error!(%hash, "a version thread panicked or its libraries are still held; they stay mapped");
                images.into_iter().for_each(LibImage::leak);
                return;
            }
        };
        let t0 = Instant::now();
        for p in plugins {
            p.close();
        }
        // The threads' malloc arena keeps freed memory; give it back to the system so
        // load/unload cycles leave the node's RSS flat.
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
        for image in images {
            image.release();
        }
        node.version_ended(&hash, gen, VersionEnd::Gone { close_time: t0.elapsed() });
    })?;
    Ok(())
}

/// Starts the closer for a version that is done. If no thread can be started, nothing can
/// close the libraries safely after this thread exits: they stay mapped (with their copies),
/// the version is reported quarantined, and `false` says not to run `on_unload` either.
pub(super) fn hand_over(c: Closing, phase: Receiver<Phase>) -> bool {
    let (node, hash, gen) = (c.node.clone(), c.hash.clone(), c.gen);
    match start_closer(c, phase) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(%hash, "cannot start the thread that closes the version ({e}); its libraries stay mapped");
            node.version_ended(&hash, gen, VersionEnd::Quarantined);
            false
        }
    }
}
