//! The runtime: the core that owns the tables ([`core`]), and what it does with them —
//! routing messages ([`router`]), creating actors ([`lifecycle`]), stopping them ([`exit`]),
//! answering the version hosts and peer links ([`seams`]), what actors ask of their node
//! through its admin address ([`requests`]: source notifications, system calls, asks) and
//! restarting supervised children ([`supervise`]).

pub mod core;
pub(crate) mod exit;
pub(crate) mod lifecycle;
pub(crate) mod requests;
pub(crate) mod router;
pub(crate) mod seams;
pub(crate) mod supervise;

#[cfg(test)]
mod tests;
