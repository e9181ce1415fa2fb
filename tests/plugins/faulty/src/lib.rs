//! Test plugin: actors that misbehave on purpose (panic, fail, hold their thread), one that
//! creates children on command, and one that acts as the node's source authority. The integration
//! tests in `tests/` drive them.
//!
//! Every actor answers `msg.sender()` with plain text:
//! - `faulty.Echo`: `t` → `echo: t`.
//! - `faulty.PanicOnMessage`: `panic` → panics (`asked to panic`); anything else is echoed.
//! - `faulty.FailOnMessage`: `fail` → its handler returns the error `asked to fail`; anything
//!   else is echoed.
//! - `faulty.PanicInCreate`: its constructor panics (`constructor panicked on purpose`).
//! - `faulty.Spawner`: `create TYPE [HASH [NAME]]` creates a child (`-` as HASH means "my own
//!   version") and answers `created <address>`; `send MSG` sends `MSG` to the last child;
//!   `cap NAME` answers `cap NAME = VALUE` (the node's capability value, `none` if absent). What
//!   happens to a child comes back to whoever asked for it: `child exited: <reason>`,
//!   `poison: <details>`, and any text the child sends as `relay: <text>`.
//! - `faulty.Gatekeeper`: `register` makes it the source authority (answer `registered`); it
//!   accepts every source except packages named `rejected-*`.
//! - `faulty.Picky` (requires `picky`): an echo that needs a capability nobody has by default.
//! - `faulty.Roomy` (requires `mem>=32`): an echo that needs a capability value.
//! - `faulty.Blue` (requires `Blue`): a `faulty.Spawner` that needs the capability `Blue`.
//! - `faulty.Stall`: `register` makes it the source authority (answer `registered`); it never
//!   answers `ValidateSource`, so every load stays `validating` until it times out.
//! - `faulty.Watcher`: `watch` starts watching the convention (answer `watching`) and relays
//!   every `ActorSystemConventionUpdate` to whoever asked, as
//!   `update <node> added=<bool> <change:?> [<caps, comma-separated>]`; `unwatch` stops it
//!   (answer `unwatched`).
//! - `faulty.Spinner`: `spin N` busy-loops N milliseconds on its thread (a real CPU spin, not a
//!   sleep: the thread stays busy, as with a slow handler), then answers `spun N`; `count`
//!   answers how many messages it handled before this one; `spin until released` busy-loops
//!   until any Spinner of the same loaded version is sent `release` (answer `released`), then
//!   answers `spun until released` (`gave up spinning` after [`SPIN_LIMIT`], so a broken
//!   build cannot spin forever); `spinning?` answers `yes` while such a spin runs, else `no`;
//!   any other text is answered as it is (the bare text, for tests that check order by content).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use troupe_actor_abi::prelude::*;

#[path = "../../../plugin-common/echo.rs"]
mod common;
use common::{echo, Echo};

/// `faulty.PanicOnMessage`.
struct PanicOnMessage;
impl Actor for PanicOnMessage {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(PanicOnMessage)
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if msg.text() == Some("panic") {
            panic!("asked to panic");
        }
        echo(ctx, &msg);
        Ok(())
    }
}

/// `faulty.FailOnMessage`.
struct FailOnMessage;
impl Actor for FailOnMessage {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(FailOnMessage)
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if msg.text() == Some("fail") {
            return Err(ActorError::msg("asked to fail"));
        }
        echo(ctx, &msg);
        Ok(())
    }
}

/// `faulty.PanicInCreate`.
struct PanicInCreate;
impl Actor for PanicInCreate {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        panic!("constructor panicked on purpose")
    }
    fn receive(&mut self, _ctx: &mut Context, _msg: Message) -> ActorResult {
        Ok(())
    }
}

/// `faulty.Spawner`.
#[derive(Default)]
struct Spawner {
    /// Every child created on command → who asked for it. Kept after the child exits, so that
    /// messages returned late as `PoisonMessage` still reach the right requester.
    requesters: BTreeMap<Address, Address>,
    /// The target of `send`.
    last_child: Option<Address>,
    /// Where text from anyone else (the children's replies) is relayed.
    last_requester: Option<Address>,
}

