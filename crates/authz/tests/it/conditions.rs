//! Behaviour of OpenFGA conditions: parameter typing, CEL evaluation, missing parameters,
//! validation and cost limits. Negative paths come first in each group.

use indexmap::IndexMap;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use trustgate_authz::condition::{
    ConditionError, ConditionOutcome, ConditionSet, DEFAULT_MAX_EVALUATION_COST,
    validate_condition, validate_model_conditions,
};
use trustgate_authz::model::{AuthorizationModel, Condition, ConditionParamTypeRef, TypeName};

// ---------------------------------------------------------------------------------------------
// helpers

/// Parses `list<map<string>>`-style type spellings into a type reference.
fn type_ref(spec: &str) -> ConditionParamTypeRef {
    let spec = spec.trim();
    match spec.split_once('<') {
        Some((base, rest)) => ConditionParamTypeRef {
            type_name: TypeName::from_dsl_name(base).expect("type name"),
            generic_types: vec![type_ref(rest.strip_suffix('>').expect("closing >"))],
        },
        None => ConditionParamTypeRef {
            type_name: TypeName::from_dsl_name(spec).expect("type name"),
            generic_types: vec![],
        },
    }
}

fn condition(name: &str, expression: &str, params: &[(&str, &str)]) -> Condition {
    Condition {
        name: name.to_owned(),
        expression: expression.to_owned(),
        parameters: params
            .iter()
            .map(|(n, t)| ((*n).to_owned(), type_ref(t)))
            .collect::<IndexMap<_, _>>(),
        metadata: None,
    }
}

fn model(conditions: Vec<Condition>) -> AuthorizationModel {
    AuthorizationModel {
        id: String::new(),
        schema_version: "1.1".to_owned(),
        type_definitions: vec![],
        conditions: conditions
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect(),
    }
}

fn set(expression: &str, params: &[(&str, &str)]) -> ConditionSet {
    ConditionSet::compile(&model(vec![condition("c", expression, params)])).expect("compiles")
}

fn ctx(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        other => panic!("context must be an object, got {other}"),
    }
}

/// Evaluates `c` with only a request context.
fn eval(set: &ConditionSet, request: Value) -> Result<ConditionOutcome, ConditionError> {
    set.evaluate("c", None, Some(&ctx(request)))
}

fn met(set: &ConditionSet, request: Value) -> bool {
    match eval(set, request.clone()) {
        Ok(ConditionOutcome::Met) => true,
        Ok(ConditionOutcome::NotMet) => false,
        other => panic!("expected met/not met for {request}, got {other:?}"),
    }
}

fn param_error(set: &ConditionSet, request: Value) -> (String, String) {
    match eval(set, request.clone()) {
        Err(ConditionError::ParameterType {
            parameter, cause, ..
        }) => (parameter, cause),
        other => panic!("expected a parameter type error for {request}, got {other:?}"),
    }
}

fn eval_error(set: &ConditionSet, request: Value) -> String {
    match eval(set, request.clone()) {
        Err(e @ ConditionError::Evaluation { .. }) => e.to_string(),
        other => panic!("expected an evaluation error for {request}, got {other:?}"),
    }
}

fn compile_error(expression: &str, params: &[(&str, &str)]) -> String {
    let c = condition("c", expression, params);
    let from_validate = match validate_condition(&c) {
        Err(e @ ConditionError::Compile { .. }) => e.to_string(),
        other => panic!("expected `{expression}` to be rejected, got {other:?}"),
    };
    let from_compile = ConditionSet::compile(&model(vec![c])).expect_err("compile rejects too");
    assert_eq!(from_validate, from_compile.to_string());
    from_validate
}

// ---------------------------------------------------------------------------------------------
// parameter types: bad values first

#[test]
fn int_parameter_rejects_wrong_values() {
    let s = set("x == 1", &[("x", "int")]);
    for bad in [
        json!("abc"),
        json!(1.5),
        json!(true),
        json!(null),
        json!([1]),
        json!({"a": 1}),
        json!(1e20),
        json!(9_223_372_036_854_775_808_u64),
        json!("1.5"),
        json!(""),
        json!(" 1"),
        json!("0x10"),
    ] {
        let (param, cause) = param_error(&s, json!({ "x": bad }));
        assert_eq!(param, "x", "{bad}");
        assert!(!cause.is_empty());
    }
    let err = eval(&s, json!({"x": "abc"}))
        .expect_err("not a number")
        .to_string();
    assert_eq!(
        err,
        "parameter type error on condition 'c' - failed to convert context parameter 'x': \
         expected a int64 value, but found invalid string value 'abc'"
    );
}

#[test]
fn int_parameter_accepts_integers_integral_floats_and_numeric_strings() {
    let s = set("x == 42", &[("x", "int")]);
    assert!(met(&s, json!({"x": 42})));
    assert!(met(&s, json!({"x": 42.0})));
    assert!(
        met(&s, json!({"x": "42"})),
        "OpenFGA accepts numeric strings"
    );
    assert!(!met(&s, json!({"x": 41})));
    let neg = set("x < 0", &[("x", "int")]);
    assert!(met(&neg, json!({"x": -7})));
    let max = set("x == 9223372036854775807", &[("x", "int")]);
    assert!(met(&max, json!({"x": i64::MAX})));
}

