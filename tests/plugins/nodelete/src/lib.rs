//! Test plugin: `nodelete.Echo` answers `echo: <t>`. It is linked with `-z nodelete`
//! (build.rs), so its library sets `DF_1_NODELETE`, which makes `dlclose` a no-op: the node
//! must clear the flag in its private copy and really unload it.

use troupe_actor_abi::prelude::*;

/// `nodelete.Echo`.
struct Echo;
impl Actor for Echo {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Echo)
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let (Some(t), Some(from)) = (msg.text(), msg.sender()) {
            let from = from.clone();
            ctx.send_text(&from, &format!("echo: {t}"));
        }
        Ok(())
    }
}

troupe_actor_abi::export_plugin!(actors: ["nodelete.Echo" => Echo]);
