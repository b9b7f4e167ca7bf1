//! The AuthZEN 1.0 Authorization API (OpenID Foundation): the standard PEP → PDP API, as an
//! adapter over the relationship PDP ([`trustgate_pdp::Pdp`]).
//!
//! | route | what |
//! |---|---|
//! | `POST /access/v1/evaluation` | one decision ([`evaluation`]) |
//! | `POST /access/v1/evaluations` | many decisions, with defaults and a stop rule |
//! | `POST /access/v1/search/subject`, `/search/resource`, `/search/action` | searches ([`search`]) |
//! | `GET /.well-known/authzen-configuration` | PDP metadata ([`metadata`]) |
//! | `/stores/{store_id}/access/v1/...`, `GET /.well-known/authzen-configuration/stores/{store_id}` | the same for one store |
//!
//! # Which store
//!
//! AuthZEN has no store in its paths; a request names one of two ways:
//! - its path: `/stores/{store_id}/access/v1/...`. Such a store is a PDP of its own, with the
//!   identifier `{base}/stores/{store_id}` and its metadata at
//!   `/.well-known/authzen-configuration/stores/{store_id}` (the well-known string inserted
//!   between host and path, as AuthZEN's metadata section says), so a PEP that speaks only
//!   AuthZEN is configured with that identifier and nothing else;
//! - the header `X-Trustgate-Store: {store_id}` on `/access/v1/...` (the PDP
//!   `{base}` whose metadata is `/.well-known/authzen-configuration`).
//!
//! Neither → 400 `store_required`; both, naming different stores → 400 `store_mismatch`; not a
//! store id → 400 `invalid_store_id`; a store that does not exist → 404 `store_id_not_found`.
//! Every decision uses the store's latest model. `X-Consistency-Token` (from an OpenFGA write)
//! is honoured as on the OpenFGA API.
//!
//! # Who may ask
//!
//! An API key (`Authorization: Bearer` or `X-API-Key`, [`crate::auth::Caller`]): none or an
//! invalid one → 401 with `WWW-Authenticate`. Its owner and its scopes must hold `reader` on
//! the store (`store:{id}:reader`, or anything implying it), as for the OpenFGA queries
//! ([`crate::auth::Authorized`]); otherwise 403 `permission_denied`, audited as
//! `access_denied`. Every decision is audited once (`authorization_decision`) with the key's
//! owner as the principal; searches audit each check they make.
//!
//! # Mapping onto the relationship engine
//!
//! - subject `{type, id}` → the user `type:id`; resource `{type, id}` → the object `type:id`;
//!   action `name` → the relation of that name on the resource's type, or the relation the
//!   store's action map names ([`crate::config::AuthzenConfig`]).
//! - search/subject → ListUsers with the subject's type as the filter (a wildcard grant is the
//!   result `{type, id: "*"}`: every subject of the type); search/resource → ListObjects;
//!   search/action → the relations of the resource's type that a check allows, as action
//!   names.
//! - properties and context reach conditions under the names of
//!   [`trustgate_pdp::attributes`]: parameters `subject`, `resource`, `action` (each with its
//!   `properties`) and `context`, plus each context member by its own name. The stored
//!   attributes of the subject's and the resource's objects (`PUT /stores/{id}/attributes/
//!   {type:id}`, [`crate::fga::attributes`]) are merged into their `properties`, a stored
//!   attribute winning over the request's property of the same name; so are the directory
//!   entries of parties that are trustgate users (the store's user type, `user` by default),
//!   and the subject's authentication context from `X-Subject-Token` ([`known`]). They come
//!   from the PDP's per-replica cache (`trustgate_pdp::attributes::ATTRIBUTES_TTL`, writes
//!   through this replica seen at once; a consistency token reads the database). A search
//!   merges those of the parties the request names, not those of the candidates it finds.
//! - Ids the engine cannot represent (`:`, `#` or whitespace in a type or an id, a subject id
//!   `*`) cannot be granted anything: a decision is `false` with the reason in its context, a
//!   search has no results. So have unknown types, relations and ids: `false`, or no results.
//!
//! # Answers
//!
//! A decision is `200 {"decision": bool}`; one that could not be evaluated (unknown type or
//! relation, a condition that cannot be evaluated, a subject token that is not live or not the
//! subject's: `invalid_subject_token`, `subject_token_mismatch`) is `{"decision": false,
//! "context": {"error": {"status", "code", "message"}}}`, and so is an invalid item of a batch
//! (the batch still answers 200). With `"options": {"explain": true}` (trustgate's extension,
//! on an evaluation or a batch) every evaluated decision's `context` also carries AuthZEN's
//! `reason_admin` (`{"en": <the short reason>}`) and `explanation` (`{"steps", "truncated"}`,
//! the tree of [`trustgate_pdp::Pdp::explain`]). Unknown request members are ignored;
//! `X-Request-ID` is echoed (as on every route). Errors use trustgate's JSON error shape
//! `{"code", "message", "request_id"}`: 400 for a body that is not a JSON object, a missing or
//! malformed member (`invalid_request`), a bad store or page token; 401; 403; 404 for an
//! unknown store; 413 for a body over `http.body_limit_bytes`; 503 / 507 when the database
//! cannot serve; 500 otherwise.
//!
//! Bounded work: at most `authz.max_checks_per_batch` evaluations a batch (400
//! `too_many_evaluations`), search pages of at most `authz.list_objects_max_results` /
//! `authz.list_users_max_results` results (a larger `page.limit` is lowered to it).