#[test]
fn uint_parameter_rejects_negative_fractional_and_non_numeric() {
    let s = set("x == 42u", &[("x", "uint")]);
    for bad in [
        json!(-1),
        json!("-1"),
        json!(1.5),
        json!("x"),
        json!(false),
        json!(null),
    ] {
        let (param, _) = param_error(&s, json!({ "x": bad }));
        assert_eq!(param, "x");
    }
    let (_, cause) = param_error(&s, json!({"x": -1}));
    assert!(cause.contains("uint value out of range"), "{cause}");
    assert!(met(&s, json!({"x": 42})));
    assert!(met(&s, json!({"x": "42"})));
    let big = set("x == 18446744073709551615u", &[("x", "uint")]);
    assert!(met(&big, json!({"x": u64::MAX})));
}

#[test]
fn double_parameter() {
    let s = set("x > 1.25", &[("x", "double")]);
    for bad in [
        json!("x"),
        json!(true),
        json!(null),
        json!([]),
        json!("NaN"),
    ] {
        param_error(&s, json!({ "x": bad }));
    }
    assert!(met(&s, json!({"x": 1.5})));
    assert!(met(&s, json!({"x": 2})), "integers widen to double");
    assert!(met(&s, json!({"x": "2.5"})));
    assert!(!met(&s, json!({"x": 1})));
}

#[test]
fn bool_and_string_parameters_take_only_their_json_type() {
    let b = set("flag", &[("flag", "bool")]);
    for bad in [json!("true"), json!(1), json!(null), json!({})] {
        param_error(&b, json!({ "flag": bad }));
    }
    assert!(met(&b, json!({"flag": true})));
    assert!(!met(&b, json!({"flag": false})));

    let s = set("name == 'anne'", &[("name", "string")]);
    for bad in [json!(1), json!(null), json!(true), json!(["anne"])] {
        param_error(&s, json!({ "name": bad }));
    }
    let (_, cause) = param_error(&s, json!({"name": 1}));
    assert_eq!(cause, "expected type value 'string', but found 'float64'");
    assert!(met(&s, json!({"name": "anne"})));
}

#[test]
fn duration_parameter_uses_go_syntax() {
    let s = set("d > duration('1h')", &[("d", "duration")]);
    for bad in [
        json!("1d"),
        json!("10"),
        json!(""),
        json!(3600),
        json!("1h "),
        json!("P1D"),
    ] {
        let (param, _) = param_error(&s, json!({ "d": bad }));
        assert_eq!(param, "d");
    }
    assert!(met(&s, json!({"d": "1h30m"})));
    assert!(met(&s, json!({"d": "61m"})));
    assert!(!met(&s, json!({"d": "3600s"})));
    assert!(!met(&s, json!({"d": "-2h"})));
    assert!(met(&s, json!({"d": "1.5h"})));
}

#[test]
fn timestamp_parameter_is_rfc3339() {
    let s = set(
        "t > timestamp('2023-01-01T00:00:00Z')",
        &[("t", "timestamp")],
    );
    for bad in [
        json!("2023-06-01"),
        json!("2023-06-01 10:00:00Z"),
        json!("2023-06-01T10:00:00"),
        json!(1_700_000_000),
        json!("yesterday"),
        json!(null),
    ] {
        let (param, _) = param_error(&s, json!({ "t": bad }));
        assert_eq!(param, "t");
    }
    assert!(met(&s, json!({"t": "2023-06-01T10:00:00Z"})));
    assert!(met(&s, json!({"t": "2023-06-01T10:00:00.5+02:00"})));
    assert!(!met(&s, json!({"t": "2022-12-31T23:59:59Z"})));
}

#[test]
fn ipaddress_parameter_parses_v4_and_v6() {
    let s = set("ip.in_cidr('10.0.0.0/8')", &[("ip", "ipaddress")]);
    for bad in [
        json!("300.1.1.1"),
        json!("10.0.0"),
        json!("010.0.0.1"),
        json!("fe80::1%eth0"),
        json!(""),
        json!(167_772_161),
        json!(null),
    ] {
        let (param, _) = param_error(&s, json!({ "ip": bad }));
        assert_eq!(param, "ip");
    }
    assert!(met(&s, json!({"ip": "10.1.2.3"})));
    assert!(!met(&s, json!({"ip": "11.1.2.3"})));
    assert!(
        !met(&s, json!({"ip": "::ffff:10.1.2.3"})),
        "families never mix"
    );
}

#[test]
fn list_parameter_converts_every_item() {
    let s = set("'b' in l", &[("l", "list<string>")]);
    let (param, cause) = param_error(&s, json!({"l": ["a", 1]}));
    assert_eq!(param, "l");
    assert!(cause.contains("index `1`"), "{cause}");
    param_error(&s, json!({"l": "a,b"}));
    param_error(&s, json!({"l": {"0": "a"}}));
    assert!(met(&s, json!({"l": ["a", "b"]})));
    assert!(!met(&s, json!({"l": []})));

    let ints = set("l.all(i, i > 0)", &[("l", "list<int>")]);
    param_error(&ints, json!({"l": [1, 2.5]}));
    assert!(met(&ints, json!({"l": [1, 2, "3"]})));
}

