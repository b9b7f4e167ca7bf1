//! OpenFGA's own matrix suite (`conformance/openfga/consolidated_1_1_tests.yaml`), run directly
//! against the engine: every stage's model is parsed from the DSL into a [`TypeSystem`], its
//! tuples are validated with [`validate_tuple_for_write`] and written to a [`TupleIndex`] (they
//! accumulate across stages, as upstream's runner writes them to one store), and every Check,
//! ListObjects and ListUsers assertion is evaluated.
//!
//! Two variants, as upstream runs them:
//! - **written**: tuples are written to the index;
//! - **contextual**: nothing is written; every request carries as contextual tuples what the
//!   store would hold (at most 100): all tuples written so far that fit the current stage's
//!   model. For single-stage tests this is exactly upstream's contextual variant; upstream skips
//!   multi-stage tests there, we run them too (a stored tuple that no longer fits the model is
//!   ignored by reads, so leaving it out of the contextual tuples is equivalent).
//!
//! Beyond the file's expectations, every returned object and user must also pass Check (the
//! engine's own invariant), and every Check assertion is explained: `explain` and
//! `check_with_reason` give Check's decision, with a tree and a short reason that agree. All failures are collected and reported in one message.

use std::collections::BTreeSet;

use trustgate_authz::dsl;
use trustgate_authz::engine::{
    CheckRequest, EngineError, ListObjectsRequest, ListUsersRequest, StepResult, TupleReader,
    TypeSystem, UserFilter, check, check_with_reason, explain, list_objects, list_users,
    validate_tuple_for_write,
};
use trustgate_authz::index::{TupleChange, TupleIndex};
use trustgate_authz::tuple::{RelationshipCondition, TupleKey};
use trustgate_testkit::openfga_matrix::{self, Tuple};

fn key(t: &Tuple) -> TupleKey {
    TupleKey {
        user: t.user.clone(),
        relation: t.relation.clone(),
        object: t.object.clone(),
        condition: t.condition.as_ref().map(|c| RelationshipCondition {
            name: c.name.clone(),
            context: c.context.clone(),
        }),
    }
}

#[derive(Default)]
struct Report {
    passed: usize,
    failures: Vec<String>,
    skipped_stages: usize,
}

impl Report {
    fn outcome(&mut self, ok: bool, label: impl FnOnce() -> String) {
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(label());
        }
    }
}

fn show<T: std::fmt::Debug, E: std::fmt::Display>(r: &Result<T, E>) -> String {
    match r {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error: {e}"),
    }
}

/// Why `explain` and `check_with_reason` do not agree with `check`'s `got`, if they do not.
fn explanation_disagrees(
    ts: &TypeSystem,
    reader: &dyn TupleReader,
    req: &CheckRequest<'_>,
    got: &Result<bool, EngineError>,
) -> Option<String> {
    let (reasoned, reason) = check_with_reason(ts, reader, req);
    if &reasoned != got {
        return Some(format!("check_with_reason gave {}", show(&reasoned)));
    }
    let explained = match explain(ts, reader, req) {
        Ok(e) => e,
        Err(e) => {
            return (Err(&e) != got.as_ref()).then(|| format!("explain refused the request: {e}"));
        }
    };
    if &explained.result != got {
        return Some(format!("explain gave {}", show(&explained.result)));
    }
    let expected_root = match got {
        Ok(true) => StepResult::Allowed,
        Ok(false) => StepResult::Denied,
        Err(_) => StepResult::Error,
    };
    if explained.tree.result != expected_root {
        return Some(format!("explanation root is {:?}", explained.tree.result));
    }
    if explained.reason != reason {
        return Some(format!(
            "explain's reason '{}' differs from check_with_reason's '{reason}'",
            explained.reason
        ));
    }
    let prefix = if got == &Ok(true) {
        "allowed"
    } else {
        "denied"
    };
    (!reason.to_string().starts_with(prefix))
        .then(|| format!("reason '{reason}' for {}", show(got)))
}

