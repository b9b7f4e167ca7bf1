//! Check, BatchCheck, Expand, ListObjects and ListUsers: OpenFGA's wire forms of the PDP
//! service's queries ([`trustgate_pdp::Pdp::check`], ...). The service evaluates, pages, keeps
//! the limits and audits every check decision (each batch item too) with the principal and
//! request id passed here.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use http::HeaderMap;
use trustgate_pdp::{
    BatchCheckItem, Caller, CheckRequest, ExpandRequest, ExpandResponse, Freshness,
    ListObjectsRequest, ListPaging, ListUsersRequest, PdpError, QueryScope, UserFilter,
};

use super::error::status_and_code;
use super::wire::{
    BatchCheckRequest, BatchCheckResponse, BatchCheckSingleResult, CheckError,
    CheckRequest as CheckBody, CheckResponse, Consistency, ExpandRequest as ExpandBody,
    ExplainResponse, FgaUser, ListObjectsRequest as ListObjectsBody, ListObjectsResponse,
    ListUsersRequest as ListUsersBody, ListUsersResponse,
};
use super::{FgaError, FgaJson, check_store_id, consistency_token};
use crate::AppState;
use crate::auth::{Authorized, StoreReader};
use crate::client_context::ClientContext;

/// The store a query addresses, its model and how fresh its answer must be (the body's
/// `consistency` and the `X-Consistency-Token` header).
fn scope<'a>(
    store_id: &'a str,
    model_id: &'a str,
    consistency: Consistency,
    token: Option<&'a str>,
) -> QueryScope<'a> {
    QueryScope {
        store_id,
        model_id: Some(model_id),
        freshness: Freshness {
            consistency: consistency.into(),
            token,
        },
    }
}

/// A list request's page size: a negative one is out of range like zero.
fn list_paging(page_size: Option<i64>, continuation_token: &str) -> ListPaging<'_> {
    ListPaging {
        page_size: page_size.map(|n| usize::try_from(n).unwrap_or(0)),
        continuation_token: Some(continuation_token),
    }
}

/// The scope and the check of a Check (or Explain) body; `request` names the body in the
/// error for a missing tuple key.
fn asked<'a>(
    store_id: &'a str,
    token: Option<&'a str>,
    req: &'a CheckBody,
    request: &str,
) -> Result<(QueryScope<'a>, CheckRequest<'a>), FgaError> {
    let key = req.tuple_key.as_ref().ok_or_else(|| {
        FgaError::validation(format!("invalid {request}.TupleKey: value is required"))
    })?;
    Ok((
        scope(
            store_id,
            &req.authorization_model_id,
            req.consistency,
            token,
        ),
        CheckRequest {
            object: &key.object,
            relation: &key.relation,
            user: &key.user,
            contextual_tuples: &req.contextual_tuples.0,
            context: req.context.as_ref(),
        },
    ))
}

/// `POST /stores/{store_id}/check`. With `"trace": true` (OpenFGA's debugging flag) the
/// response's `resolution` is the short reason of the decision (the explanation's, see
/// [`explain`]).
pub async fn check(
    Authorized(caller, _): Authorized<StoreReader>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    FgaJson(req): FgaJson<CheckBody>,
) -> Result<Json<CheckResponse>, FgaError> {
    check_store_id(&store_id)?;
    let token = consistency_token(&headers)?;
    let (scope, check) = asked(&store_id, token, &req, "CheckRequest")?;
    let subject = caller.subject();
    let caller = Caller {
        principal: &subject,
        context: &ctx,
    };
    if req.trace == Some(true) {
        let explained = state.pdp.explain(&scope, &check, caller).await?;
        let allowed = explained.result.map_err(PdpError::from)?;
        return Ok(Json(CheckResponse {
            allowed,
            resolution: explained.reason.to_string(),
        }));
    }
    let allowed = state.pdp.check(&scope, &check, caller).await?;
    Ok(Json(CheckResponse {
        allowed,
        resolution: String::new(),
    }))
}

/// `POST /stores/{store_id}/explain` (trustgate's own): a Check's body, answered with the
/// decision, its short reason and the steps that led to it
/// ([`trustgate_pdp::Pdp::explain`]). Needs `reader`, as Check and Read do: an explanation
/// shows tuples. An evaluation error (a condition that cannot be evaluated, the depth limit)
/// is explained too: 200 with `allowed: false` and the `error`; an invalid request is the
/// 400 Check would give.
pub async fn explain(
    Authorized(caller, _): Authorized<StoreReader>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    FgaJson(req): FgaJson<CheckBody>,
) -> Result<Json<ExplainResponse>, FgaError> {
    check_store_id(&store_id)?;
    let token = consistency_token(&headers)?;
    let (scope, check) = asked(&store_id, token, &req, "ExplainRequest")?;
    let subject = caller.subject();
    let explained = state
        .pdp
        .explain(
            &scope,
            &check,
            Caller {
                principal: &subject,
                context: &ctx,
            },
        )
        .await?;
    let (allowed, error) = match explained.result {
        Ok(allowed) => (allowed, None),
        Err(e) => (false, Some(check_error(&PdpError::from(e)))),
    };
    Ok(Json(ExplainResponse {
        allowed,
        error,
        reason: explained.reason.to_string(),
        explanation: explained.tree,
        truncated: explained.truncated,
    }))
}

/// The error of one batch item: `input_error` with OpenFGA's code, or `internal_error`.
fn check_error(e: &PdpError) -> CheckError {
    match status_and_code(e) {
        (status, _) if status.is_server_error() => {
            tracing::error!(error = %e, "internal error in a batch check item");
            CheckError {
                input_error: None,
                internal_error: Some("internal_error"),
                message: "Internal Server Error".to_owned(),
            }
        }
        (_, code) => CheckError {
            input_error: Some(code),
            internal_error: None,
            message: e.to_string(),
        },
    }
}

