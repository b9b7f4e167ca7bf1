//! Data-driven tests over OpenFGA's DSL and JSON validation case files. Every case runs; the
//! assertion lists every failing case by name.

mod language_support;

use language_support::{case_name, compare_errors, is_skipped, load_cases, report};
use serde_json::Value;
use trustgate_authz::dsl::{self, DslError};
use trustgate_authz::model::AuthorizationModel;
use trustgate_authz::validate;

fn expected_errors(case: &Value) -> Vec<Value> {
    case.get("expected_errors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn run_dsl_cases(file: &str, check: fn(&str) -> Result<AuthorizationModel, dsl::DslErrors>) {
    let cases = load_cases(file);
    let mut failures = Vec::new();
    let mut total = 0;
    for case in &cases {
        if is_skipped(case) {
            continue;
        }
        total += 1;
        let name = case_name(case);
        let text = case.get("dsl").and_then(Value::as_str).unwrap_or("");
        let expected = expected_errors(case);
        let actual: Vec<DslError> = match check(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors,
        };
        if let Err(why) = compare_errors(&expected, &actual) {
            failures.push((name, why));
        }
    }
    report(file, total, failures);
}

#[test]
fn dsl_syntax_validation_cases() {
    run_dsl_cases("dsl-syntax-validation-cases.yaml", dsl::parse_syntax_only);
}

#[test]
fn dsl_semantic_validation_cases() {
    run_dsl_cases("dsl-semantic-validation-cases.yaml", dsl::parse);
}

#[test]
fn json_validation_cases() {
    let file = "json-validation-cases.yaml";
    let cases = load_cases(file);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case_name(case);
        let json = case.get("json").and_then(Value::as_str).unwrap_or("");
        let expected = expected_errors(case);
        let actual: Vec<DslError> = match serde_json::from_str::<AuthorizationModel>(json) {
            Err(e) => {
                failures.push((name, format!("json does not deserialize: {e}")));
                continue;
            }
            Ok(model) => match validate::validate_json_model(&model) {
                Ok(()) => Vec::new(),
                Err(e) => e
                    .errors
                    .into_iter()
                    .map(|e| DslError {
                        message: e.message,
                        line: None,
                        column: None,
                        symbol: Some(e.symbol),
                        error_type: Some(e.kind.error_type().to_string()),
                        file: None,
                        module: None,
                    })
                    .collect(),
            },
        };
        if let Err(why) = compare_errors(&expected, &actual) {
            failures.push((name, why));
        }
    }
    report(file, cases.len(), failures);
}

#[test]
fn json_syntax_transformer_cases() {
    let file = "json-syntax-transformer-validation-cases.yaml";
    let cases = load_cases(file);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case_name(case);
        let json = case.get("json").and_then(Value::as_str).unwrap_or("");
        let valid = case.get("valid").and_then(Value::as_bool).unwrap_or(true);
        let model: AuthorizationModel = match serde_json::from_str(json) {
            Ok(m) => m,
            Err(e) => {
                failures.push((name, format!("json does not deserialize: {e}")));
                continue;
            }
        };
        match (dsl::write(&model), valid) {
            (Ok(text), true) => {
                // What is written must parse back to an equivalent model.
                if let Err(e) = dsl::parse_syntax_only(&text) {
                    failures.push((name, format!("written DSL does not parse: {e}\n{text}")));
                } else if let Some(want) = case.get("dsl").and_then(Value::as_str)
                    && want != text
                {
                    failures.push((name, format!("got:\n{text}\nwant:\n{want}")));
                }
            }
            (Ok(text), false) => failures.push((name, format!("expected an error, got:\n{text}"))),
            (Err(e), true) => failures.push((name, format!("unexpected error: {e}"))),
            (Err(e), false) => {
                let want = case
                    .get("error_message")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if e.to_string() != want {
                    failures.push((name, format!("error {:?} != {want:?}", e.to_string())));
                }
            }
        }
    }
    report(file, cases.len(), failures);
}
