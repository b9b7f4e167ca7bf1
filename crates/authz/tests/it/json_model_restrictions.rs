//! JSON-only model rules. Found by the `model_json::structured` fuzz target (crates/fuzz): a
//! JSON model with type restrictions on a relation that has no direct assignment validated, but
//! the DSL cannot write such restrictions, so the model lost them on its way to DSL and back
//! (and with them the only use of its condition, which then failed DSL validation).

use serde_json::json;
use trustgate_authz::dsl;
use trustgate_authz::model::AuthorizationModel;
use trustgate_authz::validate::{ErrorKind, validate_json_model};

fn model(owner: serde_json::Value, owner_types: serde_json::Value) -> AuthorizationModel {
    serde_json::from_value(json!({
        "schema_version": "1.1",
        "type_definitions": [
            {"type": "user"},
            {"type": "doc",
             "relations": {"owner": owner, "viewer": {"this": {}}},
             "metadata": {"relations": {
                 "owner": {"directly_related_user_types": owner_types},
                 "viewer": {"directly_related_user_types": [{"type": "user"}]}}}}
        ],
        "conditions": {"in_range": {"name": "in_range", "expression": "x < 10",
            "parameters": {"x": {"type_name": "TYPE_NAME_INT"}}}}
    }))
    .expect("the JSON model format")
}

#[test]
fn type_restrictions_on_a_relation_without_direct_assignment_are_refused() {
    let computed = json!({"computedUserset": {"relation": "viewer"}});
    let restricted = json!([{"type": "user", "condition": "in_range"}]);
    let errors = validate_json_model(&model(computed.clone(), restricted)).expect_err("refused");
    let error = errors
        .errors
        .iter()
        .find(|e| e.kind == ErrorKind::NonAssignableRelationHasTypes)
        .expect("the non-assignable relation is named");
    assert_eq!(error.symbol, "owner");
    assert_eq!(
        error.message,
        "the non-assignable relation 'owner' in object type 'doc' should not contain a relation type"
    );
    assert_eq!(error.kind.api_code(), "invalid_authorization_model");
}

#[test]
fn restrictions_on_an_assignable_relation_and_none_on_a_computed_one_are_accepted() {
    let union =
        json!({"union": {"child": [{"this": {}}, {"computedUserset": {"relation": "viewer"}}]}});
    let restricted = json!([{"type": "user", "condition": "in_range"}]);
    let valid = model(union, restricted);
    validate_json_model(&valid).expect("valid");
    // And such a model survives the DSL: written, parsed back, the same relations and types.
    let text = dsl::write(&valid).expect("writable");
    let again = dsl::parse(&text).expect("parses");
    assert_eq!(again.type_definitions[1], valid.type_definitions[1]);

    // A computed relation without restrictions is fine; only the condition is then unused.
    let computed = json!({"computedUserset": {"relation": "viewer"}});
    let errors = validate_json_model(&model(computed, json!([]))).expect_err("condition unused");
    assert!(
        errors
            .errors
            .iter()
            .all(|e| e.kind == ErrorKind::ConditionNotUsed),
        "{errors:?}"
    );
}

/// JSON can nest a one-operand union or intersection (`model_json::structured` found
/// `intersection[union[owner]]`); the DSL writes it as that operand, so writing, parsing and
/// writing again gives the same text.
#[test]
fn one_operand_unions_and_intersections_are_written_as_their_operand() {
    let nested = json!({"intersection": {"child": [
        {"union": {"child": [{"computedUserset": {"relation": "viewer"}}]}}
    ]}});
    let model: AuthorizationModel = serde_json::from_value(json!({
        "schema_version": "1.1",
        "type_definitions": [
            {"type": "user"},
            {"type": "doc",
             "relations": {"owner": nested, "viewer": {"this": {}}},
             "metadata": {"relations": {
                 "viewer": {"directly_related_user_types": [{"type": "user"}]}}}}
        ]
    }))
    .expect("the JSON model format");
    validate_json_model(&model).expect("valid");
    let text = dsl::write(&model).expect("writable");
    assert!(text.contains("define owner: viewer\n"), "{text}");
    let again = dsl::write(&dsl::parse(&text).expect("parses")).expect("writable");
    assert_eq!(again, text);
}

/// An empty union or intersection is not a model (found by the 10-minute
/// `model_json::structured` run: it validated and was written as `()`, which does not parse).
#[test]
fn empty_unions_and_intersections_are_refused_when_read() {
    for op in ["union", "intersection"] {
        let body = json!({
            "schema_version": "1.1",
            "type_definitions": [
                {"type": "user"},
                {"type": "doc",
                 "relations": {"owner": {"union": {"child": [{"this": {}}, {op: {"child": []}}]}}},
                 "metadata": {"relations": {
                     "owner": {"directly_related_user_types": [{"type": "user"}]}}}}
            ]
        });
        let err = serde_json::from_value::<AuthorizationModel>(body).expect_err(op);
        assert!(
            err.to_string().contains("at least one operand"),
            "{op}: {err}"
        );
    }
}
