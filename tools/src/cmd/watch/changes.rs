//! Which file events start a round of `troupe watch`, and when: [`relevant`] keeps changes to
//! the crate's sources (its `src/` tree, `Cargo.toml`, `build.rs`) and drops editor temp files,
//! hidden files, `target/` and reads; [`Debounce`] waits for a quiet moment so that one save
//! (several events) makes one build.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::EventKind;

/// Whether an event of `kind` can change what a build makes. Reads (cargo opening the sources
/// it compiles) and `Other` events (watcher housekeeping) cannot; a file closed after writing
/// can (it ends a save).
pub(crate) fn changes_content(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_))
        || completes_write(kind)
}

/// Whether an event says a file's new content is complete: closed after writing, or renamed
/// into place (editors that save atomically). A save then needs no quiet moment: its round
/// starts after [`SETTLE`] (for the other files of a "save all").
pub(crate) fn completes_write(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
    )
}

/// How long a round waits after a complete write, for the other files of the same save.
pub(crate) const SETTLE: Duration = Duration::from_millis(5);

/// Whether a file named `name` is an editor's or tool's scratch file, not a source.
fn is_scratch(name: &str) -> bool {
    name.starts_with('.')                                   // .foo.rs.swp, .#foo.rs, .git
        || name.ends_with('~')                              // foo.rs~ (emacs, gedit)
        || (name.starts_with('#') && name.ends_with('#'))   // #foo.rs# (emacs autosave)
        || name == "4913"                                   // vim's probe for a writable dir
        || [".swp", ".swo", ".swx", ".tmp", ".bak", ".orig", ".rej"].iter().any(|s| name.ends_with(s))
        || name.contains("___jb_")                          // JetBrains safe-write
        || name.ends_with(".crswap") // VS Code
}

/// Whether a change at `path` concerns the crate in `krate` (both absolute, as the watcher
/// reports them): a file under `src/` that is not scratch and not in a `target` directory, or
/// the crate's own `Cargo.toml` or `build.rs`.
pub(crate) fn relevant(krate: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(krate) else {
        return false;
    };
    let parts: Vec<&str> = rel
        .components()
        .map(|c| match c {
            Component::Normal(n) => n.to_str().unwrap_or("."),
            _ => ".",
        })
        .collect();
    match parts.as_slice() {
        [one] => *one == "Cargo.toml" || *one == "build.rs",
        ["src", rest @ ..] => !rest.is_empty() && !rest.iter().any(|p| *p == "target" || is_scratch(p)),
        _ => false,
    }
}

/// The paths of `paths` that are [`relevant`], relative to the crate (for the `changed:` line).
pub(crate) fn relevant_paths(krate: &Path, paths: &[PathBuf]) -> Vec<PathBuf> {
    paths
        .iter()
        .filter(|p| relevant(krate, p))
        .filter_map(|p| p.strip_prefix(krate).ok().map(Path::to_path_buf))
        .collect()
}

/// Coalesces a burst of changes into one round: the round is due once no change came for
/// `quiet`, or (so that a file rewritten without pause still gets built) once the first change
/// of the burst is `patience` old.
#[derive(Debug)]
pub(crate) struct Debounce {
    quiet: Duration,
    patience: Duration,
    /// The first and the latest change of the burst waiting for its round.
    burst: Option<(Instant, Instant)>,
    /// The latest complete write of the burst (see [`completes_write`]).
    complete: Option<Instant>,
    /// The changed paths of the burst, each once.
    paths: Vec<PathBuf>,
}

impl Debounce {
    pub(crate) fn new(quiet: Duration) -> Debounce {
        let patience = (quiet * 10).max(Duration::from_secs(1));
        Debounce { quiet, patience, burst: None, complete: None, paths: Vec::new() }
    }

    /// A relevant change to `paths` at `now` (`complete`: it ended a write).
    pub(crate) fn note(&mut self, now: Instant, paths: Vec<PathBuf>, complete: bool) {
        let first = self.burst.map_or(now, |(first, _)| first);
        self.burst = Some((first, now));
        if complete {
            self.complete = Some(now);
        }
        for p in paths {
            if !self.paths.contains(&p) {
                self.paths.push(p);
            }
        }
    }

    /// When the waiting burst's round is due (none while no change waits).
    pub(crate) fn due(&self) -> Option<Instant> {
        let settled = self.complete.map(|at| at + SETTLE.min(self.quiet));
        self.burst.map(|(first, last)| {
            let quiet = (last + self.quiet).min(first + self.patience);
            settled.map_or(quiet, |s| s.min(quiet))
        })
    }

