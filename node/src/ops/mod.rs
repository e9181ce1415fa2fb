//! Operations on a node, each built on the tables' owners: [`load`], [`fetch`] (between
//! nodes), [`unload`], [`stop`], [`capabilities`], [`groups`] (named releases), [`report`]
//! (status) and [`observe`] (what a watcher polls).

pub(crate) mod capabilities;
pub(crate) mod fetch;
pub(crate) mod groups;
pub(crate) mod load;
pub(crate) mod long_handlers;
pub(crate) mod observe;
pub(crate) mod report;
pub(crate) mod stop;
pub(crate) mod unload;
pub(crate) mod upgrade;
