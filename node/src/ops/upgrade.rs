//! Live upgrade: every live actor of one version moves to another at the same address, with
//! its state (DESIGN §8).

use std::sync::Arc;

use crate::model::error::OpError;
use crate::runtime::core::Core;
use crate::wire::{UpgradeOptions, UpgradeReport};

impl Core {
    /// Moves every live actor of `from` to `to`, here and on every member.
    pub async fn upgrade(
        self: &Arc<Self>,
        from: &str,
        to: &str,
        options: UpgradeOptions,
    ) -> Result<UpgradeReport, OpError> {
        let _ = (from, to, options);
        Err(OpError::Internal("live upgrade is not built yet".into()))
    }
}
