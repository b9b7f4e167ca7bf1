//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the database answers and
//! its migrations are current; 503 otherwise, recovering on its own when the database returns),
//! `/metrics` (Prometheus text).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde_json::json;

use crate::AppState;

/// Liveness: the process is up and serving.
pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// Readiness: the database is reachable and migrated.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.health().await {
        Ok(health) if health.migrations_current() => (
            StatusCode::OK,
            Json(json!({
                "status": "ready",
                "database": state.store.backend().to_string(),
                "migration": health.applied_version,
            })),
        )
            .into_response(),
        Ok(health) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "reason": "migrations_pending",
                "applied": health.applied_version,
                "expected": health.expected_version,
            })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "not_ready", "reason": "database_unavailable" })),
            )
                .into_response()
        }
    }
}

/// Prometheus metrics.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}
