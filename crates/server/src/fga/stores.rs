//! Stores and authorization models.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Map, Value};
use trustgate_authz::engine::TypeSystem;
use trustgate_authz::model::AuthorizationModel;
use trustgate_authz::validate::validate_json_model;
use trustgate_store_api::StoredModel;

use super::wire::{
    CreateStoreRequest, ListModelsResponse, ListStoresResponse, PageQuery, ReadModelResponse,
    StoreJson, WriteModelResponse,
};
use super::{FgaError, FgaJson, check_store_id, continuation, page_size};
use crate::AppState;
use crate::auth::AdminPrincipal;

/// Default page size of store and model listings (OpenFGA's).
const DEFAULT_PAGE: u32 = 50;
/// Largest page size of store and model listings (OpenFGA's).
const MAX_PAGE: u32 = 100;
/// The most type definitions one model may have (OpenFGA's default).
pub const MAX_TYPES_PER_MODEL: usize = 100;

/// The query of a paged GET, with OpenFGA's error for a malformed one.
pub fn page_query(q: Result<Query<PageQuery>, QueryRejection>) -> Result<PageQuery, FgaError> {
    q.map(|Query(q)| q)
        .map_err(|e| FgaError::validation(format!("invalid query: {}", e.body_text())))
}

/// `POST /stores`.
pub async fn create(
    _admin: AdminPrincipal,
    State(state): State<AppState>,
    FgaJson(req): FgaJson<CreateStoreRequest>,
) -> Result<Response, FgaError> {
    let n = req.name.chars().count();
    if !(3..=64).contains(&n) || req.name.chars().any(char::is_control) {
        return Err(FgaError::validation(
            "invalid CreateStoreRequest.Name: value does not match regex pattern \"^[\\\\w\\\\d\\\\s./_-]{3,64}$\"",
        ));
    }
    let now = state.clock.now();
    let id = trustgate_core::id::new_ulid(now);
    let store = state.store.create_fga_store(&id, &req.name, now).await?;
    Ok((StatusCode::CREATED, Json(StoreJson::from(&store))).into_response())
}

/// `GET /stores`.
pub async fn list(
    _admin: AdminPrincipal,
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ListStoresResponse>, FgaError> {
    let q = page_query(query)?;
    let size = page_size(q.page_size, DEFAULT_PAGE, MAX_PAGE, "ListStoresRequest")?;
    let (stores, next) = state
        .store
        .list_fga_stores(size, continuation(q.continuation_token.as_deref()))
        .await?;
    Ok(Json(ListStoresResponse {
        stores: stores.iter().map(StoreJson::from).collect(),
        continuation_token: next.unwrap_or_default(),
    }))
}

/// `GET /stores/{store_id}`.
pub async fn get(
    _admin: AdminPrincipal,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
) -> Result<Json<StoreJson>, FgaError> {
    check_store_id(&store_id)?;
    let store = state
        .store
        .get_fga_store(&store_id)
        .await?
        .ok_or_else(FgaError::store_not_found)?;
    Ok(Json(StoreJson::from(&store)))
}

/// `DELETE /stores/{store_id}`: 204, or 404 if it does not exist (any more).
pub async fn delete(
    _admin: AdminPrincipal,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
) -> Result<StatusCode, FgaError> {
    check_store_id(&store_id)?;
    let deleted = state
        .store
        .delete_fga_store(&store_id, state.clock.now())
        .await?;
    state.fga.forget_store(&store_id);
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(FgaError::store_not_found())
    }
}

/// The message of a model OpenFGA refuses.
fn invalid_model(message: impl Into<String>) -> FgaError {
    FgaError::bad_request("invalid_authorization_model", message)
}

/// `POST /stores/{store_id}/authorization-models`: validates and stores an immutable model.
pub async fn write_model(
    _admin: AdminPrincipal,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    FgaJson(body): FgaJson<Value>,
) -> Result<Response, FgaError> {
    check_store_id(&store_id)?;
    let mut model: AuthorizationModel = serde_json::from_value(body)
        .map_err(|e| FgaError::validation(format!("invalid authorization model: {e}")))?;
    model.id = String::new();
    if state.store.get_fga_store(&store_id).await?.is_none() {
        return Err(FgaError::store_not_found());
    }
    if model.type_definitions.len() > MAX_TYPES_PER_MODEL {
        return Err(FgaError::exceeded_entity_limit(
            "type definitions in an authorization model",
            MAX_TYPES_PER_MODEL,
        ));
    }
    if let Err(errors) = validate_json_model(&model) {
        let first = errors
            .errors
            .first()
            .map(|e| e.message.clone())
            .unwrap_or_else(|| errors.to_string());
        return Err(invalid_model(first));
    }
    let model_json = serde_json::to_value(&model).map_err(FgaError::internal)?;
    let now = state.clock.now();
    let floor = state.store.latest_model(&store_id).await?.map(|m| m.id);
    let id = state.fga.next_model_id(now, floor.as_deref());
    model.id = id.clone();
    let ts = TypeSystem::new(model.clone()).map_err(|e| invalid_model(e.to_string()))?;
    state
        .store
        .write_model(&StoredModel {
            id: id.clone(),
            store_id: store_id.clone(),
            schema_version: model.schema_version.clone(),
            model_json,
            created_at: now,
        })
        .await?;
    state.fga.cache_model(&store_id, &id, Arc::new(ts));
    state.fga.model_written(&store_id, &id);
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
    _admin: AdminPrincipal,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ListModelsResponse>, FgaError> {
    check_store_id(&store_id)?;
    let q = page_query(query)?;
    let size = page_size(
        q.page_size,
        DEFAULT_PAGE,
        MAX_PAGE,
        "ReadAuthorizationModelsRequest",
    )?;
    let (models, next) = state
        .store
        .list_models(
            &store_id,
            size,
            continuation(q.continuation_token.as_deref()),
        )
        .await?;
    Ok(Json(ListModelsResponse {
        authorization_models: models.into_iter().map(model_json).collect(),
        continuation_token: next.unwrap_or_default(),
    }))
}

/// `GET /stores/{store_id}/authorization-models/{model_id}`.
pub async fn read_model(
    _admin: AdminPrincipal,
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
    match state.store.get_model(&store_id, &model_id).await? {
        Some(stored) => Ok(Json(ReadModelResponse {
            authorization_model: model_json(stored),
        })),
        None if state.store.get_fga_store(&store_id).await?.is_none() => {
            Err(FgaError::store_not_found())
        }
        None => Err(FgaError::model_not_found(&model_id)),
    }
}
