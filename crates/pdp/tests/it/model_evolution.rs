//! Model changes never grant (OpenFGA's read-time validation), on SQLite and PostgreSQL.
//!
//! Each case writes tuples under a first model, writes a second model that no longer admits some
//! of them, and asserts that under the second model those tuples grant nothing and cause no
//! error in Check, ListObjects, ListUsers and Expand, while the tuples it still admits keep
//! working and the first model (asked for by id) still sees everything. The stored tuples are
//! never touched: what a model admits is decided when it evaluates.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use trustgate_audit::{Auditor, AuditorConfig, RequestContext};
use trustgate_pdp::{
    Caller, CheckRequest, ExpandRequest, Limits, ListObjectsRequest, ListPaging, ListUsersRequest,
    Pdp, PdpError, QueryScope, TupleKey, TupleWrite, UserFilter,
};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

/// One way a model can evolve.
struct Case {
    name: &'static str,
    before: &'static str,
    after: &'static str,
    /// Written under `before`.
    tuples: Vec<TupleKey>,
    /// `(object, relation, user)` true under `before`, false (not an error) under `after`.
    revoked: &'static [(&'static str, &'static str, &'static str)],
    /// `(object, relation, user)` true under both: what the new model still admits.
    kept: &'static [(&'static str, &'static str, &'static str)],
    /// The request context of every query (for conditions that `after` still evaluates).
    context: Option<Value>,
}

fn tk(object: &str, relation: &str, user: &str) -> TupleKey {
    TupleKey::new(object, relation, user)
}

