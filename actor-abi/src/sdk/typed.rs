//! Typed messages and what can be sent: [`Typed`] values carry a stable tag across versions,
//! [`IntoPayload`] is what [`Context::send`](super::Context::send) accepts, and
//! [`decode_payload`] reads a typed payload back.

use crate::message::{self, Payload};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ActorError, ActorResult};

/// A typed message: a serde value with a stable tag naming its type across versions.
/// Derive serde's traits and pick a tag; send a value with [`Context::send`](super::Context::send)
/// (as `&value`) and read one with [`Message::decode`](super::Message::decode). The body crosses
/// versions and nodes as msgpack with field names, so a field added as `Option` or with
/// `#[serde(default)]` stays compatible.
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
/// let back = decode_payload::<Greet>(&payload).expect("the tag matches").expect("the body
/// decodes"); assert_eq!(back, Greet { name: "Ada".into() });
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

/// Decodes a payload as `T` (see [`Message::decode`](super::Message::decode)); useful for payloads
/// returned inside a `PoisonMessage`.
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
