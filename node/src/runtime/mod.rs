//! The runtime: the core that owns the tables ([`core`]), and what it does with them —
//! routing messages ([`router`]), creating actors ([`lifecycle`]), stopping them ([`exit`]),
//! and answering the version hosts and peer links ([`seams`]).

pub mod core;
pub(crate) mod exit;
pub(crate) mod lifecycle;
pub(crate) mod router;
pub(crate) mod seams;

#[cfg(test)]
mod tests;
