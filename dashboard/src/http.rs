//! The web server (axum): the page's three assets, compiled into the binary; the read
//! endpoints (`/api/config`, the `/api/events` and `/api/logs` streams, `/api/actors`,
//! `/api/actor`); and the actions (`/api/action/...`, in `actions.rs`). Every `/api` request
//! passes [`crate::auth::Access`] first.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::{watch, Notify};
use troupe_actor_abi::message::{Address, Payload, SystemMessage};
use troupe_node::protocol::observe::LOG_FROM_END;
use troupe_node::protocol::{Request, Response as NodeResponse};

use crate::auth::{Access, Refusal, TOKEN_HEADER};
use crate::nodes::Nodes;
use crate::poller::Published;

/// How long the page waits for an actor's status answer: as `troupe ask`'s default.
const ACTOR_STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// The most actors one search returns: a screenful; narrow the search for more.
const SEARCH_LIMIT: usize = 200;

/// What every handler reads.
#[derive(Clone)]
pub struct AppState {
    pub access: Arc<Access>,
    pub nodes: Arc<Nodes>,
    pub published: watch::Receiver<Arc<Published>>,
    pub wake: Arc<Notify>,
    pub entry: String,
    pub refresh: Duration,
}

/// An answer the page can show: a status and `{"error": "..."}`.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        ApiError(StatusCode::from_u16(r.status()).unwrap_or(StatusCode::FORBIDDEN), r.to_string())
    }
}

impl From<troupe_node::client::ClientError> for ApiError {
    fn from(e: troupe_node::client::ClientError) -> ApiError {
        use troupe_node::client::ClientError as E;
        let status = match &e {
            E::Refused(_) => StatusCode::CONFLICT,
            E::Unreachable { .. } | E::Timeout { .. } | E::Protocol { .. } => StatusCode::BAD_GATEWAY,
        };
        ApiError(status, e.to_string())
    }
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", include_str!("../assets/index.html"))))
        .route("/app.js", get(|| asset("text/javascript; charset=utf-8", include_str!("../assets/app.js"))))
        .route("/app.css", get(|| asset("text/css; charset=utf-8", include_str!("../assets/app.css"))))
        .route("/api/config", get(config))
        .route("/api/events", get(events))
        .route("/api/logs", get(logs))
        .route("/api/actors", get(actors))
        .route("/api/actor", get(actor))
        .route("/api/action/{name}", post(crate::actions::act))
        .layer(axum::extract::DefaultBodyLimit::max(troupe_node::protocol::MAX_FRAME_BYTES))
        .with_state(state)
}

/// A compiled-in asset, with headers that keep the page from being framed or from loading
/// anything from elsewhere.
async fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The token of a read: the header, else the `token` query parameter (an `EventSource` cannot
/// set headers).
#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

/// The token in the header, if any.
pub fn header_token(headers: &HeaderMap) -> Option<&str> {
    headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok())
}

fn check_read(state: &AppState, headers: &HeaderMap, query_token: Option<&str>) -> Result<(), ApiError> {
    Ok(state.access.check_read(host(headers), header_token(headers).or(query_token))?)
}

/// What the page needs before anything else: whether it must ask for a token, whether to show
/// the actions. Readable without the token (it tells nothing about the convention).
async fn config(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    s.access.check_host(host(&headers))?;
    Ok(Json(serde_json::json!({
        "token_required": s.access.reads_need_token(),
        "actions": s.access.actions(),
        "entry": s.entry,
        "refresh_ms": s.refresh.as_millis() as u64,
    }))
    .into_response())
}

/// Every refresh's document, as a `snapshot` event, starting with the latest one.
async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    check_read(&s, &headers, q.token.as_deref())?;
    let rx = s.published.clone();
    let stream = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let json = rx.borrow_and_update().json.clone();
        Some((Ok(Event::default().event("snapshot").data(&*json)), (rx, false)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize)]
pub struct LogQuery {
    node: String,
    token: Option<String>,
}

