//! The page's actions, off unless `--allow-actions`: load (a zip uploaded from the page),
//! deploy, upgrade, rollback, unload and chgcap. Each becomes the admin request the CLI sends
//! for the same command, on a connection of its own, so it goes through the same source
//! authority and the same checks as `troupe load` and the rest; each needs the token in the
//! `x-troupe-token` header (see `auth.rs`). After each, the poller refreshes at once.
//!
//! An upgrade is answered with the node's report once it ends; while it runs, the page's
//! upgrade panel shows it from the nodes' own progress, as it shows one started elsewhere.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use troupe_node::protocol::{Request, Response as NodeResponse, UpgradeOptions};

use crate::http::{header_token, ApiError, AppState};

/// An action's parameters (each action reads the ones it needs).
#[derive(Debug, Default, Deserialize)]
pub struct ActionQuery {
    /// The node to send it to (default: the node the dashboard was pointed at).
    node: Option<String>,
    /// The uploaded file's name (for `info`, as the CLI passes the zip's path).
    file: Option<String>,
    group: Option<String>,
    keep: Option<usize>,
    migrate: Option<bool>,
    from: Option<String>,
    to: Option<String>,
    all_or_nothing: Option<bool>,
    hash: Option<String>,
    grace_ms: Option<u64>,
    /// `+` or `-`.
    op: Option<String>,
    cap: Option<String>,
}

fn need(v: Option<String>, what: &str) -> Result<String, ApiError> {
    v.filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_string())
        .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, format!("give {what}")))
}

/// `POST /api/action/{name}`.
pub async fn act(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(q): Query<ActionQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let host = headers.get(axum::http::header::HOST).and_then(|v| v.to_str().ok());
    s.access.check_action(host, header_token(&headers))?;
    let node = q.node.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| s.entry.clone());
    let info = || format!("dashboard upload {}", q.file.as_deref().unwrap_or("zip"));
    let zip = |body: &Bytes| {
        if body.is_empty() {
            Err(ApiError(StatusCode::BAD_REQUEST, "choose a zip to upload".into()))
        } else {
            Ok(body.to_vec())
        }
    };
    let request = match name.as_str() {
        "load" => Request::Load { zip: zip(&body)?, info: info() },
        "deploy" => Request::Deploy {
            zip: zip(&body)?,
            info: info(),
            group: need(q.group.clone(), "a group name")?,
            keep: q.keep.unwrap_or(1),
            grace_ms: q.grace_ms,
            migrate: q.migrate.unwrap_or(false).then(UpgradeOptions::default),
        },
        "upgrade" => return upgrade(&s, node, q).await,
        "rollback" => Request::Rollback { group: need(q.group.clone(), "a group name")? },
        "unload" => Request::Unload { hash: need(q.hash.clone(), "a hash")?, grace_ms: q.grace_ms },
        "chgcap" => {
            let add = match q.op.as_deref() {
                Some("+") => true,
                Some("-") => false,
                _ => return Err(ApiError(StatusCode::BAD_REQUEST, "op is + or -".into())),
            };
            Request::ChangeCapability { add, name: need(q.cap.clone(), "a capability")? }
        }
        other => return Err(ApiError(StatusCode::NOT_FOUND, format!("no action {other}"))),
    };
    tracing::info!(action = %name, %node, "dashboard action");
    let mut c = s.nodes.fresh(&node).await?;
    let answer = c.request(request).await;
    s.wake.notify_one();
    Ok(Json(describe(answer?)).into_response())
}

/// The node's answer as the page shows it.
fn describe(r: NodeResponse) -> serde_json::Value {
    match r {
        NodeResponse::Loaded { hash, already_active, revived } => {
            serde_json::json!({ "hash": hash, "already_active": already_active, "revived": revived })
        }
        NodeResponse::Unloaded { hash, live_actors, gone, .. } => {
            serde_json::json!({ "hash": hash, "live_actors": live_actors, "gone": gone })
        }
        NodeResponse::Group { group, info, previous, upgrade, .. } => serde_json::json!({
            "group": group, "active": info.active, "previous": previous,
            "moved": upgrade.as_ref().map(|u| u.moved()),
        }),
        NodeResponse::Capabilities { capabilities, stopped_actors } => {
            serde_json::json!({ "capabilities": capabilities, "stopped_actors": stopped_actors })
        }
        NodeResponse::Upgraded(r) => serde_json::json!({
            "from": r.from, "to": r.to, "moved": r.moved(), "stayed": r.stayed(),
            "failed": r.failed().count(), "rolled_back": r.rolled_back,
        }),
        other => serde_json::json!({ "answer": format!("{other:?}") }),
    }
}

/// An upgrade: the CLI's request, answered when the node's report comes. Meanwhile the
/// page's upgrade panel follows it as it does any upgrade (the nodes' `Observe` progress).
async fn upgrade(s: &AppState, node: String, q: ActionQuery) -> Result<Response, ApiError> {
    let from = need(q.from, "the version to upgrade from")?;
    let to = need(q.to, "the version to upgrade to")?;
    let options =
        UpgradeOptions { all_or_nothing: q.all_or_nothing.unwrap_or(false), ..UpgradeOptions::default() };
    tracing::info!(%from, %to, %node, "dashboard upgrade");
    let mut c = s.nodes.fresh(&node).await?;
    s.wake.notify_one();
    let answer = c.request(Request::Upgrade { from, to, options }).await;
    s.wake.notify_one();
    Ok(Json(describe(answer?)).into_response())
}