fn in_hours(hour: i64) -> Option<Map<String, Value>> {
    match json!({ "hour": hour }) {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "type restriction removed",
            before: "model
  schema 1.1
type user
type group
  relations
    define member: [user]
type document
  relations
    define viewer: [user, user:*, group#member]
",
            after: "model
  schema 1.1
type user
type group
  relations
    define member: [user]
type document
  relations
    define viewer: [group#member]
",
            tuples: vec![
                tk("document:direct", "viewer", "user:anne"),
                tk("document:public", "viewer", "user:*"),
                tk("document:team", "viewer", "group:g#member"),
                tk("group:g", "member", "user:bob"),
            ],
            revoked: &[
                ("document:direct", "viewer", "user:anne"),
                ("document:public", "viewer", "user:carl"),
            ],
            kept: &[("document:team", "viewer", "user:bob")],
            context: None,
        },
        Case {
            name: "condition added to a restriction",
            before: "model
  schema 1.1
type user
type document
  relations
    define viewer: [user, user with in_hours]
condition in_hours(hour: int) {
  hour >= 9 && hour < 17
}
",
            after: "model
  schema 1.1
type user
type document
  relations
    define viewer: [user with in_hours]
condition in_hours(hour: int) {
  hour >= 9 && hour < 17
}
",
            tuples: vec![
                tk("document:plain", "viewer", "user:anne"),
                tk("document:timed", "viewer", "user:bob").with_condition("in_hours", None),
            ],
            revoked: &[("document:plain", "viewer", "user:anne")],
            kept: &[("document:timed", "viewer", "user:bob")],
            context: Some(json!({ "hour": 10 })),
        },
        Case {
            name: "condition deleted",
            before: "model
  schema 1.1
type user
type document
  relations
    define viewer: [user, user with in_hours]
condition in_hours(hour: int) {
  hour >= 9 && hour < 17
}
",
            after: "model
  schema 1.1
type user
type document
  relations
    define viewer: [user]
",
            tuples: vec![
                tk("document:timed", "viewer", "user:anne")
                    .with_condition("in_hours", in_hours(10)),
                tk("document:plain", "viewer", "user:bob"),
            ],
            revoked: &[("document:timed", "viewer", "user:anne")],
            kept: &[("document:plain", "viewer", "user:bob")],
            context: None,
        },
        Case {
            name: "condition no longer allowed on the restriction",
            before: "model
  schema 1.1
type user
type document
  relations
    define viewer: [user, user with in_hours]
    define editor: [user with in_hours]
condition in_hours(hour: int) {
  hour >= 9 && hour < 17
}
",
            after: "model
  schema 1.1
type user
type document
  relations
    define viewer: [user]
    define editor: [user with in_hours]
condition in_hours(hour: int) {
  hour >= 9 && hour < 17
}
",
            tuples: vec![
                tk("document:timed", "viewer", "user:anne")
                    .with_condition("in_hours", in_hours(10)),
                tk("document:timed", "editor", "user:bob").with_condition("in_hours", in_hours(10)),
            ],
            revoked: &[("document:timed", "viewer", "user:anne")],
            kept: &[("document:timed", "editor", "user:bob")],
            context: None,
        },
        Case {
            name: "relation deleted and its name redefined without direct assignment",
            before: "model
  schema 1.1
type user
type document
  relations
    define owner: [user]
    define editor: [user] or owner
    define viewer: [user] or editor
",
            after: "model
  schema 1.1
type user
type document
  relations
    define owner: [user]
    define editor: owner
    define viewer: [user] or editor
",
            tuples: vec![
                tk("document:1", "editor", "user:anne"),
                tk("document:1", "owner", "user:bob"),
            ],
            revoked: &[
                ("document:1", "editor", "user:anne"),
                ("document:1", "viewer", "user:anne"),
            ],
            kept: &[("document:1", "viewer", "user:bob")],
            context: None,
        },
        Case {
            name: "type deleted",
            before: "model
  schema 1.1
type user
type team
  relations
    define member: [user]
type document
  relations
    define viewer: [user, team#member]
",
            after: "model
  schema 1.1
type user
type document
  relations
    define viewer: [user]
",
            tuples: vec![
                tk("document:1", "viewer", "team:a#member"),
                tk("team:a", "member", "user:anne"),
                tk("document:1", "viewer", "user:bob"),
            ],
            revoked: &[("document:1", "viewer", "user:anne")],
            kept: &[("document:1", "viewer", "user:bob")],
            context: None,
        },
        Case {
            name: "tupleset restriction now requires a condition",
            before: "model
  schema 1.1
type user
type folder
  relations
    define viewer: [user]
type document
  relations
    define parent: [folder]
    define viewer: [user] or viewer from parent
",
            after: "model
  schema 1.1
type user
type folder
  relations
    define viewer: [user]
type document
  relations
    define parent: [folder with in_hours]
    define viewer: [user] or viewer from parent
condition in_hours(hour: int) {
  hour >= 9 && hour < 17
}
",
            tuples: vec![
                tk("document:1", "parent", "folder:f"),
                tk("folder:f", "viewer", "user:anne"),
                tk("document:1", "viewer", "user:bob"),
            ],
            revoked: &[("document:1", "viewer", "user:anne")],
            kept: &[("document:1", "viewer", "user:bob")],
            context: Some(json!({ "hour": 10 })),
        },
    ]
}

fn caller_context() -> RequestContext {
    RequestContext::new(None, None, Some("model-evolution"))
}

fn replica(db: &TestDatabase) -> Pdp {
    let clock: Arc<dyn trustgate_core::Clock> = Arc::new(trustgate_core::SystemClock);
    let auditor = Auditor::new(db.store.clone(), clock.clone(), AuditorConfig::default());
    Pdp::new(db.store.clone(), clock, Limits::default(), auditor)
}

async fn write_model(pdp: &Pdp, store: &str, dsl: &str) -> String {
    let model = trustgate_authz::dsl::parse(dsl).expect("model parses");
    pdp.write_model(store, model).await.expect("write model")
}

fn as_map(context: &Option<Value>) -> Option<Map<String, Value>> {
    match context {
        Some(Value::Object(m)) => Some(m.clone()),
        _ => None,
    }
}

struct Query<'a> {
    pdp: &'a Pdp,
    store: &'a str,
    model: &'a str,
    context: Option<Map<String, Value>>,
    request: RequestContext,
}

impl Query<'_> {
    fn scope(&self) -> QueryScope<'_> {
        QueryScope {
            model_id: Some(self.model),
            ..QueryScope::latest(self.store)
        }
    }

    /// The check's result as text, `Ok(true)`, `Ok(false)` or the error (`PdpError` has no
    /// `PartialEq`).
    async fn check(&self, triple: (&str, &str, &str)) -> String {
        format!("{:?}", self.try_check(triple).await)
    }

    async fn try_check(
        &self,
        (object, relation, user): (&str, &str, &str),
    ) -> Result<bool, PdpError> {
        let request = CheckRequest {
            object,
            relation,
            user,
            contextual_tuples: &[],
            context: self.context.as_ref(),
        };
        let caller = Caller {
            principal: "service:test",
            context: &self.request,
        };
        self.pdp.check(&self.scope(), &request, caller).await
    }

    async fn objects(&self, (object, relation, user): (&str, &str, &str)) -> Vec<String> {
        let object_type = object.split_once(':').map_or(object, |(t, _)| t);
        let request = ListObjectsRequest {
            object_type,
            relation,
            user,
            contextual_tuples: &[],
            context: self.context.as_ref(),
        };
        self.pdp
            .list_objects(&self.scope(), &request, ListPaging::default())
            .await
            .expect("list objects")
            .items
    }

    async fn users(&self, (object, relation, user): (&str, &str, &str)) -> Vec<String> {
        let user_type = user.split_once(':').map_or(user, |(t, _)| t);
        let filters = [UserFilter {
            user_type,
            relation: None,
        }];
        let request = ListUsersRequest {
            object,
            relation,
            user_filters: &filters,
            contextual_tuples: &[],
            context: self.context.as_ref(),
        };
        self.pdp
            .list_users(&self.scope(), &request, ListPaging::default())
            .await
            .expect("list users")
            .items
    }

    /// Expand of `object#relation` as JSON text (users appear as strings in it).
    async fn expand(&self, object: &str, relation: &str) -> String {
        let request = ExpandRequest {
            object,
            relation,
            contextual_tuples: &[],
        };
        let tree = self
            .pdp
            .expand(&self.scope(), &request)
            .await
            .expect("expand");
        serde_json::to_string(&tree).expect("serialize")
    }
}

