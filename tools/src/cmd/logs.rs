//! `troupe logs`: prints a node's `node.log` (the last lines with `--lines`), and follows it
//! with `-f`. The path comes from the node's status, or from where `troupe start` puts it
//! when no node answers.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;

use super::node_addr;
use super::start::troupe_home;
use super::status::node_status;
use crate::{refused, Failure, EXIT_OK, EXIT_UNREACHABLE};

/// `troupe logs PORT [-f] [--lines N]`.
pub(crate) async fn logs(port: &str, follow: bool, lines: Option<usize>) -> Result<u8, Failure> {
    // The node knows where its state is; a stopped node's log is where `start` puts it.
    let path = match node_status(&node_addr(port)).await {
        Ok(r) => Path::new(&r.store).parent().map(|p| p.join("node.log")).unwrap_or_default(),
        Err(f) if f.code == EXIT_UNREACHABLE => {
            let p = troupe_home()
                .join(format!("node-{}", port.rsplit(':').next().unwrap_or(port)))
                .join("node.log");
            eprintln!("(no node answers on {}; showing {})", node_addr(port), p.display());
            p
        }
        Err(f) => return Err(f),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        refused(anyhow!(
            "cannot read {}: {e} — was the node started with --state-dir elsewhere?",
            path.display()
        ))
    })?;
    let all: Vec<&str> = text.lines().collect();
    let start = lines.map(|n| all.len().saturating_sub(n)).unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for l in &all[start..] {
        if writeln!(out, "{l}").is_err() {
            return Ok(EXIT_OK); // a closed pipe is not an error
        }
    }
    let _ = out.flush();
    if !follow {
        return Ok(EXIT_OK);
    }
    let mut pos = text.len() as u64;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.len() < pos {
            pos = 0; // the node restarted and truncated its log
        }
        if meta.len() > pos {
            let mut f = std::fs::File::open(&path).map_err(|e| refused(anyhow!("{e}")))?;
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(pos))
                .map_err(|e| refused(anyhow!("{e}")))?;
            let mut buf = Vec::new();
            let n = f.read_to_end(&mut buf).map_err(|e| refused(anyhow!("{e}")))?;
            pos += n as u64;
            if out.write_all(&buf).and_then(|_| out.flush()).is_err() {
                return Ok(EXIT_OK);
            }
        }
    }
}
