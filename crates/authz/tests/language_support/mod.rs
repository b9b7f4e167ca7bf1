//! Shared helpers for the data-driven tests over OpenFGA's language conformance files.

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;
use trustgate_authz::dsl::DslError;

/// Path of a file or directory under `conformance/openfga/language`.
pub fn language_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/openfga/language")
        .join(rel)
}

/// Reads a YAML case file as a list of JSON values.
pub fn load_cases(rel: &str) -> Vec<Value> {
    let path = language_path(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let value: Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    match value {
        Value::Array(items) => items,
        other => panic!("{} is not a list: {other}", path.display()),
    }
}

/// A case's name.
pub fn case_name(case: &Value) -> String {
    case.get("name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_string()
}

/// Whether upstream marks the case as skipped.
pub fn is_skipped(case: &Value) -> bool {
    case.get("skip").and_then(Value::as_bool).unwrap_or(false)
}

fn num(v: &Value, a: &str, b: &str) -> Option<u64> {
    v.get(a).and_then(|x| x.get(b)).and_then(Value::as_u64)
}

/// Compares actual errors with a case's `expected_errors`, checking message, lines, columns and
/// those metadata keys the expectation states. Returns a description of the first difference.
pub fn compare_errors(expected: &[Value], actual: &[DslError]) -> Result<(), String> {
    let mut problems = Vec::new();
    if expected.len() != actual.len() {
        problems.push(format!(
            "expected {} errors, got {}",
            expected.len(),
            actual.len()
        ));
    }
    for (i, exp) in expected.iter().enumerate() {
        let Some(act) = actual.get(i) else {
            problems.push(format!(
                "  missing #{i}: {}",
                exp.get("msg").and_then(Value::as_str).unwrap_or("")
            ));
            continue;
        };
        let mut diffs = Vec::new();
        let msg = exp.get("msg").and_then(Value::as_str).unwrap_or("");
        if msg != act.message {
            diffs.push(format!("msg {msg:?} != {:?}", act.message));
        }
        let checks = [
            ("line", "start", act.line.map(|s| s.start)),
            ("line", "end", act.line.map(|s| s.end)),
            ("column", "start", act.column.map(|s| s.start)),
            ("column", "end", act.column.map(|s| s.end)),
        ];
        for (a, b, got) in checks {
            if let Some(want) = num(exp, a, b) {
                let got = got.map(|g| g as u64);
                if got != Some(want) {
                    diffs.push(format!("{a}.{b} {want} != {got:?}"));
                }
            }
        }
        if let Some(meta) = exp.get("metadata") {
            if let Some(sym) = meta.get("symbol").and_then(Value::as_str)
                && act.symbol.as_deref() != Some(sym)
            {
                diffs.push(format!("symbol {sym:?} != {:?}", act.symbol));
            }
            if let Some(et) = meta.get("errorType").and_then(Value::as_str)
                && act.error_type.as_deref() != Some(et)
            {
                diffs.push(format!("errorType {et:?} != {:?}", act.error_type));
            }
        }
        if !diffs.is_empty() {
            problems.push(format!("  #{i}: {}", diffs.join("; ")));
        }
    }
    for (i, act) in actual.iter().enumerate().skip(expected.len()) {
        problems.push(format!(
            "  unexpected #{i}: {} at {:?}:{:?}",
            act.message, act.line, act.column
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Fails with every failing case listed, after running all of them.
pub fn report(file: &str, total: usize, failures: Vec<(String, String)>) {
    let passed = total - failures.len();
    eprintln!("{file}: {passed}/{total} cases pass");
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .map(|(name, why)| format!("- {name}\n{why}"))
            .collect();
        panic!(
            "{file}: {} of {total} cases fail:\n{}",
            failures.len(),
            list.join("\n")
        );
    }
}