    /// The burst's paths if its round is due at `now` (and forgets the burst).
    pub(crate) fn take_if_due(&mut self, now: Instant) -> Option<Vec<PathBuf>> {
        if self.due().is_some_and(|d| d <= now) {
            self.burst = None;
            self.complete = None;
            Some(std::mem::take(&mut self.paths))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, DataChange, ModifyKind, RemoveKind};

    #[test]
    fn sources_count_and_scratch_target_and_other_files_do_not() {
        let k = Path::new("/w/hello");
        for yes in ["src/lib.rs", "src/a/b.rs", "src/data.json", "Cargo.toml", "build.rs"] {
            assert!(relevant(k, &k.join(yes)), "{yes} ignored");
        }
        for no in [
            "src/.lib.rs.swp",
            "src/lib.rs~",
            "src/#lib.rs#",
            "src/.#lib.rs",
            "src/4913",
            "src/lib.rs.tmp",
            "src/lib.rs___jb_tmp___",
            "src/lib.rs.crswap",
            "src/target/x.rs",
            "src/.git/index",
            "target/release/libhello.so",
            "Cargo.lock",
            "tests/loads.rs",
            "README.md",
            "sub/Cargo.toml",
            "src",
            "",
        ] {
            assert!(!relevant(k, &k.join(no)), "{no} counted");
        }
        assert!(!relevant(k, Path::new("/w/other/src/lib.rs")));
        assert_eq!(
            relevant_paths(k, &[k.join("src/lib.rs"), k.join("src/lib.rs~")]),
            vec![PathBuf::from("src/lib.rs")]
        );
    }

    #[test]
    fn reads_do_not_count_as_changes() {
        assert!(changes_content(&EventKind::Modify(ModifyKind::Data(DataChange::Any))));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
        assert!(changes_content(&EventKind::Remove(RemoveKind::File)));
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(notify::event::AccessMode::Any))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(notify::event::AccessMode::Read))));
        // A file closed after writing ends a save.
        assert!(changes_content(&EventKind::Access(AccessKind::Close(notify::event::AccessMode::Write))));
        assert!(completes_write(&EventKind::Access(AccessKind::Close(notify::event::AccessMode::Write))));
        assert!(completes_write(&EventKind::Modify(ModifyKind::Name(notify::event::RenameMode::To))));
        assert!(!completes_write(&EventKind::Modify(ModifyKind::Data(DataChange::Any))));
        assert!(!changes_content(&EventKind::Other));
    }

    #[test]
    fn a_burst_makes_one_round_after_a_quiet_moment() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut d = Debounce::new(Duration::from_millis(100));
        assert_eq!(d.due(), None);
        assert_eq!(d.take_if_due(ms(1_000)), None);
        d.note(ms(0), vec!["src/lib.rs".into()], false);
        d.note(ms(50), vec!["src/lib.rs".into(), "src/a.rs".into()], false);
        assert_eq!(d.due(), Some(ms(150)));
        assert_eq!(d.take_if_due(ms(149)), None);
        let paths = d.take_if_due(ms(150)).expect("due after 100 ms of quiet");
        assert_eq!(paths, vec![PathBuf::from("src/lib.rs"), PathBuf::from("src/a.rs")]);
        assert_eq!(d.due(), None, "the burst is forgotten once taken");
    }

    #[test]
    fn changes_without_pause_still_get_a_round() {
        let t0 = Instant::now();
        let mut d = Debounce::new(Duration::from_millis(100));
        for i in 0..40 {
            d.note(t0 + Duration::from_millis(i * 50), vec!["src/lib.rs".into()], false);
        }
        // Never 100 ms of quiet, but the first change is a second old.
        assert_eq!(d.due(), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_complete_write_needs_no_quiet_moment() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut d = Debounce::new(Duration::from_millis(100));
        d.note(ms(0), vec!["src/lib.rs".into()], false);
        assert_eq!(d.due(), Some(ms(100)));
        // The editor closes the file: the round starts as soon as the save has settled.
        d.note(ms(1), vec!["src/lib.rs".into()], true);
        assert_eq!(d.due(), Some(ms(1) + SETTLE));
        assert!(d.take_if_due(ms(1) + SETTLE).is_some());
        // The next burst starts afresh.
        d.note(ms(200), vec!["src/a.rs".into()], false);
        assert_eq!(d.due(), Some(ms(300)));
    }
}