/// `POST /stores/{store_id}/batch-check`.
pub async fn batch_check(
    Authorized(caller, _): Authorized<StoreReader>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    ClientContext(ctx): ClientContext,
    headers: HeaderMap,
    FgaJson(req): FgaJson<BatchCheckRequest>,
) -> Result<Json<BatchCheckResponse>, FgaError> {
    check_store_id(&store_id)?;
    let token = consistency_token(&headers)?;
    let mut items = Vec::with_capacity(req.checks.len());
    for item in &req.checks {
        let key = item.tuple_key.as_ref().ok_or_else(|| {
            FgaError::validation("invalid BatchCheckItem.TupleKey: value is required")
        })?;
        items.push(BatchCheckItem {
            correlation_id: &item.correlation_id,
            request: CheckRequest {
                object: &key.object,
                relation: &key.relation,
                user: &key.user,
                contextual_tuples: &item.contextual_tuples.0,
                context: item.context.as_ref(),
            },
        });
    }
    let subject = caller.subject();
    let outcomes = state
        .pdp
        .batch_check(
            &scope(
                &store_id,
                &req.authorization_model_id,
                req.consistency,
                token,
            ),
            &items,
            Caller {
                principal: &subject,
                context: &ctx,
            },
        )
        .await?;
    let result: BTreeMap<String, BatchCheckSingleResult> = outcomes
        .into_iter()
        .map(|o| {
            let single = match &o.result {
                Ok(allowed) => BatchCheckSingleResult {
                    allowed: Some(*allowed),
                    error: None,
                },
                Err(e) => BatchCheckSingleResult {
                    allowed: None,
                    error: Some(check_error(e)),
                },
            };
            (o.correlation_id, single)
        })
        .collect();
    Ok(Json(BatchCheckResponse { result }))
}

/// `POST /stores/{store_id}/expand`.
pub async fn expand(
    _caller: Authorized<StoreReader>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    headers: HeaderMap,
    FgaJson(req): FgaJson<ExpandBody>,
) -> Result<Json<ExpandResponse>, FgaError> {
    check_store_id(&store_id)?;
    let token = consistency_token(&headers)?;
    let key = req
        .tuple_key
        .ok_or_else(|| FgaError::validation("invalid ExpandRequest.TupleKey: value is required"))?;
    let tree = state
        .pdp
        .expand(
            &scope(
                &store_id,
                &req.authorization_model_id,
                req.consistency,
                token,
            ),
            &ExpandRequest {
                object: &key.object,
                relation: &key.relation,
                contextual_tuples: &req.contextual_tuples.0,
            },
        )
        .await?;
    Ok(Json(tree))
}

/// `POST /stores/{store_id}/list-objects`.
pub async fn list_objects(
    _caller: Authorized<StoreReader>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    headers: HeaderMap,
    FgaJson(req): FgaJson<ListObjectsBody>,
) -> Result<Json<ListObjectsResponse>, FgaError> {
    check_store_id(&store_id)?;
    let token = consistency_token(&headers)?;
    let listed = state
        .pdp
        .list_objects(
            &scope(
                &store_id,
                &req.authorization_model_id,
                req.consistency,
                token,
            ),
            &ListObjectsRequest {
                object_type: &req.object_type,
                relation: &req.relation,
                user: &req.user,
                contextual_tuples: &req.contextual_tuples.0,
                context: req.context.as_ref(),
            },
            list_paging(req.page_size, &req.continuation_token),
        )
        .await?;
    Ok(Json(ListObjectsResponse {
        objects: listed.items,
        continuation_token: listed.continuation_token,
    }))
}

/// `POST /stores/{store_id}/list-users`.
pub async fn list_users(
    _caller: Authorized<StoreReader>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    headers: HeaderMap,
    FgaJson(req): FgaJson<ListUsersBody>,
) -> Result<Json<ListUsersResponse>, FgaError> {
    check_store_id(&store_id)?;
    let token = consistency_token(&headers)?;
    let object = req.object.as_ref().ok_or_else(|| {
        FgaError::validation("invalid ListUsersRequest.Object: value is required")
    })?;
    let object = format!("{}:{}", object.object_type, object.id);
    // OpenFGA's API takes exactly one filter (its proto rule), though the engine could do more.
    if req.user_filters.len() != 1 {
        return Err(FgaError::validation(
            "invalid ListUsersRequest.UserFilters: value must contain exactly 1 item(s)",
        ));
    }
    let filters: Vec<UserFilter<'_>> = req
        .user_filters
        .iter()
        .map(|f| UserFilter {
            user_type: &f.user_type,
            relation: Some(f.relation.as_str()).filter(|r| !r.is_empty()),
        })
        .collect();
    let listed = state
        .pdp
        .list_users(
            &scope(
                &store_id,
                &req.authorization_model_id,
                req.consistency,
                token,
            ),
            &ListUsersRequest {
                object: &object,
                relation: &req.relation,
                user_filters: &filters,
                contextual_tuples: &req.contextual_tuples.0,
                context: req.context.as_ref(),
            },
            list_paging(req.page_size, &req.continuation_token),
        )
        .await?;
    Ok(Json(ListUsersResponse {
        users: listed
            .items
            .iter()
            .filter_map(|u| FgaUser::from_user_string(u))
            .collect(),
        continuation_token: listed.continuation_token,
    }))
}
