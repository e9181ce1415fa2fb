//! The [`Context`]: an actor's handle on the node during one call.
//!
//! Every method is a thin, safe shell over one entry of the node's function table
//! ([`HostApi`]): it encodes its arguments, lends them for the call (the node copies them) and
//! decodes what comes back. The file is long only because each method carries a runnable
//! example; the code itself is a few lines per method.

use crate::abi::{self, HostApi, OutSink, RawStr};
use crate::message::{
    self, Address, CallInfo, CreateSpec, Payload, RestartPolicy, SystemCall, SystemMessage,
};
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{host, ActorError, ActorResult, IntoPayload};

/// Identifies one [`Context::ask`] or [`Context::system_call`]: its answer (`AskReply`,
/// `AskTimedOut`, `SystemCallResult`) carries the same number as `request`.
///
/// ```
/// # use troupe_actor_abi::prelude::*;
/// fn is_answer_to(id: RequestId, msg: &Message) -> bool {
///     match msg.system() {
///         Some(SystemMessage::AskReply { request, .. } | SystemMessage::AskTimedOut { request, .. }) => {
///             id == *request
///         }
///         _ => false,
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl PartialEq<u64> for RequestId {
    fn eq(&self, other: &u64) -> bool {
        self.0 == *other
    }
}

/// Request ids, unique within the plugin's lifetime (a plain atomic static: nothing that pins
/// the library).
static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

fn next_request() -> RequestId {
    RequestId(NEXT_REQUEST.fetch_add(1, Ordering::Relaxed))
}

