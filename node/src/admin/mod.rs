//! The admin port and what sits on it: the server ([`server`]) and what it does with each
//! request ([`dispatch`]), the client the CLI and tests use ([`client`]), and the metrics
//! endpoint ([`metrics`]).

pub mod client;
pub(crate) mod dispatch;
pub mod metrics;
pub mod server;
