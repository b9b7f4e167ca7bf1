//! The admin JSON API for human accounts: users and their sessions.
//!
//! | method and path | does |
//! |---|---|
//! | `POST /admin/v1/users` | create (`username`, `email`, `name?`, `locale?`, `attributes?`, `password?`) → 201 user |
//! | `GET /admin/v1/users?after=&limit=` | page of users by id → `{"users": [...], "next": id?}` |
//! | `GET /admin/v1/users/{id}` | one user (by id or username) |
//! | `PATCH /admin/v1/users/{id}` | profile change (`email`, `email_verified`, `name`, `locale`, `attributes`; `null` clears name/locale) |
//! | `DELETE /admin/v1/users/{id}` | delete with sessions and factors → 204 |
//! | `POST /admin/v1/users/{id}/disable`, `/enable` | status; disabling revokes every session at once |
//! | `POST /admin/v1/users/{id}/password` | set the password (`{"password": ...}`), revoking sessions → 204 |
//! | `GET /admin/v1/users/{id}/sessions` | live sessions, newest first |
//! | `POST /admin/v1/users/{id}/sessions/revoke` | revoke one (`{"session_id": ...}`) or all (`{}`) → `{"revoked": n}` |
//!
//! Every route needs an API key with the `user_admin` permission
//! ([`crate::auth::Authorized`]). The audit trail is [`crate::admin_audit`]. Errors carry the
//! [`AccountError`] codes: `conflict` (409), `not_found` (404), `invalid_input` and the
//! `password_*` policy codes (400), `busy` and `unavailable` (503). Responses never contain a
//! password hash, a session id or any other secret.

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use trustgate_audit::RequestContext;
use trustgate_authn::accounts::{AccountError, CreateUser, Session, User, UserStatus, UserUpdate};
use trustgate_core::Secret;

use crate::AppState;
use crate::admin::{body, query, timestamp};
use crate::auth::{Authorized, UserAdmin};
use crate::client_context::ClientContext;
use crate::error::ApiError;

/// Users per page when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 50;

/// Routes under `/admin/v1/users`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/users", post(create_user).get(list_users))
        .route(
            "/admin/v1/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/admin/v1/users/{id}/disable", post(disable_user))
        .route("/admin/v1/users/{id}/enable", post(enable_user))
        .route("/admin/v1/users/{id}/password", post(set_password))
        .route("/admin/v1/users/{id}/sessions", get(list_sessions))
        .route(
            "/admin/v1/users/{id}/sessions/revoke",
            post(revoke_sessions),
        )
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::Store(e) => ApiError::from(e),
            AccountError::Internal(detail) => ApiError::internal(detail),
            other => {
                let status = StatusCode::from_u16(other.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                ApiError::new(status, other.code(), other.to_string())
            }
        }
    }
}

/// A user as the API shows it (no password hash).
pub fn user_json(user: &User) -> Value {
    json!({
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        "locale": user.locale,
        "attributes": user.attributes,
        "status": user.status.as_str(),
        "created_at": timestamp(user.created_at),
        "updated_at": timestamp(user.updated_at),
    })
}

