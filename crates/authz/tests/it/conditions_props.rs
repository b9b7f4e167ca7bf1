//! Property tests: no JSON context and no expression text can make conditions panic, and typed
//! parameters never turn a wrongly typed value into a result.

use indexmap::IndexMap;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use trustgate_authz::condition::{
    ConditionError, ConditionOutcome, ConditionSet, validate_condition,
};
use trustgate_authz::model::{AuthorizationModel, Condition, ConditionParamTypeRef, TypeName};

fn scalar(t: TypeName) -> ConditionParamTypeRef {
    ConditionParamTypeRef {
        type_name: t,
        generic_types: vec![],
    }
}

fn generic(t: TypeName, of: TypeName) -> ConditionParamTypeRef {
    ConditionParamTypeRef {
        type_name: t,
        generic_types: vec![scalar(of)],
    }
}

/// Parameters of every type, shared by all generated conditions.
fn params() -> IndexMap<String, ConditionParamTypeRef> {
    [
        ("b", scalar(TypeName::Bool)),
        ("i", scalar(TypeName::Int)),
        ("u", scalar(TypeName::Uint)),
        ("d", scalar(TypeName::Double)),
        ("s", scalar(TypeName::String)),
        ("dur", scalar(TypeName::Duration)),
        ("ts", scalar(TypeName::Timestamp)),
        ("ip", scalar(TypeName::IpAddress)),
        ("a", scalar(TypeName::Any)),
        ("l", generic(TypeName::List, TypeName::String)),
        ("li", generic(TypeName::List, TypeName::Int)),
        ("m", generic(TypeName::Map, TypeName::String)),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_owned(), t))
    .collect()
}

const EXPRESSIONS: &[&str] = &[
    "b",
    "i > 3 && u < 10u",
    "d >= 1.5 || s.startsWith('x')",
    "dur < duration('1h') && ts > timestamp('2020-01-01T00:00:00Z')",
    "ip.in_cidr('10.0.0.0/8') || ip.in_cidr(s)",
    "a == 1 || a.x == 'y' || size(a) > 2",
    "s in l && l.exists(x, x.contains(s))",
    "li.all(x, x > 0) && li.map(x, x * 2).size() == size(li)",
    "has(m.k) && m['k'] == s && 'z' in m",
    "ts + dur > timestamp('2024-01-01T00:00:00Z')",
    "int(s) == i && string(i) == s && double(i) == d",
    "s.matches(m.k)",
    "a",
];

fn model() -> AuthorizationModel {
    let conditions = EXPRESSIONS
        .iter()
        .enumerate()
        .map(|(n, e)| {
            let name = format!("c{n}");
            let c = Condition {
                name: name.clone(),
                expression: (*e).to_owned(),
                parameters: params(),
                metadata: None,
            };
            (name, c)
        })
        .collect();
    AuthorizationModel {
        id: String::new(),
        schema_version: "1.1".to_owned(),
        type_definitions: vec![],
        conditions,
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop_oneof![
            Just("10.1.2.3".to_owned()),
            Just("::1".to_owned()),
            Just("10.0.0.0/8".to_owned()),
            Just("1h30m".to_owned()),
            Just("2023-01-01T00:00:00Z".to_owned()),
            Just("42".to_owned()),
            Just("-1".to_owned()),
            Just("(".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,3}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn context() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        Just("b".to_owned()),
        Just("i".to_owned()),
        Just("u".to_owned()),
        Just("d".to_owned()),
        Just("s".to_owned()),
        Just("dur".to_owned()),
        Just("ts".to_owned()),
        Just("ip".to_owned()),
        Just("a".to_owned()),
        Just("l".to_owned()),
        Just("li".to_owned()),
        Just("m".to_owned()),
        "[a-z]{1,4}",
    ];
    prop::collection::vec((key, json_value()), 0..8).prop_map(|kv| kv.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn random_contexts_never_panic(tuple in context(), request in context()) {
        let set = ConditionSet::compile(&model()).expect("model compiles");
        for n in 0..EXPRESSIONS.len() {
            let name = format!("c{n}");
            let outcome = set.evaluate(&name, Some(&tuple), Some(&request));
            if let Ok(ConditionOutcome::MissingParameters(missing)) = &outcome {
                prop_assert!(!missing.is_empty());
                prop_assert!(missing.windows(2).all(|w| w[0] < w[1]), "sorted: {missing:?}");
                for p in missing {
                    prop_assert!(!tuple.contains_key(p) && !request.contains_key(p));
                }
                // Every declared parameter without a value is reported, none is guessed.
                let absent = params()
                    .keys()
                    .filter(|p| !tuple.contains_key(*p) && !request.contains_key(*p))
                    .count();
                prop_assert_eq!(missing.len(), absent);
            }
        }
    }

    #[test]
    fn a_bool_parameter_is_met_only_by_true(value in json_value()) {
        // A condition declaring only `b`: every declared parameter must have a value.
        let only_b = Condition {
            name: "c".to_owned(),
            expression: "b".to_owned(),
            parameters: [("b".to_owned(), scalar(TypeName::Bool))].into_iter().collect(),
            metadata: None,
        };
        let model = AuthorizationModel {
            conditions: [("c".to_owned(), only_b)].into_iter().collect(),
            ..model()
        };
        let set = ConditionSet::compile(&model).expect("model compiles");
        let request: Map<String, Value> = [("b".to_owned(), value.clone())].into_iter().collect();
        let outcome = set.evaluate("c", None, Some(&request));
        match value {
            Value::Bool(true) => prop_assert_eq!(outcome, Ok(ConditionOutcome::Met)),
            Value::Bool(false) => prop_assert_eq!(outcome, Ok(ConditionOutcome::NotMet)),
            _ => {
                let is_type_error = matches!(outcome, Err(ConditionError::ParameterType { .. }));
                prop_assert!(is_type_error, "{:?}", outcome);
            }
        }
    }

    #[test]
    fn arbitrary_expression_text_never_panics(
        expression in prop_oneof![
            ".{0,40}",
            "[ a-z0-9_.()\\[\\]{}'\"+*/%<>=!&|?:,-]{0,60}",
            prop::collection::vec(
                prop_oneof![
                    Just("b"), Just("i"), Just("s"), Just("l"), Just("m"), Just("ip"), Just("a"),
                    Just("dur"), Just("ts"), Just(" && "), Just(" || "), Just(" == "),
                    Just(" < "), Just(" + "), Just(" - "), Just("!"), Just("("), Just(")"),
                    Just("["), Just("]"), Just("."), Just("size("), Just(".exists(x, "),
                    Just("x"), Just("1"), Just("'q'"), Just(" in "), Just(" ? "), Just(" : "),
                    Just(".in_cidr("), Just("duration("), Just("timestamp("), Just("has("),
                    Just(", "), Just("1u"), Just("2.5"), Just("true"), Just("null"), Just("{"),
                    Just("}"), Just(":"), Just("-"),
                ],
                0..24,
            ).prop_map(|parts| parts.concat()),
        ],
        request in context(),
    ) {
        let condition = Condition {
            name: "c".to_owned(),
            expression,
            parameters: params(),
            metadata: None,
        };
        if validate_condition(&condition).is_ok() {
            let model = AuthorizationModel {
                id: String::new(),
                schema_version: "1.1".to_owned(),
                type_definitions: vec![],
                conditions: [("c".to_owned(), condition)].into_iter().collect(),
            };
            let set = ConditionSet::compile(&model).expect("validated conditions compile");
            let _ = set.evaluate("c", None, Some(&request));
        }
    }
}
