//! The admin JSON API for machine identities: service accounts, API keys and roles. Every route
//! needs the `admin` permission.
//!
//! | method and path | does |
//! |---|---|
//! | `POST /admin/v1/service-accounts` | `{name, owner?, description?}` → 201 the account |
//! | `GET /admin/v1/service-accounts?after=&limit=` | `{"service_accounts": [...], "next"}` |
//! | `GET /admin/v1/service-accounts/{id}` | the account with its `roles` |
//! | `POST /admin/v1/service-accounts/{id}/disable`, `/enable` | its keys stop (start) at once |
//! | `DELETE /admin/v1/service-accounts/{id}` | 204; its keys, certificate names and roles go with it |
//! | `GET /admin/v1/service-accounts/{id}/certificates` | `{"certificates": [{kind, name, created_at}]}` |
//! | `POST /admin/v1/service-accounts/{id}/certificates` | `{spiffe_id}` or `{subject_dn}` (RFC 4514, as `openssl x509 -noout -subject -nameopt RFC2253` prints it) → 201 (200 if bound already); a client certificate naming it on the mutual-TLS listener is this account; 409 `certificate_name_taken` if another account has it |
//! | `DELETE /admin/v1/service-accounts/{id}/certificates?spiffe_id=` or `?subject_dn=` | 204 |
//! | `POST /admin/v1/service-accounts/{id}/api-keys` | `{scopes, description?, expires_in_secs?, rate_limit_per_minute?}` → 201 `{"key": "tg_…", "api_key": {...}}`, the key shown this once |
//! | `GET /admin/v1/api-keys?service=&user=` | `{"api_keys": [...]}` (never a secret) |
//! | `GET /admin/v1/api-keys/{id}` | one key |
//! | `POST /admin/v1/api-keys/{id}/rotate` | `{overlap_secs, expires_in_secs?}` → 201 `{"key", "api_key", "previous"}` |
//! | `DELETE /admin/v1/api-keys/{id}` | revokes at once (other replicas within `api_keys.revocation_poll_ms`) → the key |
//! | `GET /admin/v1/roles?subject=service:<id>` | `{"roles": [...]}` granted directly |
//! | `POST /admin/v1/roles` / `POST /admin/v1/roles/revoke` | `{subject, role}` → the subject's roles |
//!
//! Scopes and roles are spelled `admin`, `user_admin`, `client_admin`, `auditor` or
//! `store:<store id>:store_admin|writer|reader`. A key's scopes may not exceed what its owner
//! holds when it is issued (400 `scope_exceeds_owner`), and a key is only ever allowed what its
//! owner still holds. Every change is audited.

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
use trustgate_authn::api_keys::{IssuedKey, KeySpec};
use trustgate_core::id::new_ulid;
use trustgate_pdp::system::{Asker, KeyScopes, MAX_SCOPES, Role, parse_key_scopes};
use trustgate_store_api::{
    ApiKey, CertificateNameKind, Conflict, KeyOwner, MAX_CERTIFICATE_NAME_BYTES, NewServiceAccount,
    ServiceAccount, StoreError,
};

use crate::AppState;
use crate::admin::{body, query, record_admin_event, timestamp};
use crate::auth::{Authorized, SystemAdmin};
use crate::client_context::ClientContext;
use crate::error::ApiError;

/// Accounts per page when `limit` is not given.
const DEFAULT_PAGE: u32 = 50;
/// The longest key lifetime and rotation overlap accepted: ten years.
const MAX_SECS: u64 = 10 * 366 * 24 * 3600;

/// Routes for service accounts, API keys and roles.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/v1/service-accounts",
            post(create_account).get(list_accounts),
        )
        .route(
            "/admin/v1/service-accounts/{id}",
            get(get_account).delete(delete_account),
        )
        .route(
            "/admin/v1/service-accounts/{id}/disable",
            post(disable_account),
        )
        .route(
            "/admin/v1/service-accounts/{id}/enable",
            post(enable_account),
        )
        .route("/admin/v1/service-accounts/{id}/api-keys", post(create_key))
        .route(
            "/admin/v1/service-accounts/{id}/certificates",
            get(list_certificates)
                .post(bind_certificate)
                .delete(unbind_certificate),
        )
        .route("/admin/v1/api-keys", get(list_keys))
        .route("/admin/v1/api-keys/{id}", get(get_key).delete(revoke_key))
        .route("/admin/v1/api-keys/{id}/rotate", post(rotate_key))
        .route("/admin/v1/roles", get(list_roles).post(grant_role))
        .route("/admin/v1/roles/revoke", post(revoke_role))
}

