//! Explanations: the path that granted an allow, the branches of a deny and why each failed,
//! the short reason the audit trail records, and the bounds. (Every Check of OpenFGA's matrix
//! is also explained in `engine_matrix`, which asserts that explaining never changes a
//! decision.)

use serde_json::{Map, Value, json};
use trustgate_authz::dsl;
use trustgate_authz::engine::{
    CheckRequest, ConditionResult, EngineError, Explanation, MAX_EXPLANATION_STEPS,
    MAX_REASON_CAUSES, Step, StepKind, StepResult, TypeSystem, check, check_with_reason, explain,
};
use trustgate_authz::index::IndexSnapshot;
use trustgate_authz::tuple::{RelationshipCondition, TupleKey};

use crate::engine_check::{store, t};

const DRIVE: &str = "model
  schema 1.1
type user
type group
  relations
    define member: [user]
type folder
  relations
    define viewer: [user, group#member]
type document
  relations
    define parent: [folder]
    define blocked: [user]
    define viewer: [user, user with in_region] or viewer from parent
    define can_view: viewer but not blocked

condition in_region(region: string, allowed: list<string>) {
  region in allowed
}
";

fn ts() -> TypeSystem {
    TypeSystem::new(dsl::parse(DRIVE).expect("model parses")).expect("type system")
}

fn in_region(object: &str, user: &str, allowed: Value) -> TupleKey {
    TupleKey {
        condition: Some(RelationshipCondition {
            name: "in_region".to_owned(),
            context: json!({ "allowed": allowed }).as_object().cloned(),
        }),
        ..t(object, "viewer", user)
    }
}

/// Explains `object#relation@user` and checks that it agrees with `check` and with
/// `check_with_reason`.
fn explained(
    ts: &TypeSystem,
    snap: &IndexSnapshot,
    object: &str,
    relation: &str,
    user: &str,
    context: Option<&Map<String, Value>>,
) -> Explanation {
    let req = CheckRequest {
        object,
        relation,
        user,
        contextual_tuples: &[],
        context,
    };
    let e = explain(ts, snap, &req).expect("a valid request");
    assert_eq!(e.result, check(ts, snap, &req), "explain decides as check");
    let (result, reason) = check_with_reason(ts, snap, &req);
    assert_eq!(result, e.result);
    assert_eq!(reason, e.reason, "the audit reason is the explanation's");
    e
}

/// The only child of `step` (a pruned allow has one path).
fn only(step: &Step) -> &Step {
    assert_eq!(step.steps.len(), 1, "one step under {step:#?}");
    &step.steps[0]
}

fn find<'a>(step: &'a Step, kind: StepKind, target: &str) -> Option<&'a Step> {
    if step.kind == kind && step.target == target {
        return Some(step);
    }
    step.steps.iter().find_map(|s| find(s, kind, target))
}

#[test]
fn an_allow_through_a_parent_and_a_group_shows_the_path_that_granted_it() {
    let ts = ts();
    let snap = store(
        &ts,
        &[
            t("document:1", "parent", "folder:x"),
            t("folder:x", "viewer", "group:eng#member"),
            t("group:eng", "member", "user:anne"),
            // A branch tried before the one that grants: not part of the explanation.
            in_region("document:1", "user:anne", json!(["eu"])),
        ],
    );
    let ctx = json!({"region": "us"}).as_object().cloned();
    let e = explained(
        &ts,
        &snap,
        "document:1",
        "viewer",
        "user:anne",
        ctx.as_ref(),
    );
    assert_eq!(e.result, Ok(true));
    assert_eq!(
        e.reason.to_string(),
        "allowed: document:1#parent@folder:x > folder:x#viewer@group:eng#member > \
         group:eng#member@user:anne"
    );

    // document:1#viewer = [user, user with in_region] or viewer from parent: only the `from`.
    let root = &e.tree;
    assert_eq!(
        (root.kind, root.target.as_str(), root.result),
        (StepKind::Relation, "document:1#viewer", StepResult::Allowed)
    );
    let union = only(root);
    assert_eq!(union.kind, StepKind::Union);
    let from = only(union);
    assert_eq!(
        (from.kind, from.target.as_str()),
        (StepKind::TupleToUserset, "document:1#parent")
    );
    let parent = only(from);
    assert_eq!(
        (parent.kind, parent.target.as_str()),
        (StepKind::Tuple, "document:1#parent@folder:x")
    );
    let folder = only(parent);
    assert_eq!(folder.target, "folder:x#viewer");
    let userset = only(only(folder));
    assert_eq!(
        (userset.kind, userset.target.as_str()),
        (StepKind::Tuple, "folder:x#viewer@group:eng#member")
    );
    let group = only(userset);
    assert_eq!(group.target, "group:eng#member");
    let member = only(only(group));
    assert_eq!(
        (member.kind, member.target.as_str(), member.result),
        (
            StepKind::Tuple,
            "group:eng#member@user:anne",
            StepResult::Allowed
        )
    );
    assert!(
        find(root, StepKind::Direct, "document:1#viewer").is_none(),
        "the failed direct branch is pruned from an allow"
    );
    assert!(!e.truncated);
    let text = root.to_text();
    assert!(
        text.contains("allowed tuple group:eng#member@user:anne"),
        "{text}"
    );
}

