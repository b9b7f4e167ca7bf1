//! Check, batch check, expand, list-objects and list-users over the store's index.
//!
//! Every query names a [`QueryScope`] (store, model, freshness) and borrows the engine's request
//! types, so an in-process caller (the gateway, AuthZEN) asks a check with no JSON and no
//! allocation on the service's side once the store's index and model are cached. Every check
//! decision, each batch item too, goes to the [`crate::DecisionLog`]. List-objects and
//! list-users evaluate on the blocking pool: they can walk many tuples.
//!
//! List-objects and list-users never truncate silently: without paging they return every
//! result when there are at most [`crate::Limits::list_objects_max_results`] /
//! [`crate::Limits::list_users_max_results`] of them, and fail with
//! [`PdpError::ExceededEntityLimit`] otherwise; with [`ListPaging`] the sorted result is
//! returned a page at a time with a continuation token.

use std::ops::ControlFlow;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use trustgate_authz::engine::{
    self, BatchCheckItem, CheckRequest, EngineError, ExpandRequest, ExpandResponse, Explanation,
    ListObjectsRequest, ListUsersRequest, Reason, TypeSystem, UserFilter,
};
use trustgate_store_api::TupleKey;

use crate::audit::{Caller, DecisionRecord, Verdict};
use crate::consistency::Freshness;
use crate::freshness::StoreIndex;
use crate::{Pdp, PdpError};

/// Which store and model a query reads, and how fresh the tuples must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryScope<'a> {
    /// The store.
    pub store_id: &'a str,
    /// The model to evaluate with; the store's latest when `None` (or empty).
    pub model_id: Option<&'a str>,
    /// How fresh the tuples (and the latest model) must be.
    pub freshness: Freshness<'a>,
}

impl<'a> QueryScope<'a> {
    /// The latest model of `store_id`, at [`Freshness::MINIMIZE_LATENCY`].
    pub fn latest(store_id: &'a str) -> Self {
        QueryScope {
            store_id,
            model_id: None,
            freshness: Freshness::MINIMIZE_LATENCY,
        }
    }
}

/// The outcome of one batch item.
#[derive(Debug)]
pub struct BatchCheckOutcome {
    /// The item's correlation id.
    pub correlation_id: String,
    /// Its decision or its error; one item's error does not affect the others.
    pub result: Result<bool, PdpError>,
    /// Why, in short (the audit reason); meaningless for an item whose `result` is an error,
    /// whose error is its reason.
    pub reason: Reason,
    /// The steps of the evaluation, when the batch was explained
    /// ([`Pdp::batch_explain_until`]) and the item valid.
    pub explanation: Option<Explanation>,
}

/// Where a batch check ends ([`Pdp::batch_check_until`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BatchStop {
    /// Every item is evaluated.
    #[default]
    Never,
    /// After the first item that is not allowed: a denial or an error.
    OnDeny,
    /// After the first allowed item.
    OnPermit,
}

impl BatchStop {
    fn stops_at(self, result: &Result<bool, EngineError>) -> bool {
        match self {
            BatchStop::Never => false,
            BatchStop::OnDeny => !matches!(result, Ok(true)),
            BatchStop::OnPermit => matches!(result, Ok(true)),
        }
    }
}

/// Paging of list-objects and list-users: `page_size` and `continuation_token` both `None`
/// asks for everything at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListPaging<'a> {
    /// 1..=the limit; the limit when only a continuation token is given.
    pub page_size: Option<usize>,
    /// The token of the previous page (an empty one is none).
    pub continuation_token: Option<&'a str>,
}

/// The result of list-objects or list-users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Sorted: `type:id` objects, or users (`user:anne`, `user:*`, `group:eng#member`).
    pub items: Vec<String>,
    /// Only when paging was asked for: the next page's token, empty on the last page.
    pub continuation_token: Option<String>,
}

/// What a query reads: the store's index and the model to evaluate with.
pub(crate) struct View {
    pub(crate) index: Arc<StoreIndex>,
    pub(crate) ts: Arc<TypeSystem>,
}

/// A validated [`ListPaging`].
pub(crate) struct Paging {
    size: usize,
    after: Option<String>,
}

const CURSOR_PREFIX: &str = "tgl1:";

fn encode_cursor(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{last}"))
}

fn decode_cursor(token: &str) -> Result<String, PdpError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| PdpError::InvalidContinuationToken)?;
    String::from_utf8(bytes)
        .ok()
        .and_then(|s| s.strip_prefix(CURSOR_PREFIX).map(str::to_owned))
        .ok_or(PdpError::InvalidContinuationToken)
}

