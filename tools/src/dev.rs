//! Plugin-author tooling: `troupe new` (a plugin crate from the templates in
//! `tools/templates/`), `troupe create`, `troupe tell` and `troupe ask` (trying actors by hand
//! with text or JSON messages), and `troupe completions` (shell completion scripts).
//!
//! The commands follow the rest of the CLI ([`super`]): they return an exit code or a
//! [`Failure`] whose message says what to do next, print results on stdout (one address, one
//! reply) so that scripts can capture them, and use no colour.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use troupe_actor_abi::message::{self, Address, CreateSpec, Payload, SystemMessage};
use troupe_node::protocol::{Request, Response};

use super::{connect, node_addr, refused, usage, Failure, EXIT_OK, EXIT_REFUSED};

mod new;
pub(crate) use new::new;

// ---- arguments --------------------------------------------------------------------------------

/// Create a plugin crate: one example actor and a test that loads it into a real node.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  troupe new hello                    # ./hello, actor type hello.Greeter\n  troupe new my-actors --path ~/src/my-actors   # actor type my_actors.Greeter\n  cd hello && cargo test              # builds, packs, loads, asks (with this troupe)\n\nThe crate depends on troupe-actor-abi by path when troupe runs from a Troupe checkout\n(or TROUPE_SDK_PATH names the SDK crate or the checkout), else by version.\nAn existing directory is never overwritten."
)]
pub(crate) struct NewArgs {
    /// The crate's name (letters, digits, `-` and `_`); its actor types are `NAME.Type`, with
    /// `-` written as `_`.
    name: String,
    /// Directory to create (default: ./NAME). It must not exist yet.
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
}

/// Create an actor of TYPE from a loaded version; prints its address.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  HASH=$(troupe load 1900 src.zip)\n  ADDR=$(troupe create 1900 $HASH faulty.Echo)       # prints e.g. 127.0.0.1:1900#1f\n  troupe create 1900 @encoders app.Acceptor --name Acceptor\n  troupe create 1900 $HASH encoder.Base64Encoder --require \"64bit encoder\"\n\nThe actor has no parent and lives until it exits or its version is unloaded. A constructor\nthat fails shows up when you talk to it: troupe ask answers with the PoisonMessage."
)]
pub(crate) struct CreateArgs {
    /// Admin port (or host:port).
    port: String,
    /// The version: a hash, a unique prefix of at least 8 hex digits, or @GROUP.
    hash: String,
    /// The actor type, `module.Type`.
    #[arg(value_name = "TYPE")]
    type_name: String,
    /// A global name: if an actor with this name is alive, its address is printed instead.
    #[arg(long, value_name = "N")]
    name: Option<String>,
    /// A capability the hosting node must have, on top of those the type declares (repeat for
    /// several).
    #[arg(long = "require", value_name = "CAP")]
    require: Vec<String>,
}

/// Send a message to an actor and exit (no reply is read).
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  troupe tell 1900 127.0.0.1:1900#1f hello\n  troupe tell 1900 '#1f' hello                          # an actor of the node on 1900\n  troupe tell 1900 $ADDR --json '{\"tag\": \"hello/Greet\", \"body\": {\"name\": \"Ada\"}}'\n\nWith --json, MESSAGE is {\"tag\": TAG, \"body\": VALUE}: a typed message whose body is VALUE\nencoded as msgpack (what Typed::decode reads), or a JSON string: plain text."
)]
pub(crate) struct TellArgs {
    /// Admin port (or host:port) of the node to send through.
    port: String,
    /// The actor's address as `troupe create` prints it (`host:port#hexid`), or `#hexid` for an
    /// actor of that node.
    address: String,
    /// The message: text, or JSON with --json.
    message: String,
    /// MESSAGE is JSON: {"tag": "module/Type", "body": VALUE} for a typed message.
    #[arg(long)]
    json: bool,
}