impl Spawner {
    /// `create TYPE [HASH [NAME]]`.
    fn create(&mut self, ctx: &mut Context, from: &Address, args: &str) {
        let mut words = args.split_whitespace();
        let Some(type_name) = words.next() else {
            ctx.send_text(from, "usage: create TYPE [HASH|- [NAME]]");
            return;
        };
        let source_hash = words.next().filter(|h| *h != "-").map(str::to_string);
        let global_name = words.next().map(str::to_string);
        let spec = CreateSpec {
            type_name: type_name.to_string(),
            source_hash,
            global_name,
            ..CreateSpec::default()
        };
        match ctx.create_with(spec) {
            Ok(child) => {
                ctx.send_text(from, &format!("created {child}"));
                self.requesters.insert(child.clone(), from.clone());
                self.last_child = Some(child);
            }
            Err(e) => ctx.send_text(from, &format!("create failed: {}", e.message())),
        }
    }

    /// Who should hear about `child`: its requester, else the last one.
    fn requester_of(&self, child: &Address) -> Option<Address> {
        self.requesters.get(child).or(self.last_requester.as_ref()).cloned()
    }

    fn on_text(&mut self, ctx: &mut Context, from: Address, text: &str) {
        let is_child = self.requesters.contains_key(&from);
        if !is_child {
            if let Some(args) = text.strip_prefix("create ") {
                self.last_requester = Some(from.clone());
                self.create(ctx, &from, args);
                return;
            }
            if let Some(name) = text.strip_prefix("cap ") {
                let value = ctx.capability(name).unwrap_or_else(|| "none".into());
                ctx.send_text(&from, &format!("cap {name} = {value}"));
                return;
            }
            if let Some(body) = text.strip_prefix("send ") {
                self.last_requester = Some(from.clone());
                match self.last_child.clone() {
                    Some(child) => ctx.send_text(&child, body),
                    None => ctx.send_text(&from, "no child to send to"),
                }
                return;
            }
        }
        match &self.last_requester {
            Some(r) if *r != from => {
                let r = r.clone();
                ctx.send_text(&r, &format!("relay: {text}"));
            }
            _ => ctx.send_text(&from, &format!("unknown command: {text}")),
        }
    }
}

impl Actor for Spawner {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Spawner::default())
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let (Some(text), Some(from)) = (msg.text(), msg.sender()) {
            self.on_text(ctx, from.clone(), text);
            return Ok(());
        }
        match msg.system() {
            Some(SystemMessage::ChildActorExited { child, reason }) => {
                if let Some(r) = self.requester_of(child) {
                    ctx.send_text(&r, &format!("child exited: {reason}"));
                }
            }
            Some(SystemMessage::PoisonMessage { target, details, .. }) => {
                if let Some(r) = self.requester_of(target) {
                    ctx.send_text(&r, &format!("poison: {details}"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Why the gatekeeper refuses a source, shown to whoever loaded it.
const REFUSAL: &str = "the gatekeeper refuses packages named rejected-*";

/// `faulty.Gatekeeper`.
struct Gatekeeper;
impl Actor for Gatekeeper {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Gatekeeper)
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if msg.text() == Some("register") {
            ctx.register_source_authority();
            if let Some(from) = msg.sender() {
                let from = from.clone();
                ctx.send_text(&from, "registered");
            }
            return Ok(());
        }
        if let Some(SystemMessage::ValidateSource { hash, package, .. }) = msg.system() {
            let Some(asker) = msg.sender() else {
                ctx.log(log_level::ERROR, &format!("ValidateSource for {hash} has no sender to answer"));
                return Ok(());
            };
            let accepted = !package.starts_with("rejected-");
            let answer = SystemMessage::ValidatedSource {
                hash: hash.clone(),
                accepted,
                reason: (!accepted).then(|| REFUSAL.to_string()),
            };
            let asker = asker.clone();
            ctx.send(&asker, Payload::System(answer));
            return Ok(());
        }
        echo(ctx, &msg);
        Ok(())
    }
}

/// `faulty.Stall`.
struct Stall;
impl Actor for Stall {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Stall)
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let (Some("register"), Some(from)) = (msg.text(), msg.sender()) {
            let from = from.clone();
            ctx.register_source_authority();
            ctx.send_text(&from, "registered");
        }
        // ValidateSource: never answered, on purpose.
        Ok(())
    }
}

/// `faulty.Watcher`.
#[derive(Default)]
struct Watcher {
    /// Who hears the updates: the last one who sent `watch`.
    requester: Option<Address>,
}

impl Actor for Watcher {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Watcher::default())
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let (Some(text), Some(from)) = (msg.text(), msg.sender()) {
            let from = from.clone();
            match text {
                "watch" => {
                    self.requester = Some(from.clone());
                    ctx.send_text(&from, "watching");
                    ctx.watch_convention(true);
                }
                "unwatch" => {
                    ctx.watch_convention(false);
                    ctx.send_text(&from, "unwatched");
                }
                other => ctx.send_text(&from, &format!("unknown command: {other}")),
            }
            return Ok(());
        }
        if let Some(SystemMessage::ActorSystemConventionUpdate { node, capabilities, added, change }) =
            msg.system()
        {
            if let Some(r) = self.requester.clone() {
                let text = format!("update {node} added={added} {change:?} [{}]", capabilities.join(","));
                ctx.send_text(&r, &text);
            }
        }
        Ok(())
    }
}