#[test]
fn map_parameter_has_string_keys_and_typed_values() {
    let s = set("m['k'] == 'v'", &[("m", "map<string>")]);
    let (param, cause) = param_error(&s, json!({"m": {"k": 1}}));
    assert_eq!(param, "m");
    assert!(cause.contains("key 'k'"), "{cause}");
    param_error(&s, json!({"m": ["k", "v"]}));
    assert!(met(&s, json!({"m": {"k": "v"}})));
    let nested = set("m.a.exists(x, x == 2)", &[("m", "map<list<int>>")]);
    assert!(met(&nested, json!({"m": {"a": [1, 2]}})));
    param_error(&nested, json!({"m": {"a": [1, "z"]}}));
}

#[test]
fn any_parameter_takes_json_as_is_with_numbers_as_double() {
    let s = set("a == 1", &[("a", "any")]);
    assert!(met(&s, json!({"a": 1})), "1.0 == 1 across numeric types");
    assert!(!met(&s, json!({"a": "1"})));
    let nested = set("a.k[0] == 'x'", &[("a", "any")]);
    assert!(met(&nested, json!({"a": {"k": ["x"]}})));
    let null = set("a == null", &[("a", "any")]);
    assert!(met(&null, json!({"a": null})));
}

#[test]
fn declared_but_unreferenced_parameters_are_still_type_checked() {
    // OpenFGA converts every declared parameter the context supplies.
    let s = set("x == 1", &[("x", "int"), ("unused", "int")]);
    let (param, _) = param_error(&s, json!({"x": 1, "unused": "nope"}));
    assert_eq!(param, "unused");
}

#[test]
fn undeclared_context_keys_are_ignored() {
    let s = set("x == 1", &[("x", "int")]);
    assert!(met(
        &s,
        json!({"x": 1, "other": {"deep": [1, "two"]}, "y": null})
    ));
}

// ---------------------------------------------------------------------------------------------
// ipaddress

#[test]
fn in_cidr_rejects_malformed_cidrs_as_evaluation_errors() {
    let s = set(
        "ip.in_cidr(cidr)",
        &[("ip", "ipaddress"), ("cidr", "string")],
    );
    for bad in [
        "192.168.0.0",
        "192.168.0.0/33",
        "192.168.0.0/024",
        "not-a-cidr",
        "",
        "2001:db8::/129",
        "192.168.0.0/-1",
    ] {
        let err = eval_error(&s, json!({"ip": "192.168.0.1", "cidr": bad}));
        assert!(err.contains("malformed CIDR"), "{bad}: {err}");
    }
}

#[test]
fn in_cidr_ipv4() {
    let s = set(
        "ip.in_cidr(cidr)",
        &[("ip", "ipaddress"), ("cidr", "string")],
    );
    let case = |ip: &str, cidr: &str| met(&s, json!({"ip": ip, "cidr": cidr}));
    assert!(case("192.168.0.1", "192.168.0.0/24"));
    assert!(case("192.168.0.255", "192.168.0.0/24"));
    assert!(!case("192.168.1.1", "192.168.0.0/24"));
    assert!(case("8.8.8.8", "0.0.0.0/0"));
    assert!(case("10.0.0.5", "10.0.0.5/32"));
    assert!(!case("10.0.0.6", "10.0.0.5/32"));
    assert!(
        case("192.168.0.1", "192.168.0.77/24"),
        "host bits of the CIDR are ignored"
    );
}

#[test]
fn in_cidr_ipv6() {
    let s = set(
        "ip.in_cidr(cidr)",
        &[("ip", "ipaddress"), ("cidr", "string")],
    );
    let case = |ip: &str, cidr: &str| met(&s, json!({"ip": ip, "cidr": cidr}));
    assert!(case("2001:db8::1", "2001:db8::/32"));
    assert!(case("2001:db8:ffff:ffff::1", "2001:db8::/32"));
    assert!(!case("2001:db9::1", "2001:db8::/32"));
    assert!(case("::1", "::1/128"));
    assert!(case("fe80::1", "::/0"));
    assert!(
        !case("192.168.0.1", "::/0"),
        "IPv4 never matches an IPv6 prefix"
    );
    assert!(
        !case("::1", "0.0.0.0/0"),
        "IPv6 never matches an IPv4 prefix"
    );
}

#[test]
fn ipaddress_equality_and_literal_cidr() {
    let s = set(
        "a == b && a.in_cidr('192.168.0.0/16')",
        &[("a", "ipaddress"), ("b", "ipaddress")],
    );
    assert!(met(&s, json!({"a": "192.168.3.4", "b": "192.168.3.4"})));
    assert!(!met(&s, json!({"a": "192.168.3.4", "b": "192.168.3.5"})));
}

// ---------------------------------------------------------------------------------------------
// timestamps and durations

