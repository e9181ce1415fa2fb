//! `troupe upgrade`: live upgrade, every live actor of one version moved to another at the
//! same address with its state, on every node of the convention; and what `deploy --migrate`
//! and `troupe watch` share with it: the `--map OLD=NEW` syntax, the options, and the report
//! as people read it ([`render_report`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::anyhow;
use troupe_node::protocol::{Request, Response, UpgradeOptions, UpgradeReport};

use super::{connect, with_progress};
use crate::{refused, usage, Failure, EXIT_OK, EXIT_REFUSED};

/// Move every live actor of a version to another, at the same address, with its state.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  troupe upgrade 1900 3f2a9c1e 9b07d4e2            # every actor of 3f2a9c1e moves to 9b07d4e2\n  troupe upgrade 1900 3f2a9c1e @counter           # to the group's active version\n  troupe upgrade 1900 3f2a9c1e 9b07d4e2 --map counter.Counter=counter.Tally\n  troupe upgrade 1900 3f2a9c1e 9b07d4e2 --all-or-nothing --json\n\nWhat moves: every live actor of FROM, on every node of the convention, whose type opts in\n(its old version exports its state and the new version imports it). It keeps its address\nand its global name. A type maps to the type of the same name in TO, or as --map or the\nnew manifest's `replaces` (troupe pack --rename) say. TO must be loaded first (troupe load\nor troupe deploy).\n\nWhat stays: actors whose type does not migrate keep running FROM (reported as `stayed`);\nFROM drains and unloads when its last actor is gone.\n\nOn failure: an actor whose export or import fails, or that does not pause within\n--pause-timeout (its handler runs on), stays on FROM, running, and is listed as `failed`\nwith the reason (exit 1). With --all-or-nothing, one failure moves every actor back\nto FROM and nothing changes (exit 1: `rolled back`)."
)]
pub(crate) struct UpgradeArgs {
    /// Admin port (or host:port).
    port: String,
    /// The old version: hash, unique prefix of at least 8 hex digits, or @GROUP.
    from: String,
    /// The new version: hash, unique prefix of at least 8 hex digits, or @GROUP.
    to: String,
    /// A renamed type: actors of OLD (in FROM) become actors of NEW (in TO). Repeat for
    /// several.
    #[arg(long = "map", value_name = "OLD=NEW", value_parser = type_pair)]
    map: Vec<(String, String)>,
    /// If any actor fails to move, move every actor back to FROM and fail.
    #[arg(long)]
    all_or_nothing: bool,
    /// How long each node waits for an actor to pause between two messages (an actor whose
    /// handler runs longer stays on FROM, as failed) [default: the node's, 30s].
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    pause_timeout: Option<Duration>,
    /// Print the report as JSON (for scripts).
    #[arg(long)]
    json: bool,
}

/// `deploy --migrate`'s flags (flattened into `troupe deploy`).
#[derive(clap::Args, Debug)]
pub(crate) struct MigrateArgs {
    /// After the deploy, move the live actors of the group's previous version to the new one
    /// (as troupe upgrade does); without it they keep running the previous version.
    #[arg(long)]
    pub migrate: bool,
    /// With --migrate: a renamed type, OLD=NEW (repeat for several).
    #[arg(long = "map", value_name = "OLD=NEW", value_parser = type_pair, requires = "migrate")]
    pub map: Vec<(String, String)>,
    /// With --migrate: if any actor fails to move, move every actor back and fail.
    #[arg(long, requires = "migrate")]
    pub all_or_nothing: bool,
    /// With --migrate: how long each node waits for an actor to pause between two messages
    /// [default: the node's, 30s].
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration, requires = "migrate")]
    pub pause_timeout: Option<Duration>,
}

impl MigrateArgs {
    /// The deploy's `migrate` (`None` without --migrate).
    pub fn options(&self) -> Result<Option<UpgradeOptions>, Failure> {
        if !self.migrate {
            return Ok(None);
        }
        upgrade_options(&self.map, self.all_or_nothing, self.pause_timeout).map(Some)
    }
}

/// Whether `s` is an actor type name as manifests write it: `module.Type` (ASCII letters,
/// digits and `_` on either side of one dot).
fn is_type_name(s: &str) -> bool {
    let part_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    s.split_once('.').is_some_and(|(module, ty)| part_ok(module) && part_ok(ty))
}

/// Parses `OLD=NEW`, two actor types (`--map`, `--rename`).
pub(crate) fn type_pair(s: &str) -> Result<(String, String), String> {
    let example = "e.g. counter.Counter=counter.Tally";
    let Some((old, new)) = s.split_once('=') else {
        return Err(format!("expected OLD=NEW, two actor types as module.Type ({example})"));
    };
    let (old, new) = (old.trim(), new.trim());
    for (side, name) in [("OLD", old), ("NEW", new)] {
        if !is_type_name(name) {
            return Err(format!(
                "{side} {name:?} is not an actor type: write it as module.Type, as troupe status shows it ({example})"
            ));
        }
    }
    Ok((old.to_string(), new.to_string()))
}

