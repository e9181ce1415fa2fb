//! Unit tests for the parts of the SDK that run without a node: typed payloads (the fast
//! encoding path must write what the plain one writes), errors, and the entry points' panic
//! and status handling. What needs a real host table is covered by the plugin integration
//! tests and the doc examples.

use std::ffi::c_void;

use serde::{Deserialize, Serialize};

use super::entry::{guarded, panic_message};
use super::*;
use crate::abi::{self, OutSink, RawStr};
use crate::message::{self, Incoming, Payload};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Greet {
    name: String,
}
impl Typed for Greet {
    const TAG: &'static str = "test/Greet";
}

/// What `send` writes for `value`, through the fast path each `IntoPayload` may override.
fn fast_bytes(value: impl IntoPayload) -> Vec<u8> {
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    value.__encode_into(&mut out, &mut scratch);
    out
}

#[test]
fn fast_encoding_writes_the_same_bytes_as_the_payload() {
    let greet = Greet { name: "Ada".into() };
    assert_eq!(fast_bytes("hi"), message::encode(&Payload::Text("hi".into())));
    assert_eq!(fast_bytes(String::from("hi")), message::encode(&Payload::Text("hi".into())));
    assert_eq!(fast_bytes(&greet), message::encode(&greet.to_payload()));
    let raw = Payload::Text("raw".into());
    assert_eq!(fast_bytes(raw.clone()), message::encode(&raw));
}

#[test]
fn decode_payload_tells_other_types_from_bad_bodies() {
    let greet = Greet { name: "Ada".into() };
    assert_eq!(decode_payload::<Greet>(&greet.to_payload()).and_then(Result::ok), Some(greet));
    assert!(decode_payload::<Greet>(&Payload::Text("hi".into())).is_none());
    let other = Payload::Typed { tag: "test/Other".into(), body: Vec::new() };
    assert!(decode_payload::<Greet>(&other).is_none());
    let bad = Payload::Typed { tag: Greet::TAG.into(), body: vec![0xc1] };
    match decode_payload::<Greet>(&bad) {
        Some(Err(e)) => assert!(e.message().starts_with("bad test/Greet: "), "{e:?}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn actor_error_keeps_the_displayed_text() {
    let e: ActorError = std::fmt::Error.into();
    assert_eq!(e.message(), std::fmt::Error.to_string());
    assert_eq!(format!("{:?}", ActorError::msg("plain")), "plain");
}

#[test]
fn panic_messages_name_the_payload_when_it_is_text() {
    assert_eq!(panic_message(Box::new("static")), "panicked: static");
    assert_eq!(panic_message(Box::new(String::from("owned"))), "panicked: owned");
    assert_eq!(panic_message(Box::new(7u8)), "panicked");
}

#[test]
fn guarded_turns_errors_and_panics_into_statuses() {
    let mut out = Vec::new();
    assert_eq!(guarded(OutSink::for_vec(&mut out), || Ok(())), abi::STATUS_OK);
    assert!(out.is_empty());

    let st = guarded(OutSink::for_vec(&mut out), || Err((abi::STATUS_BAD_INPUT, "nope".into())));
    assert_eq!((st, out.as_slice()), (abi::STATUS_BAD_INPUT, &b"nope"[..]));

    out.clear();
    let st = guarded(OutSink::for_vec(&mut out), || panic!("boom"));
    assert_eq!((st, out.as_slice()), (abi::STATUS_PANIC, &b"panicked: boom"[..]));
}

/// Fails when asked to; never touches its context, so it runs without a host.
struct Quiet;
impl Actor for Quiet {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Quiet)
    }
    fn receive(&mut self, _ctx: &mut Context, msg: Message) -> ActorResult {
        match msg.text() {
            Some("fail") => Err(ActorError::msg("asked to fail")),
            _ => Ok(()),
        }
    }
}

fn constructors(name: &str, ctx: &mut Context) -> Option<ActorResult<Box<dyn ErasedActor>>> {
    (name == "t.Quiet").then(|| __construct::<Quiet>(ctx))
}