async fn model_changes_never_grant(db: TestDatabase) {
    let pdp = replica(&db);
    for case in cases() {
        let name = case.name;
        let store = pdp.create_store("model evolution").await.expect("store").id;
        let before = write_model(&pdp, &store, case.before).await;
        let tuples = TupleWrite {
            writes: &case.tuples,
            ..TupleWrite::default()
        };
        pdp.write(&store, &tuples)
            .await
            .expect("write under the first model");
        let after = write_model(&pdp, &store, case.after).await;
        let query = |model| Query {
            pdp: &pdp,
            store: &store,
            model,
            context: as_map(&case.context),
            request: caller_context(),
        };
        let (old, new) = (query(&before), query(&after));

        for &triple in case.revoked {
            let (object, relation, user) = triple;
            assert_eq!(
                old.check(triple).await,
                "Ok(true)",
                "{name}: {triple:?} before"
            );
            assert_eq!(
                new.check(triple).await,
                "Ok(false)",
                "{name}: {triple:?} after"
            );
            assert!(
                old.objects(triple).await.contains(&object.to_owned()),
                "{name}: list objects before {triple:?}"
            );
            assert!(
                !new.objects(triple).await.contains(&object.to_owned()),
                "{name}: list objects after {triple:?}"
            );
            // A user reached through a wildcard tuple is listed as the wildcard.
            let wildcard = format!("{}:*", user.split_once(':').map_or(user, |(t, _)| t));
            let names = |users: Vec<String>| users.iter().any(|u| u == user || *u == wildcard);
            assert!(
                names(old.users(triple).await),
                "{name}: list users before {triple:?}"
            );
            assert!(
                !names(new.users(triple).await),
                "{name}: list users after {triple:?}"
            );
            // Expand shows a directly stored user only while the model admits its tuple.
            let direct = case
                .tuples
                .iter()
                .any(|t| t.object == object && t.relation == relation && t.user == user);
            if direct && relation_is_direct_in(case.after, relation) {
                let quoted = format!("\"{user}\"");
                assert!(
                    old.expand(object, relation).await.contains(&quoted),
                    "{name}"
                );
                assert!(
                    !new.expand(object, relation).await.contains(&quoted),
                    "{name}"
                );
            }
        }
        for &triple in case.kept {
            let (object, _, user) = triple;
            assert_eq!(
                new.check(triple).await,
                "Ok(true)",
                "{name}: kept {triple:?}"
            );
            assert!(
                new.objects(triple).await.contains(&object.to_owned()),
                "{name}"
            );
            assert!(new.users(triple).await.contains(&user.to_owned()), "{name}");
        }
        // Nothing was deleted: the first model still sees every tuple it admitted.
        for &triple in case.kept {
            assert_eq!(
                old.check(triple).await,
                "Ok(true)",
                "{name}: {triple:?} before"
            );
        }
    }
}

/// Whether `relation` (on any type) still admits direct tuples in `dsl`: only then can Expand
/// name a stored user at all.
fn relation_is_direct_in(dsl: &str, relation: &str) -> bool {
    dsl.lines()
        .any(|l| l.trim_start().starts_with(&format!("define {relation}: [")))
}

/// A condition is evaluated only with every declared parameter: a missing one is OpenFGA's
/// validation error even where `x || y` could be decided by short-circuiting, and never an
/// allow.
async fn missing_condition_parameters_are_an_error(db: TestDatabase) {
    let pdp = replica(&db);
    let store = pdp
        .create_store("missing parameters")
        .await
        .expect("store")
        .id;
    let model = write_model(
        &pdp,
        &store,
        "model
  schema 1.1
type user
type document
  relations
    define viewer: [user with either]
condition either(x: bool, y: bool) {
  x || y
}
",
    )
    .await;
    let x_only = match json!({ "x": true }) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let tuple = [tk("document:1", "viewer", "user:anne").with_condition("either", Some(x_only))];
    pdp.write(
        &store,
        &TupleWrite {
            writes: &tuple,
            ..TupleWrite::default()
        },
    )
    .await
    .expect("write");
    let query = |context: Value| Query {
        pdp: &pdp,
        store: &store,
        model: &model,
        context: as_map(&Some(context)),
        request: caller_context(),
    };
    let triple = ("document:1", "viewer", "user:anne");
    let r = query(json!({})).try_check(triple).await;
    assert!(
        matches!(&r, Err(PdpError::Validation(m)) if m.contains("missing context parameters 'y'")),
        "{r:?}"
    );
    assert_eq!(query(json!({ "y": false })).check(triple).await, "Ok(true)");
}

test_on_both_backends!(
    model_changes_never_grant,
    missing_condition_parameters_are_an_error
);
