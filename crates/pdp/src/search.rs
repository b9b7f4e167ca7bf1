//! Searches: which objects, which users, which relations — asked the way a PEP asks (AuthZEN's
//! search APIs), where a question about something the PDP does not know simply has no answer.
//!
//! [`Pdp::search_objects`] and [`Pdp::search_users`] are list-objects and list-users, except
//! that a type or relation the model does not define, or a user or object string the engine
//! cannot represent, yields an empty result instead of an error. [`Pdp::list_relations`] is the
//! set of relations a check allows. Model and snapshot are read once per search, so the answer
//! is consistent with one model; errors other than "unknown" (a condition that cannot be
//! evaluated, an outage) are still errors.

use serde_json::{Map, Value};
use trustgate_authz::engine::{
    self, ListObjectsRequest, ListUsersRequest, TypeSystem, UserFilter, validate_object,
    validate_user,
};
use trustgate_authz::tuple::UserRef;
use trustgate_store_api::TupleKey;

use crate::audit::Caller;
use crate::query::{
    ListPaging, Listed, Paging, QueryScope, list_objects_in, list_users_in, listed, validate_paging,
};
use crate::{Pdp, PdpError};

/// The relations question: every relation of `object`'s type that `user` has to `object`.
#[derive(Debug, Clone, Copy)]
pub struct RelationsRequest<'a> {
    /// `type:id`.
    pub object: &'a str,
    /// `type:id`.
    pub user: &'a str,
    /// Tuples that hold for this request only.
    pub contextual_tuples: &'a [TupleKey],
    /// The request context conditions are evaluated with.
    pub context: Option<&'a Map<String, Value>>,
}

/// Whether the model knows the user's type (and a userset's relation) and the string is one.
fn knows_user(ts: &TypeSystem, user: &str) -> bool {
    match validate_user(user) {
        Ok(UserRef::Userset { object, relation }) => ts.has_relation(object.object_type, relation),
        Ok(u) => ts.has_type(u.user_type()),
        Err(_) => false,
    }
}

/// Whether the object string is one and the model knows its type.
fn knows_object(ts: &TypeSystem, object: &str) -> bool {
    validate_object(object).is_ok_and(|o| ts.has_type(o.object_type))
}

/// No results, shaped like a listing with `paging`.
fn nothing(paging: Option<&Paging>) -> Listed {
    Listed {
        items: Vec::new(),
        continuation_token: paging.map(|_| String::new()),
    }
}

/// One page of a sorted list of distinct strings, paged as list-objects pages (`paging` as
/// there; at most `max` results a page). For results computed outside the engine, such as
/// relations translated into the caller's vocabulary.
pub fn page_sorted(
    sorted: Vec<String>,
    paging: ListPaging<'_>,
    max: usize,
) -> Result<Listed, PdpError> {
    let max = max.max(1);
    let paging = validate_paging(paging, max)?;
    let exceeded = sorted.len() > max;
    listed(sorted, exceeded, paging, || {
        PdpError::ExceededEntityLimit(format!(
            "more than {max} results; page through them with a page size and a continuation token"
        ))
    })
}

impl Pdp {
    /// [`Pdp::list_objects`], where an unknown object type, relation or user type, or a user
    /// string that is not one, has no results rather than an error.
    pub async fn search_objects(
        &self,
        scope: &QueryScope<'_>,
        request: &ListObjectsRequest<'_>,
        paging: ListPaging<'_>,
    ) -> Result<Listed, PdpError> {
        let max = self.inner.limits.list_objects_max_results.max(1);
        let paging = validate_paging(paging, max)?;
        let view = self.view(scope).await?;
        if !view.ts.has_relation(request.object_type, request.relation)
            || !knows_user(&view.ts, request.user)
        {
            return Ok(nothing(paging.as_ref()));
        }
        list_objects_in(view, request, paging, max).await
    }

    /// [`Pdp::list_users`], where an unknown object type or relation, an object string that is
    /// not one, or filters whose types (or relations) are all unknown have no results rather
    /// than an error; unknown filters among known ones are dropped.
    pub async fn search_users(
        &self,
        scope: &QueryScope<'_>,
        request: &ListUsersRequest<'_>,
        paging: ListPaging<'_>,
    ) -> Result<Listed, PdpError> {
        let max = self.inner.limits.list_users_max_results.max(1);
        let paging = validate_paging(paging, max)?;
        let view = self.view(scope).await?;
        let known: Vec<UserFilter<'_>> = request
            .user_filters
            .iter()
            .filter(|f| match f.relation {
                Some(r) => view.ts.has_relation(f.user_type, r),
                None => view.ts.has_type(f.user_type),
            })
            .copied()
            .collect();
        let object_type = validate_object(request.object).map(|o| o.object_type);
        if known.is_empty() || !object_type.is_ok_and(|t| view.ts.has_relation(t, request.relation))
        {
            return Ok(nothing(paging.as_ref()));
        }
        let request = ListUsersRequest {
            user_filters: &known,
            ..*request
        };
        list_users_in(view, &request, paging, max).await
    }

    /// The relations of `request.object`'s type that `request.user` has to it, sorted: one
    /// check per relation of the type against one snapshot and model, each audited with
    /// `caller` (a relation whose check fails to decide is not listed). An unknown type or a
    /// string that is not an object or a user has none.
    pub async fn list_relations(
        &self,
        scope: &QueryScope<'_>,
        request: &RelationsRequest<'_>,
        caller: Caller<'_>,
    ) -> Result<Vec<String>, PdpError> {
        let view = self.view(scope).await?;
        if !knows_object(&view.ts, request.object) || !knows_user(&view.ts, request.user) {
            return Ok(Vec::new());
        }
        let object_type = validate_object(request.object)
            .map(|o| o.object_type)
            .unwrap_or_default();
        let relations: Vec<&str> = view
            .ts
            .model()
            .type_definitions
            .iter()
            .find(|t| t.type_name == object_type)
            .and_then(|t| t.relations.as_ref())
            .map(|r| r.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let snapshot = view.index.index.current();
        let mut allowed = Vec::new();
        for relation in relations {
            let check = engine::CheckRequest {
                object: request.object,
                relation,
                user: request.user,
                contextual_tuples: request.contextual_tuples,
                context: request.context,
            };
            let (result, reason) = engine::check_with_reason(&view.ts, &*snapshot, &check);
            self.audit(caller, scope.store_id, &view.ts, &check, &result, &reason);
            if matches!(result, Ok(true)) {
                allowed.push(relation.to_owned());
            }
        }
        allowed.sort_unstable();
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_lists_page_like_listings() {
        let all: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
        let first = page_sorted(
            all.clone(),
            ListPaging {
                page_size: Some(2),
                continuation_token: None,
            },
            10,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.items, ["a", "b"]);
        let token = first.continuation_token.unwrap_or_default();
        let second = page_sorted(
            all.clone(),
            ListPaging {
                page_size: Some(2),
                continuation_token: Some(&token),
            },
            10,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(second.items, ["c"]);
        assert_eq!(second.continuation_token.as_deref(), Some(""));
        assert!(matches!(
            page_sorted(all, ListPaging::default(), 2),
            Err(PdpError::ExceededEntityLimit(_))
        ));
    }
}
