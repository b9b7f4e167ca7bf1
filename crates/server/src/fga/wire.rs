//! The JSON bodies of OpenFGA's HTTP API (v1.8+), field for field.
//!
//! Requests are lenient as OpenFGA's gateway is: unknown fields are ignored, absent optional
//! fields take their defaults, and a request's problems are reported by the handlers with
//! OpenFGA's codes rather than by the deserializer. Responses emit every field OpenFGA emits
//! (`"continuation_token": ""`, `"resolution": ""`), because some SDKs expect them.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use trustgate_pdp::TupleKey;

/// Formats a time as OpenFGA does (RFC 3339, UTC).
pub fn timestamp(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// `consistency` of a query request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// `UNSPECIFIED` (0) or absent: the server's default, [`Consistency::MinimizeLatency`].
    #[default]
    Unspecified,
    /// `MINIMIZE_LATENCY` (100): the in-memory index as the background refresher keeps it.
    MinimizeLatency,
    /// `HIGHER_CONSISTENCY` (200): catch up with the database before answering.
    HigherConsistency,
}

impl From<Consistency> for trustgate_pdp::Consistency {
    fn from(c: Consistency) -> Self {
        match c {
            Consistency::Unspecified | Consistency::MinimizeLatency => {
                trustgate_pdp::Consistency::MinimizeLatency
            }
            Consistency::HigherConsistency => trustgate_pdp::Consistency::HigherConsistency,
        }
    }
}

impl<'de> Deserialize<'de> for Consistency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // protojson accepts an enum by name or by number.
        let v = Value::deserialize(d)?;
        let parsed = match &v {
            Value::Null => Some(Consistency::Unspecified),
            Value::String(s) => match s.as_str() {
                "" | "UNSPECIFIED" | "CONSISTENCY_PREFERENCE_UNSPECIFIED" => {
                    Some(Consistency::Unspecified)
                }
                "MINIMIZE_LATENCY" => Some(Consistency::MinimizeLatency),
                "HIGHER_CONSISTENCY" => Some(Consistency::HigherConsistency),
                _ => None,
            },
            Value::Number(n) => match n.as_u64() {
                Some(0) => Some(Consistency::Unspecified),
                Some(100) => Some(Consistency::MinimizeLatency),
                Some(200) => Some(Consistency::HigherConsistency),
                _ => None,
            },
            _ => None,
        };
        parsed.ok_or_else(|| {
            de::Error::custom(format!(
                "invalid value for enum type openfga.v1.ConsistencyPreference: {v}"
            ))
        })
    }
}

/// Contextual tuples as OpenFGA spells them: `{"tuple_keys": [...]}` (Check, ListObjects,
/// Expand) or a bare array (ListUsers). Both are accepted everywhere.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextualTupleKeys(pub Vec<TupleKey>);

impl<'de> Deserialize<'de> for ContextualTupleKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let keys = match Value::deserialize(d)? {
            Value::Null => return Ok(ContextualTupleKeys::default()),
            Value::Object(mut wrapped) => match wrapped.remove("tuple_keys") {
                None | Some(Value::Null) => return Ok(ContextualTupleKeys::default()),
                Some(keys) => keys,
            },
            bare @ Value::Array(_) => bare,
            _ => {
                return Err(de::Error::custom(
                    "contextual_tuples: expected {\"tuple_keys\": [...]} or an array of tuple keys",
                ));
            }
        };
        serde_json::from_value(keys)
            .map(ContextualTupleKeys)
            .map_err(|e| de::Error::custom(format!("contextual_tuples.tuple_keys: {e}")))
    }
}

/// `null` reads as the default.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Stores

/// `POST /stores`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CreateStoreRequest {
    /// The store's name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
}

/// A store as OpenFGA returns it.
#[derive(Debug, Clone, Serialize)]
pub struct StoreJson {
    /// ULID.
    pub id: String,
    /// Name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// RFC 3339, only for deleted stores (never listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
}

