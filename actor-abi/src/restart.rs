//! Supervision's restart policy ([`RestartPolicy`]): how many times the runtime re-creates a
//! supervised child, and how long it waits before each restart.
//!
//! The waits have a floor and a cap whatever a policy asks, so that a child that can never run
//! (its constructor always fails) costs its node a few restarts a second, not a busy loop: at
//! least [`MIN_RESTART_BACKOFF`] before any restart, doubling with each restart of a run of
//! failures up to the policy's longest wait ([`DEFAULT_MAX_BACKOFF`] when it sets none), and a
//! run ends once the child has gone [`RestartPolicy::quiet_period`] without failing.
//! Erlang's supervisors restart at once and Akka's backoff supervisor doubles between a minimum
//! and a maximum; the floor and the doubling here are Akka's, the budget (`max_restarts`
//! within a window) is Erlang's intensity.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The shortest wait before any restart, whatever the policy asks. A create that fails at once
/// takes tens of microseconds, so without a floor a child whose constructor always fails was
/// restarted about 23 000 times a second (issue 21). 10 ms bounds that at 100 a second (before
/// the doubling brings it down to about one a second), and stays far below what a person
/// notices when a child that failed once comes back.
pub const MIN_RESTART_BACKOFF: Duration = Duration::from_millis(10);

/// The longest wait when a policy sets none (`RestartPolicy::on_failure` without `backoff`):
/// after about seven failures in a row, a child that keeps failing is restarted about once a
/// second, as often as its log lines can still be read.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(1);

/// When the runtime re-creates a supervised child (see
/// [`Context::create_supervised`](crate::sdk::Context::create_supervised)): up to
/// `max_restarts` times within `within_ms`, waiting `backoff_ms` before the first restart of a
/// run of failures and twice as long before each next one (at most `max_backoff_ms`). When the
/// budget is spent the parent gets `ChildActorExited` as for any other child.
///
/// The node waits at least [`MIN_RESTART_BACKOFF`] before any restart, and doubles up to
/// [`DEFAULT_MAX_BACKOFF`] when the policy sets no longest wait: [`RestartPolicy::delay`] is
/// the wait it applies. A run of failures ends when the child has gone
/// [`RestartPolicy::quiet_period`] without failing; the next failure waits the first wait again.
///
/// ```
/// # use troupe_actor_abi::prelude::*;
/// use std::time::Duration;
/// let p = RestartPolicy::on_failure(3, Duration::from_secs(60))
///     .backoff(Duration::from_millis(100), Duration::from_secs(5));
/// assert_eq!((p.max_restarts, p.within_ms, p.backoff_ms, p.max_backoff_ms), (3, 60_000, 100, 5_000));
/// assert_eq!(p.delay(1), Duration::from_millis(100));
/// assert_eq!(p.delay(3), Duration::from_millis(400));
/// assert_eq!(p.delay(30), Duration::from_secs(5));
/// assert_eq!(p.quiet_period(), Duration::from_secs(10));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// The most restarts within the window.
    pub max_restarts: u32,
    /// The window, in milliseconds.
    pub within_ms: u64,
    /// The wait before the first restart of a run of failures, in milliseconds (at least
    /// [`MIN_RESTART_BACKOFF`] is waited).
    pub backoff_ms: u64,
    /// The longest wait, in milliseconds (0: [`DEFAULT_MAX_BACKOFF`]).
    pub max_backoff_ms: u64,
}

