//! Validation of request fields and tuples against a model, with OpenFGA's rules and codes.
//!
//! String forms (OpenFGA `pkg/tuple`): an object is `type:id` with exactly one `:`, no `#` and
//! no whitespace, at most 256 bytes, and its id is not the wildcard `*`; a relation is 1..=50
//! bytes without `:`, `#`, `@` or whitespace; a user (at most 512 bytes) is an object, a typed
//! wildcard `type:*`, or a userset `type:id#relation` (a wildcard userset `type:*#rel` is
//! rejected: it names no set OpenFGA can evaluate).
//!
//! Which code a failure gets depends on where the string came from, as in OpenFGA: a written or
//! contextual tuple that does not fit the model is `invalid_tuple` (2027, contextual tuples
//! always); an unknown type or relation in a Write is 2021 / 2022; anything wrong with Check's
//! own tuple is `validation_error` (2000).

use crate::tuple::{ObjectRef, TupleKey, UserRef};

use super::error::EngineError;
use super::reader::{ContextualTuples, TupleView};
use super::typesystem::{Misfit, RelId, Rewrite, TypeId, TypeSystem};

/// The most contextual tuples one request may carry (OpenFGA's API limit).
pub const MAX_CONTEXTUAL_TUPLES: usize = 100;

const MAX_OBJECT_LEN: usize = 256;
const MAX_USER_LEN: usize = 512;
const MAX_RELATION_LEN: usize = 50;

fn has_space(s: &str) -> bool {
    s.chars().any(char::is_whitespace)
}

/// Parses an object string; `Err` carries OpenFGA's reason text.
pub(crate) fn parse_object(s: &str) -> Result<ObjectRef<'_>, &'static str> {
    if s.len() > MAX_OBJECT_LEN
        || has_space(s)
        || s.contains('#')
        || s.bytes().filter(|b| *b == b':').count() != 1
    {
        return Err("invalid 'object' field format");
    }
    let object = ObjectRef::parse(s).ok_or("invalid 'object' field format")?;
    if object.object_id == "*" {
        return Err("the 'object' field cannot reference a typed wildcard");
    }
    Ok(object)
}

/// Parses a user string; `Err` carries OpenFGA's reason text.
pub(crate) fn parse_user(s: &str) -> Result<UserRef<'_>, &'static str> {
    const MALFORMED: &str = "the 'user' field is malformed";
    if s.len() > MAX_USER_LEN
        || has_space(s)
        || s.bytes().filter(|b| *b == b':').count() != 1
        || s.bytes().filter(|b| *b == b'#').count() > 1
    {
        return Err(MALFORMED);
    }
    let user = UserRef::parse(s).ok_or(MALFORMED)?;
    if let UserRef::Userset { object, relation } = user
        && (object.object_id == "*" || !is_valid_relation(relation))
    {
        return Err(MALFORMED);
    }
    Ok(user)
}

fn is_valid_relation(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_RELATION_LEN
        && !s
            .chars()
            .any(|c| c == ':' || c == '#' || c == '@' || c.is_whitespace())
}

/// Validates an object string (`type:id`) without a model: `validation_error` if malformed.
pub fn validate_object(s: &str) -> Result<ObjectRef<'_>, EngineError> {
    parse_object(s)
        .map_err(|reason| EngineError::Validation(format!("invalid object '{s}': {reason}")))
}

/// Validates a user string (`type:id`, `type:*`, `type:id#relation`) without a model.
pub fn validate_user(s: &str) -> Result<UserRef<'_>, EngineError> {
    parse_user(s).map_err(|reason| EngineError::Validation(format!("invalid user '{s}': {reason}")))
}

/// Whether `s` is a well-formed relation name.
pub fn validate_relation_name(s: &str) -> bool {
    is_valid_relation(s)
}

fn tuple_string(tk: &TupleKey) -> String {
    format!("{}#{}@{}", tk.object, tk.relation, tk.user)
}

