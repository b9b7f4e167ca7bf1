//! Write, Read and ReadChanges: OpenFGA's wire forms of [`trustgate_pdp::Pdp::write`],
//! [`trustgate_pdp::Pdp::read`] and [`trustgate_pdp::Pdp::changes`] (which validate writes
//! against the model, apply them all or nothing and bring the index up to date), and
//! trustgate's bulk import ([`trustgate_pdp::Pdp::import`]).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use trustgate_pdp::{OnDuplicate, OnMissing, ReadFilter, TupleKey, TupleOperation, TupleWrite};

use super::stores::page_query;
use super::wire::{
    ImportRequest, ImportResponse, PageQuery, ReadChangesResponse, ReadRequest, ReadResponse,
    TupleChangeJson, TupleJson, WriteRequest, WriteResponse, timestamp,
};
use super::{CONSISTENCY_HEADER, FgaError, FgaJson, ImportJson, check_store_id, page};
use crate::AppState;
use crate::auth::{Authorized, StoreReader, StoreWriter};

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

/// `POST /stores/{store_id}/write`.
pub async fn write(
    _caller: Authorized<StoreWriter>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    FgaJson(req): FgaJson<WriteRequest>,
) -> Result<Response, FgaError> {
    check_store_id(&store_id)?;
    let writes = req.writes.unwrap_or_default();
    let deletes = req.deletes.unwrap_or_default();
    let on_duplicate = on_duplicate(&writes.on_duplicate)?;
    let on_missing = on_missing(&deletes.on_missing)?;
    let deletes: Vec<TupleKey> = deletes
        .tuple_keys
        .into_iter()
        .map(|t| TupleKey::new(t.object, t.relation, t.user))
        .collect();
    let written = state
        .pdp
        .write(
            &store_id,
            &TupleWrite {
                model_id: Some(&req.authorization_model_id),
                writes: &writes.tuple_keys,
                deletes: &deletes,
                on_duplicate,
                on_missing,
            },
        )
        .await?;
    let token = written.token.into_string();
    let header = HeaderValue::from_str(&token).ok();
    let mut response = Json(WriteResponse {
        consistency_token: token,
    })
    .into_response();
    if let Some(value) = header {
        response.headers_mut().insert(CONSISTENCY_HEADER, value);
    }
    Ok(response)
}

/// `POST /stores/{store_id}/import`: `{"tuple_keys": [...], "authorization_model_id"?}`, every
/// tuple validated before anything is written (a 400 writes nothing), then written in
/// transactions of [`trustgate_pdp::IMPORT_BATCH`]; tuples that exist identically are skipped
/// and counted, so a failed import can be sent again. Answers
/// `{"written", "existing", "consistency_token"}`.
pub async fn import(
    _caller: Authorized<StoreWriter>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    ImportJson(req): ImportJson<ImportRequest>,
) -> Result<Response, FgaError> {
    check_store_id(&store_id)?;
    let imported = state
        .pdp
        .import(&store_id, Some(&req.authorization_model_id), req.tuple_keys)
        .await?;
    let token = imported.token.into_string();
    let header = HeaderValue::from_str(&token).ok();
    let mut response = Json(ImportResponse {
        written: imported.written,
        existing: imported.existing,
        consistency_token: token,
    })
    .into_response();
    if let Some(value) = header {
        response.headers_mut().insert(CONSISTENCY_HEADER, value);
    }
    Ok(response)
}

/// `POST /stores/{store_id}/read`: from the database, so always current.
pub async fn read(
    _caller: Authorized<StoreReader>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    FgaJson(req): FgaJson<ReadRequest>,
) -> Result<Json<ReadResponse>, FgaError> {
    check_store_id(&store_id)?;
    let page = page(req.page_size, Some(&req.continuation_token), "ReadRequest")?;
    let filter = req.tuple_key.as_ref().map(|k| ReadFilter {
        object: &k.object,
        relation: &k.relation,
        user: &k.user,
    });
    let tuples = state.pdp.read(&store_id, filter, page).await?;
    Ok(Json(ReadResponse {
        tuples: tuples
            .items
            .into_iter()
            .map(|t| TupleJson {
                key: t.tuple,
                timestamp: timestamp(t.timestamp),
            })
            .collect(),
        continuation_token: tuples.continuation_token.unwrap_or_default(),
    }))
}

/// `GET /stores/{store_id}/changes`.
pub async fn changes(
    _caller: Authorized<StoreReader>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ReadChangesResponse>, FgaError> {
    check_store_id(&store_id)?;
    let q = page_query(query)?;
    let page = page(
        q.page_size,
        q.continuation_token.as_deref(),
        "ReadChangesRequest",
    )?;
    let start_time = match q.start_time.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
            FgaError::validation(format!(
                "invalid ReadChangesRequest.StartTime: '{}' is not an RFC 3339 time",
                super::shorten(s)
            ))
        })?),
    };
    let changes = state
        .pdp
        .changes(&store_id, q.object_type.as_deref(), start_time, page)
        .await?;
    Ok(Json(ReadChangesResponse {
        changes: changes
            .changes
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
        continuation_token: changes.continuation_token,
    }))
}
