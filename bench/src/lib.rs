//! # troupe-bench
//!
//! The benchmark suite of issue 4: figures B1–B10, each measured by one function of
//! [`figures`] against node processes this program starts on free loopback ports under a
//! temporary directory ([`harness`]). A figure whose step fails is reported as an error and
//! the run goes on. The table is printed and written as JSON to `target/bench/latest.json`.
//!
//! `troupe-bench [--quick] [--only B1,B4,...]`: `--quick` scales every count down (for a smoke
//! run); `--only` takes groups (`B8`) or parts of a group that has them (`B8.names`); `make bench` runs the full suite, which takes a few minutes on 2 cores.

pub mod figures;
pub mod harness;
pub mod msgs;

use std::io::Write;
use std::process::ExitCode;

use serde::Serialize;

/// One measured figure (or the error that prevented it).
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// `B1`…`B10`, with a suffix for sub-figures (`B3.rps`).
    pub id: String,
    /// What was measured.
    pub what: String,
    /// The headline value (the median for latencies).
    pub value: Option<f64>,
    /// Its unit.
    pub unit: String,
    /// Median, for latencies.
    pub p50: Option<f64>,
    /// 99th percentile, for latencies.
    pub p99: Option<f64>,
    /// The target, as text.
    pub target: String,
    /// Whether the target is met (none when there is no target).
    pub met: Option<bool>,
    /// Sample size or context.
    pub note: String,
    /// Why the figure could not be measured.
    pub error: Option<String>,
}

impl Figure {
    /// A plain value.
    pub fn value(id: &str, what: &str, value: f64, unit: &str) -> Figure {
        Figure {
            id: id.into(),
            what: what.into(),
            value: Some(value),
            unit: unit.into(),
            p50: None,
            p99: None,
            target: String::new(),
            met: None,
            note: String::new(),
            error: None,
        }
    }

    /// A latency from samples (in `unit`); the value is the median.
    pub fn latency(id: &str, what: &str, samples: &[f64], unit: &str) -> Figure {
        let (p50, p99) = (percentile(samples, 50.0), percentile(samples, 99.0));
        let mut f = Figure::value(id, what, p50, unit);
        f.p50 = Some(p50);
        f.p99 = Some(p99);
        f.note = format!("n={}", samples.len());
        f
    }

    /// The error in place of a figure.
    pub fn error(id: &str, what: &str, error: String) -> Figure {
        let mut f = Figure::value(id, what, 0.0, "");
        f.value = None;
        f.error = Some(error);
        f
    }

    /// Sets the target and whether the value meets it (`at_most`: lower is better).
    pub fn target(mut self, text: &str, limit: f64, at_most: bool) -> Figure {
        self.target = text.into();
        self.met = self.value.map(|v| if at_most { v <= limit } else { v >= limit });
        self
    }

    /// Sets the target and whether the 99th percentile meets it, for a latency whose tail is
    /// what matters.
    pub fn target_p99(mut self, text: &str, limit: f64, at_most: bool) -> Figure {
        self.target = text.into();
        self.met = self.p99.map(|v| if at_most { v <= limit } else { v >= limit });
        self
    }

    /// Appends to the note.
    pub fn note(mut self, text: impl AsRef<str>) -> Figure {
        if !self.note.is_empty() {
            self.note.push_str("; ");
        }
        self.note.push_str(text.as_ref());
        self
    }
}

/// The `p`th percentile (nearest rank) of `samples`; NaN when empty.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// Options from the command line.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// Scale counts down.
    pub quick: bool,
    /// Only these figure groups (`B1`…`B10`).
    pub only: Option<Vec<String>>,
}

impl Opts {
    /// Whether group `id` runs: named in `--only`, or one of its parts is (`B8.names`).
    pub fn wants(&self, id: &str) -> bool {
        self.only.as_ref().is_none_or(|o| {
            o.iter().any(|x| {
                x.eq_ignore_ascii_case(id) || x.split('.').next().is_some_and(|g| g.eq_ignore_ascii_case(id))
            })
        })
    }
    /// Whether part `id` (`B8.names`) of a group that runs does: `--only` names the part, or
    /// names its group and none of its parts.
    pub fn wants_part(&self, id: &str) -> bool {
        let group = id.split('.').next().unwrap_or(id);
        self.only.as_ref().is_none_or(|o| {
            o.iter().any(|x| x.eq_ignore_ascii_case(id))
                || (o.iter().any(|x| x.eq_ignore_ascii_case(group))
                    && !o.iter().any(|x| {
                        x.len() > group.len()
                            && x[..group.len() + 1].eq_ignore_ascii_case(&format!("{group}."))
                    }))
        })
    }
    /// `full`, or `quick` with `--quick`.
    pub fn scale(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100_000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The table as Markdown.
pub fn table(figs: &[Figure]) -> String {
    let mut s = String::from("| id | what | value | unit | p50 | p99 | target | met | note |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for f in figs {
        let opt = |v: Option<f64>| v.map(fmt_num).unwrap_or_default();
        let (value, note) = match &f.error {
            Some(e) => ("ERROR".to_string(), e.replace('|', "/").replace('\n', " ")),
            None => (opt(f.value), f.note.clone()),
        };
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            f.id,
            f.what,
            value,
            f.unit,
            opt(f.p50),
            opt(f.p99),
            f.target,
            met,
            note
        ));
    }
    s
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--only" => {
                let v = args.next().ok_or("--only needs a list, e.g. --only B1,B4")?;
                o.only = Some(v.split(',').map(|s| s.trim().to_string()).collect());
            }
            "-h" | "--help" => return Err("usage: troupe-bench [--quick] [--only B1,B2,...]".into()),
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: troupe-bench [--quick] [--only B1,...]"
                ))
            }
        }
    }
    Ok(o)
}

/// Runs the suite: prints the table, writes the JSON. Exit code 1 if a figure failed.
pub fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let env = match harness::Env::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot set up: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let figs = rt.block_on(figures::run_all(&env, &opts));
    let elapsed = started.elapsed();
    let t = table(&figs);
    println!("\n{t}");
    println!("total time: {:.1} s", elapsed.as_secs_f64());
    let json = serde_json::json!({
        "quick": opts.quick,
        "total_seconds": elapsed.as_secs_f64(),
        "figures": figs,
    });
    let out = env.bin_dir.parent().map(|t| t.join("bench")).unwrap_or_else(|| "bench".into());
    let written = std::fs::create_dir_all(&out).and_then(|_| {
        let mut f = std::fs::File::create(out.join("latest.json"))?;
        f.write_all(serde_json::to_string_pretty(&json).unwrap_or_default().as_bytes())
    });
    match written {
        Ok(()) => println!("written to {}", out.join("latest.json").display()),
        Err(e) => eprintln!("cannot write {}: {e}", out.join("latest.json").display()),
    }
    drop(env);
    if figs.iter().any(|f| f.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
