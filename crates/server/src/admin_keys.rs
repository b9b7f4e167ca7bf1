//! The admin JSON API for signing keys.
//!
//! | method and path | does |
//! |---|---|
//! | `GET /admin/v1/keys` | every key with its state → `{"keys": [{kid, algorithm, state, created_at, activates_at, retires_at, expires_at}]}` |
//! | `POST /admin/v1/keys/rotate` | rotate one algorithm (`{"algorithm": "ES256"}`) or all (no body) → `{"keys": [new keys]}` |
//!
//! A rotated-in key is published in the JWKS at once and signs after
//! `oauth.key_publish_ahead_secs`; the key it replaces stops signing then and stays published
//! until every token it signed has expired. Rotations are audited (`signing_key_rotated`).
//! Private keys never leave the server.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use trustgate_tokens::{Algorithm, KeyError};

use crate::AppState;
use trustgate_audit::AuditKind;

use crate::admin::record_admin_event;
use crate::auth::{Authorized, SystemAdmin};
use crate::client_context::ClientContext;
use crate::error::ApiError;

/// Routes under `/admin/v1/keys`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/keys", get(list_keys))
        .route("/admin/v1/keys/rotate", post(rotate_keys))
}

impl From<KeyError> for ApiError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::Store(e) => ApiError::from(e),
            other => ApiError::internal(other),
        }
    }
}

async fn list_keys(State(state): State<AppState>, _caller: Authorized<SystemAdmin>) -> Json<Value> {
    Json(json!({ "keys": state.oauth.keys().list() }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    algorithm: Option<String>,
}

async fn rotate_keys(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    payload: Result<Json<RotateBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = match payload {
        Err(JsonRejection::MissingJsonContentType(_)) => RotateBody::default(),
        Ok(Json(body)) => body,
        Err(e) => return Err(ApiError::bad_request("invalid_request", e.body_text())),
    };
    let algorithm = match body.algorithm {
        None => None,
        Some(name) => Some(
            name.parse::<Algorithm>()
                .map_err(|e| ApiError::bad_request("invalid_algorithm", e.to_string()))?,
        ),
    };
    let created = state.oauth.keys().rotate(algorithm).await?;
    let mut detail = Map::new();
    detail.insert(
        "kids".into(),
        json!(created.iter().map(|k| k.kid.clone()).collect::<Vec<_>>()),
    );
    record_admin_event(&state, AuditKind::SigningKeyRotated, &admin, &ctx, detail).await?;
    Ok(Json(json!({ "keys": created })))
}
