//! The admin JSON API (`/admin/v1/...`), bootstrap/admin token required.

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::AdminPrincipal;

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
