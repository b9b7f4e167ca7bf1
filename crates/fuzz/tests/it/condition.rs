//! CEL conditions: parameter types, parsing and checking the expression (`ConditionSet::compile`,
//! as model validation does), and evaluating it against request and tuple contexts.

use bolero::{TypeGenerator, check};
use serde_json::{Map, Value, json};
use trustgate_authz::condition::{ConditionSet, MAX_EXPRESSION_LENGTH};
use trustgate_authz::model::AuthorizationModel;

use crate::support::{SMOKE_ITERATIONS_SLOW, good, pick};

#[derive(Debug, TypeGenerator)]
struct Case {
    /// Fragments of CEL, by index.
    soup: Vec<u8>,
    /// Raw text appended to the soup.
    raw: (u8, Vec<u8>),
    /// (parameter, type) declarations replacing the usual ones.
    params: Vec<(u8, u8)>,
    /// (parameter, value) pairs of the request context, and of the tuple's.
    request: Vec<(u8, u8)>,
    stored: Vec<(u8, u8)>,
}

const PARAMS: &[&str] = &["x", "s", "l", "m", "ip", "t", "d", "b"];
fn param_type(choice: u8) -> Value {
    let scalar = |t: &str| json!({"type_name": t});
    match choice % 14 {
        0 => scalar("TYPE_NAME_INT"),
        1 => scalar("TYPE_NAME_UINT"),
        2 => scalar("TYPE_NAME_DOUBLE"),
        3 => scalar("TYPE_NAME_STRING"),
        4 => scalar("TYPE_NAME_BOOL"),
        5 => scalar("TYPE_NAME_IPADDRESS"),
        6 => scalar("TYPE_NAME_TIMESTAMP"),
        7 => scalar("TYPE_NAME_DURATION"),
        8 => scalar("TYPE_NAME_ANY"),
        9 => {
            json!({"type_name": "TYPE_NAME_LIST", "generic_types": [{"type_name": "TYPE_NAME_STRING"}]})
        }
        10 => {
            json!({"type_name": "TYPE_NAME_MAP", "generic_types": [{"type_name": "TYPE_NAME_INT"}]})
        }
        11 => {
            json!({"type_name": "TYPE_NAME_LIST", "generic_types": [{"type_name": "TYPE_NAME_LIST",
            "generic_types": [{"type_name": "TYPE_NAME_IPADDRESS"}]}]})
        }
        12 => json!({"type_name": "TYPE_NAME_LIST"}),
        _ => json!({"type_name": "TYPE_NAME_MAP", "generic_types": [
            {"type_name": "TYPE_NAME_INT"}, {"type_name": "TYPE_NAME_INT"}]}),
    }
}

fn value(choice: u8) -> Value {
    match choice % 16 {
        0 => json!(3),
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!(1.5),
        4 => json!("a"),
        5 => json!("10.0.0.1"),
        6 => json!("2026-01-01T00:00:00Z"),
        7 => json!("1h30m"),
        8 => json!(["a", "b"]),
        9 => json!({"k": 1}),
        10 => json!(true),
        11 => json!(null),
        12 => json!("999999999999h"),
        13 => json!([["10.0.0.0"]]),
        14 => json!("::1"),
        _ => json!(i64::MIN),
    }
}

const CEL: &[&str] = &[
    "x",
    "s",
    "l",
    "m",
    "ip",
    "t",
    "d",
    "b",
    " ",
    "1",
    "0",
    "-1",
    "1.5",
    "10u",
    "\"a\"",
    "'b'",
    "true",
    "false",
    "null",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ".",
    "?",
    "!",
    "+",
    "-",
    "*",
    "/",
    "%",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "&&",
    "||",
    " in ",
    "size(",
    "int(",
    "string(",
    "double(",
    "timestamp(",
    "duration(",
    "ipaddress(",
    ".in_cidr(\"10.0.0.0/8\")",
    ".startsWith(",
    ".matches(",
    ".exists(e, ",
    ".all(e, ",
    ".map(e, ",
    ".filter(e, ",
    "e",
    "has(m.k)",
    "m[\"k\"]",
    "l[0]",
    "\"(a+)+$\"",
    "x < 10",
    "s == \"a\"",
    "\\",
    "\"",
    "duration(\"1h\")",
    "timestamp(\"2026-01-01T00:00:00Z\")",
    "\n",
    "é",
    "0x10",
    "1e308",
];