/// An actor's handle on the node during one call.
/// Only the node makes contexts: an actor gets one in [`Actor::create`](super::Actor::create) and
/// [`Actor::receive`](super::Actor::receive). Its effects (sends, creates, exit) are applied after
/// the call returns, in order.
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
    pub(super) fn new(call: *mut c_void) -> Context {
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
    ///             ctx.log(log_level::INFO, &format!("{node} {}", if *added { "is here" } else {
    /// "left" }));         }         _ if msg.text() == Some("watch") =>
    /// ctx.watch_convention(true),         _ => {}     }     Ok(()) }
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

    /// Sends a runtime message to this actor's own node (its admin address, id 0).
    fn tell_node(&mut self, m: SystemMessage) {
        let me = self.my_address();
        let node = Address { node: me.node, id: message::ADMIN_ID };
        self.send(&node, Payload::System(m));
    }

    /// Starts (or stops) hearing about sources on this node, as Thespian's
    /// `notifyOnSourceAvailability`: a `LoadedSource` for every version active now, then one
    /// per later load (or fetch from a peer) and an `UnloadedSource` per unload. Stopping, or
    /// exiting, ends the subscription.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     match msg.system() {
    ///         Some(SystemMessage::LoadedSource { hash, info }) => {
    ///             ctx.log(log_level::INFO, &format!("{hash} is loaded (from {info})"))
    ///         }
    ///         Some(SystemMessage::UnloadedSource { hash, .. }) => {
    ///             ctx.log(log_level::INFO, &format!("{hash} is gone"))
    ///         }
    ///         _ if msg.text() == Some("subscribe") => ctx.notify_on_source_availability(true),
    ///         _ => {}
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn notify_on_source_availability(&mut self, enable: bool) {
        self.tell_node(SystemMessage::NotifyOnSourceAvailability { enable });
    }

    /// Asks this actor's node to load a source, unload one, change a capability or stop, as
    /// `troupe load`, `unload`, `chgcap` and `stop` do, through the same source authority and
    /// checks. Returns at once; the outcome arrives later as a `SystemCallResult` with the same
    /// request id (for a load, `Ok(hash)` once the version is active). A node started without
    /// `--actor-system-calls` refuses every call with an `Err` saying so.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Zip(Vec<u8>);
    /// impl Typed for Zip {
    ///     const TAG: &'static str = "doc/Zip";
    /// }
    /// fn receive(ctx: &mut Context, msg: Message) -> ActorResult {
    ///     if let Some(zip) = msg.decode::<Zip>() {
    ///         ctx.system_call(SystemCall::LoadSource { zip: zip?.0, info: "received".into() });
    ///     } else if let Some(SystemMessage::SystemCallResult { outcome, .. }) = msg.system() {
    ///         match outcome {
    ///             Ok(hash) => ctx.log(log_level::INFO, &format!("loaded {hash}")),
    ///             Err(e) => ctx.log(log_level::WARN, &format!("refused: {e}")),
    ///         }
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn system_call(&mut self, call: SystemCall) -> RequestId {
        let request = next_request();
        self.tell_node(SystemMessage::SystemCall { request: request.0, call });
        request
    }

    /// Sends `msg` to `to` and returns at once; the first reply arrives later as `AskReply`
    /// (with the same request id), or `AskTimedOut` once `timeout` has passed. The asked actor
    /// sees an ordinary message whose sender is a reply address made for this request (it
    /// answers with `ctx.send(msg.sender(), ..)` as to anyone); the reply address is an
    /// ordinary address, so `to` may run on any node. A reply that comes after the timeout is
    /// returned to whoever sent it as `PoisonMessage`, never delivered.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// use std::time::Duration;
    /// struct Client { pending: Option<RequestId>, server: Address }
    /// impl Actor for Client {
    ///     fn create(_ctx: &mut Context) -> ActorResult<Self> {
    ///         Ok(Client { pending: None, server: Address { node: "127.0.0.1:1900".into(), id: 7 } })
    ///     }
    ///     fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
    ///         match msg.system() {
    ///             Some(SystemMessage::AskReply { request, reply, .. }) if self.pending == Some(RequestId(*request)) => {
    ///                 ctx.log(log_level::INFO, &format!("the server said {reply:?}"));
    ///             }
    ///             Some(SystemMessage::AskTimedOut { to, .. }) => ctx.log(log_level::WARN, &format!("{to} is slow")),
    ///             _ => {
    ///                 let server = self.server.clone();
    ///                 self.pending = Some(ctx.ask(&server, "ping", Duration::from_secs(2)));
    ///             }
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn ask(&mut self, to: &Address, msg: impl IntoPayload, timeout: Duration) -> RequestId {
        let request = next_request();
        let mut body = Vec::new();
        let mut scratch = Vec::new();
        msg.__encode_into(&mut body, &mut scratch);
        let payload = match message::decode::<Payload>(&body) {
            Ok(p) => p,
            // Our own encoding always decodes; should it not, the asked actor is told so.
            Err(e) => Payload::Text(format!("troupe: undecodable ask ({e})")),
        };
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let ask =
            SystemMessage::Ask { request: request.0, to: to.clone(), message: Box::new(payload), timeout_ms };
        self.tell_node(ask);
        request
    }

    /// Creates a child, as [`Context::create_with`], that the runtime re-creates (same type,
    /// requirements, global name and version) when it fails, by `policy`: its handler failed
    /// twice on one message (the message is returned to its sender as `PoisonMessage`, and the
    /// child is stopped and started afresh), its constructor failed, its node was lost or no
    /// longer has what it requires. Each restart reaches this actor as `ChildActorRestarted`;
    /// the child keeps its address whenever its node can host it again (after a lost node, it
    /// gets a new one, named in the message). Once the policy's budget is spent the next
    /// failure reaches this actor as `ChildActorExited`, as for any child. An exit that was
    /// asked for (an `ActorExitRequest`, an unload, a stopping node) is never restarted, nor
    /// is a create the node refuses at once (the error is returned here).
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// use std::time::Duration;
    /// fn create(ctx: &mut Context) -> ActorResult<Address> {
    ///     let policy = RestartPolicy::on_failure(5, Duration::from_secs(60))
    ///         .backoff(Duration::from_millis(50), Duration::from_secs(2));
    ///     let spec = CreateSpec { type_name: "app.Analyzer".into(), ..CreateSpec::default() };
    ///     ctx.create_supervised(spec, policy)
    /// }
    /// ```
    pub fn create_supervised(&mut self, spec: CreateSpec, policy: RestartPolicy) -> ActorResult<Address> {
        let child = self.create_with(spec.clone())?;
        self.tell_node(SystemMessage::Supervise { child: child.clone(), spec, policy });
        Ok(child)
    }
}

/// Capability values (issue 15): the node's capabilities are `name` or `name=value` entries.
impl Context {
    /// The value of the hosting node's capability `name` (`"true"` for one declared by name
    /// only), or `None` if the node lacks it. See [`crate::caps`] for how requirements compare
    /// values.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn batch_size(ctx: &mut Context) -> usize {
    ///     // On a node started with "gpu=A100,mem=64": 64 GB → 64 items per batch.
    ///     ctx.capability("mem").and_then(|v| v.parse().ok()).unwrap_or(1)
    /// }
    /// ```
    pub fn capability(&mut self, name: &str) -> Option<String> {
        crate::caps::value_of(&self.info().capabilities, name).map(str::to_string)
    }
}