impl From<&trustgate_pdp::FgaStore> for StoreJson {
    fn from(s: &trustgate_pdp::FgaStore) -> Self {
        StoreJson {
            id: s.id.clone(),
            name: s.name.clone(),
            created_at: timestamp(s.created_at),
            updated_at: timestamp(s.updated_at),
            deleted_at: s.deleted_at.map(timestamp),
        }
    }
}

/// `GET /stores`.
#[derive(Debug, Clone, Serialize)]
pub struct ListStoresResponse {
    /// A page of stores, ordered by id.
    pub stores: Vec<StoreJson>,
    /// Empty when there are no more.
    pub continuation_token: String,
}

/// Query of the paged GET routes (`/stores`, `/authorization-models`, `/changes`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PageQuery {
    /// 1..=100; absent: 50.
    pub page_size: Option<i64>,
    /// From the previous page.
    #[serde(default)]
    pub continuation_token: Option<String>,
    /// Changes only: the object type.
    #[serde(default, rename = "type")]
    pub object_type: Option<String>,
    /// Changes only: RFC 3339 time of the first change to return.
    #[serde(default)]
    pub start_time: Option<String>,
    /// ListStores only: list only the stores of exactly this name.
    #[serde(default)]
    pub name: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Models

/// `POST /stores/{id}/authorization-models` response.
#[derive(Debug, Clone, Serialize)]
pub struct WriteModelResponse {
    /// The new model's ULID.
    pub authorization_model_id: String,
}

/// `GET /stores/{id}/authorization-models`.
#[derive(Debug, Clone, Serialize)]
pub struct ListModelsResponse {
    /// Newest first.
    pub authorization_models: Vec<Value>,
    /// Empty when there are no more.
    pub continuation_token: String,
}

/// `GET /stores/{id}/authorization-models/{model_id}`.
#[derive(Debug, Clone, Serialize)]
pub struct ReadModelResponse {
    /// The model with its `id`.
    pub authorization_model: Value,
}

// ---------------------------------------------------------------------------------------------
// Tuples

/// A tuple key without a condition (deletes, read filters, expand).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct PartialTupleKey {
    /// `type:id`, `type:*` or `type:id#relation`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub user: String,
    /// The relation.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relation: String,
    /// `type:id` (for reads also `type:`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub object: String,
}

/// `writes` of a write request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WriteRequestWrites {
    /// The tuples to write.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tuple_keys: Vec<TupleKey>,
    /// `error` (default) or `ignore`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub on_duplicate: String,
}

/// `deletes` of a write request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WriteRequestDeletes {
    /// The tuples to delete.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tuple_keys: Vec<PartialTupleKey>,
    /// `error` (default) or `ignore`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub on_missing: String,
}

/// `POST /stores/{id}/write`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WriteRequest {
    /// Tuples to write.
    #[serde(default)]
    pub writes: Option<WriteRequestWrites>,
    /// Tuples to delete.
    #[serde(default)]
    pub deletes: Option<WriteRequestDeletes>,
    /// The model the writes are validated against; the latest when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorization_model_id: String,
}

/// Write response: OpenFGA's `{}` plus the consistency token (also in the
/// `X-Consistency-Token` header).
#[derive(Debug, Clone, Serialize)]
pub struct WriteResponse {
    /// Opaque; pass it back in `X-Consistency-Token` to read at least this write.
    pub consistency_token: String,
}

/// `POST /stores/{id}/import` (trustgate's own).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImportRequest {
    /// The tuples to write (with their conditions), at most `authz.max_tuples_per_import`.
    pub tuple_keys: Vec<TupleKey>,
    /// The model the tuples are validated against; the latest when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorization_model_id: String,
}

/// Import response; the token is also in the `X-Consistency-Token` header.
#[derive(Debug, Clone, Serialize)]
pub struct ImportResponse {
    /// Tuples written.
    pub written: u64,
    /// Tuples that existed identically and were skipped.
    pub existing: u64,
    /// Opaque; pass it back in `X-Consistency-Token` to read at least this import.
    pub consistency_token: String,
}