fn invalid(tk: &TupleKey, reason: impl Into<String>) -> EngineError {
    EngineError::InvalidTuple {
        tuple: tuple_string(tk),
        reason: reason.into(),
    }
}

fn type_not_found(name: &str) -> EngineError {
    EngineError::TypeNotFound(name.to_owned())
}

fn relation_not_found(type_name: &str, relation: &str) -> EngineError {
    EngineError::RelationNotFound {
        type_name: type_name.to_owned(),
        relation: relation.to_owned(),
    }
}

/// A user resolved against the model.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResolvedUser<'a> {
    pub(crate) user: UserRef<'a>,
    pub(crate) type_id: TypeId,
    /// The userset's relation, for a userset user.
    pub(crate) userset_relation: Option<RelId>,
}

/// Resolves a user against the model: malformed → `InvalidTuple`-free plain reason in
/// `Validation`; unknown type / relation → 2021 / 2022. Callers re-label as their API requires.
pub(crate) fn resolve_user<'a>(
    ts: &TypeSystem,
    s: &'a str,
) -> Result<ResolvedUser<'a>, EngineError> {
    let user = parse_user(s).map_err(|r| EngineError::Validation(r.to_owned()))?;
    let type_name = user.user_type();
    let type_id = ts
        .type_id(type_name)
        .ok_or_else(|| type_not_found(type_name))?;
    let userset_relation = match user {
        UserRef::Userset { relation, .. } => Some(
            ts.relation_id(type_id, relation)
                .ok_or_else(|| relation_not_found(type_name, relation))?,
        ),
        _ => None,
    };
    Ok(ResolvedUser {
        user,
        type_id,
        userset_relation,
    })
}

/// Resolves `object` and `relation` against the model (2000 if malformed, 2021 / 2022 if
/// unknown).
pub(crate) fn resolve_object_relation<'a>(
    ts: &TypeSystem,
    object: &'a str,
    relation: &str,
) -> Result<(ObjectRef<'a>, RelId), EngineError> {
    let obj = parse_object(object)
        .map_err(|r| EngineError::Validation(format!("invalid object '{object}': {r}")))?;
    if !is_valid_relation(relation) {
        return Err(EngineError::Validation(format!(
            "invalid relation '{relation}': the 'relation' field is malformed"
        )));
    }
    let tid = ts
        .type_id(obj.object_type)
        .ok_or_else(|| type_not_found(obj.object_type))?;
    let rel = ts
        .relation_id(tid, relation)
        .ok_or_else(|| relation_not_found(obj.object_type, relation))?;
    Ok((obj, rel))
}

/// Validates a tuple for the Write API with OpenFGA's rules (`ValidateTupleForWrite`):
/// - the user, object and relation are well formed (2027) and exist in the model (2021 / 2022);
/// - a tupleset relation (the `parent` of `viewer from parent`) holds only plain objects, and
///   must be directly assignable (2027);
/// - the user fits one of the relation's type restrictions: its type, its typed wildcard or its
///   userset `type#relation` (2027);
/// - a tuple without a condition needs a restriction of its shape without one; a tuple with a
///   condition names a condition the model defines and a restriction of the user's type names,
///   and its context only has that condition's parameters (2027).
pub fn validate_tuple_for_write(ts: &TypeSystem, tk: &TupleKey) -> Result<(), EngineError> {
    validate_tuple_view(ts, tk).map(|_| ())
}

