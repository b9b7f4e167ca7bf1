//! OpenFGA's own matrix suite (`conformance/openfga/consolidated_1_1_tests.yaml`) through the
//! HTTP API, on SQLite and PostgreSQL: the same assertions as `crates/authz/tests/engine_matrix.rs`
//! (which runs them in-process against the engine), but every step is an HTTP JSON call to the
//! full router: one store per test (`POST /stores`), each stage's model written as JSON converted
//! from the DSL (`POST /authorization-models`), tuples written with `POST /write` (at most 100
//! per request), then every Check (`POST /check`), ListObjects and ListUsers assertion, with
//! errors compared by OpenFGA code. Every object and user a list returns must also pass Check;
//! that is asked with one `POST /batch-check` per list.
//!
//! Two variants, as upstream runs them (see the engine harness for the details):
//! - **written**: tuples are written through the API, queries name the stage's model id;
//! - **contextual**: nothing is written; every request carries the tuples the store would hold
//!   (at most 100) as `contextual_tuples`, and queries use the store's latest model.

use std::collections::BTreeSet;

use http::StatusCode;
use serde_json::{Value, json};
use trustgate_authz::dsl;
use trustgate_authz::engine::{TypeSystem, validate_tuple_for_write};
use trustgate_authz::tuple::{RelationshipCondition, TupleKey};
use trustgate_store::testing::TestDatabase;
use trustgate_testkit::openfga_matrix::{self, Tuple};

use crate::common::{Api, Resp};

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

/// OpenFGA's code name for the numeric codes the matrix uses.
fn code_name(code: u32) -> &'static str {
    match code {
        2000 => "validation_error",
        2001 => "authorization_model_not_found",
        2002 => "authorization_model_resolution_too_complex",
        2021 => "type_not_found",
        2022 => "relation_not_found",
        2027 => "invalid_tuple",
        4000 => "internal_error",
        _ => "unknown",
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

fn show(r: &Resp) -> String {
    String::from_utf8_lossy(&r.raw).chars().take(400).collect()
}

/// Whether `r` is the expected error (code != 0) or a 200.
fn error_matches(r: &Resp, code: u32) -> bool {
    let status = if code == 4000 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    r.status == status && r.code() == code_name(code)
}

fn with_model(mut body: Value, model_id: Option<&str>) -> Value {
    if let Some(id) = model_id {
        body["authorization_model_id"] = json!(id);
    }
    body
}

/// Asks Check for every `(object, user)` with one batch-check per 50; reports any that is not
/// allowed.
#[allow(clippy::too_many_arguments)]
async fn all_allowed(
    api: &Api,
    store: &str,
    model_id: Option<&str>,
    pairs: &[(String, String)],
    relation: &str,
    ctx: &[TupleKey],
    context: Option<&serde_json::Map<String, Value>>,
    here: &str,
    report: &mut Report,
) {
    for chunk in pairs.chunks(50) {
        let checks: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, (object, user))| {
                json!({
                    "tuple_key": {"object": object, "relation": relation, "user": user},
                    "contextual_tuples": {"tuple_keys": ctx},
                    "context": context,
                    "correlation_id": format!("c{i}"),
                })
            })
            .collect();
        let r = api
            .post(
                &format!("/stores/{store}/batch-check"),
                with_model(json!({ "checks": checks }), model_id),
            )
            .await;
        if r.status != StatusCode::OK {
            report
                .failures
                .push(format!("{here}: batch-check failed: {}", show(&r)));
            continue;
        }
        for (i, (object, user)) in chunk.iter().enumerate() {
            let item = &r.body["result"][format!("c{i}")];
            if item["allowed"] != json!(true) {
                report.failures.push(format!(
                    "{here}: returned {object}@{user} but check says {item}"
                ));
            }
        }
    }
}

