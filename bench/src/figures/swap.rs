//! B6: a hot swap under load. Paced clients send demo requests for 10 s; at 3 s a second
//! version's Acceptor takes over, at 5 s the first version is unloaded (grace 1 s). The figures
//! are the requests lost, the latency before and during the swap, and the unload's times.

use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use troupe_actor_abi::message::Address;
use troupe_node::client::Client;
use troupe_node::protocol::{Request, Response};
use troupe_node::status::GoneStatus;

use super::requests::demo_request;
use super::{encoders, ms, us, ALL_CAPS};
use crate::harness::{create, load, status, Env, Node, Raw, ZipVariants};
use crate::{percentile, Figure, Opts};

/// Connections, each paced to its share of the rate: closed loops, so that a slow answer
/// delays that connection's next request and shows as latency rather than queueing.
const CONNS: usize = 32;

/// One request: when it was sent (seconds since the start) and its latency in µs (none when
/// lost or failed).
type Sample = (f64, Option<f64>);

/// The schedule: requests from `start` for `run`, the swap at `swap_at`, the unload at
/// `unload_at`, `rate` requests/s in all.
struct Plan {
    rate: f64,
    start: Instant,
    run: Duration,
    swap_at: Duration,
    unload_at: Duration,
}

/// What the swap and the unload did, seen from the control client.
struct Events {
    /// When v2's Acceptor was handed to the clients, since the start.
    swapped: Duration,
    /// The unload request to its reply.
    unload_reply: Duration,
    unload: Response,
}

pub(super) async fn b6(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let rate = if opts.quick { 1000.0 } else { 5000.0 };
    let run = Duration::from_secs(10);
    let (swap_at, unload_at) = (Duration::from_secs(3), Duration::from_secs(5));
    let variants = encoders(env)?;
    let node = Node::start(env, ALL_CAPS, None).await?;
    let mut c = Client::connect(&node.addr()).await?;
    let v1 = load(&mut c, variants.make("6.0.1")?).await?;
    let a1 = create(&mut c, &v1, "app.Acceptor", Some(format!("Acceptor:{v1}"))).await?;
    let (tx, rx) = watch::channel(a1.clone());
    let plan = Plan { rate, start: Instant::now() + Duration::from_millis(200), run, swap_at, unload_at };
    let tasks = paced_clients(&node, &a1, &rx, &plan).await?;
    let events = swap_and_unload(&mut c, &variants, &tx, &v1, &plan).await?;
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await?);
    }
    // The unload's record: drain and close times.
    let gone = gone_record(&mut c, &v1).await?;
    Ok(b6_figures(&plan, &samples, &events, gone))
}

/// Starts the paced connections, each warmed by one request first.
async fn paced_clients(
    node: &Node,
    a1: &Address,
    rx: &watch::Receiver<Address>,
    plan: &Plan,
) -> Result<Vec<JoinHandle<Vec<Sample>>>> {
    let interval = Duration::from_secs_f64(CONNS as f64 / plan.rate);
    let end = plan.start + plan.run;
    let mut tasks = Vec::new();
    for k in 0..CONNS {
        let mut raw = Raw::connect(&node.addr()).await?;
        demo_request(&mut raw, a1, "warm").await?;
        let first = plan.start + interval.mul_f64(k as f64 / CONNS as f64);
        tasks.push(tokio::spawn(paced(raw, rx.clone(), plan.start, first, interval, end)));
    }
    Ok(tasks)
}

/// One connection: a request to the current Acceptor at `first`, then every `interval` until
/// `end`.
async fn paced(
    mut raw: Raw,
    rx: watch::Receiver<Address>,
    start: Instant,
    first: Instant,
    interval: Duration,
    end: Instant,
) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    let mut slot = first;
    while slot < end {
        tokio::time::sleep_until(slot.into()).await;
        let acceptor = rx.borrow().clone();
        let at = (Instant::now() - start).as_secs_f64();
        match demo_request(&mut raw, &acceptor, "hello").await {
            Ok(d) => out.push((at, Some(us(d)))),
            Err(_) => {
                out.push((at, None));
                // A lost reply may still arrive: start afresh on a new connection.
                if let Ok(r) = Raw::connect(&raw.me.node).await {
                    raw = r;
                }
            }
        }
        slot += interval;
    }
    out
}

