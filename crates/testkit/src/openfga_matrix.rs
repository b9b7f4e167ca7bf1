//! Serde types for OpenFGA's matrix test files (`consolidated_1_1_tests.yaml` and friends).
//!
//! A file is a list of tests; a test is a list of stages; a stage writes a model (in the DSL),
//! adds tuples to the store (tuples accumulate across stages, as the upstream runner writes
//! them), and asserts Check, ListObjects and ListUsers results or error codes. The upstream
//! runner also runs every single-stage test a second time with the stage's tuples passed as
//! contextual tuples instead of being written (when there are at most 100 of them).
//!
//! The types are deliberately lenient (unknown keys are ignored, an empty `expectation:` is an
//! empty list) so that the same types read every version of the file; the harnesses decide
//! what a missing field means.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The vendored `conformance/openfga/consolidated_1_1_tests.yaml`.
pub const CONSOLIDATED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../conformance/openfga/consolidated_1_1_tests.yaml"
);

/// Reads and parses OpenFGA's consolidated matrix suite. Panics with the reason if the vendored
/// file is missing or unreadable (test support only).
pub fn load_consolidated() -> MatrixFile {
    let text = std::fs::read_to_string(CONSOLIDATED).expect("read the matrix file");
    from_yaml(&text).expect("parse the matrix file")
}

/// Reads a matrix file.
pub fn from_yaml(text: &str) -> Result<MatrixFile, serde_norway::Error> {
    serde_norway::from_str(text)
}

/// A whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MatrixFile {
    /// The tests, in file order (names are not guaranteed unique).
    #[serde(default)]
    pub tests: Vec<MatrixTest>,
}

/// One named test.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MatrixTest {
    /// The test name.
    pub name: String,
    /// The stages, run in order against the same store.
    #[serde(default)]
    pub stages: Vec<Stage>,
}

/// One stage: a model, tuples to write, assertions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// The model in the OpenFGA DSL.
    #[serde(default)]
    pub model: String,
    /// Tuples written to the store before the assertions run.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tuples: Vec<Tuple>,
    /// Check assertions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub check_assertions: Vec<CheckAssertion>,
    /// ListObjects assertions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub list_objects_assertions: Vec<ListObjectsAssertion>,
    /// ListUsers assertions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub list_users_assertions: Vec<ListUsersAssertion>,
}

/// A tuple as the files spell it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tuple {
    /// `type:id`.
    pub object: String,
    /// The relation.
    pub relation: String,
    /// `type:id`, `type:*` or `type:id#relation`.
    pub user: String,
    /// An optional condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<TupleCondition>,
}

/// A tuple's condition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TupleCondition {
    /// The condition name.
    pub name: String,
    /// Its stored context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

/// The `tuple` of a check assertion (no condition).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckTuple {
    /// `type:id`.
    pub object: String,
    /// The relation.
    pub relation: String,
    /// The user.
    pub user: String,
}

/// A Check assertion: either `expectation` or `errorCode` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckAssertion {
    /// The checked tuple.
    pub tuple: CheckTuple,
    /// The expected `allowed`.
    #[serde(default)]
    pub expectation: bool,
    /// The expected OpenFGA error code (0 or absent: no error).
    #[serde(default)]
    pub error_code: u32,
    /// Contextual tuples.
    #[serde(default, deserialize_with = "null_as_default")]
    pub contextual_tuples: Vec<Tuple>,
    /// The request context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

/// A ListObjects request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListObjectsRequest {
    /// The user.
    pub user: String,
    /// The object type.
    #[serde(rename = "type")]
    pub object_type: String,
    /// The relation.
    pub relation: String,
}

/// A ListObjects assertion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListObjectsAssertion {
    /// The request.
    pub request: ListObjectsRequest,
    /// The expected objects, in any order (empty when absent or `null`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub expectation: Vec<String>,
    /// The expected error code (0: none).
    #[serde(default)]
    pub error_code: u32,
    /// Contextual tuples.
    #[serde(default, deserialize_with = "null_as_default")]
    pub contextual_tuples: Vec<Tuple>,
    /// The request context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

/// A ListUsers request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListUsersRequest {
    /// User filters, each `type` or `type#relation`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub filters: Vec<String>,
    /// `type:id`.
    pub object: String,
    /// The relation.
    pub relation: String,
}

/// A ListUsers assertion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListUsersAssertion {
    /// The request.
    pub request: ListUsersRequest,
    /// The expected users (`user:anne`, `user:*`, `group:x#member`), in any order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub expectation: Vec<String>,
    /// The expected error code (0: none).
    #[serde(default)]
    pub error_code: u32,
    /// Contextual tuples.
    #[serde(default, deserialize_with = "null_as_default")]
    pub contextual_tuples: Vec<Tuple>,
    /// The request context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
}

/// `key:` with no value (YAML null) reads as the empty default.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nulls_and_error_codes() {
        let f = from_yaml(
            r#"
tests:
  - name: t
    stages:
      - model: |
          model
            schema 1.1
        tuples:
          - object: document:1
            relation: viewer
            user: user:a
            condition:
              name: c
              context: {x: 1}
        checkAssertions:
          - tuple: {object: document:1, relation: viewer, user: user:a}
            expectation: true
          - tuple: {object: document:1, relation: viewer, user: "a:b:c"}
            errorCode: 2000
        listObjectsAssertions:
          - request: {user: user:a, type: document, relation: viewer}
            expectation:
        listUsersAssertions:
          - request:
              filters: [user]
              object: document:1
              relation: viewer
            contextualTuples:
              - {object: document:2, relation: viewer, user: user:b}
            expectation: [user:a]
"#,
        )
        .expect("parse");
        let stage = &f.tests[0].stages[0];
        assert_eq!(
            stage.tuples[0].condition.as_ref().map(|c| c.name.as_str()),
            Some("c")
        );
        assert!(stage.check_assertions[0].expectation);
        assert_eq!(stage.check_assertions[1].error_code, 2000);
        assert!(stage.list_objects_assertions[0].expectation.is_empty());
        assert_eq!(stage.list_users_assertions[0].contextual_tuples.len(), 1);
    }
}
