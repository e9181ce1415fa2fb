//! What a plugin author implements and receives: the [`Actor`] trait, the [`Message`] handed
//! to it, and the [`ActorError`] / [`ActorResult`] its handlers return.

use crate::message::{Address, Payload, SystemMessage};
use std::fmt;

use super::{decode_payload, Context, State, Typed, Upgrade};

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
pub struct ActorError(pub(super) String);

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
    pub(super) sender: Option<Address>,
    pub(super) payload: Payload,
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

/// An actor type.
/// One value per actor: the node calls [`Actor::create`] once, then [`Actor::receive`] for each
/// message, one at a time, and drops the value when the actor exits. Export it with
/// [`export_plugin!`](crate::export_plugin). An actor may also move to a newer version of its
/// plugin while it lives (live upgrade): [`Actor::export_state`] and [`Actor::import_state`]
/// opt in.
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

    /// Live upgrade, old side: the actor's state for its next version, or `None` (the default)
    /// when the actor does not move. An actor that does not move keeps running its version,
    /// which drains as before. Called between two messages; it must not change the actor,
    /// which keeps running here if the new version refuses the state. An `Err` (or a panic)
    /// keeps the actor here too.
    ///
    /// Tag the state with a versioned tag and put only plain data in it: no pointers, handles
    /// or anything else that belongs to this library.
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use troupe_actor_abi::prelude::*;
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct CountV1 {
    ///     count: u64,
    /// }
    /// impl Typed for CountV1 {
    ///     const TAG: &'static str = "counter/State.v1";
    /// }
    ///
    /// struct Counter {
    ///     count: u64,
    /// }
    /// impl Actor for Counter {
    ///     fn create(_ctx: &mut Context) -> ActorResult<Self> {
    ///         Ok(Counter { count: 0 })
    ///     }
    ///     fn receive(&mut self, _ctx: &mut Context, _msg: Message) -> ActorResult {
    ///         self.count += 1;
    ///         Ok(())
    ///     }
    ///     fn export_state(&self) -> Option<ActorResult<State>> {
    ///         Some(Ok(State::of(&CountV1 { count: self.count })))
    ///     }
    /// }
    /// let state = Counter { count: 2 }.export_state().and_then(Result::ok).expect("opts in");
    /// assert_eq!(state.tag(), "counter/State.v1");
    /// ```
    fn export_state(&self) -> Option<ActorResult<State>> {
        None
    }

    /// Live upgrade, new side: builds the actor from another version's state, in place of
    /// [`Actor::create`]. The actor keeps its address, name, parent and children; messages that
    /// arrived during the move come next, in order. Read [`Upgrade::state`]'s tag and convert
    /// every shape you know (older versions' and your own); an `Err` (or a panic) refuses the
    /// move, and the actor keeps running its old version. The default refuses every state.
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use troupe_actor_abi::prelude::*;
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct CountV1 {
    ///     count: u64,
    /// }
    /// impl Typed for CountV1 {
    ///     const TAG: &'static str = "counter/State.v1";
    /// }
    /// #[derive(Serialize, Deserialize)]
    /// struct CountV2 {
    ///     count: u64,
    ///     upgrades: u32,
    /// }
    /// impl Typed for CountV2 {
    ///     const TAG: &'static str = "counter/State.v2";
    /// }
    ///
    /// struct Counter {
    ///     state: CountV2,
    /// }
    /// impl Actor for Counter {
    ///     fn create(_ctx: &mut Context) -> ActorResult<Self> {
    ///         Ok(Counter { state: CountV2 { count: 0, upgrades: 0 } })
    ///     }
    ///     fn receive(&mut self, _ctx: &mut Context, _msg: Message) -> ActorResult {
    ///         self.state.count += 1;
    ///         Ok(())
    ///     }
    ///     fn export_state(&self) -> Option<ActorResult<State>> {
    ///         Some(Ok(State::of(&self.state)))
    ///     }
    ///     fn import_state(ctx: &mut Context, from: Upgrade) -> ActorResult<Self> {
    ///         let state = if let Some(old) = from.decode::<CountV1>() {
    ///             CountV2 { count: old?.count, upgrades: 1 }
    ///         } else if let Some(same) = from.decode::<CountV2>() {
    ///             let same = same?;
    ///             CountV2 { upgrades: same.upgrades + 1, ..same }
    ///         } else {
    ///             let v = from.from();
    ///             return Err(ActorError::msg(format!(
    ///                 "unknown state shape {} from {} {}",
    ///                 from.state().tag(),
    ///                 v.package,
    ///                 v.version
    ///             )));
    ///         };
    ///         ctx.log(log_level::INFO, &format!("count {} from {}", state.count, from.from_type()));
    ///         Ok(Counter { state })
    ///     }
    /// }
    /// troupe_actor_abi::export_plugin!(actors: ["counter.Counter" => Counter]);
    /// # fn main() {}
    /// ```
    fn import_state(ctx: &mut Context, from: Upgrade) -> ActorResult<Self>
    where
        Self: Sized,
    {
        let _ = (ctx, from);
        Err(ActorError::msg("this actor type does not import state"))
    }

    /// What this actor adds to its status (`troupe ask --status ADDR`), as name and value
    /// pairs. The SDK answers a `StatusRequest` itself, without calling
    /// [`Actor::receive`]: its type, the messages it handled, its mailbox depth and its age,
    /// then these. The default adds nothing.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// struct Cache {
    ///     entries: usize,
    /// }
    /// impl Actor for Cache {
    ///     fn create(_ctx: &mut Context) -> ActorResult<Self> {
    ///         Ok(Cache { entries: 0 })
    ///     }
    ///     fn receive(&mut self, _ctx: &mut Context, _msg: Message) -> ActorResult {
    ///         self.entries += 1;
    ///         Ok(())
    ///     }
    ///     fn status(&self) -> Vec<(String, String)> {
    ///         vec![("entries".into(), self.entries.to_string())]
    ///     }
    /// }
    /// assert_eq!(Cache { entries: 3 }.status(), [("entries".to_string(), "3".to_string())]);
    /// ```
    fn status(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}