fn account_not_found() -> ApiError {
    ApiError::not_found("service_account_not_found", "no such service account")
}

fn key_not_found() -> ApiError {
    ApiError::not_found("api_key_not_found", "no such API key")
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_input", message)
}

/// A service account as the API shows it.
pub fn account_json(account: &ServiceAccount) -> Value {
    json!({
        "id": account.id,
        "name": account.name,
        "owner": account.owner,
        "description": account.description,
        "status": if account.disabled_at.is_some() { "disabled" } else { "active" },
        "created_at": timestamp(account.created_at),
        "disabled_at": account.disabled_at.map(timestamp),
    })
}

/// An API key as the API shows it: never its secret, only its greppable prefix.
pub fn key_json(state: &AppState, key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "prefix": format!("tg_{}_{}", state.config.api_keys.environment, key.id),
        "owner": { "kind": key.owner.kind(), "id": key.owner.id() },
        "description": key.description,
        "scopes": key.scopes,
        "rate_limit_per_minute": key.rate_limit_per_minute,
        "created_at": timestamp(key.created_at),
        "expires_at": key.expires_at.map(timestamp),
        "revoked_at": key.revoked_at.map(timestamp),
        "rotated_from": key.rotated_from,
        "last_used_at": key.last_used_at.map(timestamp),
        "last_used_ip": key.last_used_ip,
    })
}

fn issued_json(state: &AppState, issued: &IssuedKey) -> Value {
    json!({
        "key": issued.key.expose(),
        "api_key": key_json(state, &issued.record),
    })
}

fn detail(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn pdp_error(e: trustgate_pdp::PdpError) -> ApiError {
    ApiError::from(e)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAccountBody {
    name: String,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field}: at most {max} characters, no control characters"
        )));
    }
    Ok(())
}

async fn create_account(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    payload: Result<Json<CreateAccountBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = body(payload)?;
    let name = input.name.trim();
    if name.is_empty()
        || name.chars().count() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            "name: 1 to 64 characters of letters, digits, '-', '_' and '.'",
        ));
    }
    let owner = input
        .owner
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty());
    check_text("owner", owner.unwrap_or_default(), 256)?;
    let description = input.description.unwrap_or_default();
    check_text("description", &description, 1024)?;
    let now = state.clock.now();
    let id = new_ulid(now);
    let account = state
        .store
        .create_service_account(
            &NewServiceAccount {
                id: &id,
                name,
                owner,
                description: &description,
            },
            now,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(Conflict::ServiceNameTaken) => ApiError::new(
                StatusCode::CONFLICT,
                "service_account_exists",
                "a service account of that name exists",
            ),
            other => other.into(),
        })?;
    record_admin_event(
        &state,
        AuditKind::ServiceAccountCreated,
        &admin,
        &ctx,
        detail(&[
            ("service_account", json!(account.id)),
            ("name", json!(account.name)),
        ]),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(account_json(&account))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<String>,
    limit: Option<u32>,
}

