//! Stored object attributes (a trustgate addition, ignored by OpenFGA clients):
//! `PUT/GET/DELETE /stores/{store_id}/attributes/{object}`, [`trustgate_pdp::Pdp::put_attributes`]
//! and friends over HTTP.
//!
//! An object (`type:id`, any object, subjects such as `user:alice` included) has one JSON
//! object of attributes (at most [`trustgate_store_api::MAX_OBJECT_ATTRIBUTES_BYTES`] of JSON),
//! which AuthZEN evaluations merge into `subject.properties` / `resource.properties` (see
//! [`trustgate_pdp::attributes`]). `PUT` replaces it (writer on the store), `GET` reads it
//! (`{}` when none is stored; reader), `DELETE` removes it (writer; 204 whether or not there
//! was one). Errors are the OpenFGA API's: 400 `validation_error` for a body that is not a
//! JSON object, an oversized one or an object that is not `type:id`, 401, 403, 404
//! `store_id_not_found`.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{FgaError, FgaJson, check_store_id};
use crate::AppState;
use crate::auth::{Authorized, StoreReader, StoreWriter};

/// The answer of `GET` and `PUT`.
#[derive(Debug, Serialize)]
pub struct AttributesResponse {
    /// The object.
    pub object: String,
    /// Its stored attributes.
    pub attributes: Map<String, Value>,
}

/// `PUT /stores/{store_id}/attributes/{object}`: replaces the object's attributes.
pub async fn put(
    _caller: Authorized<StoreWriter>,
    State(state): State<AppState>,
    Path((store_id, object)): Path<(String, String)>,
    FgaJson(body): FgaJson<Value>,
) -> Result<Json<AttributesResponse>, FgaError> {
    check_store_id(&store_id)?;
    let Value::Object(attributes) = body else {
        return Err(FgaError::validation("the attributes must be a JSON object"));
    };
    state
        .pdp
        .put_attributes(&store_id, &object, &attributes)
        .await?;
    Ok(Json(AttributesResponse { object, attributes }))
}

/// `GET /stores/{store_id}/attributes/{object}`: the object's attributes (`{}` if none).
pub async fn get(
    _caller: Authorized<StoreReader>,
    State(state): State<AppState>,
    Path((store_id, object)): Path<(String, String)>,
) -> Result<Json<AttributesResponse>, FgaError> {
    check_store_id(&store_id)?;
    let attributes = state.pdp.get_attributes(&store_id, &object).await?;
    Ok(Json(AttributesResponse { object, attributes }))
}

/// `DELETE /stores/{store_id}/attributes/{object}`: removes the object's attributes.
pub async fn delete(
    _caller: Authorized<StoreWriter>,
    State(state): State<AppState>,
    Path((store_id, object)): Path<(String, String)>,
) -> Result<StatusCode, FgaError> {
    check_store_id(&store_id)?;
    state.pdp.delete_attributes(&store_id, &object).await?;
    Ok(StatusCode::NO_CONTENT)
}
