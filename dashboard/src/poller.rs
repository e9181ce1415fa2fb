//! The poll loop: at each refresh (and at once after an action) it asks every node it knows
//! for its status and its `Observe` figures, learns of new nodes from their answers, and
//! publishes one [`Published`] for the page's streams and searches.
//!
//! The poller owns the [`Tracker`] and the [`History`] (nobody else touches them); it shares
//! only what it publishes, through a `watch` channel that keeps the latest value.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Notify};
use troupe_node::protocol::observe::{Departure, ObserveReport};
use troupe_node::protocol::status::StatusReport;
use troupe_node::protocol::{Request, Response};

use crate::history::{History, Sample};
use crate::nodes::Nodes;
use crate::tracker::{Polled, Tracker};
use crate::upgrades::upgrades_of;
use crate::view::{group_view, node_view, View};

/// How many times one refresh follows new addresses (a member's answer names nodes the entry
/// did not): enough for a leader that lists members that list other leaders.
const DISCOVERY_ROUNDS: usize = 3;

/// What one refresh publishes.
#[derive(Default)]
pub struct Published {
    /// The page's document.
    pub view: View,
    /// It as JSON, serialized once for every open page.
    pub json: Arc<str>,
    /// The statuses of the nodes that answered (actor searches read them).
    pub statuses: Vec<StatusReport>,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The loop's parts.
pub struct Poller {
    /// The connections.
    pub nodes: Arc<Nodes>,
    /// The node the dashboard was pointed at.
    pub entry: String,
    /// The refresh period.
    pub refresh: Duration,
    /// Rung by an action: refresh now.
    pub wake: Arc<Notify>,
    /// Where each refresh goes.
    pub tx: watch::Sender<Arc<Published>>,
}

type Answer = Result<(StatusReport, Option<ObserveReport>), String>;

impl Poller {
    /// Refreshes until every receiver is gone.
    pub async fn run(self) {
        let mut tracker = Tracker::default();
        let mut history = History::default();
        loop {
            let published = self.refresh_once(&mut tracker, &mut history).await;
            if self.tx.send(Arc::new(published)).is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.refresh) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    async fn refresh_once(&self, tracker: &mut Tracker, history: &mut History) -> Published {
        let now = Instant::now();
        let mut asked: BTreeSet<String> = BTreeSet::new();
        let mut answers: Vec<(String, Answer)> = Vec::new();
        let mut next: BTreeSet<String> = tracker.known().into_iter().collect();
        next.insert(self.entry.clone());
        for _ in 0..DISCOVERY_ROUNDS {
            let round: Vec<String> = next.difference(&asked).cloned().collect();
            if round.is_empty() {
                break;
            }
            let polled = futures::future::join_all(round.iter().map(|a| poll_node(&self.nodes, a))).await;
            asked.extend(round.iter().cloned());
            for (addr, answer) in round.into_iter().zip(polled) {
                if let Ok((s, _)) = &answer {
                    next.extend(s.convention.members.iter().map(|m| m.node.clone()));
                    next.extend(s.convention.leaders.iter().cloned());
                }
                answers.push((addr, answer));
            }
        }
        let t_ms = unix_ms();
        let published = self.publish(t_ms, now, tracker, history, answers);
        self.nodes.retain(&tracker.known());
        published
    }

    fn publish(
        &self,
        t_ms: u64,
        now: Instant,
        tracker: &mut Tracker,
        history: &mut History,
        answers: Vec<(String, Answer)>,
    ) -> Published {
        let ok =
            |a: &str| answers.iter().find(|(x, r)| x == a && r.is_ok()).and_then(|(_, r)| r.as_ref().ok());
        let entry = ok(&self.entry).map(|(s, _)| s);
        let leader = entry.map(|s| s.convention.leader.clone()).unwrap_or_default();
        // What the leader says of its members (the entry's view if the leader did not answer).
        let says_source = ok(&leader).map(|(s, _)| s).or(entry);
        let leader_says: BTreeMap<String, (bool, u64)> = says_source
            .map(|s| {
                s.convention.members.iter().map(|m| (m.node.clone(), (m.alive, m.last_seen_ms))).collect()
            })
            .unwrap_or_default();
        let groups_source = ok(&leader).map(|(s, _)| s).or(entry);
        let groups =
            groups_source.map(|s| s.groups.iter().map(|(n, g)| (n.clone(), group_view(g))).collect());
        let groups: BTreeMap<_, _> = groups.unwrap_or_default();
        let dead_after_ms = entry.map(|s| s.convention.dead_after_ms).unwrap_or(0);
        // Departures as the convention saw them: the leader's word first (a member learns of a
        // departure from the leader's directory, which does not say whether the node left).
        let mut departed: BTreeMap<String, Departure> = BTreeMap::new();
        let observed_by_leader_first = answers
            .iter()
            .filter(|(a, _)| *a == leader)
            .chain(answers.iter().filter(|(a, _)| *a != leader))
            .filter_map(|(_, r)| r.as_ref().ok().and_then(|(_, o)| o.as_ref()));
        for o in observed_by_leader_first {
            for d in &o.departed {
                departed.entry(d.node.clone()).or_insert_with(|| d.clone());
            }
        }
        let mut shares = Vec::new();
        let mut samples = Vec::new();
        let mut statuses = Vec::new();
        let mut polled: Vec<Polled> = Vec::new();
        for (addr, answer) in answers {
            match answer {
                Ok((status, observed)) => {
                    samples.extend(samples_of(&addr, &status, observed.as_ref()));
                    if let Some(o) = &observed {
                        shares.push((addr.clone(), o.upgrades.clone()));
                    }
                    polled.push((addr, Ok(node_view(&status, observed.as_ref(), &groups))));
                    statuses.push(status);
                }
                Err(e) => polled.push((addr, Err(e))),
            }
        }
        let nodes = tracker.update(t_ms, &leader, polled, &leader_says, &departed);
        history.record(now, t_ms, &samples);
        let mut published = Published { statuses, ..Published::default() };
        published.view = View {
            t_ms,
            entry: self.entry.clone(),
            leader,
            refresh_ms: self.refresh.as_millis() as u64,
            dead_after_ms,
            nodes,
            groups,
            series: history.view(),
            upgrades: upgrades_of(&shares),
            events: tracker.events(),
        };
        published.json = serde_json::to_string(&published.view).unwrap_or_else(|_| "{}".into()).into();
        published
    }
}

/// A node's status, then its `Observe` figures (none from a node too old to answer them).
async fn poll_node(nodes: &Nodes, addr: &str) -> Answer {
    let status = match nodes.poll(addr, Request::Status).await {
        Ok(Response::Status(s)) => *s,
        Ok(other) => return Err(format!("unexpected answer to a status request: {other:?}")),
        Err(e) => return Err(e.to_string()),
    };
    let observed = match nodes.poll(addr, Request::Observe { log_from: None }).await {
        Ok(Response::Observed(o)) => Some(*o),
        _ => None,
    };
    Ok((status, observed))
}

/// One node's chart samples: handled counts from `Observe`, depths from the status.
fn samples_of(addr: &str, status: &StatusReport, observed: Option<&ObserveReport>) -> Vec<Sample> {
    let Some(o) = observed else { return Vec::new() };
    o.versions
        .iter()
        .map(|c| {
            let of_hash = status.versions.iter().filter(|v| v.hash == c.hash);
            Sample {
                node: addr.to_string(),
                hash: c.hash.clone(),
                package: status
                    .versions
                    .iter()
                    .find(|v| v.hash == c.hash)
                    .map(|v| v.package.clone())
                    .unwrap_or_default(),
                handled: c.handled,
                depth: of_hash.map(|v| v.queue_depth as u64).sum(),
            }
        })
        .collect()
}