async fn list_accounts(
    State(state): State<AppState>,
    _admin: Authorized<SystemAdmin>,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=100).contains(&limit) {
        return Err(invalid("limit: must be between 1 and 100"));
    }
    let page = state
        .store
        .list_service_accounts(params.after.as_deref().filter(|a| !a.is_empty()), limit)
        .await?;
    Ok(Json(json!({
        "service_accounts": page.accounts.iter().map(account_json).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

async fn account(state: &AppState, id: &str) -> Result<ServiceAccount, ApiError> {
    state
        .store
        .get_service_account(id)
        .await?
        .ok_or_else(account_not_found)
}

async fn get_account(
    State(state): State<AppState>,
    _admin: Authorized<SystemAdmin>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let account = account(&state, &id).await?;
    let roles = state
        .access
        .roles_of(&format!("service:{}", account.id))
        .await
        .map_err(pdp_error)?;
    let mut shown = account_json(&account);
    shown["roles"] = json!(roles.iter().map(ToString::to_string).collect::<Vec<_>>());
    Ok(Json(shown))
}

async fn set_disabled(
    state: &AppState,
    admin: &trustgate_core::Principal,
    ctx: &trustgate_audit::RequestContext,
    id: &str,
    disabled: bool,
) -> Result<Json<Value>, ApiError> {
    if disabled && admin.id == id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot_disable_self",
            "a service account cannot disable itself",
        ));
    }
    let account = state
        .store
        .set_service_account_disabled(id, disabled, state.clock.now())
        .await?
        .ok_or_else(account_not_found)?;
    state.api_keys.invalidate();
    let kind = if disabled {
        AuditKind::ServiceAccountDisabled
    } else {
        AuditKind::ServiceAccountEnabled
    };
    record_admin_event(
        state,
        kind,
        admin,
        ctx,
        detail(&[("service_account", json!(account.id))]),
    )
    .await?;
    Ok(Json(account_json(&account)))
}

async fn disable_account(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(&state, &admin, &ctx, &id, true).await
}

async fn enable_account(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(&state, &admin, &ctx, &id, false).await
}

async fn delete_account(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if admin.id == id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot_delete_self",
            "a service account cannot delete itself",
        ));
    }
    if !state.store.delete_service_account(&id).await? {
        return Err(account_not_found());
    }
    state.api_keys.invalidate();
    state
        .access
        .forget(&format!("service:{id}"))
        .await
        .map_err(pdp_error)?;
    record_admin_event(
        &state,
        AuditKind::ServiceAccountDeleted,
        &admin,
        &ctx,
        detail(&[("service_account", json!(id))]),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A certificate name in a body or a query: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateName {
    #[serde(default)]
    spiffe_id: Option<String>,
    #[serde(default)]
    subject_dn: Option<String>,
}

impl CertificateName {
    fn checked(self) -> Result<(CertificateNameKind, String), ApiError> {
        let invalid = |message: &str| ApiError::bad_request("invalid_certificate_name", message);
        match (self.spiffe_id, self.subject_dn) {
            (Some(id), None) if trustgate_authn::certificates::is_spiffe_id(&id) => {
                Ok((CertificateNameKind::SpiffeId, id))
            }
            (Some(_), None) => Err(invalid(
                "spiffe_id must be a SPIFFE ID: spiffe://<trust domain>/<path>, lower-case trust \
                 domain, no port, query or fragment",
            )),
            (None, Some(dn))
                if !dn.trim().is_empty()
                    && dn.len() <= MAX_CERTIFICATE_NAME_BYTES
                    && !dn.contains('\0') =>
            {
                Ok((CertificateNameKind::SubjectDn, dn))
            }
            (None, Some(_)) => Err(invalid(
                "subject_dn must be an RFC 4514 distinguished name of at most 2048 bytes",
            )),
            _ => Err(invalid("give exactly one of spiffe_id and subject_dn")),
        }
    }
}

/// The audit detail of a certificate name's binding.
fn certificate_detail(
    account_id: &str,
    kind: CertificateNameKind,
    name: &str,
) -> Map<String, Value> {
    detail(&[
        ("service_account", json!(account_id)),
        ("kind", json!(kind.as_str())),
        ("name", json!(name)),
    ])
}

async fn list_certificates(
    State(state): State<AppState>,
    _admin: Authorized<SystemAdmin>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let account = account(&state, &id).await?;
    let bound = state.store.certificate_bindings(&account.id).await?;
    Ok(Json(json!({
        "certificates": bound
            .iter()
            .map(|b| json!({
                "kind": b.kind.as_str(),
                "name": b.name,
                "created_at": timestamp(b.created_at),
            }))
            .collect::<Vec<_>>(),
    })))
}

async fn bind_certificate(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
    payload: Result<Json<CertificateName>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (kind, name) = body(payload)?.checked()?;
    let bound = match state
        .store
        .bind_certificate(&id, kind, &name, state.clock.now())
        .await
    {
        Ok(bound) => bound,
        Err(StoreError::NotFound(_)) => return Err(account_not_found()),
        Err(StoreError::Conflict(Conflict::CertificateNameTaken)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "certificate_name_taken",
                "another service account has this certificate name",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if bound {
        record_admin_event(
            &state,
            AuditKind::CertificateBound,
            &admin,
            &ctx,
            certificate_detail(&id, kind, &name),
        )
        .await?;
    }
    let status = if bound {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "kind": kind.as_str(), "name": name, "service_account": id })),
    ))
}

