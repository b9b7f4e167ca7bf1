//! In-process HTTP harness: the full router with all layers over a throwaway database, called
//! with `tower::ServiceExt::oneshot`, authenticated with a freshly registered admin token.

#![allow(dead_code)] // each test binary uses a different part

pub mod browser;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use trustgate_core::{Clock, SealingKey, Secret, SystemClock};
use trustgate_server::{AppState, Config, router};
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::Store;

/// A response: status, headers and the body as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Resp {
    /// The OpenFGA error code of an error body.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// The message of an error body.
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }

    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> &Value {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.raw)
        );
        &self.body
    }

    /// Asserts an OpenFGA error with `status` and `code`.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected error; body: {}",
            String::from_utf8_lossy(&self.raw)
        );
        assert!(
            !self.message().is_empty(),
            "error without message: {}",
            String::from_utf8_lossy(&self.raw)
        );
        assert_eq!(
            self.headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
    }
}

/// The services over `store`, with `token` registered as the bootstrap administrator's key the
/// way the product registers a configured `bootstrap_token`.
pub async fn start_with_admin(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    mut config: Config,
    secrets_key: SealingKey,
    token: &str,
) -> AppState {
    config.bootstrap_token = Some(Secret::new(token));
    let state = AppState::start(store, clock, config, secrets_key)
        .await
        .expect("app state");
    trustgate_server::bootstrap::ensure_admin(&state)
        .await
        .expect("register the admin token");
    state
}

/// The subject of the bootstrap administrator (`service:<its id>`).
pub async fn admin_subject(store: &dyn Store) -> String {
    let admin = store
        .find_service_account(trustgate_server::bootstrap::ADMIN_ACCOUNT)
        .await
        .expect("find")
        .expect("the admin account");
    format!("service:{}", admin.id)
}

/// The application under test.
pub struct Api {
    pub app: Router,
    pub token: String,
    pub state: AppState,
    pub db: TestDatabase,
    /// The secrets key the state was built with (a second replica must share it).
    pub secrets_key: trustgate_core::SealingKey,
}

impl Api {
    /// The router with the default configuration.
    pub async fn new(db: TestDatabase) -> Self {
        Self::with_config(db, Config::default()).await
    }

    /// The router with `config`.
    pub async fn with_config(db: TestDatabase, config: Config) -> Self {
        Self::with_clock(db, config, Arc::new(SystemClock)).await
    }

    /// The router with `config` and `clock`.
    pub async fn with_clock(db: TestDatabase, config: Config, clock: Arc<dyn Clock>) -> Self {
        let token = format!("tg_test_{}", uuid::Uuid::new_v4().simple());
        let secrets_key = SealingKey::generate();
        let state =
            start_with_admin(db.store.clone(), clock, config, secrets_key.clone(), &token).await;
        Self {
            app: router(state.clone()),
            token,
            state,
            db,
            secrets_key,
        }
    }

    /// Sends a request; `body` is sent as is.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
        authenticated: bool,
    ) -> Resp {
        let mut builder = Request::builder().method(method).uri(path);
        if authenticated {
            builder = builder.header("authorization", format!("Bearer {}", self.token));
        }
        if !body.is_empty()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            builder = builder.header("content-type", "application/json");
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(Body::from(body)).expect("request");
        let response = self
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let raw = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            raw,
        }
    }

    /// A request authenticated with `key` (a JSON body; `Value::Null`: none).
    pub async fn call_as(&self, key: &str, method: &str, path: &str, body: &Value) -> Resp {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).expect("json")
        };
        let bearer = format!("Bearer {key}");
        self.raw(method, path, bytes, &[("authorization", &bearer)], false)
            .await
    }

    /// An authenticated request with a JSON body (`Value::Null`: none).
    pub async fn call(&self, method: &str, path: &str, body: &Value) -> Resp {
        self.call_with(method, path, body, &[]).await
    }

    /// An authenticated request with a JSON body and extra headers.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Resp {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).expect("json")
        };
        self.raw(method, path, bytes, headers, true).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, &body).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, &Value::Null).await
    }

    /// Creates a store and returns its id.
    pub async fn create_store(&self, name: &str) -> String {
        let r = self
            .post("/stores", serde_json::json!({ "name": name }))
            .await;
        r.expect(StatusCode::CREATED)["id"]
            .as_str()
            .expect("store id")
            .to_owned()
    }

    /// Writes a model given in the DSL and returns its id.
    pub async fn write_dsl_model(&self, store: &str, dsl: &str) -> String {
        let model = trustgate_authz::dsl::parse(dsl).expect("model parses");
        let json = serde_json::to_value(&model).expect("model json");
        let r = self
            .post(&format!("/stores/{store}/authorization-models"), json)
            .await;
        r.expect(StatusCode::CREATED)["authorization_model_id"]
            .as_str()
            .expect("model id")
            .to_owned()
    }
}
