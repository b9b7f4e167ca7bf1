//! Validation, decoding and continuation tokens of relationship records, shared by the backends.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use trustgate_store_api::StoreError;
pub(crate) use trustgate_store_api::relationships::*;

/// The longest continuation token the store tries to decode.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

// ---------------------------------------------------------------------------------------------
// Validation shared by the backends.

pub(crate) fn store_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("store {}", shorten(id)))
}

/// At most 80 characters of `s`, for error messages that echo input.
pub(crate) fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Checks a field that is stored: non-empty, bounded, no NUL (PostgreSQL cannot store it).
pub(crate) fn check_field(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.len() > MAX_FIELD_BYTES {
        return Err(format!(
            "{what} is {} bytes long, at most {MAX_FIELD_BYTES} are accepted",
            value.len()
        ));
    }
    if value.contains('\0') {
        return Err(format!("{what} must not contain NUL characters"));
    }
    Ok(())
}

pub(crate) fn check_input(what: &str, value: &str) -> Result<(), StoreError> {
    check_field(what, value).map_err(StoreError::InvalidInput)
}

/// JSON text (`serde_json::to_string` of the value), refused if larger than `max` or containing
/// NUL (PostgreSQL's JSONB cannot).
pub(crate) fn json_text(
    what: &str,
    serialized: serde_json::Result<String>,
    max: usize,
) -> Result<String, String> {
    let text = serialized.map_err(|e| format!("{what} is not JSON: {e}"))?;
    if text.len() > max {
        return Err(format!(
            "{what} is {} bytes of JSON, at most {max} are accepted",
            text.len()
        ));
    }
    if text.contains("\\u0000") {
        return Err(format!("{what} must not contain NUL characters"));
    }
    Ok(text)
}

/// Checks an object (`type:id`) whose attributes are stored.
pub(crate) fn check_attribute_object(object: &str) -> Result<(), StoreError> {
    let Some((object_type, object_id)) = object.split_once(':') else {
        return Err(StoreError::InvalidInput(format!(
            "object `{}` is not of the form type:id",
            shorten(object)
        )));
    };
    check_input("object type", object_type)?;
    check_input("object id", object_id)
}

/// The JSON text of an object's attributes, refused if larger than
/// [`trustgate_store_api::MAX_OBJECT_ATTRIBUTES_BYTES`].
pub(crate) fn attributes_text(attributes: &Map<String, Value>) -> Result<String, StoreError> {
    json_text(
        "the attributes",
        serde_json::to_string(attributes),
        trustgate_store_api::MAX_OBJECT_ATTRIBUTES_BYTES,
    )
    .map_err(StoreError::InvalidInput)
}

/// Stored attribute JSON back to an object.
pub(crate) fn attributes_from_text(text: &str) -> Result<Map<String, Value>, StoreError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(StoreError::Corrupt(
            "stored attributes are not a JSON object".to_owned(),
        )),
    }
}

pub(crate) fn check_page_size(page_size: u32) -> Result<i64, StoreError> {
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(StoreError::InvalidInput(format!(
            "page size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}"
        )));
    }
    Ok(i64::from(page_size))
}

/// A tuple checked for storage, with its object split into type and id.
#[derive(Debug)]
pub(crate) struct CheckedTuple<'a> {
    pub tuple: &'a TupleKey,
    pub object_type: &'a str,
    pub object_id: &'a str,
    /// The context as JSON text (`None` without a context).
    pub context_json: Option<String>,
}

pub(crate) fn check_tuple(t: &TupleKey) -> Result<CheckedTuple<'_>, TupleWriteError> {
    let describe = |reason: String| {
        TupleWriteError::InvalidInput(format!(
            "{reason} (user: '{}', relation: '{}', object: '{}')",
            shorten(&t.user),
            shorten(&t.relation),
            shorten(&t.object)
        ))
    };
    check_field("object", &t.object).map_err(describe)?;
    check_field("relation", &t.relation).map_err(describe)?;
    check_field("user", &t.user).map_err(describe)?;
    let (object_type, object_id) = match t.object.split_once(':') {
        Some((ty, id)) if !ty.is_empty() && !id.is_empty() => (ty, id),
        _ => return Err(describe("object must have the form type:id".into())),
    };
    if let Some(name) = t.condition_name() {
        check_field("condition name", name).map_err(describe)?;
    }
    let context_json = t
        .condition_context()
        .map(|c| {
            json_text(
                "condition context",
                serde_json::to_string(c),
                MAX_CONTEXT_BYTES,
            )
        })
        .transpose()
        .map_err(describe)?;
    Ok(CheckedTuple {
        tuple: t,
        object_type,
        object_id,
        context_json,
    })
}