/// At `swap_at`, loads v2 and points the clients at its Acceptor; at `unload_at`, unloads v1.
async fn swap_and_unload(
    c: &mut Client,
    variants: &ZipVariants,
    tx: &watch::Sender<Address>,
    v1: &str,
    plan: &Plan,
) -> Result<Events> {
    tokio::time::sleep_until((plan.start + plan.swap_at).into()).await;
    let v2 = load(c, variants.make("6.0.2")?).await?;
    let a2 = create(c, &v2, "app.Acceptor", Some(format!("Acceptor:{v2}"))).await?;
    let _ = tx.send(a2);
    let swapped = plan.start.elapsed();
    tokio::time::sleep_until((plan.start + plan.unload_at).into()).await;
    let t_unload = Instant::now();
    let unload = c.request(Request::Unload { hash: v1.to_string(), grace_ms: Some(1000) }).await;
    let unload_reply = t_unload.elapsed();
    Ok(Events { swapped, unload_reply, unload: unload? })
}

/// v1's entry in the node's `gone` list, once it appears (none after 10 s).
async fn gone_record(c: &mut Client, v1: &str) -> Result<Option<GoneStatus>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = status(c).await?;
        if let Some(g) = st.gone.iter().find(|g| g.hash == v1) {
            return Ok(Some(g.clone()));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn b6_figures(plan: &Plan, samples: &[Sample], events: &Events, gone: Option<GoneStatus>) -> Vec<Figure> {
    let (swap_at, unload_at) = (plan.swap_at.as_secs_f64(), plan.unload_at.as_secs_f64());
    let before: Vec<f64> = samples.iter().filter(|s| s.0 < swap_at).filter_map(|s| s.1).collect();
    let during: Vec<f64> =
        samples.iter().filter(|s| s.0 >= swap_at && s.0 < unload_at + 1.0).filter_map(|s| s.1).collect();
    let lost = samples.iter().filter(|s| s.1.is_none()).count();
    let achieved = samples.len() as f64 / plan.run.as_secs_f64();
    let p99b = percentile(&before, 99.0);
    let p99d = percentile(&during, 99.0);
    let mut figs = vec![
        Figure::value("B6.lost", "lost or failed requests during 10 s with a swap", lost as f64, "requests")
            .target("0", 0.0, true)
            .note(format!(
                "{} requests, {achieved:.0}/s achieved of {:.0}/s; v2 active at {:.2} s",
                samples.len(),
                plan.rate,
                events.swapped.as_secs_f64()
            )),
        Figure::latency("B6.before", "request latency before the swap (0–3 s)", &before, "µs"),
        Figure::latency("B6.during", "request latency during the swap (3–6 s)", &during, "µs"),
        Figure::value("B6.p99x", "p99 during / p99 before", p99d / p99b, "×").target("≤ 2", 2.0, true),
        Figure::value("B6.unload", "unload request to reply (grace 1 s)", ms(events.unload_reply), "ms")
            .note(format!("{:?}", events.unload).chars().take(120).collect::<String>()),
    ];
    figs.extend(gone_figures(gone));
    figs
}

/// The node's own record of the unload: close and drain times.
fn gone_figures(gone: Option<GoneStatus>) -> Vec<Figure> {
    match gone {
        Some(g) => vec![
            Figure::value(
                "B6.dlclose",
                "last actor exit to dlclose + files deleted (node's gone[].unload_ms)",
                g.unload_ms,
                "ms",
            ),
            Figure::value("B6.drain", "unload request to dlclose (node's gone[].drain_ms)", g.drain_ms, "ms"),
        ],
        None => {
            vec![Figure::error("B6.dlclose", "unload to dlclose", "v1 never appeared in status.gone".into())]
        }
    }
}
