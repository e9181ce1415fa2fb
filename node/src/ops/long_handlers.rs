//! Long handlers: a handler running longer than the node's `--long-handler` threshold keeps its
//! thread (the version's other actors are served by its other threads), and is reported once,
//! when it crosses the threshold, in the log and in the metrics. `status` lists the ones
//! running now.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use troupe_actor_abi::message::Address;

use crate::runtime::core::Core;

/// Watches the node's versions for long handlers, for as long as the node lives.
pub(crate) fn watch(core: &Arc<Core>) {
    let weak = Arc::downgrade(core);
    // Checked twice per threshold, so a report comes at most half a threshold late; never
    // more often than every 50 ms.
    let period = (core.long_handler / 2).max(Duration::from_millis(50));
    tokio::spawn(async move {
        // (hash, actor, start of the call): each call is reported once.
        let mut reported: HashSet<(String, u64, u64)> = HashSet::new();
        loop {
            tokio::time::sleep(period).await;
            let Some(core) = weak.upgrade() else { break };
            if core.stopping() {
                break;
            }
            let mut now = HashSet::new();
            for (hash, host) in core.versions.hosts() {
                for (id, running, since) in host.long_calls(core.long_handler) {
                    let key = (hash.clone(), id, since);
                    if !reported.contains(&key) {
                        report(&core, &hash, id, running);
                    }
                    now.insert(key);
                }
            }
            reported = now;
        }
    });
}

fn report(core: &Core, hash: &str, id: u64, running: Duration) {
    let actor = Address { node: core.addr.clone(), id };
    let type_name = core.actors.identity(id).map(|i| i.3).unwrap_or_default();
    tracing::warn!(
        %actor,
        %type_name,
        version = %&hash[..hash.len().min(12)],
        "a handler of {actor} ({type_name}) has run for {running:?}, longer than {:?}: it keeps its thread, and the version's other actors are served by its other threads",
        core.long_handler
    );
    core.metrics.long_handler();
}