#[test]
fn temporal_grant_window() {
    let s = set(
        "current_time < grant_time + grant_duration",
        &[
            ("current_time", "timestamp"),
            ("grant_time", "timestamp"),
            ("grant_duration", "duration"),
        ],
    );
    let grant = json!({"grant_time": "2023-01-01T00:00:00Z", "grant_duration": "1h"});
    let request = |now: &str| json!({"current_time": now});
    assert_eq!(
        s.evaluate(
            "c",
            Some(&ctx(grant.clone())),
            Some(&ctx(request("2023-01-01T00:59:59Z")))
        ),
        Ok(ConditionOutcome::Met)
    );
    assert_eq!(
        s.evaluate(
            "c",
            Some(&ctx(grant.clone())),
            Some(&ctx(request("2023-01-01T01:00:00Z")))
        ),
        Ok(ConditionOutcome::NotMet)
    );
    assert_eq!(
        s.evaluate(
            "c",
            Some(&ctx(grant)),
            Some(&ctx(request("2023-01-01T01:30:00+01:00")))
        ),
        Ok(ConditionOutcome::Met),
        "offsets are honoured"
    );
}

#[test]
fn timestamp_and_duration_arithmetic() {
    let s = set(
        "b - a >= duration('24h') && a + duration('1h30m') < b && a.getFullYear() == 2023",
        &[("a", "timestamp"), ("b", "timestamp")],
    );
    assert!(met(
        &s,
        json!({"a": "2023-01-01T00:00:00Z", "b": "2023-01-02T00:00:00Z"})
    ));
    assert!(!met(
        &s,
        json!({"a": "2023-01-01T00:00:00Z", "b": "2023-01-01T23:00:00Z"})
    ));
}

#[test]
fn malformed_duration_and_timestamp_literals_fail_at_run_time() {
    // cel's own parser would read "1hxyz" as one hour; Go (and OpenFGA) refuse it.
    let d = set("x < duration('1hxyz')", &[("x", "duration")]);
    let err = eval_error(&d, json!({"x": "1m"}));
    assert!(
        err.contains("invalid duration") || err.contains("unknown unit"),
        "{err}"
    );
    let t = set("x < timestamp('2023-01-01')", &[("x", "timestamp")]);
    eval_error(&t, json!({"x": "2022-01-01T00:00:00Z"}));
}

// ---------------------------------------------------------------------------------------------
// missing parameters

#[test]
fn absent_parameters_are_reported_sorted() {
    let s = set(
        "b == 1 && a == 2",
        &[("b", "int"), ("a", "int"), ("z", "int")],
    );
    assert_eq!(
        s.evaluate("c", None, None),
        Ok(ConditionOutcome::MissingParameters(vec![
            "a".into(),
            "b".into(),
            "z".into()
        ])),
        "every declared parameter, referenced or not, sorted"
    );
    assert_eq!(
        eval(&s, json!({"b": 1, "z": 0})),
        Ok(ConditionOutcome::MissingParameters(vec!["a".into()]))
    );
    assert_eq!(
        eval(&s, json!({"b": 1, "a": 2, "z": 0})),
        Ok(ConditionOutcome::Met)
    );
}

/// OpenFGA reports a missing parameter even where CEL's logical operators could decide without
/// it: the outcome never depends on which operand happens to be evaluated first.
#[test]
fn missing_parameters_are_reported_even_where_short_circuit_could_decide() {
    let s = set("x || y", &[("x", "bool"), ("y", "bool")]);
    assert_eq!(
        eval(&s, json!({"x": true})),
        Ok(ConditionOutcome::MissingParameters(vec!["y".into()]))
    );
    assert_eq!(
        eval(&s, json!({"y": true})),
        Ok(ConditionOutcome::MissingParameters(vec!["x".into()]))
    );
    assert_eq!(
        eval(&s, json!({"x": false, "y": true})),
        Ok(ConditionOutcome::Met)
    );
    let and = set("x && y", &[("x", "bool"), ("y", "bool")]);
    assert_eq!(
        eval(&and, json!({"x": false})),
        Ok(ConditionOutcome::MissingParameters(vec!["y".into()]))
    );
    assert_eq!(
        eval(&and, json!({"x": true, "y": false})),
        Ok(ConditionOutcome::NotMet)
    );
    // A parameter of the wrong type is reported before a missing one.
    assert!(matches!(
        eval(&and, json!({"x": "yes"})),
        Err(ConditionError::ParameterType { .. })
    ));
}

#[test]
fn missing_parameter_inside_a_function_call() {
    let s = set(
        "ip.in_cidr(cidr)",
        &[("ip", "ipaddress"), ("cidr", "string")],
    );
    assert_eq!(
        eval(&s, json!({"ip": "10.0.0.1"})),
        Ok(ConditionOutcome::MissingParameters(vec!["cidr".into()]))
    );
}

// ---------------------------------------------------------------------------------------------
// context merging

#[test]
fn tuple_context_wins_over_request_context() {
    let s = set("x == 1 && y == 2", &[("x", "int"), ("y", "int")]);
    let tuple = ctx(json!({"x": 1}));
    let request = ctx(json!({"x": 99, "y": 2}));
    assert_eq!(
        s.evaluate("c", Some(&tuple), Some(&request)),
        Ok(ConditionOutcome::Met)
    );
    let request_only = ctx(json!({"x": 1, "y": 2}));
    assert_eq!(
        s.evaluate("c", None, Some(&request_only)),
        Ok(ConditionOutcome::Met)
    );
    let tuple_bad = ctx(json!({"x": "not a number"}));
    assert!(matches!(
        s.evaluate("c", Some(&tuple_bad), Some(&request)),
        Err(ConditionError::ParameterType { parameter, .. }) if parameter == "x"
    ));
    // Empty maps behave like absent ones.
    assert_eq!(
        s.evaluate("c", Some(&Map::new()), Some(&request_only)),
        Ok(ConditionOutcome::Met)
    );
}

