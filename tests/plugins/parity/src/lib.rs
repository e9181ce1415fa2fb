//! Test plugin for issue 15: actors driven by text commands from a test client (their "boss":
//! whoever sent the last command), reporting what the runtime tells them as text.
//!
//! - `parity.Watcher`: `subscribe` / `unsubscribe` source notifications; reports
//!   `loaded HASH INFO` and `unloaded HASH`.
//! - `parity.Loader`: system calls. A `parity/Load` typed message `(zip bytes, info)` loads;
//!   `unload HASH`, `addcap NAME`, `delcap NAME`, `shutdown`; each outcome is reported as
//!   `ok CALL: VALUE` or `error CALL: WHY`. `parity/LoadAndUse` loads, then creates a
//!   `faulty.Echo` from the new hash, sends it `work` and unloads the hash at once; the echo is
//!   reported as `relay: echo: work`.
//! - `parity.Asker`: `ask ADDRESS TIMEOUT_MS TEXT` asks from inside the actor and reports
//!   `asked #ID`, then `reply #ID from ADDRESS: TEXT` or `timeout #ID`.
//! - `parity.Late`: answers each text after `DELAY_MS` (its first word), by wake-up; reports a
//!   bounced answer to its boss as `bounced: DETAILS`.
//! - `parity.Parent`: `spawn TYPE`, `supervise TYPE MAX WITHIN_MS BACKOFF_MS`,
//!   `supervise-at TYPE HASH REQUIREMENT MAX`, `supervise-named TYPE NAME`, `named TYPE NAME`
//!   create children (reported `child ADDRESS`); `tell ADDRESS TEXT` sends;
//!   reports `exited CHILD: REASON` and `restarted CHILD (was PREVIOUS) after REASON, restart N`.
//! - `parity.Fragile`: `ping` → `alive N` (N: messages since it was created), `panic` panics,
//!   `name` → `name: NAME` or `name: None`; `spin until released` busy-loops until any Fragile
//!   of the same loaded version is sent `release` (answer `released`), then answers `spun`;
//!   its status adds `seen`.
//! - `parity.BadCtor`: its constructor always fails.
//! - `parity.BrokenAuthority`: `register` makes it the source authority (`registered`); its
//!   handler fails on every `ValidateSource`.

use std::time::Duration;

use troupe_actor_abi::prelude::*;

/// Remembers who to report to.
#[derive(Default)]
struct Boss(Option<Address>);

impl Boss {
    fn from(&mut self, msg: &Message) {
        if msg.text().is_some() || matches!(msg.payload(), Payload::Typed { .. }) {
            if let Some(s) = msg.sender() {
                self.0 = Some(s.clone());
            }
        }
    }
    fn tell(&self, ctx: &mut Context, text: &str) {
        if let Some(b) = &self.0 {
            ctx.send_text(b, text);
        }
    }
}

fn parse_address(s: &str) -> ActorResult<Address> {
    let (node, id) = s.rsplit_once('#').ok_or_else(|| ActorError::msg(format!("not an address: {s}")))?;
    Ok(Address { node: node.to_string(), id: u64::from_str_radix(id, 16)? })
}

// ---- source notifications ----------------------------------------------------------------

#[derive(Default)]
struct Watcher {
    boss: Boss,
}

impl Actor for Watcher {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Watcher::default())
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        self.boss.from(&msg);
        match (msg.text(), msg.system()) {
            (Some("subscribe"), _) => ctx.notify_on_source_availability(true),
            (Some("unsubscribe"), _) => {
                ctx.notify_on_source_availability(false);
                self.boss.tell(ctx, "unsubscribed");
            }
            (Some(other), _) => self.boss.tell(ctx, &format!("echo: {other}")),
            (_, Some(SystemMessage::LoadedSource { hash, info })) => {
                self.boss.tell(ctx, &format!("loaded {hash} {info}"))
            }
            (_, Some(SystemMessage::UnloadedSource { hash, .. })) => {
                self.boss.tell(ctx, &format!("unloaded {hash}"))
            }
            _ => {}
        }
        Ok(())
    }
}

