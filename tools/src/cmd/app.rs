//! `troupe app`: the encoders demo. Sends stdin's text to the `app.Acceptor` of a version
//! (created with the global name `Acceptor:<hash>`, or the running one reused) and prints each
//! encoder's result line as it arrives, until every encoder the Acceptor announced has
//! answered or failed.

use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use anyhow::anyhow;
use serde::{Deserialize, Serialize};
use troupe_actor_abi::message::{Address, CreateSpec, Payload, SystemMessage};
use troupe_node::client::Client;
use troupe_node::protocol::{Request, Response};
use troupe_node::status::StatusReport;

use super::{connect, with_progress};
use crate::{refused, usage, Failure, EXIT_OK, EXIT_REFUSED};

/// `app/Expect`: the encoders the Acceptor is about to use (mirrors the encoders plugin).
#[derive(Serialize, Deserialize, Debug)]
struct Expect {
    encoders: Vec<String>,
}
/// `app/Failed`: one encoder could not answer, and why.
#[derive(Serialize, Deserialize, Debug)]
struct Failed {
    encoder: String,
    reason: String,
}

fn decode_typed<T: for<'de> Deserialize<'de>>(payload: &Payload, tag: &str) -> Option<T> {
    match payload {
        Payload::Typed { tag: t, body } if t == tag => troupe_actor_abi::message::decode(body).ok(),
        _ => None,
    }
}

/// Finds the full hash for a prefix among the node's versions (so the global name is
/// `Acceptor:<full hash>` whatever the user typed). Unknown prefixes are passed on as given
/// and the node explains.
fn full_hash(report: &StatusReport, hash: &str) -> String {
    if hash.starts_with('@') {
        // A group: the node resolves it when it creates, and binds the name to that version.
        return hash.to_string();
    }
    let h = hash.trim().to_ascii_lowercase();
    let matches: Vec<&String> =
        report.versions.iter().map(|v| &v.hash).filter(|v| v.starts_with(&h)).collect();
    match matches.as_slice() {
        [one] => (*one).clone(),
        _ => h,
    }
}

/// `troupe app HASH [--port P] [--timeout T]`.
pub(crate) async fn app(hash: &str, port: &str, timeout: Duration) -> Result<u8, Failure> {
    let text = read_input(hash)?;
    let mut c = connect(port).await?;
    let acceptor = acceptor(&mut c, hash).await?;
    c.request(Request::Send { to: acceptor, payload: Payload::Text(text) }).await?;
    let mut results = Results::default();
    results.collect(&mut c, timeout).await?;
    Ok(if results.failed == 0 { EXIT_OK } else { EXIT_REFUSED })
}

/// The text to encode: stdin, trimmed, which must not be empty.
fn read_input(hash: &str) -> Result<String, Failure> {
    let mut input = String::new();
    if std::io::stdin().is_terminal() {
        eprintln!("(reading the text to encode from stdin; end with Ctrl-D)");
    }
    std::io::stdin().read_to_string(&mut input).map_err(|e| usage(anyhow!("cannot read stdin: {e}")))?;
    let text = input.trim();
    if text.is_empty() {
        return Err(usage(anyhow!(
            "nothing to encode: stdin is empty — try: echo hello | troupe app {hash}"
        )));
    }
    Ok(text.to_string())
}

/// The Acceptor of `hash`: created under its global name, which yields the running one if
/// there is one.
async fn acceptor(c: &mut Client, hash: &str) -> Result<Address, Failure> {
    let Response::Status(report) = c.request(Request::Status).await? else {
        return Err(refused(anyhow!("unexpected answer to status")));
    };
    let full = full_hash(&report, hash);
    let spec = CreateSpec {
        type_name: "app.Acceptor".into(),
        requirements: Vec::new(),
        global_name: Some(format!("Acceptor:{full}")),
        source_hash: Some(full.clone()),
    };
    match c.request(Request::Create { spec }).await? {
        Response::Created { address, .. } => Ok(address),
        other => Err(refused(anyhow!("unexpected answer {other:?}"))),
    }
}

/// What came back so far: the encoders announced, those that answered or failed.
#[derive(Default)]
struct Results {
    /// The encoders the Acceptor said it uses (none until its `app/Expect` arrives).
    expected: Option<Vec<String>>,
    /// Encoders that printed a line or failed.
    answered: Vec<String>,
    /// How many of them failed.
    failed: usize,
}

impl Results {
    /// Prints result lines until every expected encoder answered, or fails at the deadline.
    async fn collect(&mut self, c: &mut Client, timeout: Duration) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut stdout = std::io::stdout().lock();
        while !self.complete() {
            // Until the first answer (a cold start: nodes fetching the version from peers and
            // creating the actors), a terminal shows that something is going on.
            let next = tokio::time::timeout_at(deadline, c.next_message());
            let waited = if self.expected.is_none() && self.answered.is_empty() {
                with_progress("waiting for the Acceptor (nodes may be fetching the version)", next).await
            } else {
                next.await
            };
            let Ok(msg) = waited else {
                return Err(refused(anyhow!(
                    "timed out after {}: no answer from {}",
                    humantime::format_duration(timeout),
                    self.missing().join(", ")
                )));
            };
            self.take(&msg?.payload, &mut stdout)?;
        }
        Ok(())
    }

    fn complete(&self) -> bool {
        self.expected.as_ref().is_some_and(|exp| exp.iter().all(|e| self.answered.contains(e)))
    }

    /// Who has not answered yet, for the timeout message.
    fn missing(&self) -> Vec<String> {
        match &self.expected {
            Some(exp) => exp.iter().filter(|e| !self.answered.contains(e)).cloned().collect(),
            None => vec!["the Acceptor (it never said what to expect)".into()],
        }
    }

    /// One message from the Acceptor: a result line, the list to expect, or a failure.
    fn take(&mut self, payload: &Payload, stdout: &mut impl Write) -> Result<(), Failure> {
        match payload {
            Payload::Text(line) => {
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
                let name = line.split_whitespace().next().unwrap_or_default().to_string();
                self.answered.push(name);
            }
            Payload::System(SystemMessage::PoisonMessage { details, .. }) => {
                return Err(refused(anyhow!("the Acceptor could not take the request: {details}")));
            }
            p => {
                if let Some(e) = decode_typed::<Expect>(p, "app/Expect") {
                    self.expected = Some(e.encoders);
                } else if let Some(f) = decode_typed::<Failed>(p, "app/Failed") {
                    // A late notice for an encoder that already answered (its node was lost
                    // after it did its work) changes nothing.
                    if !self.answered.contains(&f.encoder) {
                        eprintln!("{}: {}", f.encoder, f.reason);
                        self.failed += 1;
                        self.answered.push(f.encoder);
                    }
                }
            }
        }
        Ok(())
    }
}
