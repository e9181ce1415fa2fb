//! What a watcher polls besides the status ([`crate::wire::Request::Observe`]): the process's
//! figures from `/proc/self/status`, each hash's message counters from the versions table, the
//! live upgrades' progress (progress table), the latest departures (members table), and a
//! piece of `node.log` (where `troupe logs` finds it: beside the store).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::runtime::core::Core;
use crate::wire::observe::{
    LogChunk, ObserveReport, VersionCounts, LOG_FROM_END, LOG_TAIL_BYTES, MAX_LOG_CHUNK,
};

impl Core {
    /// The answer to `Request::Observe`; reads a file, so it runs on a blocking thread.
    pub async fn observe(&self, log_from: Option<u64>) -> ObserveReport {
        let mut counts: Vec<VersionCounts> = Vec::new();
        for c in self.versions.counters(self.long_handler) {
            match counts.iter_mut().find(|v| v.hash == c.hash) {
                Some(v) => {
                    v.queued += c.queued;
                    v.handled += c.handled;
                }
                None => counts.push(VersionCounts { hash: c.hash, queued: c.queued, handled: c.handled }),
            }
        }
        let log_path = self.store.parent().map(|p| p.join("node.log")).unwrap_or_default();
        let (rss_bytes, threads, log) = tokio::task::spawn_blocking(move || {
            let (rss, threads) =
                process_figures(&std::fs::read_to_string("/proc/self/status").unwrap_or_default());
            (rss, threads, log_from.map(|from| read_log(&log_path, from)))
        })
        .await
        .unwrap_or_default();
        ObserveReport {
            uptime_ms: self.metrics.uptime().as_millis() as u64,
            rss_bytes,
            threads,
            heartbeat_rtt_us: self.metrics.last_heartbeat_rtt().map(|d| d.as_micros() as u64),
            versions: counts,
            log,
            upgrades: self.progress.view(),
            departed: self.members.departed(),
        }
    }
}

/// `VmRSS` (bytes) and `Threads` from the text of `/proc/self/status`.
fn process_figures(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

/// Whole lines of the log from `from` (the last [`LOG_TAIL_BYTES`] for [`LOG_FROM_END`]), at
/// most [`MAX_LOG_CHUNK`] bytes.
fn read_log(path: &Path, from: u64) -> LogChunk {
    let failed = |e: std::io::Error| LogChunk {
        from,
        next: from,
        error: Some(format!("cannot read {}: {e}", path.display())),
        ..LogChunk::default()
    };
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return failed(e),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let tail = from == LOG_FROM_END;
    // A log shorter than the offset was truncated by a restart: start again at its beginning.
    let start = if tail {
        len.saturating_sub(LOG_TAIL_BYTES)
    } else if from > len {
        0
    } else {
        from
    };
    let mut buf = Vec::new();
    let read =
        f.seek(SeekFrom::Start(start)).and_then(|_| f.take(MAX_LOG_CHUNK as u64).read_to_end(&mut buf));
    if let Err(e) = read {
        return failed(e);
    }
    // A tail starts after the first line break (the first line may be cut), and every answer
    // ends at the last one (the last line may still be being written).
    let skip =
        if tail && start > 0 { buf.iter().position(|b| *b == b'\n').map_or(buf.len(), |i| i + 1) } else { 0 };
    let end = buf.iter().rposition(|b| *b == b'\n').map_or(skip, |i| (i + 1).max(skip));
    LogChunk {
        from: start + skip as u64,
        next: start + end as u64,
        text: String::from_utf8_lossy(&buf[skip..end]).into_owned(),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_come_from_proc_status() {
        let text = "Name:\ttroupe\nVmRSS:\t   20480 kB\nThreads:\t7\n";
        assert_eq!(process_figures(text), (20480 * 1024, 7));
        assert_eq!(process_figures(""), (0, 0));
        let (rss, threads) = process_figures(&std::fs::read_to_string("/proc/self/status").unwrap());
        assert!(rss > 0 && threads >= 1, "{rss} {threads}");
    }

    #[test]
    fn a_follower_reads_whole_lines_from_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        std::fs::write(&path, "one\ntwo\nthr").unwrap();
        let first = read_log(&path, 0);
        assert_eq!((first.text.as_str(), first.from, first.next), ("one\ntwo\n", 0, 8));
        // The unfinished line comes once it is finished, from where the last answer ended.
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        let second = read_log(&path, first.next);
        assert_eq!((second.text.as_str(), second.next), ("three\n", 14));
        assert_eq!(read_log(&path, second.next).text, "");
        // A restart truncated the log: reading starts again at its beginning.
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(read_log(&path, second.next).text, "new\n");
    }

    #[test]
    fn a_tail_starts_at_a_line_and_a_missing_log_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        let long: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &long).unwrap();
        let tail = read_log(&path, LOG_FROM_END);
        assert!(tail.text.starts_with("line ") && tail.text.ends_with("line 4999\n"), "{}", &tail.text[..20]);
        assert!(tail.text.len() as u64 <= LOG_TAIL_BYTES);
        assert_eq!(tail.next, long.len() as u64);
        let missing = read_log(&dir.path().join("absent.log"), 0);
        assert!(missing.error.as_deref().is_some_and(|e| e.contains("absent.log")), "{missing:?}");
    }
}
