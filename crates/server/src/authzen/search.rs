//! `POST /access/v1/search/subject`, `/search/resource` and `/search/action`: ListUsers,
//! ListObjects and the relations a check allows, through the PDP's searches (an unknown type,
//! relation or id has no results, never an error).
//!
//! Results are sorted and paged: `page.limit` results at most (lowered to the configured
//! maximum, which is also the page size when no limit is given), `page.token` the previous
//! answer's `next_token`, which is empty on the last page.

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value};
use trustgate_pdp::attributes::{Act, Attributes, Party};
use trustgate_pdp::{
    Caller, ListObjectsRequest, ListPaging, ListUsersRequest, Listed, RelationsRequest, UserFilter,
    page_sorted,
};

use super::known::{Knowledge, SubjectToken};
use super::wire::{self, Found, FoundAction, Id, Malformed, PageAnswer, PageRequest, Results};
use super::{AuthzenJson, Call, pdp_error};
use crate::AppState;
use crate::error::ApiError;

fn bad_request(m: Malformed) -> ApiError {
    ApiError::bad_request("invalid_request", m.to_string())
}

/// A page of at most `page.limit` (and at most `max`) results.
fn paging(page: PageRequest<'_>, max: usize) -> ListPaging<'_> {
    let max = max.max(1);
    ListPaging {
        page_size: Some(
            page.limit
                .map_or(max, |n| usize::try_from(n).unwrap_or(usize::MAX).min(max)),
        ),
        continuation_token: page.token,
    }
}

fn results<T>(listed: Listed, read: impl Fn(&str) -> Option<T>) -> Results<T> {
    Results {
        results: listed.items.iter().filter_map(|s| read(s)).collect(),
        page: PageAnswer {
            next_token: listed.continuation_token.unwrap_or_default(),
        },
    }
}

fn nothing<T>() -> Results<T> {
    Results {
        results: Vec::new(),
        page: PageAnswer {
            next_token: String::new(),
        },
    }
}

/// The members every search reads.
struct Search<'a> {
    subject: Party<'a>,
    action: Act<'a>,
    resource: Party<'a>,
    context: Option<&'a Map<String, Value>>,
    page: PageRequest<'a>,
}

impl<'a> Search<'a> {
    /// Reads the members of a search body: the subject and the resource with or without an id
    /// as the search asks, the action unless it is an action search (which has none: the
    /// parameter then carries no name, see `trustgate_pdp::attributes`).
    fn read(
        body: &'a Map<String, Value>,
        subject_id: Id,
        with_action: bool,
        resource_id: Id,
    ) -> Result<Self, ApiError> {
        Ok(Search {
            subject: wire::party(body.get("subject"), "subject", subject_id)
                .map_err(bad_request)?,
            action: if with_action {
                wire::action(body.get("action")).map_err(bad_request)?
            } else {
                Act::default()
            },
            resource: wire::party(body.get("resource"), "resource", resource_id)
                .map_err(bad_request)?,
            context: wire::context(body.get("context")).map_err(bad_request)?,
            page: wire::page(body.get("page")).map_err(bad_request)?,
        })
    }

    /// The relation the search's action is evaluated as.
    fn relation<'s>(&self, state: &'s AppState, call: &Call) -> &'s str
    where
        'a: 's,
    {
        state
            .config
            .authzen
            .relation(&call.store_id, self.action.name.unwrap_or_default())
    }

    /// The condition context, with what is known about the subject and the resource when the
    /// request names them ([`super::known`]; the searched party has no id: what is known
    /// about the candidates is not merged). A subject token that cannot be used for the
    /// subject — or in a subject search, which names no subject — is a 400: a search has no
    /// per-item answer to carry the error.
    async fn condition_context(
        &self,
        state: &AppState,
        call: &Call,
    ) -> Result<Map<String, Value>, ApiError> {
        let token = SubjectToken::verify(state, call.subject_token.as_ref()).await?;
        if self.subject.id.is_none() && !matches!(token, SubjectToken::Absent) {
            return Err(ApiError::bad_request(
                "invalid_request",
                "X-Subject-Token names a subject; a subject search looks for subjects",
            ));
        }
        let authentication = token
            .context_for(
                state.config.authzen.user_type(&call.store_id),
                &self.subject,
            )
            .map_err(|(_, code, message)| ApiError::bad_request(code, message))?;
        let known = Knowledge::read(state, call, &[self.subject, self.resource]).await?;
        Ok(Attributes {
            subject: self.subject,
            action: self.action,
            resource: self.resource,
            context: self.context,
        }
        .condition_context_with(
            known.of(&self.subject),
            known.of(&self.resource),
            authentication,
        ))
    }
}