// ---- system calls -------------------------------------------------------------------------

/// A zip to load and where it came from.
#[derive(serde::Serialize, serde::Deserialize)]
struct Load(Vec<u8>, String);
impl Typed for Load {
    const TAG: &'static str = "parity/Load";
}

/// A zip to load, then use at once and unload (scenario 18).
#[derive(serde::Serialize, serde::Deserialize)]
struct LoadAndUse(Vec<u8>, String);
impl Typed for LoadAndUse {
    const TAG: &'static str = "parity/LoadAndUse";
}

#[derive(Default)]
struct Loader {
    boss: Boss,
    /// Pending calls: request id → what it was.
    calls: Vec<(RequestId, String)>,
    /// The load whose version is used and unloaded at once.
    use_after: Option<RequestId>,
}

impl Loader {
    fn call(&mut self, ctx: &mut Context, what: &str, call: SystemCall) -> RequestId {
        let id = ctx.system_call(call);
        self.calls.push((id, what.to_string()));
        id
    }
}

impl Actor for Loader {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Loader::default())
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let Some(echo) = msg.text().filter(|t| t.starts_with("echo: ")) {
            // A reply from the version loaded and unloaded at once.
            self.boss.tell(ctx, &format!("relay: {echo}"));
            return Ok(());
        }
        self.boss.from(&msg);
        if let Some(load) = msg.decode::<Load>() {
            let Load(zip, info) = load?;
            self.call(ctx, "load", SystemCall::LoadSource { zip, info });
            return Ok(());
        }
        if let Some(load) = msg.decode::<LoadAndUse>() {
            let LoadAndUse(zip, info) = load?;
            let id = self.call(ctx, "load", SystemCall::LoadSource { zip, info });
            self.use_after = Some(id);
            return Ok(());
        }
        if let Some(text) = msg.text() {
            let mut words = text.split_whitespace();
            match (words.next(), words.next()) {
                (Some("unload"), Some(hash)) => {
                    self.call(ctx, "unload", SystemCall::UnloadSource { hash: hash.into() });
                }
                (Some("addcap"), Some(name)) => {
                    self.call(ctx, "chgcap", SystemCall::ChangeCapability { add: true, name: name.into() });
                }
                (Some("delcap"), Some(name)) => {
                    self.call(ctx, "chgcap", SystemCall::ChangeCapability { add: false, name: name.into() });
                }
                (Some("shutdown"), _) => {
                    self.call(ctx, "shutdown", SystemCall::ShutdownNode);
                }
                _ => self.boss.tell(ctx, &format!("unknown command: {text}")),
            }
            return Ok(());
        }
        if let Some(SystemMessage::SystemCallResult { request, outcome }) = msg.system() {
            let Some(i) = self.calls.iter().position(|(id, _)| id == request) else {
                self.boss.tell(ctx, &format!("an answer to a call never made: #{request}"));
                return Ok(());
            };
            let (id, what) = self.calls.remove(i);
            match outcome {
                Ok(v) => {
                    self.boss.tell(ctx, &format!("ok {what}: {v}"));
                    if self.use_after == Some(id) {
                        let echo = ctx.create_with(CreateSpec {
                            type_name: "faulty.Echo".into(),
                            source_hash: Some(v.clone()),
                            ..CreateSpec::default()
                        })?;
                        ctx.send_text(&echo, "work");
                        self.call(ctx, "unload", SystemCall::UnloadSource { hash: v.clone() });
                    }
                }
                Err(e) => self.boss.tell(ctx, &format!("error {what}: {e}")),
            }
        }
        if let Some(SystemMessage::ChildActorExited { child, reason }) = msg.system() {
            self.boss.tell(ctx, &format!("exited {child}: {reason}"));
        }
        Ok(())
    }
}

// ---- asks -----------------------------------------------------------------------------------

#[derive(Default)]
struct Asker {
    boss: Boss,
    pending: Vec<RequestId>,
}

