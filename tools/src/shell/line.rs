//! The shell's line parser: one line → words (quotes and backslashes as a POSIX shell reads
//! them, without expansion) → a [`Line`]: a troupe command with the shell's port put in, or one
//! of the shell's own commands. Pure, so every rule is unit-tested.

use std::time::Duration;

/// The shell's commands, with what each takes (the `help` text, and the completion list).
pub(crate) const COMMANDS: &[(&str, &str, &str)] = &[
    ("status", "status [--convention] [--json]", "the node's status (or every node's)"),
    ("create", "create HASH TYPE [--name N] [--require CAP]...", "create an actor, print its address"),
    ("tell", "tell ADDRESS MESSAGE [--json]", "send a message"),
    ("ask", "ask ADDRESS MESSAGE [--json] [--timeout 5s]", "send a message, print the first reply"),
    ("kill", "kill ADDRESS", "send it ActorExitRequest (its children exit too)"),
    ("listen", "listen [DURATION] [-n COUNT]", "print what is sent to a new address (until Ctrl-C)"),
    ("load", "load ZIP", "load a source, print its hash"),
    ("unload", "unload HASH [--grace D]", "unload a version on every node"),
    ("chgcap", "chgcap +|- CAP", "set (NAME or NAME=VALUE) or remove a capability"),
    ("help", "help [COMMAND]", "this list, or a command's options"),
    ("quit", "quit", "leave the shell (also exit, Ctrl-D); the node keeps running"),
];

/// Troupe subcommands the shell runs with its port as their first argument.
const WITH_PORT: &[&str] = &["status", "create", "tell", "ask", "load", "unload", "chgcap"];

/// One parsed line.
#[derive(Debug, PartialEq)]
pub(crate) enum Line {
    /// Blank or a comment (`# …`).
    Empty,
    /// A troupe command line, without the program name (`["ask", "1900", ADDR, "hi"]`).
    Troupe(Vec<String>),
    /// `kill ADDRESS`.
    Kill(String),
    /// `listen [DURATION] [-n COUNT]`.
    Listen { duration: Option<Duration>, count: Option<u64> },
    /// `help [COMMAND]`.
    Help(Option<String>),
    /// `quit`, `exit`.
    Quit,
}

/// Splits a line into words: whitespace separates them, `'…'` keeps everything literally,
/// `"…"` keeps spaces and takes `\"` and `\\`, and a backslash outside quotes escapes the next
/// character. A line whose first word starts with `#` is a comment (elsewhere `#` is a
/// character: `#1f` is an address).
pub(crate) fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word && out.is_empty() => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("a ' is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("a \" is not closed".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("a \" is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("a \\ ends the line".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Parses a line for the node at `port`.
pub(crate) fn parse(line: &str, port: &str) -> Result<Line, String> {
    let w = words(line)?;
    let Some((cmd, args)) = w.split_first() else {
        return Ok(Line::Empty);
    };
    match cmd.as_str() {
        c if WITH_PORT.contains(&c) => {
            let mut argv = vec![cmd.clone(), port.to_string()];
            argv.extend(args.iter().cloned());
            Ok(Line::Troupe(argv))
        }
        "kill" => match args {
            [addr] => Ok(Line::Kill(addr.clone())),
            _ => Err("usage: kill ADDRESS".into()),
        },
        "listen" => listen(args),
        "help" | "?" => match args {
            [] => Ok(Line::Help(None)),
            [c] => Ok(Line::Help(Some(c.clone()))),
            _ => Err("usage: help [COMMAND]".into()),
        },
        "quit" | "exit" if args.is_empty() => Ok(Line::Quit),
        "quit" | "exit" => Err(format!("usage: {cmd}")),
        other => Err(format!("unknown command {other:?} — help lists the commands")),
    }
}

fn listen(args: &[String]) -> Result<Line, String> {
    const USAGE: &str = "usage: listen [DURATION] [-n COUNT], e.g. listen 10s";
    let (mut duration, mut count) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-n" {
            let n = it.next().ok_or(USAGE)?;
            count = Some(
                n.parse::<u64>().ok().filter(|n| *n > 0).ok_or(format!("-n {n}: not a count — {USAGE}"))?,
            );
        } else if duration.is_none() {
            duration = Some(humantime::parse_duration(a).map_err(|e| format!("{a}: {e} — {USAGE}"))?);
        } else {
            return Err(USAGE.into());
        }
    }
    Ok(Line::Listen { duration, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        words(s).unwrap()
    }

    #[test]
    fn words_split_as_a_shell_reads_them() {
        assert_eq!(w("  ask  #1f   hello "), ["ask", "#1f", "hello"]);
        assert_eq!(w("ask '#1f' hello"), ["ask", "#1f", "hello"]);
        assert_eq!(w(r#"tell a "two words" 'it''s' x\ y"#), ["tell", "a", "two words", "its", "x y"]);
        assert_eq!(
            w(r#"tell a --json "{\"tag\": \"t\", \"body\": 1}""#),
            ["tell", "a", "--json", r#"{"tag": "t", "body": 1}"#]
        );
        assert_eq!(w(r#"a "x\ny""#), ["a", "x\\ny"], "only \\\" and \\\\ are escapes in double quotes");
        assert_eq!(w("a b#c #d"), ["a", "b#c", "#d"]);
        assert!(w("  #ask x").is_empty());
        assert_eq!(w("create '' x"), ["create", "", "x"]);
        assert!(w("").is_empty() && w("# all comment").is_empty());
        for bad in ["ask 'open", "ask \"open", "ask x\\"] {
            assert!(words(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn troupe_commands_get_the_port_and_shell_commands_parse() {
        assert_eq!(
            parse("ask 127.0.0.1:1900#1f 'hi there' --timeout 2s", "1900").unwrap(),
            Line::Troupe(
                ["ask", "1900", "127.0.0.1:1900#1f", "hi there", "--timeout", "2s"]
                    .map(String::from)
                    .to_vec()
            )
        );
        assert_eq!(
            parse("status --convention", "h:9").unwrap(),
            Line::Troupe(vec!["status".into(), "h:9".into(), "--convention".into()])
        );
        assert_eq!(
            parse("chgcap + mem=64", "1").unwrap(),
            Line::Troupe(["chgcap", "1", "+", "mem=64"].map(String::from).to_vec())
        );
        assert_eq!(parse("kill '#1f'", "1").unwrap(), Line::Kill("#1f".into()));
        assert_eq!(parse("listen", "1").unwrap(), Line::Listen { duration: None, count: None });
        assert_eq!(
            parse("listen 2s -n 3", "1").unwrap(),
            Line::Listen { duration: Some(Duration::from_secs(2)), count: Some(3) }
        );
        assert_eq!(parse("help ask", "1").unwrap(), Line::Help(Some("ask".into())));
        assert_eq!(parse("  # nothing", "1").unwrap(), Line::Empty);
        assert_eq!(parse("exit", "1").unwrap(), Line::Quit);
    }

    #[test]
    fn bad_lines_say_what_to_type() {
        for (line, why) in [
            ("start 1900", "unknown command"),
            ("kill", "usage: kill"),
            ("kill a b", "usage: kill"),
            ("listen soon", "listen [DURATION]"),
            ("listen -n 0", "not a count"),
            ("listen 1s 2s", "usage: listen"),
            ("quit now", "usage: quit"),
            ("ask 'x", "not closed"),
        ] {
            let e = parse(line, "1").unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }
}