fn run(contextual: bool) -> Report {
    let file = openfga_matrix::load_consolidated();
    let mut report = Report::default();
    for (ti, test) in file.tests.iter().enumerate() {
        let index = TupleIndex::new();
        let mut seq = 0;
        let mut accumulated: Vec<TupleKey> = Vec::new();
        for (si, stage) in test.stages.iter().enumerate() {
            let here = format!("{} (#{ti}) stage {si}", test.name);
            let written_now: Vec<TupleKey> = stage.tuples.iter().map(key).collect();
            accumulated.extend(written_now.iter().cloned());
            let model = match dsl::parse(&stage.model) {
                Ok(m) => m,
                Err(e) => {
                    report
                        .failures
                        .push(format!("{here}: model does not parse: {e}"));
                    continue;
                }
            };
            let ts = match TypeSystem::new(model) {
                Ok(ts) => ts,
                Err(e) => {
                    report.failures.push(format!("{here}: type system: {e}"));
                    continue;
                }
            };
            // The contextual variant sends what the store would hold: every tuple written so
            // far that fits the current model (a stored tuple that does not is ignored by
            // reads, a contextual one would be rejected).
            let stage_tuples: Vec<TupleKey> = if contextual {
                accumulated
                    .iter()
                    .filter(|t| validate_tuple_for_write(&ts, t).is_ok())
                    .cloned()
                    .collect()
            } else {
                written_now
            };
            if contextual && stage_tuples.len() > 100 {
                report.skipped_stages += 1;
                continue;
            }
            if !contextual {
                let mut changes = Vec::new();
                for t in &stage_tuples {
                    match validate_tuple_for_write(&ts, t) {
                        Ok(()) => changes.push(TupleChange::Write(t.clone())),
                        Err(e) => report.failures.push(format!(
                            "{here}: writing {}#{}@{} was rejected: {e}",
                            t.object, t.relation, t.user
                        )),
                    }
                }
                seq += 1;
                if let Err(e) = index.apply(seq, &changes) {
                    report.failures.push(format!("{here}: index apply: {e}"));
                }
            }
            let snapshot = index.snapshot();
            let reader: &dyn TupleReader = &*snapshot;
            let with_stage = |extra: &[Tuple]| -> Vec<TupleKey> {
                let mut v: Vec<TupleKey> = extra.iter().map(key).collect();
                if contextual {
                    v.extend(stage_tuples.iter().cloned());
                }
                v
            };

            for (ai, a) in stage.check_assertions.iter().enumerate() {
                let ctx = with_stage(&a.contextual_tuples);
                let req = CheckRequest {
                    object: &a.tuple.object,
                    relation: &a.tuple.relation,
                    user: &a.tuple.user,
                    contextual_tuples: &ctx,
                    context: a.context.as_ref(),
                };
                let got = check(&ts, reader, &req);
                // Explaining walks the same code: same decision, and a tree and a short
                // reason that agree with it.
                if let Some(disagreement) = explanation_disagrees(&ts, reader, &req, &got) {
                    report.failures.push(format!(
                        "{here} check #{ai} {}#{}@{}: {disagreement}",
                        a.tuple.object, a.tuple.relation, a.tuple.user
                    ));
                }
                let ok = match (&got, a.error_code) {
                    (Ok(allowed), 0) => *allowed == a.expectation,
                    (Err(e), code) if code != 0 => e.code().number() == code,
                    _ => false,
                };
                report.outcome(ok, || {
                    format!(
                        "{here} check #{ai} {}#{}@{}: expected {}, got {}",
                        a.tuple.object,
                        a.tuple.relation,
                        a.tuple.user,
                        if a.error_code != 0 {
                            format!("error {}", a.error_code)
                        } else {
                            a.expectation.to_string()
                        },
                        show(&got)
                    )
                });
            }

            for (ai, a) in stage.list_objects_assertions.iter().enumerate() {
                let ctx = with_stage(&a.contextual_tuples);
                let req = ListObjectsRequest {
                    object_type: &a.request.object_type,
                    relation: &a.request.relation,
                    user: &a.request.user,
                    contextual_tuples: &ctx,
                    context: a.context.as_ref(),
                };
                let got = list_objects(&ts, reader, &req);
                let expected: BTreeSet<&str> = a.expectation.iter().map(String::as_str).collect();
                let ok = match (&got, a.error_code) {
                    (Ok(objects), 0) => {
                        objects.iter().map(String::as_str).collect::<BTreeSet<_>>() == expected
                            && objects.len() == expected.len()
                    }
                    (Err(e), code) if code != 0 => e.code().number() == code,
                    _ => false,
                };
                report.outcome(ok, || {
                    format!(
                        "{here} list-objects #{ai} {}#{}@{}: expected {}, got {}",
                        a.request.object_type,
                        a.request.relation,
                        a.request.user,
                        if a.error_code != 0 {
                            format!("error {}", a.error_code)
                        } else {
                            format!("{expected:?}")
                        },
                        show(&got)
                    )
                });
                // Every returned object passes Check.
                if let Ok(objects) = &got {
                    for o in objects {
                        let c = check(
                            &ts,
                            reader,
                            &CheckRequest {
                                object: o,
                                relation: &a.request.relation,
                                user: &a.request.user,
                                contextual_tuples: &ctx,
                                context: a.context.as_ref(),
                            },
                        );
                        if c != Ok(true) {
                            report.failures.push(format!(
                                "{here} list-objects #{ai}: returned {o} but check says {}",
                                show(&c)
                            ));
                        }
                    }
                }
            }

            for (ai, a) in stage.list_users_assertions.iter().enumerate() {
                let ctx = with_stage(&a.contextual_tuples);
                let filters: Vec<UserFilter<'_>> = a
                    .request
                    .filters
                    .iter()
                    .map(|f| UserFilter::parse(f))
                    .collect();
                let req = ListUsersRequest {
                    object: &a.request.object,
                    relation: &a.request.relation,
                    user_filters: &filters,
                    contextual_tuples: &ctx,
                    context: a.context.as_ref(),
                };
                let got = list_users(&ts, reader, &req);
                let expected: BTreeSet<&str> = a.expectation.iter().map(String::as_str).collect();
                let ok = match (&got, a.error_code) {
                    (Ok(resp), 0) => {
                        resp.users
                            .iter()
                            .map(String::as_str)
                            .collect::<BTreeSet<_>>()
                            == expected
                            && resp.users.len() == expected.len()
                    }
                    (Err(e), code) if code != 0 => e.code().number() == code,
                    _ => false,
                };
                report.outcome(ok, || {
                    format!(
                        "{here} list-users #{ai} {}#{} filters {:?}: expected {}, got {}",
                        a.request.object,
                        a.request.relation,
                        a.request.filters,
                        if a.error_code != 0 {
                            format!("error {}", a.error_code)
                        } else {
                            format!("{expected:?}")
                        },
                        show(&got.as_ref().map(|r| &r.users))
                    )
                });
                if let Ok(resp) = &got {
                    for u in &resp.users {
                        let c = check(
                            &ts,
                            reader,
                            &CheckRequest {
                                object: &a.request.object,
                                relation: &a.request.relation,
                                user: u,
                                contextual_tuples: &ctx,
                                context: a.context.as_ref(),
                            },
                        );
                        if c != Ok(true) {
                            report.failures.push(format!(
                                "{here} list-users #{ai}: returned {u} but check says {}",
                                show(&c)
                            ));
                        }
                    }
                }
            }
        }
    }
    report
}

fn assert_clean(variant: &str, report: Report) {
    eprintln!(
        "matrix ({variant}): {} assertions passed, {} failed; {} stages over 100 tuples skipped",
        report.passed,
        report.failures.len(),
        report.skipped_stages
    );
    assert!(
        report.failures.is_empty(),
        "{} matrix failures ({variant}):\n{}",
        report.failures.len(),
        report.failures.join("\n")
    );
}

#[test]
fn matrix_with_written_tuples() {
    assert_clean("written tuples", run(false));
}

#[test]
fn matrix_with_contextual_tuples() {
    assert_clean("contextual tuples", run(true));
}