/// Calls `__new_actor` as the node would; returns the status, the error text and the actor.
fn new_actor(name: &[u8]) -> (i32, String, *mut c_void) {
    let (mut err, mut actor) = (Vec::new(), std::ptr::null_mut());
    // SAFETY: the name and out pointers are valid for the call; no host is needed because
    // `Quiet::create` does not use its context.
    let st = unsafe {
        __new_actor(
            std::ptr::null_mut(),
            RawStr::from_bytes(name),
            &mut actor,
            OutSink::for_vec(&mut err),
            constructors,
        )
    };
    (st, String::from_utf8_lossy(&err).into_owned(), actor)
}

#[test]
fn new_actor_reports_unknown_and_undecodable_type_names() {
    let (st, err, actor) = new_actor(b"t.Nope");
    assert_eq!((st, err.as_str()), (abi::STATUS_UNKNOWN_TYPE, "this plugin exports no actor type t.Nope"));
    assert!(actor.is_null());
    let (st, err, _) = new_actor(b"t.\xff");
    assert_eq!((st, err.as_str()), (abi::STATUS_BAD_INPUT, "type name is not UTF-8"));
}

#[test]
fn an_actor_lives_from_new_actor_to_drop_actor() {
    let (st, _, actor) = new_actor(b"t.Quiet");
    assert_eq!(st, abi::STATUS_OK);
    assert!(!actor.is_null());

    let handle = |bytes: &[u8]| {
        let mut err = Vec::new();
        // SAFETY: `actor` came from `__new_actor` and is dropped only below; `Quiet` does not
        // use its context, so no host is needed.
        let st = unsafe {
            __handle(actor, std::ptr::null_mut(), RawStr::from_bytes(bytes), OutSink::for_vec(&mut err))
        };
        (st, String::from_utf8_lossy(&err).into_owned())
    };
    let msg = |text: &str| message::encode(&Incoming { sender: None, payload: Payload::Text(text.into()) });
    assert_eq!(handle(&msg("hi")), (abi::STATUS_OK, String::new()));
    assert_eq!(handle(&msg("fail")), (abi::STATUS_ERROR, "asked to fail".to_string()));
    let (st, err) = handle(b"\xc1");
    assert_eq!(st, abi::STATUS_BAD_INPUT);
    assert!(err.starts_with("undecodable message: "), "{err}");

    let mut err = Vec::new();
    // SAFETY: `actor` came from `__new_actor` and is dropped exactly once, here.
    assert_eq!(unsafe { __drop_actor(actor, OutSink::for_vec(&mut err)) }, abi::STATUS_OK);
}

/// Live upgrade through the root `export_plugin!` generates, driven as the node drives it:
/// `new_actor`, `handle`, `export_state`, `import_actor` and `drop_actor` by function pointer.
/// None of the actors touches its context (there is no host table in these tests).
mod upgrade {
    use std::ffi::c_void;

    use serde::{Deserialize, Serialize};

    use crate::abi::{self, OutSink, RawStr, Status};
    use crate::message::{self, Incoming, MigratedState, Migration, Payload, VersionIdentity};
    use crate::sdk::{Actor, ActorError, ActorResult, Context, Message, State, Typed, Upgrade};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct CountV1 {
        count: u64,
    }
    impl Typed for CountV1 {
        const TAG: &'static str = "t/Count.v1";
    }

    /// Opts in: exports `t/Count.v1`, imports only that shape; `inc` adds one.
    struct Counter {
        count: u64,
    }
    impl Actor for Counter {
        fn create(_ctx: &mut Context) -> ActorResult<Self> {
            Ok(Counter { count: 0 })
        }
        fn receive(&mut self, _ctx: &mut Context, msg: Message) -> ActorResult {
            if msg.text() == Some("inc") {
                self.count += 1;
            }
            Ok(())
        }
        fn export_state(&self) -> Option<ActorResult<State>> {
            Some(Ok(State::of(&CountV1 { count: self.count })))
        }
        fn import_state(_ctx: &mut Context, from: Upgrade) -> ActorResult<Self> {
            match from.decode::<CountV1>() {
                Some(old) => Ok(Counter { count: old?.count }),
                None => Err(ActorError::msg(format!(
                    "unknown state shape {} from {} {}",
                    from.state().tag(),
                    from.from().package,
                    from.from().version
                ))),
            }
        }
    }

