//! The admin JSON API (`/admin/v1/...`), bootstrap/admin token required, and the audit record
//! of administrative changes that no domain service audits itself (clients, signing keys).

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::{Map, Value, json};
use trustgate_audit::{AuditKind, Event, Outcome, RequestContext};
use trustgate_core::Principal;

use crate::AppState;
use crate::auth::AdminPrincipal;
use crate::error::ApiError;

/// Routes under `/admin/v1`.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/v1/whoami", get(whoami))
}

/// The authenticated caller, so scripts can check their token.
async fn whoami(AdminPrincipal(principal): AdminPrincipal) -> Json<Value> {
    Json(json!({
        "subject": principal.subject(),
        "name": principal.display_name,
        "kind": principal.kind,
    }))
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
