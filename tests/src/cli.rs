//! Running the real `troupe` CLI as a user would ([`troupe`]) and looking at what it printed
//! and how it exited ([`Cli`]).

use std::io::{ErrorKind, Write};
use std::process::{ChildStdin, Command, Stdio};

use crate::build::troupe_bin;

/// What a `troupe` command printed and how it exited.
#[derive(Debug)]
pub struct Cli {
    /// The command line, for failure messages.
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    /// The exit code (`-1` if killed by a signal).
    pub code: i32,
}

impl Cli {
    /// Panics (showing everything) unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code from `{}`:\n{self}", self.command);
        self
    }

    /// Panics unless the command succeeded.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        self.assert_code(0)
    }

    /// Panics unless stderr contains every one of `needles`.
    #[track_caller]
    pub fn assert_stderr_has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(self.stderr.contains(n), "stderr of `{}` lacks {n:?}:\n{self}", self.command);
        }
        self
    }

    /// stdout's lines.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lines().map(str::to_string).collect()
    }

    /// stdout's lines, sorted (result lines arrive in any order).
    pub fn sorted_lines(&self) -> Vec<String> {
        let mut l = self.lines();
        l.sort();
        l
    }
}

impl std::fmt::Display for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}\n--- stdout ---\n{}--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Writes `input` to a child's stdin, then closes it. A child that exits (or closes its stdin)
/// before reading it all is not a harness error: a CLI may refuse before it reads its input
/// (no node at that port, `quit` in a script), and the test asserts on the exit code and the
/// output it printed.
fn feed(mut pipe: ChildStdin, input: &str) {
    match pipe.write_all(input.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => {}
        Err(e) => panic!("cannot write troupe's stdin: {e}"),
    }
}

/// Runs `troupe ARGS` with `stdin` as its input (none if `None`).
pub fn troupe(args: &[&str], stdin: Option<&str>) -> Cli {
    troupe_with_secret(args, stdin, None)
}

/// As [`troupe`], with `TROUPE_SECRET_FILE` set to `secret_file` (if any).
pub fn troupe_with_secret(args: &[&str], stdin: Option<&str>, secret_file: Option<&str>) -> Cli {
    let mut cmd = Command::new(troupe_bin());
    if let Some(f) = secret_file {
        cmd.env("TROUPE_SECRET_FILE", f);
    }
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("cannot run troupe");
    // The input is written by its own thread while this one collects stdout and stderr: a
    // command that prints a lot before it reads on cannot block the harness, nor the harness it.
    let writer = stdin.map(|input| {
        let pipe = child.stdin.take().expect("stdin is piped");
        let input = input.to_string();
        std::thread::spawn(move || feed(pipe, &input))
    });
    let out = child.wait_with_output().expect("cannot wait for troupe");
    if let Some(w) = writer {
        w.join().expect("the stdin writer panicked");
    }
    Cli {
        command: format!("troupe {}", args.join(" ")),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}
