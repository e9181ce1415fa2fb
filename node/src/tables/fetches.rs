//! Versions being fetched from a peer, one fetch per hash at a time (single flight): the first
//! create (or upgrade) that needs a version here starts the fetch; every other one that needs
//! it meanwhile waits for that fetch's outcome instead of fetching the same zip again.
//! Placement reads [`Fetches::in_flight`] so that a create that qualifies here is placed here
//! while its version is on its way (not elsewhere because the version is not active yet).
//!
//! The lock is private and held only to look up, add or remove an entry. A flight that ends
//! without an outcome (its task dropped) removes its entry and tells its waiters so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

/// How a fetch ended: `Ok` once the version is active here, or why it is not.
pub(crate) type FetchOutcome = Result<(), String>;

type Slot = watch::Receiver<Option<FetchOutcome>>;
type Map = HashMap<String, Slot>;

/// The fetches in flight, by hash.
#[derive(Default)]
pub(crate) struct Fetches {
    // An `Arc` so that a [`Flight`] (which outlives the borrow of the table, in a task) can
    // remove its own entry when it ends.
    flights: Arc<Mutex<Map>>,
}

/// What a caller that needs a version fetched does.
pub(crate) enum Turn {
    /// No fetch of it was in flight: this caller fetches, then [`Flight::finish`]es.
    Lead(Flight),
    /// Another caller fetches it: wait for its outcome.
    Wait(Waiter),
}

/// The one fetch of a hash in flight. Dropped without [`Flight::finish`], it ends as failed.
pub(crate) struct Flight {
    flights: Arc<Mutex<Map>>,
    hash: String,
    tx: watch::Sender<Option<FetchOutcome>>,
    finished: bool,
}

/// A caller waiting for another's fetch.
pub(crate) struct Waiter(Slot);

fn lock(flights: &Mutex<Map>) -> MutexGuard<'_, Map> {
    flights.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fetches {
    /// Joins the fetch of `hash` in flight, or starts one (the caller leads it).
    pub(crate) fn join(&self, hash: &str) -> Turn {
        let mut map = lock(&self.flights);
        if let Some(slot) = map.get(hash) {
            return Turn::Wait(Waiter(slot.clone()));
        }
        let (tx, rx) = watch::channel(None);
        map.insert(hash.to_string(), rx);
        Turn::Lead(Flight { flights: self.flights.clone(), hash: hash.to_string(), tx, finished: false })
    }

    /// Whether a fetch of `hash` is in flight.
    pub(crate) fn in_flight(&self, hash: &str) -> bool {
        lock(&self.flights).contains_key(hash)
    }
}

impl Flight {
    /// Ends the fetch: its entry goes (a later need starts a new fetch), then every waiter
    /// gets `outcome`.
    pub(crate) fn finish(mut self, outcome: FetchOutcome) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: FetchOutcome) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        // Only this flight inserted the entry, and it is removed only here: it is ours.
        lock(&self.flights).remove(&self.hash);
        // No receiver left (every waiter gave up) is no error: nobody needs the outcome.
        let _ = self.tx.send(Some(outcome));
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.end(Err("the fetch was abandoned (the node is stopping)".into()));
    }
}

impl Waiter {
    /// The outcome of the fetch this caller waits for.
    pub(crate) async fn outcome(mut self) -> FetchOutcome {
        match self.0.wait_for(Option::is_some).await {
            Ok(outcome) => {
                outcome.clone().unwrap_or_else(|| Err("the fetch ended without an outcome".into()))
            }
            // The flight's sender is gone; `Flight::drop` always sends first, so this is only
            // a safety net.
            Err(_) => Err("the fetch was abandoned".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(t: Turn) -> Flight {
        match t {
            Turn::Lead(f) => f,
            Turn::Wait(_) => panic!("expected to lead the fetch"),
        }
    }

    fn wait(t: Turn) -> Waiter {
        match t {
            Turn::Wait(w) => w,
            Turn::Lead(_) => panic!("expected to wait for the fetch in flight"),
        }
    }

    #[tokio::test]
    async fn the_first_leads_the_others_wait_and_all_get_its_outcome() {
        let fetches = Fetches::default();
        let flight = lead(fetches.join("h"));
        assert!(fetches.in_flight("h"));
        assert!(!fetches.in_flight("other"));
        let waiters: Vec<Waiter> = (0..5).map(|_| wait(fetches.join("h"))).collect();
        flight.finish(Err("no reachable member holds it".into()));
        assert!(!fetches.in_flight("h"), "a finished fetch is no longer in flight");
        for w in waiters {
            assert_eq!(w.outcome().await, Err("no reachable member holds it".into()));
        }
        // A later need starts a new fetch.
        let again = lead(fetches.join("h"));
        again.finish(Ok(()));
    }

    #[tokio::test]
    async fn a_flight_dropped_without_an_outcome_fails_its_waiters_and_frees_the_hash() {
        let fetches = Fetches::default();
        let flight = lead(fetches.join("h"));
        let waiter = wait(fetches.join("h"));
        drop(flight);
        assert!(!fetches.in_flight("h"));
        let outcome = waiter.outcome().await;
        assert!(outcome.as_ref().is_err_and(|e| e.contains("abandoned")), "{outcome:?}");
    }
}