/// A session as the API shows it (its public id; the secret id is never stored).
pub fn session_json(session: &Session) -> Value {
    json!({
        "id": session.id,
        "user_id": session.user_id,
        "created_at": timestamp(session.created_at),
        "last_seen_at": timestamp(session.last_seen_at),
        "idle_expires_at": timestamp(session.idle_expires_at),
        "absolute_expires_at": timestamp(session.absolute_expires_at),
        "auth_time": timestamp(session.auth_time),
        "amr": session.amr,
        "acr": session.acr,
        "ip": session.ip,
        "user_agent": session.user_agent,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    username: String,
    email: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    locale: Option<String>,
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
    #[serde(default)]
    password: Option<Secret>,
}

async fn create_user(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<UserAdmin>,
    ClientContext(ctx): ClientContext,
    payload: Result<Json<CreateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = body(payload)?;
    let user = state
        .accounts
        .create_user(
            CreateUser {
                username: input.username,
                email: input.email,
                name: input.name,
                locale: input.locale,
                attributes: input.attributes.unwrap_or_default(),
                password: input.password,
            },
            &admin.subject(),
            &ctx,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user_json(&user))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<String>,
    limit: Option<u32>,
}

async fn list_users(
    State(state): State<AppState>,
    _caller: Authorized<UserAdmin>,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 {
        return Err(ApiError::bad_request(
            "invalid_input",
            "limit: must be between 1 and 1000",
        ));
    }
    let page = state
        .accounts
        .list_users(params.after.as_deref().filter(|a| !a.is_empty()), limit)
        .await?;
    Ok(Json(json!({
        "users": page.users.iter().map(user_json).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

async fn get_user(
    State(state): State<AppState>,
    _caller: Authorized<UserAdmin>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(user_json(&state.accounts.get_user(&id).await?)))
}

/// A JSON field that distinguishes absent (`None`) from `null` (`Some(None)`).
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    locale: Option<Option<String>>,
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
}

async fn update_user(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<UserAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
    payload: Result<Json<UpdateBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let input = body(payload)?;
    let update = UserUpdate {
        email: input.email,
        email_verified: input.email_verified,
        name: input.name,
        locale: input.locale,
        attributes: input.attributes,
    };
    let user = state
        .accounts
        .update_user(&id, update, &admin.subject(), &ctx)
        .await?;
    // AuthZEN conditions on this replica see the new profile at once.
    state.pdp.directory_changed(&user.id);
    Ok(Json(user_json(&user)))
}

async fn delete_user(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<UserAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // The path names the user by id or username; the directory cache is keyed by id.
    let user_id = state.accounts.get_user(&id).await?.id;
    state
        .accounts
        .delete_user(&user_id, &admin.subject(), &ctx)
        .await?;
    state.pdp.directory_changed(&user_id);
    state.api_keys.invalidate();
    state
        .access
        .forget(&format!("user:{user_id}"))
        .await
        .map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_status(
    state: &AppState,
    admin: &trustgate_core::Principal,
    ctx: &RequestContext,
    id: &str,
    status: UserStatus,
) -> Result<Json<Value>, ApiError> {
    let user = state
        .accounts
        .set_user_status(id, status, &admin.subject(), ctx)
        .await?;
    // A disabled user's directory attributes are withheld from this replica's next evaluation.
    state.pdp.directory_changed(&user.id);
    if status == UserStatus::Disabled {
        // Their personal access tokens stop here at once (elsewhere within an epoch poll).
        state.api_keys.invalidate();
        revoke_oauth_grants(state, id).await?;
    }
    Ok(Json(user_json(&user)))
}

/// Disabling a user or signing them out everywhere also ends what applications hold: their
/// refresh tokens die at once and their access tokens stop introspecting as active (the user's
/// token version moves).
async fn revoke_oauth_grants(state: &AppState, user_id: &str) -> Result<(), ApiError> {
    state
        .oauth
        .revoke_user(user_id)
        .await
        .map(drop)
        .map_err(|e| {
            if e.code == trustgate_oauth::ErrorCode::TemporarilyUnavailable {
                ApiError::unavailable(e.description)
            } else {
                ApiError::internal(e)
            }
        })
}

async fn disable_user(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<UserAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(&state, &admin, &ctx, &id, UserStatus::Disabled).await
}

async fn enable_user(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<UserAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(&state, &admin, &ctx, &id, UserStatus::Active).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: Secret,
}

async fn set_password(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<UserAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
    payload: Result<Json<PasswordBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let input = body(payload)?;
    state
        .accounts
        .admin_set_password(&id, input.password, &admin.subject(), &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_sessions(
    State(state): State<AppState>,
    _caller: Authorized<UserAdmin>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sessions = state.accounts.list_sessions(&id).await?;
    Ok(Json(json!({
        "sessions": sessions.iter().map(session_json).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    session_id: Option<String>,
}

async fn revoke_sessions(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<UserAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
    payload: Result<Json<RevokeBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    // No body (no JSON content type) means all sessions.
    let input = match payload {
        Err(JsonRejection::MissingJsonContentType(_)) => RevokeBody::default(),
        result => body(result)?,
    };
    let actor = admin.subject();
    let revoked = match input.session_id {
        Some(session_id) => {
            state
                .accounts
                .revoke_session(&id, &session_id, &actor, &ctx)
                .await?;
            1
        }
        None => {
            let revoked = state
                .accounts
                .revoke_all_sessions(&id, None, &actor, &ctx)
                .await?;
            revoke_oauth_grants(&state, &id).await?;
            revoked
        }
    };
    Ok(Json(json!({ "revoked": revoked })))
}