/// A node's log, following: its last lines first, then what it adds, one `log` event per
/// refresh with new lines (a `logerror` event says why there are none).
async fn logs(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LogQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    check_read(&s, &headers, q.token.as_deref())?;
    let (nodes, refresh, node) = (s.nodes.clone(), s.refresh, q.node);
    let stream = futures::stream::unfold((LOG_FROM_END, true), move |(from, first)| {
        let (nodes, node) = (nodes.clone(), node.clone());
        async move {
            if !first {
                tokio::time::sleep(refresh).await;
            }
            let event = match nodes.poll(&node, Request::Observe { log_from: Some(from) }).await {
                Ok(NodeResponse::Observed(o)) => match o.log {
                    Some(l) if l.error.is_none() => {
                        let e = Event::default().event("log").data(&l.text);
                        return Some((Ok(e), (l.next, false)));
                    }
                    Some(l) => l.error.unwrap_or_default(),
                    None => "the node sent no log".to_string(),
                },
                Ok(_) => "this node does not serve its log (an older troupe)".to_string(),
                Err(e) => e.to_string(),
            };
            Some((Ok(Event::default().event("logerror").data(event)), (from, false)))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    token: Option<String>,
}

/// Actors whose address, type or global name contains `q` (case ignored), at most
/// [`SEARCH_LIMIT`].
async fn actors(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Result<Response, ApiError> {
    check_read(&s, &headers, q.token.as_deref())?;
    let needle = q.q.trim().to_lowercase();
    let published = s.published.borrow().clone();
    let found: Vec<_> = published
        .statuses
        .iter()
        .flat_map(|st| st.actors.iter())
        .filter(|a| {
            needle.is_empty()
                || a.address.to_string().to_lowercase().contains(&needle)
                || a.type_name.to_lowercase().contains(&needle)
                || a.global_name.as_deref().is_some_and(|n| n.to_lowercase().contains(&needle))
        })
        .take(SEARCH_LIMIT)
        .map(|a| {
            serde_json::json!({
                "address": a.address.to_string(),
                "type_name": a.type_name,
                "hash": a.hash,
                "global_name": a.global_name,
                "parent": a.parent.as_ref().map(|p| p.to_string()),
            })
        })
        .collect();
    Ok(Json(found).into_response())
}

#[derive(Deserialize)]
pub struct ActorQuery {
    addr: String,
    token: Option<String>,
}

/// `host:port#hexid` → an address.
pub fn parse_address(text: &str) -> Option<Address> {
    let (node, id) = text.trim().rsplit_once('#')?;
    let id = u64::from_str_radix(id, 16).ok()?;
    (!node.is_empty() && node.contains(':')).then(|| Address { node: node.to_string(), id })
}

/// An actor's own status, as `troupe ask ADDR --status` shows it.
async fn actor(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ActorQuery>,
) -> Result<Response, ApiError> {
    check_read(&s, &headers, q.token.as_deref())?;
    let bad =
        || ApiError(StatusCode::BAD_REQUEST, format!("{} is not an actor address (host:port#id)", q.addr));
    let to = parse_address(&q.addr).ok_or_else(bad)?;
    let mut c = s.nodes.fresh(&to.node).await?;
    let status = Payload::System(SystemMessage::StatusRequest { mailbox: None });
    c.request(Request::Send { to: to.clone(), payload: status }).await?;
    let reply = tokio::time::timeout(ACTOR_STATUS_TIMEOUT, c.next_message())
        .await
        .map_err(|_| ApiError(StatusCode::GATEWAY_TIMEOUT, format!("{to} did not answer within 5 s")))??;
    match reply.payload {
        Payload::System(SystemMessage::ActorStatus { type_name, handled, mailbox, age_ms, extra }) => {
            Ok(Json(serde_json::json!({
                "address": to.to_string(), "type_name": type_name, "handled": handled,
                "mailbox": mailbox, "age_ms": age_ms, "extra": extra,
            }))
            .into_response())
        }
        Payload::System(SystemMessage::PoisonMessage { details, .. }) => {
            Err(ApiError(StatusCode::NOT_FOUND, format!("{to}: {details}")))
        }
        other => Err(ApiError(StatusCode::BAD_GATEWAY, format!("{to} answered {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_the_page_shows_them() {
        let a = parse_address("127.0.0.1:1900#1f").unwrap();
        assert_eq!((a.node.as_str(), a.id), ("127.0.0.1:1900", 0x1f));
        for bad in ["", "#1", "127.0.0.1:1900", "127.0.0.1:1900#zz", "nohost#1"] {
            assert!(parse_address(bad).is_none(), "{bad}");
        }
    }
}
