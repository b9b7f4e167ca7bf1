//! Write, Read and ReadChanges.
//!
//! Writes are validated completely before the database is touched: the tuple count against
//! `authz.max_tuples_per_write`, every written tuple against the model
//! ([`validate_tuple_for_write`]), every deleted tuple's form (deletes need not fit the current
//! model, as in OpenFGA: tuples written under an older model must stay deletable). The database
//! then applies deletes and writes all or nothing with OpenFGA's duplicate and missing rules.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use trustgate_authz::engine::{
    validate_object, validate_relation_name, validate_tuple_for_write, validate_user,
};
use trustgate_store_api::{
    OnDuplicate, OnMissing, TupleFilter, TupleKey, TupleOperation, WriteOptions,
};

use super::runtime::encode_token;
use super::stores::page_query;
use super::wire::{
    Consistency, PageQuery, PartialTupleKey, ReadChangesResponse, ReadRequest, ReadResponse,
    TupleChangeJson, TupleJson, WriteRequest, WriteResponse, timestamp,
};
use super::{CONSISTENCY_HEADER, FgaError, FgaJson, check_store_id, continuation, page_size};
use crate::AppState;
use crate::auth::AdminPrincipal;

/// Default page size of Read and ReadChanges (OpenFGA's).
const DEFAULT_PAGE: u32 = 50;
/// Largest page size of Read and ReadChanges (OpenFGA's).
const MAX_PAGE: u32 = 100;

fn on_duplicate(s: &str) -> Result<OnDuplicate, FgaError> {
    match s {
        "" | "error" => Ok(OnDuplicate::Error),
        "ignore" => Ok(OnDuplicate::Ignore),
        _ => Err(FgaError::validation(
            "invalid WriteRequestWrites.OnDuplicate: value must be in list [error ignore]",
        )),
    }
}

fn on_missing(s: &str) -> Result<OnMissing, FgaError> {
    match s {
        "" | "error" => Ok(OnMissing::Error),
        "ignore" => Ok(OnMissing::Ignore),
        _ => Err(FgaError::validation(
            "invalid WriteRequestDeletes.OnMissing: value must be in list [error ignore]",
        )),
    }
}

/// A deleted tuple must be well formed; it need not fit the current model.
fn check_delete(t: &PartialTupleKey) -> Result<(), FgaError> {
    let invalid = |reason: String| {
        FgaError::bad_request(
            "invalid_tuple",
            format!(
                "Invalid tuple '{}#{}@{}'. Reason: {reason}",
                t.object, t.relation, t.user
            ),
        )
    };
    validate_user(&t.user).map_err(|e| invalid(e.to_string()))?;
    validate_object(&t.object).map_err(|e| invalid(e.to_string()))?;
    if !validate_relation_name(&t.relation) {
        return Err(invalid("the 'relation' field is malformed".to_owned()));
    }
    Ok(())
}

/// `POST /stores/{store_id}/write`.
pub async fn write(
    _admin: AdminPrincipal,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    FgaJson(req): FgaJson<WriteRequest>,
) -> Result<Response, FgaError> {
    check_store_id(&store_id)?;
    let writes = req.writes.unwrap_or_default();
    let deletes = req.deletes.unwrap_or_default();
    let total = writes.tuple_keys.len() + deletes.tuple_keys.len();
    let limit = state.config.authz.max_tuples_per_write;
    if total > limit {
        return Err(FgaError::exceeded_entity_limit("write operations", limit));
    }
    if total == 0 {
        return Err(FgaError::bad_request(
            "invalid_write_input",
            "Invalid input. Make sure you provide at least one write or delete",
        ));
    }
    let options = WriteOptions {
        on_duplicate: on_duplicate(&writes.on_duplicate)?,
        on_missing: on_missing(&deletes.on_missing)?,
    };
    if state.store.get_fga_store(&store_id).await?.is_none() {
        return Err(FgaError::store_not_found());
    }
    if !writes.tuple_keys.is_empty() {
        let ts = state
            .fga
            .type_system(
                &store_id,
                &req.authorization_model_id,
                Consistency::HigherConsistency,
            )
            .await?;
        for t in &writes.tuple_keys {
            validate_tuple_for_write(&ts, t)?;
        }
    }
    for t in &deletes.tuple_keys {
        check_delete(t)?;
    }
    let write_records: &[TupleKey] = &writes.tuple_keys;
    let delete_records: Vec<TupleKey> = deletes
        .tuple_keys
        .iter()
        .map(|t| TupleKey::new(t.object.clone(), t.relation.clone(), t.user.clone()))
        .collect();
    let outcome = state
        .store
        .write_tuples(
            &store_id,
            write_records,
            &delete_records,
            options,
            state.clock.now(),
        )
        .await?;
    state.fga.after_write(&store_id, outcome.seq).await?;
    let token = encode_token(&store_id, outcome.seq);
    let mut response = Json(WriteResponse {
        consistency_token: token.clone(),
    })
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&token) {
        response.headers_mut().insert(CONSISTENCY_HEADER, value);
    }
    Ok(response)
}

