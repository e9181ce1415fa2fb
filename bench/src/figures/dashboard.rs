//! B11: what `troupe dashboard` costs and how fast it shows things, on B3's three-node
//! convention. `B11.off`/`B11.on`/`B11.on500`: B3's warm request latency and throughput
//! without a dashboard, with one refreshing every second (the figure) and with one at
//! its default refresh (500 ms), each with a page (an SSE reader) open, in alternating runs
//! (off, 1 s, 500 ms, twice) so that drift of the machine falls on all. `B11.load` and
//! `B11.lost` and `B11.upgrade`: at the default refresh, from a load's answer, a member's
//! SIGKILL, or a live upgrade's answer, to the first snapshot on the page's event stream that
//! shows it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use troupe_node::client::Client;
use troupe_node::protocol::{Request, Response, UpgradeOptions};

use super::requests::{demo_request, three, throughput, Throughput};
use super::{encoders, us};
use crate::harness::{create, load, Env, Raw};
use crate::{percentile, Figure, Opts};

/// The refresh of the cost's first "on" runs: the "refresh of 1 s".
const REFRESH: Duration = Duration::from_secs(1);

/// `troupe dashboard`'s default refresh (`troupe_dashboard::DEFAULT_REFRESH`), for the cost's
/// other "on" runs and the event-to-page figures, which run without `--refresh`.
const DEFAULT_REFRESH: Duration = Duration::from_millis(500);

/// How long a snapshot may take to show an event before the run counts as failed.
const SHOW_TIMEOUT: Duration = Duration::from_secs(30);

/// A `troupe dashboard` process on a free loopback port, killed when dropped.
struct Dash {
    child: Child,
    base: String,
}

impl Dash {
    /// With `--refresh` if `refresh` is given, else at the default refresh.
    fn start(env: &Env, node_port: u16, refresh: Option<Duration>) -> Result<Dash> {
        let refresh: Vec<String> =
            refresh.map(|r| vec!["--refresh".into(), format!("{}ms", r.as_millis())]).unwrap_or_default();
        let mut child = Command::new(env.troupe())
            .args(["dashboard", &node_port.to_string(), "--listen", "127.0.0.1:0"])
            .args(&refresh)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
        let first = lines.next().ok_or_else(|| anyhow!("troupe dashboard printed nothing"))??;
        let base = first.split_once(" on http://").map(|(_, r)| r.trim_end_matches('/').to_string());
        let base = base.ok_or_else(|| anyhow!("unexpected first line: {first}"))?;
        Ok(Dash { child, base })
    }