impl Actor for Asker {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Asker::default())
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        self.boss.from(&msg);
        if let Some(text) = msg.text() {
            let mut parts = text.splitn(4, ' ');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some("ask"), Some(to), Some(ms), Some(what)) => {
                    let to = parse_address(to)?;
                    let id = ctx.ask(&to, what, Duration::from_millis(ms.parse()?));
                    self.pending.push(id);
                    self.boss.tell(ctx, &format!("asked #{}", id.0));
                }
                (Some("ping"), ..) => self.boss.tell(ctx, "pong"),
                _ => self.boss.tell(ctx, &format!("unknown command: {text}")),
            }
            return Ok(());
        }
        match msg.system() {
            Some(SystemMessage::AskReply { request, from, reply }) => {
                let known = self.pending.iter().position(|id| id == request).map(|i| self.pending.remove(i));
                let from = from.as_ref().map(|a| a.to_string()).unwrap_or_else(|| "the runtime".into());
                let what = match &**reply {
                    Payload::Text(t) => t.clone(),
                    other => format!("{other:?}"),
                };
                let tag = if known.is_some() { "reply" } else { "unexpected reply" };
                self.boss.tell(ctx, &format!("{tag} #{request} from {from}: {what}"));
            }
            Some(SystemMessage::AskTimedOut { request, .. }) => {
                let known = self.pending.iter().position(|id| id == request).map(|i| self.pending.remove(i));
                let tag = if known.is_some() { "timeout" } else { "unexpected timeout" };
                self.boss.tell(ctx, &format!("{tag} #{request}"));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Answers each text (`DELAY_MS ...`) after the delay.
#[derive(Default)]
struct Late {
    boss: Option<Address>,
}

impl Actor for Late {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Late::default())
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let (Some(text), Some(from)) = (msg.text(), msg.sender().cloned()) {
            if text == "boss" {
                self.boss = Some(from.clone());
                ctx.send_text(&from, "boss noted");
                return Ok(());
            }
            let ms: u64 = text.split_whitespace().next().unwrap_or("0").parse()?;
            let note = Payload::Text(format!("{from} {text}"));
            ctx.wakeup_after(Duration::from_millis(ms), Some(note));
            return Ok(());
        }
        match msg.system() {
            Some(SystemMessage::Wakeup { payload: Some(p) }) => {
                if let Payload::Text(t) = &**p {
                    if let Some((to, text)) = t.split_once(' ') {
                        ctx.send_text(&parse_address(to)?, &format!("late answer to {text}"));
                    }
                }
            }
            Some(SystemMessage::PoisonMessage { details, .. }) => {
                if let Some(b) = self.boss.clone() {
                    ctx.send_text(&b, &format!("bounced: {details}"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

// ---- supervision and exits ----------------------------------------------------------------

#[derive(Default)]
struct Parent {
    boss: Boss,
}

impl Actor for Parent {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Parent::default())
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        self.boss.from(&msg);
        if let Some(text) = msg.text() {
            let words: Vec<&str> = text.split_whitespace().collect();
            let spec = |t: &str| CreateSpec { type_name: t.into(), ..CreateSpec::default() };
            let child = match words.as_slice() {
                ["spawn", t] => ctx.create_with(spec(t)),
                ["named", t, name] => {
                    ctx.create_with(CreateSpec { global_name: Some(name.to_string()), ..spec(t) })
                }
                ["supervise", t, max, within, backoff] => {
                    let policy =
                        RestartPolicy::on_failure(max.parse()?, Duration::from_millis(within.parse()?))
                            .backoff(Duration::from_millis(backoff.parse()?), Duration::from_secs(2));
                    ctx.create_supervised(spec(t), policy)
                }
                ["supervise-at", t, hash, req, max] => {
                    let policy = RestartPolicy::on_failure(max.parse()?, Duration::from_secs(60));
                    let spec = CreateSpec {
                        type_name: t.to_string(),
                        requirements: vec![req.to_string()],
                        source_hash: Some(hash.to_string()),
                        ..CreateSpec::default()
                    };
                    ctx.create_supervised(spec, policy)
                }
                ["supervise-named", t, name] => {
                    let policy = RestartPolicy::on_failure(5, Duration::from_secs(60));
                    ctx.create_supervised(
                        CreateSpec { global_name: Some(name.to_string()), ..spec(t) },
                        policy,
                    )
                }
                ["tell", to, rest @ ..] => {
                    ctx.send_text(&parse_address(to)?, &rest.join(" "));
                    return Ok(());
                }
                _ => {
                    self.boss.tell(ctx, &format!("unknown command: {text}"));
                    return Ok(());
                }
            };
            match child {
                Ok(a) => self.boss.tell(ctx, &format!("child {a}")),
                Err(e) => self.boss.tell(ctx, &format!("create refused: {}", e.message())),
            }
            return Ok(());
        }
        match msg.system() {
            Some(SystemMessage::ChildActorExited { child, reason }) => {
                self.boss.tell(ctx, &format!("exited {child}: {reason}"))
            }
            Some(SystemMessage::ChildActorRestarted { child, previous, reason, restarts }) => self
                .boss
                .tell(ctx, &format!("restarted {child} (was {previous}) after {reason}, restart {restarts}")),
            _ => {}
        }
        Ok(())
    }
}

/// Set by a Fragile's `release`, taken by the `spin until released` it ends (one per loaded
/// version: the cdylib's own static).
static RELEASED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The longest a `spin until released` runs unreleased: a guard for a failing test, long past
/// any test's own deadline.
const SPIN_LIMIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Fragile {
    seen: u64,
}

impl Actor for Fragile {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Fragile::default())
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        self.seen += 1;
        let (Some(text), Some(from)) = (msg.text(), msg.sender().cloned()) else { return Ok(()) };
        match text {
            "panic" => panic!("asked to panic"),
            "ping" => ctx.send_text(&from, &format!("alive {}", self.seen)),
            "name" => {
                let name = ctx.global_name().unwrap_or_else(|| "None".into());
                ctx.send_text(&from, &format!("name: {name}"));
            }
            "release" => {
                RELEASED.store(true, std::sync::atomic::Ordering::SeqCst);
                ctx.send_text(&from, "released");
            }
            "spin until released" => {
                let until = std::time::Instant::now() + SPIN_LIMIT;
                while !RELEASED.swap(false, std::sync::atomic::Ordering::SeqCst)
                    && std::time::Instant::now() < until
                {
                    std::hint::spin_loop();
                }
                ctx.send_text(&from, "spun");
            }
            other => {
                if let Some(ms) = other.strip_prefix("spin ") {
                    let until = std::time::Instant::now() + Duration::from_millis(ms.parse()?);
                    while std::time::Instant::now() < until {
                        std::hint::spin_loop();
                    }
                    ctx.send_text(&from, "spun");
                } else {
                    ctx.send_text(&from, &format!("echo: {other}"));
                }
            }
        }
        Ok(())
    }
    fn status(&self) -> Vec<(String, String)> {
        vec![("seen".into(), self.seen.to_string())]
    }
}

struct BadCtor;

impl Actor for BadCtor {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Err(ActorError::msg("this constructor always fails"))
    }
    fn receive(&mut self, _ctx: &mut Context, _msg: Message) -> ActorResult {
        Ok(())
    }
}

struct BrokenAuthority;

impl Actor for BrokenAuthority {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(BrokenAuthority)
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let (Some("register"), Some(from)) = (msg.text(), msg.sender().cloned()) {
            ctx.register_source_authority();
            ctx.send_text(&from, "registered");
            return Ok(());
        }
        if let Some(SystemMessage::ValidateSource { .. }) = msg.system() {
            return Err(ActorError::msg("the broken authority fails on every ValidateSource"));
        }
        Ok(())
    }
}

troupe_actor_abi::export_plugin!(actors: [
    "parity.Watcher" => Watcher,
    "parity.Loader" => Loader,
    "parity.Asker" => Asker,
    "parity.Late" => Late,
    "parity.Parent" => Parent,
    "parity.Fragile" => Fragile,
    "parity.BadCtor" => BadCtor,
    "parity.BrokenAuthority" => BrokenAuthority,
]);