    /// Does not opt in: both defaults.
    struct Plain;
    impl Actor for Plain {
        fn create(_ctx: &mut Context) -> ActorResult<Self> {
            Ok(Plain)
        }
        fn receive(&mut self, _ctx: &mut Context, _msg: Message) -> ActorResult {
            Ok(())
        }
    }

    /// Export fails on purpose; import panics.
    struct Broken;
    impl Actor for Broken {
        fn create(_ctx: &mut Context) -> ActorResult<Self> {
            Ok(Broken)
        }
        fn receive(&mut self, _ctx: &mut Context, _msg: Message) -> ActorResult {
            Ok(())
        }
        fn export_state(&self) -> Option<ActorResult<State>> {
            Some(Err(ActorError::msg("not now")))
        }
        fn import_state(_ctx: &mut Context, _from: Upgrade) -> ActorResult<Self> {
            panic!("import exploded")
        }
    }

    /// Export panics; import uses its context, which has no host table here.
    struct Reckless;
    impl Actor for Reckless {
        fn create(_ctx: &mut Context) -> ActorResult<Self> {
            Ok(Reckless)
        }
        fn receive(&mut self, _ctx: &mut Context, _msg: Message) -> ActorResult {
            Ok(())
        }
        fn export_state(&self) -> Option<ActorResult<State>> {
            panic!("export exploded")
        }
        fn import_state(ctx: &mut Context, _from: Upgrade) -> ActorResult<Self> {
            ctx.log(crate::abi::log_level::INFO, "importing");
            Ok(Reckless)
        }
    }

    crate::export_plugin!(actors: [
        "t.Counter" => Counter,
        "t.Plain" => Plain,
        "t.Broken" => Broken,
        "t.Reckless" => Reckless,
    ]);

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    fn create(name: &str) -> *mut c_void {
        let (mut err, mut actor) = (Vec::new(), std::ptr::null_mut());
        // SAFETY: the name and out pointers are valid for the call.
        let st = unsafe {
            (TROUPE_PLUGIN_ROOT_V1.new_actor)(
                std::ptr::null_mut(),
                RawStr::from_bytes(name.as_bytes()),
                &mut actor,
                OutSink::for_vec(&mut err),
            )
        };
        assert_eq!(st, abi::STATUS_OK, "{}", text(&err));
        actor
    }

    fn handle(actor: *mut c_void, msg: &str) {
        let bytes = message::encode(&Incoming { sender: None, payload: Payload::Text(msg.into()) });
        let mut err = Vec::new();
        // SAFETY: `actor` is live (made by `create` or `import`, not yet dropped).
        let st = unsafe {
            (TROUPE_PLUGIN_ROOT_V1.handle)(
                actor,
                std::ptr::null_mut(),
                RawStr::from_bytes(&bytes),
                OutSink::for_vec(&mut err),
            )
        };
        assert_eq!(st, abi::STATUS_OK, "{}", text(&err));
    }

    /// `export_state` as the node calls it: the status, what was written to `out`, the error.
    fn export(actor: *mut c_void) -> (Status, Vec<u8>, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        // SAFETY: `actor` is live; the sinks outlive the call.
        let st = unsafe {
            (TROUPE_PLUGIN_ROOT_V1.export_state)(
                actor,
                std::ptr::null_mut(),
                OutSink::for_vec(&mut out),
                OutSink::for_vec(&mut err),
            )
        };
        (st, out, text(&err))
    }

