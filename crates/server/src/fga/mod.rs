//! The OpenFGA-compatible relationship PDP API under `/stores`, wire-compatible with OpenFGA
//! v1.8+ so its SDKs and CLI work unchanged.
//!
//! | route | what |
//! |---|---|
//! | `POST/GET /stores`, `GET/DELETE /stores/{store_id}` | stores ([`stores`]) |
//! | `POST/GET /stores/{id}/authorization-models`, `GET .../{model_id}` | immutable models |
//! | `POST /stores/{id}/write`, `POST .../read`, `GET .../changes` | tuples ([`tuples`]) |
//! | `POST /stores/{id}/check`, `batch-check`, `expand`, `list-objects`, `list-users` | queries ([`query`]) |
//! | `POST /stores/{id}/explain` | trustgate's own: a check with why ([`query::explain`]) |
//! | `POST /stores/{id}/import` | trustgate's own: a bulk load ([`tuples::import`], [`import_router`]) |
//!
//! These modules are thin adapters: they read OpenFGA's wire types ([`wire`]), call the PDP
//! service ([`trustgate_pdp::Pdp`], `AppState::pdp`) with plain Rust values, and write its
//! typed results and errors back in OpenFGA's shapes. Index freshness, consistency tokens, the
//! model cache, write validation, limits, paging and the decision audit all live in the
//! service; nothing here touches the store.
//!
//! Every route needs an API key ([`crate::auth::Authorized`], 401 otherwise) whose owner and
//! scopes hold the route's permission on the path's store (403 `permission_denied` otherwise):
//! `reader` for queries and reads, `writer` for tuple writes, `store_admin` for models and
//! deleting the store, `admin` for creating stores. Listing stores shows only the stores the
//! caller may read; the system store is never shown.
//! Errors are OpenFGA's bodies `{"code", "message"}` ([`FgaError`]): 400 for every input error
//! (`validation_error`, `type_not_found`, `relation_not_found`, `invalid_tuple`,
//! `authorization_model_not_found`, `latest_authorization_model_not_found`,
//! `invalid_continuation_token`, `cannot_allow_duplicate_tuples_in_one_request`,
//! `write_failed_due_to_invalid_input`, `invalid_write_input`, `exceeded_entity_limit`,
//! `authorization_model_resolution_too_complex`, `invalid_authorization_model`), 404
//! `store_id_not_found`, 413 for bodies over `http.body_limit_bytes` (an import's:
//! `authz.import_body_limit_bytes`), 503
//! `service_unavailable`, 500 `internal_error` (one `PdpError` variant each, see
//! [`error::status_and_code`]).
//!
//! # trustgate additions (ignored by OpenFGA clients)
//! - `PUT/GET/DELETE /stores/{id}/attributes/{object}`: stored attributes of an object, which
//!   AuthZEN evaluations merge into the subject's and the resource's `properties`
//!   ([`attributes`]; writer to write, reader to read).
//! - `GET /stores/{id}/watch`: the store's revision as server-sent events, so that an
//!   enforcement point can cache decisions and drop them when a tuple or the model changes
//!   ([`watch`]).
//! - Consistency tokens: every write answer carries `X-Consistency-Token` (and the same value
//!   in the body's `consistency_token`); queries that send it back in `X-Consistency-Token` are
//!   answered at least as fresh as that write (see [`trustgate_pdp::consistency`]).
//! - ListObjects and ListUsers never truncate silently. OpenFGA cuts the answer at its maximum
//!   (1000); trustgate returns every result when there are at most
//!   `authz.list_objects_max_results` / `authz.list_users_max_results` of them and otherwise
//!   answers 400 `exceeded_entity_limit`, telling the caller to page: with `page_size` (and then
//!   `continuation_token`) in the request body the sorted result is returned a page at a time,
//!   with a `continuation_token` in the answer (empty on the last page).
//!
//! Evaluation runs on the service's in-memory tuple index per store
//! ([`trustgate_pdp::freshness`]); writes go to the database first and reach the index from its
//! changelog.

pub mod attributes;
pub mod error;
pub mod query;
pub mod stores;
pub mod tuples;
pub mod watch;
pub mod wire;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::routing::{get, post};
use http::HeaderMap;
use serde::de::DeserializeOwned;
use trustgate_pdp::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page};

pub use error::FgaError;

use crate::AppState;

/// The header carrying consistency tokens.
pub const CONSISTENCY_HEADER: &str = "x-consistency-token";

