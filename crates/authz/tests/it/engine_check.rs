//! Engine unit tests beyond the OpenFGA matrix: conditions, cycles, the depth limit,
//! deterministic error handling, contextual-tuple and write validation, batch check, expand and
//! list paging.

use std::ops::ControlFlow;

use serde_json::{Map, Value, json};
use trustgate_authz::dsl;
use trustgate_authz::engine::{
    BatchCheckItem, CheckRequest, EngineError, ErrorCode, ExpandRequest, ListObjectsRequest,
    ListUsersRequest, TypeSystem, UserFilter, batch_check, check, expand, list_objects,
    list_objects_page, list_objects_visit, list_users, validate_tuple_for_write,
};
use trustgate_authz::index::{IndexSnapshot, TupleChange, TupleIndex};
use trustgate_authz::tuple::{RelationshipCondition, TupleKey};

fn ts(dsl_text: &str) -> TypeSystem {
    TypeSystem::new(dsl::parse(dsl_text).expect("model parses")).expect("type system")
}

pub(crate) fn t(object: &str, relation: &str, user: &str) -> TupleKey {
    TupleKey::new(object, relation, user)
}

fn tc(object: &str, relation: &str, user: &str, cond: &str, ctx: Value) -> TupleKey {
    TupleKey {
        condition: Some(RelationshipCondition {
            name: cond.to_owned(),
            context: ctx.as_object().cloned(),
        }),
        ..t(object, relation, user)
    }
}

/// Writes `tuples` (each validated like the Write API) and returns the snapshot.
pub(crate) fn store(ts: &TypeSystem, tuples: &[TupleKey]) -> std::sync::Arc<IndexSnapshot> {
    for k in tuples {
        validate_tuple_for_write(ts, k).expect("tuple fits the model");
    }
    let index = TupleIndex::new();
    let changes: Vec<TupleChange> = tuples.iter().cloned().map(TupleChange::Write).collect();
    index.apply(1, &changes).expect("apply");
    index.snapshot()
}

