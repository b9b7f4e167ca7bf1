//! Property tests: no text makes the DSL parser, validator or writer panic, and every error
//! points inside the text.

use proptest::prelude::*;
use trustgate_authz::dsl::{self, DslErrors};

/// A model using every construct, as material for mutations.
const MODEL: &str = "model
  schema 1.1
type user
type group
  relations
    define member: [user, group#member, user:* with in_range]
type folder
  relations
    define parent: [folder]
    define owner: [user]
    define viewer: [user] or owner or viewer from parent
    define blocked: [user]
    define can_view: (viewer and owner) but not blocked
condition in_range(x: int, allowed: list<string>, ip: ipaddress) {
  x < 100 && \"a}b\" in allowed // note
}
";

/// Fragments that are meaningful to the lexer and parser.
const FRAGMENTS: &[&str] = &[
    "[",
    "]",
    "(",
    ")",
    ":",
    "#",
    "*",
    ",",
    " ",
    "\n",
    "\n  ",
    "\t",
    "or",
    "and",
    "but not",
    "from",
    "with",
    "define",
    "relations",
    "type",
    "model",
    "schema",
    "module",
    "extend",
    "condition",
    "{",
    "}",
    "<",
    ">",
    "\"",
    "'",
    "//",
    " # c",
    "@",
    "=",
    "é",
    "1.1",
    "map",
    "in",
    "a.b",
    "-",
    "\r\n",
];

/// Pieces of YAML for `fga.mod` soup.
const MOD_FRAGMENTS: &[&str] = &[
    "schema", "contents", ":", " ", "\n", "  ", "- ", "-", "'", "\"", "1.2", "[", "]", ",", "{",
    "}", "#", "a.fga", "../", "%2e", "true", "1", "\t", "é",
];

/// Checks the shape of a parse result: every reported position lies within the text.
fn check_errors(text: &str, result: Result<(), DslErrors>) {
    let Err(errors) = result else {
        return;
    };
    assert!(!errors.errors.is_empty(), "an error list is never empty");
    let lines = text.split('\n').count();
    for e in &errors.errors {
        assert!(!e.message.is_empty());
        if let Some(line) = e.line {
            assert!(
                line.start <= line.end && line.end <= lines,
                "{e:?} in {text:?}"
            );
        }
        if let Some(col) = e.column {
            assert!(col.start <= col.end, "{e:?} in {text:?}");
        }
    }
}

fn run_all(text: &str) {
    check_errors(text, dsl::parse_syntax_only(text).map(|_| ()));
    let parsed = dsl::parse(text);
    if let Ok(model) = &parsed {
        // A model that parses and validates can be written back.
        assert!(dsl::write(model).is_ok(), "{text:?}");
    }
    check_errors(text, parsed.map(|_| ()));
}

fn mutated() -> impl Strategy<Value = String> {
    let edit = (0..MODEL.len(), 0..FRAGMENTS.len(), 0..4u8, 1..12usize);
    prop::collection::vec(edit, 1..4).prop_map(|edits| {
        let mut text = MODEL.to_string();
        for (at, fragment, op, len) in edits {
            let at = (0..=at.min(text.len()))
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            let end = (at + len..=text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            match op {
                0 => text.replace_range(at..end, ""),
                1 => text.insert_str(at, FRAGMENTS[fragment]),
                _ => text.replace_range(at..end, FRAGMENTS[fragment]),
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        run_all(&text);
    }

    #[test]
    fn mutated_models_never_panic(text in mutated()) {
        run_all(&text);
    }

    #[test]
    fn mod_files_never_panic(
        text in "\\PC{0,120}",
        parts in prop::collection::vec(0..MOD_FRAGMENTS.len(), 0..40),
    ) {
        let _ = dsl::parse_mod_file(&text);
        let soup: String = parts.iter().map(|i| MOD_FRAGMENTS[*i]).collect();
        if let Err(e) = dsl::parse_mod_file(&soup) {
            prop_assert!(!e.errors.is_empty());
        }
    }

    #[test]
    fn module_combination_never_panics(a in mutated(), b in "\\PC{0,80}") {
        let core = "module core\ntype user\ntype doc\n  relations\n    define owner: [user]\n";
        let files = [
            dsl::ModuleFile { name: "core.fga", contents: core },
            dsl::ModuleFile { name: "a.fga", contents: &a.replacen("model\n  schema 1.1", "module a", 1) },
            dsl::ModuleFile { name: "b.fga", contents: &format!("module b\nextend type doc\n{b}") },
        ];
        let _ = dsl::combine_modules(&files, "1.2");
    }

    #[test]
    fn fragment_soup_never_panics(parts in prop::collection::vec(0..FRAGMENTS.len(), 0..60)) {
        let text: String = parts.iter().map(|i| FRAGMENTS[*i]).collect();
        run_all(&text);
    }
}

#[test]
fn the_seed_model_is_valid() {
    let model = dsl::parse(MODEL).expect("the seed model parses and validates");
    assert_eq!(model.type_definitions.len(), 3);
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let open = "(".repeat(10_000);
    let text = format!(
        "model\n  schema 1.1\ntype user\n  relations\n    define a: [user]\n    define b: {open}a"
    );
    let err = dsl::parse_syntax_only(&text).expect_err("too deep");
    assert!(err.errors[0].message.contains("nest deeper"), "{err}");
}
