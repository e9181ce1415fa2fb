//! The echo every test plugin carries, shared by source (`#[path]` module): each plugin is its
//! own cdylib crate, so a library crate would only add a dependency to every one of them.

use troupe_actor_abi::prelude::*;

/// Answers `echo: <t>` to the sender of a text `t`.
pub fn echo(ctx: &mut Context, msg: &Message) {
    if let (Some(t), Some(from)) = (msg.text(), msg.sender()) {
        let from = from.clone();
        ctx.send_text(&from, &format!("echo: {t}"));
    }
}

/// An actor that only echoes (`faulty.Echo`, `hostile.Echo`, ...).
pub struct Echo;
impl Actor for Echo {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Echo)
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        echo(ctx, &msg);
        Ok(())
    }
}