/// Send a message to an actor and print its first reply.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  troupe ask 1900 127.0.0.1:1900#1f world               # prints e.g. hello, world\n  troupe ask 1900 $ADDR --json '{\"tag\": \"hello/Greet\", \"body\": {\"name\": \"Ada\"}}'\n  troupe ask 1900 $ADDR ping --timeout 30s\n  troupe ask 1900 $ADDR --status                        # type, handled, mailbox, age, ...\n\nA text reply is printed as it is; a typed reply as one line of JSON, {\"tag\": .., \"body\": ..}.\nA runtime message (e.g. PoisonMessage: the actor failed twice on the message, or does not\nexist) is printed on stderr with exit code 1, as is a timeout."
)]
pub(crate) struct AskArgs {
    /// Admin port (or host:port) of the node to send through.
    port: String,
    /// The actor's address as `troupe create` prints it (`host:port#hexid`), or `#hexid` for an
    /// actor of that node.
    address: String,
    /// The message: text, or JSON with --json.
    #[arg(required_unless_present = "status")]
    message: Option<String>,
    /// MESSAGE is JSON: {"tag": "module/Type", "body": VALUE} for a typed message.
    #[arg(long, conflicts_with = "status")]
    json: bool,
    /// Ask the actor for its status instead of sending MESSAGE: its type, the messages it
    /// handled, its mailbox depth, its age, and what the actor adds (one `name value` line
    /// each).
    #[arg(long, conflicts_with = "message")]
    status: bool,
    /// How long to wait for the reply.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Print a shell completion script for troupe.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  troupe completions bash > ~/.local/share/bash-completion/completions/troupe\n  troupe completions zsh > ~/.zfunc/_troupe     # with fpath+=~/.zfunc before compinit\n  troupe completions fish > ~/.config/fish/completions/troupe.fish"
)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    shell: clap_complete::Shell,
}

// ---- create, tell, ask ----------------------------------------------------------------------

/// `troupe create PORT HASH TYPE [--name N] [--require CAP...]`.
pub(crate) async fn create(args: CreateArgs) -> Result<u8, Failure> {
    let CreateArgs { port, hash, type_name, name, require } = args;
    let spec =
        CreateSpec { type_name, requirements: require, global_name: name.clone(), source_hash: Some(hash) };
    let mut c = connect(&port).await?;
    let response = c.request(Request::Create { spec }).await.map_err(|e| {
        let f = Failure::from(e);
        if f.code != EXIT_REFUSED {
            return f;
        }
        let hint = format!(
            "troupe status {port} lists the loaded versions and capabilities; troupe load {port} ZIP loads one"
        );
        Failure { code: f.code, error: anyhow!("{} — {hint}", f.error) }
    })?;
    match response {
        Response::Created { address, existing, .. } => {
            if existing {
                eprintln!(
                    "an actor named {} is alive already: its address follows",
                    name.as_deref().unwrap_or_default()
                );
            }
            println!("{address}");
            Ok(EXIT_OK)
        }
        other => Err(refused(anyhow!("unexpected answer to create: {other:?}"))),
    }
}

/// Parses an address as `troupe create` prints it: `host:port#hexid`, or `#hexid` for an actor
/// of the node at `port`.
fn parse_address(s: &str, port: &str) -> Result<Address, Failure> {
    let bad = |why: &str| {
        usage(anyhow!(
            "{s:?} is not an actor address ({why}) — give it as troupe create printed it, e.g. 127.0.0.1:1900#1f, or #1f for an actor of the node on {port}"
        ))
    };
    let (node, id) = s.trim().rsplit_once('#').ok_or_else(|| bad("no #"))?;
    let id = u64::from_str_radix(id, 16).map_err(|_| bad("the id after # is not hex"))?;
    let node = if node.is_empty() { node_addr(port) } else { node.to_string() };
    match node.rsplit_once(':') {
        Some((host, p)) if !host.is_empty() && p.parse::<u16>().is_ok() => Ok(Address { node, id }),
        _ => Err(bad("the part before # is not host:port")),
    }
}

/// The payload for MESSAGE: text, or (with `--json`) a typed message or a JSON string.
fn parse_message(message: &str, json: bool) -> Result<Payload, Failure> {
    if !json {
        return Ok(Payload::Text(message.to_string()));
    }
    let hint =
        r#"--json takes {"tag": "module/Type", "body": VALUE} (a typed message) or a JSON string (text)"#;
    let value: serde_json::Value =
        serde_json::from_str(message).map_err(|e| usage(anyhow!("MESSAGE is not JSON: {e} — {hint}")))?;
    match value {
        serde_json::Value::String(text) => Ok(Payload::Text(text)),
        serde_json::Value::Object(mut o) => {
            let Some(serde_json::Value::String(tag)) = o.remove("tag") else {
                return Err(usage(anyhow!("the JSON message has no string \"tag\" — {hint}")));
            };
            let Some(body) = o.remove("body") else {
                return Err(usage(anyhow!("the JSON message has no \"body\" — {hint}")));
            };
            if let Some(extra) = o.keys().next() {
                return Err(usage(anyhow!("unexpected field {extra:?} in the JSON message — {hint}")));
            }
            Ok(Payload::Typed { tag, body: message::encode(&body) })
        }
        _ => Err(usage(anyhow!("the JSON message is neither an object nor a string — {hint}"))),
    }
}

