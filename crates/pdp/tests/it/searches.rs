//! What the AuthZEN API asks of the service, without HTTP, on SQLite and PostgreSQL: batches
//! that stop at the first denial or permit (nothing after it evaluated or audited), searches
//! where unknown types, relations and ids have no answers, the relations a check allows, and
//! request attributes reaching conditions under the names of `trustgate_pdp::attributes`.

use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{Map, Value, json};
use trustgate_audit::RequestContext;
use trustgate_pdp::attributes::{Act, Attributes, Party};
use trustgate_pdp::{
    BatchCheckItem, BatchStop, Caller, CheckRequest, DecisionLog, DecisionRecord, Limits,
    ListObjectsRequest, ListPaging, ListUsersRequest, Pdp, QueryScope, RelationsRequest, TupleKey,
    TupleWrite, UserFilter, Verdict,
};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

const MODEL: &str = "model
  schema 1.1
type user
type record
  relations
    define owner: [user]
    define reader: [user, user:*] or owner
    define writer: [user with writable]
    define deleter: [user with soft_only]
condition writable(subject: map<any>, resource: map<any>) {
  !has(resource.properties.status) || resource.properties.status != 'archived' ||
  (has(subject.properties.role) && subject.properties.role == 'admin')
}
condition soft_only(action: map<any>) {
  has(action.properties.soft) && action.properties.soft == true
}
";

static CONTEXT: LazyLock<RequestContext> =
    LazyLock::new(|| RequestContext::new(None, None, Some("req-search")));

fn caller() -> Caller<'static> {
    Caller {
        principal: "service:pep",
        context: &CONTEXT,
    }
}

/// Decisions recorded in memory: (object, relation, user, verdict).
#[derive(Debug, Default)]
struct Recorded(Mutex<Vec<(String, String, String, Verdict)>>);

impl DecisionLog for Recorded {
    fn record(&self, d: &DecisionRecord<'_>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((
            d.object.to_owned(),
            d.relation.to_owned(),
            d.user.to_owned(),
            d.verdict,
        ));
    }
}

impl Recorded {
    fn take(&self) -> Vec<(String, String, String, Verdict)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

async fn setup(db: &TestDatabase) -> (Pdp, Arc<Recorded>, String) {
    let log = Arc::new(Recorded::default());
    let pdp = Pdp::with_decision_log(
        db.store.clone(),
        Arc::new(trustgate_core::SystemClock),
        Limits::default(),
        log.clone(),
    );
    let store = pdp.create_store("authzen").await.expect("store").id;
    let model = trustgate_authz::dsl::parse(MODEL).expect("model");
    pdp.write_model(&store, model).await.expect("model");
    let writes = [
        TupleKey::new("record:1", "owner", "user:alice"),
        TupleKey::new("record:1", "reader", "user:bob"),
        TupleKey::new("record:2", "reader", "user:*"),
        TupleKey::new("record:1", "writer", "user:alice").with_condition("writable", None),
        TupleKey::new("record:1", "deleter", "user:alice").with_condition("soft_only", None),
    ];
    pdp.write(
        &store,
        &TupleWrite {
            writes: &writes,
            ..TupleWrite::default()
        },
    )
    .await
    .expect("write");
    (pdp, log, store)
}

fn item<'a>(id: &'a str, object: &'a str, relation: &'a str, user: &'a str) -> BatchCheckItem<'a> {
    BatchCheckItem {
        correlation_id: id,
        request: CheckRequest {
            object,
            relation,
            user,
            contextual_tuples: &[],
            context: None,
        },
    }
}

async fn batches_stop_where_asked_and_audit_only_what_ran(db: TestDatabase) {
    let (pdp, log, store) = setup(&db).await;
    let scope = QueryScope::latest(&store);
    let items = [
        item("a", "record:1", "reader", "user:alice"),
        item("b", "record:1", "reader", "user:carol"),
        item("c", "record:1", "nope", "user:alice"),
        item("d", "record:2", "reader", "user:carol"),
    ];
    let results = |outcomes: Vec<trustgate_pdp::BatchCheckOutcome>| -> Vec<(String, Option<bool>)> {
        outcomes
            .into_iter()
            .map(|o| (o.correlation_id, o.result.ok()))
            .collect()
    };
    let all = pdp
        .batch_check_until(&scope, &items, BatchStop::Never, caller())
        .await
        .expect("batch");
    assert_eq!(
        results(all),
        [
            ("a".to_owned(), Some(true)),
            ("b".to_owned(), Some(false)),
            ("c".to_owned(), None),
            ("d".to_owned(), Some(true)),
        ]
    );
    assert_eq!(log.take().len(), 4);

    let until_deny = pdp
        .batch_check_until(&scope, &items, BatchStop::OnDeny, caller())
        .await
        .expect("batch");
    assert_eq!(
        results(until_deny),
        [("a".to_owned(), Some(true)), ("b".to_owned(), Some(false))]
    );
    assert_eq!(log.take().len(), 2, "nothing after the stop is audited");

    // An error counts as a denial.
    let until_deny = pdp
        .batch_check_until(&scope, &items[2..], BatchStop::OnDeny, caller())
        .await
        .expect("batch");
    assert_eq!(results(until_deny), [("c".to_owned(), None)]);
    assert!(matches!(log.take()[..], [(_, _, _, Verdict::Error { .. })]));

    let until_permit = pdp
        .batch_check_until(&scope, &items[1..], BatchStop::OnPermit, caller())
        .await
        .expect("batch");
    assert_eq!(
        results(until_permit),
        [
            ("b".to_owned(), Some(false)),
            ("c".to_owned(), None),
            ("d".to_owned(), Some(true)),
        ]
    );
    assert_eq!(log.take().len(), 3);

    // The whole-batch rules hold under every stop rule.
    let repeated = [items[0], items[0]];
    assert!(
        pdp.batch_check_until(&scope, &repeated, BatchStop::OnPermit, caller())
            .await
            .is_err()
    );
    assert!(
        pdp.batch_check_until(&scope, &[], BatchStop::OnDeny, caller())
            .await
            .is_err()
    );
    assert!(log.take().is_empty());
}

fn paged() -> ListPaging<'static> {
    ListPaging {
        page_size: Some(10),
        continuation_token: None,
    }
}

