//! PDP metadata: `GET /.well-known/authzen-configuration` and, for the PDP of one store,
//! `GET /.well-known/authzen-configuration/stores/{store_id}`.
//!
//! The base URL is the server's public one, the same the OAuth discovery document names
//! (`oauth.issuer`, else `pages.public_origin`, else the listen address). Public (no
//! credential), cacheable for an hour: it changes only with the configuration.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use http::header::CACHE_CONTROL;
use serde::Serialize;

use super::{EVALUATION, EVALUATIONS, SEARCH_ACTION, SEARCH_RESOURCE, SEARCH_SUBJECT};
use crate::AppState;
use crate::error::ApiError;

/// The metadata document (AuthZEN 1.0, PDP metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Configuration {
    /// The PDP's identifier: the base URL of the endpoints below.
    pub policy_decision_point: String,
    /// `POST /access/v1/evaluation`.
    pub access_evaluation_endpoint: String,
    /// `POST /access/v1/evaluations`.
    pub access_evaluations_endpoint: String,
    /// `POST /access/v1/search/subject`.
    pub search_subject_endpoint: String,
    /// `POST /access/v1/search/resource`.
    pub search_resource_endpoint: String,
    /// `POST /access/v1/search/action`.
    pub search_action_endpoint: String,
}

impl Configuration {
    /// The document of the PDP at `pdp` (no trailing slash).
    pub fn at(pdp: String) -> Self {
        let at = |path: &str| format!("{pdp}{path}");
        Configuration {
            access_evaluation_endpoint: at(EVALUATION),
            access_evaluations_endpoint: at(EVALUATIONS),
            search_subject_endpoint: at(SEARCH_SUBJECT),
            search_resource_endpoint: at(SEARCH_RESOURCE),
            search_action_endpoint: at(SEARCH_ACTION),
            policy_decision_point: pdp,
        }
    }
}

fn base(state: &AppState) -> String {
    state
        .oauth
        .endpoints()
        .issuer
        .trim_end_matches('/')
        .to_owned()
}

fn answer(configuration: Configuration) -> Response {
    (
        [(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        )],
        Json(configuration),
    )
        .into_response()
}

/// `GET /.well-known/authzen-configuration`: the PDP whose requests name their store in
/// `X-Trustgate-Store`.
pub async fn configuration(State(state): State<AppState>) -> Response {
    answer(Configuration::at(base(&state)))
}

/// `GET /.well-known/authzen-configuration/stores/{store_id}`: the PDP of one store
/// (`{base}/stores/{store_id}`). Says nothing about whether the store exists.
pub async fn store_configuration(
    State(state): State<AppState>,
    Path(store_id): Path<String>,
) -> Result<Response, ApiError> {
    if !trustgate_core::id::is_ulid(&store_id) {
        return Err(ApiError::not_found("not_found", "no such route"));
    }
    Ok(answer(Configuration::at(format!(
        "{}/stores/{store_id}",
        base(&state)
    ))))
}
