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