#[test]
fn a_deny_by_exclusion_names_the_tuple_that_excluded() {
    let ts = ts();
    let snap = store(
        &ts,
        &[
            t("document:1", "viewer", "user:bob"),
            t("document:1", "blocked", "user:bob"),
        ],
    );
    let e = explained(&ts, &snap, "document:1", "can_view", "user:bob", None);
    assert_eq!(e.result, Ok(false));
    assert_eq!(
        e.reason.to_string(),
        "denied: excluded by document:1#blocked@user:bob"
    );
    let exclusion = only(&e.tree);
    assert_eq!(
        (exclusion.kind, exclusion.result),
        (StepKind::Exclusion, StepResult::Denied)
    );
    assert_eq!(
        exclusion.note.as_deref(),
        Some("excluded: the subtracted operand holds")
    );
    let [base, subtract] = exclusion.steps.as_slice() else {
        panic!("both operands: {exclusion:#?}");
    };
    assert_eq!(
        (base.target.as_str(), base.result),
        ("document:1#viewer", StepResult::Allowed)
    );
    assert_eq!(
        (subtract.target.as_str(), subtract.result),
        ("document:1#blocked", StepResult::Allowed)
    );
    assert!(find(subtract, StepKind::Tuple, "document:1#blocked@user:bob").is_some());

    // Without the blocking tuple the same check is allowed, and the explanation keeps the
    // subtracted side (denied: that is why the user is not excluded).
    let snap = store(&ts, &[t("document:1", "viewer", "user:bob")]);
    let e = explained(&ts, &snap, "document:1", "can_view", "user:bob", None);
    assert_eq!(e.result, Ok(true));
    assert_eq!(e.reason.to_string(), "allowed: document:1#viewer@user:bob");
    let exclusion = only(&e.tree);
    assert_eq!(exclusion.steps.len(), 2);
    assert_eq!(exclusion.steps[1].result, StepResult::Denied);
}

#[test]
fn a_deny_by_a_condition_shows_the_values_it_saw() {
    let ts = ts();
    let snap = store(
        &ts,
        &[in_region("document:1", "user:carl", json!(["eu", "ch"]))],
    );
    let ctx = json!({"region": "us", "unrelated": 1}).as_object().cloned();
    let e = explained(
        &ts,
        &snap,
        "document:1",
        "viewer",
        "user:carl",
        ctx.as_ref(),
    );
    assert_eq!(e.result, Ok(false));
    assert_eq!(
        e.reason.to_string(),
        r#"denied: condition in_region false on document:1#viewer@user:carl with {"region":"us","allowed":["eu","ch"]}"#
    );
    let tuple = find(&e.tree, StepKind::Tuple, "document:1#viewer@user:carl")
        .expect("the tuple is in the explanation");
    let condition = tuple.condition.as_ref().expect("its condition");
    assert_eq!(condition.name, "in_region");
    assert_eq!(condition.result, ConditionResult::NotMet);
    assert_eq!(
        Value::Object(condition.values.clone()),
        json!({"region": "us", "allowed": ["eu", "ch"]}),
        "the declared parameters it saw, nothing else"
    );
    // The other branch of the union was tried too.
    let from = find(&e.tree, StepKind::TupleToUserset, "document:1#parent").expect("tried");
    assert_eq!(
        (from.result, from.note.as_deref()),
        (StepResult::Denied, Some("no tuple"))
    );

    // With a region the tuple allows, the condition is part of the granting path.
    let ctx = json!({"region": "ch"}).as_object().cloned();
    let e = explained(
        &ts,
        &snap,
        "document:1",
        "viewer",
        "user:carl",
        ctx.as_ref(),
    );
    assert_eq!(
        e.reason.to_string(),
        "allowed: document:1#viewer@user:carl [in_region]"
    );
}