/// Routes under `/stores`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/stores", post(stores::create).get(stores::list))
        .route(
            "/stores/{store_id}",
            get(stores::get).delete(stores::delete),
        )
        .route(
            "/stores/{store_id}/authorization-models",
            post(stores::write_model).get(stores::list_models),
        )
        .route(
            "/stores/{store_id}/authorization-models/{model_id}",
            get(stores::read_model),
        )
        .route("/stores/{store_id}/write", post(tuples::write))
        .route("/stores/{store_id}/read", post(tuples::read))
        .route("/stores/{store_id}/changes", get(tuples::changes))
        .route("/stores/{store_id}/check", post(query::check))
        .route("/stores/{store_id}/explain", post(query::explain))
        .route("/stores/{store_id}/batch-check", post(query::batch_check))
        .route("/stores/{store_id}/expand", post(query::expand))
        .route("/stores/{store_id}/list-objects", post(query::list_objects))
        .route("/stores/{store_id}/list-users", post(query::list_users))
        .route("/stores/{store_id}/watch", get(watch::watch))
        .route(
            "/stores/{store_id}/attributes/{object}",
            get(attributes::get)
                .put(attributes::put)
                .delete(attributes::delete),
        )
}

/// `POST /stores/{store_id}/import` (role `writer`), with its own body limit of `limit` bytes:
/// an import is far bigger than any other request. Merged outside the router-wide body limit.
pub fn import_router(limit: usize) -> Router<AppState> {
    Router::new()
        .route("/stores/{store_id}/import", post(tuples::import))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limit))
}

/// The body of `req`, with OpenFGA's errors (413 over `limit`, 400 otherwise).
async fn body_bytes(req: Request, state: &AppState, limit: usize) -> Result<Bytes, FgaError> {
    Bytes::from_request(req, state).await.map_err(|r| {
        if r.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
            FgaError::payload_too_large(limit)
        } else {
            FgaError::validation(format!("cannot read the request body: {r}"))
        }
    })
}

/// [`FgaJson`] for an import's body (up to `authz.import_body_limit_bytes`): parsed on the
/// blocking pool, since tens of megabytes of JSON are CPU work an async worker must not do.
#[derive(Debug, Clone)]
pub struct ImportJson<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromRequest<AppState> for ImportJson<T> {
    type Rejection = FgaError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, FgaError> {
        let bytes = body_bytes(req, state, state.config.authz.import_body_limit_bytes).await?;
        tokio::task::spawn_blocking(move || {
            serde_json::from_slice(&bytes)
                .map(ImportJson)
                .map_err(|e| FgaError::validation(format!("invalid request body: {e}")))
        })
        .await
        .map_err(FgaError::internal)?
    }
}

/// A JSON body read leniently as OpenFGA's gateway does (no content type required, an empty
/// body is `{}`), with OpenFGA's errors: 400 `validation_error` for malformed JSON, 413 for a
/// body over the limit.
#[derive(Debug, Clone)]
pub struct FgaJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for FgaJson<T> {
    type Rejection = FgaError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, FgaError> {
        let bytes = body_bytes(req, state, state.config.http.body_limit_bytes).await?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text)
            .map(FgaJson)
            .map_err(|e| FgaError::validation(format!("invalid request body: {e}")))
    }
}

/// The store id of a path, checked as OpenFGA does (a ULID), before anything else of the
/// request.
pub fn check_store_id(id: &str) -> Result<(), FgaError> {
    Ok(trustgate_pdp::validate_store_id(id)?)
}

/// The consistency token of a request, if any.
pub fn consistency_token(headers: &HeaderMap) -> Result<Option<&str>, FgaError> {
    match headers.get(CONSISTENCY_HEADER) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()).filter(|s| !s.is_empty()))
            .map_err(|_| FgaError::validation("invalid consistency token")),
    }
}

/// The page of a listing request: absent size means [`DEFAULT_PAGE_SIZE`], otherwise
/// 1..=[`MAX_PAGE_SIZE`], with OpenFGA's message naming the request (`what`).
pub fn page<'a>(
    given: Option<i64>,
    continuation_token: Option<&'a str>,
    what: &str,
) -> Result<Page<'a>, FgaError> {
    let size = match given {
        None => DEFAULT_PAGE_SIZE,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                FgaError::validation(format!(
                    "invalid {what}.PageSize: value must be inside range [1, {MAX_PAGE_SIZE}]"
                ))
            })?,
    };
    Ok(Page {
        size,
        continuation_token,
    })
}

/// At most 64 characters of user input for messages.
pub fn shorten(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(64).collect();
        out.push('…');
        out
    }
}