fn ctx(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn chk(
    ts: &TypeSystem,
    snap: &IndexSnapshot,
    object: &str,
    relation: &str,
    user: &str,
    context: Option<&Map<String, Value>>,
) -> Result<bool, EngineError> {
    check(
        ts,
        snap,
        &CheckRequest {
            object,
            relation,
            user,
            contextual_tuples: &[],
            context,
        },
    )
}

const CONDITIONS: &str = "model
  schema 1.1
type user
type group
  relations
    define member: [user, user with in_range]
type folder
  relations
    define viewer: [user]
type document
  relations
    define parent: [folder, folder with in_range]
    define owner: [user]
    define viewer: [user with in_range, group#member, group#member with in_range] or viewer from parent
    define guarded: [user with in_range] or owner
    define both: [user with in_range] and owner
condition in_range(x: int, max: int) {
  x < max
}
";

#[test]
fn conditions_merge_tuple_and_request_context() {
    let ts = ts(CONDITIONS);
    let snap = store(
        &ts,
        &[tc(
            "document:1",
            "viewer",
            "user:anne",
            "in_range",
            json!({"max": 10}),
        )],
    );
    let small = ctx(json!({"x": 5}));
    let large = ctx(json!({"x": 50}));
    assert_eq!(
        chk(
            &ts,
            &snap,
            "document:1",
            "viewer",
            "user:anne",
            Some(&small)
        ),
        Ok(true)
    );
    assert_eq!(
        chk(
            &ts,
            &snap,
            "document:1",
            "viewer",
            "user:anne",
            Some(&large)
        ),
        Ok(false)
    );
    // The tuple's own value wins over the request's.
    let override_attempt = ctx(json!({"x": 50, "max": 100}));
    assert_eq!(
        chk(
            &ts,
            &snap,
            "document:1",
            "viewer",
            "user:anne",
            Some(&override_attempt)
        ),
        Ok(false)
    );
    // A missing parameter is an error, never an allow.
    let err = chk(&ts, &snap, "document:1", "viewer", "user:anne", None).expect_err("must fail");
    assert_eq!(err.code(), ErrorCode::ValidationError, "{err}");
    // Other users are unaffected by the conditioned tuple.
    assert_eq!(
        chk(&ts, &snap, "document:1", "viewer", "user:bob", None),
        Ok(false)
    );
}

#[test]
fn conditions_on_userset_and_tupleset_tuples() {
    let ts = ts(CONDITIONS);
    let snap = store(
        &ts,
        &[
            tc(
                "group:eng",
                "member",
                "user:anne",
                "in_range",
                json!({"max": 10}),
            ),
            t("document:1", "viewer", "group:eng#member"),
            tc(
                "document:2",
                "parent",
                "folder:x",
                "in_range",
                json!({"max": 10}),
            ),
            t("folder:x", "viewer", "user:bob"),
        ],
    );
    let small = ctx(json!({"x": 1}));
    let large = ctx(json!({"x": 99}));
    assert_eq!(
        chk(
            &ts,
            &snap,
            "document:1",
            "viewer",
            "user:anne",
            Some(&small)
        ),
        Ok(true)
    );
    assert_eq!(
        chk(
            &ts,
            &snap,
            "document:1",
            "viewer",
            "user:anne",
            Some(&large)
        ),
        Ok(false)
    );
    assert!(chk(&ts, &snap, "document:1", "viewer", "user:anne", None).is_err());
    assert_eq!(
        chk(&ts, &snap, "document:2", "viewer", "user:bob", Some(&small)),
        Ok(true)
    );
    assert_eq!(
        chk(&ts, &snap, "document:2", "viewer", "user:bob", Some(&large)),
        Ok(false)
    );
    assert!(chk(&ts, &snap, "document:2", "viewer", "user:bob", None).is_err());

    // List-objects and list-users evaluate the same conditions, and fail rather than omit.
    let lo = |context| {
        list_objects(
            &ts,
            &*snap,
            &ListObjectsRequest {
                object_type: "document",
                relation: "viewer",
                user: "user:bob",
                contextual_tuples: &[],
                context,
            },
        )
    };
    assert_eq!(lo(Some(&small)), Ok(vec!["document:2".to_owned()]));
    assert_eq!(lo(Some(&large)), Ok(vec![]));
    assert!(lo(None).is_err());
    let lu = |context| {
        list_users(
            &ts,
            &*snap,
            &ListUsersRequest {
                object: "document:1",
                relation: "viewer",
                user_filters: &[UserFilter::parse("user")],
                contextual_tuples: &[],
                context,
            },
        )
        .map(|r| r.users)
    };
    assert_eq!(lu(Some(&small)), Ok(vec!["user:anne".to_owned()]));
    assert_eq!(lu(Some(&large)), Ok(vec![]));
    assert!(lu(None).is_err());
}

#[test]
fn union_and_intersection_decide_errors_deterministically() {
    let ts = ts(CONDITIONS);
    let snap = store(
        &ts,
        &[
            tc("document:1", "guarded", "user:anne", "in_range", json!({})),
            t("document:1", "owner", "user:anne"),
            tc("document:1", "both", "user:bob", "in_range", json!({})),
            tc("document:1", "guarded", "user:carl", "in_range", json!({})),
        ],
    );
    // Union: the erroring condition does not matter when another operand is true.
    assert_eq!(
        chk(&ts, &snap, "document:1", "guarded", "user:anne", None),
        Ok(true)
    );
    // Union with no true operand: the error surfaces.
    assert!(chk(&ts, &snap, "document:1", "guarded", "user:carl", None).is_err());
    // Intersection: a false operand (bob is not owner) decides, whatever the other's error.
    assert_eq!(
        chk(&ts, &snap, "document:1", "both", "user:bob", None),
        Ok(false)
    );
    // Intersection with all others true: the error surfaces.
    let snap2 = store(
        &ts,
        &[
            tc("document:1", "both", "user:anne", "in_range", json!({})),
            t("document:1", "owner", "user:anne"),
        ],
    );
    assert!(chk(&ts, &snap2, "document:1", "both", "user:anne", None).is_err());
    // Repeating the same request gives the same answer.
    for _ in 0..10 {
        assert!(chk(&ts, &snap2, "document:1", "both", "user:anne", None).is_err());
        assert_eq!(
            chk(&ts, &snap, "document:1", "guarded", "user:anne", None),
            Ok(true)
        );
    }
}

#[test]
fn results_do_not_depend_on_tuple_order() {
    let ts = ts(CONDITIONS);
    let tuples = vec![
        tc("document:1", "guarded", "user:anne", "in_range", json!({})),
        t("document:1", "owner", "user:anne"),
        t("group:eng", "member", "user:bob"),
        t("group:ops", "member", "user:bob"),
        t("document:1", "viewer", "group:eng#member"),
        tc(
            "document:1",
            "viewer",
            "group:ops#member",
            "in_range",
            json!({"max": 1}),
        ),
        t("document:2", "parent", "folder:x"),
        t("folder:x", "viewer", "user:carl"),
    ];
    let queries = [
        ("document:1", "guarded", "user:anne"),
        ("document:1", "viewer", "user:bob"),
        ("document:2", "viewer", "user:carl"),
        ("document:1", "viewer", "user:carl"),
    ];
    let answers = |tuples: &[TupleKey]| -> Vec<String> {
        let snap = store(&ts, tuples);
        let mut out: Vec<String> = queries
            .iter()
            .map(|(o, r, u)| format!("{:?}", chk(&ts, &snap, o, r, u, None)))
            .collect();
        out.push(format!(
            "{:?}",
            list_objects(
                &ts,
                &*snap,
                &ListObjectsRequest {
                    object_type: "document",
                    relation: "viewer",
                    user: "user:bob",
                    contextual_tuples: &[],
                    context: Some(&ctx(json!({"x": 5}))),
                }
            )
        ));
        out
    };
    let expected = answers(&tuples);
    let mut reversed = tuples.clone();
    reversed.reverse();
    assert_eq!(answers(&reversed), expected);
    let mut rotated = tuples.clone();
    rotated.rotate_left(3);
    assert_eq!(answers(&rotated), expected);
}

#[test]
fn cycles_terminate_as_not_allowed() {
    let ts = ts("model
  schema 1.1
type user
type group
  relations
    define member: [user, group#member]
type document
  relations
    define viewer: [user, document#viewer]
    define editor: [user] but not viewer
");
    let snap = store(
        &ts,
        &[
            t("group:a", "member", "group:b#member"),
            t("group:b", "member", "group:c#member"),
            t("group:c", "member", "group:a#member"),
            t("group:c", "member", "user:anne"),
            t("document:1", "viewer", "document:2#viewer"),
            t("document:2", "viewer", "document:1#viewer"),
            t("document:1", "editor", "user:anne"),
        ],
    );
    assert_eq!(
        chk(&ts, &snap, "group:a", "member", "user:anne", None),
        Ok(true)
    );
    assert_eq!(
        chk(&ts, &snap, "group:a", "member", "user:bob", None),
        Ok(false)
    );
    assert_eq!(
        chk(&ts, &snap, "document:1", "viewer", "user:anne", None),
        Ok(false)
    );
    // OpenFGA semantics (`true_butnot_cycle_return_false`): a subtracted operand that runs
    // into a cycle makes the exclusion false, even though anne is a direct editor.
    assert_eq!(
        chk(&ts, &snap, "document:1", "editor", "user:anne", None),
        Ok(false)
    );
    let members = list_users(
        &ts,
        &*snap,
        &ListUsersRequest {
            object: "group:a",
            relation: "member",
            user_filters: &[UserFilter::parse("user"), UserFilter::parse("group#member")],
            contextual_tuples: &[],
            context: None,
        },
    )
    .expect("list users");
    assert_eq!(
        members.users,
        vec![
            "group:a#member",
            "group:b#member",
            "group:c#member",
            "user:anne"
        ]
    );
    let groups = list_objects(
        &ts,
        &*snap,
        &ListObjectsRequest {
            object_type: "group",
            relation: "member",
            user: "user:anne",
            contextual_tuples: &[],
            context: None,
        },
    )
    .expect("list objects");
    assert_eq!(groups, vec!["group:a", "group:b", "group:c"]);
}

#[test]
fn resolution_depth_is_limited() {
    let ts = ts("model
  schema 1.1
type user
type group
  relations
    define member: [user, group#member]
");
    let mut tuples: Vec<TupleKey> = (0..30)
        .map(|i| {
            t(
                &format!("group:g{i}"),
                "member",
                &format!("group:g{}#member", i + 1),
            )
        })
        .collect();
    tuples.push(t("group:g30", "member", "user:anne"));
    let snap = store(&ts, &tuples);
    // g10 → g30 is 20 nested checks: fine. g0 → g30 is 30: too complex.
    assert_eq!(
        chk(&ts, &snap, "group:g10", "member", "user:anne", None),
        Ok(true)
    );
    assert_eq!(
        chk(&ts, &snap, "group:g0", "member", "user:anne", None),
        Err(EngineError::ResolutionTooComplex)
    );
    let lo = list_objects(
        &ts,
        &*snap,
        &ListObjectsRequest {
            object_type: "group",
            relation: "member",
            user: "user:anne",
            contextual_tuples: &[],
            context: None,
        },
    );
    assert_eq!(lo.map_err(|e| e.code().number()), Err(2002));
    let lu = list_users(
        &ts,
        &*snap,
        &ListUsersRequest {
            object: "group:g0",
            relation: "member",
            user_filters: &[UserFilter::parse("user")],
            contextual_tuples: &[],
            context: None,
        },
    );
    assert_eq!(lu.map_err(|e| e.code().number()), Err(2002));
}

#[test]
fn contextual_tuples_are_validated_like_writes() {
    let ts = ts(CONDITIONS);
    let snap = store(&ts, &[]);
    let run = |ctx_tuples: &[TupleKey]| {
        check(
            &ts,
            &*snap,
            &CheckRequest {
                object: "document:1",
                relation: "owner",
                user: "user:anne",
                contextual_tuples: ctx_tuples,
                context: None,
            },
        )
    };
    assert_eq!(run(&[t("document:1", "owner", "user:anne")]), Ok(true));
    for bad in [
        t("folder:1", "owner", "user:anne"), // relation not on type
        t("nope:1", "owner", "user:anne"),   // unknown type
        t("document:1", "owner", "user:*"),  // wildcard not admitted
        t("document:1", "owner", "group:x#member"), // userset not admitted
        t("document:1", "owner", "user anne"), // malformed
        t("document:1", "viewer", "user:anne"), // condition required
        tc("document:1", "owner", "user:anne", "in_range", json!({})), // condition not admitted
        tc("document:1", "viewer", "user:anne", "nope", json!({})), // undefined condition
        tc(
            "document:1",
            "viewer",
            "user:anne",
            "in_range",
            json!({"y": 1}),
        ), // unknown param
        t("document:1", "parent", "folder:x#viewer"), // userset on a tupleset
    ] {
        let err = run(std::slice::from_ref(&bad)).expect_err("invalid contextual tuple");
        assert_eq!(err.code(), ErrorCode::InvalidTuple, "{bad:?}: {err}");
    }
    let many: Vec<TupleKey> = (0..101)
        .map(|i| t(&format!("document:{i}"), "owner", "user:anne"))
        .collect();
    assert_eq!(
        run(&many).map_err(|e| e.code()),
        Err(ErrorCode::ValidationError)
    );
}

#[test]
fn write_validation_uses_openfga_codes() {
    let ts = ts(CONDITIONS);
    let code = |k: TupleKey| validate_tuple_for_write(&ts, &k).map_err(|e| e.code().number());
    assert_eq!(code(t("document:1", "owner", "user:anne")), Ok(()));
    assert_eq!(
        code(tc(
            "document:1",
            "viewer",
            "user:anne",
            "in_range",
            json!({"max": 3})
        )),
        Ok(())
    );
    assert_eq!(code(t("document:1", "viewer", "group:eng#member")), Ok(()));
    assert_eq!(code(t("nope:1", "owner", "user:anne")), Err(2021));
    assert_eq!(code(t("document:1", "owner", "nope:anne")), Err(2021));
    assert_eq!(code(t("document:1", "nope", "user:anne")), Err(2022));
    assert_eq!(code(t("document:1", "viewer", "group:eng#nope")), Err(2022));
    assert_eq!(code(t("document:1", "owner", "group:eng")), Err(2027));
    assert_eq!(code(t("document:1", "parent", "folder:*")), Err(2027));
    assert_eq!(code(t("document:*", "owner", "user:anne")), Err(2027));
    assert_eq!(code(t("document:1:2", "owner", "user:anne")), Err(2027));
    assert_eq!(code(t("document:1", "owner", "user:a#b#c")), Err(2027));
    assert_eq!(code(t("document:1", "viewer", "user:anne")), Err(2027));
    let err = validate_tuple_for_write(&ts, &t("document:1", "owner", "group:eng"))
        .expect_err("must fail");
    assert_eq!(
        err.to_string(),
        "Invalid tuple 'document:1#owner@group:eng'. Reason: type 'group' is not an allowed type restriction for 'document#owner'"
    );
}

#[test]
fn check_request_errors_are_validation_errors() {
    let ts = ts(CONDITIONS);
    let snap = store(&ts, &[]);
    for (o, r, u) in [
        ("nope:1", "owner", "user:anne"),
        ("document:1", "nope", "user:anne"),
        ("document:1", "owner", "nope:anne"),
        ("document:1", "owner", "a:b:c"),
        ("document", "owner", "user:anne"),
        ("document:1", "owner", "group:x#nope"),
        ("", "", ""),
    ] {
        let err = chk(&ts, &snap, o, r, u, None).expect_err("must fail");
        assert_eq!(err.code(), ErrorCode::ValidationError, "{o}#{r}@{u}: {err}");
    }
    // A userset user is self-defining.
    assert_eq!(
        chk(&ts, &snap, "group:eng", "member", "group:eng#member", None),
        Ok(true)
    );
}

#[test]
fn batch_check_reports_each_item() {
    let ts = ts(CONDITIONS);
    let snap = store(&ts, &[t("document:1", "owner", "user:anne")]);
    let item = |id, object, user| BatchCheckItem {
        correlation_id: id,
        request: CheckRequest {
            object,
            relation: "owner",
            user,
            contextual_tuples: &[],
            context: None,
        },
    };
    let results = batch_check(
        &ts,
        &*snap,
        &[
            item("a", "document:1", "user:anne"),
            item("b", "document:1", "user:bob"),
            item("c", "bad", "user:bob"),
        ],
    )
    .expect("batch");
    assert_eq!(results[0].result, Ok(true));
    assert_eq!(results[1].result, Ok(false));
    assert_eq!(results[2].correlation_id, "c");
    assert!(results[2].result.is_err());
    assert!(
        batch_check(
            &ts,
            &*snap,
            &[
                item("a", "document:1", "user:anne"),
                item("a", "document:1", "user:bob")
            ]
        )
        .is_err()
    );
}

#[test]
fn expand_has_openfga_json_shape() {
    let ts = ts("model
  schema 1.1
type user
type folder
  relations
    define viewer: [user]
type document
  relations
    define parent: [folder]
    define editor: [user]
    define blocked: [user]
    define viewer: ([user, user:*] or editor or viewer from parent) but not blocked
");
    let snap = store(
        &ts,
        &[
            t("document:1", "viewer", "user:anne"),
            t("document:1", "viewer", "user:*"),
            t("document:1", "parent", "folder:x"),
        ],
    );
    let tree = expand(
        &ts,
        &*snap,
        &ExpandRequest {
            object: "document:1",
            relation: "viewer",
            contextual_tuples: &[],
        },
    )
    .expect("expand");
    let n = "document:1#viewer";
    assert_eq!(
        serde_json::to_value(&tree).expect("json"),
        json!({"tree": {"root": {"name": n, "difference": {
            "base": {"name": n, "union": {"nodes": [
                {"name": n, "leaf": {"users": {"users": ["user:anne", "user:*"]}}},
                {"name": n, "leaf": {"computed": {"userset": "document:1#editor"}}},
                {"name": n, "leaf": {"tupleToUserset": {
                    "tupleset": "document:1#parent",
                    "computed": [{"userset": "folder:x#viewer"}]}}}
            ]}},
            "subtract": {"name": n, "leaf": {"computed": {"userset": "document:1#blocked"}}}
        }}}})
    );
    let back: trustgate_authz::engine::ExpandResponse =
        serde_json::from_value(serde_json::to_value(&tree).expect("json")).expect("round trip");
    assert_eq!(back, tree);
}

#[test]
fn list_objects_pages_and_streams_without_truncation() {
    let ts = ts("model
  schema 1.1
type user
type document
  relations
    define viewer: [user]
");
    let tuples: Vec<TupleKey> = (0..25)
        .map(|i| t(&format!("document:{i:02}"), "viewer", "user:anne"))
        .collect();
    let snap = store(&ts, &tuples);
    let req = ListObjectsRequest {
        object_type: "document",
        relation: "viewer",
        user: "user:anne",
        contextual_tuples: &[],
        context: None,
    };
    let all = list_objects(&ts, &*snap, &req).expect("all");
    assert_eq!(all.len(), 25);
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = list_objects_page(&ts, &*snap, &req, after.as_deref(), 10).expect("page");
        assert!(page.objects.len() <= 10);
        paged.extend(page.objects.iter().cloned());
        if !page.has_more {
            break;
        }
        after = page.objects.last().cloned();
    }
    assert_eq!(paged, all);
    let mut streamed = Vec::new();
    list_objects_visit(&ts, &*snap, &req, &mut |o| {
        streamed.push(o.to_owned());
        if streamed.len() == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .expect("visit");
    assert_eq!(streamed.len(), 3);
}

#[test]
fn json_models_work_without_the_dsl() {
    let model: trustgate_authz::model::AuthorizationModel = serde_json::from_value(json!({
        "schema_version": "1.1",
        "type_definitions": [
            {"type": "user"},
            {"type": "document",
             "relations": {
                "owner": {"this": {}},
                "viewer": {"union": {"child": [
                    {"this": {}},
                    {"computedUserset": {"object": "", "relation": "owner"}}]}}},
             "metadata": {"relations": {
                "owner": {"directly_related_user_types": [{"type": "user"}]},
                "viewer": {"directly_related_user_types": [{"type": "user", "wildcard": {}}]}}}}
        ]
    }))
    .expect("json model");
    let ts = TypeSystem::new(model).expect("type system");
    let snap = store(
        &ts,
        &[
            t("document:1", "owner", "user:anne"),
            t("document:2", "viewer", "user:*"),
        ],
    );
    assert_eq!(
        chk(&ts, &snap, "document:1", "viewer", "user:anne", None),
        Ok(true)
    );
    assert_eq!(
        chk(&ts, &snap, "document:2", "viewer", "user:bob", None),
        Ok(true)
    );
    assert_eq!(
        chk(&ts, &snap, "document:1", "viewer", "user:bob", None),
        Ok(false)
    );
    assert!(!ts.is_tupleset_relation("document", "owner"));
    assert_eq!(
        ts.reachable_user_types("document", "viewer", true),
        vec!["user"]
    );
}

#[test]
fn invalid_models_are_rejected_not_panicked_on() {
    let bad = json!({
        "schema_version": "1.1",
        "type_definitions": [
            {"type": "document", "relations": {
                "viewer": {"computedUserset": {"object": "", "relation": "nope"}}}}
        ]
    });
    let model = serde_json::from_value(bad).expect("json");
    assert!(TypeSystem::new(model).is_err());
    let old = json!({"schema_version": "1.0", "type_definitions": []});
    assert!(TypeSystem::new(serde_json::from_value(old).expect("json")).is_err());
}
