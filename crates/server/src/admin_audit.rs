//! The admin JSON API of the audit trail.
//!
//! | method and path | does |
//! |---|---|
//! | `GET /admin/v1/audit?principal=&user_id=&resource=&outcome=&kind=&chain=&since=&until=&before=&limit=` | events newest first; `next` is the id to pass as `before` |
//! | `GET /admin/v1/audit?chain=C&after_seq=N&…` | events of chain C after position N, oldest first (follow the trail: `audit tail`, `audit export`); `next` is the last position |
//! | `GET /admin/v1/audit/verify?cursor=&budget=` | verifies the chains and their anchors for at most `budget` rows (default 20,000, at most 200,000) → problems, `done`, and the `cursor` to continue with |
//!
//! Every route needs an API key with the `auditor` permission ([`crate::auth::Authorized`]).
//! Times are RFC 3339. Bad parameters are 400 `invalid_input` / `invalid_request`.

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use trustgate_audit::ChainError;
use trustgate_authn::accounts::AuditFilter;
use trustgate_store_api::audit::hex;
use trustgate_store_api::{AuditChain, AuditRecord};

use crate::AppState;
use crate::admin::{query, timestamp};
use crate::auth::{Auditor, Authorized};
use crate::error::ApiError;

/// Events per page when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 50;
/// Rows verified per call when `budget` is not given.
pub const DEFAULT_VERIFY_BUDGET: u32 = 20_000;
/// Most rows verified per call.
pub const MAX_VERIFY_BUDGET: u32 = 200_000;

/// Routes under `/admin/v1/audit`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/audit", get(list_audit))
        .route("/admin/v1/audit/verify", get(verify_audit))
}

/// An audit event as the API shows it, with its place in its chain.
pub fn audit_json(record: &AuditRecord) -> Value {
    let event = &record.event;
    json!({
        "id": event.id,
        "at": timestamp(event.at),
        "chain": event.chain.as_str(),
        "seq": record.seq,
        "kind": event.kind,
        "outcome": event.outcome,
        "actor": event.actor,
        "user_id": event.user_id,
        "resource": event.resource,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "detail": event.detail,
        "prev_hash": record.prev_hash.map(|h| hex(&h)),
        "hash": record.hash.map(|h| hex(&h)),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    principal: Option<String>,
    user_id: Option<String>,
    resource: Option<String>,
    outcome: Option<String>,
    kind: Option<String>,
    chain: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    after_seq: Option<i64>,
    limit: Option<u32>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_input", message)
}

fn instant(name: &str, value: Option<String>) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            OffsetDateTime::parse(&v, &Rfc3339)
                .map_err(|_| invalid(format!("{name}: expected an RFC 3339 time")))
        })
        .transpose()
}

async fn list_audit(
    State(state): State<AppState>,
    _caller: Authorized<Auditor>,
    params: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=1000).contains(&limit) {
        return Err(invalid("limit: must be between 1 and 1000"));
    }
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let chain = non_empty(params.chain)
        .map(|c| {
            AuditChain::parse(&c).ok_or_else(|| invalid("chain: must be recorded or streamed"))
        })
        .transpose()?;
    let filter = AuditFilter {
        user_id: non_empty(params.user_id),
        kind: non_empty(params.kind),
        actor: non_empty(params.principal),
        resource: non_empty(params.resource),
        outcome: non_empty(params.outcome),
        chain,
        since: instant("since", params.since)?,
        until: instant("until", params.until)?,
        before: non_empty(params.before),
        after_seq: params.after_seq,
    };
    let records = state.accounts.audit(&filter, limit).await?;
    let full = records.len() == limit as usize;
    let next = match filter.after_seq {
        // Following a chain: the last position, also on a short page (the tail goes on).
        Some(after) => Some(Value::from(
            records.last().and_then(|r| r.seq).unwrap_or(after),
        )),
        None => full
            .then(|| records.last().map(|r| Value::from(r.event.id.clone())))
            .flatten(),
    };
    Ok(Json(json!({
        "events": records.iter().map(audit_json).collect::<Vec<_>>(),
        "next": next,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyQuery {
    cursor: Option<String>,
    budget: Option<u32>,
}

async fn verify_audit(
    State(state): State<AppState>,
    _caller: Authorized<Auditor>,
    params: Result<Query<VerifyQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let budget = params.budget.unwrap_or(DEFAULT_VERIFY_BUDGET);
    if !(1..=MAX_VERIFY_BUDGET).contains(&budget) {
        return Err(invalid(format!(
            "budget: must be between 1 and {MAX_VERIFY_BUDGET}"
        )));
    }
    let cursor = params.cursor.filter(|c| !c.is_empty());
    let page = state
        .chains
        .verify(cursor.as_deref(), budget)
        .await
        .map_err(|e| match e {
            ChainError::Store(e) => ApiError::from(e),
            ChainError::InvalidCursor => invalid("cursor: not one this server issued"),
            ChainError::Keys(e) => ApiError::internal(e.to_string()),
        })?;
    Ok(Json(serde_json::to_value(&page).map_err(|e| {
        ApiError::internal(format!("verification report: {e}"))
    })?))
}
