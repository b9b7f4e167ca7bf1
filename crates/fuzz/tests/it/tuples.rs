//! Tuple keys: object, user and relation strings (`type:id`, `type:*`, `type:id#relation`) and
//! a whole tuple checked against a model for a write.

use bolero::{TypeGenerator, check};
use serde_json::json;
use trustgate_authz::dsl;
use trustgate_authz::engine::{
    TypeSystem, validate_object, validate_relation_name, validate_tuple_for_write, validate_user,
};
use trustgate_authz::tuple::{TupleKey, UserRef};

use crate::support::{SMOKE_ITERATIONS, pick};

/// The parsers' own caps are 256 (object) and 512 (user) bytes.
const MAX_TUPLE_STRING: usize = 600;

fn user_string(user: &UserRef<'_>) -> String {
    match user {
        UserRef::Object(o) => format!("{}:{}", o.object_type, o.object_id),
        UserRef::Wildcard { user_type } => format!("{user_type}:*"),
        UserRef::Userset { object, relation } => {
            format!("{}:{}#{relation}", object.object_type, object.object_id)
        }
    }
}

fn parse_strings(text: &str) {
    if let Ok(object) = validate_object(text) {
        assert_eq!(format!("{}:{}", object.object_type, object.object_id), text);
        assert!(text.len() <= 256);
    }
    if let Ok(user) = validate_user(text) {
        assert_eq!(
            user_string(&user),
            text,
            "a parsed user prints back to itself"
        );
        assert!(text.len() <= 512);
    }
    if validate_relation_name(text) {
        assert!(!text.is_empty() && text.len() <= 50);
    }
}

#[test]
fn strings() {
    check!()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(MAX_TUPLE_STRING)
        .for_each(|input: &[u8]| parse_strings(&String::from_utf8_lossy(input)));
}

#[derive(Debug, TypeGenerator)]
struct Tuple {
    object: Vec<u8>,
    relation: u8,
    user: Vec<u8>,
    condition: Option<(u8, u8)>,
}

const PIECES: &[&str] = &[
    "user", "doc", "group", "folder", ":", "#", "*", "member", "viewer", "owner", "anne", "1", " ",
    "@", "é", "", "parent", ":*", "#member", "\u{0}", "x",
];
const RELATIONS: &[&str] = &[
    "viewer", "owner", "member", "parent", "nope", "", "a b", "#",
];

const MODEL: &str = "model
  schema 1.1
type user
type group
  relations
    define member: [user, user:*, group#member, user with in_range]
type folder
  relations
    define owner: [user]
type doc
  relations
    define parent: [folder]
    define owner: [user, group#member]
    define viewer: [user:* with in_range] or owner or owner from parent
condition in_range(x: int) {
  x < 10
}
";

#[test]
fn write() {
    let ts = TypeSystem::new(dsl::parse(MODEL).expect("model")).expect("type system");
    // The type system holds cel's function registry (not `RefUnwindSafe`); a panic in a run is
    // a failure anyway, nothing observes it afterwards.
    let ts = std::panic::AssertUnwindSafe(&ts);
    check!()
        .with_type::<Tuple>()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(MAX_TUPLE_STRING * 2)
        .for_each(|t| {
            let object: String = t.object.iter().map(|i| pick(PIECES, *i)).collect();
            let user: String = t.user.iter().map(|i| pick(PIECES, *i)).collect();
            parse_strings(&object);
            parse_strings(&user);
            let mut tuple =
                TupleKey::new(object.clone(), pick(RELATIONS, t.relation), user.clone());
            if let Some((name, value)) = t.condition {
                let context = match value % 4 {
                    0 => None,
                    1 => Some(json!({"x": 1})),
                    2 => Some(json!({"x": "one"})),
                    _ => Some(json!({"y": [1]})),
                };
                tuple = tuple.with_condition(
                    pick(&["in_range", "other", ""], name),
                    context.and_then(|c| c.as_object().cloned()),
                );
            }
            if validate_tuple_for_write(*ts, &tuple).is_ok() {
                assert!(validate_object(&object).is_ok(), "{tuple:?}");
                assert!(validate_user(&user).is_ok(), "{tuple:?}");
                assert!(validate_relation_name(&tuple.relation), "{tuple:?}");
            }
        });
}