    /// `import_actor` as the node calls it: the status, the error and the actor (null unless OK).
    fn import(name: &[u8], from: &[u8]) -> (Status, String, *mut c_void) {
        let (mut err, mut actor) = (Vec::new(), std::ptr::null_mut());
        // SAFETY: every pointer is valid for the call.
        let st = unsafe {
            (TROUPE_PLUGIN_ROOT_V1.import_actor)(
                std::ptr::null_mut(),
                RawStr::from_bytes(name),
                RawStr::from_bytes(from),
                &mut actor,
                OutSink::for_vec(&mut err),
            )
        };
        (st, text(&err), actor)
    }

    fn drop_actor(actor: *mut c_void) {
        let mut err = Vec::new();
        // SAFETY: `actor` is live and dropped exactly once, here.
        assert_eq!(unsafe { (TROUPE_PLUGIN_ROOT_V1.drop_actor)(actor, OutSink::for_vec(&mut err)) }, 0);
    }

    /// A `Migration` from `t` 1.0.0, type `t.Counter`, as the node encodes it.
    fn migration(state: MigratedState) -> Vec<u8> {
        let from = VersionIdentity { package: "t".into(), version: "1.0.0".into(), hash: "ab12".into() };
        message::encode(&Migration { from, from_type: "t.Counter".into(), state })
    }

    fn count_of(actor: *mut c_void) -> u64 {
        let (st, out, err) = export(actor);
        assert_eq!(st, abi::STATUS_OK, "{err}");
        let state: MigratedState = message::decode(&out).expect("export writes a MigratedState");
        State::from(state).decode::<CountV1>().expect("tagged t/Count.v1").expect("decodes").count
    }

    #[test]
    fn an_exported_state_imports_into_a_new_actor_and_leaves_the_old_one_intact() {
        let old = create("t.Counter");
        handle(old, "inc");
        handle(old, "inc");
        let (st, out, _) = export(old);
        assert_eq!(st, abi::STATUS_OK);
        let state: MigratedState = message::decode(&out).expect("a MigratedState");
        assert_eq!(
            state,
            MigratedState { tag: "t/Count.v1".into(), body: message::encode(&CountV1 { count: 2 }) }
        );

        let (st, err, new) = import(b"t.Counter", &migration(state));
        assert_eq!((st, err.as_str()), (abi::STATUS_OK, ""));
        assert!(!new.is_null());
        assert_eq!(count_of(new), 2);
        handle(new, "inc");
        assert_eq!(count_of(new), 3);

        // The export took nothing from the old actor: it counts on where it was.
        handle(old, "inc");
        assert_eq!(count_of(old), 3);
        drop_actor(old);
        drop_actor(new);
    }

    #[test]
    fn an_actor_that_does_not_opt_in_exports_nothing_and_imports_nothing() {
        let plain = create("t.Plain");
        let (st, out, err) = export(plain);
        assert_eq!((st, err.as_str()), (abi::STATUS_UNSUPPORTED, "this actor does not export its state"));
        assert!(out.is_empty());
        drop_actor(plain);

        let from = migration(State::of(&CountV1 { count: 1 }).into());
        let (st, err, actor) = import(b"t.Plain", &from);
        assert_eq!((st, err.as_str()), (abi::STATUS_ERROR, "this actor type does not import state"));
        assert!(actor.is_null());
    }

    #[test]
    fn failed_and_panicking_exports_are_statuses_and_keep_the_actor() {
        let broken = create("t.Broken");
        let (st, out, err) = export(broken);
        assert_eq!((st, err.as_str(), out.is_empty()), (abi::STATUS_ERROR, "not now", true));
        handle(broken, "still here");
        drop_actor(broken);

        let reckless = create("t.Reckless");
        let (st, out, err) = export(reckless);
        assert_eq!(
            (st, err.as_str(), out.is_empty()),
            (abi::STATUS_PANIC, "panicked: export exploded", true)
        );
        handle(reckless, "still here");
        drop_actor(reckless);
    }