/// A typed payload as one line of JSON, `{"tag":..,"body":..}` (tag first). A body that is
/// not plain data (e.g. raw bytes) is shown as hex of its msgpack under `body_msgpack_hex`.
fn typed_json(tag: &str, body: &[u8]) -> String {
    let tag = serde_json::Value::String(tag.to_string());
    match message::decode::<serde_json::Value>(body) {
        Ok(v) => format!("{{\"tag\":{tag},\"body\":{v}}}"),
        Err(_) => {
            let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
            format!("{{\"tag\":{tag},\"body_msgpack_hex\":\"{hex}\"}}")
        }
    }
}

/// `troupe tell PORT ADDRESS MESSAGE [--json]`.
pub(crate) async fn tell(args: TellArgs) -> Result<u8, Failure> {
    let to = parse_address(&args.address, &args.port)?;
    let payload = parse_message(&args.message, args.json)?;
    let mut c = connect(&args.port).await?;
    c.request(Request::Send { to: to.clone(), payload }).await?;
    if std::io::stderr().is_terminal() {
        eprintln!("sent to {to}");
    }
    Ok(EXIT_OK)
}

/// `troupe ask PORT ADDRESS MESSAGE [--json] [--timeout D]`.
pub(crate) async fn ask(args: AskArgs) -> Result<u8, Failure> {
    let to = parse_address(&args.address, &args.port)?;
    let payload = match &args.message {
        _ if args.status => Payload::System(SystemMessage::StatusRequest { mailbox: None }),
        Some(m) => parse_message(m, args.json)?,
        None => return Err(usage(anyhow!("give a MESSAGE, or --status"))),
    };
    let mut c = connect(&args.port).await?;
    c.request(Request::Send { to: to.clone(), payload }).await?;
    let reply = match tokio::time::timeout(args.timeout, c.next_message()).await {
        Ok(m) => m?,
        Err(_) => {
            return Err(refused(anyhow!(
                "no reply from {to} within {} — does it answer this message? (troupe status {} lists the live actors; troupe logs {} shows what the node did; --timeout waits longer)",
                humantime::format_duration(args.timeout),
                args.port,
                args.port
            )))
        }
    };
    let line = match &reply.payload {
        Payload::Text(t) => t.clone(),
        Payload::Typed { tag, body } => typed_json(tag, body),
        Payload::System(SystemMessage::PoisonMessage { target, details, .. }) => {
            return Err(refused(anyhow!(
                "the message came back from {target} as a PoisonMessage: {details} — troupe status {} lists the live actors; troupe logs {} shows what happened",
                args.port,
                args.port
            )))
        }
        Payload::System(SystemMessage::ActorStatus { type_name, handled, mailbox, age_ms, extra }) => {
            status_lines(type_name, *handled, *mailbox, *age_ms, extra)
        }
        Payload::System(other) => {
            return Err(refused(anyhow!("{to} answered with a runtime message instead of a reply: {other:?}")))
        }
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (`troupe ask … | head -c1`) is not an error.
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
    Ok(EXIT_OK)
}

// ---- kill, listen (the shell's) ----------------------------------------------------------------

/// `kill ADDRESS` in `troupe shell`: sends `ActorExitRequest` (children too) as `tell` sends a
/// message.
pub(crate) async fn kill(port: &str, address: &str) -> Result<u8, Failure> {
    let to = parse_address(address, port)?;
    let mut c = connect(port).await?;
    let payload = Payload::System(SystemMessage::ActorExitRequest { recursive: true });
    c.request(Request::Send { to: to.clone(), payload }).await?;
    println!("asked {to} to exit");
    Ok(EXIT_OK)
}

/// A message as `listen` prints it: `SENDER: TEXT`, a typed one as `ask` prints it, a runtime
/// message by name.
pub(crate) fn incoming_line(m: &message::Incoming) -> String {
    let from = m.sender.as_ref().map_or_else(|| "runtime".to_string(), |a| a.to_string());
    let body = match &m.payload {
        Payload::Text(t) => t.clone(),
        Payload::Typed { tag, body } => typed_json(tag, body),
        Payload::System(sys) => format!("{sys:?}"),
    };
    format!("{from}: {body}")
}

/// `listen [DURATION] [-n COUNT]` in `troupe shell`: a new connection (a new address), whose
/// address is printed first; then one line per message sent to it until Ctrl-C, `duration`
/// or `count` messages.
pub(crate) async fn listen(
    port: &str,
    duration: Option<Duration>,
    count: Option<u64>,
) -> Result<u8, Failure> {
    let mut c = connect(port).await?;
    println!("listening on {} (Ctrl-C stops)", c.address());
    let _ = std::io::stdout().flush();
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut heard = 0u64;
    while count.is_none_or(|n| heard < n) {
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            m = c.next_message() => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", incoming_line(&m?)).and_then(|_| out.flush());
                heard += 1;
            }
            _ = until => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!("stopped listening ({heard} message{})", if heard == 1 { "" } else { "s" });
    Ok(EXIT_OK)
}

/// An actor's status as `troupe ask --status` prints it: one `name value` line each, names
/// aligned.
fn status_lines(
    type_name: &str,
    handled: u64,
    mailbox: u64,
    age_ms: u64,
    extra: &[(String, String)],
) -> String {
    let age = humantime::format_duration(Duration::from_millis(age_ms)).to_string();
    let mut rows = vec![
        ("type".to_string(), type_name.to_string()),
        ("handled".to_string(), handled.to_string()),
        ("mailbox".to_string(), mailbox.to_string()),
        ("age".to_string(), age),
    ];
    rows.extend(extra.iter().cloned());
    let width = rows.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0);
    rows.iter().map(|(n, v)| format!("{n:width$}  {v}")).collect::<Vec<_>>().join("\n")
}

