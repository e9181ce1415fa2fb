//! Capability changes at run time (`troupe chgcap`): set a value, or clear a capability.
//! Actors whose requirements no longer hold are asked to exit (their parents get
//! `ChildActorExited` and may re-create them where they fit), and the convention hears of it
//! at once.

use troupe_actor_abi::message::ExitReason;

use crate::model::error::OpError;
use crate::runtime::core::Core;
use crate::wire::Response;

impl Core {
    /// Sets (`add`: `name` or `name=value`) or clears (`name`) a capability.
    pub fn change_capability(&self, add: bool, spec: &str) -> Result<Response, OpError> {
        if spec.trim().is_empty() {
            return Err(OpError::Usage("a capability name cannot be empty".into()));
        }
        let caps = self.caps.change(add, spec).map_err(|e| OpError::Usage(e.to_string()))?;
        let victims = self.actors.unfit(&caps);
        let n = victims.len();
        for (id, requirements) in victims {
            self.request_exit(id, ExitReason::CapabilityLost { requirements }, None);
        }
        tracing::info!(capabilities = ?caps, stopped = n, "capabilities changed");
        self.reregister.notify_one();
        Ok(Response::Capabilities { capabilities: caps, stopped_actors: n })
    }
}
