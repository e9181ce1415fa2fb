//! Acting as an actor-facing client of a node (through [`troupe_node::client::Client`]):
//! creating actors, sending them text and reading their answers within [`REPLY_TIMEOUT`], and
//! asking for the status without a CLI process.

use std::time::Duration;

use troupe_actor_abi::message::{Address, CreateSpec, Incoming, Payload};
use troupe_node::client::Client;
use troupe_node::protocol::{Request, Response};
use troupe_node::status::StatusReport;

/// How long a reply from an actor may take before a test gives up: a deadline, not a sleep,
/// and far above an honest reply (milliseconds) so that a loaded 2-core machine running the
/// whole suite and `make bench` beside it never reaches it.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates a top-level actor through `client`.
pub async fn create(client: &mut Client, type_name: &str, hash: &str) -> anyhow::Result<Address> {
    let spec =
        CreateSpec { type_name: type_name.into(), source_hash: Some(hash.into()), ..CreateSpec::default() };
    create_spec(client, spec).await
}

/// Sends text to `to` from `client`'s own address.
pub async fn send_text(client: &mut Client, to: &Address, text: &str) {
    match client.request(Request::Send { to: to.clone(), payload: Payload::Text(text.into()) }).await {
        Ok(Response::Sent) => {}
        other => panic!("send to {to} failed: {other:?}"),
    }
}

/// The next message for `client`, within [`REPLY_TIMEOUT`].
pub async fn next_message(client: &mut Client) -> Incoming {
    match tokio::time::timeout(REPLY_TIMEOUT, client.next_message()).await {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => panic!("the connection failed while waiting for a message: {e}"),
        Err(_) => panic!("no message within {REPLY_TIMEOUT:?}"),
    }
}

/// The next message for `client`, which must be text.
pub async fn next_text(client: &mut Client) -> String {
    match next_message(client).await.payload {
        Payload::Text(t) => t,
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Sends `text` and returns the text answer.
pub async fn ask(client: &mut Client, to: &Address, text: &str) -> String {
    send_text(client, to, text).await;
    next_text(client).await
}

/// The node's status through `client` (no CLI process: for loops).
pub async fn status_of(client: &mut Client) -> StatusReport {
    match client.request(Request::Status).await {
        Ok(Response::Status(r)) => *r,
        other => panic!("status failed: {other:?}"),
    }
}

/// Reads messages for `client` until a text satisfies `pred` (returned) or `timeout` passes
/// (panics, listing what did arrive). Other messages are dropped.
pub async fn text_matching(client: &mut Client, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, client.next_message()).await {
            Ok(Ok(m)) => match m.payload {
                Payload::Text(t) if pred(&t) => return t,
                other => seen.push(format!("{other:?}")),
            },
            Ok(Err(e)) => panic!("the connection failed while waiting for a message: {e}; before: {seen:#?}"),
            Err(_) => panic!("no matching message within {timeout:?}; got instead: {seen:#?}"),
        }
    }
}

/// Creates a top-level actor with an explicit spec through `client`.
pub async fn create_spec(client: &mut Client, spec: CreateSpec) -> anyhow::Result<Address> {
    match client.request(Request::Create { spec }).await? {
        Response::Created { address, .. } => Ok(address),
        other => anyhow::bail!("unexpected answer to create: {other:?}"),
    }
}

/// Waits until `actor`'s node lists its handler as running long (past `--long-handler`): the
/// handler holds its actor, so an upgrade asked for from now on cannot move it before the
/// handler returns. Panics after `patience`.
pub async fn wait_long_handler(actor: &Address, patience: Duration) {
    let deadline = std::time::Instant::now() + patience;
    let mut c = Client::connect(&actor.node).await.expect("connect to the actor's node");
    loop {
        let st = status_of(&mut c).await;
        if st.versions.iter().any(|v| v.long_handlers.iter().any(|h| h.actor.id == actor.id)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{actor}'s handler is not listed as running: {:?}",
            st.versions
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