/// The store filter of a Read request, with OpenFGA's rules: no key (or an empty one) reads
/// everything; otherwise the object's type is required, and without an object id the user is.
fn read_filter(key: Option<&PartialTupleKey>) -> Result<TupleFilter, FgaError> {
    let Some(key) =
        key.filter(|k| !(k.object.is_empty() && k.relation.is_empty() && k.user.is_empty()))
    else {
        return Ok(TupleFilter::default());
    };
    let (object_type, object_id) = match key.object.split_once(':') {
        Some((t, id)) => (t, id),
        None => (key.object.as_str(), ""),
    };
    if object_type.is_empty() || (object_id.is_empty() && key.user.is_empty()) {
        return Err(FgaError::validation(
            "the 'tuple_key' field was provided but the object type field is required and both the object id and user fields must be provided",
        ));
    }
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(TupleFilter {
        object_type: some(object_type),
        object_id: some(object_id),
        relation: some(&key.relation),
        user: some(&key.user),
    })
}

/// `POST /stores/{store_id}/read`: from the database, so always current.
pub async fn read(
    _admin: AdminPrincipal,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    FgaJson(req): FgaJson<ReadRequest>,
) -> Result<Json<ReadResponse>, FgaError> {
    check_store_id(&store_id)?;
    let filter = read_filter(req.tuple_key.as_ref())?;
    let size = page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE, "ReadRequest")?;
    let (tuples, next) = state
        .store
        .read_tuples(
            &store_id,
            &filter,
            size,
            continuation(Some(&req.continuation_token)),
        )
        .await?;
    Ok(Json(ReadResponse {
        tuples: tuples
            .into_iter()
            .map(|t| TupleJson {
                key: t.tuple,
                timestamp: timestamp(t.timestamp),
            })
            .collect(),
        continuation_token: next.unwrap_or_default(),
    }))
}

/// `GET /stores/{store_id}/changes`.
pub async fn changes(
    _admin: AdminPrincipal,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ReadChangesResponse>, FgaError> {
    check_store_id(&store_id)?;
    let q = page_query(query)?;
    let size = page_size(q.page_size, DEFAULT_PAGE, MAX_PAGE, "ReadChangesRequest")?;
    let start_time = match q.start_time.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
            FgaError::validation(format!(
                "invalid ReadChangesRequest.StartTime: '{}' is not an RFC 3339 time",
                super::shorten(s)
            ))
        })?),
    };
    let object_type = q.object_type.as_deref().filter(|t| !t.is_empty());
    let (changes, next) = state
        .store
        .read_changes(
            &store_id,
            object_type,
            start_time,
            size,
            continuation(q.continuation_token.as_deref()),
        )
        .await?;
    Ok(Json(ReadChangesResponse {
        changes: changes
            .into_iter()
            .map(|c| TupleChangeJson {
                operation: match c.operation {
                    TupleOperation::Write => "TUPLE_OPERATION_WRITE",
                    TupleOperation::Delete => "TUPLE_OPERATION_DELETE",
                },
                tuple_key: c.tuple,
                timestamp: timestamp(c.timestamp),
            })
            .collect(),
        continuation_token: next,
    }))
}
