//! The admin JSON API (`/admin/v1/...`): what every admin module shares (body and query
//! readers, timestamps), `whoami`, and the audit record of administrative changes that no domain
//! service audits itself (clients, signing keys, service accounts, API keys, roles).
//!
//! Every admin route needs an API key whose owner and scopes hold the route's permission
//! ([`crate::auth`]).

use axum::Json;
use axum::Router;
use axum::extract::Query;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::routing::get;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use trustgate_audit::{AuditKind, Event, Outcome, RequestContext};
use trustgate_core::Principal;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Routes under `/admin/v1`.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/v1/whoami", get(whoami))
}

/// The authenticated caller, so scripts can check their key: who, which key and its scopes.
/// Authentication only (no database read on a warm key); the owner's roles are at
/// `/admin/v1/roles?subject=`.
async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({
        "subject": caller.subject(),
        "name": caller.display_name,
        "kind": caller.kind,
        "key_id": caller.key_id(),
        "scopes": caller.key.as_ref().map(|k| &k.identity.scopes),
        "certificate": caller.certificate,
    }))
}

/// The JSON body of an admin request, or 400 `invalid_request`.
pub(crate) fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload
        .map(|Json(value)| value)
        .map_err(|e| ApiError::bad_request("invalid_request", e.body_text()))
}

/// The query of an admin request, or 400 `invalid_request`.
pub(crate) fn query<T>(params: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    params
        .map(|Query(value)| value)
        .map_err(|e| ApiError::bad_request("invalid_request", e.body_text()))
}

/// A time as the admin API shows it (RFC 3339).
pub(crate) fn timestamp(at: OffsetDateTime) -> Value {
    at.format(&Rfc3339).map_or(Value::Null, Value::from)
}

/// Audits a successful administrative change (`kind`, e.g. [`AuditKind::ClientCreated`]) by
/// `admin`, with the request context and non-secret `detail`. A failure to record it is an error
/// of the request (the trail must not silently miss a change).
pub(crate) async fn record_admin_event(
    state: &AppState,
    kind: AuditKind,
    admin: &Principal,
    ctx: &RequestContext,
    detail: Map<String, Value>,
) -> Result<(), ApiError> {
    let event = Event::new(kind, Outcome::Success)
        .actor(admin.subject())
        .details(detail);
    Ok(state.auditor.record(ctx, event).await?)
}
