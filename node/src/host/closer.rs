//! The closer: a short-lived thread started by an executor that is done. It times the plugin's
//! `on_unload` (a plugin that hangs there has its version quarantined, never closed while its
//! thread is stuck in it), waits for the executor thread to exit, and only then dlcloses the
//! libraries and frees their copies (`reference/dylib-unloading.md` §2.3).

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::plugin::Plugin;
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

/// How a closer waits for its executor to exit.
pub(super) type ExecutorHandle = std::thread::JoinHandle<Vec<Plugin>>;

/// Started by an executor that is done: watches its `on_unload` (a plugin that hangs there
/// has its version quarantined, never closed while its thread is stuck in it), waits for the
/// thread to exit, then closes the libraries, frees their copies and reports the version gone.
pub(super) fn start_closer(
    node: Arc<dyn NodeSeam>,
    hash: String,
    gen: u64,
    images: Vec<LibImage>,
    handle: Receiver<ExecutorHandle>,
    phase: Receiver<Phase>,
) -> std::io::Result<()> {
    let short = hash.chars().take(8).collect::<String>();
    std::thread::Builder::new().name(format!("troupe-c-{short}")).spawn(move || {
        if let Ok(Phase::Retiring) = phase.recv() {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = phase.recv_timeout(ON_UNLOAD_LIMIT) {
                tracing::error!(%hash, "on_unload did not return within {ON_UNLOAD_LIMIT:?}: version quarantined");
                node.version_ended(&hash, gen, VersionEnd::Quarantined);
            }
        }
        let plugins = match handle.recv().map(|h| h.join()) {
            Ok(Ok(plugins)) => plugins,
            _ => {
                // Host code on the executor panicked (a node bug, not a plugin panic: those
                // are caught in the plugin). The libraries were leaked with the thread's
                // stack; never close what may still be referenced.
                tracing::error!(%hash, "version executor panicked; its libraries stay mapped");
                images.into_iter().for_each(LibImage::leak);
                return;
            }
        };
        let t0 = Instant::now();
        for p in plugins {
            p.close();
        }
        // The executor's malloc arena keeps freed memory; give it back to the system so
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

/// Starts the closer for a done executor. If no thread can be started, nothing can close the
/// libraries safely after this thread exits: they stay mapped (with their copies), the version
/// is reported quarantined, and `false` says not to run `on_unload` either.
pub(super) fn hand_over(
    node: &Arc<dyn NodeSeam>,
    hash: &str,
    gen: u64,
    images: Vec<LibImage>,
    handle: Receiver<ExecutorHandle>,
    phase: Receiver<Phase>,
    plugins: &mut Vec<Plugin>,
) -> bool {
    match start_closer(node.clone(), hash.to_string(), gen, images, handle, phase) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(%hash, "cannot start the thread that closes the version ({e}); its libraries stay mapped");
            std::mem::take(plugins).into_iter().for_each(std::mem::forget);
            node.version_ended(hash, gen, VersionEnd::Quarantined);
            false
        }
    }
}
