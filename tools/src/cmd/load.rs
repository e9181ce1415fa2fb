//! Versions in and out of a node: `troupe load` (one source zip), `troupe unload` (drain,
//! then unload), and the named releases, `troupe deploy` (with `--migrate`, a live upgrade of
//! the previous version's actors) and `troupe rollback`.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use troupe_node::protocol::{Request, Response, UpgradeOptions};

use super::{connect, upgrade, with_progress};
use crate::{refused, usage, Failure, EXIT_OK};

/// `troupe load PORT ZIP`: prints the hash.
pub(crate) async fn load(port: &str, zip: &Path) -> Result<u8, Failure> {
    let bytes = read_zip(zip, "give the path of a zip written by `troupe pack` (or run `make load`)")?;
    let mut c = connect(port).await?;
    let info = zip.display().to_string();
    let what = format!("loading {} ({} KiB) into {}", zip.display(), bytes.len() / 1024, c.node());
    match with_progress(&what, c.request(Request::Load { zip: bytes, info })).await? {
        Response::Loaded { hash, already_active, revived } => {
            if revived {
                eprintln!("it was draining: that version serves again, with its actors");
            }
            if already_active {
                eprintln!("already loaded; nothing changed");
            }
            println!("{hash}");
            Ok(EXIT_OK)
        }
        other => Err(refused(anyhow!("unexpected answer {other:?}"))),
    }
}

/// The bytes of the source zip at `zip`, refused by the archive limit before it is read (and
/// so before it is sent): the node would refuse it the same way (`too_large`, exit 1). A file
/// that cannot be read is a usage error, with `hint`.
pub(crate) fn read_zip(zip: &Path, hint: &str) -> Result<Vec<u8>, Failure> {
    let cannot_read = |e: std::io::Error| {
        usage(anyhow!(e).context(format!("cannot read {}", zip.display())).context(hint.to_string()))
    };
    let size = std::fs::metadata(zip).map_err(cannot_read)?.len();
    let limit = troupe_node::archive::DEFAULT_MAX_ZIP_BYTES;
    if size > limit {
        let e = troupe_node::archive::ArchiveError::TooLarge { size, limit };
        return Err(refused(anyhow!("{}: {e} (a node would refuse it), so it was not read", zip.display())));
    }
    std::fs::read(zip).map_err(cannot_read)
}

/// What a deploy or rollback did to the group, and what a deploy's `--migrate` moved. The
/// exit code is the upgrade's ([`upgrade::report_code`]) when there was one.
fn print_group(response: Response, migrate: bool) -> Result<u8, Failure> {
    match response {
        Response::Group { group, info, previous, unloaded, upgrade } => {
            let active = info.active.unwrap_or_default();
            println!("{group}: active {active}");
            if let Some(p) = &previous {
                println!("{group}: previous {p} (still loaded: troupe rollback)");
            }
            for u in unloaded {
                println!("{group}: unloading {u} (drains, then unloads everywhere)");
            }
            match upgrade {
                Some(report) => {
                    print!("{}", upgrade::render_report(&report));
                    Ok(upgrade::report_code(&report))
                }
                None if migrate && previous.is_none() => {
                    println!("{group}: nothing to migrate (no version was active before)");
                    Ok(EXIT_OK)
                }
                None if migrate => Err(refused(anyhow!(
                    "the node deployed @{group} but did not say what --migrate moved: check troupe status"
                ))),
                None => Ok(EXIT_OK),
            }
        }
        other => Err(refused(anyhow!("unexpected answer {other:?}"))),
    }
}

/// `troupe deploy PORT ZIP --group G [--migrate ...]`.
pub(crate) async fn deploy(
    port: &str,
    zip: &Path,
    group: &str,
    keep: usize,
    grace: Duration,
    migrate: Option<UpgradeOptions>,
) -> Result<u8, Failure> {
    let bytes = read_zip(zip, "give the path of a zip written by `troupe pack`")?;
    let mut c = connect(port).await?;
    let migrating = migrate.is_some();
    let request = Request::Deploy {
        migrate,
        zip: bytes,
        info: zip.display().to_string(),
        group: group.into(),
        keep,
        grace_ms: Some(grace.as_millis() as u64),
    };
    let answer =
        with_progress(&format!("deploying {} as @{group}", zip.display()), c.request(request)).await?;
    print_group(answer, migrating)
}

/// `troupe rollback PORT GROUP`.
pub(crate) async fn rollback(port: &str, group: &str) -> Result<u8, Failure> {
    let mut c = connect(port).await?;
    print_group(c.request(Request::Rollback { group: group.into() }).await?, false)
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