/// Checks every tuple of a write request and that no identity appears twice.
pub(crate) fn check_write_request<'a>(
    writes: &'a [TupleKey],
    deletes: &'a [TupleKey],
) -> Result<(Vec<CheckedTuple<'a>>, Vec<CheckedTuple<'a>>), TupleWriteError> {
    let mut seen: HashSet<(&str, &str, &str)> =
        HashSet::with_capacity(writes.len() + deletes.len());
    let mut check_all = |tuples: &'a [TupleKey]| -> Result<Vec<CheckedTuple<'a>>, TupleWriteError> {
        tuples
            .iter()
            .map(|t| {
                let checked = check_tuple(t)?;
                if !seen.insert((&t.object, &t.relation, &t.user)) {
                    return Err(TupleWriteError::DuplicateInRequest {
                        user: t.user.clone(),
                        relation: t.relation.clone(),
                        object: t.object.clone(),
                    });
                }
                Ok(checked)
            })
            .collect()
    };
    let deletes = check_all(deletes)?;
    let writes = check_all(writes)?;
    Ok((writes, deletes))
}

pub(crate) fn check_filter(filter: &TupleFilter) -> Result<(), StoreError> {
    let fields = [
        ("object type", &filter.object_type),
        ("object id", &filter.object_id),
        ("relation", &filter.relation),
        ("user", &filter.user),
    ];
    for (what, value) in fields {
        if let Some(v) = value {
            check_input(what, v)?;
        }
    }
    if filter.object_id.is_some() && filter.object_type.is_none() {
        return Err(StoreError::InvalidInput(
            "an object id filter needs an object type".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_model(model: &StoredModel) -> Result<String, StoreError> {
    check_input("model id", &model.id)?;
    check_input("store id", &model.store_id)?;
    check_input("schema version", &model.schema_version)?;
    json_text(
        "authorization model",
        serde_json::to_string(&model.model_json),
        MAX_MODEL_BYTES,
    )
    .map_err(StoreError::InvalidInput)
}

/// `t` in UTC, truncated to microseconds.
pub(crate) fn normalize_time(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    let micros = t.microsecond();
    t.replace_microsecond(micros).unwrap_or(t)
}

/// Microseconds since the Unix epoch (how SQLite stores changelog times, so they sort).
pub(crate) fn unix_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

pub(crate) fn from_unix_micros(micros: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|e| StoreError::Corrupt(format!("stored time out of range: {e}")))
}

pub(crate) fn operation_from_db(s: &str) -> Result<TupleOperation, StoreError> {
    TupleOperation::parse(s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown tuple operation {s:?}")))
}

pub(crate) fn tuple_from_parts(
    object_type: String,
    object_id: &str,
    relation: String,
    user: String,
    condition_name: Option<String>,
    condition_context: Option<Map<String, Value>>,
) -> TupleKey {
    let mut object = object_type;
    object.push(':');
    object.push_str(object_id);
    TupleKey {
        object,
        relation,
        user,
        condition: condition_name.map(|name| RelationshipCondition {
            name,
            context: condition_context,
        }),
    }
}

pub(crate) fn context_from_text(
    text: Option<&str>,
) -> Result<Option<Map<String, Value>>, StoreError> {
    text.map(|t| {
        serde_json::from_str(t).map_err(|e| {
            StoreError::Corrupt(format!(
                "stored condition context is not a JSON object: {e}"
            ))
        })
    })
    .transpose()
}

// ---------------------------------------------------------------------------------------------
// Continuation tokens: URL-safe base64 of a JSON array of strings whose first element names the
// operation. They are opaque to callers and checked strictly when they come back.

pub(crate) const TOKEN_STORES: &str = "s";
pub(crate) const TOKEN_MODELS: &str = "m";
pub(crate) const TOKEN_TUPLES: &str = "t";
pub(crate) const TOKEN_CHANGES: &str = "c";

pub(crate) fn encode_token(kind: &str, parts: &[&str]) -> String {
    let mut all = Vec::with_capacity(parts.len() + 1);
    all.push(kind);
    all.extend_from_slice(parts);
    // Serializing strings cannot fail.
    let json = serde_json::to_vec(&all).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// The `n` parts of a token of `kind`, or [`StoreError::InvalidContinuationToken`].
pub(crate) fn decode_token(kind: &str, token: &str, n: usize) -> Result<Vec<String>, StoreError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(StoreError::InvalidContinuationToken);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::InvalidContinuationToken)?;
    let mut parts: Vec<String> =
        serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidContinuationToken)?;
    if parts.len() != n + 1 || parts[0] != kind {
        return Err(StoreError::InvalidContinuationToken);
    }
    parts.remove(0);
    Ok(parts)
}

/// The continuation of a changes read: the seq to continue after, bound to store and type.
pub(crate) fn encode_changes_token(store_id: &str, object_type: Option<&str>, seq: i64) -> String {
    encode_token(
        TOKEN_CHANGES,
        &[store_id, object_type.unwrap_or(""), &seq.to_string()],
    )
}

pub(crate) fn decode_changes_token(
    token: &str,
    store_id: &str,
    object_type: Option<&str>,
) -> Result<i64, StoreError> {
    let parts = decode_token(TOKEN_CHANGES, token, 3)?;
    if parts[0] != store_id || parts[1] != object_type.unwrap_or("") {
        return Err(StoreError::InvalidContinuationToken);
    }
    parts[2]
        .parse::<i64>()
        .ok()
        .filter(|s| *s >= 0)
        .ok_or(StoreError::InvalidContinuationToken)
}

/// The continuation of a tuple read: the last key returned, bound to the store.
pub(crate) fn encode_tuples_token(store_id: &str, t: &TupleKey) -> String {
    let (object_type, object_id) = t.object.split_once(':').unwrap_or((&t.object, ""));
    encode_token(
        TOKEN_TUPLES,
        &[store_id, object_type, object_id, &t.relation, &t.user],
    )
}

/// `[object_type, object_id, relation, user]` of a tuple read token.
pub(crate) fn decode_tuples_token(token: &str, store_id: &str) -> Result<[String; 4], StoreError> {
    let parts = decode_token(TOKEN_TUPLES, token, 5)?;
    let mut it = parts.into_iter();
    let mut next = || it.next().ok_or(StoreError::InvalidContinuationToken);
    if next()? != store_id {
        return Err(StoreError::InvalidContinuationToken);
    }
    Ok([next()?, next()?, next()?, next()?])
}

/// The continuation of a model listing: the last model id returned, bound to the store.
pub(crate) fn decode_models_token(token: &str, store_id: &str) -> Result<String, StoreError> {
    let mut parts = decode_token(TOKEN_MODELS, token, 2)?;
    let last = parts.pop().ok_or(StoreError::InvalidContinuationToken)?;
    if parts.pop().as_deref() != Some(store_id) {
        return Err(StoreError::InvalidContinuationToken);
    }
    Ok(last)
}

/// The continuation of a store listing: the last store id returned.
pub(crate) fn decode_stores_token(token: &str) -> Result<String, StoreError> {
    decode_token(TOKEN_STORES, token, 1)?
        .pop()
        .ok_or(StoreError::InvalidContinuationToken)
}

/// Trims a page fetched with one extra row and computes the next token from its last item.
pub(crate) fn finish_page<T>(
    mut items: Vec<T>,
    page_size: i64,
    token_of: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let page = usize::try_from(page_size).unwrap_or(usize::MAX);
    if items.len() > page {
        items.truncate(page);
        let next = items.last().map(token_of);
        (items, next)
    } else {
        (items, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        let t = TupleKey::new("doc:1", "viewer", "user:anne");
        let token = encode_tuples_token("S", &t);
        let parts = decode_tuples_token(&token, "S").expect("decodes");
        assert_eq!(parts, ["doc", "1", "viewer", "user:anne"].map(String::from));
        assert!(matches!(
            decode_tuples_token(&token, "OTHER"),
            Err(StoreError::InvalidContinuationToken)
        ));
        for bad in [
            "",
            "!!!",
            "bm90IGpzb24",
            &encode_token(TOKEN_STORES, &["x"]),
        ] {
            assert!(matches!(
                decode_tuples_token(bad, "S"),
                Err(StoreError::InvalidContinuationToken)
            ));
        }
        let c = encode_changes_token("S", Some("doc"), 7);
        assert_eq!(decode_changes_token(&c, "S", Some("doc")).ok(), Some(7));
        assert!(decode_changes_token(&c, "S", None).is_err());
        let negative = encode_token(TOKEN_CHANGES, &["S", "", "-1"]);
        assert!(decode_changes_token(&negative, "S", None).is_err());
    }

    #[test]
    fn tuples_are_checked() {
        let ok = TupleKey::new("doc:1", "viewer", "user:anne");
        assert!(check_tuple(&ok).is_ok());
        for bad in [
            TupleKey::new("doc", "viewer", "user:anne"),
            TupleKey::new("doc:", "viewer", "user:anne"),
            TupleKey::new(":1", "viewer", "user:anne"),
            TupleKey::new("doc:1", "", "user:anne"),
            TupleKey::new("doc:1", "viewer", ""),
            TupleKey::new("doc:1", "viewer", "user:a\0"),
            TupleKey::new("doc:1", "viewer", "u".repeat(MAX_FIELD_BYTES + 1)),
            ok.clone().with_condition("", None),
        ] {
            assert!(
                matches!(check_tuple(&bad), Err(TupleWriteError::InvalidInput(_))),
                "{bad:?}"
            );
        }
        let mut nul = Map::new();
        nul.insert("k".into(), Value::String("a\0b".into()));
        assert!(check_tuple(&ok.clone().with_condition("c", Some(nul))).is_err());
    }

    #[test]
    fn times_are_truncated_to_micros_in_utc() {
        let t = time::macros::datetime!(2026-01-01 12:00:00.123456789 +02:00);
        let n = normalize_time(t);
        assert_eq!(n.offset(), time::UtcOffset::UTC);
        assert_eq!(n.nanosecond(), 123_456_000);
        assert_eq!(from_unix_micros(unix_micros(n)).ok(), Some(n));
    }
}