#[test]
fn a_deny_with_no_tuple_and_an_unevaluable_condition() {
    let ts = ts();
    let snap = store(&ts, &[in_region("document:1", "user:dora", json!(["eu"]))]);
    let e = explained(&ts, &snap, "document:1", "viewer", "user:erin", None);
    assert_eq!(e.result, Ok(false));
    assert_eq!(e.reason.to_string(), "denied: no tuple relates the user");
    let direct = find(&e.tree, StepKind::Direct, "document:1#viewer").expect("tried");
    assert_eq!(direct.note.as_deref(), Some("no tuple"));

    // No region in the request: the condition cannot be evaluated, an error (never an allow),
    // noted on the tuple where it arose.
    let e = explained(&ts, &snap, "document:1", "viewer", "user:dora", None);
    assert!(matches!(e.result, Err(EngineError::Validation(_))), "{e:?}");
    assert_eq!(e.tree.result, StepResult::Error);
    let tuple = find(&e.tree, StepKind::Tuple, "document:1#viewer@user:dora").expect("read");
    assert_eq!(
        tuple.condition.as_ref().map(|c| c.result),
        Some(ConditionResult::Error)
    );
    assert!(
        tuple
            .note
            .as_deref()
            .is_some_and(|n| n.contains("missing context parameters 'region'")),
        "{tuple:#?}"
    );
    assert!(e.tree.note.is_none(), "not repeated on every step above");
    assert!(e.reason.to_string().starts_with("denied: error: "));
}

#[test]
fn an_invalid_request_is_refused_as_check_refuses_it() {
    let ts = ts();
    let snap = store(&ts, &[]);
    let req = CheckRequest {
        object: "nosuchtype:1",
        relation: "viewer",
        user: "user:anne",
        contextual_tuples: &[],
        context: None,
    };
    let refused = explain(&ts, &snap, &req).expect_err("refused");
    assert_eq!(Err(refused), check(&ts, &snap, &req));
}

#[test]
fn an_explanation_is_bounded_and_a_reason_lists_a_few_causes() {
    let ts = ts();
    // Many groups on the folder, none containing the user: far more steps than are kept.
    let mut tuples = vec![t("document:1", "parent", "folder:x")];
    for i in 0..MAX_EXPLANATION_STEPS {
        tuples.push(t("folder:x", "viewer", &format!("group:g{i}#member")));
        tuples.push(t(&format!("group:g{i}"), "member", "user:other"));
    }
    let snap = store(&ts, &tuples);
    let e = explained(&ts, &snap, "document:1", "viewer", "user:frank", None);
    assert_eq!(e.result, Ok(false));
    assert!(e.truncated, "more steps than recorded");
    fn count(s: &Step) -> usize {
        1 + s.steps.iter().map(count).sum::<usize>()
    }
    assert!(count(&e.tree) <= MAX_EXPLANATION_STEPS);

    // A deny with more causes than a reason keeps: the rest are counted.
    let wide = "model
  schema 1.1
type user
type document
  relations
    define a: [user with in_region]
    define b: [user with in_region]
    define c: [user with in_region]
    define d: [user with in_region]
    define e: [user with in_region]
    define any: a or b or c or d or e

condition in_region(region: string, allowed: list<string>) {
  region in allowed
}
";
    let ts = TypeSystem::new(dsl::parse(wide).expect("parses")).expect("type system");
    let tuples: Vec<TupleKey> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|r| TupleKey {
            condition: Some(RelationshipCondition {
                name: "in_region".to_owned(),
                context: json!({"allowed": []}).as_object().cloned(),
            }),
            ..t("document:1", r, "user:gina")
        })
        .collect();
    let snap = store(&ts, &tuples);
    let ctx = json!({"region": "eu"}).as_object().cloned();
    let e = explained(&ts, &snap, "document:1", "any", "user:gina", ctx.as_ref());
    let reason = e.reason.to_string();
    assert_eq!(
        reason.matches("condition in_region false").count(),
        MAX_REASON_CAUSES
    );
    assert!(reason.ends_with("; and 1 more"), "{reason}");
}

#[test]
fn a_relation_reached_again_is_not_walked_again() {
    let ts = ts();
    // One group on twenty parent folders: after the first few, the group's denial is known.
    let mut tuples = vec![t("group:g", "member", "user:other")];
    for i in 0..20 {
        tuples.push(t("document:1", "parent", &format!("folder:p{i}")));
        tuples.push(t(&format!("folder:p{i}"), "viewer", "group:g#member"));
    }
    let snap = store(&ts, &tuples);
    let e = explained(&ts, &snap, "document:1", "viewer", "user:hana", None);
    assert_eq!(e.result, Ok(false));
    fn known(s: &Step) -> usize {
        usize::from(s.note.as_deref() == Some("already found denied above"))
            + s.steps.iter().map(known).sum::<usize>()
    }
    let reused = known(&e.tree);
    assert!(reused >= 10, "group:g#member walked again: {reused} reuses");
    assert!(
        find(&e.tree, StepKind::Relation, "group:g#member").is_some(),
        "walked once"
    );

    // The user in the group: still allowed (a denial is only remembered for its own user).
    let mut tuples = tuples;
    tuples.push(t("group:g", "member", "user:hana"));
    let snap = store(&ts, &tuples);
    let e = explained(&ts, &snap, "document:1", "viewer", "user:hana", None);
    assert_eq!(e.result, Ok(true));
}
