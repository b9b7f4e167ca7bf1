//! `POST /access/v1/evaluation` and `POST /access/v1/evaluations`: decisions, asked of the PDP
//! in one batch ([`trustgate_pdp::Pdp::batch_check_until`]: one snapshot and model, every
//! decision audited once, items after a stop rule's item neither evaluated nor audited).
//! What trustgate knows about the parties ([`super::known`]: stored attributes, directory
//! entries, the subject token's authentication context) is read once per request.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use trustgate_pdp::attributes::Attributes;
use trustgate_pdp::{BatchCheckItem, BatchCheckOutcome, BatchStop, Caller, CheckRequest};

use super::known::{Knowledge, SubjectToken};
use super::wire::{self, Decision, Decisions, Malformed, Semantic};
use super::{AuthzenJson, Call, describe, pdp_error};
use crate::AppState;
use crate::error::ApiError;

/// A check ready for the engine.
struct Prepared<'a> {
    user: String,
    object: String,
    relation: &'a str,
    attrs: Attributes<'a>,
    /// The subject's authentication context, from the call's subject token.
    authentication: Option<&'a Map<String, Value>>,
}

/// An item: a check, or the answer of one that cannot be evaluated.
type Item<'a> = Result<Prepared<'a>, Decision>;

fn invalid(m: &Malformed) -> Decision {
    Decision::error(400, "invalid_request", m.to_string())
}

fn bad_request(m: &Malformed) -> ApiError {
    ApiError::bad_request("invalid_request", m.to_string())
}

/// Maps a request's attributes onto the engine's check; a subject token that cannot be used
/// for its subject makes it an error.
fn prepare<'a>(
    state: &'a AppState,
    store_id: &str,
    attrs: &Attributes<'a>,
    token: &'a SubjectToken,
) -> Item<'a> {
    let user =
        wire::user(&attrs.subject).map_err(|m| Decision::error(400, "validation_error", m))?;
    let authentication = token
        .context_for(state.config.authzen.user_type(store_id), &attrs.subject)
        .map_err(|(status, code, message)| Decision::error(status, code, message))?;
    Ok(Prepared {
        user,
        object: wire::object_string(&attrs.resource),
        relation: state
            .config
            .authzen
            .relation(store_id, attrs.action.name.unwrap_or_default()),
        attrs: *attrs,
        authentication,
    })
}

fn decision_of(outcome: &BatchCheckOutcome) -> Decision {
    let decision = match &outcome.result {
        Ok(allowed) => Decision::of(*allowed),
        Err(e) => {
            let (status, code, message) = describe(e);
            Decision::error(status.as_u16(), code, message)
        }
    };
    match &outcome.explanation {
        Some(explanation) => decision.explained(explanation),
        None => decision,
    }
}

/// Whether `decision` ends a batch under `stop`.
fn stops(stop: BatchStop, decision: &Decision) -> bool {
    match stop {
        BatchStop::Never => false,
        BatchStop::OnDeny => !decision.decision,
        BatchStop::OnPermit => decision.decision,
    }
}

