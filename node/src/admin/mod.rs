//! The admin port and what sits on it: the server ([`server`]) and what it does with each
//! request ([`dispatch`]), its door (`gate`: the cap on connections), the client the CLI and
//! tests use ([`client`]), and the metrics
//! endpoint ([`metrics`]).

pub mod client;
pub(crate) mod dispatch;
mod gate;
pub mod metrics;
pub mod server;
