//! The AuthZEN 1.0 API against trustgate served on a loopback socket, called over real HTTP
//! with a PEP's store-scoped reader key. Stores are loaded only through the public APIs (the
//! OpenFGA model and write routes, the attributes API for a file's `attributes`) from the
//! store files in `examples/authzen/`: the API gateway interop file passes, and so do the Todo
//! files (users' emails among the file's stored attributes), the certification scenario's
//! decisions (properties reaching conditions), stored attributes (precedence, freshness,
//! absent ones never allowing), directory attributes of trustgate users and the subject
//! token's authentication context (authority over the request, disabled users, every invalid
//! token), the structural checks, batches, searches, metadata and every refusal.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use trustgate_core::{SealingKey, SystemClock};
use trustgate_server::{AppState, Config};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_testkit::forge::last_char_changed;
use trustgate_testkit::{authzen_decisions, store_file};
use trustgate_tokens::{AccessTokenClaims, Algorithm, Audience};

use crate::common::start_with_admin;

/// An answer: status, headers, JSON body (`Null` when none).
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    #[track_caller]
    fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        &self.body
    }

    /// Asserts an error in trustgate's shape with `status` and `code`.
    #[track_caller]
    fn error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            (self.status, self.body["code"].as_str()),
            (status, Some(code)),
            "{}",
            self.body
        );
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(
            self.body["request_id"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
}

/// trustgate on a socket, its issuer (and so its AuthZEN base URL) that socket's URL.
struct Trustgate {
    base: String,
    admin: String,
    state: AppState,
    http: reqwest::Client,
    /// A replica over the same database must share it.
    secrets: SealingKey,
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/authzen")
        .join(name)
}

async fn trustgate(db: &TestDatabase, config: Config) -> Trustgate {
    replica(db, config, SealingKey::generate()).await
}

async fn replica(db: &TestDatabase, mut config: Config, secrets: SealingKey) -> Trustgate {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    config.oauth.issuer = Some(base.clone());
    let admin = format!("tg_test_{}", uuid::Uuid::new_v4().simple());
    let state = start_with_admin(
        db.store.clone(),
        Arc::new(SystemClock),
        config,
        secrets.clone(),
        &admin,
    )
    .await;
    let app = trustgate_server::router(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Trustgate {
        base,
        admin,
        state,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        secrets,
    }
}

impl Trustgate {
    /// `method path` with `key` (none: no credential), extra headers and a raw body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self.http.request(method, url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    async fn post(&self, path: &str, key: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
        self.send(
            reqwest::Method::POST,
            path,
            Some(key),
            headers,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    async fn admin_post(&self, path: &str, body: Value) -> Value {
        let answer = self.post(path, &self.admin, &[], &body).await;
        assert!(answer.status.is_success(), "{path}: {}", answer.body);
        answer.body
    }

    /// A store loaded from an example store file through the OpenFGA API (its `attributes`
    /// through the attributes API).
    async fn load(&self, file: &str) -> String {
        let file = store_file::load(&example(file));
        let store = self
            .admin_post("/stores", json!({ "name": "authzen" }))
            .await["id"]
            .as_str()
            .expect("store id")
            .to_owned();
        let model = trustgate_authz::dsl::parse(&file.model).expect("model parses");
        self.admin_post(
            &format!("/stores/{store}/authorization-models"),
            serde_json::to_value(&model).expect("json"),
        )
        .await;
        for chunk in file.tuples.chunks(100) {
            self.admin_post(
                &format!("/stores/{store}/write"),
                json!({ "writes": { "tuple_keys": chunk } }),
            )
            .await;
        }
        for (object, attributes) in file.attributes {
            self.put_attributes(&store, &object, Value::Object(attributes))
                .await;
        }
        store
    }

    /// A PEP's key: a service account that is a reader of `store`, its key scoped to that.
    async fn reader_key(&self, store: &str) -> String {
        let account = self
            .admin_post(
                "/admin/v1/service-accounts",
                json!({ "name": format!("pep-{}", uuid::Uuid::new_v4().simple()) }),
            )
            .await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let role = format!("store:{store}:reader");
        self.admin_post(
            "/admin/v1/roles",
            json!({ "subject": format!("service:{account}"), "role": role }),
        )
        .await;
        self.admin_post(
            &format!("/admin/v1/service-accounts/{account}/api-keys"),
            json!({ "scopes": [role] }),
        )
        .await["key"]
            .as_str()
            .expect("key")
            .to_owned()
    }

    /// `method path` with `key` and a JSON body.
    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: &Value,
    ) -> Answer {
        self.send(method, path, key, &[], Some(body.to_string().into_bytes()))
            .await
    }

    /// Stores `attributes` for `object` with the admin key, through the attributes API.
    async fn put_attributes(&self, store: &str, object: &str, attributes: Value) {
        let answer = self
            .json(
                reqwest::Method::PUT,
                &format!("/stores/{store}/attributes/{object}"),
                Some(&self.admin),
                &attributes,
            )
            .await;
        assert_eq!(
            answer.ok(),
            &json!({ "object": object, "attributes": attributes })
        );
    }

    /// A store with the model `dsl` and `tuples`, through the OpenFGA API.
    async fn store_with(&self, dsl: &str, tuples: Value) -> String {
        let store = self
            .admin_post("/stores", json!({ "name": "attributes" }))
            .await["id"]
            .as_str()
            .expect("store id")
            .to_owned();
        let model = trustgate_authz::dsl::parse(dsl).expect("model parses");
        self.admin_post(
            &format!("/stores/{store}/authorization-models"),
            serde_json::to_value(&model).expect("json"),
        )
        .await;
        if tuples.as_array().is_some_and(|t| !t.is_empty()) {
            self.admin_post(
                &format!("/stores/{store}/write"),
                json!({ "writes": { "tuple_keys": tuples } }),
            )
            .await;
        }
        store
    }

    /// Decision events audited so far (oldest first).
    async fn decisions(&self) -> Vec<Value> {
        assert!(self.state.auditor.flush(Duration::from_secs(10)).await);
        let answer = self
            .send(
                reqwest::Method::GET,
                "/admin/v1/audit?kind=authorization_decision&limit=500",
                Some(&self.admin),
                &[],
                None,
            )
            .await;
        let mut events = answer.ok()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        events.reverse();
        events
    }
}

/// The API gateway interop file: every case through `/access/v1/evaluation` (store in the
/// header), then all of them as one batch through the store's own PDP path.
async fn the_gateway_interop_file_passes(db: TestDatabase) {
    let tg = trustgate(&db, Config::default()).await;
    let store = tg.load("gateway.fga.yaml").await;
    let key = tg.reader_key(&store).await;
    let file = authzen_decisions::load(authzen_decisions::GATEWAY);
    assert_eq!(file.evaluation.len(), 25);
    for case in &file.evaluation {
        let answer = tg
            .post(
                "/access/v1/evaluation",
                &key,
                &[("x-trustgate-store", &store)],
                &case.request,
            )
            .await;
        assert_eq!(
            answer.ok(),
            &json!({ "decision": case.expected }),
            "{}",
            case.request
        );
    }
    let requests: Vec<&Value> = file.evaluation.iter().map(|c| &c.request).collect();
    let expected: Vec<Value> = file
        .evaluation
        .iter()
        .map(|c| json!({ "decision": c.expected }))
        .collect();
    let answer = tg
        .post(
            &format!("/stores/{store}/access/v1/evaluations"),
            &key,
            &[],
            &json!({ "evaluations": requests }),
        )
        .await;
    assert_eq!(answer.ok(), &json!({ "evaluations": expected }));
    // One audited decision per evaluation, the PEP's service account as the principal.
    let events = tg.decisions().await;
    assert_eq!(events.len(), 50);
    assert!(events.iter().all(|e| {
        e["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("service:"))
            && e["detail"]["store"] == json!(store)
    }));
}

fn record(id: &str) -> Value {
    let status = if id == "record-2" {
        "archived"
    } else {
        "active"
    };
    json!({ "type": "record", "id": id, "properties": { "status": status } })
}

fn alice() -> Value {
    json!({ "type": "user", "id": "alice" })
}

fn bob() -> Value {
    json!({ "type": "user", "id": "bob", "properties": { "role": "admin" } })
}

fn ask(subject: Value, action: Value, resource: Value) -> Value {
    json!({ "subject": subject, "action": action, "resource": resource })
}

fn named(name: &str) -> Value {
    json!({ "name": name })
}

/// The certification scenario's eight decisions (properties reaching conditions) and its
/// structural checks.
async fn the_certification_scenario_decides(db: TestDatabase) {
    let tg = trustgate(&db, Config::default()).await;
    let store = tg.load("records.fga.yaml").await;
    let key = tg.reader_key(&store).await;
    let path = format!("/stores/{store}/access/v1");
    let soft = |soft: bool| json!({ "name": "delete", "properties": { "soft": soft } });
    let cases = [
        (ask(alice(), named("read"), record("record-1")), true),
        (ask(alice(), named("write"), record("record-1")), true),
        (ask(bob(), named("read"), record("record-1")), true),
        (ask(bob(), named("write"), record("record-1")), false),
        // Writing an archived record: denied for alice, allowed for a subject whose role is
        // admin (bob, a writer of record-2; alice too once she is sent as an admin).
        (ask(alice(), named("write"), record("record-2")), false),
        (ask(bob(), named("write"), record("record-2")), true),
        (
            ask(
                json!({ "type": "user", "id": "alice", "properties": { "role": "admin" } }),
                named("write"),
                record("record-2"),
            ),
            true,
        ),
        (ask(alice(), soft(true), record("record-1")), true),
        (ask(alice(), soft(false), record("record-1")), false),
        (ask(alice(), named("delete"), record("record-1")), false),
    ];
    for (request, expected) in &cases {
        let answer = tg
            .post(&format!("{path}/evaluation"), &key, &[], request)
            .await;
        assert_eq!(answer.ok(), &json!({ "decision": expected }), "{request}");
    }

    // Structural: a batch whose second item is `{}` answers 200, that item false with why.
    let answer = tg
        .post(
            &format!("{path}/evaluations"),
            &key,
            &[],
            &json!({ "evaluations": [ask(alice(), named("read"), record("record-1")), {}] }),
        )
        .await;
    let evaluations = answer.ok()["evaluations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(evaluations.len(), 2);
    assert_eq!(evaluations[0], json!({ "decision": true }));
    assert_eq!(evaluations[1]["decision"], json!(false));
    assert_eq!(evaluations[1]["context"]["error"]["status"], json!(400));
    assert_eq!(
        evaluations[1]["context"]["error"]["message"],
        json!("subject is required")
    );

    // Searches find what a check allows, with properties reaching the conditions.
    let answer = tg
        .post(
            &format!("{path}/search/action"),
            &key,
            &[],
            &json!({ "subject": alice(), "resource": record("record-1") }),
        )
        .await;
    assert_eq!(
        answer.ok(),
        &json!({ "results": [{ "name": "owner" }, { "name": "read" }, { "name": "write" },
                             { "name": "writer" }],
                 "page": { "next_token": "" } })
    );
    let answer = tg
        .post(
            &format!("{path}/search/action"),
            &key,
            &[],
            &json!({ "subject": bob(), "resource": record("record-2") }),
        )
        .await;
    assert_eq!(
        answer.ok()["results"],
        json!([{ "name": "write" }, { "name": "writer" }])
    );
    let answer = tg
        .post(
            &format!("{path}/search/resource"),
            &key,
            &[],
            &json!({ "subject": alice(), "action": named("write"),
                     "resource": { "type": "record", "properties": { "status": "active" } } }),
        )
        .await;
    assert_eq!(
        answer.ok()["results"],
        json!([{ "type": "record", "id": "record-1" }, { "type": "record", "id": "record-2" }])
    );
    let answer = tg
        .post(
            &format!("{path}/search/subject"),
            &key,
            &[],
            &json!({ "subject": { "type": "user" }, "action": named("read"),
                     "resource": record("record-1") }),
        )
        .await;
    assert_eq!(
        answer.ok(),
        &json!({ "results": [{ "type": "user", "id": "alice" }, { "type": "user", "id": "bob" }],
                 "page": { "next_token": "" } })
    );

    // Structural: unknown ids and types give empty results.
    let empty = json!({ "results": [], "page": { "next_token": "" } });
    let unknown_id = json!({ "type": "user", "id": "mallory" });
    let unknown_type = json!({ "type": "robot", "id": "r2" });
    for (search, body) in [
        (
            "subject",
            json!({ "subject": { "type": "user" }, "action": named("read"),
                            "resource": { "type": "record", "id": "record-9" } }),
        ),
        (
            "subject",
            json!({ "subject": { "type": "robot" }, "action": named("read"),
                            "resource": record("record-1") }),
        ),
        (
            "subject",
            json!({ "subject": { "type": "user" }, "action": named("read"),
                            "resource": { "type": "folder", "id": "f" } }),
        ),
        (
            "subject",
            json!({ "subject": { "type": "user" }, "action": named("fly"),
                            "resource": record("record-1") }),
        ),
        (
            "resource",
            json!({ "subject": unknown_id, "action": named("read"),
                             "resource": { "type": "record" } }),
        ),
        (
            "resource",
            json!({ "subject": unknown_type, "action": named("read"),
                             "resource": { "type": "record" } }),
        ),
        (
            "resource",
            json!({ "subject": alice(), "action": named("read"),
                             "resource": { "type": "folder" } }),
        ),
        (
            "resource",
            json!({ "subject": { "type": "user", "id": "a#b" }, "action": named("read"),
                             "resource": { "type": "record" } }),
        ),
        (
            "action",
            json!({ "subject": unknown_id, "resource": record("record-1") }),
        ),
        (
            "action",
            json!({ "subject": unknown_type, "resource": record("record-1") }),
        ),
        (
            "action",
            json!({ "subject": alice(), "resource": { "type": "folder", "id": "f" } }),
        ),
        (
            "action",
            json!({ "subject": alice(), "resource": { "type": "record", "id": "a b" } }),
        ),
    ] {
        let answer = tg
            .post(&format!("{path}/search/{search}"), &key, &[], &body)
            .await;
        assert_eq!(answer.ok(), &empty, "{search}: {body}");
    }
    // And unknown ids or types are plain denials when evaluated.
    for request in [
        ask(unknown_id.clone(), named("read"), record("record-1")),
        ask(
            alice(),
            named("read"),
            json!({ "type": "record", "id": "record-9" }),
        ),
    ] {
        let answer = tg
            .post(&format!("{path}/evaluation"), &key, &[], &request)
            .await;
        assert_eq!(answer.ok(), &json!({ "decision": false }), "{request}");
    }
    for request in [
        ask(unknown_type, named("read"), record("record-1")),
        ask(alice(), named("fly"), record("record-1")),
        ask(
            json!({ "type": "user", "id": "*" }),
            named("read"),
            record("record-1"),
        ),
    ] {
        let answer = tg
            .post(&format!("{path}/evaluation"), &key, &[], &request)
            .await;
        let body = answer.ok();
        assert_eq!(body["decision"], json!(false), "{request}");
        assert_eq!(body["context"]["error"]["status"], json!(400), "{body}");
    }
}

/// Defaults and overrides, the three semantics, invalid items, the empty batch, the size limit,
/// and that exactly the evaluated items are audited.
async fn batches_merge_defaults_and_stop_where_asked(db: TestDatabase) {
    let tg = trustgate(&db, Config::default()).await;
    let store = tg.load("records.fga.yaml").await;
    let key = tg.reader_key(&store).await;
    let path = format!("/stores/{store}/access/v1/evaluations");
    let items = json!([
        { "resource": record("record-1") },
        { "action": named("write"), "resource": record("record-2") },
        { "subject": bob() },
        42,
        { "subject": bob(), "action": named("write") },
    ]);
    let batch = |semantic: Option<&str>| {
        let mut body = json!({
            "subject": alice(),
            "action": named("read"),
            "resource": record("record-1"),
            "context": { "time": "1985-10-26T01:22-07:00" },
            "evaluations": items,
            "unknown_member": { "ignored": true },
        });
        if let Some(s) = semantic {
            body["options"] = json!({ "evaluations_semantic": s });
        }
        body
    };
    let decisions = |answer: &Answer| -> Vec<Value> {
        answer.ok()["evaluations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|d| d["decision"].clone())
            .collect()
    };
    let before = tg.decisions().await.len();
    let all = tg.post(&path, &key, &[], &batch(None)).await;
    assert_eq!(
        decisions(&all),
        [
            json!(true),
            json!(false),
            json!(true),
            json!(false),
            json!(false)
        ]
    );
    assert_eq!(
        all.body["evaluations"][3]["context"]["error"]["message"],
        json!("an evaluation must be an object")
    );
    let same = tg.post(&path, &key, &[], &batch(Some("execute_all"))).await;
    assert_eq!(same.body, all.body);
    let until_deny = tg
        .post(&path, &key, &[], &batch(Some("deny_on_first_deny")))
        .await;
    assert_eq!(decisions(&until_deny), [json!(true), json!(false)]);
    let until_permit = tg
        .post(&path, &key, &[], &batch(Some("permit_on_first_permit")))
        .await;
    assert_eq!(decisions(&until_permit), [json!(true)]);
    // An invalid item is a denial: under deny_on_first_deny nothing after it is evaluated.
    let invalid_first = json!({
        "subject": alice(), "action": named("read"),
        "evaluations": [{ "resource": record("record-1") }, { "resource": 7 },
                        { "resource": record("record-2") }],
        "options": { "evaluations_semantic": "deny_on_first_deny" },
    });
    let answer = tg.post(&path, &key, &[], &invalid_first).await;
    assert_eq!(decisions(&answer), [json!(true), json!(false)]);
    assert_eq!(
        answer.body["evaluations"][1]["context"]["error"]["message"],
        json!("resource must be an object")
    );
    // Evaluated: 4 + 4 + 2 + 1 + 1 (invalid items are no decisions).
    assert_eq!(tg.decisions().await.len() - before, 12);

    // No items: one evaluation, answered as one.
    for evaluations in [json!([]), Value::Null] {
        let mut body = ask(alice(), named("read"), record("record-1"));
        body["evaluations"] = evaluations;
        let answer = tg.post(&path, &key, &[], &body).await;
        assert_eq!(answer.ok(), &json!({ "decision": true }));
    }
    let answer = tg
        .post(&path, &key, &[], &json!({ "evaluations": [] }))
        .await;
    answer.error(StatusCode::BAD_REQUEST, "invalid_request");

    let too_many: Vec<Value> = (0..51).map(|_| json!({})).collect();
    let answer = tg
        .post(&path, &key, &[], &json!({ "evaluations": too_many }))
        .await;
    answer.error(StatusCode::BAD_REQUEST, "too_many_evaluations");
    let answer = tg
        .post(
            &path,
            &key,
            &[],
            &json!({ "evaluations": [{}], "options": { "evaluations_semantic": "most" } }),
        )
        .await;
    answer.error(StatusCode::BAD_REQUEST, "invalid_request");
    let answer = tg
        .post(&path, &key, &[], &json!({ "evaluations": {} }))
        .await;
    answer.error(StatusCode::BAD_REQUEST, "invalid_request");
}

/// Searches page with opaque tokens; wildcard grants are `*`; bad pages are 400.
async fn searches_page(db: TestDatabase) {
    let tg = trustgate(&db, Config::default()).await;
    let store = tg.load("gateway.fga.yaml").await;
    let key = tg.reader_key(&store).await;
    let header = [("x-trustgate-store", store.as_str())];
    let rick = json!({ "type": "identity",
                       "id": "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs" });
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let answer = tg
            .post(
                "/access/v1/search/action",
                &key,
                &header,
                &json!({ "subject": rick, "resource": { "type": "route", "id": "/todos/{todoId}" },
                         "page": { "limit": 2, "token": token } }),
            )
            .await;
        let body = answer.ok();
        let results = body["results"].as_array().cloned().unwrap_or_default();
        assert!(results.len() <= 2, "{body}");
        seen.extend(results);
        token = body["page"]["next_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            json!({ "name": "DELETE" }),
            json!({ "name": "GET" }),
            json!({ "name": "PUT" })
        ]
    );

    let answer = tg
        .post(
            "/access/v1/search/subject",
            &key,
            &header,
            &json!({ "subject": { "type": "identity" }, "action": named("GET"),
                     "resource": { "type": "route", "id": "/todos" } }),
        )
        .await;
    assert_eq!(
        answer.ok()["results"],
        json!([{ "type": "identity", "id": "*" }])
    );
    let answer = tg
        .post(
            "/access/v1/search/subject",
            &key,
            &header,
            &json!({ "subject": { "type": "identity" }, "action": named("POST"),
                     "resource": { "type": "route", "id": "/todos" }, "page": { "limit": 1 } }),
        )
        .await;
    let first = answer.ok().clone();
    assert_eq!(first["results"].as_array().map(Vec::len), Some(1));
    let next = first["page"]["next_token"].as_str().unwrap_or_default();
    assert!(!next.is_empty());
    let answer = tg
        .post(
            "/access/v1/search/subject",
            &key,
            &header,
            &json!({ "subject": { "type": "identity" }, "action": named("POST"),
                     "resource": { "type": "route", "id": "/todos" },
                     "page": { "limit": 10, "token": next } }),
        )
        .await;
    assert_eq!(answer.ok()["results"].as_array().map(Vec::len), Some(2));
    assert_eq!(answer.body["page"]["next_token"], json!(""));

    let answer = tg
        .post(
            "/access/v1/search/resource",
            &key,
            &header,
            &json!({ "subject": rick, "action": named("GET"), "resource": { "type": "route" } }),
        )
        .await;
    assert_eq!(
        answer.ok()["results"],
        json!([{ "type": "route", "id": "/todos" }, { "type": "route", "id": "/todos/{todoId}" },
               { "type": "route", "id": "/users/{userId}" }])
    );
    for page in [
        json!({ "limit": 0 }),
        json!({ "limit": -1 }),
        json!({ "token": 5 }),
    ] {
        let answer = tg
            .post(
                "/access/v1/search/resource",
                &key,
                &header,
                &json!({ "subject": rick, "action": named("GET"),
                         "resource": { "type": "route" }, "page": page }),
            )
            .await;
        answer.error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let answer = tg
        .post(
            "/access/v1/search/resource",
            &key,
            &header,
            &json!({ "subject": rick, "action": named("GET"), "resource": { "type": "route" },
                     "page": { "token": "not a token" } }),
        )
        .await;
    answer.error(StatusCode::BAD_REQUEST, "invalid_page_token");
}

/// 401, 403, 400 for bad stores and bodies, 404 for an unknown store; unknown members
/// ignored; `X-Request-ID` echoed.
async fn refusals_follow_the_spec(db: TestDatabase) {
    let tg = trustgate(&db, Config::default()).await;
    let store = tg.load("records.fga.yaml").await;
    let other = tg.load("records.fga.yaml").await;
    let key = tg.reader_key(&store).await;
    let elsewhere = tg.reader_key(&other).await;
    let header = [("x-trustgate-store", store.as_str())];
    let good = ask(alice(), named("read"), record("record-1"));
    let body = Some(good.to_string().into_bytes());

    for path in [
        "/access/v1/evaluation",
        "/access/v1/evaluations",
        "/access/v1/search/subject",
        "/access/v1/search/resource",
        "/access/v1/search/action",
    ] {
        let answer = tg
            .send(reqwest::Method::POST, path, None, &header, body.clone())
            .await;
        answer.error(StatusCode::UNAUTHORIZED, "unauthenticated");
        assert!(answer.headers.contains_key("www-authenticate"), "{path}");
        let answer = tg
            .send(
                reqwest::Method::POST,
                path,
                Some("tg_live_not_a_key"),
                &header,
                body.clone(),
            )
            .await;
        answer.error(StatusCode::UNAUTHORIZED, "unauthenticated");
        // A key that reads another store only.
        let answer = tg.post(path, &elsewhere, &header, &good).await;
        answer.error(StatusCode::FORBIDDEN, "permission_denied");
        let answer = tg
            .post(&format!("/stores/{store}{path}"), &elsewhere, &[], &good)
            .await;
        answer.error(StatusCode::FORBIDDEN, "permission_denied");
    }

    let evaluation = "/access/v1/evaluation";
    tg.post(evaluation, &key, &[], &good)
        .await
        .error(StatusCode::BAD_REQUEST, "store_required");
    tg.post(evaluation, &key, &[("x-trustgate-store", "nope")], &good)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_store_id");
    tg.post(
        &format!("/stores/{store}{evaluation}"),
        &key,
        &[("x-trustgate-store", other.as_str())],
        &good,
    )
    .await
    .error(StatusCode::BAD_REQUEST, "store_mismatch");
    let missing = "01JC0000000000000000000000";
    tg.post(
        evaluation,
        &tg.admin,
        &[("x-trustgate-store", missing)],
        &good,
    )
    .await
    .error(StatusCode::NOT_FOUND, "store_id_not_found");
    tg.post(evaluation, &key, &[("x-trustgate-store", missing)], &good)
        .await
        .error(StatusCode::FORBIDDEN, "permission_denied");

    for (raw, why) in [
        (b"{not json".to_vec(), "not JSON"),
        (b"[]".to_vec(), "not an object"),
        (Vec::new(), "empty"),
    ] {
        let answer = tg
            .send(
                reqwest::Method::POST,
                evaluation,
                Some(&key),
                &header,
                Some(raw),
            )
            .await;
        answer.error(StatusCode::BAD_REQUEST, "invalid_request");
        assert!(!why.is_empty());
    }
    for (request, message) in [
        (
            json!({ "action": named("read"), "resource": record("record-1") }),
            "subject is required",
        ),
        (
            ask(alice(), json!({}), record("record-1")),
            "action.name is required",
        ),
        (
            ask(alice(), named("read"), json!({ "type": "record" })),
            "resource.id is required",
        ),
        (
            ask(
                json!({ "type": 3, "id": "x" }),
                named("read"),
                record("record-1"),
            ),
            "subject.type must be a string",
        ),
        (
            json!({ "subject": alice(), "action": named("read"), "resource": record("record-1"),
                 "context": "x" }),
            "context must be an object",
        ),
    ] {
        let answer = tg.post(evaluation, &key, &header, &request).await;
        answer.error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(answer.body["message"], json!(message));
    }
    for search in ["subject", "resource", "action"] {
        let answer = tg
            .post(
                &format!("/access/v1/search/{search}"),
                &key,
                &header,
                &json!({}),
            )
            .await;
        answer.error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    // A consistency token (from an OpenFGA write) is honoured; one that is not is a 400.
    let written = tg
        .post(
            &format!("/stores/{store}/write"),
            &tg.admin,
            &[],
            &json!({ "writes": { "tuple_keys": [
                { "user": "user:carol", "relation": "reader", "object": "record:record-1" }
            ] } }),
        )
        .await;
    let token = written
        .headers
        .get("x-consistency-token")
        .and_then(|v| v.to_str().ok())
        .expect("a consistency token")
        .to_owned();
    let carol = ask(
        json!({ "type": "user", "id": "carol" }),
        named("read"),
        record("record-1"),
    );
    let answer = tg
        .post(
            evaluation,
            &key,
            &[
                ("x-trustgate-store", store.as_str()),
                ("x-consistency-token", &token),
            ],
            &carol,
        )
        .await;
    assert_eq!(answer.ok(), &json!({ "decision": true }));
    tg.post(
        evaluation,
        &key,
        &[
            ("x-trustgate-store", store.as_str()),
            ("x-consistency-token", "garbage"),
        ],
        &carol,
    )
    .await
    .error(StatusCode::BAD_REQUEST, "validation_error");

    // Unknown members anywhere are ignored; the request id comes back.
    let mut extended = good.clone();
    extended["subject"]["nickname"] = json!("al");
    extended["action"]["verb"] = json!(true);
    extended["resource"]["owner"] = json!({ "deep": [1, 2] });
    extended["trace"] = json!("abc");
    let answer = tg
        .post(
            evaluation,
            &key,
            &[
                ("x-trustgate-store", store.as_str()),
                ("x-request-id", "authzen-req-1"),
            ],
            &extended,
        )
        .await;
    assert_eq!(answer.ok(), &json!({ "decision": true }));
    assert_eq!(
        answer
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("authzen-req-1")
    );
    let answer = tg
        .post(
            evaluation,
            &key,
            &[("x-request-id", "authzen-req-2")],
            &good,
        )
        .await;
    answer.error(StatusCode::BAD_REQUEST, "store_required");
    assert_eq!(answer.body["request_id"], json!("authzen-req-2"));
    assert_eq!(
        answer
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("authzen-req-2")
    );
}

/// The metadata documents name the base URL they were fetched from; a PEP that knows only a
/// store's PDP identifier finds its endpoints and is answered there.
async fn metadata_names_the_endpoints(db: TestDatabase) {
    let tg = trustgate(&db, Config::default()).await;
    let store = tg.load("records.fga.yaml").await;
    let key = tg.reader_key(&store).await;
    let answer = tg
        .send(
            reqwest::Method::GET,
            "/.well-known/authzen-configuration",
            None,
            &[],
            None,
        )
        .await;
    let base = &tg.base;
    assert_eq!(
        answer.ok(),
        &json!({
            "policy_decision_point": base,
            "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
            "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
            "search_subject_endpoint": format!("{base}/access/v1/search/subject"),
            "search_resource_endpoint": format!("{base}/access/v1/search/resource"),
            "search_action_endpoint": format!("{base}/access/v1/search/action"),
        })
    );
    let answer = tg
        .send(
            reqwest::Method::GET,
            &format!("/.well-known/authzen-configuration/stores/{store}"),
            None,
            &[],
            None,
        )
        .await;
    let pdp = format!("{base}/stores/{store}");
    assert_eq!(answer.ok()["policy_decision_point"], json!(pdp));
    let endpoint = answer.body["access_evaluation_endpoint"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(endpoint, format!("{pdp}/access/v1/evaluation"));
    let answer = tg
        .post(
            &endpoint,
            &key,
            &[],
            &ask(alice(), named("read"), record("record-1")),
        )
        .await;
    assert_eq!(answer.ok(), &json!({ "decision": true }));
    let answer = tg
        .send(
            reqwest::Method::GET,
            "/.well-known/authzen-configuration/stores/nope",
            None,
            &[],
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

/// A store's action map: AuthZEN names evaluated as other relations, and reported by their
/// AuthZEN names in action searches (configured for a store created before the restart).
async fn an_action_map_renames_actions(db: TestDatabase) {
    let first = trustgate(&db, Config::default()).await;
    let store = first.load("gateway.fga.yaml").await;
    let mut config = Config::default();
    let actions = [
        ("read", "GET"),
        ("create", "POST"),
        ("update", "PUT"),
        ("GET", "DELETE"),
    ];
    config.authzen.stores.insert(
        store.to_ascii_lowercase(),
        trustgate_server::config::AuthzenStoreConfig {
            actions: actions
                .iter()
                .map(|(a, r)| ((*a).to_owned(), (*r).to_owned()))
                .collect(),
            ..Default::default()
        },
    );
    let tg = replica(&db, config, first.secrets.clone()).await;
    let key = tg.reader_key(&store).await;
    let path = format!("/stores/{store}/access/v1");
    let beth = json!({ "type": "identity",
                       "id": "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs" });
    let todos = json!({ "type": "route", "id": "/todos" });
    for (action, expected) in [
        ("read", true),
        ("create", false),
        ("POST", false),
        ("GET", false),
    ] {
        let answer = tg
            .post(
                &format!("{path}/evaluation"),
                &key,
                &[],
                &ask(beth.clone(), named(action), todos.clone()),
            )
            .await;
        assert_eq!(answer.ok(), &json!({ "decision": expected }), "{action}");
    }
    let answer = tg
        .post(
            &format!("{path}/search/action"),
            &key,
            &[],
            &json!({ "subject": beth, "resource": todos }),
        )
        .await;
    assert_eq!(answer.ok()["results"], json!([{ "name": "read" }]));
}

/// The Todo store: examples/authzen/todo.fga.yaml (the users' emails among its stored
/// attributes) through the OpenFGA and attributes APIs.
async fn todo_store(tg: &Trustgate) -> String {
    tg.load("todo.fga.yaml").await
}

/// The Todo interop files: every single case of both files through `/access/v1/evaluation`,
/// and the batches of `-02.json` through `/access/v1/evaluations`, compared exactly.
async fn the_todo_interop_files_pass(db: TestDatabase) {
    let tg = trustgate(&db, Config::default()).await;
    let store = todo_store(&tg).await;
    let key = tg.reader_key(&store).await;
    let first = authzen_decisions::load(authzen_decisions::TODO_01);
    let second = authzen_decisions::load(authzen_decisions::TODO_02);
    assert_eq!((first.evaluation.len(), first.evaluations.len()), (40, 0));
    assert_eq!((second.evaluation.len(), second.evaluations.len()), (40, 3));
    for case in first.evaluation.iter().chain(&second.evaluation) {
        let answer = tg
            .post(
                &format!("/stores/{store}/access/v1/evaluation"),
                &key,
                &[],
                &case.request,
            )
            .await;
        assert_eq!(
            answer.ok(),
            &json!({ "decision": case.expected }),
            "{}",
            case.request
        );
    }
    for case in &second.evaluations {
        let answer = tg
            .post(
                "/access/v1/evaluations",
                &key,
                &[("x-trustgate-store", &store)],
                &case.request,
            )
            .await;
        assert_eq!(
            answer.ok(),
            &json!({ "evaluations": case.expected }),
            "{}",
            case.request
        );
    }
}

const DEPARTMENTS: &str = "model
  schema 1.1
type user
type record
  relations
    define viewer: [user with same_department]
    define editor: [user with guarded]
condition same_department(subject: map<any>, resource: map<any>) {
  subject.properties.department == resource.properties.department
}
condition guarded(subject: map<any>, resource: map<any>) {
  has(subject.properties.clearance) && subject.properties.clearance >= resource.properties.classification
}
";

fn ask_record(user: &str, action: &str, subject_properties: Value) -> Value {
    json!({
        "subject": { "type": "user", "id": user, "properties": subject_properties },
        "action": { "name": action },
        "resource": { "type": "record", "id": "101" },
    })
}

/// Stored attributes reach conditions as properties; a stored attribute wins over the
/// request's; a write or a delete is seen by the next evaluation; an absent attribute never
/// allows.
async fn stored_attributes_reach_conditions(db: TestDatabase) {
    let tg = trustgate(&db, Config::default()).await;
    let tuples = json!([
        { "user": "user:alice", "relation": "viewer", "object": "record:101",
          "condition": { "name": "same_department" } },
        { "user": "user:bob", "relation": "viewer", "object": "record:101",
          "condition": { "name": "same_department" } },
        { "user": "user:alice", "relation": "editor", "object": "record:101",
          "condition": { "name": "guarded" } },
        { "user": "user:bob", "relation": "editor", "object": "record:101",
          "condition": { "name": "guarded" } },
    ]);
    let store = tg.store_with(DEPARTMENTS, tuples).await;
    let key = tg.reader_key(&store).await;
    let path = format!("/stores/{store}/access/v1/evaluation");
    let decide = |body: Value| {
        let (tg, key, path) = (&tg, &key, &path);
        async move { tg.post(path, key, &[], &body).await.ok().clone() }
    };
    tg.put_attributes(
        &store,
        "record:101",
        json!({ "department": "eng", "classification": 2 }),
    )
    .await;
    tg.put_attributes(
        &store,
        "user:alice",
        json!({ "department": "eng", "clearance": 3 }),
    )
    .await;
    // Stored on both sides: allowed, without the caller sending anything.
    let alice = decide(ask_record("alice", "viewer", json!({}))).await;
    assert_eq!(alice, json!({ "decision": true }));
    assert_eq!(
        decide(ask_record("alice", "editor", json!({}))).await,
        json!({ "decision": true })
    );
    // The stored attribute wins over the request's property of the same name.
    assert_eq!(
        decide(ask_record(
            "alice",
            "viewer",
            json!({ "department": "sales" })
        ))
        .await,
        json!({ "decision": true })
    );
    assert_eq!(
        decide(ask_record("alice", "editor", json!({ "clearance": 0 }))).await,
        json!({ "decision": true })
    );
    // bob has no stored attributes: a condition reading one fails to evaluate (a denial with
    // the error in its context), one testing it with has() is false. Never an allow.
    let bob = decide(ask_record("bob", "viewer", json!({}))).await;
    assert_eq!(bob["decision"], json!(false), "{bob}");
    assert!(bob["context"]["error"].is_object(), "{bob}");
    assert_eq!(
        decide(ask_record("bob", "editor", json!({}))).await["decision"],
        json!(false)
    );
    // A property the store does not have still comes from the request.
    assert_eq!(
        decide(ask_record("bob", "viewer", json!({ "department": "eng" }))).await,
        json!({ "decision": true })
    );
    // A write is seen by the next evaluation; so is a delete.
    tg.put_attributes(
        &store,
        "record:101",
        json!({ "department": "sales", "classification": 2 }),
    )
    .await;
    assert_eq!(
        decide(ask_record("alice", "viewer", json!({}))).await,
        json!({ "decision": false })
    );
    let deleted = tg
        .send(
            reqwest::Method::DELETE,
            &format!("/stores/{store}/attributes/user:alice"),
            Some(&tg.admin),
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        decide(ask_record("alice", "editor", json!({}))).await["decision"],
        json!(false)
    );
    // Batches and searches see them too.
    tg.put_attributes(&store, "user:alice", json!({ "department": "sales" }))
        .await;
    let batch = tg
        .post(
            &format!("/stores/{store}/access/v1/evaluations"),
            &key,
            &[],
            &json!({
                "subject": { "type": "user", "id": "alice" },
                "resource": { "type": "record", "id": "101" },
                "evaluations": [{ "action": { "name": "viewer" } }, { "action": { "name": "editor" } }],
            }),
        )
        .await;
    assert_eq!(batch.ok()["evaluations"][0], json!({ "decision": true }));
    assert_eq!(batch.ok()["evaluations"][1]["decision"], json!(false));
    let actions = tg
        .post(
            &format!("/stores/{store}/access/v1/search/action"),
            &key,
            &[],
            &json!({
                "subject": { "type": "user", "id": "alice" },
                "resource": { "type": "record", "id": "101" },
            }),
        )
        .await;
    assert_eq!(actions.ok()["results"], json!([{ "name": "viewer" }]));
}

/// The attributes API: who may read and write, what it refuses, and a deleted store's
/// attributes gone with it.
async fn the_attributes_api_refuses_what_it_must(db: TestDatabase) {
    let tg = trustgate(&db, Config::default()).await;
    let store = tg.store_with(DEPARTMENTS, json!([])).await;
    let reader = tg.reader_key(&store).await;
    let path = format!("/stores/{store}/attributes/record:101");
    let put = |key: Option<String>, body: Value| {
        let (tg, path) = (&tg, &path);
        async move {
            tg.json(reqwest::Method::PUT, path, key.as_deref(), &body)
                .await
        }
    };
    let admin = Some(tg.admin.clone());
    // 401 without a key, 403 for a reader writing; a reader reads.
    assert_eq!(
        put(None, json!({ "a": 1 })).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        put(Some(reader.clone()), json!({ "a": 1 })).await.status,
        StatusCode::FORBIDDEN
    );
    let deleted = tg
        .send(reqwest::Method::DELETE, &path, Some(&reader), &[], None)
        .await;
    assert_eq!(deleted.status, StatusCode::FORBIDDEN);
    let read = tg
        .send(reqwest::Method::GET, &path, Some(&reader), &[], None)
        .await;
    assert_eq!(
        read.ok(),
        &json!({ "object": "record:101", "attributes": {} })
    );
    // 400: not an object, oversized, not type:id.
    for body in [json!([1]), json!("eng"), json!(null)] {
        let answer = put(admin.clone(), body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert_eq!(answer.body["code"], json!("validation_error"));
    }
    let big = put(admin.clone(), json!({ "blob": "x".repeat(17 * 1024) })).await;
    assert_eq!(big.status, StatusCode::BAD_REQUEST, "{}", big.body);
    let bad_object = tg
        .json(
            reqwest::Method::PUT,
            &format!("/stores/{store}/attributes/no-colon"),
            Some(&tg.admin),
            &json!({ "a": 1 }),
        )
        .await;
    assert_eq!(bad_object.status, StatusCode::BAD_REQUEST);
    // 404 for an unknown store (a valid id), 400 for an invalid one.
    let unknown = tg
        .json(
            reqwest::Method::PUT,
            "/stores/01HZZZZZZZZZZZZZZZZZZZZZZZ/attributes/record:1",
            Some(&tg.admin),
            &json!({ "a": 1 }),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    assert_eq!(unknown.body["code"], json!("store_id_not_found"));
    // Written, read back, replaced as a whole.
    tg.put_attributes(&store, "record:101", json!({ "department": "eng", "n": 1 }))
        .await;
    tg.put_attributes(&store, "record:101", json!({ "department": "ops" }))
        .await;
    let read = tg
        .send(reqwest::Method::GET, &path, Some(&reader), &[], None)
        .await;
    assert_eq!(
        read.ok(),
        &json!({ "object": "record:101", "attributes": { "department": "ops" } })
    );
    // Deleting the store deletes its attributes.
    let gone = tg
        .send(
            reqwest::Method::DELETE,
            &format!("/stores/{store}"),
            Some(&tg.admin),
            &[],
            None,
        )
        .await;
    assert!(gone.status.is_success(), "{}", gone.body);
    let read = tg
        .send(reqwest::Method::GET, &path, Some(&tg.admin), &[], None)
        .await;
    assert_eq!(read.status, StatusCode::NOT_FOUND);
}

/// `options.explain`: decisions with AuthZEN's `reason_admin` and the steps; without it the
/// answers are exactly the plain ones (the interop files compare them).
async fn decisions_are_explained_when_asked(db: TestDatabase) {
    let tg = trustgate(&db, Config::default()).await;
    let store = tg.load("records.fga.yaml").await;
    let key = tg.reader_key(&store).await;
    let path = format!("/stores/{store}/access/v1");
    let explained = |request: Value| {
        let mut request = request;
        request["options"] = json!({ "explain": true });
        request
    };

    let answer = tg
        .post(
            &format!("{path}/evaluation"),
            &key,
            &[],
            &explained(ask(alice(), named("read"), record("record-1"))),
        )
        .await;
    let answer = answer.ok();
    assert_eq!(answer["decision"], true);
    assert_eq!(
        answer["context"]["reason_admin"]["en"],
        "allowed: record:record-1#owner@user:alice"
    );
    let steps = &answer["context"]["explanation"]["steps"];
    assert_eq!(steps["target"], "record:record-1#read");
    assert_eq!(steps["result"], "allowed");
    assert_eq!(answer["context"]["explanation"]["truncated"], false);

    // A deny by a condition: its name, the tuple and the properties it saw.
    let answer = tg
        .post(
            &format!("{path}/evaluation"),
            &key,
            &[],
            &explained(ask(alice(), named("write"), record("record-2"))),
        )
        .await;
    let answer = answer.ok();
    assert_eq!(answer["decision"], false);
    let reason = answer["context"]["reason_admin"]["en"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.starts_with(
            "denied: condition writable false on record:record-2#writer@user:alice with {"
        ) && reason.contains(r#""status":"archived""#),
        "{reason}"
    );

    // A batch: every valid item explained, an invalid one keeps its error.
    let answer = tg
        .post(
            &format!("{path}/evaluations"),
            &key,
            &[],
            &json!({
                "options": { "explain": true },
                "evaluations": [ask(bob(), named("write"), record("record-1")), {}],
            }),
        )
        .await;
    let evaluations = answer.ok()["evaluations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(evaluations.len(), 2);
    assert_eq!(evaluations[0]["decision"], false);
    assert_eq!(
        evaluations[0]["context"]["reason_admin"]["en"],
        "denied: no tuple relates the user"
    );
    assert_eq!(evaluations[1]["context"]["error"]["status"], 400);
    assert!(evaluations[1]["context"]["reason_admin"].is_null());

    // Not asked (or asked not to): no context at all.
    for options in [json!(null), json!({ "explain": false })] {
        let mut request = ask(alice(), named("read"), record("record-1"));
        request["options"] = options;
        let answer = tg
            .post(&format!("{path}/evaluation"), &key, &[], &request)
            .await;
        assert_eq!(answer.ok(), &json!({ "decision": true }));
    }
    let mut request = ask(alice(), named("read"), record("record-1"));
    request["options"] = json!({ "explain": "yes" });
    tg.post(&format!("{path}/evaluation"), &key, &[], &request)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
}

const DIRECTORY: &str = "model
  schema 1.1
type user
type record
  relations
    define viewer: [user with verified]
    define mailer: [user with company]
    define member: [user with engineering]
    define editor: [user with stepped_up]
condition verified(subject: map<any>) {
  subject.properties.email_verified == true
}
condition company(subject: map<any>) {
  subject.properties.email.endsWith('@example.com')
}
condition engineering(subject: map<any>) {
  subject.properties.department == 'eng'
}
condition stepped_up(subject: map<any>) {
  'mfa' in subject.properties.amr && subject.properties.acr == '2'
}
";

/// A ULID that is no trustgate user's id.
const NOBODY: &str = "01JC0000000000000000000000";

impl Trustgate {
    /// A trustgate user created through the admin API, then patched with `patch`; its id.
    async fn user(&self, username: &str, email: &str, patch: Value) -> String {
        let created = self
            .admin_post(
                "/admin/v1/users",
                json!({ "username": username, "email": email }),
            )
            .await;
        let id = created["id"].as_str().expect("user id").to_owned();
        self.patch_user(&id, patch).await;
        id
    }

    async fn patch_user(&self, id: &str, patch: Value) {
        let answer = self
            .json(
                reqwest::Method::PATCH,
                &format!("/admin/v1/users/{id}"),
                Some(&self.admin),
                &patch,
            )
            .await;
        answer.ok();
    }

    /// A directory store: the DIRECTORY model, every relation granted to each of `users`.
    async fn directory_store(&self, users: &[&str]) -> String {
        let tuples: Vec<Value> = users
            .iter()
            .flat_map(|user| {
                [
                    ("viewer", "verified"),
                    ("mailer", "company"),
                    ("member", "engineering"),
                    ("editor", "stepped_up"),
                ]
                .map(|(relation, condition)| {
                    json!({ "user": format!("user:{user}"), "relation": relation,
                            "object": "record:101", "condition": { "name": condition } })
                })
            })
            .collect();
        self.store_with(DIRECTORY, Value::Array(tuples)).await
    }

    /// An access token as trustgate's token endpoint signs them for `user` (its current token
    /// version, so it is live), edited by `edit`.
    async fn user_token(&self, user: &str, edit: impl FnOnce(&mut AccessTokenClaims)) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let uv = self
            .state
            .store
            .user_token_version(user)
            .await
            .expect("token version");
        let mut claims = AccessTokenClaims {
            iss: self.base.clone(),
            sub: user.to_owned(),
            aud: Audience::One("https://api.example".into()),
            exp: now + 300,
            iat: now,
            nbf: None,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: "tgc_app".into(),
            scope: Some("openid orders:write".into()),
            auth_time: Some(now - 60),
            acr: Some("2".into()),
            amr: Some(vec!["pwd".into(), "mfa".into()]),
            uv: Some(uv.unwrap_or_default()),
            gid: None,
            sid: None,
            act: None,
            may_act: None,
            key_id: None,
            cnf: None,
        };
        edit(&mut claims);
        self.state
            .oauth
            .keys()
            .sign(Algorithm::ES256, "at+jwt", &claims)
            .expect("sign")
    }
}

/// Asserts a denial that carries an error (the condition could not be evaluated, or the
/// request could not), with `code` if given.
#[track_caller]
fn denied_with_error(answer: &Value, code: Option<&str>) {
    assert_eq!(answer["decision"], json!(false), "{answer}");
    assert!(answer["context"]["error"].is_object(), "{answer}");
    if let Some(code) = code {
        assert_eq!(answer["context"]["error"]["code"], json!(code), "{answer}");
    }
}

/// A trustgate user's directory entry reaches conditions as subject properties: the directory
/// is the authority on its fields (a request cannot override them, even where the directory has
/// no value), stored attributes win over it, a disabled user's attributes are withheld, an id
/// that is no trustgate user's gets nothing, and changes through the admin API are seen at once.
async fn directory_attributes_reach_conditions(db: TestDatabase) {
    let tg = trustgate(&db, with_directory()).await;
    let alice = tg
        .user(
            "alice",
            "alice@example.com",
            json!({ "email_verified": true,
                    "attributes": { "department": "eng", "email": "custom@evil.test" } }),
        )
        .await;
    let bob = tg.user("bob", "bob@example.com", json!({})).await;
    let carol = tg
        .user(
            "carol",
            "carol@example.com",
            json!({ "email_verified": true }),
        )
        .await;
    let store = tg
        .directory_store(&[&alice, &bob, &carol, "mallory", NOBODY])
        .await;
    let key = tg.reader_key(&store).await;
    let path = format!("/stores/{store}/access/v1/evaluation");
    let decide = |user: &str, action: &str, properties: Value| {
        let (tg, key, path) = (&tg, &key, &path);
        let body = ask_record(user, action, properties);
        async move { tg.post(path, key, &[], &body).await.ok().clone() }
    };
    let allowed = json!({ "decision": true });
    let denied = json!({ "decision": false });

    // email_verified: a verified user is allowed, an unverified one denied, whatever the
    // request claims.
    assert_eq!(decide(&alice, "viewer", json!({})).await, allowed);
    assert_eq!(decide(&bob, "viewer", json!({})).await, denied);
    assert_eq!(
        decide(&bob, "viewer", json!({ "email_verified": true })).await,
        denied
    );
    // email: the directory's, not the request's nor a custom attribute of that name.
    assert_eq!(
        decide(&alice, "mailer", json!({ "email": "alice@evil.test" })).await,
        allowed
    );
    // A custom attribute reaches conditions; the request fills a custom one the user lacks.
    assert_eq!(decide(&alice, "member", json!({})).await, allowed);
    assert_eq!(
        decide(&alice, "member", json!({ "department": "sales" })).await,
        allowed
    );
    denied_with_error(&decide(&bob, "member", json!({})).await, None);
    // An id that is no trustgate user's: nothing from the directory, so a condition needing
    // the email fails (a denial with the error); a non-ULID id keeps its request properties.
    denied_with_error(&decide(NOBODY, "mailer", json!({})).await, None);
    denied_with_error(&decide("mallory", "mailer", json!({})).await, None);
    assert_eq!(
        decide("mallory", "mailer", json!({ "email": "m@example.com" })).await,
        allowed
    );
    // A stored attribute wins over the directory (an administrator's statement about the
    // object in this store).
    tg.put_attributes(
        &store,
        &format!("user:{alice}"),
        json!({ "email": "alice@elsewhere.test" }),
    )
    .await;
    assert_eq!(decide(&alice, "mailer", json!({})).await, denied);
    let deleted = tg
        .send(
            reqwest::Method::DELETE,
            &format!("/stores/{store}/attributes/user:{alice}"),
            Some(&tg.admin),
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(decide(&alice, "mailer", json!({})).await, allowed);
    // A profile change through the admin API is seen by the next evaluation.
    tg.patch_user(&bob, json!({ "email_verified": true })).await;
    assert_eq!(decide(&bob, "viewer", json!({})).await, allowed);
    // A disabled user's attributes are withheld: denied, and the request cannot fill them in.
    assert_eq!(decide(&carol, "viewer", json!({})).await, allowed);
    tg.admin_post(&format!("/admin/v1/users/{carol}/disable"), json!({}))
        .await;
    denied_with_error(&decide(&carol, "viewer", json!({})).await, None);
    denied_with_error(
        &decide(
            &carol,
            "mailer",
            json!({ "email": "carol@example.com", "email_verified": true }),
        )
        .await,
        None,
    );
    // A user deleted through the admin API (named by username) is no trustgate user from the
    // next evaluation on.
    assert_eq!(decide(&bob, "viewer", json!({})).await, allowed);
    let deleted = tg
        .send(
            reqwest::Method::DELETE,
            "/admin/v1/users/bob",
            Some(&tg.admin),
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    denied_with_error(&decide(&bob, "viewer", json!({})).await, None);
    // Batches and searches see the directory.
    let batch = tg
        .post(
            &format!("/stores/{store}/access/v1/evaluations"),
            &key,
            &[],
            &json!({
                "action": { "name": "viewer" },
                "resource": { "type": "record", "id": "101" },
                "evaluations": [
                    { "subject": { "type": "user", "id": alice } },
                    { "subject": { "type": "user", "id": carol } },
                ],
            }),
        )
        .await;
    assert_eq!(batch.ok()["evaluations"][0], allowed);
    denied_with_error(&batch.ok()["evaluations"][1], None);
    let actions = tg
        .post(
            &format!("/stores/{store}/access/v1/search/action"),
            &key,
            &[],
            &json!({
                "subject": { "type": "user", "id": alice },
                "resource": { "type": "record", "id": "101" },
            }),
        )
        .await;
    assert_eq!(
        actions.ok()["results"],
        json!([{ "name": "mailer" }, { "name": "member" }, { "name": "viewer" }])
    );
    // Another user type for the store: `user` ids are then no longer looked up.
    let mut config = Config::default();
    config.authzen.stores.insert(
        store.clone(),
        trustgate_server::config::AuthzenStoreConfig {
            user_type: Some("employee".into()),
            ..Default::default()
        },
    );
    let other = replica(&db, config, tg.secrets.clone()).await;
    let answer = other
        .post(&path, &key, &[], &ask_record(&alice, "viewer", json!({})))
        .await;
    denied_with_error(answer.ok(), None);

    // The directory is closed by default, and a store can be closed where it is open for all:
    // the same question is then an error (the condition reads what is absent), never an allow.
    // (Properties the PEP sends are then the PEP's, as for any AuthZEN subject.)
    let mut closed = with_directory();
    closed.authzen.stores.insert(
        store.clone(),
        trustgate_server::config::AuthzenStoreConfig {
            directory: Some(false),
            ..Default::default()
        },
    );
    for config in [Config::default(), closed] {
        let other = replica(&db, config, tg.secrets.clone()).await;
        let answer = other
            .post(&path, &key, &[], &ask_record(&alice, "viewer", json!({})))
            .await;
        denied_with_error(answer.ok(), None);
    }
}

/// A configuration that opens the user directory to every store's conditions.
fn with_directory() -> Config {
    let mut config = Config::default();
    config.authzen.directory = true;
    config
}

/// `X-Subject-Token`: a live token of the subject gives conditions its authentication context;
/// an invalid, expired, tampered, revoked or foreign one is an error (never an allow); the
/// context's names cannot be sent by the request.
async fn a_subject_token_carries_the_authentication_context(db: TestDatabase) {
    let tg = trustgate(&db, with_directory()).await;
    let alice = tg
        .user(
            "alice",
            "alice@example.com",
            json!({ "email_verified": true }),
        )
        .await;
    let bob = tg.user("bob", "bob@example.com", json!({})).await;
    let store = tg.directory_store(&[&alice, &bob]).await;
    let key = tg.reader_key(&store).await;
    let path = format!("/stores/{store}/access/v1");
    let decide = |token: Option<String>, properties: Value| {
        let (tg, key, path) = (&tg, &key, &path);
        let body = ask_record(&alice, "editor", properties);
        async move {
            let headers: Vec<(&str, &str)> = token
                .as_deref()
                .map(|t| ("x-subject-token", t))
                .into_iter()
                .collect();
            tg.post(&format!("{path}/evaluation"), key, &headers, &body)
                .await
                .ok()
                .clone()
        }
    };
    let allowed = json!({ "decision": true });
    let stepped_up = tg.user_token(&alice, |_| {}).await;
    assert_eq!(decide(Some(stepped_up.clone()), json!({})).await, allowed);
    // A password-only token: denied.
    let password = tg
        .user_token(&alice, |c| c.amr = Some(vec!["pwd".into()]))
        .await;
    assert_eq!(
        decide(Some(password.clone()), json!({})).await,
        json!({ "decision": false })
    );
    // The request cannot claim the context: not without a token, not over a token's.
    let claimed = json!({ "amr": ["mfa"], "acr": "2" });
    denied_with_error(&decide(None, claimed.clone()).await, None);
    assert_eq!(
        decide(Some(password), claimed).await,
        json!({ "decision": false })
    );
    // Expired, tampered, revoked, not a user's (no token version), someone else's, not a
    // token at all: an error, never an allow.
    let expired = tg
        .user_token(&alice, |c| {
            c.iat -= 600;
            c.exp = c.iat + 300;
        })
        .await;
    let revoked_jti = uuid::Uuid::new_v4().to_string();
    let revoked = tg.user_token(&alice, |c| c.jti = revoked_jti.clone()).await;
    tg.state
        .store
        .revoke_access_token(
            &revoked_jti,
            time::OffsetDateTime::now_utc() + time::Duration::minutes(5),
        )
        .await
        .expect("revoke");
    let client_token = tg.user_token(&alice, |c| c.uv = None).await;
    let foreign = tg.user_token(&bob, |_| {}).await;
    for (token, code) in [
        (expired, "invalid_subject_token"),
        (last_char_changed(&stepped_up), "invalid_subject_token"),
        (revoked, "invalid_subject_token"),
        (client_token, "invalid_subject_token"),
        ("not-a-token".to_owned(), "invalid_subject_token"),
        (foreign.clone(), "subject_token_mismatch"),
    ] {
        let answer = decide(Some(token.clone()), json!({})).await;
        denied_with_error(&answer, Some(code));
        assert!(!answer.to_string().contains(&token), "{answer}");
    }
    // A disabled user's tokens stop at once.
    let carol = tg.user("carol", "carol@example.com", json!({})).await;
    let carols = tg.user_token(&carol, |_| {}).await;
    tg.admin_post(&format!("/admin/v1/users/{carol}/disable"), json!({}))
        .await;
    let answer = tg
        .post(
            &format!("{path}/evaluation"),
            &key,
            &[("x-subject-token", &carols)],
            &ask_record(&carol, "editor", json!({})),
        )
        .await;
    denied_with_error(answer.ok(), Some("invalid_subject_token"));
    // In a batch the token applies to each item: its subject's allowed, another's an error.
    let batch = tg
        .post(
            &format!("{path}/evaluations"),
            &key,
            &[("x-subject-token", &stepped_up)],
            &json!({
                "action": { "name": "editor" },
                "resource": { "type": "record", "id": "101" },
                "evaluations": [
                    { "subject": { "type": "user", "id": alice } },
                    { "subject": { "type": "user", "id": bob } },
                ],
            }),
        )
        .await;
    assert_eq!(batch.ok()["evaluations"][0], allowed);
    denied_with_error(
        &batch.ok()["evaluations"][1],
        Some("subject_token_mismatch"),
    );
    // Searches: the context for the named subject; a foreign token or one in a subject
    // search is a 400.
    let search = |which: &'static str, token: String, body: Value| {
        let (tg, key, path) = (&tg, &key, &path);
        async move {
            tg.post(
                &format!("{path}/search/{which}"),
                key,
                &[("x-subject-token", &token)],
                &body,
            )
            .await
        }
    };
    let action_search = json!({
        "subject": { "type": "user", "id": alice },
        "resource": { "type": "record", "id": "101" },
    });
    let answer = search("action", stepped_up.clone(), action_search.clone()).await;
    assert!(
        answer.ok()["results"]
            .as_array()
            .is_some_and(|r| r.contains(&json!({ "name": "editor" }))),
        "{}",
        answer.body
    );
    search("action", foreign, action_search)
        .await
        .error(StatusCode::BAD_REQUEST, "subject_token_mismatch");
    search(
        "subject",
        stepped_up,
        json!({
            "subject": { "type": "user" },
            "action": { "name": "editor" },
            "resource": { "type": "record", "id": "101" },
        }),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "invalid_request");
}

test_on_both_backends!(
    directory_attributes_reach_conditions,
    a_subject_token_carries_the_authentication_context,
    the_gateway_interop_file_passes,
    the_todo_interop_files_pass,
    stored_attributes_reach_conditions,
    the_attributes_api_refuses_what_it_must,
    the_certification_scenario_decides,
    batches_merge_defaults_and_stop_where_asked,
    searches_page,
    refusals_follow_the_spec,
    metadata_names_the_endpoints,
    an_action_map_renames_actions,
    decisions_are_explained_when_asked,
);
