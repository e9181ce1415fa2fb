//! Test plugin: `abort.Echo` answers `echo: <t>`. Built normally it is an ordinary plugin; the
//! tests build it with `cargo rustc -- -C panic=abort` (into their own target directory), and
//! a plugin whose panics abort the whole node must be refused by `troupe pack` and `troupe load`.

use troupe_actor_abi::prelude::*;

/// `abort.Echo`.
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

troupe_actor_abi::export_plugin!(actors: ["abort.Echo" => Echo]);
