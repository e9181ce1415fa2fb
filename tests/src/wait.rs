//! Waiting for something a test can only observe by asking again (a status, a log line, a
//! file): [`wait_for`] asks with a short back-off until a deadline.

use std::time::{Duration, Instant};

/// Calls `check` until it returns `Some`, or panics after `timeout` naming `what`.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(5);
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}
