//! The figures. Each group function returns its figures or an error; [`run_all`] turns an
//! error into an error figure and goes on with the next group.
//!
//! One module per group, or per pair of groups that share a setup: `loads` (B1), `requests`
//! (B2 and B3, on the same three-node convention), `messages` (B4, B5), `swap` (B6), `memory`
//! (B7), `scale` (B8, with `failover` for its convention of listed leaders), `threads` (B9), `upgrade` (B10), `watch` (B10.watch, called by
//! `upgrade`) and `dashboard` (B11, on B3's convention). This module holds what several of them use.

mod dashboard;
mod failover;
mod loads;
mod memory;
mod messages;
mod requests;
mod scale;
mod swap;
mod threads;
mod upgrade;
mod watch;

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::harness::{Env, ZipVariants};
use crate::{Figure, Opts};

/// The encoders' capabilities, all on one node.
const ALL_CAPS: &str = "64bit encoder,Caesar cipher,morse";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs every group `opts` selects.
pub async fn run_all(env: &Env, opts: &Opts) -> Vec<Figure> {
    let mut figs = Vec::new();
    macro_rules! group {
        ($id:literal, $what:literal, $f:expr) => {
            if opts.wants($id) {
                eprintln!("== {} {}", $id, $what);
                let t = Instant::now();
                figs.extend(guard($id, $what, $f).await);
                eprintln!("   {} took {:.1} s", $id, t.elapsed().as_secs_f64());
            }
        };
    }
    group!("B1", "load", loads::b1(env, opts));
    group!("B2", "cold request", requests::b2(env, opts));
    group!("B3", "warm request", requests::b3(env, opts));
    group!("B4", "one-way messages, one node", messages::b4(env, opts));
    group!("B5", "messages across two nodes", messages::b5(env, opts));
    group!("B6", "hot swap under load", swap::b6(env, opts));
    group!("B7", "memory", memory::b7(env, opts));
    group!("B8", "scale", scale::b8(env, opts));
    group!("B9", "a version's threads", threads::b9(env, opts));
    group!("B10", "live upgrade", upgrade::b10(env, opts));
    group!("B11", "the dashboard's cost and latency", dashboard::b11(env, opts));
    figs
}

async fn guard(id: &str, what: &str, f: impl Future<Output = Result<Vec<Figure>>>) -> Vec<Figure> {
    match f.await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("   {id} failed: {e:#}");
            vec![Figure::error(id, what, format!("{e:#}"))]
        }
    }
}

/// The encoders zip and its variants.
fn encoders(env: &Env) -> Result<ZipVariants> {
    let zip = env.pack("encoders.zip", "troupe_encoders", true)?;
    ZipVariants::new(&zip)
}

/// The bench plugin (stripped) and its variants.
fn bench_plugin(env: &Env) -> Result<ZipVariants> {
    let zip = env.pack("bench.zip", "troupe_bench_plugin", true)?;
    ZipVariants::new(&zip)
}
