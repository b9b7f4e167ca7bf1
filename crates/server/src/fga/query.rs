//! Check, BatchCheck, Expand, ListObjects and ListUsers over the in-memory index.
//!
//! Every check decision (each batch item too) is audited as a `trustgate::audit` tracing event
//! with the principal, store, model, object, relation, user, decision and request id.
//! ListObjects and ListUsers evaluate on the blocking pool: they can walk many tuples.

use std::ops::ControlFlow;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use trustgate_authz::engine::{self, EngineError, ErrorCode, UserFilter};
use trustgate_authz::tuple::TupleKey;

use super::runtime::QueryView;
use super::wire::Consistency;
use super::wire::{
    BatchCheckRequest, BatchCheckResponse, BatchCheckSingleResult, CheckError, CheckRequest,
    CheckResponse, ExpandRequest, FgaUser, ListObjectsRequest, ListObjectsResponse,
    ListUsersRequest, ListUsersResponse,
};
use super::{FgaError, FgaJson, check_store_id, consistency_token};
use crate::AppState;
use crate::auth::AdminPrincipal;
use crate::request_id::RequestId;

/// Who asked, for the audit trail.
struct Audit<'a> {
    principal: String,
    store: &'a str,
    model: &'a str,
    request_id: &'a str,
}

impl Audit<'_> {
    fn decision(
        &self,
        object: &str,
        relation: &str,
        user: &str,
        result: &Result<bool, EngineError>,
    ) {
        let (decision, reason) = match result {
            Ok(true) => ("allow", String::new()),
            Ok(false) => ("deny", String::new()),
            Err(e) => ("error", e.code().name().to_owned()),
        };
        tracing::info!(
            target: "trustgate::audit",
            principal = %self.principal,
            action = "check",
            store = %self.store,
            model = %self.model,
            object = %object,
            relation = %relation,
            user = %user,
            decision,
            reason = %reason,
            request_id = %self.request_id,
            "authorization decision"
        );
    }
}

/// The store a query addresses and how fresh its answer must be, validated before anything is
/// read: a well-formed store id and, if sent, a readable `X-Consistency-Token`.
struct QueryTarget<'a> {
    store_id: &'a str,
    token: Option<&'a str>,
}

impl<'a> QueryTarget<'a> {
    fn new(store_id: &'a str, headers: &'a HeaderMap) -> Result<Self, FgaError> {
        check_store_id(store_id)?;
        Ok(Self {
            store_id,
            token: consistency_token(headers)?,
        })
    }

    /// The tuple snapshot and type system to evaluate against.
    async fn view(
        &self,
        state: &AppState,
        model_id: &str,
        consistency: Consistency,
    ) -> Result<QueryView, FgaError> {
        state
            .fga
            .view(self.store_id, model_id, consistency, self.token)
            .await
    }
}

fn request_id(ext: &Option<Extension<RequestId>>) -> &str {
    ext.as_ref().map(|Extension(id)| id.as_str()).unwrap_or("")
}

/// `POST /stores/{store_id}/check`.
pub async fn check(
    AdminPrincipal(principal): AdminPrincipal,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    rid: Option<Extension<RequestId>>,
    headers: HeaderMap,
    FgaJson(req): FgaJson<CheckRequest>,
) -> Result<Json<CheckResponse>, FgaError> {
    let target = QueryTarget::new(&store_id, &headers)?;
    let key = req
        .tuple_key
        .ok_or_else(|| FgaError::validation("invalid CheckRequest.TupleKey: value is required"))?;
    let view = target
        .view(&state, &req.authorization_model_id, req.consistency)
        .await?;
    let result = engine::check(
        &view.ts,
        &*view.snapshot,
        &engine::CheckRequest {
            object: &key.object,
            relation: &key.relation,
            user: &key.user,
            contextual_tuples: &req.contextual_tuples.0,
            context: req.context.as_ref(),
        },
    );
    Audit {
        principal: principal.subject(),
        store: &store_id,
        model: &view.ts.model().id,
        request_id: request_id(&rid),
    }
    .decision(&key.object, &key.relation, &key.user, &result);
    Ok(Json(CheckResponse {
        allowed: result?,
        resolution: String::new(),
    }))
}

fn check_error(e: &EngineError) -> CheckError {
    match e.code() {
        ErrorCode::InternalError => CheckError {
            input_error: None,
            internal_error: Some("internal_error"),
            message: "Internal Server Error".to_owned(),
        },
        code => CheckError {
            input_error: Some(code.name()),
            internal_error: None,
            message: e.to_string(),
        },
    }
}

