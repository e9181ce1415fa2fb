//! Stopping the node gracefully: every actor gets `ActorExitRequest`, every version drains and
//! unloads, the convention is told, and the store is deleted; and what happens when a version
//! is finally gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use troupe_actor_abi::message::ExitReason;

use crate::host::effect::Cmd;
use crate::runtime::core::Core;
use crate::wire::Response;

impl Core {
    /// Stops the node. Returns when everything is unloaded (or after `timeout`).
    pub async fn stop(self: &Arc<Self>, timeout: Duration) -> Response {
        self.authority.fail_all("the node is stopping");
        for host in self.versions.close() {
            let _ = host.send(Cmd::Retire);
        }
        // Stop top-level actors; the rest go with their parents.
        for id in self.actors.roots(&self.addr) {
            self.request_exit(id, ExitReason::NodeStopping, None);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.stopped.notified();
            if self.versions.all_done() {
                break;
            }
            if tokio::time::timeout_at(deadline.into(), notified).await.is_err() {
                tracing::warn!(versions = self.versions.count(), "stop timed out with versions still loaded");
                break;
            }
        }
        self.leave_convention().await;
        if let Err(e) = std::fs::remove_dir_all(&self.store) {
            tracing::warn!(store = %self.store.display(), "cannot delete the store: {e}");
        }
        tracing::info!("node stopped");
        Response::Stopped
    }

    /// The version host of `gen` has exited and its files are gone.
    pub(crate) fn version_gone(&self, hash: &str, gen: u64, close_time: Duration) {
        let (record, stop_done) = self.versions.gone(gen, close_time);
        if let Some(g) = record {
            let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
            self.metrics.version_gone(ms(g.unload_ms), ms(g.drain_ms));
            tracing::info!(%hash, generation = gen, "version unloaded: library closed and files deleted");
        }
        if stop_done {
            self.stopped.notify_waiters();
        }
    }
}