/// `POST /stores/{id}/read`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReadRequest {
    /// The filter; absent reads every tuple.
    #[serde(default)]
    pub tuple_key: Option<PartialTupleKey>,
    /// 1..=100; absent: 50.
    #[serde(default)]
    pub page_size: Option<i64>,
    /// From the previous page.
    #[serde(default, deserialize_with = "null_as_default")]
    pub continuation_token: String,
    /// Accepted and ignored: reads always go to the database.
    #[serde(default)]
    pub consistency: Consistency,
}

/// A stored tuple in a read response.
#[derive(Debug, Clone, Serialize)]
pub struct TupleJson {
    /// The tuple.
    pub key: TupleKey,
    /// When it was written (RFC 3339).
    pub timestamp: String,
}

/// Read response.
#[derive(Debug, Clone, Serialize)]
pub struct ReadResponse {
    /// A page of tuples.
    pub tuples: Vec<TupleJson>,
    /// Empty when there are no more.
    pub continuation_token: String,
}

/// One changelog entry.
#[derive(Debug, Clone, Serialize)]
pub struct TupleChangeJson {
    /// The tuple written or deleted.
    pub tuple_key: TupleKey,
    /// `TUPLE_OPERATION_WRITE` or `TUPLE_OPERATION_DELETE`.
    pub operation: &'static str,
    /// RFC 3339.
    pub timestamp: String,
}

/// `GET /stores/{id}/changes`.
#[derive(Debug, Clone, Serialize)]
pub struct ReadChangesResponse {
    /// A page of changes.
    pub changes: Vec<TupleChangeJson>,
    /// Always set: polling with it returns only later changes.
    pub continuation_token: String,
}

// ---------------------------------------------------------------------------------------------
// Queries

/// The checked tuple.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CheckTupleKey {
    /// The user.
    #[serde(default, deserialize_with = "null_as_default")]
    pub user: String,
    /// The relation.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relation: String,
    /// The object.
    #[serde(default, deserialize_with = "null_as_default")]
    pub object: String,
}

/// `POST /stores/{id}/check`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CheckRequest {
    /// Required.
    #[serde(default)]
    pub tuple_key: Option<CheckTupleKey>,
    /// Tuples that hold for this request only.
    #[serde(default)]
    pub contextual_tuples: ContextualTupleKeys,
    /// The model; the latest when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorization_model_id: String,
    /// The condition context.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// Consistency preference.
    #[serde(default)]
    pub consistency: Consistency,
    /// `true`: answer the decision's short reason in `resolution`.
    #[serde(default)]
    pub trace: Option<bool>,
}

/// Check response.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResponse {
    /// The decision.
    pub allowed: bool,
    /// The decision's short reason when the request asked for a `trace`, else empty.
    pub resolution: String,
}

/// `POST /stores/{id}/explain` response.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainResponse {
    /// The decision (false when it could not be decided).
    pub allowed: bool,
    /// Why it could not be decided, as a batch item's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<CheckError>,
    /// The short reason (also the audit trail's).
    pub reason: String,
    /// The steps of the evaluation.
    pub explanation: trustgate_pdp::Step,
    /// Whether steps were left out of `explanation` (it is bounded).
    pub truncated: bool,
}

/// One item of a batch check.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BatchCheckItem {
    /// Required.
    #[serde(default)]
    pub tuple_key: Option<CheckTupleKey>,
    /// Tuples that hold for this item only.
    #[serde(default)]
    pub contextual_tuples: ContextualTupleKeys,
    /// The condition context.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// The caller's id of the item, unique in the request.
    #[serde(default, deserialize_with = "null_as_default")]
    pub correlation_id: String,
}

/// `POST /stores/{id}/batch-check`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BatchCheckRequest {
    /// The checks.
    #[serde(default, deserialize_with = "null_as_default")]
    pub checks: Vec<BatchCheckItem>,
    /// The model; the latest when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorization_model_id: String,
    /// Consistency preference.
    #[serde(default)]
    pub consistency: Consistency,
}

