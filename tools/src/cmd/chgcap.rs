//! `troupe chgcap`: adds or removes a capability of a running node (actors that needed a
//! removed capability are asked to exit), and the argument parser that `chgcap` and `start`
//! share for capabilities ([`CapabilityArg`]).

use anyhow::anyhow;
use clap::builder::TypedValueParser;
use troupe_actor_abi::caps;
use troupe_node::protocol::{Request, Response};

use super::connect;
use crate::{refused, Failure, EXIT_OK};

/// `troupe chgcap PORT +|- CAPABILITY`.
pub(crate) async fn chgcap(port: &str, op: &str, cap: &str) -> Result<u8, Failure> {
    let mut c = connect(port).await?;
    match c.request(Request::ChangeCapability { add: op == "+", name: cap.into() }).await? {
        Response::Capabilities { capabilities, stopped_actors } => {
            println!(
                "{}: capabilities now [{}]; {stopped_actors} actor{} asked to exit",
                c.node(),
                capabilities.join(", "),
                if stopped_actors == 1 { "" } else { "s" }
            );
            Ok(EXIT_OK)
        }
        other => Err(refused(anyhow!("unexpected answer {other:?}"))),
    }
}

/// Parses a capability argument with [`troupe_actor_abi::caps`]: one `NAME[=VALUE]` (chgcap),
/// or a comma-separated list (start). A refusal is a usage error (exit 2) whose message is the
/// parser's own: it shows only a short prefix of a long argument, where clap's default
/// ("invalid value '…'") would repeat all of it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CapabilityArg {
    /// A comma-separated list rather than one capability.
    pub(crate) list: bool,
}

impl TypedValueParser for CapabilityArg {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let refuse = |why: String| {
            let what = arg.map_or_else(|| "the capability".to_string(), |a| format!("<{}>", a.get_id()));
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{what}: {why}\n"))
                .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| refuse("not valid UTF-8".into()))?;
        let parsed = if self.list {
            caps::parse_list(text).map(drop)
        } else if text.trim().is_empty() {
            Err(caps::CapError("the capability name is empty".into()))
        } else {
            caps::parse_capability(text).map(drop)
        };
        parsed.map(|()| text.to_string()).map_err(|e| refuse(e.to_string()))
    }
}