/// Whether a `spin until released` runs now. One per loaded version (the cdylib's own static):
/// a sibling Spinner reads it to say whether it answers while another one spins.
static SPINNING: AtomicBool = AtomicBool::new(false);

/// Set by `release`, read (and reset) by the spin it ends.
static RELEASED: AtomicBool = AtomicBool::new(false);

/// The longest a `spin until released` runs unreleased: a guard for a test that fails (its
/// sibling never answered, so nobody releases it), long past any test's own deadline.
const SPIN_LIMIT: Duration = Duration::from_secs(120);

/// `faulty.Spinner`.
#[derive(Default)]
struct Spinner {
    /// Messages handled so far (of any kind).
    handled: u64,
}

impl Spinner {
    fn on_text(&self, ctx: &mut Context, from: &Address, text: &str) {
        match text {
            "count" => return ctx.send_text(from, &self.handled.to_string()),
            "spinning?" => {
                return ctx.send_text(from, if SPINNING.load(Ordering::SeqCst) { "yes" } else { "no" })
            }
            "release" => {
                RELEASED.store(true, Ordering::SeqCst);
                return ctx.send_text(from, "released");
            }
            "spin until released" => return ctx.send_text(from, spin_until_released()),
            _ => {}
        }
        let Some(ms) = text.strip_prefix("spin ") else {
            ctx.send_text(from, text);
            return;
        };
        match ms.trim().parse::<u64>() {
            Ok(ms) => {
                let (start, d) = (Instant::now(), Duration::from_millis(ms));
                while start.elapsed() < d {
                    std::hint::spin_loop();
                }
                ctx.send_text(from, &format!("spun {ms}"));
            }
            Err(_) => ctx.send_text(from, &format!("usage: spin MILLISECONDS (not {ms:?})")),
        }
    }
}

/// Spins until `release` (or [`SPIN_LIMIT`]); what the spinner answers.
fn spin_until_released() -> &'static str {
    let start = Instant::now();
    SPINNING.store(true, Ordering::SeqCst);
    let released = loop {
        if RELEASED.swap(false, Ordering::SeqCst) {
            break true;
        }
        if start.elapsed() > SPIN_LIMIT {
            break false;
        }
        std::hint::spin_loop();
    };
    SPINNING.store(false, Ordering::SeqCst);
    if released {
        "spun until released"
    } else {
        "gave up spinning"
    }
}

impl Actor for Spinner {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Spinner::default())
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let (Some(text), Some(from)) = (msg.text(), msg.sender()) {
            let from = from.clone();
            self.on_text(ctx, &from, text);
        }
        self.handled += 1;
        Ok(())
    }
}

troupe_actor_abi::export_plugin!(actors: [
    "faulty.Echo" => Echo,
    "faulty.PanicOnMessage" => PanicOnMessage,
    "faulty.FailOnMessage" => FailOnMessage,
    "faulty.PanicInCreate" => PanicInCreate,
    "faulty.Spawner" => Spawner,
    "faulty.Gatekeeper" => Gatekeeper,
    "faulty.Picky" => Echo requires ["picky"],
    "faulty.Roomy" => Echo requires ["mem>=32"],
    "faulty.Blue" => Spawner requires ["Blue"],
    "faulty.Watcher" => Watcher,
    "faulty.Stall" => Stall,
    "faulty.Spinner" => Spinner,
]);