/// The error of one batch item: `{"input_error": "validation_error", "message": "..."}` or
/// `{"internal_error": "internal_error", "message": "..."}`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckError {
    /// OpenFGA's input error code name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_error: Option<&'static str>,
    /// OpenFGA's internal error code name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_error: Option<&'static str>,
    /// The message.
    pub message: String,
}

/// The result of one batch item: `{"allowed": bool}` or `{"error": {...}}`.
#[derive(Debug, Clone, Serialize)]
pub struct BatchCheckSingleResult {
    /// The decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
    /// Or the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<CheckError>,
}

/// Batch check response.
#[derive(Debug, Clone, Serialize)]
pub struct BatchCheckResponse {
    /// Correlation id → result.
    pub result: BTreeMap<String, BatchCheckSingleResult>,
}

/// The tuple key of an expand request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExpandTupleKey {
    /// The relation.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relation: String,
    /// The object.
    #[serde(default, deserialize_with = "null_as_default")]
    pub object: String,
}

/// `POST /stores/{id}/expand`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExpandRequest {
    /// Required.
    #[serde(default)]
    pub tuple_key: Option<ExpandTupleKey>,
    /// The model; the latest when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorization_model_id: String,
    /// Consistency preference.
    #[serde(default)]
    pub consistency: Consistency,
    /// Tuples that hold for this request only.
    #[serde(default)]
    pub contextual_tuples: ContextualTupleKeys,
}

/// `POST /stores/{id}/list-objects`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListObjectsRequest {
    /// The model; the latest when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorization_model_id: String,
    /// The object type.
    #[serde(default, rename = "type", deserialize_with = "null_as_default")]
    pub object_type: String,
    /// The relation.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relation: String,
    /// The user.
    #[serde(default, deserialize_with = "null_as_default")]
    pub user: String,
    /// Tuples that hold for this request only.
    #[serde(default)]
    pub contextual_tuples: ContextualTupleKeys,
    /// The condition context.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// Consistency preference.
    #[serde(default)]
    pub consistency: Consistency,
    /// trustgate extension: page the sorted result (see the module docs).
    #[serde(default)]
    pub page_size: Option<i64>,
    /// trustgate extension: the token of the previous page.
    #[serde(default, deserialize_with = "null_as_default")]
    pub continuation_token: String,
}

/// List-objects response.
#[derive(Debug, Clone, Serialize)]
pub struct ListObjectsResponse {
    /// `type:id` of every object found.
    pub objects: Vec<String>,
    /// trustgate extension, only when paging was asked for: empty when there are no more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
}

/// `{"type": "document", "id": "1"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct FgaObject {
    /// The type.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub object_type: String,
    /// The id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
}

/// A list-users filter `{"type": "user"}` or `{"type": "group", "relation": "member"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserTypeFilter {
    /// The user type.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub user_type: String,
    /// The userset relation, if usersets are asked for.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relation: String,
}

/// `POST /stores/{id}/list-users`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListUsersRequest {
    /// The model; the latest when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub authorization_model_id: String,
    /// Required.
    #[serde(default)]
    pub object: Option<FgaObject>,
    /// The relation.
    #[serde(default, deserialize_with = "null_as_default")]
    pub relation: String,
    /// What kinds of users to return.
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_filters: Vec<UserTypeFilter>,
    /// Tuples that hold for this request only.
    #[serde(default)]
    pub contextual_tuples: ContextualTupleKeys,
    /// The condition context.
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    /// Consistency preference.
    #[serde(default)]
    pub consistency: Consistency,
    /// trustgate extension: page the sorted result.
    #[serde(default)]
    pub page_size: Option<i64>,
    /// trustgate extension: the token of the previous page.
    #[serde(default, deserialize_with = "null_as_default")]
    pub continuation_token: String,
}

