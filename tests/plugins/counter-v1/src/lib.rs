//! Test plugin: version 1 of the counters that the live-upgrade tests move to version 2
//! (`tests/plugins/counter-v2`).
//!
//! Every actor keeps a `count` and answers `msg.sender()` with plain text: `inc` adds one and
//! answers the new count, `get` answers it; `busy MS` keeps the handler running for MS
//! milliseconds, then answers like `get` (an actor that cannot pause meanwhile); `spawn`
//! creates a `counter.Plain` child and answers `child <id in hex>`; anything else is ignored.
//! - `counter.Counter`: answers `v1 count=N`; exports its state as `counter/State.v1`
//!   (`{count}`).
//! - `counter.Plain`: answers `v1 plain=N`; does not opt in (it stays on version 1 and drains).
//! - `counter.Refused`: answers `v1 refused=N`; exports `counter/State.v1` like `Counter`, but
//!   version 2 refuses to import it.

use serde::{Deserialize, Serialize};
use troupe_actor_abi::prelude::*;

/// The state version 1 hands over.
#[derive(Serialize, Deserialize)]
struct StateV1 {
    count: u64,
}
impl Typed for StateV1 {
    const TAG: &'static str = "counter/State.v1";
}

/// Counts `inc`s; answers `inc` and `get` with `v1 <label>=N`.
fn count(ctx: &mut Context, msg: &Message, count: &mut u64, label: &str) {
    let Some(from) = msg.sender().cloned() else { return };
    match msg.text() {
        Some("inc") => *count += 1,
        Some("get") => {}
        Some("spawn") => {
            let reply = match ctx.create("counter.Plain") {
                Ok(child) => format!("child {:x}", child.id),
                Err(e) => format!("spawn failed: {}", e.message()),
            };
            ctx.send(&from, reply);
            return;
        }
        Some(busy) if busy.starts_with("busy ") => {
            let ms: u64 = busy["busy ".len()..].trim().parse().unwrap_or(0);
            let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        _ => return,
    }
    ctx.send(&from, format!("v1 {label}={count}"));
}

/// `counter.Counter`.
struct Counter {
    count: u64,
}
impl Actor for Counter {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Counter { count: 0 })
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        count(ctx, &msg, &mut self.count, "count");
        Ok(())
    }
    fn export_state(&self) -> Option<ActorResult<State>> {
        Some(Ok(State::of(&StateV1 { count: self.count })))
    }
}

/// `counter.Plain`: no live upgrade.
struct Plain {
    count: u64,
}
impl Actor for Plain {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Plain { count: 0 })
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        count(ctx, &msg, &mut self.count, "plain");
        Ok(())
    }
}

/// `counter.Refused`: opts in, but its next version refuses the state.
struct Refused {
    count: u64,
}
impl Actor for Refused {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Refused { count: 0 })
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        count(ctx, &msg, &mut self.count, "refused");
        Ok(())
    }
    fn export_state(&self) -> Option<ActorResult<State>> {
        Some(Ok(State::of(&StateV1 { count: self.count })))
    }
}

troupe_actor_abi::export_plugin!(actors: [
    "counter.Counter" => Counter,
    "counter.Plain" => Plain,
    "counter.Refused" => Refused,
]);
