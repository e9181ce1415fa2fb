//! `troupe shell PORT` driven from a pipe, as a script would (issue 15 item 7): the real CLI
//! against a real node on a loopback port chosen at run time. Commands are written one per
//! line and each result line is read back before the next command, so the test waits on what
//! the shell prints, never on time.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};

use troupe_tests::{free_port, troupe, troupe_bin, NodeProc, TestDir, REPLY_TIMEOUT};

/// A `troupe shell` whose stdin and stdout are pipes.
struct Shell {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Shell {
    fn start(node: &NodeProc) -> Shell {
        let mut child = Command::new(troupe_bin())
            .args(["shell", &node.port_arg()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run troupe shell");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Shell { stdin: child.stdin.take(), child, lines }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").and_then(|_| stdin.flush()).expect("cannot write to the shell");
    }

    /// The next line the shell prints.
    #[track_caller]
    fn next(&self) -> String {
        self.lines
            .recv_timeout(REPLY_TIMEOUT)
            .unwrap_or_else(|e| panic!("the shell printed nothing more: {e}"))
    }

    /// Sends `line` and returns the first line it prints.
    #[track_caller]
    fn run(&mut self, line: &str) -> String {
        self.send(line);
        self.next()
    }

    /// Closes stdin (end of the script); the exit code, the rest of stdout, and stderr.
    fn finish(mut self) -> (i32, Vec<String>, String) {
        drop(self.stdin.take());
        let out = self.child.wait_with_output().expect("wait for the shell");
        let rest: Vec<String> = self.lines.iter().collect();
        (out.status.code().unwrap_or(-1), rest, String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_piped_script_creates_asks_listens_and_kills_and_exits_with_the_first_failure() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let zip = dir.faulty_zip();
    let mut sh = Shell::start(&node);

    // load prints the hash, create the address: the script's results, without prompts.
    let hash = sh.run(&format!("load '{}'", zip.display()));
    assert_eq!(hash.len(), 64, "{hash}");
    let echo = sh.run(&format!("create {} faulty.Echo --name shell-echo", &hash[..12]));
    assert!(echo.starts_with(&format!("{}#", node.addr())), "{echo}");
    assert_eq!(sh.run(&format!("ask {echo} \"hello there\"")), "echo: hello there");
    let id = echo.rsplit('#').next().unwrap();
    assert_eq!(
        sh.run(&format!("ask '#{id}' again --timeout 30s")),
        "echo: again",
        "#ID means an actor of this node"
    );

    // listen: a new address; what is sent to it is printed, with the sender.
    let listening = sh.run("listen 30s -n 1");
    let addr = listening
        .strip_prefix("listening on ")
        .and_then(|r| r.strip_suffix(" (Ctrl-C stops)"))
        .unwrap_or_else(|| panic!("{listening}"));
    troupe(&["tell", &node.port_arg(), addr, "to the listener"], None).assert_ok();
    let heard = sh.next();
    assert!(
        heard.starts_with(&format!("{}#", node.addr())) && heard.ends_with(": to the listener"),
        "{heard}"
    );
    assert_eq!(sh.next(), "stopped listening (1 message)");

    // status shows the actor; kill asks it to exit, and then it is gone.
    // (`help quit` marks the end of status's lines.)
    sh.send("status");
    sh.send("help quit");
    let mut status = Vec::new();
    loop {
        let l = sh.next();
        if l.starts_with("quit: leave the shell") {
            break;
        }
        status.push(l);
    }
    assert!(
        status.iter().any(|l| l.contains(&echo[echo.len() - 4..]) && l.contains("faulty.Echo")),
        "{status:#?}"
    );
    assert!(status.iter().any(|l| l.contains("shell-echo")), "{status:#?}");
    assert_eq!(sh.run(&format!("kill {echo}")), format!("asked {echo} to exit"));
    // A failure does not end the script; the next command still runs.
    sh.send(&format!("ask {echo} anyone"));
    sh.send("bogus");
    assert_eq!(
        sh.run("chgcap + mem=64"),
        format!("{}: capabilities now [mem=64]; 0 actors asked to exit", node.addr())
    );
    let (code, rest, stderr) = sh.finish();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(code, 1, "the first failure (the ask to a gone actor) decides the exit code\n{stderr}");
    assert!(stderr.contains("PoisonMessage"), "{stderr}");
    assert!(stderr.contains("unknown command \"bogus\""), "{stderr}");
}

#[test]
fn a_script_that_succeeds_exits_0_usage_errors_exit_2_and_no_node_exits_3() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "gpu=A100");
    let port = node.port_arg();
    let out = troupe(&["shell", &port], Some("# a comment\n\nstatus\nhelp\nhelp ask\nquit\nbogus\n"));
    out.assert_ok();
    assert!(out.stdout.contains("capabilities: gpu=A100"), "{out}");
    assert!(out.stdout.contains("listen [DURATION] [-n COUNT]"), "help lists the commands\n{out}");
    assert!(out.stdout.contains("--timeout"), "help ask shows ask's options\n{out}");
    assert!(!out.stderr.contains("bogus"), "nothing runs after quit\n{out}");
    assert!(!out.stdout.contains("troupe>"), "no prompts in a script\n{out}");

    let out = troupe(&["shell", &port], Some("listen soon\nstatus\nask\n"));
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("listen [DURATION]") && out.stdout.contains("capabilities"), "{out}");

