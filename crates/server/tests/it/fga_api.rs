//! Contract tests of the OpenFGA-compatible API (`/stores/...`) on SQLite and PostgreSQL: every
//! route's happy path and its negatives, with OpenFGA's status codes, error codes and JSON
//! shapes; pagination; consistency tokens across two replicas sharing one database.

use std::collections::BTreeSet;

use http::StatusCode;
use serde_json::{Value, json};
use trustgate_server::Config;
use trustgate_store::testing::TestDatabase;

use crate::common::Api;

const MODEL: &str = "model
  schema 1.1
type user
type group
  relations
    define member: [user, group#member]
type folder
  relations
    define viewer: [user]
type document
  relations
    define parent: [folder]
    define owner: [user]
    define editor: [user, group#member] or owner
    define viewer: [user, user:*, group#member] or editor or viewer from parent
    define blocked: [user]
    define can_view: viewer but not blocked
";

fn tk(object: &str, relation: &str, user: &str) -> Value {
    json!({"object": object, "relation": relation, "user": user})
}

async fn write(api: &Api, store: &str, writes: Vec<Value>) -> crate::common::Resp {
    api.post(
        &format!("/stores/{store}/write"),
        json!({"writes": {"tuple_keys": writes}}),
    )
    .await
}

async fn read_all(api: &Api, store: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let r = api
            .post(
                &format!("/stores/{store}/read"),
                json!({"page_size": 100, "continuation_token": token}),
            )
            .await;
        let body = r.expect(StatusCode::OK);
        all.extend(body["tuples"].as_array().cloned().unwrap_or_default());
        token = body["continuation_token"].as_str().unwrap_or("").to_owned();
        if token.is_empty() {
            return all;
        }
    }
}

async fn check(api: &Api, store: &str, object: &str, relation: &str, user: &str) -> Value {
    let r = api
        .post(
            &format!("/stores/{store}/check"),
            json!({"tuple_key": tk(object, relation, user)}),
        )
        .await;
    r.expect(StatusCode::OK).clone()
}

/// A store with [`MODEL`] written; returns (store id, model id).
async fn setup(api: &Api) -> (String, String) {
    let store = api.create_store("contract").await;
    let model = api.write_dsl_model(&store, MODEL).await;
    (store, model)
}

const UNKNOWN_STORE: &str = "01HZZZZZZZZZZZZZZZZZZZZZZZ";

async fn every_route_needs_the_admin_token(db: TestDatabase) {
    let api = Api::new(db).await;
    let (store, model) = setup(&api).await;
    let routes = [
        ("POST", "/stores".to_owned()),
        ("GET", "/stores".to_owned()),
        ("GET", format!("/stores/{store}")),
        ("DELETE", format!("/stores/{store}")),
        ("POST", format!("/stores/{store}/authorization-models")),
        ("GET", format!("/stores/{store}/authorization-models")),
        (
            "GET",
            format!("/stores/{store}/authorization-models/{model}"),
        ),
        ("POST", format!("/stores/{store}/write")),
        ("POST", format!("/stores/{store}/import")),
        ("POST", format!("/stores/{store}/read")),
        ("GET", format!("/stores/{store}/changes")),
        ("POST", format!("/stores/{store}/check")),
        ("POST", format!("/stores/{store}/batch-check")),
        ("POST", format!("/stores/{store}/expand")),
        ("POST", format!("/stores/{store}/list-objects")),
        ("POST", format!("/stores/{store}/list-users")),
    ];
    for (method, path) in &routes {
        let r = api.raw(method, path, b"{}".to_vec(), &[], false).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(
            r.headers.contains_key("www-authenticate"),
            "{method} {path}"
        );
        let wrong = api
            .raw(
                method,
                path,
                b"{}".to_vec(),
                &[("authorization", "Bearer tg_not_a_real_token")],
                false,
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // Nothing was deleted by the unauthenticated DELETE.
    api.get(&format!("/stores/{store}"))
        .await
        .expect(StatusCode::OK);
}

async fn stores_lifecycle_and_pagination(db: TestDatabase) {
    let api = Api::new(db).await;
    let r = api.post("/stores", json!({"name": "first store"})).await;
    let body = r.expect(StatusCode::CREATED).clone();
    let id = body["id"].as_str().expect("id").to_owned();
    assert!(trustgate_core::id::is_ulid(&id));
    assert_eq!(body["name"], "first store");
    assert!(
        body["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(body["updated_at"].is_string());

    let got = api.get(&format!("/stores/{id}")).await;
    assert_eq!(got.expect(StatusCode::OK)["id"], json!(id));

    let mut created: BTreeSet<String> = BTreeSet::from([id.clone()]);
    for i in 0..6 {
        created.insert(api.create_store(&format!("store {i}")).await);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let r = api
            .get(&format!("/stores?page_size=3&continuation_token={token}"))
            .await;
        let body = r.expect(StatusCode::OK);
        let page = body["stores"].as_array().expect("stores");
        assert!(page.len() <= 3);
        seen.extend(
            page.iter()
                .map(|s| s["id"].as_str().unwrap_or("").to_owned()),
        );
        token = body["continuation_token"]
            .as_str()
            .expect("token")
            .to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), created.len(), "each store once: {seen:?}");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), created);

    // `?name=` lists only the stores of exactly that name.
    let twin = api.create_store("store 3").await;
    let r = api.get("/stores?name=store%203").await;
    let named: BTreeSet<String> = r.expect(StatusCode::OK)["stores"]
        .as_array()
        .expect("stores")
        .iter()
        .map(|s| {
            assert_eq!(s["name"], "store 3");
            s["id"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    assert_eq!(named.len(), 2, "{named:?}");
    assert!(named.contains(&twin));
    let r = api.get("/stores?name=store").await;
    assert_eq!(
        r.expect(StatusCode::OK)["stores"],
        json!([]),
        "exact names only"
    );
    let r = api
        .call("DELETE", &format!("/stores/{twin}"), &Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    api.get("/stores?continuation_token=bogus")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_continuation_token");
    api.get("/stores?page_size=0")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.get("/stores?page_size=abc")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.post("/stores", json!({"name": "x"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.post("/stores", json!({}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");

    let r = api
        .call("DELETE", &format!("/stores/{id}"), &Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    api.get(&format!("/stores/{id}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "store_id_not_found");
    api.call("DELETE", &format!("/stores/{id}"), &Value::Null)
        .await
        .expect_error(StatusCode::NOT_FOUND, "store_id_not_found");
    api.get(&format!("/stores/{UNKNOWN_STORE}"))
        .await
        .expect_error(StatusCode::NOT_FOUND, "store_id_not_found");
    api.get("/stores/not-a-ulid")
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    // Every store route answers 404 for an unknown store.
    for (method, path, body) in [
        (
            "POST",
            "authorization-models",
            json!({"schema_version": "1.1", "type_definitions": [{"type": "user"}]}),
        ),
        ("GET", "authorization-models", Value::Null),
        (
            "POST",
            "write",
            json!({"writes": {"tuple_keys": [tk("document:1", "viewer", "user:a")]}}),
        ),
        ("POST", "read", json!({})),
        ("GET", "changes", Value::Null),
        (
            "POST",
            "check",
            json!({"tuple_key": tk("document:1", "viewer", "user:a")}),
        ),
        (
            "POST",
            "batch-check",
            json!({"checks": [{"tuple_key": tk("document:1", "viewer", "user:a"), "correlation_id": "a"}]}),
        ),
        (
            "POST",
            "expand",
            json!({"tuple_key": {"object": "document:1", "relation": "viewer"}}),
        ),
        (
            "POST",
            "list-objects",
            json!({"type": "document", "relation": "viewer", "user": "user:a"}),
        ),
        (
            "POST",
            "list-users",
            json!({"object": {"type": "document", "id": "1"}, "relation": "viewer", "user_filters": [{"type": "user"}]}),
        ),
    ] {
        for store in [UNKNOWN_STORE, id.as_str()] {
            api.call(method, &format!("/stores/{store}/{path}"), &body)
                .await
                .expect_error(StatusCode::NOT_FOUND, "store_id_not_found");
        }
    }
}

async fn models_write_read_list_and_refuse(db: TestDatabase) {
    let api = Api::new(db).await;
    let store = api.create_store("models").await;
    let base = format!("/stores/{store}/authorization-models");

    // No model yet: queries say so.
    api.post(
        &format!("/stores/{store}/check"),
        json!({"tuple_key": tk("document:1", "viewer", "user:a")}),
    )
    .await
    .expect_error(
        StatusCode::BAD_REQUEST,
        "latest_authorization_model_not_found",
    );

    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(api.write_dsl_model(&store, MODEL).await);
    }
    let sorted = {
        let mut s = ids.clone();
        s.sort();
        s
    };
    assert_eq!(ids, sorted, "model ids increase");

    let r = api.get(&format!("{base}/{}", ids[0])).await;
    let model = r.expect(StatusCode::OK)["authorization_model"].clone();
    assert_eq!(model["id"], json!(ids[0]));
    assert_eq!(model["schema_version"], "1.1");
    let expected =
        serde_json::to_value(trustgate_authz::dsl::parse(MODEL).expect("model")).expect("json");
    assert_eq!(model["type_definitions"], expected["type_definitions"]);
    assert!(model["conditions"].is_object());

    // Newest first, each once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = api
            .get(&format!("{base}?page_size=2&continuation_token={token}"))
            .await;
        let body = r.expect(StatusCode::OK);
        for m in body["authorization_models"].as_array().expect("models") {
            seen.push(m["id"].as_str().unwrap_or("").to_owned());
        }
        token = body["continuation_token"]
            .as_str()
            .expect("token")
            .to_owned();
        if token.is_empty() {
            break;
        }
    }
    let newest_first: Vec<String> = sorted.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    // Refusals.
    api.raw("POST", &base, b"{not json".to_vec(), &[], true)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.post(
        &base,
        json!({"schema_version": "1.1", "type_definitions": "nope"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    let undefined = json!({
        "schema_version": "1.1",
        "type_definitions": [
            {"type": "user"},
            {"type": "document", "relations": {"viewer": {"computedUserset": {"relation": "editor"}}}}
        ]
    });
    let r = api.post(&base, undefined.clone()).await;
    r.expect_error(StatusCode::BAD_REQUEST, "invalid_authorization_model");
    let model: trustgate_authz::model::AuthorizationModel =
        serde_json::from_value(undefined).expect("model");
    let upstream = trustgate_authz::validate::validate_json_model(&model).expect_err("invalid");
    assert_eq!(r.message(), upstream.errors[0].message);
    api.post(
        &base,
        json!({"schema_version": "1.0", "type_definitions": [{"type": "user"}]}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_authorization_model");
    let many: Vec<Value> = (0..101).map(|i| json!({"type": format!("t{i}")})).collect();
    api.post(
        &base,
        json!({"schema_version": "1.1", "type_definitions": many}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "exceeded_entity_limit");

    // Unknown and malformed model ids.
    api.get(&format!("{base}/01HZZZZZZZZZZZZZZZZZZZZZZZ"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "authorization_model_not_found");
    api.get(&format!("{base}/nope"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.post(
        &format!("/stores/{store}/check"),
        json!({"tuple_key": tk("document:1", "viewer", "user:a"),
               "authorization_model_id": "01HZZZZZZZZZZZZZZZZZZZZZZZ"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "authorization_model_not_found");
    api.get(&format!("{base}?continuation_token=garbage"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_continuation_token");
}

async fn writes_are_validated_and_all_or_nothing(db: TestDatabase) {
    let api = Api::new(db).await;
    let (store, _) = setup(&api).await;
    let path = format!("/stores/{store}/write");

    // A tuple violating the model spoils the whole request.
    let r = write(
        &api,
        &store,
        vec![
            tk("document:1", "viewer", "user:anne"),
            tk("document:1", "owner", "group:eng#member"),
        ],
    )
    .await;
    r.expect_error(StatusCode::BAD_REQUEST, "invalid_tuple");
    assert!(r.message().contains("Invalid tuple"), "{}", r.message());
    write(&api, &store, vec![tk("nodoc:1", "viewer", "user:anne")])
        .await
        .expect_error(StatusCode::BAD_REQUEST, "type_not_found");
    write(&api, &store, vec![tk("document:1", "nope", "user:anne")])
        .await
        .expect_error(StatusCode::BAD_REQUEST, "relation_not_found");
    write(&api, &store, vec![tk("document:1", "viewer", "anne")])
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_tuple");
    assert!(read_all(&api, &store).await.is_empty(), "nothing written");

    // Over the limit: nothing written.
    let many: Vec<Value> = (0..101)
        .map(|i| tk(&format!("document:{i}"), "viewer", "user:anne"))
        .collect();
    let r = write(&api, &store, many).await;
    r.expect_error(StatusCode::BAD_REQUEST, "exceeded_entity_limit");
    assert_eq!(
        r.message(),
        "The number of write operations exceeds the allowed limit of 100"
    );
    let mixed = json!({
        "writes": {"tuple_keys": (0..60).map(|i| tk(&format!("document:{i}"), "viewer", "user:anne")).collect::<Vec<_>>()},
        "deletes": {"tuple_keys": (0..41).map(|i| tk(&format!("document:{i}"), "owner", "user:anne")).collect::<Vec<_>>()},
    });
    api.post(&path, mixed)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "exceeded_entity_limit");
    assert!(read_all(&api, &store).await.is_empty(), "nothing written");

    // Exactly 100 is fine.
    let hundred: Vec<Value> = (0..100)
        .map(|i| tk(&format!("document:{i}"), "viewer", "user:anne"))
        .collect();
    let r = write(&api, &store, hundred).await;
    r.expect(StatusCode::OK);
    assert!(r.headers.contains_key("x-consistency-token"));
    assert_eq!(read_all(&api, &store).await.len(), 100);

    // Duplicates.
    let r = write(&api, &store, vec![tk("document:1", "viewer", "user:anne")]).await;
    r.expect_error(StatusCode::BAD_REQUEST, "write_failed_due_to_invalid_input");
    assert!(
        r.message()
            .starts_with("cannot write a tuple which already exists"),
        "{}",
        r.message()
    );
    write(
        &api,
        &store,
        vec![
            tk("document:200", "viewer", "user:bob"),
            tk("document:200", "viewer", "user:bob"),
        ],
    )
    .await
    .expect_error(
        StatusCode::BAD_REQUEST,
        "cannot_allow_duplicate_tuples_in_one_request",
    );
    let r = api
        .post(
            &path,
            json!({"writes": {"tuple_keys": [tk("document:1", "viewer", "user:anne"), tk("document:300", "viewer", "user:bob")], "on_duplicate": "ignore"}}),
        )
        .await;
    r.expect(StatusCode::OK);
    assert_eq!(read_all(&api, &store).await.len(), 101, "the new one only");
    api.post(
        &path,
        json!({"writes": {"tuple_keys": [tk("document:301", "viewer", "user:bob")], "on_duplicate": "sometimes"}}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");

    // Deletes.
    let r = api
        .post(
            &path,
            json!({"deletes": {"tuple_keys": [tk("document:999", "viewer", "user:anne")]}}),
        )
        .await;
    r.expect_error(StatusCode::BAD_REQUEST, "write_failed_due_to_invalid_input");
    assert!(
        r.message()
            .starts_with("cannot delete a tuple which does not exist"),
        "{}",
        r.message()
    );
    api.post(
        &path,
        json!({"deletes": {"tuple_keys": [tk("document:999", "viewer", "user:anne")], "on_missing": "ignore"}}),
    )
    .await
    .expect(StatusCode::OK);
    api.post(
        &path,
        json!({"deletes": {"tuple_keys": [tk("document:1", "viewer", "user:anne")]}}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(read_all(&api, &store).await.len(), 100);
    api.post(
        &path,
        json!({"deletes": {"tuple_keys": [tk("document:1", "viewer", "not a user")]}}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_tuple");

    // Empty and malformed requests.
    api.post(&path, json!({}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_write_input");
    api.raw("POST", &path, b"[1,2".to_vec(), &[], true)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.post(
        &path,
        json!({"writes": {"tuple_keys": [{"object": "document:1"}]}}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.post(
        &path,
        json!({"writes": {"tuple_keys": [tk("document:1", "owner", "user:zed")]},
               "authorization_model_id": "01HZZZZZZZZZZZZZZZZZZZZZZZ"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "authorization_model_not_found");

    // Conditions round-trip.
    let conditional = "model
  schema 1.1
type user
type document
  relations
    define viewer: [user with in_hours]
condition in_hours(hour: int) {
  hour >= 9 && hour < 17
}
";
    let model = api.write_dsl_model(&store, conditional).await;
    let r = api
        .post(
            &path,
            json!({"writes": {"tuple_keys": [{"object": "document:c", "relation": "viewer", "user": "user:carl",
                    "condition": {"name": "in_hours", "context": {}}}]},
                   "authorization_model_id": model}),
        )
        .await;
    r.expect(StatusCode::OK);
    for (hour, allowed) in [(10, true), (20, false)] {
        let r = api
            .post(
                &format!("/stores/{store}/check"),
                json!({"tuple_key": tk("document:c", "viewer", "user:carl"), "context": {"hour": hour}}),
            )
            .await;
        assert_eq!(
            r.expect(StatusCode::OK)["allowed"],
            json!(allowed),
            "{hour}"
        );
    }
    api.post(
        &format!("/stores/{store}/check"),
        json!({"tuple_key": tk("document:c", "viewer", "user:carl")}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    let r = api
        .post(
            &format!("/stores/{store}/read"),
            json!({"tuple_key": {"object": "document:c"}}),
        )
        .await;
    let tuples = r.expect(StatusCode::OK)["tuples"].clone();
    assert_eq!(tuples[0]["key"]["condition"]["name"], "in_hours");
}

async fn read_and_changes_paginate(db: TestDatabase) {
    let api = Api::new(db).await;
    let (store, _) = setup(&api).await;
    let mut all = BTreeSet::new();
    for batch in 0..3 {
        let tuples: Vec<Value> = (0..9)
            .map(|i| tk(&format!("document:{batch}-{i}"), "viewer", "user:anne"))
            .collect();
        for t in &tuples {
            all.insert(t["object"].as_str().unwrap_or("").to_owned());
        }
        write(&api, &store, tuples).await.expect(StatusCode::OK);
    }
    write(&api, &store, vec![tk("folder:f", "viewer", "user:bob")])
        .await
        .expect(StatusCode::OK);
    api.post(
        &format!("/stores/{store}/write"),
        json!({"deletes": {"tuple_keys": [tk("document:0-0", "viewer", "user:anne")]}}),
    )
    .await
    .expect(StatusCode::OK);
    all.remove("document:0-0");
    all.insert("folder:f".to_owned());

    // Read walks everything once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = api
            .post(
                &format!("/stores/{store}/read"),
                json!({"page_size": 4, "continuation_token": token}),
            )
            .await;
        let body = r.expect(StatusCode::OK);
        for t in body["tuples"].as_array().expect("tuples") {
            assert!(t["timestamp"].as_str().is_some_and(|s| s.ends_with('Z')));
            seen.push(t["key"]["object"].as_str().unwrap_or("").to_owned());
        }
        token = body["continuation_token"]
            .as_str()
            .expect("token")
            .to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), all.len());
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);

    // Filters.
    let r = api
        .post(
            &format!("/stores/{store}/read"),
            json!({"tuple_key": {"object": "document:1-3"}}),
        )
        .await;
    let tuples = r.expect(StatusCode::OK)["tuples"].clone();
    assert_eq!(tuples.as_array().map(Vec::len), Some(1));
    assert_eq!(tuples[0]["key"], tk("document:1-3", "viewer", "user:anne"));
    let r = api
        .post(
            &format!("/stores/{store}/read"),
            json!({"tuple_key": {"object": "folder:", "user": "user:bob"}}),
        )
        .await;
    assert_eq!(
        r.expect(StatusCode::OK)["tuples"].as_array().map(Vec::len),
        Some(1)
    );
    api.post(
        &format!("/stores/{store}/read"),
        json!({"tuple_key": {"object": "document:"}}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.post(
        &format!("/stores/{store}/read"),
        json!({"tuple_key": {"user": "user:anne"}}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.post(
        &format!("/stores/{store}/read"),
        json!({"continuation_token": "garbage"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_continuation_token");
    api.post(&format!("/stores/{store}/read"), json!({"page_size": 101}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");

    // Changes walk everything once, in order, with the operations.
    let mut changes = Vec::new();
    let mut token = String::new();
    for _ in 0..20 {
        let r = api
            .get(&format!(
                "/stores/{store}/changes?page_size=5&continuation_token={token}"
            ))
            .await;
        let body = r.expect(StatusCode::OK).clone();
        let page = body["changes"].as_array().cloned().unwrap_or_default();
        token = body["continuation_token"]
            .as_str()
            .expect("token")
            .to_owned();
        assert!(!token.is_empty(), "the changes token is always set");
        if page.is_empty() {
            break;
        }
        changes.extend(page);
    }
    assert_eq!(changes.len(), 29);
    let writes = changes
        .iter()
        .filter(|c| c["operation"] == "TUPLE_OPERATION_WRITE")
        .count();
    assert_eq!(writes, 28);
    assert_eq!(changes[28]["operation"], "TUPLE_OPERATION_DELETE");
    assert_eq!(
        changes[28]["tuple_key"],
        tk("document:0-0", "viewer", "user:anne")
    );
    assert!(changes[0]["timestamp"].is_string());
    // Polling at the end returns only later changes.
    write(&api, &store, vec![tk("folder:g", "viewer", "user:bob")])
        .await
        .expect(StatusCode::OK);
    let r = api
        .get(&format!(
            "/stores/{store}/changes?continuation_token={token}"
        ))
        .await;
    let later = r.expect(StatusCode::OK)["changes"].clone();
    assert_eq!(later.as_array().map(Vec::len), Some(1));
    assert_eq!(later[0]["tuple_key"]["object"], "folder:g");

    let r = api
        .get(&format!("/stores/{store}/changes?type=folder"))
        .await;
    assert_eq!(
        r.expect(StatusCode::OK)["changes"].as_array().map(Vec::len),
        Some(2)
    );
    api.get(&format!("/stores/{store}/changes?continuation_token=bad"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_continuation_token");
    api.get(&format!("/stores/{store}/changes?start_time=yesterday"))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    let r = api
        .get(&format!(
            "/stores/{store}/changes?start_time=2999-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(
        r.expect(StatusCode::OK)["changes"].as_array().map(Vec::len),
        Some(0)
    );
}

async fn check_batch_check_and_expand(db: TestDatabase) {
    let api = Api::new(db).await;
    let (store, model) = setup(&api).await;
    write(
        &api,
        &store,
        vec![
            tk("document:1", "owner", "user:anne"),
            tk("document:1", "viewer", "group:eng#member"),
            tk("group:eng", "member", "user:bob"),
            tk("document:1", "parent", "folder:f"),
            tk("folder:f", "viewer", "user:carl"),
            tk("document:1", "blocked", "user:carl"),
            tk("document:pub", "viewer", "user:*"),
        ],
    )
    .await
    .expect(StatusCode::OK);

    let body = check(&api, &store, "document:1", "viewer", "user:anne").await;
    assert_eq!(body, json!({"allowed": true, "resolution": ""}));
    for (object, relation, user, allowed) in [
        ("document:1", "viewer", "user:bob", true),
        ("document:1", "viewer", "user:carl", true),
        ("document:1", "can_view", "user:carl", false),
        ("document:1", "editor", "user:bob", false),
        ("document:pub", "viewer", "user:zed", true),
        ("document:2", "viewer", "user:anne", false),
    ] {
        let body = check(&api, &store, object, relation, user).await;
        assert_eq!(
            body["allowed"],
            json!(allowed),
            "{object}#{relation}@{user}"
        );
    }
    let path = format!("/stores/{store}/check");
    // Explicit model and consistency preference.
    let r = api
        .post(
            &path,
            json!({"tuple_key": tk("document:1", "editor", "user:anne"),
                   "authorization_model_id": model, "consistency": "HIGHER_CONSISTENCY"}),
        )
        .await;
    assert_eq!(r.expect(StatusCode::OK)["allowed"], json!(true));
    api.post(
        &path,
        json!({"tuple_key": tk("document:1", "editor", "user:anne"), "consistency": "EVENTUALLY"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    // Contextual tuples.
    let r = api
        .post(
            &path,
            json!({"tuple_key": tk("document:9", "viewer", "user:dan"),
                   "contextual_tuples": {"tuple_keys": [tk("document:9", "owner", "user:dan")]}}),
        )
        .await;
    assert_eq!(r.expect(StatusCode::OK)["allowed"], json!(true));
    api.post(
        &path,
        json!({"tuple_key": tk("document:9", "viewer", "user:dan"),
               "contextual_tuples": {"tuple_keys": [tk("document:9", "owner", "group:eng#member")]}}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_tuple");
    let too_many: Vec<Value> = (0..101)
        .map(|i| tk(&format!("document:{i}"), "owner", "user:dan"))
        .collect();
    api.post(
        &path,
        json!({"tuple_key": tk("document:9", "viewer", "user:dan"),
               "contextual_tuples": {"tuple_keys": too_many}}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    // Malformed checks.
    api.post(&path, json!({}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.post(
        &path,
        json!({"tuple_key": tk("nodoc:1", "viewer", "user:anne")}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.post(
        &path,
        json!({"tuple_key": tk("document:1", "viewer", "anne")}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.raw("POST", &path, b"{\"tuple_key\":".to_vec(), &[], true)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");

    // Batch check: per-item results and errors.
    let batch = format!("/stores/{store}/batch-check");
    let r = api
        .post(
            &batch,
            json!({"checks": [
                {"tuple_key": tk("document:1", "viewer", "user:bob"), "correlation_id": "bob"},
                {"tuple_key": tk("document:1", "editor", "user:bob"), "correlation_id": "bob-edit"},
                {"tuple_key": tk("nodoc:1", "viewer", "user:bob"), "correlation_id": "bad"},
                {"tuple_key": tk("document:7", "viewer", "user:eve"), "correlation_id": "ctx",
                 "contextual_tuples": {"tuple_keys": [tk("document:7", "viewer", "user:eve")]}},
            ]}),
        )
        .await;
    let result = r.expect(StatusCode::OK)["result"].clone();
    assert_eq!(result["bob"], json!({"allowed": true}));
    assert_eq!(result["bob-edit"], json!({"allowed": false}));
    assert_eq!(result["ctx"], json!({"allowed": true}));
    assert_eq!(result["bad"]["error"]["input_error"], "validation_error");
    assert!(result["bad"]["error"]["message"].is_string());
    assert!(result["bad"].get("allowed").is_none());
    api.post(
        &batch,
        json!({"checks": [
            {"tuple_key": tk("document:1", "viewer", "user:bob"), "correlation_id": "x"},
            {"tuple_key": tk("document:1", "viewer", "user:anne"), "correlation_id": "x"},
        ]}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.post(&batch, json!({"checks": []}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"tuple_key": tk("document:1", "viewer", "user:bob"), "correlation_id": format!("c{i}")}))
        .collect();
    api.post(&batch, json!({ "checks": many }))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");

    // Expand: OpenFGA's tree shape.
    let r = api
        .post(
            &format!("/stores/{store}/expand"),
            json!({"tuple_key": {"object": "document:1", "relation": "editor"}}),
        )
        .await;
    let tree = r.expect(StatusCode::OK).clone();
    assert_eq!(tree["tree"]["root"]["name"], "document:1#editor");
    let nodes = tree["tree"]["root"]["union"]["nodes"]
        .as_array()
        .expect("union nodes");
    assert_eq!(nodes[0]["leaf"]["users"]["users"], json!([]));
    assert_eq!(nodes[1]["leaf"]["computed"]["userset"], "document:1#owner");
    let r = api
        .post(
            &format!("/stores/{store}/expand"),
            json!({"tuple_key": {"object": "document:1", "relation": "owner"}}),
        )
        .await;
    assert_eq!(
        r.expect(StatusCode::OK)["tree"]["root"]["leaf"]["users"]["users"],
        json!(["user:anne"])
    );
    api.post(
        &format!("/stores/{store}/expand"),
        json!({"tuple_key": {"object": "document:1", "relation": "nope"}}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "relation_not_found");
    api.post(&format!("/stores/{store}/expand"), json!({}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
}

async fn list_objects_and_users_never_truncate(db: TestDatabase) {
    let mut config = Config::default();
    config.authz.list_objects_max_results = 4;
    config.authz.list_users_max_results = 4;
    let api = Api::with_config(db, config).await;
    let (store, _) = setup(&api).await;
    let mut tuples: Vec<Value> = (0..7)
        .map(|i| tk(&format!("document:{i}"), "viewer", "user:anne"))
        .collect();
    tuples.push(tk("document:x", "viewer", "user:*"));
    tuples.push(tk("document:x", "viewer", "group:eng#member"));
    tuples.push(tk("document:x", "viewer", "user:bob"));
    write(&api, &store, tuples).await.expect(StatusCode::OK);

    let lo = format!("/stores/{store}/list-objects");
    let r = api
        .post(
            &lo,
            json!({"type": "document", "relation": "viewer", "user": "user:bob"}),
        )
        .await;
    assert_eq!(
        r.expect(StatusCode::OK),
        &json!({"objects": ["document:x"]})
    );
    // More than the maximum: a clear error, never a silent cut.
    let r = api
        .post(
            &lo,
            json!({"type": "document", "relation": "viewer", "user": "user:anne"}),
        )
        .await;
    r.expect_error(StatusCode::BAD_REQUEST, "exceeded_entity_limit");
    assert!(r.message().contains("page_size"), "{}", r.message());
    // Paging walks everything once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = api
            .post(
                &lo,
                json!({"type": "document", "relation": "viewer", "user": "user:anne",
                       "page_size": 3, "continuation_token": token}),
            )
            .await;
        let body = r.expect(StatusCode::OK);
        seen.extend(
            body["objects"]
                .as_array()
                .expect("objects")
                .iter()
                .map(|o| o.as_str().unwrap_or("").to_owned()),
        );
        token = body["continuation_token"]
            .as_str()
            .expect("token")
            .to_owned();
        if token.is_empty() {
            break;
        }
    }
    let mut expected: Vec<String> = (0..7).map(|i| format!("document:{i}")).collect();
    expected.push("document:x".into());
    assert_eq!(seen, expected);
    api.post(
        &lo,
        json!({"type": "document", "relation": "viewer", "user": "user:anne", "continuation_token": "zzz"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_continuation_token");
    api.post(
        &lo,
        json!({"type": "nodoc", "relation": "viewer", "user": "user:anne"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "type_not_found");
    api.post(
        &lo,
        json!({"type": "document", "relation": "nope", "user": "user:anne"}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "relation_not_found");
    // Contextual tuples.
    let r = api
        .post(
            &lo,
            json!({"type": "document", "relation": "owner", "user": "user:zed",
                   "contextual_tuples": {"tuple_keys": [tk("document:z", "owner", "user:zed")]}}),
        )
        .await;
    assert_eq!(r.expect(StatusCode::OK)["objects"], json!(["document:z"]));

    let lu = format!("/stores/{store}/list-users");
    let r = api
        .post(
            &lu,
            json!({"object": {"type": "document", "id": "x"}, "relation": "viewer",
                   "user_filters": [{"type": "user"}]}),
        )
        .await;
    let users: BTreeSet<String> = r.expect(StatusCode::OK)["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u.to_string())
        .collect();
    assert_eq!(
        users,
        BTreeSet::from([
            json!({"object": {"type": "user", "id": "bob"}}).to_string(),
            json!({"wildcard": {"type": "user"}}).to_string(),
        ])
    );
    let r = api
        .post(
            &lu,
            json!({"object": {"type": "document", "id": "x"}, "relation": "viewer",
                   "user_filters": [{"type": "group", "relation": "member"}]}),
        )
        .await;
    assert_eq!(
        r.expect(StatusCode::OK)["users"],
        json!([{"userset": {"type": "group", "id": "eng", "relation": "member"}}])
    );
    // Over the maximum: error; paging works.
    let five_viewers: Vec<Value> = (0..5)
        .map(|i| tk("document:many", "viewer", &format!("user:u{i}")))
        .collect();
    write(&api, &store, five_viewers)
        .await
        .expect(StatusCode::OK);
    let req = json!({"object": {"type": "document", "id": "many"}, "relation": "viewer",
                     "user_filters": [{"type": "user"}]});
    api.post(&lu, req.clone())
        .await
        .expect_error(StatusCode::BAD_REQUEST, "exceeded_entity_limit");
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let mut body = req.clone();
        body["page_size"] = json!(2);
        body["continuation_token"] = json!(token);
        let r = api.post(&lu, body).await;
        let body = r.expect(StatusCode::OK);
        seen.extend(
            body["users"]
                .as_array()
                .expect("users")
                .iter()
                .map(|u| u["object"]["id"].as_str().unwrap_or("").to_owned()),
        );
        token = body["continuation_token"]
            .as_str()
            .expect("token")
            .to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["u0", "u1", "u2", "u3", "u4"]);
    api.post(
        &lu,
        json!({"relation": "viewer", "user_filters": [{"type": "user"}]}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    api.post(
        &lu,
        json!({"object": {"type": "document", "id": "x"}, "relation": "viewer", "user_filters": []}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    // Exactly one filter, as OpenFGA's API requires.
    let r = api
        .post(
            &lu,
            json!({"object": {"type": "document", "id": "x"}, "relation": "viewer",
                   "user_filters": [{"type": "user"}, {"type": "group", "relation": "member"}]}),
        )
        .await;
    r.expect_error(StatusCode::BAD_REQUEST, "validation_error");
    assert!(r.message().contains("exactly 1 item"), "{}", r.message());
    api.post(
        &lu,
        json!({"object": {"type": "document", "id": "x"}, "relation": "viewer",
               "user_filters": [{"type": "robot"}]}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "type_not_found");
}

async fn bodies_over_the_limit_are_413(db: TestDatabase) {
    let mut config = Config::default();
    config.http.body_limit_bytes = 4096;
    let api = Api::with_config(db, config).await;
    let (store, _) = setup(&api).await;
    let big =
        json!({"tuple_key": tk("document:1", "viewer", "user:anne"), "padding": "x".repeat(8000)});
    let r = api.post(&format!("/stores/{store}/check"), big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert_eq!(r.code(), "payload_too_large");
    // Just under the limit is fine.
    let ok =
        json!({"tuple_key": tk("document:1", "viewer", "user:anne"), "padding": "x".repeat(3000)});
    api.post(&format!("/stores/{store}/check"), ok)
        .await
        .expect(StatusCode::OK);
}

async fn consistency_tokens_give_read_your_writes_across_replicas(db: TestDatabase) {
    let a = Api::new(db).await;
    // A second replica on the same database (its own runtime and tuple indexes).
    let b_state = trustgate_server::AppState::start(
        a.db.store.clone(),
        std::sync::Arc::new(trustgate_core::SystemClock),
        Config::default(),
        a.secrets_key.clone(),
    )
    .await
    .expect("app state");
    let b_app = trustgate_server::router(b_state);
    let b = |method: &'static str, path: String, body: Value, headers: Vec<(String, String)>| {
        let app = b_app.clone();
        let token = a.token.clone();
        async move {
            use tower::ServiceExt;
            let mut req = http::Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", format!("Bearer {token}"));
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let req = req
                .body(axum::body::Body::from(
                    serde_json::to_vec(&body).expect("json"),
                ))
                .expect("request");
            let resp = app.oneshot(req).await.expect("infallible");
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .expect("body");
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let (store, _) = setup(&a).await;
    let check_body = json!({"tuple_key": tk("document:1", "viewer", "user:anne")});
    // Replica B loads its index before the write.
    let (status, body) = b(
        "POST",
        format!("/stores/{store}/check"),
        check_body.clone(),
        vec![],
    )
    .await;
    assert_eq!(
        (status, body["allowed"].clone()),
        (StatusCode::OK, json!(false))
    );

    let r = write(&a, &store, vec![tk("document:1", "viewer", "user:anne")]).await;
    r.expect(StatusCode::OK);
    let token = r.headers["x-consistency-token"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(r.body["consistency_token"], json!(token));
    // The writing replica reads its own write at once.
    assert_eq!(
        check(&a, &store, "document:1", "viewer", "user:anne").await["allowed"],
        json!(true)
    );
    // The other replica, given the token, catches up before answering.
    let (status, body) = b(
        "POST",
        format!("/stores/{store}/check"),
        check_body.clone(),
        vec![("x-consistency-token".into(), token.clone())],
    )
    .await;
    assert_eq!(
        (status, body["allowed"].clone()),
        (StatusCode::OK, json!(true))
    );

    // HIGHER_CONSISTENCY catches up too.
    let r = write(&a, &store, vec![tk("document:2", "viewer", "user:anne")]).await;
    r.expect(StatusCode::OK);
    let (status, body) = b(
        "POST",
        format!("/stores/{store}/list-objects"),
        json!({"type": "document", "relation": "viewer", "user": "user:anne",
               "consistency": "HIGHER_CONSISTENCY"}),
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["objects"], json!(["document:1", "document:2"]));

    // Without either, the background refresher delivers the write within a few intervals.
    write(&a, &store, vec![tk("document:3", "viewer", "user:anne")])
        .await
        .expect(StatusCode::OK);
    let mut seen = false;
    for _ in 0..50 {
        let (_, body) = b(
            "POST",
            format!("/stores/{store}/check"),
            json!({"tuple_key": tk("document:3", "viewer", "user:anne")}),
            vec![],
        )
        .await;
        if body["allowed"] == json!(true) {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen, "the refresher applies other replicas' writes");

    // Tokens are bound to their store and checked.
    let other = a.create_store("other").await;
    a.write_dsl_model(&other, MODEL).await;
    a.call_with(
        "POST",
        &format!("/stores/{other}/check"),
        &check_body,
        &[("x-consistency-token", &token)],
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    a.call_with(
        "POST",
        &format!("/stores/{store}/check"),
        &check_body,
        &[("x-consistency-token", "garbage")],
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    let ahead = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("tg1:{store}:999999"))
    };
    a.call_with(
        "POST",
        &format!("/stores/{store}/check"),
        &check_body,
        &[("x-consistency-token", &ahead)],
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");

    // Deleting the store on one replica: the other stops answering for it.
    let r = a
        .call("DELETE", &format!("/stores/{store}"), &Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let mut gone = false;
    for _ in 0..50 {
        let (status, _) = b(
            "POST",
            format!("/stores/{store}/check"),
            check_body.clone(),
            vec![],
        )
        .await;
        if status == StatusCode::NOT_FOUND {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "a deleted store disappears from other replicas");
}

/// No input makes any route fail with a 5xx or an unshaped error: malformed JSON, wrong types,
/// absurd sizes, odd characters, nulls everywhere.
async fn garbage_input_gets_a_4xx_openfga_error(db: TestDatabase) {
    let api = Api::new(db).await;
    let (store, model) = setup(&api).await;
    let long = "a".repeat(5000);
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"42".to_vec(),
        b"\"str\"".to_vec(),
        b"{".to_vec(),
        b"\xff\xfe".to_vec(),
        br#"{"tuple_key": null, "contextual_tuples": null, "context": null}"#.to_vec(),
        br#"{"tuple_key": 7, "contextual_tuples": "x", "context": []}"#.to_vec(),
        br#"{"tuple_key": {"object": "", "relation": "", "user": ""}}"#.to_vec(),
        br#"{"tuple_key": {"object": "document:1#x", "relation": "viewer", "user": "user:*#member"}}"#.to_vec(),
        br#"{"tuple_key": {"object": "document:*", "relation": "viewer", "user": "user:a"}}"#.to_vec(),
        br#"{"contextual_tuples": {"tuple_keys": [{"object": "document:1"}]}}"#.to_vec(),
        br#"{"contextual_tuples": [{"object": "document:1", "relation": "viewer", "user": "user:a", "condition": {"name": "nope"}}], "tuple_key": {"object": "document:1", "relation": "viewer", "user": "user:a"}}"#.to_vec(),
        br#"{"writes": {"tuple_keys": null}, "deletes": {"tuple_keys": [null]}}"#.to_vec(),
        br#"{"writes": {"tuple_keys": [{"object": "document:1", "relation": "viewer", "user": "user:a", "condition": {"name": "c", "context": 5}}]}}"#.to_vec(),
        br#"{"checks": [{}], "page_size": -1, "continuation_token": 5}"#.to_vec(),
        br#"{"page_size": 99999999999999999999, "consistency": 7}"#.to_vec(),
        br#"{"object": {"type": "document"}, "relation": "viewer", "user_filters": [{}]}"#.to_vec(),
        br#"{"type": "document", "relation": "viewer", "user": "user:a", "page_size": 0}"#.to_vec(),
        br#"{"schema_version": "1.1", "type_definitions": [{"type": "document", "relations": {"viewer": {}}}]}"#.to_vec(),
        br#"{"schema_version": "1.1", "type_definitions": [{"type": ""}], "conditions": {"c": {"name": "c", "expression": "((("}}}"#.to_vec(),
        format!(r#"{{"tuple_key": {{"object": "document:{long}", "relation": "{long}", "user": "user:{long}"}}, "authorization_model_id": "{long}"}}"#).into_bytes(),
        format!(r#"{{"tuple_key": {{"object": "document:\u0000", "relation": "viewer", "user": "user:\u00e9"}}, "authorization_model_id": "{model}"}}"#).into_bytes(),
    ];
    let routes = [
        ("POST", "/stores".to_owned()),
        ("POST", format!("/stores/{store}/authorization-models")),
        ("POST", format!("/stores/{store}/write")),
        ("POST", format!("/stores/{store}/read")),
        ("POST", format!("/stores/{store}/check")),
        ("POST", format!("/stores/{store}/batch-check")),
        ("POST", format!("/stores/{store}/expand")),
        ("POST", format!("/stores/{store}/list-objects")),
        ("POST", format!("/stores/{store}/list-users")),
    ];
    for (method, path) in &routes {
        for body in &bodies {
            let r = api.raw(method, path, body.clone(), &[], true).await;
            assert!(
                r.status.is_client_error() || r.status.is_success(),
                "{method} {path} {:?}: {} {}",
                String::from_utf8_lossy(body),
                r.status,
                String::from_utf8_lossy(&r.raw)
            );
            if r.status.is_client_error() {
                assert!(
                    !r.code().is_empty(),
                    "{method} {path}: {}",
                    String::from_utf8_lossy(&r.raw)
                );
            }
        }
    }
    for query in [
        "page_size=-5",
        "page_size=1e9",
        "continuation_token=%FF%FE",
        "type=%00&start_time=%00",
        "start_time=2024-13-45T99:99:99Z",
    ] {
        for path in [
            "/stores".to_owned(),
            format!("/stores/{store}/authorization-models"),
            format!("/stores/{store}/changes"),
        ] {
            let r = api.get(&format!("{path}?{query}")).await;
            assert!(
                r.status.is_client_error() || r.status.is_success(),
                "GET {path}?{query}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.raw)
            );
        }
    }
    // The store survived all of it with nothing written.
    assert!(read_all(&api, &store).await.is_empty());
}

trustgate_store::test_on_both_backends!(
    every_route_needs_the_admin_token,
    stores_lifecycle_and_pagination,
    models_write_read_list_and_refuse,
    writes_are_validated_and_all_or_nothing,
    read_and_changes_paginate,
    check_batch_check_and_expand,
    list_objects_and_users_never_truncate,
    bodies_over_the_limit_are_413,
    consistency_tokens_give_read_your_writes_across_replicas,
    garbage_input_gets_a_4xx_openfga_error,
    imports_validate_everything_first_and_skip_existing_tuples,
);

async fn imports_validate_everything_first_and_skip_existing_tuples(db: TestDatabase) {
    let mut config = Config::default();
    // An import may be far larger than any other request, and no more than its own limits.
    config.http.body_limit_bytes = 4096;
    config.authz.import_body_limit_bytes = 64 * 1024;
    config.authz.max_tuples_per_import = 500;
    let api = Api::with_config(db, config).await;
    let (store, model) = setup(&api).await;
    let import = |body: Value| {
        let path = format!("/stores/{store}/import");
        let api = &api;
        async move { api.post(&path, body).await }
    };
    let tuples: Vec<Value> = (0..200)
        .map(|i| {
            tk(
                &format!("document:{i}"),
                "viewer",
                &format!("user:u{}", i % 7),
            )
        })
        .collect();
    let body = json!({"tuple_keys": tuples, "authorization_model_id": model});
    assert!(body.to_string().len() > 4096);

    // Anything invalid anywhere: 400 and nothing written.
    let mut bad = tuples.clone();
    bad.push(tk("document:x", "no_such_relation", "user:anne"));
    let r = import(json!({"tuple_keys": bad})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(r.code(), "relation_not_found");
    let mut twice = tuples.clone();
    twice.push(tk("document:3", "viewer", "user:u3"));
    import(json!({"tuple_keys": twice})).await.expect_error(
        StatusCode::BAD_REQUEST,
        "cannot_allow_duplicate_tuples_in_one_request",
    );
    import(json!({"tuple_keys": []}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_write_input");
    import(json!({"tuples": tuples}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "validation_error");
    let many: Vec<Value> = (0..501)
        .map(|i| tk(&format!("document:{i}"), "viewer", "user:anne"))
        .collect();
    import(json!({"tuple_keys": many}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "exceeded_entity_limit");
    let r = import(json!({"tuple_keys": tuples, "padding": "x".repeat(70_000)})).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.code(), "payload_too_large");
    api.post(
        &format!("/stores/{UNKNOWN_STORE}/import"),
        json!({"tuple_keys": tuples}),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "store_id_not_found");
    assert!(read_all(&api, &store).await.is_empty());

    // Written, visible at once, with a consistency token.
    write(&api, &store, vec![tk("document:0", "viewer", "user:u0")])
        .await
        .expect(StatusCode::OK);
    let r = import(body.clone()).await;
    let answer = r.expect(StatusCode::OK).clone();
    assert_eq!(
        (answer["written"].clone(), answer["existing"].clone()),
        (json!(199), json!(1))
    );
    assert_eq!(
        r.headers
            .get("x-consistency-token")
            .and_then(|v| v.to_str().ok()),
        answer["consistency_token"].as_str()
    );
    assert_eq!(
        check(&api, &store, "document:199", "viewer", "user:u3").await["allowed"],
        true
    );
    assert_eq!(read_all(&api, &store).await.len(), 200);
    // A re-run writes nothing.
    let again = import(body).await.expect(StatusCode::OK).clone();
    assert_eq!(
        (again["written"].clone(), again["existing"].clone()),
        (json!(0), json!(200))
    );
}
