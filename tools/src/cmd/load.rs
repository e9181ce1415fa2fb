//! Versions in and out of a node: `troupe load` (one source zip), `troupe unload` (drain,
//! then unload), and the named releases, `troupe deploy` and `troupe rollback`.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use troupe_node::protocol::{Request, Response};

use super::{connect, with_progress};
use crate::{refused, usage, Failure, EXIT_OK};

/// `troupe load PORT ZIP`: prints the hash.
pub(crate) async fn load(port: &str, zip: &Path) -> Result<u8, Failure> {
    let bytes =
        std::fs::read(zip).with_context(|| format!("cannot read {}", zip.display())).map_err(|e| {
            usage(e.context("give the path of a zip written by `troupe pack` (or run `make load`)"))
        })?;
    let mut c = connect(port).await?;
    let info = zip.display().to_string();
    let what = format!("loading {} ({} KiB) into {}", zip.display(), bytes.len() / 1024, c.node());
    match with_progress(&what, c.request(Request::Load { zip: bytes, info })).await? {
        Response::Loaded { hash, already_active } => {
            if already_active {
                eprintln!("already loaded; nothing changed");
            }
            println!("{hash}");
            Ok(EXIT_OK)
        }
        other => Err(refused(anyhow!("unexpected answer {other:?}"))),
    }
}

/// What a deploy or rollback did to the group.
fn print_group(response: Response) -> Result<u8, Failure> {
    match response {
        Response::Group { group, info, previous, unloaded, .. } => {
            let active = info.active.unwrap_or_default();
            println!("{group}: active {active}");
            if let Some(p) = previous {
                println!("{group}: previous {p} (still loaded: troupe rollback)");
            }
            for u in unloaded {
                println!("{group}: unloading {u} (drains, then unloads everywhere)");
            }
            Ok(EXIT_OK)
        }
        other => Err(refused(anyhow!("unexpected answer {other:?}"))),
    }
}

/// `troupe deploy PORT ZIP --group G`.
pub(crate) async fn deploy(
    port: &str,
    zip: &Path,
    group: &str,
    keep: usize,
    grace: Duration,
) -> Result<u8, Failure> {
    let bytes = std::fs::read(zip)
        .with_context(|| format!("cannot read {}", zip.display()))
        .map_err(|e| usage(e.context("give the path of a zip written by `troupe pack`")))?;
    let mut c = connect(port).await?;
    let request = Request::Deploy {
        migrate: None,
        zip: bytes,
        info: zip.display().to_string(),
        group: group.into(),
        keep,
        grace_ms: Some(grace.as_millis() as u64),
    };
    print_group(with_progress(&format!("deploying {} as @{group}", zip.display()), c.request(request)).await?)
}

/// `troupe rollback PORT GROUP`.
pub(crate) async fn rollback(port: &str, group: &str) -> Result<u8, Failure> {
    let mut c = connect(port).await?;
    print_group(c.request(Request::Rollback { group: group.into() }).await?)
}

/// `troupe unload PORT HASH [--grace T]`.
pub(crate) async fn unload(port: &str, hash: &str, grace: Option<Duration>) -> Result<u8, Failure> {
    let mut c = connect(port).await?;
    let grace_ms = grace.map(|g| g.as_millis() as u64);
    let what = format!("unloading {hash} (draining)");
    match with_progress(&what, c.request(Request::Unload { hash: hash.into(), grace_ms })).await? {
        Response::Unloaded { hash, live_actors, gone, spread_to } => {
            if !spread_to.is_empty() {
                println!("unload sent to {}", spread_to.join(", "));
            }
            if gone {
                println!("unloaded {hash}: library closed and files deleted");
            } else {
                println!(
                    "unloading {hash}: draining, {live_actors} actor{} still alive; it is unloaded when {} exit (or use --grace)",
                    if live_actors == 1 { "" } else { "s" },
                    if live_actors == 1 { "it" } else { "they" }
                );
            }
            Ok(EXIT_OK)
        }
        other => Err(refused(anyhow!("unexpected answer {other:?}"))),
    }
}