// ---------------------------------------------------------------------------------------------
// validation

#[test]
fn undeclared_identifier_is_rejected() {
    let err = compile_error("x == y", &[("x", "int")]);
    assert!(err.contains("undeclared reference to 'y'"), "{err}");
    let err = compile_error("x.exists(i, i == j)", &[("x", "list<int>")]);
    assert!(err.contains("'j'"), "{err}");
    // Comprehension variables do not leak out of their comprehension.
    let err = compile_error("x.exists(i, i == 1) && i == 1", &[("x", "list<int>")]);
    assert!(err.contains("'i'"), "{err}");
}

#[test]
fn non_bool_expressions_are_rejected() {
    for (expr, params) in [
        ("x + 1", vec![("x", "int")]),
        ("'abc'", vec![]),
        ("s", vec![("s", "string")]),
        ("[true]", vec![]),
        ("m['k']", vec![("m", "map<int>")]),
        ("d + duration('1h')", vec![("d", "duration")]),
        ("b ? 1 : 2", vec![("b", "bool")]),
    ] {
        let err = compile_error(expr, &params);
        assert!(
            err.contains("expected a bool condition expression output"),
            "{expr}: {err}"
        );
    }
}

#[test]
fn unknown_functions_and_bad_overloads_are_rejected() {
    for (expr, params, needle) in [
        (
            "foo(x)",
            vec![("x", "int")],
            "undeclared reference to 'foo'",
        ),
        (
            "x.bar()",
            vec![("x", "string")],
            "undeclared reference to 'bar'",
        ),
        ("x && true", vec![("x", "int")], "_&&_"),
        ("!x", vec![("x", "string")], "!_"),
        ("ip.in_cidr(1)", vec![("ip", "ipaddress")], "in_cidr"),
        ("s.in_cidr('10.0.0.0/8')", vec![("s", "string")], "in_cidr"),
        ("s - s == s", vec![("s", "string")], "_-_"),
        ("s.startsWith(1)", vec![("s", "string")], "startsWith"),
        ("x < 'a'", vec![("x", "int")], "_<_"),
        ("x == 'a'", vec![("x", "int")], "_==_"),
        ("x.f == 1", vec![("x", "int")], "field selection"),
        ("size(x) == 1", vec![("x", "int")], "size"),
        ("t + t > t", vec![("t", "timestamp")], "_+_"),
        ("'a' in x", vec![("x", "string")], "@in"),
        (
            "x.exists(i, i)",
            vec![("x", "int")],
            "range of a comprehension",
        ),
        ("size(s, s) == 1", vec![("s", "string")], "size"),
    ] {
        let err = compile_error(expr, &params);
        assert!(err.contains(needle), "{expr}: {err}");
    }
}

#[test]
fn parse_errors_are_compile_errors() {
    for expr in [
        "x ==",
        "(x",
        "x.",
        "x == 1 &&",
        "''' unterminated",
        "a.?b",
        "",
    ] {
        compile_error(expr, &[("x", "int"), ("a", "map<int>")]);
    }
}

#[test]
fn invalid_parameter_types_are_rejected() {
    let bad: Vec<(ConditionParamTypeRef, &str)> = vec![
        (
            ConditionParamTypeRef {
                type_name: TypeName::Map,
                generic_types: vec![],
            },
            "requires 1 generic types; found 0",
        ),
        (
            ConditionParamTypeRef {
                type_name: TypeName::List,
                generic_types: vec![type_ref("int"), type_ref("string")],
            },
            "requires 1 generic types; found 2",
        ),
        (
            ConditionParamTypeRef {
                type_name: TypeName::Int,
                generic_types: vec![type_ref("int")],
            },
            "requires 0 generic types; found 1",
        ),
        (
            ConditionParamTypeRef {
                type_name: TypeName::Unspecified,
                generic_types: vec![],
            },
            "unknown condition parameter type",
        ),
        (
            ConditionParamTypeRef {
                type_name: TypeName::List,
                generic_types: vec![ConditionParamTypeRef {
                    type_name: TypeName::Map,
                    generic_types: vec![],
                }],
            },
            "TYPE_NAME_MAP",
        ),
    ];
    for (type_ref, needle) in bad {
        let mut c = condition("c", "true", &[]);
        c.parameters.insert("p".to_owned(), type_ref);
        let err = validate_condition(&c)
            .expect_err("invalid type")
            .to_string();
        assert!(err.contains(needle), "{err}");
        assert!(err.contains("'p'"), "names the parameter: {err}");
    }
}

#[test]
fn whole_models_validate_at_once() {
    let good = model(vec![
        condition("a", "x == 1", &[("x", "int")]),
        condition("b", "ip.in_cidr('10.0.0.0/8')", &[("ip", "ipaddress")]),
    ]);
    validate_model_conditions(&good).expect("valid");
    let bad = model(vec![
        condition("a", "x == 1", &[("x", "int")]),
        condition("b", "y == 1", &[("x", "int")]),
    ]);
    let err = validate_model_conditions(&bad).expect_err("b references y");
    assert!(
        matches!(&err, ConditionError::Compile { condition, .. } if condition == "b"),
        "{err}"
    );
}