pub mod evaluation;
pub mod known;
pub mod metadata;
pub mod search;
pub mod wire;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::routing::{get, post};
use http::StatusCode;
use http::request::Parts;
use serde_json::{Map, Value};
use trustgate_audit::RequestContext;
use trustgate_core::Secret;
use trustgate_pdp::system::{Role, StoreRole};
use trustgate_pdp::{Freshness, PdpError, QueryScope};

use crate::AppState;
use crate::auth::{Authorized, Caller, Needs};
use crate::client_context::request_context;
use crate::error::ApiError;

/// The header naming the store of a request on `/access/v1/...`.
pub const STORE_HEADER: &str = "x-trustgate-store";

/// The header carrying a consistency token (as on the OpenFGA API).
const CONSISTENCY_HEADER: &str = "x-consistency-token";

/// The API's routes, relative to a PDP's base.
const EVALUATION: &str = "/access/v1/evaluation";
const EVALUATIONS: &str = "/access/v1/evaluations";
const SEARCH_SUBJECT: &str = "/access/v1/search/subject";
const SEARCH_RESOURCE: &str = "/access/v1/search/resource";
const SEARCH_ACTION: &str = "/access/v1/search/action";

/// The AuthZEN routes, at the root and under `/stores/{store_id}`.
pub fn router() -> Router<AppState> {
    let mut router = Router::new()
        .route(
            "/.well-known/authzen-configuration",
            get(metadata::configuration),
        )
        .route(
            "/.well-known/authzen-configuration/stores/{store_id}",
            get(metadata::store_configuration),
        );
    for prefix in ["", "/stores/{store_id}"] {
        router = router
            .route(
                &format!("{prefix}{EVALUATION}"),
                post(evaluation::evaluation),
            )
            .route(
                &format!("{prefix}{EVALUATIONS}"),
                post(evaluation::evaluations),
            )
            .route(&format!("{prefix}{SEARCH_SUBJECT}"), post(search::subject))
            .route(
                &format!("{prefix}{SEARCH_RESOURCE}"),
                post(search::resource),
            )
            .route(&format!("{prefix}{SEARCH_ACTION}"), post(search::action));
    }
    router
}

/// The store a request names: its path's, else its header's (see the module documentation).
fn requested_store(parts: &Parts, path_store: Option<&str>) -> Result<String, ApiError> {
    let header = match parts.headers.get(STORE_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map(str::trim).map_err(|_| {
            ApiError::bad_request("invalid_store_id", "X-Trustgate-Store is not a store id")
        })?),
    };
    let id = match (path_store, header) {
        (Some(path), Some(header)) if path != header => {
            return Err(ApiError::bad_request(
                "store_mismatch",
                "the path and X-Trustgate-Store name different stores",
            ));
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => {
            return Err(ApiError::bad_request(
                "store_required",
                "name the store: the X-Trustgate-Store header, or /stores/{store_id}/access/v1/...",
            ));
        }
    };
    if !trustgate_core::id::is_ulid(id) {
        return Err(ApiError::bad_request(
            "invalid_store_id",
            format!("`{}` is not a store id", crate::fga::shorten(id)),
        ));
    }
    Ok(id.to_owned())
}

