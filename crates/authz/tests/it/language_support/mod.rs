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

/// How upstream's parser produced an error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// Not a syntax error: a listener or semantic error, whose text is part of our contract.
    Semantic,
    /// ANTLR's `mismatched input 'X' expecting E`: the parser failed at `X` and no recovery was
    /// involved in producing the text, so we reproduce it.
    PlainMismatch,
    /// Text produced by ANTLR's error recovery or adaptive prediction (`extraneous input`,
    /// `missing X at`, `no viable alternative at input`, `token recognition error at`): it
    /// describes what the generated parser did, not the mistake, and is not reproduced.
    Recovery,
}

/// Classifies one upstream error message.
pub fn classify(msg: &str) -> UpstreamError {
    let missing_at = msg.starts_with("missing ") && msg.contains(" at '");
    if msg.starts_with("mismatched input '") {
        UpstreamError::PlainMismatch
    } else if msg.starts_with("extraneous input '")
        || msg.starts_with("no viable alternative at input '")
        || msg.starts_with("token recognition error at: ")
        || missing_at
    {
        UpstreamError::Recovery
    } else {
        UpstreamError::Semantic
    }
}

/// How a DSL case was checked, for the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Valid input: must parse.
    Valid,
    /// Every error compared exactly (message, positions, metadata).
    Exact,
    /// A syntax error: one error at upstream's first position, upstream's message.
    SyntaxExact,
    /// A syntax error: one error at upstream's first position, our own message.
    SyntaxPosition,
}

/// Whether `msg` is one of our own syntax messages (`unexpected 'X': expected ...`).
fn is_our_wording(msg: &str) -> bool {
    msg.starts_with("unexpected ")
        && msg.contains(": expected ")
        && classify(msg) == UpstreamError::Semantic
}

/// Compares the errors of a DSL case under the syntax-error contract (see
/// `tests/language_validation.rs`). Returns how the case was checked, or what differs.
pub fn compare_dsl_errors(expected: &[Value], actual: &[DslError]) -> Result<Checked, String> {
    let Some(first) = expected.first() else {
        return match actual {
            [] => Ok(Checked::Valid),
            _ => Err(format!(
                "expected no errors, got:\n{}",
                actual
                    .iter()
                    .map(|e| format!("  {e}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
        };
    };
    let msg = first.get("msg").and_then(Value::as_str).unwrap_or("");
    let kind = classify(msg);
    if kind == UpstreamError::Semantic {
        return compare_errors(expected, actual).map(|()| Checked::Exact);
    }
    // A syntax error: we stop at the first one, so exactly one error, at upstream's position.
    let [act] = actual else {
        return Err(format!(
            "expected exactly one syntax error at {:?}, got {}:\n{}",
            msg,
            actual.len(),
            actual
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    };
    let mut diffs = Vec::new();
    let checks = [
        ("line", "start", act.line.map(|s| s.start)),
        ("line", "end", act.line.map(|s| s.end)),
        ("column", "start", act.column.map(|s| s.start)),
        ("column", "end", act.column.map(|s| s.end)),
    ];
    for (a, b, got) in checks {
        if let Some(want) = num(first, a, b) {
            let got = got.map(|g| g as u64);
            if got != Some(want) {
                diffs.push(format!("{a}.{b} {want} != {got:?}"));
            }
        }
    }
    if let Some(sym) = first
        .get("metadata")
        .and_then(|m| m.get("symbol"))
        .and_then(Value::as_str)
        && act.symbol.as_deref() != Some(sym)
    {
        diffs.push(format!("symbol {sym:?} != {:?}", act.symbol));
    }
    if act.error_type.is_some() {
        diffs.push(format!(
            "a syntax error has no errorType, got {:?}",
            act.error_type
        ));
    }
    let checked = match kind {
        UpstreamError::PlainMismatch => {
            if act.message != msg {
                diffs.push(format!("msg {msg:?} != {:?}", act.message));
            }
            Checked::SyntaxExact
        }
        _ => {
            if !is_our_wording(&act.message) {
                diffs.push(format!(
                    "msg {:?} is not in our wording (\"unexpected 'X': expected ...\"); upstream: {msg:?}",
                    act.message
                ));
            }
            Checked::SyntaxPosition
        }
    };
    if diffs.is_empty() {
        Ok(checked)
    } else {
        Err(format!("  #0: {}", diffs.join("; ")))
    }
}

/// Applies the syntax-error contract to an expected error list that may mix syntax errors of
/// several files with other errors (modular models): only the first syntax error of each file
/// is kept (we stop there), and where upstream's text is a recovery artefact, our error at the
/// same index stands in for its message if it is in our wording. Positions and everything else
/// are then compared as usual.
pub fn apply_syntax_contract(expected: &[Value], actual: &[DslError]) -> Vec<Value> {
    let mut seen_files: Vec<Option<String>> = Vec::new();
    let mut kept: Vec<Value> = Vec::new();
    for exp in expected {
        let msg = exp.get("msg").and_then(Value::as_str).unwrap_or("");
        if classify(msg) != UpstreamError::Semantic {
            let file = exp.get("file").and_then(Value::as_str).map(str::to_string);
            if seen_files.contains(&file) {
                continue;
            }
            seen_files.push(file);
        }
        kept.push(exp.clone());
    }
    for (exp, act) in kept.iter_mut().zip(actual) {
        let msg = exp.get("msg").and_then(Value::as_str).unwrap_or("");
        if classify(msg) == UpstreamError::Recovery
            && is_our_wording(&act.message)
            && let Some(obj) = exp.as_object_mut()
        {
            obj.insert("msg".to_string(), Value::String(act.message.clone()));
        }
    }
    kept
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