pub(crate) fn validate_paging(p: ListPaging<'_>, max: usize) -> Result<Option<Paging>, PdpError> {
    let token = p.continuation_token.filter(|t| !t.is_empty());
    if p.page_size.is_none() && token.is_none() {
        return Ok(None);
    }
    let size = match p.page_size {
        None => max,
        Some(n) if (1..=max).contains(&n) => n,
        Some(_) => {
            return Err(PdpError::Validation(format!(
                "page_size must be inside range [1, {max}]"
            )));
        }
    };
    let after = token.map(decode_cursor).transpose()?;
    Ok(Some(Paging { size, after }))
}

/// One page of a sorted list and the token of the next (empty on the last page).
fn page_of(sorted: Vec<String>, paging: &Paging) -> (Vec<String>, String) {
    let start = match &paging.after {
        Some(a) => sorted.partition_point(|o| o.as_str() <= a.as_str()),
        None => 0,
    };
    let rest = sorted.len().saturating_sub(start);
    let page: Vec<String> = sorted.into_iter().skip(start).take(paging.size).collect();
    let next = if rest > page.len() {
        page.last().map(|l| encode_cursor(l)).unwrap_or_default()
    } else {
        String::new()
    };
    (page, next)
}

fn too_many(what: &str, max: usize, key: &str) -> PdpError {
    PdpError::ExceededEntityLimit(format!(
        "The number of {what} found exceeds the allowed limit of {max} ({key}); nothing was \
         truncated: page through them with page_size and continuation_token"
    ))
}

