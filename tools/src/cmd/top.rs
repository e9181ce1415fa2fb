//! `troupe top`: the status table of a node (or of every node of its convention), refreshed
//! at an interval.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::node_addr;
use super::status::{node_status, render_status};
use crate::{Failure, EXIT_OK};

/// `troupe top PORT`: one table per refresh; on a terminal, each replaces the last.
pub(crate) async fn top(
    port: &str,
    interval: Duration,
    convention: bool,
    iterations: Option<u64>,
) -> Result<u8, Failure> {
    let tty = std::io::stdout().is_terminal();
    let mut n = 0u64;
    loop {
        let mut text = String::new();
        let report = node_status(&node_addr(port)).await?;
        if convention {
            let mut nodes = vec![report.clone()];
            for m in &report.convention.members {
                if let Ok(r) = node_status(&m.node).await {
                    nodes.push(r);
                }
            }
            for r in &nodes {
                text += &render_status(r);
                text += "\n";
            }
        } else {
            text = render_status(&report);
        }
        let mut out = std::io::stdout().lock();
        // Clear and home only on a terminal; piped output gets one snapshot after another.
        let frame = if tty { format!("\x1b[2J\x1b[H{text}") } else { format!("{text}\n") };
        if out.write_all(frame.as_bytes()).and_then(|_| out.flush()).is_err() {
            return Ok(EXIT_OK);
        }
        n += 1;
        if iterations.is_some_and(|max| n >= max) {
            return Ok(EXIT_OK);
        }
        tokio::time::sleep(interval).await;
    }
}