    /// An open page: every snapshot of `/api/events` with the time it arrived.
    async fn page(&self) -> Result<mpsc::UnboundedReceiver<(Instant, String)>> {
        let mut s = tokio::net::TcpStream::connect(&self.base).await?;
        // HTTP/1.0: the body is the rest of the connection, no chunk framing to take apart.
        s.write_all(format!("GET /api/events HTTP/1.0\r\nHost: {}\r\n\r\n", self.base).as_bytes()).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(s).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(data) = line.strip_prefix("data: ") {
                    if tx.send((Instant::now(), data.to_string())).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }
}

impl Drop for Dash {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first snapshot after now that `shows`: how long after `t0` it arrived.
async fn shown(
    page: &mut mpsc::UnboundedReceiver<(Instant, String)>,
    t0: Instant,
    shows: impl Fn(&str) -> bool,
) -> Result<Duration> {
    loop {
        let (at, data) = tokio::time::timeout(SHOW_TIMEOUT, page.recv())
            .await
            .map_err(|_| anyhow!("not shown within {SHOW_TIMEOUT:?}"))?
            .ok_or_else(|| anyhow!("the event stream closed"))?;
        if at >= t0 && shows(&data) {
            return Ok(at - t0);
        }
    }
}

pub(super) async fn b11(env: &Env, opts: &Opts) -> Result<Vec<Figure>> {
    let n = opts.scale(1000, 100);
    let variants = encoders(env)?;
    let mut t3 = three(env).await?;
    let mut c = Client::connect(&t3.leader.addr()).await?;
    let hash = load(&mut c, variants.make("11.0.0")?).await?;
    let acceptor = create(&mut c, &hash, "app.Acceptor", Some(format!("Acceptor:{hash}"))).await?;
    let mut raw = Raw::connect(&t3.leader.addr()).await?;
    for _ in 0..50 {
        demo_request(&mut raw, &acceptor, "hello").await?;
    }
    let secs = if opts.quick { 1.0 } else { 3.0 };
    let (mut lat, mut rps) = ([Vec::new(), Vec::new(), Vec::new()], [Vec::new(), Vec::new(), Vec::new()]);
    for round in 0..6 {
        // 0: off, 1: refresh 1 s, 2: the default refresh.
        let on = round % 3;
        let dash = match on {
            0 => None,
            1 => Some(Dash::start(env, t3.leader.port, Some(REFRESH))?),
            _ => Some(Dash::start(env, t3.leader.port, None)?),
        };
        let _page = match &dash {
            Some(d) => Some(d.page().await?),
            None => None,
        };
        for _ in 0..n / 2 {
            lat[on].push(us(demo_request(&mut raw, &acceptor, "hello").await?));
        }
        let Throughput { failed, rps: r, .. } = throughput(&t3.leader.addr(), &acceptor, secs).await?;
        if failed > 0 {
            bail!("{failed} requests failed");
        }
        rps[on].push(r);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let off_rps = mean(&rps[0]);
    let off_p50 = percentile(&lat[0], 50.0);
    let against_off = |i: usize| {
        let (p50, r) = (percentile(&lat[i], 50.0), mean(&rps[i]));
        format!(
            "{r:.0} req/s; p50 {:+.1} %, req/s {:+.1} % against off",
            100.0 * (p50 / off_p50 - 1.0),
            100.0 * (r / off_rps - 1.0)
        )
    };
    let mut figs = vec![
        Figure::latency("B11.off", "B3 warm request, no dashboard", &lat[0], "µs")
            .note(format!("{off_rps:.0} req/s")),
        Figure::latency("B11.on", "B3 warm request, dashboard open (refresh 1 s)", &lat[1], "µs")
            .note(against_off(1)),
        Figure::latency(
            "B11.on500",
            "B3 warm request, dashboard open (default refresh, 500 ms)",
            &lat[2],
            "µs",
        )
        .note(against_off(2)),
    ];
    figs.extend(event_to_page(env, opts, &mut t3, &mut c, &variants).await?);
    Ok(figs)
}

/// B11.load and B11.lost.
async fn event_to_page(
    env: &Env,
    opts: &Opts,
    t3: &mut super::requests::Three,
    c: &mut Client,
    variants: &crate::harness::ZipVariants,
) -> Result<Vec<Figure>> {
    let dash = Dash::start(env, t3.leader.port, None)?;
    let mut page = dash.page().await?;
    let mut loads = Vec::new();
    let n = opts.scale(10, 3);
    for i in 0..n {
        let zip = variants.make(&format!("11.1.{i}"))?;
        // Each measurement ends at a snapshot, right after a refresh: without a pause every
        // load would wait a whole period. Pauses spread over the period give its distribution.
        tokio::time::sleep(DEFAULT_REFRESH.mul_f64(i as f64 / n as f64)).await;
        let hash = load(c, zip).await?;
        let t0 = Instant::now();
        let needle = format!("\"hash\":\"{hash}\"");
        loads.push(shown(&mut page, t0, |d| d.contains(&needle)).await?.as_secs_f64() * 1000.0);
    }
    let upgrades = upgrade_to_page(env, opts, c, &mut page).await?;
    let member = t3.members.pop().ok_or_else(|| anyhow!("no member"))?;
    let addr = member.addr();
    let mut member = member;
    tokio::time::sleep(DEFAULT_REFRESH / 2).await;
    let t0 = Instant::now();
    member.kill();
    let needle = format!("\"addr\":\"{addr}\",\"role\":\"member\",\"lost\":{{");
    let lost = shown(&mut page, t0, |d| d.contains(&needle)).await?.as_secs_f64() * 1000.0;
    Ok(vec![
        Figure::latency(
            "B11.load",
            "a load's answer to the page's snapshot showing it, default refresh (500 ms)",
            &loads,
            "ms",
        )
        .target_p99("p99 ≤ 1000 ms", 1000.0, true),
        Figure::value(
            "B11.lost",
            "a member's SIGKILL (half a refresh after one) to the page showing it lost",
            lost,
            "ms",
        )
        .target("≤ 1000 ms", 1000.0, true)
        .note("the dashboard's own poll finds it unreachable; the convention's dead-after is not waited for"),
        Figure::latency(
            "B11.upgrade",
            "a live upgrade's answer (`troupe upgrade`, not the page) to the page's upgrade panel showing it ended",
            &upgrades,
            "ms",
        )
        .target_p99("p99 ≤ 1000 ms", 1000.0, true)
        .note("one Keeper moved each time; the panel reads the nodes' own progress"),
    ])
}

/// B11.upgrade: upgrades of a version holding a Keeper, each from its answer to the first
/// snapshot whose upgrade panel shows it ended.
async fn upgrade_to_page(
    env: &Env,
    opts: &Opts,
    c: &mut Client,
    page: &mut mpsc::UnboundedReceiver<(Instant, String)>,
) -> Result<Vec<f64>> {
    let variants = super::bench_plugin(env)?;
    let mut current = load(c, variants.make("11.2.0")?).await?;
    create(c, &current, "bench.Keeper", None).await?;
    let n = opts.scale(10, 3);
    let mut out = Vec::new();
    for i in 0..n {
        let next = load(c, variants.make(&format!("11.2.{}", i + 1))?).await?;
        tokio::time::sleep(DEFAULT_REFRESH.mul_f64(i as f64 / n as f64)).await;
        let request =
            Request::Upgrade { from: current.clone(), to: next.clone(), options: UpgradeOptions::default() };
        match c.request(request).await? {
            Response::Upgraded(r) if r.moved() == 1 => {}
            other => bail!("unexpected answer to upgrade: {other:?}"),
        }
        let t0 = Instant::now();
        let ended = |d: &str| {
            let v: serde_json::Value = serde_json::from_str(d).unwrap_or_default();
            let ups = v["upgrades"].as_array().cloned().unwrap_or_default();
            ups.iter().any(|u| u["from"] == *current && u["to"] == *next && u["running"] == false)
        };
        out.push(shown(page, t0, ended).await?.as_secs_f64() * 1000.0);
        current = next;
    }
    Ok(out)
}