/// A userset user `{"type": "group", "id": "eng", "relation": "member"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsersetUser {
    /// The type.
    #[serde(rename = "type")]
    pub user_type: String,
    /// The id.
    pub id: String,
    /// The relation.
    pub relation: String,
}

/// A typed wildcard `{"type": "user"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypedWildcard {
    /// The type.
    #[serde(rename = "type")]
    pub user_type: String,
}

/// One user of a list-users response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FgaUser {
    /// `{"object": {"type", "id"}}`.
    Object(FgaObject),
    /// `{"userset": {"type", "id", "relation"}}`.
    Userset(UsersetUser),
    /// `{"wildcard": {"type"}}`.
    Wildcard(TypedWildcard),
}

impl FgaUser {
    /// The wire form of an engine user string (`user:anne`, `user:*`, `group:eng#member`).
    pub fn from_user_string(s: &str) -> Option<FgaUser> {
        let (object, relation) = match s.split_once('#') {
            Some((o, r)) => (o, Some(r)),
            None => (s, None),
        };
        let (t, id) = object.split_once(':')?;
        Some(match relation {
            Some(r) => FgaUser::Userset(UsersetUser {
                user_type: t.to_owned(),
                id: id.to_owned(),
                relation: r.to_owned(),
            }),
            None if id == "*" => FgaUser::Wildcard(TypedWildcard {
                user_type: t.to_owned(),
            }),
            None => FgaUser::Object(FgaObject {
                object_type: t.to_owned(),
                id: id.to_owned(),
            }),
        })
    }

    /// The engine's string form.
    pub fn to_user_string(&self) -> String {
        match self {
            FgaUser::Object(o) => format!("{}:{}", o.object_type, o.id),
            FgaUser::Userset(u) => format!("{}:{}#{}", u.user_type, u.id, u.relation),
            FgaUser::Wildcard(w) => format!("{}:*", w.user_type),
        }
    }
}

/// List-users response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListUsersResponse {
    /// The users found.
    pub users: Vec<FgaUser>,
    /// trustgate extension, only when paging was asked for: empty when there are no more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contextual_tuples_take_both_shapes() {
        let wrapped: ContextualTupleKeys = serde_json::from_str(
            r#"{"tuple_keys":[{"user":"user:a","relation":"r","object":"d:1"}]}"#,
        )
        .expect("wrapped");
        let bare: ContextualTupleKeys =
            serde_json::from_str(r#"[{"user":"user:a","relation":"r","object":"d:1"}]"#)
                .expect("bare");
        assert_eq!(wrapped, bare);
        assert_eq!(wrapped.0.len(), 1);
        let none: ContextualTupleKeys = serde_json::from_str("null").expect("null");
        assert!(none.0.is_empty());
    }

    #[test]
    fn consistency_by_name_or_number() {
        for (text, want) in [
            (r#""HIGHER_CONSISTENCY""#, Consistency::HigherConsistency),
            ("200", Consistency::HigherConsistency),
            (r#""MINIMIZE_LATENCY""#, Consistency::MinimizeLatency),
            (r#""UNSPECIFIED""#, Consistency::Unspecified),
        ] {
            assert_eq!(serde_json::from_str::<Consistency>(text).expect(text), want);
        }
        assert!(serde_json::from_str::<Consistency>(r#""FAST""#).is_err());
    }

    #[test]
    fn users_round_trip() {
        for s in ["user:anne", "user:*", "group:eng#member"] {
            let u = FgaUser::from_user_string(s).expect(s);
            assert_eq!(u.to_user_string(), s);
        }
        let json =
            serde_json::to_value(FgaUser::from_user_string("group:eng#member")).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"userset": {"type": "group", "id": "eng", "relation": "member"}})
        );
        assert_eq!(
            serde_json::to_value(FgaUser::from_user_string("user:*")).expect("json"),
            serde_json::json!({"wildcard": {"type": "user"}})
        );
    }
}
