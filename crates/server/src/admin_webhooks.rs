//! The admin JSON API for webhooks: subscriptions to the audit trail and the dead-letter list of
//! the delivery outbox (webhooks and back-channel logout tokens). Every route needs the `admin`
//! permission; every change is audited.
//!
//! | method and path | does |
//! |---|---|
//! | `POST /admin/v1/webhooks` | `{url, kinds?, description?}` → 201 `{"secret": "whsec_…", "webhook": {...}}`, the secret shown this once |
//! | `GET /admin/v1/webhooks` | `{"webhooks": [...]}` (never a secret) |
//! | `GET /admin/v1/webhooks/{id}` | one subscription |
//! | `DELETE /admin/v1/webhooks/{id}` | 204; its queued deliveries go with it |
//! | `POST /admin/v1/webhooks/{id}/rotate` | `{overlap_secs}` → 201 `{"secret", "webhook"}`; the old secret still signs for `overlap_secs` |
//! | `GET /admin/v1/webhooks/dead-letters?after=&limit=` | `{"deliveries": [...], "next"}` (payloads are not shown) |
//! | `POST /admin/v1/webhooks/dead-letters/{id}/redeliver` | queues it again, attempts reset → the delivery |
//!
//! `url` must be `https://` (or `http://` to a loopback host unless `webhooks.allow_http`), never
//! a link-local or metadata address (400 with a `webhook_url_*` code); `kinds` are audit kinds
//! (400 `unknown_event_kind`), none for every kind.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use trustgate_audit::AuditKind;
use trustgate_store_api::{Delivery, DeliveryState, Subscription};
use trustgate_webhooks::{Issued, SubscriptionSpec, WebhookError};

use crate::AppState;
use crate::admin::{body, query, record_admin_event, timestamp};
use crate::auth::{Authorized, SystemAdmin};
use crate::client_context::ClientContext;
use crate::error::ApiError;

/// The longest rotation overlap accepted: thirty days.
const MAX_OVERLAP_SECS: u64 = 30 * 24 * 3600;
/// Dead letters per page when `limit` is not given.
const DEFAULT_PAGE: u32 = 50;

/// Routes for webhooks.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/webhooks", post(create).get(list))
        .route("/admin/v1/webhooks/dead-letters", get(dead_letters))
        .route(
            "/admin/v1/webhooks/dead-letters/{id}/redeliver",
            post(redeliver),
        )
        .route("/admin/v1/webhooks/{id}", get(get_one).delete(delete))
        .route("/admin/v1/webhooks/{id}/rotate", post(rotate))
}

fn not_found() -> ApiError {
    ApiError::not_found("webhook_not_found", "no such webhook")
}

fn webhook_error(e: WebhookError) -> ApiError {
    match e {
        WebhookError::Target(target) => ApiError::bad_request(target.code(), target.to_string()),
        WebhookError::UnknownKind(kind) => {
            ApiError::bad_request("unknown_event_kind", format!("unknown event kind {kind}"))
        }
        WebhookError::Store(store) => store.into(),
    }
}

/// A subscription as the API shows it: never its secrets, only how many sign and until when.
pub fn webhook_json(state: &AppState, subscription: &Subscription) -> Value {
    let now = state.clock.now();
    json!({
        "id": subscription.id,
        "url": subscription.url,
        "kinds": subscription.kinds,
        "description": subscription.description,
        "enabled": subscription.enabled,
        "created_at": timestamp(subscription.created_at),
        "secrets": subscription
            .signing_secrets(now)
            .map(|s| json!({
                "created_at": timestamp(s.created_at),
                "expires_at": s.expires_at.map(timestamp),
            }))
            .collect::<Vec<_>>(),
    })
}

