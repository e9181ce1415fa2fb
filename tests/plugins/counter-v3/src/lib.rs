//! Test plugin: a third version of `tests/plugins/counter-v1`'s `counter.Counter`, so that two
//! upgrades of version 1 can run at once (`tests/tests/upgrade_races.rs`: one to counter-v2,
//! one to this).
//!
//! `counter.Counter` imports `counter/State.v1` (`{count}`) and `counter/State.v2`
//! (`{count, upgrades}`); `inc` adds one and answers `v3 count=N`, `get` answers
//! `v3 count=N upgrades=U` (U: how many upgrades the state went through); anything else is
//! ignored. It exports `counter/State.v2`, so it can move on to counter-v2 again.

use serde::{Deserialize, Serialize};
use troupe_actor_abi::prelude::*;

/// What version 1 hands over.
#[derive(Serialize, Deserialize)]
struct StateV1 {
    count: u64,
}
impl Typed for StateV1 {
    const TAG: &'static str = "counter/State.v1";
}

/// What version 2 hands over, and what this version keeps and hands on.
#[derive(Serialize, Deserialize)]
struct StateV2 {
    count: u64,
    upgrades: u32,
}
impl Typed for StateV2 {
    const TAG: &'static str = "counter/State.v2";
}

/// `counter.Counter`.
struct Counter {
    state: StateV2,
}
impl Actor for Counter {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Counter { state: StateV2 { count: 0, upgrades: 0 } })
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        let Some(from) = msg.sender().cloned() else { return Ok(()) };
        let s = &mut self.state;
        match msg.text() {
            Some("inc") => {
                s.count += 1;
                ctx.send(&from, format!("v3 count={}", s.count));
            }
            Some("get") => ctx.send(&from, format!("v3 count={} upgrades={}", s.count, s.upgrades)),
            _ => {}
        }
        Ok(())
    }
    fn export_state(&self) -> Option<ActorResult<State>> {
        Some(Ok(State::of(&self.state)))
    }
    fn import_state(_ctx: &mut Context, from: Upgrade) -> ActorResult<Self> {
        if let Some(old) = from.decode::<StateV1>() {
            return Ok(Counter { state: StateV2 { count: old?.count, upgrades: 1 } });
        }
        if let Some(same) = from.decode::<StateV2>() {
            let same = same?;
            return Ok(Counter { state: StateV2 { upgrades: same.upgrades.saturating_add(1), ..same } });
        }
        Err(ActorError::msg(format!("unknown state shape {}", from.state().tag())))
    }
}

troupe_actor_abi::export_plugin!(actors: ["counter.Counter" => Counter]);