    #[test]
    fn imports_report_unknown_types_and_undecodable_input() {
        let from = migration(State::of(&CountV1 { count: 1 }).into());
        let (st, err, actor) = import(b"t.Nope", &from);
        assert_eq!(
            (st, err.as_str()),
            (abi::STATUS_UNKNOWN_TYPE, "this plugin exports no actor type t.Nope")
        );
        assert!(actor.is_null());

        let (st, err, actor) = import(b"t.Counter", b"\xc1");
        assert_eq!(st, abi::STATUS_BAD_INPUT);
        assert!(err.starts_with("undecodable migration: "), "{err}");
        assert!(actor.is_null());

        let (st, err, _) = import(b"t.\xff", &from);
        assert_eq!((st, err.as_str()), (abi::STATUS_BAD_INPUT, "type name is not UTF-8"));
    }

    #[test]
    fn an_import_error_carries_the_actors_message() {
        let other = migration(MigratedState { tag: "t/Count.v0".into(), body: Vec::new() });
        let (st, err, actor) = import(b"t.Counter", &other);
        assert_eq!((st, err.as_str()), (abi::STATUS_ERROR, "unknown state shape t/Count.v0 from t 1.0.0"));
        assert!(actor.is_null());

        let bad_body = migration(State::raw(CountV1::TAG, vec![0xc1]).into());
        let (st, err, _) = import(b"t.Counter", &bad_body);
        assert_eq!(st, abi::STATUS_ERROR);
        assert!(err.starts_with("bad t/Count.v1: "), "{err}");
    }

    #[test]
    fn import_panics_are_caught_even_without_a_host() {
        let from = migration(State::of(&CountV1 { count: 1 }).into());
        let (st, err, actor) = import(b"t.Broken", &from);
        assert_eq!((st, err.as_str()), (abi::STATUS_PANIC, "panicked: import exploded"));
        assert!(actor.is_null());

        // A context used without a host table (no `init`) is a caught panic, not a crash.
        let (st, err, actor) = import(b"t.Reckless", &from);
        assert_eq!((st, err.as_str()), (abi::STATUS_PANIC, "panicked: troupe SDK used before init"));
        assert!(actor.is_null());
    }

    #[test]
    fn a_hand_written_roots_importer_imports_no_type() {
        let from = migration(State::of(&CountV1 { count: 1 }).into());
        let (mut err, mut actor) = (Vec::new(), std::ptr::null_mut());
        // SAFETY: every pointer is valid for the call.
        let st = unsafe {
            crate::sdk::__import_actor(
                std::ptr::null_mut(),
                RawStr::from_bytes(b"t.Counter"),
                RawStr::from_bytes(&from),
                &mut actor,
                OutSink::for_vec(&mut err),
            )
        };
        assert_eq!(
            (st, text(&err).as_str()),
            (abi::STATUS_UNKNOWN_TYPE, "this plugin exports no actor type t.Counter")
        );
        assert!(actor.is_null());
    }

    #[test]
    fn the_root_has_the_upgrade_entry_points() {
        assert!(abi::PluginRoot::has_upgrade(TROUPE_PLUGIN_ROOT_V1.header.root_size));
        assert_eq!(TROUPE_PLUGIN_ROOT_V1.n_actor_types, 4);
    }
}

/// Counts what it handles, refuses runtime messages (so a status request reaching its handler
/// would fail the call) and adds its count to its status.
struct Counted {
    n: u64,
}
impl Actor for Counted {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Counted { n: 0 })
    }
    fn receive(&mut self, _ctx: &mut Context, msg: Message) -> ActorResult {
        if msg.system().is_some() {
            return Err(ActorError::msg("a runtime message reached the handler"));
        }
        self.n += 1;
        Ok(())
    }
    fn status(&self) -> Vec<(String, String)> {
        vec![("n".into(), self.n.to_string())]
    }
}