/// The answer of a list query: everything (or [`too_many`]), or one page.
pub(crate) fn listed(
    sorted: Vec<String>,
    exceeded: bool,
    paging: Option<Paging>,
    too_many: impl FnOnce() -> PdpError,
) -> Result<Listed, PdpError> {
    match paging {
        None if exceeded => Err(too_many()),
        None => Ok(Listed {
            items: sorted,
            continuation_token: None,
        }),
        Some(p) => {
            let (items, next) = page_of(sorted, &p);
            Ok(Listed {
                items,
                continuation_token: Some(next),
            })
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, PdpError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(PdpError::internal)??)
}

impl Pdp {
    pub(crate) async fn view(&self, scope: &QueryScope<'_>) -> Result<View, PdpError> {
        self.open(scope.store_id)?;
        let index = self
            .inner
            .fresh_index(scope.store_id, scope.freshness)
            .await?;
        let ts = self
            .inner
            .type_system(scope.store_id, scope.model_id, scope.freshness.consistency)
            .await?;
        Ok(View { index, ts })
    }

    pub(crate) fn audit(
        &self,
        caller: Caller<'_>,
        store_id: &str,
        ts: &TypeSystem,
        check: &CheckRequest<'_>,
        result: &Result<bool, EngineError>,
        reason: &Reason,
    ) {
        self.inner.decisions.record(&DecisionRecord {
            caller,
            store_id,
            model_id: &ts.model().id,
            object: check.object,
            relation: check.relation,
            user: check.user,
            verdict: Verdict::of(result),
            reason,
        });
    }

    /// Does `check.user` have `check.relation` to `check.object` (with the contextual tuples
    /// and the condition context)? `Ok(false)` is a definite no; every failure to decide is an
    /// error, never an allow. The decision is audited with `caller`.
    #[tracing::instrument(name = "pdp.check", level = "debug", skip_all)]
    pub async fn check(
        &self,
        scope: &QueryScope<'_>,
        check: &CheckRequest<'_>,
        caller: Caller<'_>,
    ) -> Result<bool, PdpError> {
        let view = self.view(scope).await?;
        let (result, reason) =
            engine::check_with_reason(&view.ts, &*view.index.index.current(), check);
        self.audit(caller, scope.store_id, &view.ts, check, &result, &reason);
        Ok(result?)
    }

    /// [`Pdp::check`] with its explanation: the decision (in [`Explanation::result`], an
    /// evaluation error included), the steps that led to it and its short reason (see
    /// `trustgate_authz::engine::explain`). An invalid request is an error, as for a check.
    /// Audited as the check it is.
    pub async fn explain(
        &self,
        scope: &QueryScope<'_>,
        check: &CheckRequest<'_>,
        caller: Caller<'_>,
    ) -> Result<Explanation, PdpError> {
        let view = self.view(scope).await?;
        let explanation = engine::explain(&view.ts, &*view.index.index.current(), check);
        match &explanation {
            Ok(e) => self.audit(
                caller,
                scope.store_id,
                &view.ts,
                check,
                &e.result,
                &e.reason,
            ),
            Err(invalid) => self.audit(
                caller,
                scope.store_id,
                &view.ts,
                check,
                &Err(invalid.clone()),
                &Reason::default(),
            ),
        }
        Ok(explanation?)
    }

    /// A check that is not written to the decision log: trustgate's own permission checks
    /// ([`crate::system`]), which audit denials themselves with the missing permission.
    pub(crate) async fn check_unlogged(
        &self,
        scope: &QueryScope<'_>,
        check: &CheckRequest<'_>,
    ) -> Result<bool, PdpError> {
        let view = self.view(scope).await?;
        Ok(engine::check(
            &view.ts,
            &*view.index.index.current(),
            check,
        )?)
    }

    /// Many checks against one snapshot, each with its own outcome in input order (each
    /// audited). Fails as a whole when there are none or more than
    /// [`crate::Limits::max_checks_per_batch`], or a correlation id is empty or repeated.
    pub async fn batch_check(
        &self,
        scope: &QueryScope<'_>,
        items: &[BatchCheckItem<'_>],
        caller: Caller<'_>,
    ) -> Result<Vec<BatchCheckOutcome>, PdpError> {
        self.batch_check_until(scope, items, BatchStop::Never, caller)
            .await
    }

    /// [`Pdp::batch_check`] evaluated in input order that ends after the first item `stop`
    /// names: the outcomes are those of the items evaluated, that item included. Items after it
    /// are neither evaluated nor audited.
    pub async fn batch_check_until(
        &self,
        scope: &QueryScope<'_>,
        items: &[BatchCheckItem<'_>],
        stop: BatchStop,
        caller: Caller<'_>,
    ) -> Result<Vec<BatchCheckOutcome>, PdpError> {
        self.batch_until(scope, items, stop, caller, false).await
    }

    /// [`Pdp::batch_check_until`] with every valid item explained
    /// ([`BatchCheckOutcome::explanation`], as [`Pdp::explain`]); the decisions are the same.
    pub async fn batch_explain_until(
        &self,
        scope: &QueryScope<'_>,
        items: &[BatchCheckItem<'_>],
        stop: BatchStop,
        caller: Caller<'_>,
    ) -> Result<Vec<BatchCheckOutcome>, PdpError> {
        self.batch_until(scope, items, stop, caller, true).await
    }

    async fn batch_until(
        &self,
        scope: &QueryScope<'_>,
        items: &[BatchCheckItem<'_>],
        stop: BatchStop,
        caller: Caller<'_>,
        explain: bool,
    ) -> Result<Vec<BatchCheckOutcome>, PdpError> {
        let max = self.inner.limits.max_checks_per_batch;
        if items.is_empty() {
            return Err(PdpError::Validation(
                "invalid BatchCheckRequest.Checks: value must contain at least 1 item(s)"
                    .to_owned(),
            ));
        }
        if items.len() > max {
            return Err(PdpError::Validation(format!(
                "batchCheck received {} checks, the maximum allowed is {max}",
                items.len()
            )));
        }
        let view = self.view(scope).await?;
        engine::validate_correlation_ids(items)?;
        let snapshot = view.index.index.current();
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let (result, reason, explanation) = if explain {
                match engine::explain(&view.ts, &*snapshot, &item.request) {
                    Ok(e) => (e.result.clone(), e.reason.clone(), Some(e)),
                    Err(invalid) => (Err(invalid), Reason::default(), None),
                }
            } else {
                let (result, reason) =
                    engine::check_with_reason(&view.ts, &*snapshot, &item.request);
                (result, reason, None)
            };
            self.audit(
                caller,
                scope.store_id,
                &view.ts,
                &item.request,
                &result,
                &reason,
            );
            let last = stop.stops_at(&result);
            outcomes.push(BatchCheckOutcome {
                correlation_id: item.correlation_id.to_owned(),
                result: result.map_err(PdpError::from),
                reason,
                explanation,
            });
            if last {
                break;
            }
        }
        Ok(outcomes)
    }

    /// The userset tree of `request.relation` on `request.object`.
    pub async fn expand(
        &self,
        scope: &QueryScope<'_>,
        request: &ExpandRequest<'_>,
    ) -> Result<ExpandResponse, PdpError> {
        let view = self.view(scope).await?;
        Ok(engine::expand(
            &view.ts,
            &*view.index.index.current(),
            request,
        )?)
    }

    /// The objects of `request.object_type` `request.user` has `request.relation` to, sorted.
    pub async fn list_objects(
        &self,
        scope: &QueryScope<'_>,
        request: &ListObjectsRequest<'_>,
        paging: ListPaging<'_>,
    ) -> Result<Listed, PdpError> {
        let max = self.inner.limits.list_objects_max_results.max(1);
        let paging = validate_paging(paging, max)?;
        let view = self.view(scope).await?;
        list_objects_in(view, request, paging, max).await
    }

    /// The users of the filters' kinds that have `request.relation` to `request.object`,
    /// sorted.
    pub async fn list_users(
        &self,
        scope: &QueryScope<'_>,
        request: &ListUsersRequest<'_>,
        paging: ListPaging<'_>,
    ) -> Result<Listed, PdpError> {
        let max = self.inner.limits.list_users_max_results.max(1);
        let paging = validate_paging(paging, max)?;
        let view = self.view(scope).await?;
        list_users_in(view, request, paging, max).await
    }
}

/// List-objects over `view` (see [`Pdp::list_objects`]).
pub(crate) async fn list_objects_in(
    view: View,
    request: &ListObjectsRequest<'_>,
    paging: Option<Paging>,
    max: usize,
) -> Result<Listed, PdpError> {
    let stop_after = paging.is_none().then_some(max);
    let owned = OwnedQuery::new(
        [request.object_type, request.relation, request.user],
        request.contextual_tuples,
        request.context,
    );
    let (objects, exceeded) = blocking(move || {
        let [object_type, relation, user] = &owned.strings;
        let request = ListObjectsRequest {
            object_type,
            relation,
            user,
            contextual_tuples: &owned.contextual_tuples,
            context: owned.context.as_ref(),
        };
        let snapshot = view.index.index.snapshot();
        let mut found = Vec::new();
        let mut exceeded = false;
        engine::list_objects_visit(&view.ts, &*snapshot, &request, &mut |o| {
            if stop_after.is_some_and(|m| found.len() >= m) {
                exceeded = true;
                return ControlFlow::Break(());
            }
            found.push(o.to_owned());
            ControlFlow::Continue(())
        })?;
        found.sort_unstable();
        Ok((found, exceeded))
    })
    .await?;
    listed(objects, exceeded, paging, || {
        too_many("objects", max, "authz.list_objects_max_results")
    })
}

/// List-users over `view` (see [`Pdp::list_users`]).
pub(crate) async fn list_users_in(
    view: View,
    request: &ListUsersRequest<'_>,
    paging: Option<Paging>,
    max: usize,
) -> Result<Listed, PdpError> {
    let filters: Vec<(String, Option<String>)> = request
        .user_filters
        .iter()
        .map(|f| (f.user_type.to_owned(), f.relation.map(str::to_owned)))
        .collect();
    let owned = OwnedQuery::new(
        [request.object, request.relation],
        request.contextual_tuples,
        request.context,
    );
    let users = blocking(move || {
        let [object, relation] = &owned.strings;
        let filters: Vec<UserFilter<'_>> = filters
            .iter()
            .map(|(t, r)| UserFilter {
                user_type: t,
                relation: r.as_deref(),
            })
            .collect();
        let request = ListUsersRequest {
            object,
            relation,
            user_filters: &filters,
            contextual_tuples: &owned.contextual_tuples,
            context: owned.context.as_ref(),
        };
        let snapshot = view.index.index.snapshot();
        Ok(engine::list_users(&view.ts, &*snapshot, &request)?.users)
    })
    .await?;
    let exceeded = users.len() > max;
    listed(users, exceeded, paging, || {
        too_many("users", max, "authz.list_users_max_results")
    })
}

/// A query's borrowed inputs, owned for the blocking pool.
struct OwnedQuery<const N: usize> {
    strings: [String; N],
    contextual_tuples: Vec<TupleKey>,
    context: Option<Map<String, Value>>,
}

impl<const N: usize> OwnedQuery<N> {
    fn new(
        strings: [&str; N],
        contextual_tuples: &[TupleKey],
        context: Option<&Map<String, Value>>,
    ) -> Self {
        OwnedQuery {
            strings: strings.map(str::to_owned),
            contextual_tuples: contextual_tuples.to_vec(),
            context: context.cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(size: Option<usize>, token: &str) -> ListPaging<'_> {
        ListPaging {
            page_size: size,
            continuation_token: Some(token),
        }
    }

    #[test]
    fn pages_walk_a_sorted_list_once() {
        let all: Vec<String> = (0..7).map(|i| format!("doc:{i}")).collect();
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let p = validate_paging(page(Some(3), &token), 10)
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("paged"));
            let (page, next) = page_of(all.clone(), &p);
            seen.extend(page);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, all);
        assert!(matches!(
            validate_paging(page(Some(0), ""), 10),
            Err(PdpError::Validation(_))
        ));
        assert!(matches!(
            validate_paging(page(Some(11), ""), 10),
            Err(PdpError::Validation(_))
        ));
        assert!(matches!(
            validate_paging(page(None, "garbage!"), 10),
            Err(PdpError::InvalidContinuationToken)
        ));
        assert!(matches!(validate_paging(page(None, ""), 10), Ok(None)));
        assert!(matches!(
            validate_paging(ListPaging::default(), 10),
            Ok(None)
        ));
    }
}
