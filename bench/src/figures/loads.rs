//! B1: loading a zip, from the CLI (process start to hash printed) and inside the node (one
//! request on an open client), for the zip as `troupe pack` writes it and for an unstripped one.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Result};
use troupe_node::client::Client;

use super::{ms, ALL_CAPS};
use crate::harness::{load, Env, Node, ZipVariants};
use crate::{Figure, Opts};

/// The samples of one zip kind, in ms.
struct Samples {
    /// `troupe load`, process start to hash printed.
    cli: Vec<f64>,
    /// The load request on an open client.
    inside: Vec<f64>,
    /// `troupe status`, taken only with the stripped zip.
    floor: Vec<f64>,
}

pub(super) async fn b1(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let n = opts.scale(50, 10);
    let node = Node::start(env, ALL_CAPS, None).await?;
    let mut figs = Vec::new();
    // As `troupe pack` writes it (stripped, zstd), then with the library as `make build`
    // leaves it (release with line tables: a 6.6 MB library; `troupe pack --no-strip`).
    for (suffix, strip, version) in [("", true, 1), (".unstripped", false, 2)] {
        let zip = env.pack(&format!("encoders{suffix}.zip"), "troupe_encoders", strip)?;
        let (zip_kib, variants) = (std::fs::metadata(&zip)?.len() / 1024, ZipVariants::new(&zip)?);
        // The floor once is enough: it does not depend on the zip.
        let (cli, floor) = cli_loads(env, &node, &variants, version, n, suffix.is_empty())?;
        let inside = node_loads(&node, &variants, version, n).await?;
        let samples = Samples { cli, inside, floor };
        figs.extend(b1_figures(suffix, strip, n, zip_kib, &samples));
    }
    Ok(figs)
}

/// `n` runs of `troupe load` with distinct variants (each followed by one `troupe status` when
/// `with_floor`); the load times and the floor times in ms.
fn cli_loads(
    env: &Env,
    node: &Node,
    variants: &ZipVariants,
    version: u32,
    n: usize,
    with_floor: bool,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut cli = Vec::new();
    let mut floor = Vec::new();
    for i in 0..n {
        let zip = env.path(&format!("b1-{version}-{i}.zip"));
        std::fs::write(&zip, variants.make(&format!("{version}.0.{i}"))?)?;
        cli.push(cli_load(env, node.port, &zip)?);
        if with_floor {
            floor.extend(cli_floor(env, node.port)?);
        }
    }
    Ok((cli, floor))
}

/// One `troupe load PORT ZIP`: process start to hash printed, in ms.
fn cli_load(env: &Env, port: u16, zip: &Path) -> Result<f64> {
    let t = Instant::now();
    let out = Command::new(env.troupe())
        .arg("load")
        .arg(port.to_string())
        .arg(zip)
        .env("RUST_LOG", "warn")
        .output()?;
    let d = t.elapsed();
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || hash.len() != 64 {
        bail!("troupe load failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(ms(d))
}

/// The floor of any CLI command: process start, connect, hello, one request. In ms, or none
/// when `troupe status` failed.
fn cli_floor(env: &Env, port: u16) -> Result<Option<f64>> {
    let t = Instant::now();
    let out = Command::new(env.troupe())
        .args(["status", &port.to_string(), "--json"])
        .stdout(Stdio::null())
        .output()?;
    Ok(out.status.success().then(|| ms(t.elapsed())))
}

/// `n` loads of distinct variants on one open client, request to reply, in ms.
async fn node_loads(node: &Node, variants: &ZipVariants, version: u32, n: usize) -> Result<Vec<f64>> {
    let mut c = Client::connect(&node.addr()).await?;
    let mut inside = Vec::new();
    for i in 0..n {
        let zip = variants.make(&format!("{version}.1.{i}"))?;
        let t = Instant::now();
        load(&mut c, zip).await?;
        inside.push(ms(t.elapsed()));
    }
    Ok(inside)
}

/// `B1{suffix}`, `B1{suffix}.node` and, when taken, `B1.floor`; the targets apply to the
/// stripped zip only.
fn b1_figures(suffix: &str, strip: bool, n: usize, zip_kib: u64, s: &Samples) -> Vec<Figure> {
    let lib = if strip {
        "as `troupe pack` writes it (stripped, zstd)"
    } else {
        "unstripped library (`troupe pack --no-strip`, line tables)"
    };
    let cli_fig = Figure::latency(
        &format!("B1{suffix}"),
        &format!("`troupe load` encoders zip {lib}, process start to hash printed"),
        &s.cli,
        "ms",
    )
    .note(format!("{n} distinct zips of {zip_kib} KiB"));
    let node_fig = Figure::latency(
        &format!("B1{suffix}.node"),
        &format!("load inside the node, zip {lib} (in-process client, request to reply)"),
        &s.inside,
        "ms",
    );
    let mut figs = if strip {
        vec![cli_fig.target("p50 ≤ 8 ms", 8.0, true), node_fig.target("p50 ≤ 3 ms", 3.0, true)]
    } else {
        vec![cli_fig, node_fig]
    };
    if !s.floor.is_empty() {
        figs.push(Figure::latency(
            "B1.floor",
            "`troupe status` (CLI floor: exec + connect + hello + 1 request)",
            &s.floor,
            "ms",
        ));
    }
    figs
}
