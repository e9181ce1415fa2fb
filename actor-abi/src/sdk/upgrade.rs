//! Live upgrade, the author's side: the [`State`] an actor hands over when its version is
//! replaced, and the [`Upgrade`] the new version builds the actor from.
//!
//! The old version's [`Actor::export_state`](super::Actor::export_state) turns the actor into a
//! tagged msgpack value; the new version's [`Actor::import_state`](super::Actor::import_state)
//! reads the tag and decodes what it knows. The two versions never share a Rust type: like
//! [`Typed`] messages, states cross as a tag and field-named msgpack, so a state must be plain
//! data (no pointers, handles or anything that belongs to the old library).

use crate::message::{self, MigratedState, Migration, VersionIdentity};

use super::{ActorError, ActorResult, Typed};

/// An actor's state as it moves to another version: a tag naming its shape and the msgpack of
/// a value of that shape. Make one with [`State::of`] from a [`Typed`] value; version the tag
/// (`counter/State.v1`, `counter/State.v2`) and never reuse a tag for another shape.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use troupe_actor_abi::prelude::*;
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct CountV1 {
///     count: u64,
/// }
/// impl Typed for CountV1 {
///     const TAG: &'static str = "counter/State.v1";
/// }
///
/// let state = State::of(&CountV1 { count: 3 });
/// assert_eq!(state.tag(), "counter/State.v1");
/// assert!(state.is::<CountV1>());
/// assert_eq!(state.decode::<CountV1>().and_then(Result::ok), Some(CountV1 { count: 3 }));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct State(MigratedState);

impl State {
    /// The state of `value`, tagged with `T::TAG`.
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use troupe_actor_abi::prelude::*;
    /// # #[derive(Serialize, Deserialize)]
    /// # struct CountV1 { count: u64 }
    /// # impl Typed for CountV1 { const TAG: &'static str = "counter/State.v1"; }
    /// let state = State::of(&CountV1 { count: 3 });
    /// assert_eq!(state.tag(), CountV1::TAG);
    /// ```
    pub fn of<T: Typed>(value: &T) -> State {
        State(MigratedState { tag: T::TAG.to_string(), body: message::encode(value) })
    }

    /// A state from its parts as they are: `body` should be the msgpack of a value of the
    /// shape `tag` names. For shapes without a Rust type of their own.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// let state = State::raw("counter/Empty", Vec::new());
    /// assert_eq!((state.tag(), state.body()), ("counter/Empty", &[][..]));
    /// ```
    pub fn raw(tag: impl Into<String>, body: Vec<u8>) -> State {
        State(MigratedState { tag: tag.into(), body })
    }

    /// The tag naming the state's shape.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// assert_eq!(State::raw("counter/State.v1", Vec::new()).tag(), "counter/State.v1");
    /// ```
    pub fn tag(&self) -> &str {
        &self.0.tag
    }

    /// The msgpack of the state.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// assert_eq!(State::raw("t/Bytes", vec![0xc0]).body(), &[0xc0]);
    /// ```
    pub fn body(&self) -> &[u8] {
        &self.0.body
    }

    /// Whether the state is of shape `T` (its tag is `T::TAG`).
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use troupe_actor_abi::prelude::*;
    /// # #[derive(Serialize, Deserialize)]
    /// # struct CountV1 { count: u64 }
    /// # impl Typed for CountV1 { const TAG: &'static str = "counter/State.v1"; }
    /// assert!(State::of(&CountV1 { count: 1 }).is::<CountV1>());
    /// assert!(!State::raw("counter/State.v0", Vec::new()).is::<CountV1>());
    /// ```
    pub fn is<T: Typed>(&self) -> bool {
        self.0.tag == T::TAG
    }

    /// Decodes the state as `T`: `None` if it is of another shape, `Some(Err)` if its tag says
    /// `T` but the body does not decode.
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use troupe_actor_abi::prelude::*;
    /// # #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// # struct CountV1 { count: u64 }
    /// # impl Typed for CountV1 { const TAG: &'static str = "counter/State.v1"; }
    /// let good = State::of(&CountV1 { count: 7 });
    /// assert_eq!(good.decode::<CountV1>().and_then(Result::ok), Some(CountV1 { count: 7 }));
    /// assert!(State::raw("counter/Other", Vec::new()).decode::<CountV1>().is_none());
    /// assert!(matches!(State::raw(CountV1::TAG, vec![0xc1]).decode::<CountV1>(), Some(Err(_))));
    /// ```
    pub fn decode<T: Typed>(&self) -> Option<ActorResult<T>> {
        self.is::<T>()
            .then(|| message::decode(&self.0.body).map_err(|e| ActorError(format!("bad {}: {e}", T::TAG))))
    }

    /// The wire shape, as `export_state` writes it.
    pub(super) fn into_migrated(self) -> MigratedState {
        self.0
    }
}

/// What a new version builds an actor from in
/// [`Actor::import_state`](super::Actor::import_state): the old version's identity, the actor's
/// type there and the [`State`] it exported.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use troupe_actor_abi::message::{Migration, VersionIdentity};
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
/// /// The conversion, kept out of `import_state` so that it can be tested without a node.
/// fn count_of(from: &Upgrade) -> ActorResult<u64> {
///     match from.decode::<CountV1>() {
///         Some(old) => Ok(old?.count),
///         None => Err(ActorError::msg(format!(
///             "unknown state shape {} from {} {}",
///             from.state().tag(),
///             from.from().package,
///             from.from().version
///         ))),
///     }
/// }
///
/// let upgrade = Upgrade::new(Migration {
///     from: VersionIdentity { package: "counter".into(), version: "1.0.0".into(), hash: "ab12".into() },
///     from_type: "counter.Counter".into(),
///     state: State::of(&CountV1 { count: 4 }).into(),
/// });
/// assert_eq!(upgrade.from_type(), "counter.Counter");
/// assert_eq!(count_of(&upgrade).ok(), Some(4));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Upgrade {
    from: VersionIdentity,
    from_type: String,
    state: State,
}