// ---- completions --------------------------------------------------------------------------------

/// `troupe completions SHELL`.
pub(crate) fn completions(args: CompletionsArgs) -> Result<u8, Failure> {
    use clap::CommandFactory;
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "troupe", &mut script);
    let _ = std::io::stdout().lock().write_all(&script);
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_displayed() {
        let a = Address { node: "127.0.0.1:1900".into(), id: 0x1f };
        assert_eq!(parse_address(&a.to_string(), "1900").ok(), Some(a.clone()));
        assert_eq!(parse_address("#1f", "1900").ok(), Some(a));
        let remote = parse_address("10.0.0.2:10000#a", "1900").ok();
        assert_eq!(remote, Some(Address { node: "10.0.0.2:10000".into(), id: 10 }));
        for bad in ["127.0.0.1:1900", "127.0.0.1:1900#zz", "nohost#1", ":1900#1", "h:99999#1"] {
            assert!(parse_address(bad, "1900").is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn json_messages_become_typed_payloads() {
        let p = parse_message(r#"{"tag": "hello/Greet", "body": {"name": "Ada"}}"#, true).ok();
        let Some(Payload::Typed { tag, body }) = p else { panic!("not typed: {p:?}") };
        assert_eq!(tag, "hello/Greet");
        #[derive(serde::Deserialize)]
        struct Greet {
            name: String,
        }
        let g: Greet = message::decode(&body).expect("the body is msgpack of the JSON value");
        assert_eq!(g.name, "Ada");
        assert_eq!(typed_json(&tag, &body), r#"{"tag":"hello/Greet","body":{"name":"Ada"}}"#);
        assert_eq!(parse_message(r#""hi""#, true).ok(), Some(Payload::Text("hi".into())));
        assert_eq!(parse_message("{not json", false).ok(), Some(Payload::Text("{not json".into())));
        for bad in ["{not json", "42", r#"{"body": 1}"#, r#"{"tag": "t"}"#, r#"{"tag":"t","body":1,"x":2}"#] {
            assert!(parse_message(bad, true).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_status_prints_one_aligned_line_per_field() {
        let extra = [("entries".to_string(), "3".to_string())];
        let text = status_lines("demo.Cache", 7, 2, 1500, &extra);
        assert_eq!(text, "type     demo.Cache\nhandled  7\nmailbox  2\nage      1s 500ms\nentries  3");
    }
}