async fn run(api: &Api, contextual: bool) -> Report {
    let file = openfga_matrix::load_consolidated();
    let mut report = Report::default();
    for (ti, test) in file.tests.iter().enumerate() {
        let store = api.create_store(&format!("matrix {ti}")).await;
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
            let model_json = serde_json::to_value(&model).expect("model json");
            let r = api
                .post(&format!("/stores/{store}/authorization-models"), model_json)
                .await;
            if r.status != StatusCode::CREATED {
                report
                    .failures
                    .push(format!("{here}: model write refused: {}", show(&r)));
                continue;
            }
            let model_id = r.body["authorization_model_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let stage_tuples: Vec<TupleKey> = if contextual {
                let ts = TypeSystem::new(model).expect("type system");
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
                for chunk in stage_tuples.chunks(100) {
                    let r = api
                        .post(
                            &format!("/stores/{store}/write"),
                            json!({
                                "writes": {"tuple_keys": chunk, "on_duplicate": "ignore"},
                                "authorization_model_id": model_id,
                            }),
                        )
                        .await;
                    if r.status != StatusCode::OK {
                        report
                            .failures
                            .push(format!("{here}: write refused: {}", show(&r)));
                    }
                }
            }
            // The written variant names the model; the contextual one uses the latest.
            let model_ref = (!contextual).then_some(model_id.as_str());
            let with_stage = |extra: &[Tuple]| -> Vec<TupleKey> {
                let mut v: Vec<TupleKey> = extra.iter().map(key).collect();
                if contextual {
                    v.extend(stage_tuples.iter().cloned());
                }
                v
            };

            for (ai, a) in stage.check_assertions.iter().enumerate() {
                let ctx = with_stage(&a.contextual_tuples);
                let r = api
                    .post(
                        &format!("/stores/{store}/check"),
                        with_model(
                            json!({
                                "tuple_key": {
                                    "object": a.tuple.object,
                                    "relation": a.tuple.relation,
                                    "user": a.tuple.user,
                                },
                                "contextual_tuples": {"tuple_keys": ctx},
                                "context": a.context,
                            }),
                            model_ref,
                        ),
                    )
                    .await;
                let ok = if a.error_code != 0 {
                    error_matches(&r, a.error_code)
                } else {
                    r.status == StatusCode::OK && r.body["allowed"] == json!(a.expectation)
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
                        show(&r)
                    )
                });
            }

            for (ai, a) in stage.list_objects_assertions.iter().enumerate() {
                let ctx = with_stage(&a.contextual_tuples);
                let r = api
                    .post(
                        &format!("/stores/{store}/list-objects"),
                        with_model(
                            json!({
                                "type": a.request.object_type,
                                "relation": a.request.relation,
                                "user": a.request.user,
                                "contextual_tuples": {"tuple_keys": ctx},
                                "context": a.context,
                            }),
                            model_ref,
                        ),
                    )
                    .await;
                let expected: BTreeSet<&str> = a.expectation.iter().map(String::as_str).collect();
                let got: Vec<String> = r.body["objects"]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .filter_map(|o| o.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let ok = if a.error_code != 0 {
                    error_matches(&r, a.error_code)
                } else {
                    r.status == StatusCode::OK
                        && got.iter().map(String::as_str).collect::<BTreeSet<_>>() == expected
                        && got.len() == expected.len()
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
                        show(&r)
                    )
                });
                if r.status == StatusCode::OK && !got.is_empty() {
                    let pairs: Vec<(String, String)> = got
                        .iter()
                        .map(|o| (o.clone(), a.request.user.clone()))
                        .collect();
                    all_allowed(
                        api,
                        &store,
                        model_ref,
                        &pairs,
                        &a.request.relation,
                        &ctx,
                        a.context.as_ref(),
                        &format!("{here} list-objects #{ai}"),
                        &mut report,
                    )
                    .await;
                }
            }

            for (ai, a) in stage.list_users_assertions.iter().enumerate() {
                let ctx = with_stage(&a.contextual_tuples);
                let (object_type, object_id) = a
                    .request
                    .object
                    .split_once(':')
                    .unwrap_or((a.request.object.as_str(), ""));
                let filters: Vec<Value> = a
                    .request
                    .filters
                    .iter()
                    .map(|f| match f.split_once('#') {
                        Some((t, rel)) => json!({"type": t, "relation": rel}),
                        None => json!({"type": f}),
                    })
                    .collect();
                let r = api
                    .post(
                        &format!("/stores/{store}/list-users"),
                        with_model(
                            json!({
                                "object": {"type": object_type, "id": object_id},
                                "relation": a.request.relation,
                                "user_filters": filters,
                                // OpenFGA's ListUsers takes a bare array.
                                "contextual_tuples": ctx,
                                "context": a.context,
                            }),
                            model_ref,
                        ),
                    )
                    .await;
                let expected: BTreeSet<&str> = a.expectation.iter().map(String::as_str).collect();
                let got: Vec<String> = r.body["users"]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .filter_map(|u| {
                                serde_json::from_value::<trustgate_server::fga::wire::FgaUser>(
                                    u.clone(),
                                )
                                .ok()
                                .map(|u| u.to_user_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let ok = if a.error_code != 0 {
                    error_matches(&r, a.error_code)
                } else {
                    r.status == StatusCode::OK
                        && got.iter().map(String::as_str).collect::<BTreeSet<_>>() == expected
                        && got.len() == expected.len()
                        && r.body["users"].as_array().map(Vec::len) == Some(got.len())
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
                        show(&r)
                    )
                });
                if r.status == StatusCode::OK && !got.is_empty() {
                    let pairs: Vec<(String, String)> = got
                        .iter()
                        .map(|u| (a.request.object.clone(), u.clone()))
                        .collect();
                    all_allowed(
                        api,
                        &store,
                        model_ref,
                        &pairs,
                        &a.request.relation,
                        &ctx,
                        a.context.as_ref(),
                        &format!("{here} list-users #{ai}"),
                        &mut report,
                    )
                    .await;
                }
            }
        }
    }
    report
}

fn assert_clean(variant: &str, report: Report) {
    eprintln!(
        "HTTP matrix ({variant}): {} assertions passed, {} failed; {} stages over 100 tuples skipped",
        report.passed,
        report.failures.len(),
        report.skipped_stages
    );
    assert!(
        report.failures.is_empty(),
        "{} HTTP matrix failures ({variant}):\n{}",
        report.failures.len(),
        report.failures.join("\n")
    );
}

async fn matrix_with_written_tuples(db: TestDatabase) {
    let api = Api::new(db).await;
    let started = std::time::Instant::now();
    let report = run(&api, false).await;
    eprintln!("written variant took {:?}", started.elapsed());
    assert_clean("written tuples", report);
}

async fn matrix_with_contextual_tuples(db: TestDatabase) {
    let api = Api::new(db).await;
    let started = std::time::Instant::now();
    let report = run(&api, true).await;
    eprintln!("contextual variant took {:?}", started.elapsed());
    assert_clean("contextual tuples", report);
}

trustgate_store::test_on_both_backends!(matrix_with_written_tuples, matrix_with_contextual_tuples);