/// `POST /stores/{store_id}/batch-check`.
pub async fn batch_check(
    AdminPrincipal(principal): AdminPrincipal,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    rid: Option<Extension<RequestId>>,
    headers: HeaderMap,
    FgaJson(req): FgaJson<BatchCheckRequest>,
) -> Result<Json<BatchCheckResponse>, FgaError> {
    let target = QueryTarget::new(&store_id, &headers)?;
    let max = state.config.authz.max_checks_per_batch;
    if req.checks.is_empty() {
        return Err(FgaError::validation(
            "invalid BatchCheckRequest.Checks: value must contain at least 1 item(s)",
        ));
    }
    if req.checks.len() > max {
        return Err(FgaError::validation(format!(
            "batchCheck received {} checks, the maximum allowed is {max}",
            req.checks.len()
        )));
    }
    let mut keys = Vec::with_capacity(req.checks.len());
    for item in &req.checks {
        let key = item.tuple_key.as_ref().ok_or_else(|| {
            FgaError::validation("invalid BatchCheckItem.TupleKey: value is required")
        })?;
        keys.push(key);
    }
    let view = target
        .view(&state, &req.authorization_model_id, req.consistency)
        .await?;
    let items: Vec<engine::BatchCheckItem<'_>> = req
        .checks
        .iter()
        .zip(&keys)
        .map(|(item, key)| engine::BatchCheckItem {
            correlation_id: &item.correlation_id,
            request: engine::CheckRequest {
                object: &key.object,
                relation: &key.relation,
                user: &key.user,
                contextual_tuples: &item.contextual_tuples.0,
                context: item.context.as_ref(),
            },
        })
        .collect();
    let results = engine::batch_check(&view.ts, &*view.snapshot, &items)?;
    let audit = Audit {
        principal: principal.subject(),
        store: &store_id,
        model: &view.ts.model().id,
        request_id: request_id(&rid),
    };
    let mut out = std::collections::BTreeMap::new();
    for (item, r) in items.iter().zip(results) {
        audit.decision(
            item.request.object,
            item.request.relation,
            item.request.user,
            &r.result,
        );
        let single = match &r.result {
            Ok(allowed) => BatchCheckSingleResult {
                allowed: Some(*allowed),
                error: None,
            },
            Err(e) => BatchCheckSingleResult {
                allowed: None,
                error: Some(check_error(e)),
            },
        };
        out.insert(r.correlation_id, single);
    }
    Ok(Json(BatchCheckResponse { result: out }))
}

/// `POST /stores/{store_id}/expand`.
pub async fn expand(
    _admin: AdminPrincipal,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    headers: HeaderMap,
    FgaJson(req): FgaJson<ExpandRequest>,
) -> Result<Json<engine::ExpandResponse>, FgaError> {
    let target = QueryTarget::new(&store_id, &headers)?;
    let key = req
        .tuple_key
        .ok_or_else(|| FgaError::validation("invalid ExpandRequest.TupleKey: value is required"))?;
    let view = target
        .view(&state, &req.authorization_model_id, req.consistency)
        .await?;
    let tree = engine::expand(
        &view.ts,
        &*view.snapshot,
        &engine::ExpandRequest {
            object: &key.object,
            relation: &key.relation,
            contextual_tuples: &req.contextual_tuples.0,
        },
    )?;
    Ok(Json(tree))
}

/// How a list request pages (a trustgate extension): `None` when it asked for everything.
struct Paging {
    size: usize,
    after: Option<String>,
}

const CURSOR_PREFIX: &str = "tgl1:";

fn encode_cursor(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{last}"))
}

fn decode_cursor(token: &str) -> Result<String, FgaError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| FgaError::invalid_continuation_token())?;
    String::from_utf8(bytes)
        .ok()
        .and_then(|s| s.strip_prefix(CURSOR_PREFIX).map(str::to_owned))
        .ok_or_else(FgaError::invalid_continuation_token)
}

fn paging(page_size: Option<i64>, token: &str, max: usize) -> Result<Option<Paging>, FgaError> {
    if page_size.is_none() && token.is_empty() {
        return Ok(None);
    }
    let size = match page_size {
        None => max,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                FgaError::validation(format!("page_size must be inside range [1, {max}]"))
            })?,
    };
    let after = if token.is_empty() {
        None
    } else {
        Some(decode_cursor(token)?)
    };
    Ok(Some(Paging { size, after }))
}

/// One page of a sorted list and the token of the next (empty on the last page).
fn page_of(sorted: Vec<String>, paging: &Paging) -> (Vec<String>, String) {
    let start = match &paging.after {
        Some(a) => sorted.partition_point(|o| o.as_str() <= a.as_str()),
        None => 0,
    };
    let rest = sorted.len().saturating_sub(start);
    let page: Vec<String> = sorted.into_iter().skip(start).take(paging.size).collect();
    let next = if rest > page.len() {
        page.last().map(|l| encode_cursor(l)).unwrap_or_default()
    } else {
        String::new()
    };
    (page, next)
}

