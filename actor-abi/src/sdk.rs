//! The safe SDK plugin authors write actors with.
//!
//! An actor is a type implementing [`Actor`]; [`export_plugin!`](crate::export_plugin) exports a
//! crate's actor types (with the capabilities each requires) as the plugin root. Inside a
//! handler, the [`Context`] sends messages, creates children, asks for wake-ups, logs through
//! the node and exits.
//!
//! What the SDK does for you, so that the node can really unload your plugin
//! (`reference/dylib-unloading.md` §2–§3):
//! - every entry point runs inside `catch_unwind`; a panic becomes an error status carrying the
//!   panic message, never an unwind across the boundary;
//! - a silent panic hook is installed at init, so a panic never captures a backtrace (which
//!   would map the plugin file and leak that mapping at unload);
//! - everything you hand the node is copied during the call; nothing you allocate is kept;
//! - the SDK itself never touches `std::thread::current`, thread-locals with destructors, or
//!   threads. Your code must not either: no `thread::spawn`, `thread::current`, blocking
//!   `std::sync::mpsc`, `park`, rayon or crossbeam channels, no `#[global_allocator]`, no
//!   `println!` (use [`Context::log`]), and release in [`on_unload`](crate::export_plugin)
//!   anything your statics own.
//!
//! ```
//! use troupe_actor_abi::prelude::*;
//!
//! struct Echo;
//! impl Actor for Echo {
//!     fn create(_ctx: &mut Context) -> ActorResult<Self> {
//!         Ok(Echo)
//!     }
//!     fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
//!         if let (Some(text), Some(from)) = (msg.text(), msg.sender()) {
//!             ctx.send_text(from, &format!("echo: {text}"));
//!         }
//!         Ok(())
//!     }
//! }
//! troupe_actor_abi::export_plugin!(actors: ["demo.Echo" => Echo]);
//! ```

use crate::abi::{self, HostApi, OutSink, RawStr, Status};
use crate::message::{self, Address, CallInfo, CreateSpec, Incoming, Payload, SystemMessage};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::ffi::c_void;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

/// The node's function table, set by `init` and cleared by `on_unload`. A plain atomic static:
/// no destructor, no thread-local, nothing that pins the library.
static HOST: AtomicPtr<HostApi> = AtomicPtr::new(std::ptr::null_mut());

fn host() -> Option<&'static HostApi> {
    let p = HOST.load(Ordering::Acquire);
    // SAFETY: HOST is only ever set to the table the node passed to `init`, which lives in the
    // node (never unloaded) for the whole process.
    unsafe { p.as_ref() }
}