async fn unknown_types_relations_and_ids_have_no_answers(db: TestDatabase) {
    let (pdp, _log, store) = setup(&db).await;
    let scope = QueryScope::latest(&store);
    let objects = |object_type, relation, user| ListObjectsRequest {
        object_type,
        relation,
        user,
        contextual_tuples: &[],
        context: None,
    };
    let found = pdp
        .search_objects(&scope, &objects("record", "reader", "user:alice"), paged())
        .await
        .expect("search");
    assert_eq!(found.items, ["record:1", "record:2"]);
    assert_eq!(found.continuation_token.as_deref(), Some(""));
    for (t, r, u) in [
        ("folder", "reader", "user:alice"),
        ("record", "approver", "user:alice"),
        ("record", "reader", "robot:alice"),
        ("record", "reader", "user:a:b"),
        ("record", "owner", "user:nobody"),
    ] {
        let found = pdp
            .search_objects(&scope, &objects(t, r, u), paged())
            .await
            .expect("search");
        assert_eq!(found.items, Vec::<String>::new(), "{t} {r} {u}");
    }

    let users = |object, relation, user_type| {
        (
            object,
            relation,
            [UserFilter {
                user_type,
                relation: None,
            }],
        )
    };
    for ((object, relation, filters), expected) in [
        (
            users("record:1", "reader", "user"),
            vec!["user:alice", "user:bob"],
        ),
        (users("record:2", "reader", "user"), vec!["user:*"]),
        (users("record:9", "reader", "user"), vec![]),
        (users("folder:1", "reader", "user"), vec![]),
        (users("record:1", "approver", "user"), vec![]),
        (users("record:1", "reader", "robot"), vec![]),
        (users("record 1", "reader", "user"), vec![]),
    ] {
        let found = pdp
            .search_users(
                &scope,
                &ListUsersRequest {
                    object,
                    relation,
                    user_filters: &filters,
                    contextual_tuples: &[],
                    context: None,
                },
                paged(),
            )
            .await
            .expect("search");
        assert_eq!(found.items, expected, "{object} {relation}");
    }
    // A store that does not exist is still an error, not an empty answer.
    let missing = QueryScope::latest("01JC0000000000000000000000");
    assert!(
        pdp.search_objects(
            &missing,
            &objects("record", "reader", "user:alice"),
            paged()
        )
        .await
        .is_err()
    );
}

fn props(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

async fn relations_and_attributes_reach_conditions(db: TestDatabase) {
    let (pdp, log, store) = setup(&db).await;
    let scope = QueryScope::latest(&store);
    let archived = props(json!({ "status": "archived" }));
    let admin = props(json!({ "role": "admin" }));
    let soft = props(json!({ "soft": true }));
    let context = |subject: Option<&Map<String, Value>>,
                   action: Option<&Map<String, Value>>,
                   resource: Option<&Map<String, Value>>| {
        Attributes {
            subject: Party {
                party_type: "user",
                id: Some("alice"),
                properties: subject,
            },
            action: Act {
                name: None,
                properties: action,
            },
            resource: Party {
                party_type: "record",
                id: Some("1"),
                properties: resource,
            },
            context: None,
        }
        .condition_context()
    };
    let relations = |context: Map<String, Value>, user: &'static str, object: &'static str| {
        let pdp = pdp.clone();
        async move {
            pdp.list_relations(
                &scope,
                &RelationsRequest {
                    object,
                    user,
                    contextual_tuples: &[],
                    context: Some(&context),
                },
                caller(),
            )
            .await
            .expect("relations")
        }
    };
    assert_eq!(
        relations(context(None, None, None), "user:alice", "record:1").await,
        ["owner", "reader", "writer"]
    );
    assert_eq!(log.take().len(), 4, "one audited check per relation");
    assert_eq!(
        relations(
            context(None, soft.as_ref(), archived.as_ref()),
            "user:alice",
            "record:1"
        )
        .await,
        ["deleter", "owner", "reader"]
    );
    assert_eq!(
        relations(
            context(admin.as_ref(), None, archived.as_ref()),
            "user:alice",
            "record:1"
        )
        .await,
        ["owner", "reader", "writer"]
    );
    assert_eq!(
        relations(context(None, None, None), "user:bob", "record:1").await,
        ["reader"]
    );
    log.take();
    for (user, object) in [
        ("user:alice", "folder:1"),
        ("robot:alice", "record:1"),
        ("user:alice", "record 1"),
    ] {
        assert!(
            relations(context(None, None, None), user, object)
                .await
                .is_empty(),
            "{user} {object}"
        );
    }
    assert!(log.take().is_empty(), "no check was asked");
}

test_on_both_backends!(
    batches_stop_where_asked_and_audit_only_what_ran,
    unknown_types_relations_and_ids_have_no_answers,
    relations_and_attributes_reach_conditions,
);
