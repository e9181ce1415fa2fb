//! Test plugin: `ctor.Echo` answers `echo: <t>`. Its library has an ELF constructor (an
//! `.init_array` entry) that writes a marker file at the path in `TROUPE_TEST_CTOR_MARK` when
//! the library is loaded: the tests show that `troupe pack`, `pack --sign` and a node refusing
//! a corrupt copy never create it.

use troupe_actor_abi::prelude::*;

/// The environment variable naming the marker file.
const MARK_VAR: &str = "TROUPE_TEST_CTOR_MARK";

/// Runs when the library is loaded (dlopen), before any plugin function.
extern "C" fn leave_mark() {
    if let Some(path) = std::env::var_os(MARK_VAR) {
        let _ = std::fs::write(path, format!("constructor ran in process {}\n", std::process::id()));
    }
}

/// The constructor, as the loader finds it.
#[used]
#[unsafe(link_section = ".init_array")]
static LEAVE_MARK: extern "C" fn() = leave_mark;

/// `ctor.Echo`.
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

troupe_actor_abi::export_plugin!(actors: ["ctor.Echo" => Echo]);
