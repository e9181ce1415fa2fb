//! Completion for `troupe shell`: command names, then what each command's next word can be
//! (version hashes and `@groups` for `create` and `unload`, actor addresses for `tell`, `ask`
//! and `kill`, flags), from the node's status fetched after every command.

use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};
use troupe_node::status::StatusReport;

use super::line::COMMANDS;

/// What completion offers beyond command names, from the node's last status.
#[derive(Default, Debug)]
pub(crate) struct Known {
    /// Versions (this node's and the convention's) and `@group`s.
    pub(crate) hashes: Vec<String>,
    /// Live actors' addresses.
    pub(crate) addresses: Vec<String>,
}

impl Known {
    /// Everything in `report` worth completing.
    pub(crate) fn from_status(report: &StatusReport) -> Known {
        let mut hashes: Vec<String> = report.versions.iter().map(|v| v.hash.clone()).collect();
        hashes.extend(report.convention.members.iter().flat_map(|m| m.sources.iter().cloned()));
        hashes.extend(report.groups.keys().map(|g| format!("@{g}")));
        hashes.sort();
        hashes.dedup();
        let mut addresses: Vec<String> = report.actors.iter().map(|a| a.address.to_string()).collect();
        addresses.extend(report.global_names.values().map(|a| a.to_string()));
        addresses.sort();
        addresses.dedup();
        Known { hashes, addresses }
    }
}

/// The candidates for the word being typed: `before` is the line's words before it.
pub(crate) fn candidates(known: &Known, before: &[&str], partial: &str) -> Vec<String> {
    let list: Vec<String> = match before {
        [] | ["help"] => COMMANDS.iter().map(|(c, _, _)| c.to_string()).collect(),
        ["create" | "unload"] => known.hashes.clone(),
        ["tell" | "ask" | "kill"] => known.addresses.clone(),
        ["chgcap"] => vec!["+".into(), "-".into()],
        ["status", ..] => vec!["--convention".into(), "--json".into()],
        ["listen", ..] => vec!["-n".into()],
        ["ask", _, _, ..] => vec!["--json".into(), "--timeout".into()],
        ["tell", _, _, ..] => vec!["--json".into()],
        ["create", _, _, ..] => vec!["--name".into(), "--require".into()],
        ["unload", _, ..] => vec!["--grace".into()],
        _ => Vec::new(),
    };
    list.into_iter().filter(|c| c.starts_with(partial)).collect()
}

/// The rustyline helper: completion only (no hints, colours or multi-line input).
pub(crate) struct ShellHelper {
    pub(crate) known: Arc<Mutex<Known>>,
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = &line[..pos];
        let start = head.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let before: Vec<&str> = head[..start].split_whitespace().collect();
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let found = candidates(&known, &before, &head[start..])
            .into_iter()
            .map(|c| Pair { display: c.clone(), replacement: format!("{c} ") })
            .collect();
        Ok((start, found))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_word_completes_from_what_fits_there() {
        let known = Known {
            hashes: vec!["0123abcd".into(), "0199ffff".into(), "@encoders".into()],
            addresses: vec!["127.0.0.1:1900#1f".into(), "127.0.0.1:1900#20".into()],
        };
        assert_eq!(candidates(&known, &[], "l"), ["listen", "load"]);
        assert_eq!(candidates(&known, &["create"], "012"), ["0123abcd"]);
        assert_eq!(candidates(&known, &["unload"], "@"), ["@encoders"]);
        assert_eq!(candidates(&known, &["ask"], "127.0.0.1:1900#2"), ["127.0.0.1:1900#20"]);
        assert_eq!(candidates(&known, &["kill"], "").len(), 2);
        assert_eq!(candidates(&known, &["ask", "a", "hi"], "--t"), ["--timeout"]);
        assert_eq!(candidates(&known, &["status"], "--c"), ["--convention"]);
        assert!(candidates(&known, &["tell", "a"], "").is_empty(), "a message is free text");
    }
}