fn too_many(what: &str, max: usize, key: &str) -> FgaError {
    FgaError::bad_request(
        "exceeded_entity_limit",
        format!(
            "The number of {what} found exceeds the allowed limit of {max} ({key}); nothing was \
             truncated: page through them with page_size and continuation_token"
        ),
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, FgaError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(FgaError::internal)??)
}

/// `POST /stores/{store_id}/list-objects`.
pub async fn list_objects(
    _admin: AdminPrincipal,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    headers: HeaderMap,
    FgaJson(req): FgaJson<ListObjectsRequest>,
) -> Result<Json<ListObjectsResponse>, FgaError> {
    let target = QueryTarget::new(&store_id, &headers)?;
    let max = state.config.authz.list_objects_max_results.max(1);
    let paging = paging(req.page_size, &req.continuation_token, max)?;
    let view = target
        .view(&state, &req.authorization_model_id, req.consistency)
        .await?;
    let stop_after = paging.is_none().then_some(max);
    let (objects, exceeded) = blocking(move || {
        let request = engine::ListObjectsRequest {
            object_type: &req.object_type,
            relation: &req.relation,
            user: &req.user,
            contextual_tuples: &req.contextual_tuples.0,
            context: req.context.as_ref(),
        };
        let mut found = Vec::new();
        let mut exceeded = false;
        engine::list_objects_visit(&view.ts, &*view.snapshot, &request, &mut |o| {
            if stop_after.is_some_and(|m| found.len() >= m) {
                exceeded = true;
                return ControlFlow::Break(());
            }
            found.push(o.to_owned());
            ControlFlow::Continue(())
        })?;
        found.sort_unstable();
        Ok((found, exceeded))
    })
    .await?;
    match paging {
        None if exceeded => Err(too_many("objects", max, "authz.list_objects_max_results")),
        None => Ok(Json(ListObjectsResponse {
            objects,
            continuation_token: None,
        })),
        Some(p) => {
            let (objects, next) = page_of(objects, &p);
            Ok(Json(ListObjectsResponse {
                objects,
                continuation_token: Some(next),
            }))
        }
    }
}

/// `POST /stores/{store_id}/list-users`.
pub async fn list_users(
    _admin: AdminPrincipal,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    headers: HeaderMap,
    FgaJson(req): FgaJson<ListUsersRequest>,
) -> Result<Json<ListUsersResponse>, FgaError> {
    let target = QueryTarget::new(&store_id, &headers)?;
    let max = state.config.authz.list_users_max_results.max(1);
    let paging = paging(req.page_size, &req.continuation_token, max)?;
    let object = req.object.as_ref().ok_or_else(|| {
        FgaError::validation("invalid ListUsersRequest.Object: value is required")
    })?;
    let object = format!("{}:{}", object.object_type, object.id);
    let view = target
        .view(&state, &req.authorization_model_id, req.consistency)
        .await?;
    let users = blocking(move || {
        let filters: Vec<UserFilter<'_>> = req
            .user_filters
            .iter()
            .map(|f| UserFilter {
                user_type: &f.user_type,
                relation: Some(f.relation.as_str()).filter(|r| !r.is_empty()),
            })
            .collect();
        let contextual: &[TupleKey] = &req.contextual_tuples.0;
        let request = engine::ListUsersRequest {
            object: &object,
            relation: &req.relation,
            user_filters: &filters,
            contextual_tuples: contextual,
            context: req.context.as_ref(),
        };
        Ok(engine::list_users(&view.ts, &*view.snapshot, &request)?.users)
    })
    .await?;
    let to_wire = |users: Vec<String>| -> Vec<FgaUser> {
        users
            .iter()
            .filter_map(|u| FgaUser::from_user_string(u))
            .collect()
    };
    match paging {
        None if users.len() > max => Err(too_many("users", max, "authz.list_users_max_results")),
        None => Ok(Json(ListUsersResponse {
            users: to_wire(users),
            continuation_token: None,
        })),
        Some(p) => {
            let (users, next) = page_of(users, &p);
            Ok(Json(ListUsersResponse {
                users: to_wire(users),
                continuation_token: Some(next),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_a_sorted_list_once() {
        let all: Vec<String> = (0..7).map(|i| format!("doc:{i}")).collect();
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let p = paging(Some(3), &token, 10).expect("paging").expect("paged");
            let (page, next) = page_of(all.clone(), &p);
            seen.extend(page);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, all);
        assert!(paging(Some(0), "", 10).is_err());
        assert!(paging(Some(11), "", 10).is_err());
        assert!(paging(None, "garbage!", 10).is_err());
        assert!(paging(None, "", 10).expect("ok").is_none());
    }
}