impl Upgrade {
    /// The upgrade a [`Migration`] describes (what the node hands the new version). Only the
    /// SDK needs it in a plugin; it is public for testing an import's conversion.
    pub fn new(migration: Migration) -> Upgrade {
        let Migration { from, from_type, state } = migration;
        Upgrade { from, from_type, state: State(state) }
    }

    /// The version the actor comes from: package, crate version and the source's hash.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn from_v1(from: &Upgrade) -> bool {
    ///     from.from().version.starts_with("1.")
    /// }
    /// ```
    pub fn from(&self) -> &VersionIdentity {
        &self.from
    }

    /// The actor's `module.Type` in the old version (another name than its new type after a
    /// rename).
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn renamed(from: &Upgrade) -> bool {
    ///     from.from_type() != "counter.Tally"
    /// }
    /// ```
    pub fn from_type(&self) -> &str {
        &self.from_type
    }

    /// The state the old version exported.
    /// ```
    /// # use troupe_actor_abi::prelude::*;
    /// fn describe(from: &Upgrade) -> String {
    ///     format!("a {} of {} bytes", from.state().tag(), from.state().body().len())
    /// }
    /// ```
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Decodes the state as `T` (see [`State::decode`]).
    /// ```
    /// # use serde::{Deserialize, Serialize};
    /// # use troupe_actor_abi::prelude::*;
    /// # #[derive(Serialize, Deserialize)]
    /// # struct CountV1 { count: u64 }
    /// # impl Typed for CountV1 { const TAG: &'static str = "counter/State.v1"; }
    /// fn count(from: &Upgrade) -> Option<ActorResult<u64>> {
    ///     from.decode::<CountV1>().map(|old| Ok(old?.count))
    /// }
    /// ```
    pub fn decode<T: Typed>(&self) -> Option<ActorResult<T>> {
        self.state.decode()
    }
}

impl From<State> for MigratedState {
    fn from(state: State) -> MigratedState {
        state.into_migrated()
    }
}

impl From<MigratedState> for State {
    fn from(state: MigratedState) -> State {
        State(state)
    }
}
