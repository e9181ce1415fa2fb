//! Test plugin: version 2 of `tests/plugins/counter-v1`, which the live-upgrade tests move
//! version 1's actors to (and version 2's to itself, as `troupe watch` does on each save).
//!
//! Every actor keeps a `count` and answers `msg.sender()` with plain text: `inc` adds one and
//! answers `v2 <label>=N`; `get` answers `v2 <label>=N upgrades=U` for `Counter` and `Tally`,
//! `v2 <label>=N` for the others; anything else is ignored.
//! - `counter.Counter` (label `count`): its state is `counter/State.v2` (`{count, upgrades}`).
//!   It imports `counter/State.v1` (`upgrades` = 1) and `counter/State.v2` (`upgrades` + 1);
//!   any other shape fails the import with `unknown state shape <tag> from <package>
//!   <version>`.
//! - `counter.Tally` (label `tally`): `Counter` under another name, for renames
//!   (`counter.Counter` → `counter.Tally`).
//! - `counter.Plain` (label `plain`): does not opt in (exports and imports nothing).
//! - `counter.Refused` (label `refused`): every import fails with `refusing state from
//!   <from_type>`.

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

/// This version's own state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct StateV2 {
    count: u64,
    upgrades: u32,
}
impl Typed for StateV2 {
    const TAG: &'static str = "counter/State.v2";
}

/// Version 2's state from any state it knows.
fn convert(from: &Upgrade) -> ActorResult<StateV2> {
    if let Some(old) = from.decode::<StateV1>() {
        return Ok(StateV2 { count: old?.count, upgrades: 1 });
    }
    if let Some(same) = from.decode::<StateV2>() {
        let same = same?;
        return Ok(StateV2 { upgrades: same.upgrades.saturating_add(1), ..same });
    }
    let v = from.from();
    Err(ActorError::msg(format!(
        "unknown state shape {} from {} {}",
        from.state().tag(),
        v.package,
        v.version
    )))
}

/// Counts `inc`s; answers `inc` with `v2 <label>=N` and `get` with that and `extra`.
fn count(ctx: &mut Context, msg: &Message, count: &mut u64, label: &str, extra: &str) {
    let Some(from) = msg.sender().cloned() else { return };
    match msg.text() {
        Some("inc") => {
            *count += 1;
            ctx.send(&from, format!("v2 {label}={count}"));
        }
        Some("get") => ctx.send(&from, format!("v2 {label}={count}{extra}")),
        _ => {}
    }
}

/// `counter.Counter` and, with the label `tally`, `counter.Tally`.
struct Counted<const TALLY: bool> {
    state: StateV2,
}
impl<const TALLY: bool> Actor for Counted<TALLY> {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Counted { state: StateV2 { count: 0, upgrades: 0 } })
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        let label = if TALLY { "tally" } else { "count" };
        let extra = format!(" upgrades={}", self.state.upgrades);
        count(ctx, &msg, &mut self.state.count, label, &extra);
        Ok(())
    }
    fn export_state(&self) -> Option<ActorResult<State>> {
        Some(Ok(State::of(&self.state)))
    }
    fn import_state(_ctx: &mut Context, from: Upgrade) -> ActorResult<Self> {
        Ok(Counted { state: convert(&from)? })
    }
}
type Counter = Counted<false>;
type Tally = Counted<true>;

/// `counter.Plain`: no live upgrade.
struct Plain {
    count: u64,
}
impl Actor for Plain {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Plain { count: 0 })
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        count(ctx, &msg, &mut self.count, "plain", "");
        Ok(())
    }
}

/// `counter.Refused`: refuses every state.
struct Refused {
    count: u64,
}
impl Actor for Refused {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Refused { count: 0 })
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        count(ctx, &msg, &mut self.count, "refused", "");
        Ok(())
    }
    fn import_state(_ctx: &mut Context, from: Upgrade) -> ActorResult<Self> {
        Err(ActorError::msg(format!("refusing state from {}", from.from_type())))
    }
}

troupe_actor_abi::export_plugin!(actors: [
    "counter.Counter" => Counter,
    "counter.Tally" => Tally,
    "counter.Plain" => Plain,
    "counter.Refused" => Refused,
]);

#[cfg(test)]
mod tests {
    use troupe_actor_abi::message::{Migration, VersionIdentity};

    use super::*;

    fn upgrade(state: State) -> Upgrade {
        let from =
            VersionIdentity { package: "counter".into(), version: "1.0.0".into(), hash: "ab12".into() };
        Upgrade::new(Migration { from, from_type: "counter.Counter".into(), state: state.into() })
    }

    #[test]
    fn version_1_state_is_converted_and_version_2_state_counts_one_more_upgrade() {
        let v1 = upgrade(State::of(&StateV1 { count: 5 }));
        assert_eq!(convert(&v1).ok(), Some(StateV2 { count: 5, upgrades: 1 }));
        let v2 = upgrade(State::of(&StateV2 { count: 5, upgrades: 1 }));
        assert_eq!(convert(&v2).ok(), Some(StateV2 { count: 5, upgrades: 2 }));
    }

    #[test]
    fn unknown_shapes_are_refused_naming_the_old_version() {
        let other = upgrade(State::raw("counter/State.v0", Vec::new()));
        let err = convert(&other).err().map(|e| e.message().to_string());
        assert_eq!(err.as_deref(), Some("unknown state shape counter/State.v0 from counter 1.0.0"));
    }
}