/// Decides `items` in order under `stop`: the checkable ones in one PDP batch (explained if
/// `explain`), an item that cannot be evaluated counting as a denial.
async fn decide(
    state: &AppState,
    call: &Call,
    items: &[Item<'_>],
    stop: BatchStop,
    explain: bool,
) -> Result<Vec<Decision>, ApiError> {
    // Under deny-on-first-deny an invalid item ends the batch: nothing after it is evaluated.
    let end = match stop {
        BatchStop::OnDeny => items.iter().position(Result::is_err).unwrap_or(items.len()),
        _ => items.len(),
    };
    let ids: Vec<String> = (0..end).map(|i| i.to_string()).collect();
    // What is known about every subject and resource, read once for the batch and merged
    // into their properties (trustgate_pdp::attributes).
    let parties: Vec<_> = items[..end]
        .iter()
        .filter_map(|item| item.as_ref().ok())
        .flat_map(|p| [p.attrs.subject, p.attrs.resource])
        .collect();
    let known = Knowledge::read(state, call, &parties).await?;
    let contexts: Vec<Option<Map<String, Value>>> = items[..end]
        .iter()
        .map(|item| {
            let p = item.as_ref().ok()?;
            Some(p.attrs.condition_context_with(
                known.of(&p.attrs.subject),
                known.of(&p.attrs.resource),
                p.authentication,
            ))
        })
        .collect();
    let checks: Vec<BatchCheckItem<'_>> = items[..end]
        .iter()
        .zip(&ids)
        .zip(&contexts)
        .filter_map(|((item, id), context)| {
            let p = item.as_ref().ok()?;
            Some(BatchCheckItem {
                correlation_id: id,
                request: CheckRequest {
                    object: &p.object,
                    relation: p.relation,
                    user: &p.user,
                    contextual_tuples: &[],
                    context: context.as_ref(),
                },
            })
        })
        .collect();
    let outcomes = if checks.is_empty() {
        Vec::new()
    } else {
        let principal = call.caller.principal().subject();
        let caller = Caller {
            principal: &principal,
            context: &call.context,
        };
        let scope = call.scope();
        let outcomes = if explain {
            state
                .pdp
                .batch_explain_until(&scope, &checks, stop, caller)
                .await
        } else {
            state
                .pdp
                .batch_check_until(&scope, &checks, stop, caller)
                .await
        };
        outcomes.map_err(pdp_error)?
    };
    let mut outcomes = outcomes.iter();
    let mut decisions = Vec::with_capacity(items.len());
    for item in items {
        let decision = match item {
            Err(answer) => answer.clone(),
            Ok(_) => match outcomes.next() {
                Some(outcome) => decision_of(outcome),
                None => break,
            },
        };
        let last = stops(stop, &decision);
        decisions.push(decision);
        if last {
            break;
        }
    }
    Ok(decisions)
}

/// One evaluation read from the top level of `body`: a missing or malformed member is 400.
async fn single(
    state: &AppState,
    call: &Call,
    body: &Map<String, Value>,
) -> Result<Decision, ApiError> {
    let attrs = wire::evaluation(
        body.get("subject"),
        body.get("action"),
        body.get("resource"),
        body.get("context"),
    )
    .map_err(|m| bad_request(&m))?;
    let explain = wire::explain(body.get("options")).map_err(|m| bad_request(&m))?;
    let token = SubjectToken::verify(state, call.subject_token.as_ref()).await?;
    let item = prepare(state, &call.store_id, &attrs, &token);
    let mut decisions = decide(
        state,
        call,
        std::slice::from_ref(&item),
        BatchStop::Never,
        explain,
    )
    .await?;
    Ok(decisions
        .pop()
        .unwrap_or_else(|| Decision::error(500, "internal_error", "no decision")))
}

/// `POST /access/v1/evaluation`.
pub async fn evaluation(
    call: Call,
    State(state): State<AppState>,
    AuthzenJson(body): AuthzenJson,
) -> Result<Json<Decision>, ApiError> {
    single(&state, &call, &body).await.map(Json)
}

/// An item's member, or the request's default for it (a `null` member is absent).
fn member<'a>(
    item: &'a Map<String, Value>,
    defaults: &'a Map<String, Value>,
    name: &str,
) -> Option<&'a Value> {
    item.get(name)
        .filter(|v| !v.is_null())
        .or_else(|| defaults.get(name))
}

/// `POST /access/v1/evaluations`. Each item's `subject`, `action`, `resource` and `context`
/// default to the top level's (a member replaces the default as a whole). Without items (no
/// `evaluations`, or an empty array) the request is one evaluation and so is the answer
/// (`{"decision": …}`).
pub async fn evaluations(
    call: Call,
    State(state): State<AppState>,
    AuthzenJson(body): AuthzenJson,
) -> Result<Response, ApiError> {
    let stop = match wire::semantic(body.get("options")).map_err(|m| bad_request(&m))? {
        Semantic::ExecuteAll => BatchStop::Never,
        Semantic::DenyOnFirstDeny => BatchStop::OnDeny,
        Semantic::PermitOnFirstPermit => BatchStop::OnPermit,
    };
    let items: &[Value] = match body.get("evaluations") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "evaluations must be an array",
            ));
        }
    };
    if items.is_empty() {
        return Ok(Json(single(&state, &call, &body).await?).into_response());
    }
    let max = state.pdp.limits().max_checks_per_batch;
    if items.len() > max {
        return Err(ApiError::bad_request(
            "too_many_evaluations",
            format!(
                "{} evaluations in one request; at most {max} (authz.max_checks_per_batch)",
                items.len()
            ),
        ));
    }
    let token = SubjectToken::verify(&state, call.subject_token.as_ref()).await?;
    let prepared: Vec<Item<'_>> = items
        .iter()
        .map(|item| {
            let Value::Object(item) = item else {
                return Err(Decision::error(
                    400,
                    "invalid_request",
                    "an evaluation must be an object",
                ));
            };
            let attrs = wire::evaluation(
                member(item, &body, "subject"),
                member(item, &body, "action"),
                member(item, &body, "resource"),
                member(item, &body, "context"),
            )
            .map_err(|m| invalid(&m))?;
            prepare(&state, &call.store_id, &attrs, &token)
        })
        .collect();
    let explain = wire::explain(body.get("options")).map_err(|m| bad_request(&m))?;
    let evaluations = decide(&state, &call, &prepared, stop, explain).await?;
    Ok(Json(Decisions { evaluations }).into_response())
}
