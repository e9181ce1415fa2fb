//! `troupe shell PORT`: an interactive shell on one node, as Thespian's `thespian.shell`.
//!
//! Each line is parsed by [`line`] and run through the same code as the CLI: `status`,
//! `create`, `tell`, `ask`, `load`, `unload` and `chgcap` become the troupe command line with
//! the shell's port put in, parsed by the CLI's own [`Cli`] and run by [`dispatch`]; `kill` and
//! `listen` are in `dev.rs` beside `tell`. On a terminal, lines are edited with `rustyline`
//! (history in `$TROUPE_HOME/shell-history`, else `$XDG_DATA_HOME/troupe/shell-history` or
//! `~/.local/share/troupe/shell-history`; completion in [`complete`]). From a pipe, commands
//! are read one per line and run in order, without prompts; every command runs even after one
//! failed, and the shell exits with the code of the first command that failed (0 if none did).

mod complete;
mod line;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use clap::Parser;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::Editor;
use tokio::runtime::Runtime;

use self::complete::{Known, ShellHelper};
use self::line::{Line, COMMANDS};
use crate::{cmd, dev, dispatch, node_addr, report, Cli, Failure, EXIT_OK, EXIT_REFUSED, EXIT_USAGE};

/// An interactive shell on a node: status, create, tell, ask, kill, listen, load, unload.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  troupe shell 1900\n  troupe> create @encoders encoder.Encoder\n  troupe> ask 127.0.0.1:1900#1f hello\n  troupe> listen 10s\n\n  printf 'status\\nload src.zip\\n' | troupe shell 1900    # a script: no prompts\n\nOn a terminal: line editing, history (in $TROUPE_HOME/shell-history), and Tab completes\ncommands, hashes and actor addresses. From a pipe: one command per line, run in order even\nafter a failure; the exit code is that of the first command that failed (0 if none did).\nLines starting with # are comments. `help` lists the commands."
)]
pub(crate) struct ShellArgs {
    /// Admin port (or host:port) of the node.
    port: String,
}

/// `troupe shell PORT`.
pub(crate) fn run(args: ShellArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("troupe: cannot start the async runtime: {e}");
            return EXIT_REFUSED;
        }
    };
    let port = args.port;
    // A shell on a node that is not there says so at once, as every command does.
    let status = match rt.block_on(cmd::status::node_status(&node_addr(&port))) {
        Ok(s) => s,
        Err(f) => return report(Err(f)),
    };
    let shell = Shell { port, rt, known: Arc::new(Mutex::new(Known::from_status(&status))) };
    if std::io::stdin().is_terminal() {
        shell.interactive()
    } else {
        shell.script(std::io::stdin().lock())
    }
}

struct Shell {
    port: String,
    rt: Runtime,
    /// What completion offers; refreshed after each command on a terminal.
    known: Arc<Mutex<Known>>,
}

/// What a line asks the loop to do next.
enum Next {
    Continue(u8),
    Quit,
}

impl Shell {
    /// Runs one line; its exit code (as the CLI's for the same command).
    fn line(&self, text: &str) -> Next {
        let parsed = match line::parse(text, &self.port) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("troupe: {e}");
                return Next::Continue(EXIT_USAGE);
            }
        };
        let code = match parsed {
            Line::Empty => EXIT_OK,
            Line::Quit => return Next::Quit,
            Line::Help(None) => {
                println!("commands (the shell gives each the node's port):");
                for (_, usage, what) in COMMANDS {
                    println!("  {usage:<48} {what}");
                }
                EXIT_OK
            }
            Line::Help(Some(c)) => match line::parse(&format!("{c} --help"), &self.port) {
                Ok(Line::Troupe(argv)) => self.troupe(argv),
                _ => match COMMANDS.iter().find(|(name, _, _)| *name == c) {
                    Some((_, usage, what)) => {
                        println!("{usage}: {what}");
                        EXIT_OK
                    }
                    None => {
                        eprintln!("troupe: no command {c:?} — help lists the commands");
                        EXIT_USAGE
                    }
                },
            },
            Line::Troupe(argv) => self.troupe(argv),
            Line::Kill(addr) => report(self.rt.block_on(dev::kill(&self.port, &addr))),
            Line::Listen { duration, count } => {
                report(self.rt.block_on(dev::listen(&self.port, duration, count)))
            }
        };
        let _ = std::io::stdout().flush();
        Next::Continue(code)
    }

    /// A troupe command line (without the program name), parsed and run as the CLI does.
    fn troupe(&self, argv: Vec<String>) -> u8 {
        match Cli::try_parse_from(std::iter::once("troupe".to_string()).chain(argv)) {
            Ok(cli) => report(self.rt.block_on(dispatch(cli.command))),
            Err(e) => {
                let _ = e.print();
                if e.use_stderr() {
                    EXIT_USAGE
                } else {
                    EXIT_OK
                }
            }
        }
    }

    /// Commands from a pipe or file: no prompts; the first failure's code.
    fn script(&self, input: impl BufRead) -> u8 {
        let mut first_failure = None;
        for text in input.lines() {
            let text = match text {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("troupe: cannot read the commands: {e}");
                    return first_failure.unwrap_or(EXIT_USAGE);
                }
            };
            match self.line(&text) {
                Next::Quit => break,
                Next::Continue(EXIT_OK) => {}
                Next::Continue(code) => {
                    first_failure.get_or_insert(code);
                }
            }
        }
        first_failure.unwrap_or(EXIT_OK)
    }

    /// The terminal: prompt, line editing, history, completion.
    fn interactive(&self) -> u8 {
        let mut editor: Editor<ShellHelper, DefaultHistory> = match Editor::new() {
            Ok(e) => e,
            Err(e) => return report(Err(refused(anyhow!("cannot set up the terminal: {e}")))),
        };
        editor.set_helper(Some(ShellHelper { known: self.known.clone() }));
        let history = history_file();
        if let Some(h) = &history {
            // No history yet is the common case on a first run.
            let _ = editor.load_history(h);
        }
        println!(
            "troupe shell on {} — help lists the commands, Tab completes, Ctrl-D leaves",
            node_addr(&self.port)
        );
        let mut last = EXIT_OK;
        loop {
            match editor.readline("troupe> ") {
                Ok(text) => {
                    if !text.trim().is_empty() {
                        let _ = editor.add_history_entry(text.as_str());
                    }
                    match self.line(&text) {
                        Next::Quit => break,
                        Next::Continue(code) => last = code,
                    }
                    self.refresh();
                }
                // Ctrl-C drops the line being typed, as a shell does.
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("troupe: cannot read the terminal: {e}");
                    break;
                }
            }
        }
        if let Some(h) = &history {
            if let Some(dir) = h.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Err(e) = editor.save_history(h) {
                eprintln!("troupe: history not saved to {}: {e}", h.display());
            }
        }
        last
    }

    /// Completion follows what the last command changed (a node that stopped answering keeps
    /// the last list).
    fn refresh(&self) {
        if let Ok(s) = self.rt.block_on(cmd::status::node_status(&node_addr(&self.port))) {
            *self.known.lock().unwrap_or_else(|p| p.into_inner()) = Known::from_status(&s);
        }
    }
}

fn refused(e: anyhow::Error) -> Failure {
    crate::refused(e)
}

/// `$TROUPE_HOME/shell-history`, else the user's data directory.
fn history_file() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("TROUPE_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home).join("shell-history"));
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("troupe/shell-history"))
}
