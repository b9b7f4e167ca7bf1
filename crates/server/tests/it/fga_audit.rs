//! Every check decision is audited: one `authorization_decision` event per Check and per
//! BatchCheck item in the audit trail (written by the batched writer), with principal, action,
//! resource, store, model, relation, user, decision, reason and request id, and readable through
//! `/admin/v1/audit`.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

use crate::common::Api;

test_on_both_backends!(check_decisions_are_audited);

async fn check_decisions_are_audited(db: TestDatabase) {
    let api = Api::new(db).await;
    let store = api.create_store("audit").await;
    let model = api
        .write_dsl_model(
            &store,
            "model\n  schema 1.1\ntype user\ntype document\n  relations\n    define viewer: [user]\n",
        )
        .await;
    api.post(
        &format!("/stores/{store}/write"),
        json!({"writes": {"tuple_keys": [{"object": "document:1", "relation": "viewer", "user": "user:anne"}]}}),
    )
    .await
    .expect(StatusCode::OK);

    let r = api
        .call_with(
            "POST",
            &format!("/stores/{store}/check"),
            &json!({"tuple_key": {"object": "document:1", "relation": "viewer", "user": "user:anne"}}),
            &[("x-request-id", "req-audit-1")],
        )
        .await;
    assert_eq!(r.expect(StatusCode::OK)["allowed"], json!(true));
    api.post(
        &format!("/stores/{store}/batch-check"),
        json!({"checks": [
            {"tuple_key": {"object": "document:1", "relation": "viewer", "user": "user:bob"}, "correlation_id": "a"},
            {"tuple_key": {"object": "nodoc:1", "relation": "viewer", "user": "user:bob"}, "correlation_id": "b"},
        ]}),
    )
    .await
    .expect(StatusCode::OK);

    assert!(api.state.auditor.flush(Duration::from_secs(10)).await);
    let listed = api
        .get("/admin/v1/audit?kind=authorization_decision&limit=10")
        .await;
    let mut events: Vec<Value> = listed.expect(StatusCode::OK)["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    events.reverse();
    assert_eq!(events.len(), 3, "{events:#?}");
    let first = &events[0];
    assert_eq!(first["kind"], "authorization_decision");
    assert_eq!(first["outcome"], "success");
    assert_eq!(first["request_id"], "req-audit-1");
    assert!(
        first["actor"]
            .as_str()
            .is_some_and(|p| p.starts_with("service:")),
        "{first}"
    );
    let detail = &first["detail"];
    assert_eq!(detail["action"], "check");
    assert_eq!(detail["decision"], "allow");
    assert_eq!(first["resource"], "document:1");
    assert_eq!(first["chain"], "streamed");
    assert_eq!(detail["reason"], "allowed: document:1#viewer@user:anne");
    assert_eq!(detail["store"], json!(store));
    assert_eq!(detail["model"], json!(model));
    assert_eq!(detail["relation"], "viewer");
    assert_eq!(detail["user"], "user:anne");

    assert_eq!(events[1]["outcome"], "denied");
    assert_eq!(events[1]["detail"]["decision"], "deny");
    assert_eq!(events[1]["detail"]["user"], "user:bob");
    assert_eq!(events[2]["outcome"], "failure");
    assert_eq!(events[2]["detail"]["decision"], "error");
    assert_eq!(events[2]["detail"]["reason"], "validation_error");
    assert_eq!(events[2]["resource"], "nodoc:1");

    // The writer's progress is a metric.
    let metrics = api.raw("GET", "/metrics", Vec::new(), &[], false).await;
    let metrics = String::from_utf8_lossy(&metrics.raw);
    assert!(
        metrics.contains("audit_events_written_total"),
        "no audit metric in {metrics}"
    );
}

test_on_both_backends!(explanations_answer_why_and_are_audited_with_their_reason);

/// `POST /stores/{id}/explain` and Check's `trace`: the reason and the steps, for a reader of
/// the store only; the audit reason is the same short form.
async fn explanations_answer_why_and_are_audited_with_their_reason(db: TestDatabase) {
    let api = Api::new(db).await;
    let store = api.create_store("explain").await;
    api.write_dsl_model(
        &store,
        "model\n  schema 1.1\ntype user\ntype group\n  relations\n    define member: [user]\n\
         type document\n  relations\n    define blocked: [user]\n    \
         define viewer: [user with in_region, group#member]\n    \
         define can_view: viewer but not blocked\n\n\
         condition in_region(region: string) {\n  region == \"eu\"\n}\n",
    )
    .await;
    api.post(
        &format!("/stores/{store}/write"),
        json!({"writes": {"tuple_keys": [
            {"object": "group:eng", "relation": "member", "user": "user:anne"},
            {"object": "document:1", "relation": "viewer", "user": "group:eng#member"},
            {"object": "document:1", "relation": "blocked", "user": "user:bob"},
            {"object": "group:eng", "relation": "member", "user": "user:bob"},
            {"object": "document:1", "relation": "viewer", "user": "user:carl",
             "condition": {"name": "in_region"}},
        ]}}),
    )
    .await
    .expect(StatusCode::OK);
    let explain = |user: &str, context: Value| {
        json!({"tuple_key": {"object": "document:1", "relation": "can_view", "user": user},
               "context": context})
    };

    let r = api
        .call_with(
            "POST",
            &format!("/stores/{store}/explain"),
            &explain("user:anne", json!({})),
            &[("x-request-id", "req-explain-1")],
        )
        .await;
    let body = r.expect(StatusCode::OK);
    assert_eq!(body["allowed"], true);
    assert_eq!(
        body["reason"],
        "allowed: document:1#viewer@group:eng#member > group:eng#member@user:anne"
    );
    assert_eq!(body["explanation"]["kind"], "relation");
    assert_eq!(body["explanation"]["target"], "document:1#can_view");
    assert_eq!(body["explanation"]["steps"][0]["kind"], "exclusion");
    assert_eq!(body["truncated"], false);

    let body = api
        .post(
            &format!("/stores/{store}/explain"),
            explain("user:bob", json!({})),
        )
        .await;
    let body = body.expect(StatusCode::OK);
    assert_eq!(body["allowed"], false);
    assert_eq!(
        body["reason"],
        "denied: excluded by document:1#blocked@user:bob"
    );
    assert_eq!(
        body["explanation"]["steps"][0]["note"],
        "excluded: the subtracted operand holds"
    );

    // A condition false: its values; a condition that cannot be evaluated: explained, with
    // the error Check would give.
    let body = api
        .post(
            &format!("/stores/{store}/explain"),
            explain("user:carl", json!({"region": "us"})),
        )
        .await;
    assert_eq!(
        body.expect(StatusCode::OK)["reason"],
        r#"denied: condition in_region false on document:1#viewer@user:carl with {"region":"us"}"#
    );
    let body = api
        .post(
            &format!("/stores/{store}/explain"),
            explain("user:carl", json!({})),
        )
        .await;
    let body = body.expect(StatusCode::OK);
    assert_eq!(body["allowed"], false);
    assert_eq!(body["error"]["input_error"], "validation_error");
    assert_eq!(body["explanation"]["result"], "error");
    api.post(
        &format!("/stores/{store}/check"),
        explain("user:carl", json!({})),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");

    // An invalid request is refused as Check refuses it.
    api.post(
        &format!("/stores/{store}/explain"),
        json!({"tuple_key": {"object": "nodoc:1", "relation": "viewer", "user": "user:anne"}}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "validation_error");

    // Check's `trace` answers the short reason in `resolution`; without it, nothing.
    let mut traced = explain("user:bob", json!({}));
    traced["trace"] = json!(true);
    let body = api.post(&format!("/stores/{store}/check"), traced).await;
    let body = body.expect(StatusCode::OK);
    assert_eq!(body["allowed"], false);
    assert_eq!(
        body["resolution"],
        "denied: excluded by document:1#blocked@user:bob"
    );
    let body = api
        .post(
            &format!("/stores/{store}/check"),
            explain("user:bob", json!({})),
        )
        .await;
    assert_eq!(body.expect(StatusCode::OK)["resolution"], "");

    // An explanation shows tuples: a key that reads another store only is refused.
    let other = api.create_store("elsewhere").await;
    let account = api
        .post(
            "/admin/v1/service-accounts",
            json!({"name": "explain-elsewhere"}),
        )
        .await;
    let account = account.expect(StatusCode::CREATED)["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let role = format!("store:{other}:reader");
    api.post(
        "/admin/v1/roles",
        json!({"subject": format!("service:{account}"), "role": role}),
    )
    .await
    .expect(StatusCode::OK);
    let key = api
        .post(
            &format!("/admin/v1/service-accounts/{account}/api-keys"),
            json!({"scopes": [role]}),
        )
        .await;
    let key = key.expect(StatusCode::CREATED)["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let refused = api
        .call_as(
            &key,
            "POST",
            &format!("/stores/{store}/explain"),
            &explain("user:anne", json!({})),
        )
        .await;
    refused.expect_error(StatusCode::FORBIDDEN, "permission_denied");

    // Explanations are decisions: audited, with the same short reason.
    assert!(api.state.auditor.flush(Duration::from_secs(10)).await);
    let listed = api
        .get("/admin/v1/audit?kind=authorization_decision&limit=50")
        .await;
    let events = listed.expect(StatusCode::OK)["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let explained = events
        .iter()
        .find(|e| e["request_id"] == "req-explain-1")
        .expect("the explanation is audited");
    assert_eq!(
        explained["detail"]["reason"],
        "allowed: document:1#viewer@group:eng#member > group:eng#member@user:anne"
    );
}
