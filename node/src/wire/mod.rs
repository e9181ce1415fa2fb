//! What travels on the admin port, below everything that sends or handles it:
//!
//! - [`frame`]: framing, limits, the protocol version and the handshake;
//! - [`codec`]: the length-delimited frames, read into buffers that grow with what arrives;
//! - [`noise`] and [`seal`]: the encrypted links of a convention with a shared secret (the
//!   Noise handshake, then every frame sealed in chunks);
//! - [`admin`]: client frames, client requests and every response;
//! - [`peer`]: what nodes of a convention ask each other, and their directory entries;
//! - [`error`]: why a request failed, as it travels (class, stable code, message);
//! - [`status`]: what `troupe status` reports;
//! - [`observe`]: what a watcher (`troupe dashboard`) polls besides the status;
//! - [`upgrade`]: what a live upgrade is asked and reports.
//!
//! The crate re-exports this module as `troupe_node::protocol`.

pub mod admin;
pub mod codec;
pub mod error;
pub mod frame;
pub mod noise;
pub mod observe;
pub mod peer;
pub mod seal;
pub mod status;
pub mod upgrade;

pub use admin::{AuthProof, ClientFrame, Request, Response, ServerFrame};
pub use codec::FrameCodec;
pub use error::{Coded, ErrorKind, ErrorReply};
pub use frame::{
    client_handshake, codec, decode, encode, Welcome, MAX_FRAME_BYTES, MAX_HELLO_BYTES, NONCE_BYTES,
    PROTOCOL_VERSION,
};
pub use peer::{
    DirectoryVersion, GroupInfo, GroupsCopy, HeldOutcome, MemberInfo, PeerRequest, Registration,
    RemoteSources, SourceHint, SourceSummary,
};
pub use seal::SealedCodec;
pub use upgrade::{NodeUpgrade, TypeOutcome, UpgradeFailure, UpgradeOptions, UpgradeReport};
