//! Stores and authorization models.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Map, Value};
use trustgate_pdp::{AuthorizationModel, StoredModel};

use super::wire::{
    CreateStoreRequest, ListModelsResponse, ListStoresResponse, PageQuery, ReadModelResponse,
    StoreJson, WriteModelResponse,
};
use super::{FgaError, FgaJson, check_store_id, page};
use crate::AppState;
use trustgate_pdp::system::ReadableStores;

use crate::auth::{Authorized, Caller, StoreAdmin, StoreReader, SystemAdmin};

/// The query of a paged GET, with OpenFGA's error for a malformed one.
pub fn page_query(q: Result<Query<PageQuery>, QueryRejection>) -> Result<PageQuery, FgaError> {
    q.map(|Query(q)| q)
        .map_err(|e| FgaError::validation(format!("invalid query: {}", e.body_text())))
}

/// `POST /stores`.
pub async fn create(
    _caller: Authorized<SystemAdmin>,
    State(state): State<AppState>,
    FgaJson(req): FgaJson<CreateStoreRequest>,
) -> Result<Response, FgaError> {
    let store = state.pdp.create_store(&req.name).await?;
    Ok((StatusCode::CREATED, Json(StoreJson::from(&store))).into_response())
}

/// `GET /stores` (`?name=` lists only the stores of exactly that name).
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ListStoresResponse>, FgaError> {
    let q = page_query(query)?;
    let page = page(
        q.page_size,
        q.continuation_token.as_deref(),
        "ListStoresRequest",
    )?;
    let name = q.name.as_deref().filter(|n| !n.is_empty());
    let subject = caller.subject();
    let readable = state.access.readable_stores(caller.asker(&subject)).await?;
    let ReadableStores::Only(ids) = readable else {
        let stores = state.pdp.list_stores(page, name).await?;
        return Ok(Json(ListStoresResponse {
            stores: stores.items.iter().map(StoreJson::from).collect(),
            continuation_token: stores.continuation_token.unwrap_or_default(),
        }));
    };
    // A principal limited to some stores sees exactly those (ids in order; the continuation
    // token is the last id shown).
    let after = page.continuation_token.filter(|t| !t.is_empty());
    let mut stores = Vec::new();
    let mut more = false;
    for id in ids
        .iter()
        .filter(|id| after.is_none_or(|a| id.as_str() > a))
    {
        if stores.len() == page.size as usize {
            more = true;
            break;
        }
        match state.pdp.get_store(id).await {
            Ok(store) if name.is_none_or(|n| store.name == n) => stores.push(store),
            Ok(_) => {}
            Err(trustgate_pdp::PdpError::StoreNotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let continuation_token = if more {
        stores.last().map(|s| s.id.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(Json(ListStoresResponse {
        stores: stores.iter().map(StoreJson::from).collect(),
        continuation_token,
    }))
}

/// `GET /stores/{store_id}`.
pub async fn get(
    _caller: Authorized<StoreReader>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
) -> Result<Json<StoreJson>, FgaError> {
    check_store_id(&store_id)?;
    let store = state.pdp.get_store(&store_id).await?;
    Ok(Json(StoreJson::from(&store)))
}

/// `DELETE /stores/{store_id}`: 204, or 404 if it does not exist (any more).
pub async fn delete(
    _caller: Authorized<StoreAdmin>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
) -> Result<StatusCode, FgaError> {
    check_store_id(&store_id)?;
    state.pdp.delete_store(&store_id).await?;
    // Roles on a deleted store would otherwise outlive it in the system store.
    state.access.forget_store(&store_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /stores/{store_id}/authorization-models`: validates and stores an immutable model.
pub async fn write_model(
    _caller: Authorized<StoreAdmin>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    FgaJson(body): FgaJson<Value>,
) -> Result<Response, FgaError> {
    check_store_id(&store_id)?;
    let model: AuthorizationModel = serde_json::from_value(body)
        .map_err(|e| FgaError::validation(format!("invalid authorization model: {e}")))?;
    let id = state.pdp.write_model(&store_id, model).await?;
    Ok((
        StatusCode::CREATED,
        Json(WriteModelResponse {
            authorization_model_id: id,
        }),
    )
        .into_response())
}

/// A stored model as OpenFGA returns it: `id` first, `conditions` always present.
pub fn model_json(stored: StoredModel) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(stored.id));
    if let Value::Object(fields) = stored.model_json {
        for (k, v) in fields {
            if k != "id" {
                out.insert(k, v);
            }
        }
    }
    out.entry("schema_version")
        .or_insert_with(|| Value::String(stored.schema_version));
    out.entry("type_definitions")
        .or_insert_with(|| Value::Array(Vec::new()));
    out.entry("conditions")
        .or_insert_with(|| Value::Object(Map::new()));
    Value::Object(out)
}

/// `GET /stores/{store_id}/authorization-models`: newest first.
pub async fn list_models(
    _caller: Authorized<StoreReader>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ListModelsResponse>, FgaError> {
    check_store_id(&store_id)?;
    let q = page_query(query)?;
    let page = page(
        q.page_size,
        q.continuation_token.as_deref(),
        "ReadAuthorizationModelsRequest",
    )?;
    let models = state.pdp.list_models(&store_id, page).await?;
    Ok(Json(ListModelsResponse {
        authorization_models: models.items.into_iter().map(model_json).collect(),
        continuation_token: models.continuation_token.unwrap_or_default(),
    }))
}

/// `GET /stores/{store_id}/authorization-models/{model_id}`.
pub async fn read_model(
    _caller: Authorized<StoreReader>,
    State(state): State<AppState>,
    Path((store_id, model_id)): Path<(String, String)>,
) -> Result<Json<ReadModelResponse>, FgaError> {
    check_store_id(&store_id)?;
    if !trustgate_core::id::is_ulid(&model_id) {
        return Err(FgaError::validation(format!(
            "invalid ReadAuthorizationModelRequest.Id: value does not match regex pattern \"^[ABCDEFGHJKMNPQRSTVWXYZ0-9]{{26}}$\" (got '{}')",
            super::shorten(&model_id)
        )));
    }
    let stored = state.pdp.get_model(&store_id, &model_id).await?;
    Ok(Json(ReadModelResponse {
        authorization_model: model_json(stored),
    }))
}
