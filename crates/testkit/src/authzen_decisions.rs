//! Serde types for the AuthZEN interop decision files (`conformance/authzen/*/decisions*.json`):
//! each case is a request body and the expected answer — a boolean decision for `evaluation`
//! cases, the whole `evaluations` array for batch cases.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The vendored API gateway file (25 single decisions).
pub const GATEWAY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../conformance/authzen/gateway/decisions.json"
);

/// The vendored Todo file with single decisions only (40).
pub const TODO_01: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../conformance/authzen/todo/decisions-authorization-api-1_0-01.json"
);

/// The vendored Todo file with single decisions (40) and batches (3).
pub const TODO_02: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../conformance/authzen/todo/decisions-authorization-api-1_0-02.json"
);

/// A decision file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionFile {
    /// Single decisions (`POST /access/v1/evaluation`).
    #[serde(default)]
    pub evaluation: Vec<Case<bool>>,
    /// Batches (`POST /access/v1/evaluations`): the expected `evaluations` array.
    #[serde(default)]
    pub evaluations: Vec<Case<Vec<Value>>>,
}

/// A request and what it must answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case<E> {
    /// The request body.
    pub request: Value,
    /// The expected answer.
    pub expected: E,
}

/// Reads a decision file. Panics with the reason if it is missing or unreadable (test support
/// only).
pub fn load(path: &str) -> DecisionFile {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_file_reads() {
        let file = load(GATEWAY);
        assert_eq!(file.evaluation.len(), 25);
        assert!(file.evaluations.is_empty());
    }

    #[test]
    fn the_todo_files_read() {
        let first = load(TODO_01);
        assert_eq!((first.evaluation.len(), first.evaluations.len()), (40, 0));
        let second = load(TODO_02);
        assert_eq!((second.evaluation.len(), second.evaluations.len()), (40, 3));
    }
}