#[test]
fn the_sdk_answers_status_requests_itself_counting_only_what_the_handler_saw() {
    fn counted(name: &str, ctx: &mut Context) -> Option<ActorResult<Box<dyn ErasedActor>>> {
        (name == "t.Counted").then(|| __construct::<Counted>(ctx))
    }
    let (mut err, mut actor) = (Vec::new(), std::ptr::null_mut());
    // SAFETY: valid pointers for the call; `Counted::create` does not use its context.
    let st = unsafe {
        __new_actor(
            std::ptr::null_mut(),
            RawStr::from_bytes(b"t.Counted"),
            &mut actor,
            OutSink::for_vec(&mut err),
            counted,
        )
    };
    assert_eq!(st, abi::STATUS_OK);
    let handle = |payload: Payload| {
        let bytes = message::encode(&Incoming { sender: None, payload });
        let mut err = Vec::new();
        // SAFETY: `actor` is live; without a sender nothing is sent, so no host is needed.
        unsafe {
            __handle(actor, std::ptr::null_mut(), RawStr::from_bytes(&bytes), OutSink::for_vec(&mut err))
        }
    };
    for _ in 0..3 {
        assert_eq!(handle(Payload::Text("x".into())), abi::STATUS_OK);
    }
    let request = Payload::System(crate::message::SystemMessage::StatusRequest { mailbox: Some(2) });
    assert_eq!(handle(request), abi::STATUS_OK, "the handler saw the status request");
    // SAFETY: `actor` came from `__new_actor`: a `Slot`.
    let slot = unsafe { &*(actor as *const entry::Slot) };
    match slot.status(Some(2)) {
        crate::message::SystemMessage::ActorStatus { type_name, handled, mailbox, extra, .. } => {
            assert_eq!((type_name.as_str(), handled, mailbox), ("t.Counted", 3, 2));
            assert_eq!(extra, [("n".to_string(), "3".to_string())]);
        }
        other => panic!("{other:?}"),
    }
    // SAFETY: dropped exactly once.
    assert_eq!(unsafe { __drop_actor(actor, OutSink::for_vec(&mut err)) }, abi::STATUS_OK);
}

#[test]
fn exit_requests_are_recursive_by_default_and_not_recursive_on_request() {
    // Reference §8 scenario 4: every exit request is an exit request; recursive by default.
    use crate::message::SystemMessage;
    let default = SystemMessage::exit_request();
    let flat = SystemMessage::exit_request().not_recursive();
    for m in [&default, &flat] {
        assert!(matches!(m, SystemMessage::ActorExitRequest { .. }));
    }
    assert_eq!(default.is_recursive(), Some(true));
    assert_eq!(flat.is_recursive(), Some(false));
    assert_eq!(SystemMessage::Wakeup { payload: None }.is_recursive(), None);
    let other = SystemMessage::Wakeup { payload: None };
    assert_eq!(other.clone().not_recursive(), other, "only exit requests change");
}

#[test]
fn restart_policies_back_off_and_restart_only_failures() {
    use crate::message::{CreateError, ExitReason, RestartPolicy};
    use std::time::Duration;
    let p = RestartPolicy::on_failure(3, Duration::from_secs(1));
    assert_eq!(p.delay(1), crate::message::MIN_RESTART_BACKOFF, "the node's floor unless asked for more");
    let p = p.backoff(Duration::from_millis(10), Duration::from_millis(50));
    let delays: Vec<u64> = (1..=5).map(|n| p.delay(n).as_millis() as u64).collect();
    assert_eq!(delays, [10, 20, 40, 50, 50]);
    assert_eq!(p.delay(u32::MAX), Duration::from_millis(50));
    let plugin_error = CreateError::PluginError { type_name: "t.X".into(), message: "boom".into() };
    assert!(RestartPolicy::restarts(&ExitReason::CreateFailed(plugin_error)));
    assert!(RestartPolicy::restarts(&ExitReason::CapabilityLost { requirements: vec![] }));
    assert!(!RestartPolicy::restarts(&ExitReason::NodeStopping));
    assert!(!RestartPolicy::restarts(&ExitReason::CreateFailed(CreateError::ActorSystemShuttingDown)));
}