    let out = troupe(&["shell", &free_port().to_string()], Some("status\n"));
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("no node is listening"), "{out}");
}

/// A shell with no node at its port exits 3 at once, before it reads its script: a script
/// longer than a pipe holds must still give that exit code and message, not a harness error
/// (issue 21 point 7: "cannot write troupe's stdin: Broken pipe").
#[test]
fn a_script_the_shell_never_reads_still_gets_its_exit_code() {
    // Several times what a pipe buffers (64 KiB on Linux), so the write meets a closed pipe.
    let script = "status\n".repeat(200_000);
    let out = troupe(&["shell", &free_port().to_string()], Some(&script));
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("no node is listening"), "{out}");
}

/// What a process writes to a pipe, collected by a thread, waited on by content.
struct Screen {
    chunks: Receiver<Vec<u8>>,
    seen: String,
}

impl Screen {
    fn new(out: impl std::io::Read + Send + 'static) -> Screen {
        let (tx, chunks) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = out;
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Screen { chunks, seen: String::new() }
    }

    /// Waits until the output since `from` contains `needle`; returns where it ends.
    #[track_caller]
    fn wait_for(&mut self, from: usize, needle: &str) -> usize {
        loop {
            if let Some(i) = self.seen[from.min(self.seen.len())..].find(needle) {
                return from + i + needle.len();
            }
            match self.chunks.recv_timeout(REPLY_TIMEOUT) {
                Ok(c) => self.seen.push_str(&String::from_utf8_lossy(&c)),
                Err(e) => panic!("{needle:?} never appeared ({e}); the screen so far:\n{}", self.seen),
            }
        }
    }
}

#[test]
fn on_a_terminal_it_prompts_completes_with_tab_and_keeps_history() {
    // `script` gives the shell a pseudo-terminal, as a user's terminal would.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "mem=64");
    let home = dir.join("home");
    let cmd = format!("{} shell {}", troupe_bin().display(), node.port_arg());
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("TROUPE_HOME", &home)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run script");
    let mut screen = Screen::new(child.stdout.take().expect("piped"));
    let mut keys = child.stdin.take().expect("piped");
    let mut typed = |s: &str| keys.write_all(s.as_bytes()).and_then(|_| keys.flush()).expect("type");

    // Each key is typed once the prompt is there (input typed earlier would be flushed).
    let at = screen.wait_for(0, "troupe> ");
    typed("status\r");
    let at = screen.wait_for(at, "capabilities: mem=64");
    let at = screen.wait_for(at, "troupe> ");
    // Tab completes a command name.
    typed("chg\t");
    let at = screen.wait_for(at, "chgcap ");
    typed("+ gpu=A100\r");
    let at = screen.wait_for(at, "capabilities now [gpu=A100, mem=64]");
    let at = screen.wait_for(at, "troupe> ");
    // Up arrow brings back the last line.
    typed("\x1b[A");
    screen.wait_for(at, "chgcap + gpu=A100");
    typed("\x15quit\r"); // Ctrl-U clears the recalled line
    let status = child.wait().expect("wait for the shell");
    assert!(status.success(), "{status}\n{}", screen.seen);
    let history = std::fs::read_to_string(home.join("shell-history")).expect("the history is saved");
    assert!(history.contains("status") && history.contains("chgcap + gpu=A100"), "{history}");
    assert_eq!(node.status().capabilities, ["gpu=A100", "mem=64"]);
}
