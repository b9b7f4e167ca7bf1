//! The admin JSON API for registered OAuth clients.
//!
//! | method and path | does |
//! |---|---|
//! | `POST /admin/v1/clients` | register (a [`ClientRegistration`]) → 201 client, plus `client_secret` once for `client_secret_*` methods |
//! | `GET /admin/v1/clients?after=&limit=` | page of clients by id → `{"clients": [...], "next": id?}` |
//! | `GET /admin/v1/clients/{id}` | one client |
//! | `PUT /admin/v1/clients/{id}` | replace the registration (a full [`ClientRegistration`]) → client, plus `client_secret` once if switching to a secret method issued one |
//! | `DELETE /admin/v1/clients/{id}` | delete with everything issued to it → 204 |
//! | `POST /admin/v1/clients/{id}/secret` | rotate the secret → `{"client_id", "client_secret"}` (shown once; the old one stops working at once) |
//!
//! Every route needs an API key with the `client_admin` permission ([`crate::auth::Authorized`]). A client is shown with
//! `client_id`, its registration (lifetimes in seconds) and `has_secret`; never a secret or its
//! digest except the one `client_secret` of a create, switch or rotation. Errors: a body that
//! does not parse (unknown field, wrong type, unknown grant type or method) is 400
//! `invalid_request`; a registration that breaks a rule is 400 with the field's code
//! (`invalid_redirect_uri`, `invalid_grant_types`, `invalid_scope`, `invalid_jwks`, ...); an
//! unknown id is 404 `not_found`; rotating the secret of a client whose method uses none is 409
//! `client_has_no_secret`. Every change is audited (`client_created`, `client_updated`,
//! `client_deleted`, `client_secret_rotated`) with the client id, never the secret.

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use trustgate_core::Secret;
use trustgate_oauth::clients::{Client, ClientError, ClientRegistration, MAX_PAGE};

use crate::AppState;
use trustgate_audit::AuditKind;

use crate::admin::{body, record_admin_event};
use crate::auth::{Authorized, ClientAdmin};
use crate::client_context::ClientContext;
use crate::error::ApiError;

/// Clients per page when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 50;

/// Routes under `/admin/v1/clients`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/clients", post(create_client).get(list_clients))
        .route(
            "/admin/v1/clients/{id}",
            get(get_client).put(update_client).delete(delete_client),
        )
        .route("/admin/v1/clients/{id}/secret", post(rotate_secret))
}

impl From<ClientError> for ApiError {
    fn from(err: ClientError) -> Self {
        match err {
            ClientError::Store(e) => ApiError::from(e),
            ClientError::Corrupt { .. } => ApiError::internal(err),
            other => {
                let status = StatusCode::from_u16(other.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                ApiError::new(status, other.code(), other.to_string())
            }
        }
    }
}

fn not_found() -> ApiError {
    ApiError::from(ClientError::NotFound)
}

/// A client as the API shows it, with `client_secret` added when one was just issued.
pub fn client_json(client: &Client, secret: Option<&Secret>) -> Value {
    let mut value = serde_json::to_value(client).unwrap_or(Value::Null);
    if let (Some(secret), Some(object)) = (secret, value.as_object_mut()) {
        object.insert("client_secret".into(), Value::from(secret.expose()));
    }
    value
}

/// Non-secret audit detail about a client.
fn detail(client: &Client) -> Map<String, Value> {
    let mut detail = Map::new();
    detail.insert("client_id".into(), Value::from(client.id.as_str()));
    detail.insert("name".into(), Value::from(client.name.as_str()));
    detail.insert(
        "auth_method".into(),
        Value::from(client.auth_method.as_str()),
    );
    detail
}

async fn create_client(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<ClientAdmin>,
    ClientContext(ctx): ClientContext,
    payload: Result<Json<ClientRegistration>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let registration = body(payload)?;
    let (client, secret) = state.clients.create(registration).await?;
    record_admin_event(
        &state,
        AuditKind::ClientCreated,
        &admin,
        &ctx,
        detail(&client),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(client_json(&client, secret.as_ref())),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<String>,
    limit: Option<u32>,
}

async fn list_clients(
    State(state): State<AppState>,
    _caller: Authorized<ClientAdmin>,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = params
        .map(|Query(value)| value)
        .map_err(|e| ApiError::bad_request("invalid_request", e.body_text()))?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("limit: must be between 1 and {MAX_PAGE}"),
        ));
    }
    let (clients, next) = state
        .clients
        .list(params.after.as_deref().filter(|a| !a.is_empty()), limit)
        .await?;
    Ok(Json(json!({
        "clients": clients.iter().map(|c| client_json(c, None)).collect::<Vec<_>>(),
        "next": next,
    })))
}

async fn get_client(
    State(state): State<AppState>,
    _caller: Authorized<ClientAdmin>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let client = state.clients.get(&id).await?.ok_or_else(not_found)?;
    Ok(Json(client_json(&client, None)))
}

async fn update_client(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<ClientAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
    payload: Result<Json<ClientRegistration>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let registration = body(payload)?;
    let (client, secret) = state.clients.update(&id, registration).await?;
    let mut detail = detail(&client);
    detail.insert("secret_issued".into(), Value::Bool(secret.is_some()));
    detail.insert("has_secret".into(), Value::Bool(client.has_secret));
    record_admin_event(&state, AuditKind::ClientUpdated, &admin, &ctx, detail).await?;
    Ok(Json(client_json(&client, secret.as_ref())))
}

async fn delete_client(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<ClientAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.clients.delete(&id).await? {
        return Err(not_found());
    }
    let mut detail = Map::new();
    detail.insert("client_id".into(), Value::from(id));
    record_admin_event(&state, AuditKind::ClientDeleted, &admin, &ctx, detail).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_secret(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<ClientAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let secret = state.clients.rotate_secret(&id).await?;
    let mut detail = Map::new();
    detail.insert("client_id".into(), Value::from(id.as_str()));
    record_admin_event(&state, AuditKind::ClientSecretRotated, &admin, &ctx, detail).await?;
    Ok(Json(json!({
        "client_id": id,
        "client_secret": secret.expose(),
    })))
}