/// The options of an upgrade from `--map` pairs (each OLD at most once), `--all-or-nothing`
/// and `--pause-timeout`.
pub(crate) fn upgrade_options(
    map: &[(String, String)],
    all_or_nothing: bool,
    pause_timeout: Option<Duration>,
) -> Result<UpgradeOptions, Failure> {
    let mut m = BTreeMap::new();
    for (old, new) in map {
        if let Some(before) = m.insert(old.clone(), new.clone()) {
            return Err(usage(anyhow!(
                "--map gives {old} twice ({before} and {new}): its actors can become only one type"
            )));
        }
    }
    let timeout_ms = pause_timeout.map(|t| t.as_millis().try_into().unwrap_or(u64::MAX));
    Ok(UpgradeOptions { map: m, all_or_nothing, timeout_ms })
}

/// `troupe upgrade PORT FROM TO [--map OLD=NEW]... [--all-or-nothing] [--json]`.
pub(crate) async fn upgrade(args: UpgradeArgs) -> Result<u8, Failure> {
    let options = upgrade_options(&args.map, args.all_or_nothing, args.pause_timeout)?;
    let mut c = connect(&args.port).await?;
    let what = format!("moving the actors of {} to {}", args.from, args.to);
    let request = Request::Upgrade { from: args.from, to: args.to, options };
    let report = match with_progress(&what, c.request(request)).await? {
        Response::Upgraded(report) => report,
        other => return Err(refused(anyhow!("unexpected answer {other:?}"))),
    };
    let text = if args.json {
        serde_json::to_string_pretty(&report).map_err(|e| refused(anyhow!(e)))? + "\n"
    } else {
        render_report(&report)
    };
    // A closed pipe (`troupe upgrade … | head`) is not an error.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(report_code(&report))
}

/// The exit code of an upgrade: refused (1) when an actor could not move or it was rolled back.
pub(crate) fn report_code(report: &UpgradeReport) -> u8 {
    if report.rolled_back || report.failed().next().is_some() {
        EXIT_REFUSED
    } else {
        EXIT_OK
    }
}