/// `POST /access/v1/search/subject`: who (of `subject.type`) may do `action` on `resource`.
pub async fn subject(
    call: Call,
    State(state): State<AppState>,
    AuthzenJson(body): AuthzenJson,
) -> Result<Json<Results<Found>>, ApiError> {
    let search = Search::read(&body, Id::Ignored, true, Id::Required)?;
    let context = search.condition_context(&state, &call).await?;
    let object = wire::object_string(&search.resource);
    let filters = [UserFilter {
        user_type: search.subject.party_type,
        relation: None,
    }];
    let relation = search.relation(&state, &call);
    let listed = state
        .pdp
        .search_users(
            &call.scope(),
            &ListUsersRequest {
                object: &object,
                relation,
                user_filters: &filters,
                contextual_tuples: &[],
                context: Some(&context),
            },
            paging(search.page, state.pdp.limits().list_users_max_results),
        )
        .await
        .map_err(pdp_error)?;
    Ok(Json(results(listed, Found::parse)))
}

/// `POST /access/v1/search/resource`: which resources of `resource.type` `subject` may do
/// `action` on.
pub async fn resource(
    call: Call,
    State(state): State<AppState>,
    AuthzenJson(body): AuthzenJson,
) -> Result<Json<Results<Found>>, ApiError> {
    let search = Search::read(&body, Id::Required, true, Id::Ignored)?;
    let Ok(user) = wire::user(&search.subject) else {
        return Ok(Json(nothing()));
    };
    let context = search.condition_context(&state, &call).await?;
    let relation = search.relation(&state, &call);
    let listed = state
        .pdp
        .search_objects(
            &call.scope(),
            &ListObjectsRequest {
                object_type: search.resource.party_type,
                relation,
                user: &user,
                contextual_tuples: &[],
                context: Some(&context),
            },
            paging(search.page, state.pdp.limits().list_objects_max_results),
        )
        .await
        .map_err(pdp_error)?;
    Ok(Json(results(listed, Found::parse)))
}

/// `POST /access/v1/search/action`: which actions `subject` may do on `resource`.
pub async fn action(
    call: Call,
    State(state): State<AppState>,
    AuthzenJson(body): AuthzenJson,
) -> Result<Json<Results<FoundAction>>, ApiError> {
    let search = Search::read(&body, Id::Required, false, Id::Required)?;
    let Ok(user) = wire::user(&search.subject) else {
        return Ok(Json(nothing()));
    };
    let context = search.condition_context(&state, &call).await?;
    let object = wire::object_string(&search.resource);
    let principal = call.caller.principal().subject();
    let relations = state
        .pdp
        .list_relations(
            &call.scope(),
            &RelationsRequest {
                object: &object,
                user: &user,
                contextual_tuples: &[],
                context: Some(&context),
            },
            Caller {
                principal: &principal,
                context: &call.context,
            },
        )
        .await
        .map_err(pdp_error)?;
    let mut names: Vec<String> = relations
        .iter()
        .flat_map(|r| state.config.authzen.action_names(&call.store_id, r))
        .map(str::to_owned)
        .collect();
    names.sort_unstable();
    names.dedup();
    let max = state.pdp.limits().list_objects_max_results;
    let listed = page_sorted(names, paging(search.page, max), max).map_err(pdp_error)?;
    Ok(Json(results(listed, |name| {
        Some(FoundAction {
            name: name.to_owned(),
        })
    })))
}