async fn unbind_certificate(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
    params: Result<Query<CertificateName>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let (kind, name) = query(params)?.checked()?;
    if !state.store.unbind_certificate(&id, kind, &name).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the certificate name is not bound to this service account",
        ));
    }
    record_admin_event(
        &state,
        AuditKind::CertificateUnbound,
        &admin,
        &ctx,
        certificate_detail(&id, kind, &name),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyBody {
    scopes: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    expires_in_secs: Option<u64>,
    #[serde(default)]
    rate_limit_per_minute: Option<u32>,
}

/// Validates a key's scopes: well-formed, and each role held by the owner `subject` now
/// (application scopes are labels for the services the key is presented to: they grant nothing
/// here, so an owner needs nothing to carry them).
pub async fn owner_scopes(
    state: &AppState,
    subject: &str,
    scopes: &[String],
) -> Result<Vec<String>, ApiError> {
    let KeyScopes { roles, application } = parse_key_scopes(scopes).map_err(|e| {
        invalid(format!(
            "scopes: 1 to {MAX_SCOPES} of admin, user_admin, client_admin, auditor, store:<store id>:store_admin|writer|reader, or application scopes (RFC 6749 scope-tokens not starting with store:) ({e})"
        ))
    })?;
    for role in &roles {
        let held = state
            .access
            .allows(Asker { subject, key: None }, role)
            .await
            .map_err(pdp_error)?;
        if !held {
            return Err(ApiError::bad_request(
                "scope_exceeds_owner",
                format!("the key's owner does not hold {role}; a key cannot exceed its owner"),
            ));
        }
    }
    Ok(roles
        .iter()
        .map(ToString::to_string)
        .chain(application)
        .collect())
}

/// `expires_in_secs` as an expiry time (1 second to 10 years).
pub fn expiry(
    state: &AppState,
    expires_in_secs: Option<u64>,
) -> Result<Option<time::OffsetDateTime>, ApiError> {
    let Some(secs) = expires_in_secs else {
        return Ok(None);
    };
    if !(1..=MAX_SECS).contains(&secs) {
        return Err(invalid("expires_in_secs: between 1 and 10 years"));
    }
    Ok(Some(
        state.clock.now() + time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)),
    ))
}

/// Issues a key for `owner` (subject `owner_subject`) after checking the request.
pub async fn issue_key(
    state: &AppState,
    owner: &KeyOwner,
    scopes: &[String],
    description: Option<String>,
    expires_in_secs: Option<u64>,
    rate_limit_per_minute: Option<u32>,
) -> Result<IssuedKey, ApiError> {
    let owner_subject = format!("{}:{}", owner.kind(), owner.id());
    let scopes = owner_scopes(state, &owner_subject, scopes).await?;
    let description = description.unwrap_or_default();
    check_text("description", &description, 1024)?;
    if rate_limit_per_minute == Some(0) {
        return Err(invalid(
            "rate_limit_per_minute: at least 1 (omit it for no limit)",
        ));
    }
    let spec = KeySpec {
        description,
        scopes,
        expires_at: expiry(state, expires_in_secs)?,
        rate_limit_per_minute,
    };
    state
        .api_keys
        .issue(owner, &spec)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(Conflict::Reference(_)) => account_not_found(),
            StoreError::Conflict(Conflict::OwnerDisabled) => ApiError::new(
                StatusCode::CONFLICT,
                "owner_disabled",
                "the key's owner is disabled",
            ),
            other => other.into(),
        })
}

