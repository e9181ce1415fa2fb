//! The model: plain data and pure decisions every other part builds on — configuration, ids,
//! placement, the core's typed errors and the argv of a node process. It imports nothing from
//! the rest of the node but the wire and store types its data is made of.

pub mod config;
pub mod error;
pub(crate) mod ids;
pub mod launch;
pub mod log_limit;
pub mod metrics;
pub(crate) mod placement;
pub mod version_state;
