//! Capability changes at run time (`troupe chgcap`): actors whose requirements no longer hold
//! are asked to exit (their parents get `ChildActorExited` and may re-create them where they
//! fit), and the convention hears of it at once.

use troupe_actor_abi::message::ExitReason;

use crate::model::error::OpError;
use crate::runtime::core::Core;
use crate::wire::Response;

impl Core {
    /// Adds or removes a capability.
    pub fn change_capability(&self, add: bool, name: &str) -> Result<Response, OpError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(OpError::Usage("a capability name cannot be empty".into()));
        }
        let caps = self.caps.change(add, name);
        let victims = self.actors.unfit(&caps);
        let n = victims.len();
        for (id, requirements) in victims {
            self.request_exit(id, ExitReason::CapabilityLost { requirements }, None);
        }
        let capabilities: Vec<String> = caps.into_iter().collect();
        tracing::info!(?capabilities, stopped = n, "capabilities changed");
        self.reregister.notify_one();
        Ok(Response::Capabilities { capabilities, stopped_actors: n })
    }
}