/// A CEL expression from an op stream, at most `depth` levels deep.
fn cel_expr(ops: &mut std::slice::Iter<'_, u8>, depth: usize) -> String {
    let op = ops.next().copied().unwrap_or(0);
    let arg = ops.next().copied().unwrap_or(0);
    let atom = || -> String {
        match arg % 10 {
            0..=3 => pick(PARAMS, arg / 10).to_owned(),
            4 => (i64::from(arg) - 128).to_string(),
            5 => format!("{arg}u"),
            6 => format!(
                "\"{}\"",
                pick(
                    &["a", "10.0.0.1", "1h", "2026-01-01T00:00:00Z", "(a+)+$"],
                    arg / 10
                )
            ),
            7 => "[\"a\", \"b\"]".to_owned(),
            8 => "{\"k\": 1}".to_owned(),
            _ => pick(&["true", "false", "null", "1.5", "-0.0"], arg / 10).to_owned(),
        }
    };
    if depth == 0 {
        return atom();
    }
    match op % 8 {
        0 | 1 => atom(),
        2 | 3 => {
            let lhs = cel_expr(ops, depth - 1);
            let rhs = cel_expr(ops, depth - 1);
            let bin = pick(
                &[
                    "<", "<=", "==", "!=", ">", "&&", "||", "+", "-", "*", "/", "%", " in ",
                ],
                arg,
            );
            format!("({lhs} {bin} {rhs})")
        }
        4 => format!("!{}", cel_expr(ops, depth - 1)),
        5 => {
            let inner = cel_expr(ops, depth - 1);
            let f = pick(
                &[
                    "size",
                    "int",
                    "uint",
                    "double",
                    "string",
                    "timestamp",
                    "duration",
                    "ipaddress",
                    "has",
                ],
                arg,
            );
            format!("{f}({inner})")
        }
        6 => {
            let target = cel_expr(ops, depth - 1);
            let m = pick(
                &[
                    ".in_cidr(\"10.0.0.0/8\")",
                    ".startsWith(\"a\")",
                    ".matches(\"^a+$\")",
                    ".exists(e, e == \"a\")",
                    ".all(e, e > 1)",
                    ".map(e, e + 1)",
                    ".getHours()",
                    "[0]",
                    "[\"k\"]",
                    ".k",
                ],
                arg,
            );
            format!("{target}{m}")
        }
        _ => {
            let c = cel_expr(ops, depth - 1);
            let a = cel_expr(ops, depth - 1);
            let b = cel_expr(ops, depth - 1);
            format!("({c} ? {a} : {b})")
        }
    }
}

fn model(expression: &str, params: &[(u8, u8)]) -> AuthorizationModel {
    // Every parameter the generator uses, declared with its natural type (the order of
    // PARAMS); the case may redeclare some.
    let mut declared: Map<String, Value> = PARAMS
        .iter()
        .zip([0u8, 3, 9, 10, 5, 6, 7, 4])
        .map(|(p, t)| ((*p).to_owned(), param_type(t)))
        .collect();
    for (p, t) in params.iter().take(8) {
        declared.insert(pick(PARAMS, *p).to_owned(), param_type(*t));
    }
    serde_json::from_value(json!({
        "schema_version": "1.1",
        "type_definitions": [{"type": "user"}],
        "conditions": {"c": {"name": "c", "expression": expression, "parameters": declared}},
    }))
    .expect("the JSON model format")
}

fn context(pairs: &[(u8, u8)]) -> Map<String, Value> {
    pairs
        .iter()
        .take(8)
        .map(|(p, v)| (pick(PARAMS, *p).to_owned(), value(*v)))
        .collect()
}

#[test]
fn expression() {
    check!()
        .with_type::<Case>()
        .with_iterations(SMOKE_ITERATIONS_SLOW)
        .with_max_len(MAX_EXPRESSION_LENGTH + 1024)
        .for_each(|case| {
            // Mostly a well-formed expression over the parameters, sometimes fragment soup.
            let mut expression = if good(case.soup.first().copied().unwrap_or(0)) {
                let mut ops = case.soup.iter();
                cel_expr(&mut ops, 4)
            } else {
                case.soup.iter().map(|i| pick(CEL, *i)).collect()
            };
            if !good(case.raw.0) {
                expression.push_str(&String::from_utf8_lossy(&case.raw.1));
            }
            let Ok(set) = ConditionSet::compile(&model(&expression, &case.params)) else {
                return;
            };
            assert!(set.contains("c"));
            assert!(expression.len() <= MAX_EXPRESSION_LENGTH);
            let request = context(&case.request);
            let stored = context(&case.stored);
            let first = set.evaluate("c", Some(&stored), Some(&request));
            // Evaluation is a function of its inputs (no hidden state between calls).
            let second = set.evaluate("c", Some(&stored), Some(&request));
            assert_eq!(first, second, "{expression}");
        });
}