/// The first 12 hex digits of a hash, as `troupe status` shows it.
pub(crate) fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The report as people read it: one line per node and type, each failure, a summary, and
/// whether it was rolled back.
pub fn render_report(r: &UpgradeReport) -> String {
    if r.nodes.is_empty() {
        return format!("nothing to move: no node holds live actors of {}\n", short(&r.from));
    }
    let mut s = String::new();
    for n in &r.nodes {
        for t in &n.types {
            s += &format!("{}  {} → {}  moved {}", n.node, t.from_type, t.to_type, t.moved);
            if t.stayed > 0 {
                s += &format!("  stayed {}", t.stayed);
            }
            s += "\n";
        }
        for f in &n.failed {
            s += &format!("failed  {}  {}: {}\n", f.address, f.type_name, f.reason);
        }
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let elapsed = r.nodes.iter().map(|n| n.elapsed_us).max().unwrap_or(0);
    let pause = r.nodes.iter().map(|n| n.pause_p99_us).max().unwrap_or(0);
    let stayed = r.stayed();
    s += &format!(
        "moved {} on {} in {:.1} ms (pause p99 {:.1} ms); {stayed} stayed{}, {} failed\n",
        plural(r.moved(), "actor", "actors"),
        plural(r.nodes.len(), "node", "nodes"),
        ms(elapsed),
        ms(pause),
        match stayed {
            0 => "",
            1 => " (does not migrate)",
            _ => " (do not migrate)",
        },
        r.failed().count()
    );
    if r.rolled_back {
        s += &format!("rolled back: every actor is on {} again\n", short(&r.from));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_actor_abi::message::Address;
    use troupe_node::protocol::{NodeUpgrade, TypeOutcome, UpgradeFailure};

    fn outcome(from: &str, to: &str, moved: usize, stayed: usize) -> TypeOutcome {
        TypeOutcome { from_type: from.into(), to_type: to.into(), moved, stayed }
    }

    fn two_nodes() -> UpgradeReport {
        let first = NodeUpgrade {
            node: "127.0.0.1:7001".into(),
            types: vec![outcome("counter.Counter", "counter.Counter", 3, 0)],
            elapsed_us: 4_100,
            pause_p50_us: 90,
            pause_p99_us: 180,
            pause_max_us: 200,
            ..NodeUpgrade::default()
        };
        let second = NodeUpgrade {
            node: "127.0.0.1:7002".into(),
            types: vec![
                outcome("counter.Counter", "counter.Counter", 3, 0),
                outcome("counter.Legacy", "counter.Legacy", 0, 1),
            ],
            elapsed_us: 2_000,
            pause_p99_us: 240,
            ..NodeUpgrade::default()
        };
        UpgradeReport {
            from: "ab".repeat(32),
            to: "cd".repeat(32),
            nodes: vec![first, second],
            rolled_back: false,
        }
    }

    #[test]
    fn a_report_shows_each_node_and_type_then_a_summary() {
        let r = two_nodes();
        assert_eq!(
            render_report(&r),
            "127.0.0.1:7001  counter.Counter → counter.Counter  moved 3\n\
             127.0.0.1:7002  counter.Counter → counter.Counter  moved 3\n\
             127.0.0.1:7002  counter.Legacy → counter.Legacy  moved 0  stayed 1\n\
             moved 6 actors on 2 nodes in 4.1 ms (pause p99 0.2 ms); 1 stayed (does not migrate), 0 failed\n"
        );
        assert_eq!(report_code(&r), EXIT_OK);
    }

    #[test]
    fn failures_are_listed_and_a_rollback_is_said() {
        let mut r = two_nodes();
        r.nodes[1].types[1].stayed = 2;
        r.nodes[0].failed.push(UpgradeFailure {
            address: Address { node: "127.0.0.1:7001".into(), id: 0x1f },
            type_name: "counter.Counter".into(),
            reason: "import failed: unknown state tag counter/State.v9".into(),
        });
        let text = render_report(&r);
        assert!(
            text.contains("moved 3\nfailed  127.0.0.1:7001#1f  counter.Counter: import failed: unknown state tag counter/State.v9\n127.0.0.1:7002"),
            "{text}"
        );
        assert!(text.ends_with("; 2 stayed (do not migrate), 1 failed\n"), "{text}");
        assert_eq!(report_code(&r), EXIT_REFUSED);

        r.rolled_back = true;
        let text = render_report(&r);
        assert!(text.ends_with("rolled back: every actor is on abababababab again\n"), "{text}");
        assert_eq!(report_code(&r), EXIT_REFUSED);
    }

    #[test]
    fn one_actor_on_one_node_and_nothing_to_move_read_well() {
        let node = NodeUpgrade {
            node: "n:1".into(),
            types: vec![outcome("a.B", "a.C", 1, 0)],
            ..NodeUpgrade::default()
        };
        let r = UpgradeReport { from: "ab".repeat(32), nodes: vec![node], ..UpgradeReport::default() };
        assert_eq!(
            render_report(&r),
            "n:1  a.B → a.C  moved 1\nmoved 1 actor on 1 node in 0.0 ms (pause p99 0.0 ms); 0 stayed, 0 failed\n"
        );
        let empty = UpgradeReport { from: "ab".repeat(32), ..UpgradeReport::default() };
        assert_eq!(render_report(&empty), "nothing to move: no node holds live actors of abababababab\n");
        assert_eq!(report_code(&empty), EXIT_OK);
    }

    #[test]
    fn type_pairs_parse_and_say_what_is_wrong() {
        assert_eq!(type_pair("a.B=c_2.D"), Ok(("a.B".into(), "c_2.D".into())));
        assert_eq!(type_pair(" a.B = a.C "), Ok(("a.B".into(), "a.C".into())));
        let err = |s: &str| type_pair(s).expect_err(s);
        assert!(err("a.B").contains("expected OLD=NEW"), "{}", err("a.B"));
        assert!(err("Counter=a.B").contains("OLD \"Counter\" is not an actor type"));
        assert!(err("a.B=").contains("NEW \"\" is not an actor type"));
        for bad in ["a.b.c=a.B", "a.B=a-b.C", ".B=a.B", "a.=a.B", "a.B=a.C=d.E"] {
            assert!(type_pair(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_type_mapped_twice_is_a_usage_error() {
        let pairs =
            |p: &[(&str, &str)]| p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let o =
            upgrade_options(&pairs(&[("a.B", "a.C"), ("a.D", "a.C")]), true, Some(Duration::from_secs(2)))
                .expect("two olds, one new");
        assert_eq!(o.map.len(), 2);
        assert!(o.all_or_nothing);
        assert_eq!(o.timeout_ms, Some(2_000));
        let e =
            upgrade_options(&pairs(&[("a.B", "a.C"), ("a.B", "a.D")]), false, None).expect_err("a.B twice");
        assert_eq!(e.code, crate::EXIT_USAGE);
        assert!(e.error.to_string().contains("--map gives a.B twice (a.C and a.D)"), "{}", e.error);
    }
}
