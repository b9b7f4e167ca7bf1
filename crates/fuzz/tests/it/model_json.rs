//! JSON authorization models (`POST /stores/{id}/authorization-models`): deserialization,
//! `validate_json_model`, the type system and conditions built from a valid model.

use bolero::check;
use serde_json::{Value, json};
use trustgate_authz::dsl;
use trustgate_authz::engine::TypeSystem;
use trustgate_authz::model::AuthorizationModel;
use trustgate_authz::validate::validate_json_model;

use crate::support::{SMOKE_ITERATIONS, pick};

/// The server's default body limit (`http.body_limit_bytes`, 1 MiB) bounds a JSON model; the
/// bolero runs stay at a tenth of it, the structured target at 100+ types (the PDP's cap).
const MAX_JSON_BYTES: usize = 128 * 1024;

fn check_model(model: AuthorizationModel) {
    if validate_json_model(&model).is_err() {
        return;
    }
    // A valid model is usable: its type system (with compiled conditions) builds.
    let ts = TypeSystem::new(model.clone());
    assert!(ts.is_ok(), "valid model has no type system: {:?}", ts.err());
    // And if it has a DSL form, that form parses back to a model with the same DSL form: JSON
    // may spell one rewrite several ways (a one-child union is its child), the DSL only one.
    // The DSL's own validation is stricter than the JSON model's (as in OpenFGA: a union may
    // name one operand twice in JSON, the DSL reports a duplicate), so the written text must
    // parse syntactically, not pass the DSL-only rules.
    if let Ok(text) = dsl::write(&model) {
        let again = dsl::parse_syntax_only(&text)
            .unwrap_or_else(|e| panic!("written model does not parse: {e}\n{text}"));
        let rewritten = dsl::write(&again).expect("a parsed model has a DSL form");
        assert_eq!(
            rewritten, text,
            "JSON -> DSL -> model -> DSL changed the model"
        );
        assert_eq!(again.conditions, model.conditions, "{text}");
    }
}

#[test]
fn bytes() {
    check!()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(MAX_JSON_BYTES)
        .for_each(|input: &[u8]| {
            if let Ok(model) = serde_json::from_slice::<AuthorizationModel>(input) {
                check_model(model);
            }
        });
}

const TYPES: &[&str] = &["user", "doc", "folder", "group"];
const RELATIONS: &[&str] = &["owner", "viewer", "parent", "member", "editor"];

/// Reads a userset tree from `ops`, nesting at most `depth` levels.
fn userset(ops: &mut std::slice::Iter<'_, u8>, depth: usize) -> Value {
    let op = ops.next().copied().unwrap_or(0);
    let arg = ops.next().copied().unwrap_or(0);
    let leaf = depth == 0;
    match if leaf { op % 3 } else { op % 7 } {
        0 => json!({"this": {}}),
        1 => json!({"computedUserset": {"relation": pick(RELATIONS, arg)}}),
        2 => json!({"tupleToUserset": {
            "tupleset": {"relation": pick(RELATIONS, arg)},
            "computedUserset": {"relation": pick(RELATIONS, arg / 5)}}}),
        3 => json!({"union": {"child": children(ops, depth, arg)}}),
        4 => json!({"intersection": {"child": children(ops, depth, arg)}}),
        5 => json!({"difference": {
            "base": userset(ops, depth - 1),
            "subtract": userset(ops, depth - 1)}}),
        _ => json!({"union": {"child": []}}),
    }
}

fn children(ops: &mut std::slice::Iter<'_, u8>, depth: usize, n: u8) -> Vec<Value> {
    (0..(n % 4 + 1)).map(|_| userset(ops, depth - 1)).collect()
}

fn direct_types(ops: &mut std::slice::Iter<'_, u8>) -> Vec<Value> {
    let n = ops.next().copied().unwrap_or(0) % 4;
    (0..n)
        .map(|_| {
            let t = ops.next().copied().unwrap_or(0);
            let shape = ops.next().copied().unwrap_or(0);
            match shape % 5 {
                0 | 1 => json!({"type": pick(TYPES, t)}),
                2 => json!({"type": pick(TYPES, t), "relation": pick(RELATIONS, shape / 5)}),
                3 => json!({"type": pick(TYPES, t), "wildcard": {}}),
                _ => json!({"type": pick(TYPES, t), "condition": "in_range"}),
            }
        })
        .collect()
}

/// Builds a JSON model from an op stream: a few types, each with a few relations whose
/// rewrites nest unions, intersections, differences and tuple-to-usersets.
fn model_from(ops: &[u8]) -> Value {
    let mut it = ops.iter();
    let n_types = it.next().copied().unwrap_or(1) % 5 + 1;
    let mut types = vec![json!({"type": "user"})];
    for t in 1..usize::from(n_types) {
        let mut relations = serde_json::Map::new();
        let mut metadata = serde_json::Map::new();
        let n_rel = it.next().copied().unwrap_or(0) % 5;
        for name in RELATIONS.iter().take(usize::from(n_rel)) {
            let name = *name;
            relations.insert(name.into(), userset(&mut it, 4));
            metadata.insert(
                name.into(),
                json!({"directly_related_user_types": direct_types(&mut it)}),
            );
        }
        types.push(json!({
            "type": TYPES[t % TYPES.len()],
            "relations": relations,
            "metadata": {"relations": metadata},
        }));
    }
    json!({
        "schema_version": "1.1",
        "type_definitions": types,
        "conditions": {"in_range": {"name": "in_range", "expression": "x < 10",
            "parameters": {"x": {"type_name": "TYPE_NAME_INT"}}}},
    })
}

#[test]
fn structured() {
    check!()
        .with_type::<Vec<u8>>()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(4096)
        .for_each(|ops| {
            // The generator may write an empty union or intersection, which the JSON model
            // format refuses (at least one operand); every other model it writes is readable.
            let value = model_from(ops);
            match serde_json::from_value::<AuthorizationModel>(value) {
                Ok(model) => check_model(model),
                Err(e) => assert!(e.to_string().contains("at least one operand"), "{e}"),
            }
        });
}
