//! `troupe chgcap`: adds or removes a capability of a running node (actors that needed a
//! removed capability are asked to exit).

use anyhow::anyhow;
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
