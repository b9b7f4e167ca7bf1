//! The admin JSON API (`/admin/v1/...`), bootstrap/admin token required, and the audit record
//! of administrative changes that no domain service audits itself (clients, signing keys).

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::{Map, Value, json};
use trustgate_authn::accounts::RequestContext;
use trustgate_core::Principal;
use trustgate_core::id::new_ulid;
use trustgate_store_api::AuditEvent;

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

/// Appends a successful administrative change to the audit trail: `kind` (e.g.
/// `client_created`), the acting admin, the request context and non-secret `detail`. A failure
/// to append is an error of the request (the trail must not silently miss a change).
pub(crate) async fn record_admin_event(
    state: &AppState,
    kind: &'static str,
    admin: &Principal,
    ctx: &RequestContext,
    detail: Map<String, Value>,
) -> Result<(), ApiError> {
    let at = state.clock.now();
    let event = AuditEvent {
        id: new_ulid(at),
        at,
        kind: kind.to_owned(),
        outcome: "success".to_owned(),
        actor: Some(admin.subject()),
        user_id: None,
        ip: ctx.ip.map(|ip| ip.to_string()),
        user_agent: ctx.user_agent.clone(),
        request_id: ctx.request_id.clone(),
        detail,
    };
    state.store.append_audit(&event).await.map_err(|e| {
        tracing::error!(error = %e, kind, "cannot append audit event");
        ApiError::from(e)
    })
}
