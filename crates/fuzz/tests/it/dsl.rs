//! The OpenFGA DSL parser (`authz::dsl::parse`, `parse_mod_file`) and its writer.

use bolero::check;
use trustgate_authz::dsl;
use trustgate_authz::model::AuthorizationModel;

use crate::support::{SMOKE_ITERATIONS, pick};

/// The DSL has no size cap of its own: the CLI reads a file and the server takes JSON under the
/// 1 MiB body limit. 64 KiB is far past any model the types limit (100) lets through.
const MAX_DSL_BYTES: usize = 64 * 1024;

/// A model that parsed is written back, and the text parses to the same model.
fn round_trip(model: &AuthorizationModel) {
    let text = dsl::write(model).expect("a parsed model has a DSL form");
    let again =
        dsl::parse(&text).unwrap_or_else(|e| panic!("written model does not parse: {e}\n{text}"));
    assert_eq!(
        &again, model,
        "DSL -> model -> DSL -> model changed the model:\n{text}"
    );
}

fn parse_all(text: &str) {
    if let Ok(model) = dsl::parse(text) {
        round_trip(&model);
    }
    let _ = dsl::parse_syntax_only(text);
    let _ = dsl::parse_mod_file(text);
}

#[test]
fn bytes() {
    check!()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(MAX_DSL_BYTES + 1024)
        .for_each(|input: &[u8]| parse_all(&String::from_utf8_lossy(input)));
}

/// Pieces the lexer and parser give meaning to; random bytes almost never get past `model`.
const FRAGMENTS: &[&str] = &[
    "model\n  schema 1.1\n",
    "type ",
    "user",
    "doc",
    "group",
    "\n  relations\n",
    "    define ",
    "owner",
    "viewer",
    "member",
    "parent",
    ": ",
    "[",
    "]",
    "user",
    "user:*",
    "group#member",
    ", ",
    " or ",
    " and ",
    " but not ",
    " from ",
    "(",
    ")",
    " with ",
    "cond",
    "\n",
    "\ncondition cond(x: int, l: list<string>, m: map<ipaddress>) {\n  x < 10 && \"a\" in l\n}\n",
    "module m\n",
    "extend type doc\n",
    "schema 1.2",
    "  ",
    "    ",
    "\t",
    "#",
    " # c\n",
    "//",
    "*",
    ":",
    "é",
    "1.1",
    "{",
    "}",
    "<",
    ">",
    "\"",
    "'",
    "\r\n",
    "define",
    "relations",
];

#[test]
fn token_soup() {
    check!()
        .with_type::<Vec<u8>>()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(MAX_DSL_BYTES / 8)
        .for_each(|picks| {
            let mut text = String::from("model\n  schema 1.1\ntype user\n");
            for p in picks {
                text.push_str(pick(FRAGMENTS, *p));
            }
            parse_all(&text);
        });
}
