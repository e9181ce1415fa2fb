//! Where a loaded version (one generation of a hash) is in its life. The version registry
//! ([`crate::tables::versions`]) drives the machine; status and metrics show it.

/// The states of a generation: `validating → active → draining → gone`, or quarantined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VersionState {
    /// The source authority decides; its library is being loaded and checked.
    Validating,
    /// Accepting new actors.
    Active,
    /// Unloaded, waiting for its actors to exit.
    Draining,
    /// Its `on_unload` hung: never closed while its thread is stuck.
    Quarantined,
}

impl VersionState {
    /// Every state, in the order they are written.
    pub const ALL: [VersionState; 4] =
        [VersionState::Validating, VersionState::Active, VersionState::Draining, VersionState::Quarantined];

    /// The name `status` and metrics show.
    pub fn label(self) -> &'static str {
        match self {
            VersionState::Validating => "validating",
            VersionState::Active => "active",
            VersionState::Draining => "draining",
            VersionState::Quarantined => "quarantined",
        }
    }
}