/// A typed message: a serde value with a stable tag naming its type across versions.
/// Derive serde's traits and pick a tag; send a value with [`Context::send`] (as `&value`) and
/// read one with [`Message::decode`]. The body crosses versions and nodes as msgpack with field
/// names, so a field added as `Option` or with `#[serde(default)]` stays compatible.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use troupe_actor_abi::prelude::*;
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Greet {
///     name: String,
/// }
/// impl Typed for Greet {
///     const TAG: &'static str = "hello/Greet";
/// }
///
/// let payload = Greet { name: "Ada".into() }.to_payload();
/// let back = decode_payload::<Greet>(&payload).expect("the tag matches").expect("the body decodes");
/// assert_eq!(back, Greet { name: "Ada".into() });
/// ```
pub trait Typed: Serialize + DeserializeOwned {
    /// The type's name on the wire, e.g. `encoders/EncodeThis`. Two versions that agree on the
    /// tag and the fields understand each other.
    /// Namespace it (`crate/Type`) and never reuse a tag for another shape.
    ///
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use troupe_actor_abi::prelude::*;
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # struct Greet { name: String }
    /// # impl Typed for Greet { const TAG: &'static str = "hello/Greet"; }
    /// assert_eq!(Greet::TAG, "hello/Greet");
    /// ```
    const TAG: &'static str;

    /// This value as a payload.
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use troupe_actor_abi::prelude::*;
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # struct Greet { name: String }
    /// # impl Typed for Greet { const TAG: &'static str = "hello/Greet"; }
    /// let p = Greet { name: "Ada".into() }.to_payload();
    /// assert!(matches!(&p, Payload::Typed { tag, .. } if tag == "hello/Greet"));
    /// ```
    fn to_payload(&self) -> Payload {
        Payload::Typed { tag: Self::TAG.to_string(), body: message::encode(self) }
    }
}

/// An error from an actor's handler or constructor. Anything that displays converts into it,
/// so `?` works on most errors.
/// Returning one from [`Actor::receive`] fails the handler (the node retries the message once,
/// then returns it to its sender as a `PoisonMessage` carrying this text).
///
/// ```
/// use troupe_actor_abi::prelude::*;
///
/// fn parse_count(text: &str) -> ActorResult<u32> {
///     let n: u32 = text.trim().parse()?; // ParseIntError displays, so `?` converts it
///     if n == 0 {
///         return Err(ActorError::msg("count must be positive"));
///     }
///     Ok(n)
/// }
/// assert_eq!(parse_count("3").ok(), Some(3));
/// assert_eq!(parse_count("0").unwrap_err().message(), "count must be positive");
/// assert_eq!(parse_count("x").unwrap_err().message(), "invalid digit found in string");
/// ```
pub struct ActorError(String);

impl ActorError {
    /// An error with this message.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// let e = ActorError::msg("no such key");
    /// assert_eq!(e.message(), "no such key");
    /// ```
    pub fn msg(text: impl Into<String>) -> ActorError {
        ActorError(text.into())
    }
    /// The message.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// let e: ActorError = "12x".parse::<u8>().unwrap_err().into();
    /// assert_eq!(e.message(), "invalid digit found in string");
    /// ```
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl<E: fmt::Display> From<E> for ActorError {
    fn from(e: E) -> ActorError {
        ActorError(e.to_string())
    }
}

impl fmt::Debug for ActorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What handlers and constructors return.
/// `ActorResult` (no type) is what [`Actor::receive`] returns; `ActorResult<Self>` is what
/// [`Actor::create`] returns.
///
/// ```
/// # use troupe_actor_abi::prelude::*;
/// fn check(text: &str) -> ActorResult {
///     if text.is_empty() {
///         return Err(ActorError::msg("empty message"));
///     }
///     Ok(())
/// }
/// assert!(check("hi").is_ok() && check("").is_err());
/// ```
pub type ActorResult<T = ()> = Result<T, ActorError>;

/// A message handed to an actor.
/// It is either text, a typed value (see [`Typed`]) or a runtime message ([`SystemMessage`]).
///
/// ```
/// use troupe_actor_abi::prelude::*;
///
/// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
///     if let Some(SystemMessage::ActorExitRequest { .. }) = msg.system() {
///         return Ok(()); // nothing to clean up
///     }
///     if let (Some(from), Some(text)) = (msg.sender().cloned(), msg.text()) {
///         ctx.send(&from, text.to_uppercase());
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Message {
    sender: Option<Address>,
    payload: Payload,
}

impl Message {
    /// Who sent it (`None` for the runtime).
    /// Clone it to answer: the borrow of `msg` would otherwise overlap with `ctx`'s.
    ///
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     let Some(from) = msg.sender().cloned() else { return Ok(()) };
    ///     ctx.send(&from, "got it");
    ///     Ok(())
    /// }
    /// ```
    pub fn sender(&self) -> Option<&Address> {
        self.sender.as_ref()
    }
    /// The raw payload.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     if let Payload::Typed { tag, .. } = msg.payload() {
    ///         ctx.log(log_level::DEBUG, &format!("a {tag}"));
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn payload(&self) -> &Payload {
        &self.payload
    }
    /// The text, when this is a plain string message.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     if let (Some(text), Some(from)) = (msg.text(), msg.sender()) {
    ///         ctx.send_text(from, &format!("echo: {text}"));
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn text(&self) -> Option<&str> {
        match &self.payload {
            Payload::Text(s) => Some(s),
            _ => None,
        }
    }
    /// The runtime message, when this is one.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     match msg.system() {
    ///         Some(SystemMessage::ChildActorExited { child, reason }) => {
    ///             ctx.log(log_level::WARN, &format!("child {child} gone: {reason}"));
    ///         }
    ///         Some(SystemMessage::PoisonMessage { target, details, .. }) => {
    ///             ctx.log(log_level::WARN, &format!("{target} could not handle a message: {details}"));
    ///         }
    ///         _ => {}
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn system(&self) -> Option<&SystemMessage> {
        match &self.payload {
            Payload::System(s) => Some(s),
            _ => None,
        }
    }
    /// Whether this is a typed message of type `T`.
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use troupe_actor_abi::prelude::*;
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # struct Greet { name: String }
    /// # impl Typed for Greet { const TAG: &'static str = "hello/Greet"; }
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     if msg.is::<Greet>() {
    ///         ctx.log(log_level::INFO, "a greeting");
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn is<T: Typed>(&self) -> bool {
        matches!(&self.payload, Payload::Typed { tag, .. } if tag == T::TAG)
    }
    /// Decodes the message as `T`: `None` if it is another type, `Some(Err)` if its tag says
    /// `T` but the body does not decode.
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use troupe_actor_abi::prelude::*;
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # struct Greet { name: String }
    /// # impl Typed for Greet { const TAG: &'static str = "hello/Greet"; }
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     let Some(from) = msg.sender().cloned() else { return Ok(()) };
    ///     if let Some(greet) = msg.decode::<Greet>() {
    ///         let greet = greet?; // a bad body fails the handler
    ///         ctx.send(&from, format!("hello, {}", greet.name));
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn decode<T: Typed>(&self) -> Option<ActorResult<T>> {
        decode_payload(&self.payload)
    }
}

/// Decodes a payload as `T` (see [`Message::decode`]); useful for payloads returned inside a
/// `PoisonMessage`.
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use troupe_actor_abi::prelude::*;
/// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// # struct Greet { name: String }
/// # impl Typed for Greet { const TAG: &'static str = "hello/Greet"; }
/// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
///     if let Some(SystemMessage::PoisonMessage { message, target, .. }) = msg.system() {
///         if let Some(Ok(greet)) = decode_payload::<Greet>(message) {
///             ctx.log(log_level::WARN, &format!("{target} did not greet {}", greet.name));
///         }
///     }
///     Ok(())
/// }
/// ```
pub fn decode_payload<T: Typed>(payload: &Payload) -> Option<ActorResult<T>> {
    match payload {
        Payload::Typed { tag, body } if tag == T::TAG => {
            Some(message::decode(body).map_err(|e| ActorError(format!("bad {}: {e}", T::TAG))))
        }
        _ => None,
    }
}

/// Something that can be sent: text, a typed value, or a raw payload.
/// ```
/// # use serde::{Deserialize, Serialize};
/// # use troupe_actor_abi::prelude::*;
/// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// # struct Greet { name: String }
/// # impl Typed for Greet { const TAG: &'static str = "hello/Greet"; }
/// assert_eq!("hi".into_payload(), Payload::Text("hi".into()));
/// assert_eq!(String::from("hi").into_payload(), Payload::Text("hi".into()));
/// assert!(matches!((&Greet { name: "Ada".into() }).into_payload(), Payload::Typed { .. }));
/// let p = Payload::Text("raw".into());
/// assert_eq!(p.clone().into_payload(), p);
/// ```
pub trait IntoPayload {
    /// Converts into a payload.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// assert_eq!("ping".into_payload(), Payload::Text("ping".into()));
    /// ```
    fn into_payload(self) -> Payload;

    /// Appends the payload's msgpack to `out` (`scratch` is free working space). The default
    /// builds the [`Payload`]; text and typed values write their bytes directly, so that a send
    /// allocates nothing once the context's buffers have grown.
    #[doc(hidden)]
    fn __encode_into(self, out: &mut Vec<u8>, _scratch: &mut Vec<u8>)
    where
        Self: Sized,
    {
        message::encode_into(out, &self.into_payload());
    }
}
impl IntoPayload for Payload {
    fn into_payload(self) -> Payload {
        self
    }
}
impl IntoPayload for &str {
    fn into_payload(self) -> Payload {
        Payload::Text(self.to_string())
    }
    fn __encode_into(self, out: &mut Vec<u8>, _scratch: &mut Vec<u8>) {
        message::encode_into(out, &message::PayloadRef::Text(self));
    }
}
impl IntoPayload for String {
    fn into_payload(self) -> Payload {
        Payload::Text(self)
    }
    fn __encode_into(self, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        self.as_str().__encode_into(out, scratch)
    }
}
impl<T: Typed> IntoPayload for &T {
    fn into_payload(self) -> Payload {
        self.to_payload()
    }
    fn __encode_into(self, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        scratch.clear();
        message::encode_into(scratch, self);
        message::encode_into(out, &message::PayloadRef::Typed { tag: T::TAG, body: scratch });
    }
}

/// An actor's handle on the node during one call.
/// Only the node makes contexts: an actor gets one in [`Actor::create`] and [`Actor::receive`].
/// Its effects (sends, creates, exit) are applied after the call returns, in order.
///
/// ```
/// use troupe_actor_abi::prelude::*;
///
/// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
///     let Some(from) = msg.sender().cloned() else { return Ok(()) };
///     let (me, caps) = (ctx.my_address(), ctx.capabilities());
///     ctx.send(&from, format!("{me} on a node with [{}]", caps.join(", ")));
///     Ok(())
/// }
/// ```
pub struct Context {
    call: *mut c_void,
    info: Option<CallInfo>,
    /// Reused by every send of the call: the encoded address, the payload, and scratch space.
    to_buf: Vec<u8>,
    msg_buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl Context {
    fn new(call: *mut c_void) -> Context {
        Context { call, info: None, to_buf: Vec::new(), msg_buf: Vec::new(), scratch: Vec::new() }
    }

    fn host(&self) -> &'static HostApi {
        match host() {
            Some(h) => h,
            // init always runs before the node creates an actor; reaching this is a node bug.
            None => panic!("troupe SDK used before init"),
        }
    }

    /// Sends a message (text, a `&Typed` value or a payload) to `to`. Delivery happens after
    /// the current handler returns, in the order sends were made.
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use troupe_actor_abi::prelude::*;
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # struct Greet { name: String }
    /// # impl Typed for Greet { const TAG: &'static str = "hello/Greet"; }
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     let Some(from) = msg.sender().cloned() else { return Ok(()) };
    ///     ctx.send(&from, "text");                                // &str or String
    ///     ctx.send(&from, &Greet { name: "Ada".into() });         // a typed value
    ///     ctx.send(&from, Payload::Text("a payload".into()));     // a raw payload
    ///     Ok(())
    /// }
    /// ```
    pub fn send(&mut self, to: &Address, msg: impl IntoPayload) {
        self.to_buf.clear();
        message::encode_into(&mut self.to_buf, to);
        self.msg_buf.clear();
        msg.__encode_into(&mut self.msg_buf, &mut self.scratch);
        // SAFETY: `call` is the context the node passed to this very call; the byte slices live
        // until the function returns and the node copies them.
        unsafe {
            (self.host().send)(self.call, RawStr::from_bytes(&self.to_buf), RawStr::from_bytes(&self.msg_buf))
        };
    }

    /// Hands raw bytes to the node's `send` as they are, returning its status. Only for testing
    /// how the node treats malformed plugin output; real actors use [`Context::send`].
    #[doc(hidden)]
    pub fn __raw_send(&mut self, to: &[u8], msg: &[u8]) -> i32 {
        // SAFETY: as in `send`: the slices live for the call and the node copies them.
        unsafe { (self.host().send)(self.call, RawStr::from_bytes(to), RawStr::from_bytes(msg)) }
    }

    /// Sends a plain string.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     if let Some(from) = msg.sender() {
    ///         ctx.send_text(from, "pong");
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn send_text(&mut self, to: &Address, text: &str) {
        self.send(to, text)
    }

    /// Creates a child of `type_name` (`module.Type`) from this actor's own version and returns
    /// its address at once. If it cannot be created this actor receives `ChildActorExited` with
    /// the reason, and messages sent to it come back as `PoisonMessage`.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// struct Boss {
    ///     worker: Address,
    /// }
    /// impl Actor for Boss {
    ///     fn create(ctx: &mut Context) -> ActorResult<Self> {
    ///         Ok(Boss { worker: ctx.create("demo.Worker")? })
    ///     }
    ///     fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
    ///         if let Some(text) = msg.text() {
    ///             ctx.send(&self.worker, text); // waits until the worker exists
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn create(&mut self, type_name: &str) -> ActorResult<Address> {
        self.create_with(CreateSpec { type_name: type_name.to_string(), ..CreateSpec::default() })
    }

    /// Creates a child with extra capability requirements, a global name or another version's
    /// hash.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, _msg: Message) -> ActorResult {
    ///     let encoder = ctx.create_with(CreateSpec {
    ///         type_name: "encoder.Base64Encoder".into(),
    ///         requirements: vec!["64bit encoder".into()], // placed on a node with this capability
    ///         global_name: Some("Base64".into()),         // or the live actor of that name
    ///         source_hash: None,                          // None: this actor's own version
    ///     })?;
    ///     ctx.send(&encoder, "hello");
    ///     Ok(())
    /// }
    /// ```
    pub fn create_with(&mut self, spec: CreateSpec) -> ActorResult<Address> {
        let spec = message::encode(&spec);
        let mut out = Vec::new();
        // SAFETY: as in `send`; `out` outlives the call and the sink only appends to it.
        let st =
            unsafe { (self.host().create)(self.call, RawStr::from_bytes(&spec), OutSink::for_vec(&mut out)) };
        if st != abi::STATUS_OK {
            return Err(ActorError(String::from_utf8_lossy(&out).into_owned()));
        }
        message::decode(&out).map_err(|e| ActorError(format!("node returned a bad address: {e}")))
    }

    fn info(&mut self) -> &CallInfo {
        if self.info.is_none() {
            let mut out = Vec::new();
            // SAFETY: as in `create`.
            let st = unsafe { (self.host().info)(self.call, OutSink::for_vec(&mut out)) };
            let info = if st == abi::STATUS_OK { message::decode(&out).ok() } else { None };
            self.info = Some(info.unwrap_or_else(|| panic!("the node gave no call info")));
        }
        match &self.info {
            Some(i) => i,
            None => unreachable!("set above"),
        }
    }

    /// This actor's own address.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     let me = ctx.my_address();
    ///     if let Some(from) = msg.sender().cloned() {
    ///         ctx.send(&from, format!("I am {me}")); // e.g. 127.0.0.1:1900#1f
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn my_address(&mut self) -> Address {
        self.info().me.clone()
    }
    /// The actor that created this one (`None` when a client created it).
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     if let (Some(parent), Some(text)) = (ctx.parent(), msg.text()) {
    ///         ctx.send(&parent, format!("done: {text}"));
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn parent(&mut self) -> Option<Address> {
        self.info().parent.clone()
    }
    /// The global name this actor was created with.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn create_named(ctx: &mut Context) -> ActorResult<String> {
    ///     Ok(ctx.global_name().unwrap_or_else(|| "anonymous".into()))
    /// }
    /// ```
    pub fn global_name(&mut self) -> Option<String> {
        self.info().global_name.clone()
    }
    /// The hash of this actor's version.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     if let Some(from) = msg.sender().cloned() {
    ///         let hash = ctx.source_hash();
    ///         ctx.send(&from, format!("version {}", &hash[..12.min(hash.len())]));
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn source_hash(&mut self) -> String {
        self.info().source_hash.clone()
    }
    /// The hosting node's capabilities.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn has_gpu(ctx: &mut Context) -> bool {
    ///     ctx.capabilities().iter().any(|c| c == "gpu")
    /// }
    /// ```
    pub fn capabilities(&mut self) -> Vec<String> {
        self.info().capabilities.clone()
    }

    /// Stops this actor once the handler returns (it gets an `ActorExitRequest` first and its
    /// children are stopped too).
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     if msg.text() == Some("quit") {
    ///         ctx.exit();
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn exit(&mut self) {
        // SAFETY: `call` is valid for this call.
        unsafe { (self.host().exit_self)(self.call) };
    }

    /// Delivers a `Wakeup` carrying `payload` to this actor after `delay`.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// use std::time::Duration;
    ///
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     match msg.system() {
    ///         Some(SystemMessage::Wakeup { .. }) => ctx.log(log_level::INFO, "tick"),
    ///         _ => ctx.wakeup_after(Duration::from_secs(1), Some(Payload::Text("tick".into()))),
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn wakeup_after(&mut self, delay: Duration, payload: Option<Payload>) {
        let bytes = payload.map(|p| message::encode(&p)).unwrap_or_default();
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: as in `send`.
        unsafe { (self.host().wakeup)(self.call, ms, RawStr::from_bytes(&bytes)) };
    }

    /// Writes a line to the node's log at `level` (see [`crate::abi::log_level`]).
    /// Plugins log through the node instead of `println!`, which would use the plugin's own copy
    /// of std's stdout machinery and keep the library from being unloaded.
    ///
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn create(ctx: &mut Context) -> ActorResult<()> {
    ///     ctx.log(log_level::INFO, "starting");
    ///     Ok(())
    /// }
    /// ```
    pub fn log(&mut self, level: u32, text: &str) {
        // SAFETY: as in `send`.
        unsafe { (self.host().log)(self.call, level, RawStr::from_bytes(text.as_bytes())) };
    }

    /// Starts (or stops) telling this actor about the convention: it receives one
    /// `ActorSystemConventionUpdate` per current member now, then one per join, leave, loss or
    /// capability change.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     match msg.system() {
    ///         Some(SystemMessage::ActorSystemConventionUpdate { node, added, .. }) => {
    ///             ctx.log(log_level::INFO, &format!("{node} {}", if *added { "is here" } else { "left" }));
    ///         }
    ///         _ if msg.text() == Some("watch") => ctx.watch_convention(true),
    ///         _ => {}
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn watch_convention(&mut self, enable: bool) {
        let me = self.my_address();
        let node = Address { node: me.node, id: message::ADMIN_ID };
        self.send(&node, Payload::System(SystemMessage::NotifyOnSystemRegistrationChanges { enable }));
    }

    /// Makes this actor the node's source authority: it receives `ValidateSource` for every
    /// later load and answers the sender with `ValidatedSource`.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     if msg.text() == Some("register") {
    ///         ctx.register_source_authority();
    ///     } else if let Some(SystemMessage::ValidateSource { hash, package, .. }) = msg.system() {
    ///         let accepted = !package.starts_with("untrusted-");
    ///         let answer = SystemMessage::ValidatedSource {
    ///             hash: hash.clone(),
    ///             accepted,
    ///             reason: (!accepted).then(|| "untrusted package".to_string()),
    ///         };
    ///         if let Some(node) = msg.sender().cloned() {
    ///             ctx.send(&node, Payload::System(answer));
    ///         }
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn register_source_authority(&mut self) {
        // SAFETY: `call` is valid for this call.
        unsafe { (self.host().register_authority)(self.call) };
    }
}

/// An actor type.
/// One value per actor: the node calls [`Actor::create`] once, then [`Actor::receive`] for each
/// message, one at a time, and drops the value when the actor exits. Export it with
/// [`export_plugin!`](crate::export_plugin).
///
/// ```
/// use troupe_actor_abi::prelude::*;
///
/// #[derive(Default)]
/// struct Counter {
///     seen: u64,
/// }
/// impl Actor for Counter {
///     fn create(_ctx: &mut Context) -> ActorResult<Self> {
///         Ok(Counter::default())
///     }
///     fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
///         self.seen += 1;
///         if let Some(from) = msg.sender().cloned() {
///             ctx.send(&from, format!("{} messages so far", self.seen));
///         }
///         Ok(())
///     }
/// }
/// troupe_actor_abi::export_plugin!(actors: ["demo.Counter" => Counter]);
/// # fn main() {}
/// ```
pub trait Actor: 'static {
    /// Creates the actor. A failure (or panic) makes the create fail: the creator gets
    /// `ChildActorExited` with a `PluginError` reason.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// struct Configured {
    ///     capabilities: Vec<String>,
    /// }
    /// impl Actor for Configured {
    ///     fn create(ctx: &mut Context) -> ActorResult<Self> {
    ///         let capabilities = ctx.capabilities();
    ///         if capabilities.is_empty() {
    ///             return Err(ActorError::msg("needs a node with at least one capability"));
    ///         }
    ///         Ok(Configured { capabilities })
    ///     }
    ///     fn receive(&mut self, _ctx: &mut Context, _msg: Message) -> ActorResult {
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn create(ctx: &mut Context) -> ActorResult<Self>
    where
        Self: Sized;

    /// Handles one message. An error (or a panic) counts as a failed handler: the node retries
    /// the message once, then returns it to its sender as a `PoisonMessage`.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// struct Strict;
    /// impl Actor for Strict {
    ///     fn create(_ctx: &mut Context) -> ActorResult<Self> {
    ///         Ok(Strict)
    ///     }
    ///     fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
    ///         let Some(from) = msg.sender().cloned() else { return Ok(()) };
    ///         let n: i64 = msg.text().ok_or_else(|| ActorError::msg("send a number"))?.parse()?;
    ///         ctx.send(&from, (n * 2).to_string());
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult;
}

/// The object the node holds (opaquely) for each actor.
#[doc(hidden)]
pub trait ErasedActor {
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult;
}
impl<A: Actor> ErasedActor for A {
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        Actor::receive(self, ctx, msg)
    }
}

/// Boxes a freshly created actor; used by [`export_plugin!`](crate::export_plugin).
#[doc(hidden)]
pub fn __construct<A: Actor>(ctx: &mut Context) -> ActorResult<Box<dyn ErasedActor>> {
    Ok(Box::new(A::create(ctx)?))
}

/// The constructor table an exported plugin provides.
#[doc(hidden)]
pub type Constructor = fn(&str, &mut Context) -> Option<ActorResult<Box<dyn ErasedActor>>>;

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

/// Runs `f`, turning a panic into `STATUS_PANIC` with its message in `err`.
fn guarded(err: OutSink, f: impl FnOnce() -> Result<(), (Status, String)>) -> Status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => abi::STATUS_OK,
        Ok(Err((st, m))) => {
            err.write_bytes(m.as_bytes());
            st
        }
        Err(p) => {
            // Formatting the message cannot unwind past here: it is plain string work.
            err.write_bytes(panic_message(p).as_bytes());
            abi::STATUS_PANIC
        }
    }
}

#[doc(hidden)]
pub unsafe extern "C" fn __init(host: *const HostApi, err: OutSink) -> Status {
    guarded(err, || {
        // SAFETY: the node passes a pointer to its own table, valid for the process lifetime.
        let size = unsafe { host.as_ref() }.map(|h| h.size as usize).unwrap_or(0);
        if size < std::mem::size_of::<HostApi>() {
            return Err((abi::STATUS_ERROR, format!("host API table too small ({size} bytes)")));
        }
        HOST.store(host as *mut HostApi, Ordering::Release);
        // A silent hook: no output from our own std copy and, above all, no backtrace capture.
        std::panic::set_hook(Box::new(|_| {}));
        Ok(())
    })
}

#[doc(hidden)]
pub unsafe fn __new_actor(
    call: *mut c_void,
    type_name: RawStr,
    out_actor: *mut *mut c_void,
    err: OutSink,
    constructors: Constructor,
) -> Status {
    guarded(err, || {
        // SAFETY: the node passes a (ptr, len) valid for this call.
        let name = unsafe { type_name.as_bytes() };
        let name = std::str::from_utf8(name)
            .map_err(|_| (abi::STATUS_BAD_INPUT, "type name is not UTF-8".into()))?;
        let mut ctx = Context::new(call);
        match constructors(name, &mut ctx) {
            None => Err((abi::STATUS_UNKNOWN_TYPE, format!("this plugin exports no actor type {name}"))),
            Some(Err(e)) => Err((abi::STATUS_ERROR, e.0)),
            Some(Ok(actor)) => {
                let thin: Box<Box<dyn ErasedActor>> = Box::new(actor);
                // SAFETY: the node passes a valid out pointer for this call.
                unsafe { *out_actor = Box::into_raw(thin) as *mut c_void };
                Ok(())
            }
        }
    })
}

#[doc(hidden)]
pub unsafe extern "C" fn __handle(
    actor: *mut c_void,
    call: *mut c_void,
    msg: RawStr,
    err: OutSink,
) -> Status {
    guarded(err, || {
        // SAFETY: `actor` came from `__new_actor` and has not been dropped (the node's
        // contract); the node calls one actor from one thread at a time.
        let actor = unsafe { &mut *(actor as *mut Box<dyn ErasedActor>) };
        // SAFETY: (ptr, len) valid for this call.
        let bytes = unsafe { msg.as_bytes() };
        let incoming: Incoming = message::decode(bytes)
            .map_err(|e| (abi::STATUS_BAD_INPUT, format!("undecodable message: {e}")))?;
        let mut ctx = Context::new(call);
        actor
            .receive(&mut ctx, Message { sender: incoming.sender, payload: incoming.payload })
            .map_err(|e| (abi::STATUS_ERROR, e.0))
    })
}

#[doc(hidden)]
pub unsafe extern "C" fn __drop_actor(actor: *mut c_void, err: OutSink) -> Status {
    guarded(err, || {
        // SAFETY: `actor` came from `__new_actor`; the node drops each actor exactly once.
        drop(unsafe { Box::from_raw(actor as *mut Box<dyn ErasedActor>) });
        Ok(())
    })
}

#[doc(hidden)]
pub unsafe fn __on_unload(err: OutSink, user: Option<fn()>) -> Status {
    guarded(err, || {
        if let Some(f) = user {
            f();
        }
        // Drop our boxed hook (restoring std's default one) and forget the host table.
        let _ = std::panic::take_hook();
        HOST.store(std::ptr::null_mut(), Ordering::Release);
        Ok(())
    })
}

/// Exports a crate's actor types as a Troupe plugin. Use it once, in a `cdylib` crate built
/// with `panic = "unwind"` (the default).
///
/// Each entry is `"module.Type" => RustType`, optionally followed by `requires [..]`: the
/// capabilities a node must have to host that type. Type names are ASCII letters, digits and
/// `_` on each side of one dot. `on_unload` (optional) is called once, after the last actor of
/// the version was dropped and before the library is closed: release there anything your
/// statics own (caches, registries), so that nothing outlives the library.
///
/// ```
/// use std::sync::Mutex;
/// use troupe_actor_abi::prelude::*;
///
/// struct Encoder;
/// impl Actor for Encoder {
///     fn create(_ctx: &mut Context) -> ActorResult<Self> {
///         Ok(Encoder)
///     }
///     fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
///         if let (Some(from), Some(text)) = (msg.sender().cloned(), msg.text()) {
///             CACHE.lock().map_err(|_| ActorError::msg("cache poisoned"))?.push(text.to_string());
///             ctx.send(&from, text.to_uppercase());
///         }
///         Ok(())
///     }
/// }
/// struct Base64Encoder;
/// impl Actor for Base64Encoder {
///     fn create(_ctx: &mut Context) -> ActorResult<Self> {
///         Ok(Base64Encoder)
///     }
///     fn receive(&mut self, _ctx: &mut Context, _msg: Message) -> ActorResult {
///         Ok(())
///     }
/// }
///
/// /// A static that owns heap memory: emptied in `on_unload`.
/// static CACHE: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// fn clear_caches() {
///     if let Ok(mut c) = CACHE.lock() {
///         *c = Vec::new();
///     }
/// }
///
/// troupe_actor_abi::export_plugin!(
///     actors: [
///         "encoder.Encoder" => Encoder,
///         "encoder.Base64Encoder" => Base64Encoder requires ["64bit encoder"],
///     ],
///     on_unload: clear_caches, // optional: fn() releasing what your statics own
/// );
///
/// // The root the node reads: two actor types, built to unwind.
/// fn main() {
///     assert_eq!(TROUPE_PLUGIN_ROOT_V1.n_actor_types, 2);
///     assert_eq!(TROUPE_PLUGIN_ROOT_V1.header.panic_unwind, 1);
/// }
/// ```
#[macro_export]
macro_rules! export_plugin {
    (actors: [ $( $name:literal => $ty:ident $( requires [ $($req:literal),* $(,)? ] )? ),* $(,)? ] $(, on_unload: $unload:path)? $(,)?) => {
        const __TROUPE_ACTOR_TYPES: &[$crate::abi::ActorTypeDesc] = &[
            $( $crate::abi::ActorTypeDesc {
                name: $crate::abi::RawStr::from_static($name),
                requirements: {
                    const R: &[$crate::abi::RawStr] = &[ $( $( $crate::abi::RawStr::from_static($req) ),* )? ];
                    R.as_ptr()
                },
                n_requirements: {
                    const R: &[&str] = &[ $( $( $req ),* )? ];
                    R.len()
                },
            } ),*
        ];

        fn __troupe_constructors(
            name: &str,
            ctx: &mut $crate::sdk::Context,
        ) -> ::core::option::Option<$crate::sdk::ActorResult<::std::boxed::Box<dyn $crate::sdk::ErasedActor>>> {
            match name {
                $( $name => ::core::option::Option::Some($crate::sdk::__construct::<$ty>(ctx)), )*
                _ => ::core::option::Option::None,
            }
        }

        unsafe extern "C" fn __troupe_new_actor(
            call: *mut ::std::ffi::c_void,
            type_name: $crate::abi::RawStr,
            out_actor: *mut *mut ::std::ffi::c_void,
            err: $crate::abi::OutSink,
        ) -> $crate::abi::Status {
            // SAFETY: forwarded unchanged from the node, which upholds the entry point's contract.
            unsafe { $crate::sdk::__new_actor(call, type_name, out_actor, err, __troupe_constructors) }
        }

        unsafe extern "C" fn __troupe_on_unload(err: $crate::abi::OutSink) -> $crate::abi::Status {
            #[allow(unused_mut, unused_assignments)]
            let mut user: ::core::option::Option<fn()> = ::core::option::Option::None;
            $( user = ::core::option::Option::Some($unload); )?
            // SAFETY: forwarded unchanged from the node.
            unsafe { $crate::sdk::__on_unload(err, user) }
        }

        /// The plugin root the Troupe node reads.
        #[unsafe(no_mangle)]
        pub static TROUPE_PLUGIN_ROOT_V1: $crate::abi::PluginRoot = $crate::abi::PluginRoot {
            header: $crate::abi::RootHeader {
                magic: $crate::abi::MAGIC,
                abi_version: $crate::abi::ABI_VERSION,
                root_size: ::core::mem::size_of::<$crate::abi::PluginRoot>() as u32,
                panic_unwind: cfg!(panic = "unwind") as u32,
                msg_schema: $crate::abi::MSG_SCHEMA,
            },
            rustc_version: $crate::abi::RawStr::from_static($crate::RUSTC_VERSION),
            plugin_name: $crate::abi::RawStr::from_static(env!("CARGO_PKG_NAME")),
            plugin_version: $crate::abi::RawStr::from_static(env!("CARGO_PKG_VERSION")),
            actor_types: __TROUPE_ACTOR_TYPES.as_ptr(),
            n_actor_types: __TROUPE_ACTOR_TYPES.len(),
            init: $crate::sdk::__init,
            new_actor: __troupe_new_actor,
            handle: $crate::sdk::__handle,
            drop_actor: $crate::sdk::__drop_actor,
            on_unload: __troupe_on_unload,
        };
    };
}
