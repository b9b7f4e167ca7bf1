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
    assert_eq!(detail["reason"], "relation:viewer");
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