/// The path's `store_id`, if the route has one.
async fn path_store(parts: &mut Parts, state: &AppState) -> Option<String> {
    RawPathParams::from_request_parts(parts, state)
        .await
        .ok()?
        .iter()
        .find(|(name, _)| *name == "store_id")
        .map(|(_, value)| value.to_owned())
}

/// `reader` on the store the request names: its path's, else `X-Trustgate-Store`'s.
#[derive(Debug, Clone, Copy)]
pub struct RequestedStoreReader;

impl Needs for RequestedStoreReader {
    fn role(parts: &Parts, store_id: Option<&str>) -> Option<Role> {
        let id = requested_store(parts, store_id).ok()?;
        (id != trustgate_store_api::SYSTEM_STORE_ID).then_some(Role::Store(StoreRole::Reader, id))
    }
}

/// An authorized AuthZEN request: who asks, about which store, how fresh.
#[derive(Debug)]
pub struct Call {
    /// The caller, a reader of the store.
    pub caller: Caller,
    /// The store.
    pub store_id: String,
    /// A consistency token from `X-Consistency-Token`.
    pub token: Option<String>,
    /// The subject's access token from `X-Subject-Token` ([`known`]), unverified.
    pub subject_token: Option<Secret>,
    /// For the audit trail.
    pub context: RequestContext,
}

impl Call {
    /// The query scope: the store's latest model, as fresh as the token asks.
    pub fn scope(&self) -> QueryScope<'_> {
        QueryScope {
            store_id: &self.store_id,
            model_id: None,
            freshness: Freshness {
                token: self.token.as_deref(),
                ..Freshness::MINIMIZE_LATENCY
            },
        }
    }
}

impl FromRequestParts<AppState> for Call {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // 401 and 403 first; a request naming no usable store reaches the 400 below.
        let Authorized(caller, _) =
            Authorized::<RequestedStoreReader>::from_request_parts(parts, state).await?;
        let path = path_store(parts, state).await;
        let store_id = requested_store(parts, path.as_deref())?;
        let token = match parts.headers.get(CONSISTENCY_HEADER) {
            None => None,
            Some(v) => Some(v.to_str().map(|s| s.trim().to_owned()).map_err(|_| {
                ApiError::bad_request("invalid_consistency_token", "invalid consistency token")
            })?)
            .filter(|t| !t.is_empty()),
        };
        let subject_token = match parts.headers.get(known::SUBJECT_TOKEN_HEADER) {
            None => None,
            Some(v) => Some(Secret::new(v.to_str().map(str::trim).map_err(|_| {
                ApiError::bad_request(
                    "invalid_subject_token",
                    "X-Subject-Token is not an access token",
                )
            })?)),
        };
        Ok(Call {
            caller,
            store_id,
            token,
            subject_token,
            context: request_context(parts),
        })
    }
}

/// A request body that is a JSON object (no content type required). Not JSON, or not an
/// object → 400 `invalid_request`; over the body limit → 413.
#[derive(Debug, Clone)]
pub struct AuthzenJson(pub Map<String, Value>);

impl FromRequest<AppState> for AuthzenJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body exceeds the configured limit",
                )
            } else {
                ApiError::bad_request("invalid_request", format!("cannot read the body: {r}"))
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(AuthzenJson(map)),
            Ok(_) => Err(ApiError::bad_request(
                "invalid_request",
                "the request body must be a JSON object",
            )),
            Err(e) => Err(ApiError::bad_request(
                "invalid_request",
                format!("the request body is not JSON: {e}"),
            )),
        }
    }
}

/// The HTTP status, code and message of a PDP error (the OpenFGA API's codes); server errors
/// are logged and described only generically.
pub fn describe(err: &PdpError) -> (StatusCode, &'static str, String) {
    let (status, code) = crate::fga::error::status_and_code(err);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %err, "internal error on an AuthZEN route");
        (
            status,
            code,
            "internal error; the request id identifies it in the server log".to_owned(),
        )
    } else {
        if status.is_server_error() {
            tracing::warn!(error = %err, "database unavailable");
        }
        (status, code, err.to_string())
    }
}

/// A PDP error that fails the whole request.
pub fn pdp_error(err: PdpError) -> ApiError {
    if matches!(err, PdpError::InvalidContinuationToken) {
        return ApiError::bad_request("invalid_page_token", "the page token is not valid");
    }
    let (status, code, message) = describe(&err);
    ApiError::new(status, code, message)
}
