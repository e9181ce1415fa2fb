//! [`Repeats`]: a limiter for a log line that can repeat without bound (a supervised child
//! restarted again and again, a create that keeps failing, connections refused in a flood).
//!
//! Each such call site owns one `Repeats` (a `static`). A few lines a second pass as they come;
//! beyond that they are counted instead of written, and the next line that passes says how
//! many were held back and over how long: "… (12 345 more like this were not logged over the
//! last 1.2s)". Issue 21 measured 118 MB of log in 3 s from two such lines.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many lines of one call site pass in each [`WINDOW`]: enough to see what happens and to
/// tell several actors apart, few enough that a flood costs a few hundred bytes a second.
pub const BURST: u32 = 5;

/// The window [`BURST`] counts in.
pub const WINDOW: Duration = Duration::from_secs(1);

/// What a call site wrote and held back lately.
#[derive(Debug, Default)]
struct State {
    /// When the current window began.
    window: Option<Instant>,
    /// Lines passed in the current window.
    passed: u32,
    /// Lines held back since the last one passed, and when the first of them was.
    held: u64,
    held_since: Option<Instant>,
}

/// One call site's limiter (see the module's documentation).
#[derive(Debug, Default)]
pub struct Repeats {
    state: Mutex<State>,
}

/// What a line that passes says about the lines held back before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBack {
    /// How many lines were not written.
    pub lines: u64,
    /// From the first of them to now.
    pub over: Duration,
}

impl std::fmt::Display for HeldBack {
    /// Empty when nothing was held back; else " (N more like this were not logged over the last D)".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lines == 0 {
            return Ok(());
        }
        let over = Duration::from_millis(self.over.as_millis().max(1) as u64);
        write!(f, " ({} more like this were not logged over the last {over:?})", self.lines)
    }
}

impl Repeats {
    /// A limiter with nothing written yet (for a `static`).
    pub const fn new() -> Repeats {
        Repeats { state: Mutex::new(State { window: None, passed: 0, held: 0, held_since: None }) }
    }

    /// Whether a line may be written at `now`: `Some` with what was held back before it (to be
    /// appended to the line), or `None` (the line is counted, not written).
    pub fn admit(&self, now: Instant) -> Option<HeldBack> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.window.is_none_or(|w| now.saturating_duration_since(w) >= WINDOW) {
            st.window = Some(now);
            st.passed = 0;
        }
        if st.passed >= BURST {
            st.held += 1;
            st.held_since.get_or_insert(now);
            return None;
        }
        st.passed += 1;
        let over = st.held_since.take().map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        Some(HeldBack { lines: std::mem::take(&mut st.held), over })
    }

    /// [`Repeats::admit`] now.
    pub fn admit_now(&self) -> Option<HeldBack> {
        self.admit(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_passes_a_burst_a_window_and_the_next_line_counts_the_rest() {
        let r = Repeats::new();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // 10 000 lines within one window: the first BURST pass, with nothing held before them.
        let passed: Vec<HeldBack> = (0..10_000).filter_map(|i| r.admit(ms(i / 100))).collect();
        assert_eq!(passed.len(), BURST as usize);
        assert!(passed.iter().all(|h| h.lines == 0 && h.to_string().is_empty()));
        // The first line of the next window says how many were not written, and since when.
        let next = r.admit(ms(1000)).expect("a new window lets a line pass");
        assert_eq!(next.lines, 10_000 - u64::from(BURST));
        assert_eq!(next.over, Duration::from_millis(1000));
        assert_eq!(next.to_string(), " (9995 more like this were not logged over the last 1s)");
        // Told once: the line after it holds nothing back.
        assert_eq!(r.admit(ms(1001)).map(|h| h.lines), Some(0));
    }

    #[test]
    fn lines_a_few_a_second_all_pass() {
        let r = Repeats::new();
        let t0 = Instant::now();
        for i in 0..100u64 {
            let h = r.admit(t0 + Duration::from_millis(i * 250)).expect("4 a second pass");
            assert_eq!(h.lines, 0);
        }
    }
}