/// A delivery as the API shows it; the payload stays in the outbox (a logout token is a
/// credential).
pub fn delivery_json(delivery: &Delivery) -> Value {
    json!({
        "id": delivery.id,
        "kind": delivery.kind.as_str(),
        "webhook": delivery.subscription_id,
        "target": delivery.target,
        "url": delivery.url,
        "state": delivery.state.as_str(),
        "attempts": delivery.attempts,
        "next_attempt_at": timestamp(delivery.next_attempt_at),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": timestamp(delivery.created_at),
    })
}

fn issued_json(state: &AppState, issued: &Issued) -> Value {
    json!({
        "secret": issued.secret.to_text(),
        "webhook": webhook_json(state, &issued.subscription),
    })
}

fn detail(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    payload: Result<Json<CreateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = body(payload)?;
    let description = input.description.unwrap_or_default();
    if description.chars().count() > 1024 || description.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_input",
            "description: at most 1024 characters, no control characters",
        ));
    }
    let mut kinds = input.kinds;
    kinds.sort();
    kinds.dedup();
    let issued = state
        .webhooks
        .create(&SubscriptionSpec {
            url: input.url,
            kinds,
            description,
        })
        .await
        .map_err(webhook_error)?;
    record_admin_event(
        &state,
        AuditKind::WebhookCreated,
        &admin,
        &ctx,
        detail(&[
            ("webhook", json!(issued.subscription.id)),
            ("url", json!(issued.subscription.url)),
            ("kinds", json!(issued.subscription.kinds)),
        ]),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(issued_json(&state, &issued))))
}

async fn list(
    State(state): State<AppState>,
    _admin: Authorized<SystemAdmin>,
) -> Result<Json<Value>, ApiError> {
    let all = state.store.list_subscriptions().await?;
    Ok(Json(json!({
        "webhooks": all.iter().map(|s| webhook_json(&state, s)).collect::<Vec<_>>(),
    })))
}

async fn get_one(
    State(state): State<AppState>,
    _admin: Authorized<SystemAdmin>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let subscription = state
        .store
        .get_subscription(&id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(webhook_json(&state, &subscription)))
}

async fn delete(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.webhooks.delete(&id).await.map_err(webhook_error)? {
        return Err(not_found());
    }
    record_admin_event(
        &state,
        AuditKind::WebhookDeleted,
        &admin,
        &ctx,
        detail(&[("webhook", json!(id))]),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    overlap_secs: u64,
}

async fn rotate(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
    payload: Result<Json<RotateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = body(payload)?;
    if input.overlap_secs > MAX_OVERLAP_SECS {
        return Err(ApiError::bad_request(
            "invalid_input",
            "overlap_secs: at most 30 days",
        ));
    }
    let issued = state
        .webhooks
        .rotate(&id, Duration::from_secs(input.overlap_secs))
        .await
        .map_err(webhook_error)?
        .ok_or_else(not_found)?;
    record_admin_event(
        &state,
        AuditKind::WebhookSecretRotated,
        &admin,
        &ctx,
        detail(&[
            ("webhook", json!(id)),
            ("overlap_secs", json!(input.overlap_secs)),
        ]),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(issued_json(&state, &issued))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    after: Option<String>,
    limit: Option<u32>,
}

async fn dead_letters(
    State(state): State<AppState>,
    _admin: Authorized<SystemAdmin>,
    params: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_input",
            "limit: must be between 1 and 100",
        ));
    }
    let page = state
        .store
        .list_deliveries(
            DeliveryState::Dead,
            params.after.as_deref().filter(|a| !a.is_empty()),
            limit,
        )
        .await?;
    Ok(Json(json!({
        "deliveries": page.deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

async fn redeliver(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let delivery = state
        .store
        .redeliver(&id, state.clock.now())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "dead_letter_not_found",
                "no dead-lettered delivery with that id",
            )
        })?;
    record_admin_event(
        &state,
        AuditKind::WebhookRedelivered,
        &admin,
        &ctx,
        detail(&[
            ("delivery", json!(delivery.id)),
            ("kind", json!(delivery.kind.as_str())),
            ("target", json!(delivery.target)),
        ]),
    )
    .await?;
    Ok(Json(delivery_json(&delivery)))
}