async fn create_key(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
    payload: Result<Json<CreateKeyBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = body(payload)?;
    let account = account(&state, &id).await?;
    let issued = issue_key(
        &state,
        &KeyOwner::Service(account.id.clone()),
        &input.scopes,
        input.description,
        input.expires_in_secs,
        input.rate_limit_per_minute,
    )
    .await?;
    record_admin_event(
        &state,
        AuditKind::ApiKeyCreated,
        &admin,
        &ctx,
        detail(&[
            ("api_key", json!(issued.record.id)),
            ("service_account", json!(account.id)),
            ("scopes", json!(issued.record.scopes)),
        ]),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(issued_json(&state, &issued))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysQuery {
    service: Option<String>,
    user: Option<String>,
}

async fn list_keys(
    State(state): State<AppState>,
    _admin: Authorized<SystemAdmin>,
    params: Result<Query<KeysQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let owner = match (params.service, params.user) {
        (Some(_), Some(_)) => return Err(invalid("give service or user, not both")),
        (Some(service), None) => Some(KeyOwner::Service(service)),
        (None, Some(user)) => Some(KeyOwner::User(user)),
        (None, None) => None,
    };
    let keys = state.api_keys.list(owner.as_ref()).await?;
    Ok(Json(json!({
        "api_keys": keys.iter().map(|k| key_json(&state, k)).collect::<Vec<_>>(),
    })))
}

async fn get_key(
    State(state): State<AppState>,
    _admin: Authorized<SystemAdmin>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = state.api_keys.get(&id).await?.ok_or_else(key_not_found)?;
    Ok(Json(key_json(&state, &key)))
}

async fn revoke_key(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = state
        .api_keys
        .revoke(&id)
        .await?
        .ok_or_else(key_not_found)?;
    record_admin_event(
        &state,
        AuditKind::ApiKeyRevoked,
        &admin,
        &ctx,
        detail(&[("api_key", json!(key.id))]),
    )
    .await?;
    Ok(Json(key_json(&state, &key)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    overlap_secs: u64,
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

async fn rotate_key(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    Path(id): Path<String>,
    payload: Result<Json<RotateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = body(payload)?;
    if input.overlap_secs > MAX_SECS {
        return Err(invalid("overlap_secs: at most 10 years"));
    }
    let old = state.api_keys.get(&id).await?.ok_or_else(key_not_found)?;
    // Without an explicit lifetime the new key lives as long as the old one was issued for.
    let expires_at = match input.expires_in_secs {
        Some(_) => expiry(&state, input.expires_in_secs)?,
        None => old
            .expires_at
            .map(|at| state.clock.now() + (at - old.created_at)),
    };
    let (issued, previous) = state
        .api_keys
        .rotate(&id, Duration::from_secs(input.overlap_secs), expires_at)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "api_key_revoked",
                "a revoked key cannot be rotated",
            )
        })?;
    record_admin_event(
        &state,
        AuditKind::ApiKeyRotated,
        &admin,
        &ctx,
        detail(&[
            ("api_key", json!(issued.record.id)),
            ("rotated_from", json!(previous.id)),
            ("overlap_secs", json!(input.overlap_secs)),
        ]),
    )
    .await?;
    let mut shown = issued_json(&state, &issued);
    shown["previous"] = key_json(&state, &previous);
    Ok((StatusCode::CREATED, Json(shown)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesQuery {
    subject: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    subject: String,
    role: String,
}

/// Checks that `subject` names an existing service account or user.
async fn existing_subject(state: &AppState, subject: &str) -> Result<(), ApiError> {
    let exists = match subject.split_once(':') {
        Some(("service", id)) => state.store.get_service_account(id).await?.is_some(),
        Some(("user", id)) => state.store.get_user(id).await?.is_some(),
        _ => {
            return Err(invalid(
                "subject: service:<service account id> or user:<user id>",
            ));
        }
    };
    if exists {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "subject_not_found",
            "no such service account or user",
        ))
    }
}

async fn roles_json(state: &AppState, subject: &str) -> Result<Json<Value>, ApiError> {
    let roles = state.access.roles_of(subject).await.map_err(pdp_error)?;
    Ok(Json(json!({
        "subject": subject,
        "roles": roles.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })))
}

async fn list_roles(
    State(state): State<AppState>,
    _admin: Authorized<SystemAdmin>,
    params: Result<Query<RolesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    existing_subject(&state, &params.subject).await?;
    roles_json(&state, &params.subject).await
}

async fn change_role(
    state: &AppState,
    admin: &trustgate_core::Principal,
    ctx: &trustgate_audit::RequestContext,
    input: RoleBody,
    grant: bool,
) -> Result<Json<Value>, ApiError> {
    existing_subject(state, &input.subject).await?;
    let role: Role = input
        .role
        .parse()
        .map_err(|e: trustgate_pdp::system::InvalidRole| invalid(e.to_string()))?;
    if let Some(store) = role.store() {
        match state.pdp.get_store(store).await {
            Ok(_) => {}
            Err(trustgate_pdp::PdpError::StoreNotFound) => {
                return Err(ApiError::not_found("store_not_found", "no such store"));
            }
            Err(e) => return Err(pdp_error(e)),
        }
    }
    let kind = if grant {
        state.access.grant(&input.subject, &role).await
    } else {
        state.access.revoke(&input.subject, &role).await
    };
    kind.map_err(pdp_error)?;
    record_admin_event(
        state,
        if grant {
            AuditKind::RoleGranted
        } else {
            AuditKind::RoleRevoked
        },
        admin,
        ctx,
        detail(&[
            ("subject", json!(input.subject)),
            ("role", json!(role.to_string())),
        ]),
    )
    .await?;
    roles_json(state, &input.subject).await
}

async fn grant_role(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    payload: Result<Json<RoleBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let input = body(payload)?;
    change_role(&state, &admin, &ctx, input, true).await
}

async fn revoke_role(
    State(state): State<AppState>,
    Authorized(admin, _): Authorized<SystemAdmin>,
    ClientContext(ctx): ClientContext,
    payload: Result<Json<RoleBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let input = body(payload)?;
    change_role(&state, &admin, &ctx, input, false).await
}
