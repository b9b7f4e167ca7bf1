//! Every check decision is audited: one `trustgate::audit` event per Check and per BatchCheck
//! item, with principal, store, object, relation, user, decision and request id.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use serde_json::{Value, json};
use tracing_subscriber::fmt::MakeWriter;
use trustgate_store::testing::TestDatabase;

use common::Api;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn audit_events(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "trustgate::audit")
            .collect()
    }
}

// A current-thread runtime: the handlers run on this thread, under the scoped subscriber.
#[tokio::test]
async fn check_decisions_are_audited() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let api = Api::new(TestDatabase::sqlite().await).await;
    let store = api.create_store("audit").await;
    api.write_dsl_model(
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

    let events = captured.audit_events();
    assert_eq!(events.len(), 3, "{events:#?}");
    let first = &events[0];
    assert_eq!(first["decision"], "allow");
    assert_eq!(first["store"], json!(store));
    assert_eq!(first["object"], "document:1");
    assert_eq!(first["relation"], "viewer");
    assert_eq!(first["user"], "user:anne");
    assert_eq!(first["request_id"], "req-audit-1");
    assert!(
        first["principal"]
            .as_str()
            .is_some_and(|p| p.starts_with("service:")),
        "{first}"
    );
    assert!(
        first["model"]
            .as_str()
            .is_some_and(trustgate_core::id::is_ulid),
        "{first}"
    );
    assert_eq!(events[1]["decision"], "deny");
    assert_eq!(events[2]["decision"], "error");
    assert_eq!(events[2]["reason"], "validation_error");
}