fn validate_tuple_view<'a>(
    ts: &TypeSystem,
    tk: &'a TupleKey,
) -> Result<TupleView<'a>, EngineError> {
    // The user first, then the object and the relation (OpenFGA's order).
    let user = parse_user(&tk.user).map_err(|r| invalid(tk, r))?;
    let user_type = user.user_type();
    let user_tid = ts
        .type_id(user_type)
        .ok_or_else(|| type_not_found(user_type))?;
    if let UserRef::Userset { relation, .. } = user
        && ts.relation_id(user_tid, relation).is_none()
    {
        return Err(relation_not_found(user_type, relation));
    }
    let object = parse_object(&tk.object).map_err(|r| invalid(tk, r))?;
    if !is_valid_relation(&tk.relation) {
        return Err(invalid(tk, "the 'relation' field is malformed"));
    }
    let obj_tid = ts
        .type_id(object.object_type)
        .ok_or_else(|| type_not_found(object.object_type))?;
    let rel = ts
        .relation_id(obj_tid, &tk.relation)
        .ok_or_else(|| relation_not_found(object.object_type, &tk.relation))?;
    let info = ts.rel(rel);
    let here = format!("{}#{}", object.object_type, tk.relation);

    if info.is_tupleset {
        if !matches!(info.rewrite, Rewrite::This) {
            return Err(invalid(
                tk,
                format!("unexpected rewrite encountered with tupleset relation '{here}'"),
            ));
        }
        match user {
            UserRef::Wildcard { .. } => {
                return Err(invalid(
                    tk,
                    format!("unexpected wildcard relationship with tupleset relation '{here}'"),
                ));
            }
            UserRef::Userset { .. } => {
                return Err(invalid(
                    tk,
                    format!(
                        "unexpected userset relationship '{}' with tupleset relation '{here}'",
                        tk.user
                    ),
                ));
            }
            UserRef::Object(_) => {}
        }
    }

    if let Err(misfit) = ts.fit(rel, user_tid, &user, tk.condition.as_ref()) {
        let reason = match misfit {
            Misfit::Shape => match user {
                UserRef::Object(_) => {
                    format!("type '{user_type}' is not an allowed type restriction for '{here}'")
                }
                UserRef::Wildcard { .. } => format!(
                    "the typed wildcard '{user_type}:*' is not an allowed type restriction for '{here}'"
                ),
                UserRef::Userset { relation, .. } => format!(
                    "'{user_type}#{relation}' is not an allowed type restriction for '{here}'"
                ),
            },
            Misfit::ConditionMissing => "condition is missing".to_owned(),
            Misfit::UndefinedCondition => "undefined condition".to_owned(),
            Misfit::ConditionNotAllowed => "invalid condition for type restriction".to_owned(),
            Misfit::UnknownParameter(key) => format!("found invalid context parameter: {key}"),
        };
        return Err(invalid(tk, reason));
    }

    Ok(TupleView {
        object,
        relation: tk.relation.as_str(),
        user,
        condition: tk.condition.as_ref(),
    })
}

/// Validates a request's contextual tuples like written tuples and parses them into an overlay.
/// Every failure is `invalid_tuple` (2027); more than [`MAX_CONTEXTUAL_TUPLES`] is a
/// `validation_error` (2000).
pub fn validate_contextual_tuples<'a>(
    ts: &TypeSystem,
    tuples: &'a [TupleKey],
) -> Result<ContextualTuples<'a>, EngineError> {
    if tuples.len() > MAX_CONTEXTUAL_TUPLES {
        return Err(EngineError::Validation(format!(
            "at most {MAX_CONTEXTUAL_TUPLES} contextual tuples are allowed, got {}",
            tuples.len()
        )));
    }
    let mut out = Vec::with_capacity(tuples.len());
    for tk in tuples {
        let view =
            validate_tuple_view(ts, tk).map_err(|e| e.into_invalid_tuple(tuple_string(tk)))?;
        out.push(view);
    }
    Ok(ContextualTuples { tuples: out })
}

/// Resolves a list-users filter `type` or `type#relation`.
pub(crate) fn resolve_filter(
    ts: &TypeSystem,
    type_name: &str,
    relation: Option<&str>,
) -> Result<(TypeId, Option<RelId>), EngineError> {
    let tid = ts
        .type_id(type_name)
        .ok_or_else(|| type_not_found(type_name))?;
    let rel = match relation {
        Some(r) => Some(
            ts.relation_id(tid, r)
                .ok_or_else(|| relation_not_found(type_name, r))?,
        ),
        None => None,
    };
    Ok((tid, rel))
}
