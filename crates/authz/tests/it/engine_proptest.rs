//! Property tests: random tuples (valid and garbage) and random requests never make the engine
//! panic, and its answers agree with each other:
//! - every object list-objects returns passes Check, and every object Check allows is listed;
//! - every user list-users returns passes Check, and every pooled user Check allows is listed
//!   (by name, or for an object by its type's wildcard);
//! - contextual tuples give the same answers as the same tuples written.

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::json;
use trustgate_authz::dsl;
use trustgate_authz::engine::{
    CheckRequest, ExpandRequest, ListObjectsRequest, ListUsersRequest, TupleReader, TypeSystem,
    UserFilter, check, expand, list_objects, list_users, validate_tuple_for_write,
};
use trustgate_authz::index::{TupleChange, TupleIndex};
use trustgate_authz::tuple::{RelationshipCondition, TupleKey};

const MODEL: &str = "model
  schema 1.1
type user
type group
  relations
    define member: [user, user:*, group#member]
    define admin: [user] or member
type folder
  relations
    define parent: [folder]
    define owner: [user, group#member]
    define viewer: [user, user:*, group#member] or owner or viewer from parent
type document
  relations
    define parent: [folder]
    define owner: [user]
    define blocked: [user, group#member]
    define editor: [user, group#member] or owner
    define viewer: ([user, user:*, document#viewer] or editor or viewer from parent) but not blocked
    define both: editor and viewer from parent
    define cond: [user with small, group#member]
condition small(x: int) {
  x < 10
}
";

const OBJECTS: &[&str] = &[
    "group:a",
    "group:b",
    "folder:a",
    "folder:b",
    "document:a",
    "document:b",
    // garbage
    "",
    "document",
    "document:*",
    "a:b:c",
    "nope:a",
    "x y:z",
];
const RELATIONS: &[&str] = &[
    "member", "admin", "parent", "owner", "viewer", "blocked", "editor", "both", "cond", "",
    "nope", "a#b",
];
const USERS: &[&str] = &[
    "user:a",
    "user:b",
    "user:c",
    "user:*",
    "group:a#member",
    "group:b#member",
    "folder:a",
    "folder:b",
    "document:a#viewer",
    // garbage
    "",
    "user:",
    ":x",
    "user:a#",
    "user:*#member",
    "group:a#nope",
    "nope:x",
    "a:b:c",
    "🙂:x",
];

fn model() -> TypeSystem {
    TypeSystem::new(dsl::parse(MODEL).expect("model")).expect("type system")
}

fn tuple((o, r, u, c): (usize, usize, usize, Option<i64>)) -> TupleKey {
    let mut k = TupleKey::new(
        OBJECTS[o % OBJECTS.len()],
        RELATIONS[r % RELATIONS.len()],
        USERS[u % USERS.len()],
    );
    if let Some(x) = c {
        k.condition = Some(RelationshipCondition {
            name: "small".into(),
            context: json!({ "x": x }).as_object().cloned(),
        });
    }
    k
}

fn tuples() -> impl Strategy<Value = Vec<(usize, usize, usize, Option<i64>)>> {
    prop::collection::vec(
        (
            0..OBJECTS.len(),
            0..RELATIONS.len(),
            0..USERS.len(),
            prop::option::weighted(0.2, 0i64..20),
        ),
        0..40,
    )
}

struct World {
    ts: TypeSystem,
    written: Vec<TupleKey>,
    index: TupleIndex,
}

fn world(raw: &[(usize, usize, usize, Option<i64>)]) -> World {
    let ts = model();
    let mut written = Vec::new();
    for r in raw {
        let k = tuple(*r);
        // Garbage must be rejected with an error, never a panic.
        if validate_tuple_for_write(&ts, &k).is_ok() && !written.contains(&k) {
            written.push(k);
        }
    }
    let changes: Vec<TupleChange> = written.iter().cloned().map(TupleChange::Write).collect();
    let index = TupleIndex::new();
    index.apply(1, &changes).expect("apply valid tuples");
    World { ts, written, index }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_never_panic(
        raw in tuples(),
        requests in prop::collection::vec((0..OBJECTS.len(), 0..RELATIONS.len(), 0..USERS.len()), 1..20),
        ctx_raw in tuples(),
    ) {
        let w = world(&raw);
        let snap = w.index.snapshot();
        let contextual: Vec<TupleKey> = ctx_raw.iter().take(5).map(|r| tuple(*r)).collect();
        let context = json!({"x": 3});
        for (o, r, u) in requests {
            let (object, relation, user) = (OBJECTS[o], RELATIONS[r], USERS[u]);
            let _ = check(&w.ts, &*snap, &CheckRequest {
                object, relation, user, contextual_tuples: &contextual, context: context.as_object(),
            });
            let object_type = object.split(':').next().unwrap_or("");
            let _ = list_objects(&w.ts, &*snap, &ListObjectsRequest {
                object_type, relation, user, contextual_tuples: &contextual, context: context.as_object(),
            });
            let filters = [UserFilter::parse(user.split(':').next().unwrap_or(""))];
            let _ = list_users(&w.ts, &*snap, &ListUsersRequest {
                object, relation, user_filters: &filters, contextual_tuples: &contextual, context: None,
            });
            let _ = expand(&w.ts, &*snap, &ExpandRequest { object, relation, contextual_tuples: &contextual });
        }
    }

    #[test]
    fn list_objects_and_list_users_agree_with_check(raw in tuples(), with_context in any::<bool>()) {
        let w = world(&raw);
        let snap = w.index.snapshot();
        let context = json!({"x": 3});
        let context = if with_context { context.as_object() } else { None };
        let reader: &dyn TupleReader = &*snap;
        let valid_objects: Vec<&str> = OBJECTS.iter().copied().take(6).collect();
        let valid_users: Vec<&str> = USERS.iter().copied().take(9).collect();
        for object_type in ["group", "folder", "document"] {
            for relation in ["member", "admin", "owner", "viewer", "blocked", "editor", "both", "cond"] {
                if !w.ts.has_relation(object_type, relation) {
                    continue;
                }
                for user in &valid_users {
                    let listed = list_objects(&w.ts, reader, &ListObjectsRequest {
                        object_type, relation, user, contextual_tuples: &[], context,
                    });
                    let Ok(listed) = listed else { continue };
                    let listed: BTreeSet<String> = listed.into_iter().collect();
                    for object in valid_objects.iter().filter(|o| o.starts_with(object_type)) {
                        let allowed = check(&w.ts, reader, &CheckRequest {
                            object, relation, user, contextual_tuples: &[], context,
                        });
                        if let Ok(allowed) = allowed {
                            prop_assert_eq!(
                                allowed, listed.contains(*object),
                                "check {}#{}@{} = {} but list-objects gave {:?}; tuples {:?}",
                                object, relation, user, allowed, listed, w.written
                            );
                        }
                    }
                }
            }
        }
        for object in &valid_objects {
            let object_type = object.split(':').next().unwrap_or("");
            for relation in ["member", "admin", "owner", "viewer", "blocked", "editor", "both", "cond"] {
                if !w.ts.has_relation(object_type, relation) {
                    continue;
                }
                for filter in ["user", "group#member", "document#viewer"] {
                    let filters = [UserFilter::parse(filter)];
                    let Ok(resp) = list_users(&w.ts, reader, &ListUsersRequest {
                        object, relation, user_filters: &filters, contextual_tuples: &[], context,
                    }) else { continue };
                    let listed: BTreeSet<&str> = resp.users.iter().map(String::as_str).collect();
                    for user in &valid_users {
                        let matches_filter = match filter.split_once('#') {
                            Some((t, r)) => user.starts_with(&format!("{t}:")) && user.ends_with(&format!("#{r}")),
                            None => user.starts_with(&format!("{filter}:")) && !user.contains('#'),
                        };
                        if !matches_filter {
                            continue;
                        }
                        if let Ok(allowed) = check(&w.ts, reader, &CheckRequest {
                            object, relation, user, contextual_tuples: &[], context,
                        }) {
                            // A user may be covered by the wildcard of its type instead of by name.
                            let wildcard = format!("{}:*", user.split(':').next().unwrap_or(""));
                            let covered = listed.contains(user)
                                || (!user.contains('#') && listed.contains(wildcard.as_str()));
                            prop_assert!(
                                allowed == listed.contains(user) || (allowed && covered),
                                "check {}#{}@{} = {} but list-users gave {:?}; tuples {:?}",
                                object, relation, user, allowed, listed, w.written
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn contextual_tuples_match_written_tuples(raw in tuples()) {
        let w = world(&raw);
        prop_assume!(w.written.len() <= 100);
        let snap = w.index.snapshot();
        let empty = TupleIndex::new().snapshot();
        let context = json!({"x": 3});
        for object in OBJECTS.iter().take(6) {
            for relation in ["member", "viewer", "both", "cond", "editor"] {
                for user in USERS.iter().take(9) {
                    let written = check(&w.ts, &*snap, &CheckRequest {
                        object, relation, user, contextual_tuples: &[], context: context.as_object(),
                    });
                    let contextual = check(&w.ts, &*empty, &CheckRequest {
                        object, relation, user, contextual_tuples: &w.written, context: context.as_object(),
                    });
                    prop_assert_eq!(&written, &contextual, "{}#{}@{}", object, relation, user);
                }
            }
        }
    }
}