/// `d` in whole milliseconds, saturating.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RestartPolicy {
    /// Restart on failure up to `max_restarts` times within `within`, with the node's shortest
    /// waits ([`MIN_RESTART_BACKOFF`], doubling up to [`DEFAULT_MAX_BACKOFF`]).
    pub fn on_failure(max_restarts: u32, within: Duration) -> RestartPolicy {
        RestartPolicy { max_restarts, within_ms: ms(within), backoff_ms: 0, max_backoff_ms: 0 }
    }

    /// Waits `first` before the first restart, doubling up to `max` for each next one.
    pub fn backoff(self, first: Duration, max: Duration) -> RestartPolicy {
        RestartPolicy { backoff_ms: ms(first), max_backoff_ms: ms(max).max(ms(first)), ..self }
    }

    /// The wait before the `n`th restart of a run of failures (1-based), as the node applies
    /// it: the first wait (at least [`MIN_RESTART_BACKOFF`]) doubled `n - 1` times, at most
    /// [`RestartPolicy::max_delay`].
    pub fn delay(&self, n: u32) -> Duration {
        let first = self.backoff_ms.max(ms(MIN_RESTART_BACKOFF));
        let factor = 1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX);
        Duration::from_millis(first.saturating_mul(factor)).min(self.max_delay())
    }

    /// The longest wait: `max_backoff_ms`, or [`DEFAULT_MAX_BACKOFF`] when the policy sets none;
    /// never shorter than the first wait.
    pub fn max_delay(&self) -> Duration {
        let max = if self.max_backoff_ms == 0 { ms(DEFAULT_MAX_BACKOFF) } else { self.max_backoff_ms };
        Duration::from_millis(max.max(self.backoff_ms).max(ms(MIN_RESTART_BACKOFF)))
    }

    /// How long a child must go without failing (counted from the decision to restart it) for
    /// its run of failures to end: twice the longest wait, so that a child restarted after the
    /// longest wait has run at least that long again.
    pub fn quiet_period(&self) -> Duration {
        self.max_delay().saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(p: &RestartPolicy, runs: std::ops::RangeInclusive<u32>) -> Vec<u64> {
        runs.map(|n| p.delay(n).as_millis() as u64).collect()
    }

    #[test]
    fn a_policy_without_backoff_still_waits_the_floor_and_doubles_to_the_default_cap() {
        let p = RestartPolicy::on_failure(1_000_000, Duration::from_secs(3600));
        assert_eq!(millis(&p, 1..=9), [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(p.delay(u32::MAX), DEFAULT_MAX_BACKOFF);
        assert_eq!(p.quiet_period(), Duration::from_secs(2));
        // Asking for no wait at all is the same.
        let zero = p.clone().backoff(Duration::ZERO, Duration::ZERO);
        assert_eq!(millis(&zero, 1..=9), millis(&p, 1..=9));
    }

    #[test]
    fn a_zero_first_wait_with_a_cap_starts_at_the_floor_and_keeps_the_cap() {
        let p = RestartPolicy::on_failure(5, Duration::from_secs(60))
            .backoff(Duration::ZERO, Duration::from_secs(2));
        assert_eq!(millis(&p, 1..=10), [10, 20, 40, 80, 160, 320, 640, 1280, 2000, 2000]);
    }

    #[test]
    fn waits_the_policy_asks_above_the_floor_are_kept() {
        let p = RestartPolicy::on_failure(5, Duration::from_secs(60))
            .backoff(Duration::from_millis(50), Duration::from_millis(120));
        assert_eq!(millis(&p, 1..=4), [50, 100, 120, 120], "an explicit cap below the default is kept");
        assert_eq!(p.quiet_period(), Duration::from_millis(240));
        let p = RestartPolicy::on_failure(5, Duration::from_secs(60))
            .backoff(Duration::from_millis(3), Duration::from_millis(5));
        assert_eq!(millis(&p, 1..=3), [10, 10, 10], "a cap below the floor is the floor");
    }

    #[test]
    fn huge_values_saturate() {
        let p = RestartPolicy::on_failure(5, Duration::MAX).backoff(Duration::MAX, Duration::MAX);
        assert_eq!(p.delay(u32::MAX), Duration::from_millis(u64::MAX));
        assert_eq!(p.quiet_period(), Duration::from_millis(u64::MAX).saturating_mul(2));
    }
}
