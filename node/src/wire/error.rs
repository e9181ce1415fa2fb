//! Why a request failed, as it travels: a class (which decides the CLI's exit code), a stable
//! code and a message. Core errors are typed enums; each implements [`Coded`], and the admin
//! dispatcher (`crate::admin::dispatch`) turns it into an [`ErrorReply`] once, at the edge.

use serde::{Deserialize, Serialize};

/// Why a request failed.
#[derive(Clone, Debug, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorReply {
    /// What kind of failure (decides the CLI's exit code).
    pub kind: ErrorKind,
    /// A stable name for the specific error (e.g. `InvalidActorSourceHash`, `hash_mismatch`).
    pub code: String,
    /// Human-readable explanation, naming what to do next where possible.
    pub message: String,
}

/// Classes of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The node refused: rejected source, unknown hash, no compatible node (exit code 1).
    Refused,
    /// The request itself was malformed or ambiguous (exit code 2).
    BadRequest,
    /// The node is stopping.
    Unavailable,
}

/// A typed error that travels as an [`ErrorReply`]: its stable code and its class. Codes are
/// snake_case, except the names Thespian users know (`InvalidActorSourceHash`,
/// `NoCompatibleSystemForActor`, …), which stay as they are on the wire.
pub trait Coded: std::fmt::Display {
    /// The stable code.
    fn code(&self) -> &str;
    /// The class of failure (the CLI's exit code follows from it).
    fn class(&self) -> ErrorKind {
        ErrorKind::Refused
    }
    /// The error as it travels.
    fn reply(&self) -> ErrorReply {
        ErrorReply { kind: self.class(), code: self.code().into(), message: self.to_string() }
    }
}

impl Coded for troupe_actor_abi::message::CreateError {
    fn code(&self) -> &str {
        self.kind()
    }
    fn class(&self) -> ErrorKind {
        match self {
            troupe_actor_abi::message::CreateError::ActorSystemShuttingDown
            | troupe_actor_abi::message::CreateError::NoLeader { .. } => ErrorKind::Unavailable,
            _ => ErrorKind::Refused,
        }
    }
}