#[test]
fn condition_key_must_match_its_name() {
    let mut m = model(vec![condition("c", "x == 1", &[("x", "int")])]);
    let c = m.conditions.shift_remove("c").expect("present");
    m.conditions.insert("other".to_owned(), c);
    assert!(matches!(
        ConditionSet::compile(&m),
        Err(ConditionError::Compile { .. })
    ));
}

#[test]
fn dynamic_expressions_are_accepted_and_checked_at_run_time() {
    validate_condition(&condition("c", "a", &[("a", "any")])).expect("dyn may be bool");
    validate_condition(&condition("c", "a.b.c > 3", &[("a", "any")])).expect("dyn selects");
    validate_condition(&condition("c", "type(x) == int", &[("x", "int")])).expect("type names");
}

#[test]
fn openfga_documentation_examples_validate() {
    for (expr, params) in [
        (
            "current_time < grant_time + grant_duration",
            vec![
                ("current_time", "timestamp"),
                ("grant_time", "timestamp"),
                ("grant_duration", "duration"),
            ],
        ),
        (
            "user_ip.in_cidr(\"192.168.0.0/24\")",
            vec![("user_ip", "ipaddress")],
        ),
        (
            "user_ip.in_cidr(cidr)",
            vec![("user_ip", "ipaddress"), ("cidr", "string")],
        ),
        ("x < 100", vec![("x", "int")]),
        ("x < 100u", vec![("x", "uint")]),
        ("x < 1.5", vec![("x", "double")]),
        ("x > 1", vec![("x", "double")]),
        (
            "user in allowed",
            vec![("user", "string"), ("allowed", "list<string>")],
        ),
        ("'k' in m && m.k == 'v'", vec![("m", "map<string>")]),
        ("has(m.k)", vec![("m", "map<string>")]),
        (
            "s.contains('x') || s.startsWith('a') || s.endsWith('z')",
            vec![("s", "string")],
        ),
        (
            "s.matches('^[a-z]+$') && matches(s, 'a')",
            vec![("s", "string")],
        ),
        (
            "size(l) > 0 && l.size() < 10 && size(s) == 3",
            vec![("l", "list<int>"), ("s", "string")],
        ),
        (
            "l.exists_one(x, x == 1) && l.map(x, x * 2).all(x, x % 2 == 0)",
            vec![("l", "list<int>")],
        ),
        ("l.filter(x, x > 1).size() == 1", vec![("l", "list<int>")]),
        ("b && !c", vec![("b", "bool"), ("c", "bool")]),
        (
            "int(s) == 1 && string(1) == '1' && double(1) == 1.0",
            vec![("s", "string")],
        ),
        (
            "d < duration('1h') && d.getMinutes() < 60",
            vec![("d", "duration")],
        ),
    ] {
        validate_condition(&condition("c", expr, &params))
            .unwrap_or_else(|e| panic!("{expr}: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// evaluation errors and results

#[test]
fn evaluation_errors_never_allow() {
    let missing_key = set("m['nope'] == 'x'", &[("m", "map<string>")]);
    let err = eval_error(&missing_key, json!({"m": {"k": "v"}}));
    assert!(err.contains("nope"), "{err}");
    assert!(
        err.starts_with("failed to evaluate relationship condition: 'c' - "),
        "{err}"
    );

    let type_error = set("a + 1 == 2", &[("a", "any")]);
    eval_error(&type_error, json!({"a": "x"}));

    let div = set("x / y == 1", &[("x", "int"), ("y", "int")]);
    eval_error(&div, json!({"x": 1, "y": 0}));

    let index = set("l[5] == 1", &[("l", "list<int>")]);
    eval_error(&index, json!({"l": [1]}));

    let overflow = set("x + 1 > 0", &[("x", "int")]);
    eval_error(&overflow, json!({"x": i64::MAX}));

    let bad_regex = set("s.matches('(')", &[("s", "string")]);
    eval_error(&bad_regex, json!({"s": "x"}));
}

#[test]
fn non_bool_result_at_run_time_is_an_error() {
    let s = set("a", &[("a", "any")]);
    let err = eval_error(&s, json!({"a": "yes"}));
    assert!(err.contains("bool"), "{err}");
    assert!(met(&s, json!({"a": true})));
}

#[test]
fn unknown_condition_is_not_defined() {
    let s = set("true", &[]);
    assert_eq!(
        s.evaluate("nope", None, None),
        Err(ConditionError::NotDefined("nope".to_owned()))
    );
    assert!(s.contains("c") && !s.contains("nope"));
}

#[test]
fn context_for_a_condition_without_parameters_is_an_error() {
    let s = set("true", &[]);
    assert_eq!(s.evaluate("c", None, None), Ok(ConditionOutcome::Met));
    assert_eq!(
        s.evaluate("c", None, Some(&Map::new())),
        Ok(ConditionOutcome::Met)
    );
    eval_error(&s, json!({"x": 1}));
}

#[test]
fn standard_functions() {
    let s = set(
        "name.startsWith('an') && name.endsWith('ne') && name.contains('nn') \
         && name.matches('^a.*e$') && size(name) == 4 && name + '!' == 'anne!' \
         && tags.exists(t, t == 'admin') && tags.all(t, size(t) > 0) && 'k' in attrs \
         && has(attrs.k) && !has(attrs.z) && attrs['k'] == 1 && attrs.k + 1 == 2",
        &[
            ("name", "string"),
            ("tags", "list<string>"),
            ("attrs", "map<int>"),
        ],
    );
    assert!(met(
        &s,
        json!({"name": "anne", "tags": ["user", "admin"], "attrs": {"k": 1}})
    ));
    assert!(!met(
        &s,
        json!({"name": "anne", "tags": ["user"], "attrs": {"k": 1}})
    ));
}

// ---------------------------------------------------------------------------------------------
// cost

#[test]
fn evaluation_cost_is_capped() {
    let s = set("l.exists(x, x == 'needle')", &[("l", "list<string>")]);
    assert_eq!(s.max_evaluation_cost(), DEFAULT_MAX_EVALUATION_COST);
    let big: Vec<String> = (0..200).map(|i| format!("item{i}")).collect();
    let err = eval_error(&s, json!({ "l": big }));
    assert!(err.contains("cost limit exceeded"), "{err}");
    let relaxed = s.with_max_evaluation_cost(100_000);
    assert_eq!(
        relaxed.evaluate("c", None, Some(&ctx(json!({ "l": big })))),
        Ok(ConditionOutcome::NotMet)
    );
    let small = set("l.exists(x, x == 'needle')", &[("l", "list<string>")]);
    assert!(met(&small, json!({"l": ["a", "needle"]})));
}

#[test]
fn cost_grows_with_nested_comprehensions() {
    let s = set("l.all(x, l.all(y, x + y >= 0))", &[("l", "list<int>")])
        .with_max_evaluation_cost(10_000);
    let small: Vec<i64> = (0..10).collect();
    assert!(met(&s, json!({ "l": small })));
    let big: Vec<i64> = (0..100).collect();
    let err = eval_error(&s, json!({ "l": big }));
    assert!(err.contains("cost limit exceeded"), "{err}");
}

#[test]
fn cost_counts_string_sizes() {
    let s = set("s.contains(t)", &[("s", "string"), ("t", "string")]);
    assert!(met(&s, json!({"s": "abc", "t": "b"})));
    let long = "x".repeat(1000);
    let err = eval_error(&s, json!({"s": long, "t": long}));
    assert!(err.contains("cost limit exceeded"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// concurrency

#[test]
fn one_set_serves_many_threads() {
    let s = Arc::new(set(
        "ip.in_cidr('10.0.0.0/8') && n > 5",
        &[("ip", "ipaddress"), ("n", "int")],
    ));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..200_i64 {
                    let request = ctx(json!({"ip": format!("10.0.{t}.1"), "n": i}));
                    let want = if i > 5 {
                        ConditionOutcome::Met
                    } else {
                        ConditionOutcome::NotMet
                    };
                    assert_eq!(s.evaluate("c", None, Some(&request)), Ok(want));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
}

// ---------------------------------------------------------------------------------------------
// hostile expressions

#[test]
fn deeply_nested_expressions_are_rejected_without_exhausting_the_stack() {
    let params = [("x", "int"), ("l", "list<int>")];
    for expr in [
        format!("{}x == 1{}", "(".repeat(500), ")".repeat(500)),
        format!("{}x == 1{}", "(".repeat(60), ")".repeat(60)),
        format!("{}x == 1", "x + ".repeat(40)),
        format!("{}1{} == x", "[".repeat(200), "]".repeat(200)),
        format!("{}true{}", "l.all(a, ".repeat(40), ")".repeat(40)),
        format!("{}x{} == 1", "int(".repeat(100), ")".repeat(100)),
        format!("{}x == 1", "-".repeat(5000)),
    ] {
        let c = condition("c", &expr, &params);
        if validate_condition(&c).is_ok() {
            // Accepted shapes (e.g. collapsed `- - x`) must still evaluate on this 2 MiB thread.
            let s = ConditionSet::compile(&model(vec![c])).expect("compiles");
            let _ = s.evaluate("c", None, Some(&ctx(json!({"x": 1, "l": [1]}))));
        }
    }
    let err = compile_error(&format!("{}x == 1", "x + ".repeat(40)), &params);
    assert!(err.contains("nests deeper"), "{err}");
}

#[test]
fn the_deepest_accepted_expressions_evaluate_on_a_small_stack() {
    // Evaluation runs on the caller's thread; the depth bound must keep it inside 2 MiB.
    let expr = format!("{}x == 25", "x + ".repeat(24));
    let s = set(&expr, &[("x", "int")]).with_max_evaluation_cost(u64::MAX);
    let outcome = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || s.evaluate("c", None, Some(&ctx(json!({"x": 1})))))
        .expect("spawn")
        .join()
        .expect("no overflow");
    assert_eq!(outcome, Ok(ConditionOutcome::Met));
}

#[test]
fn overlong_expressions_are_rejected() {
    let expr = format!("s == '{}'", "a".repeat(20_000));
    let err = compile_error(&expr, &[("s", "string")]);
    assert!(err.contains("longer than"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// OpenFGA's language test models

/// Every condition of OpenFGA's language transformer test models compiles, except one whose
/// expression references a parameter it does not declare (the language repository does not
/// check CEL; OpenFGA's server refuses that model).
#[test]
fn openfga_transformer_models_compile() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/openfga/language/transformer");
    let mut compiled = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&root)
        .expect("conformance models")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for dir in entries {
        let path = dir.join("authorization-model.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let model: AuthorizationModel =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if model.conditions.is_empty() {
            continue;
        }
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        match ConditionSet::compile(&model) {
            Ok(set) => {
                assert_eq!(set.len(), model.conditions.len());
                compiled += 1;
            }
            Err(e) if name == "11-multiple-conditions" => {
                assert!(e.to_string().contains("'document_attributes'"), "{e}");
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
    assert!(
        compiled >= 8,
        "only {compiled} models with conditions found"
    );
}

#[test]
fn data_type_conditions_from_openfga_evaluate() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../conformance/openfga/language/transformer/102-conditions-data-types/authorization-model.json",
    );
    let text = std::fs::read_to_string(path).expect("model");
    let model: AuthorizationModel = serde_json::from_str(&text).expect("json model");
    let set = ConditionSet::compile(&model).expect("compiles");
    let cases = [
        (
            "is_valid_double",
            json!({"_double": 1.5}),
            json!({"_double": -1}),
        ),
        (
            "is_valid_duration",
            json!({"_duration": "1s"}),
            json!({"_duration": "0s"}),
        ),
        ("is_valid_int", json!({"_int": 3}), json!({"_int": 0})),
        (
            "is_valid_ipaddress",
            json!({"_ipaddress": "10.0.0.1"}),
            json!({"_ipaddress": "192.0.0.1"}),
        ),
        (
            "is_valid_list_string",
            json!({"_liststring": ["1"]}),
            json!({"_liststring": ["1", "2"]}),
        ),
        (
            "is_valid_map_string",
            json!({"_mapstring": {"key": "v"}}),
            json!({"_mapstring": {"key": ""}}),
        ),
        (
            "is_valid_string",
            json!({"_string": "101"}),
            json!({"_string": "102"}),
        ),
        (
            "is_valid_timestamp",
            json!({"_timestamp": "2020-01-01T00:00:00Z"}),
            json!({"_timestamp": "2019-01-01T00:00:00Z"}),
        ),
        ("is_valid_uint", json!({"_uint": 1}), json!({"_uint": 0})),
    ];
    for (name, good, bad) in cases {
        assert_eq!(
            set.evaluate(name, None, Some(&ctx(good))),
            Ok(ConditionOutcome::Met),
            "{name}"
        );
        assert_eq!(
            set.evaluate(name, None, Some(&ctx(bad))),
            Ok(ConditionOutcome::NotMet),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// `any`: the DSL keyword for upstream's TYPE_NAME_ANY

/// `map<any>` and `any` parse in the DSL, print back the same, and hold JSON of any shape;
/// `has()` tells a present member from a missing one without an evaluation error.
#[test]
fn any_parameters_parse_print_and_evaluate() {
    let dsl = "model\n  schema 1.1\n\ntype user\n\ntype record\n  relations\n    define \
               writer: [user with admin]\n\ncondition admin(subject: map<any>, extra: any) {\n  \
               has(subject.properties.role) && subject.properties.role == \"admin\"\n}\n";
    let model = trustgate_authz::dsl::parse(dsl).expect("parses");
    let param = &model.conditions["admin"].parameters["subject"];
    assert_eq!(param.type_name, TypeName::Map);
    assert_eq!(param.generic_types[0].type_name, TypeName::Any);
    assert_eq!(
        model.conditions["admin"].parameters["extra"].type_name,
        TypeName::Any
    );
    let printed = trustgate_authz::dsl::write(&model).expect("prints");
    assert!(
        printed.contains("(extra: any, subject: map<any>)"),
        "{printed}"
    );
    assert_eq!(
        trustgate_authz::dsl::parse(&printed)
            .expect("reparses")
            .conditions,
        model.conditions
    );
    let set = ConditionSet::compile(&model).expect("compiles");
    let eval = |subject: Value| {
        set.evaluate(
            "admin",
            None,
            Some(&ctx(
                json!({ "subject": subject, "extra": [1, {"a": null}] }),
            )),
        )
    };
    assert_eq!(
        eval(json!({ "type": "user", "properties": { "role": "admin", "n": { "x": 1 } } })),
        Ok(ConditionOutcome::Met)
    );
    assert_eq!(
        eval(json!({ "type": "user", "properties": {} })),
        Ok(ConditionOutcome::NotMet)
    );
    assert!(matches!(
        eval(json!("not a map")),
        Err(ConditionError::ParameterType { .. })
    ));
    // A parameter may no longer be named `any` (like every other type name).
    assert!(
        trustgate_authz::dsl::parse(
            "model\n  schema 1.1\ntype user\ncondition c(any: string) {\n  any == \"\"\n}\n"
        )
        .is_err()
    );
}
