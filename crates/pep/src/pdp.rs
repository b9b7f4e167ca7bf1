//! The decision point behind the layer: the [`DecisionPoint`] trait and its HTTP implementation
//! over trustgate's OpenFGA-compatible `POST /stores/{id}/check`. (The in-process one, over
//! `pdp::Pdp`, lives in `trustgate-server`.)
//!
//! Every failure to get a definite answer — unreachable, timeout, a non-200 status, an answer
//! without a boolean `allowed` — is an [`Unavailable`] error, which the layer answers 503. Never
//! an allow. No decision is cached: each request asks.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;
use trustgate_core::Secret;

/// The largest check answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// One question: may `subject` `relation` `object`?
#[derive(Debug, Clone, Copy)]
pub struct CheckQuery<'a> {
    /// `user:anne`, `service:ci`.
    pub subject: &'a str,
    /// The relation (the route's action).
    pub relation: &'a str,
    /// The object (the route's resource).
    pub object: &'a str,
    /// The request's id, for the PDP's own decision log.
    pub request_id: Option<&'a str>,
    /// The caller's address, for the PDP's own decision log.
    pub ip: Option<&'a str>,
}

/// The PDP could not give a definite answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the PDP could not answer: {0}")]
pub struct Unavailable(pub String);

/// Answers checks.
#[async_trait]
pub trait DecisionPoint: fmt::Debug + Send + Sync {
    /// `Ok(true)` allowed, `Ok(false)` a definite no, `Err` anything else.
    async fn check(&self, query: &CheckQuery<'_>) -> Result<bool, Unavailable>;
}

/// trustgate's `POST {base}/stores/{store_id}/check`, authenticated with an API key that is
/// a reader on the store.
#[derive(Clone)]
pub struct HttpDecisionPoint {
    inner: Arc<HttpInner>,
}

struct HttpInner {
    url: url::Url,
    api_key: Secret,
    model_id: Option<String>,
    http: reqwest::Client,
}

impl fmt::Debug for HttpDecisionPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDecisionPoint")
            .field("url", &self.inner.url.as_str())
            .field("model_id", &self.inner.model_id)
            .finish_non_exhaustive()
    }
}

impl HttpDecisionPoint {
    /// A client of the store `store_id` at `base` (trustgate's URL); `http` must carry a
    /// timeout (the layer answers 503 when it fires). `model_id`: pin a model, or the latest.
    pub fn new(
        base: &url::Url,
        store_id: &str,
        api_key: Secret,
        model_id: Option<String>,
        http: reqwest::Client,
    ) -> Result<Self, url::ParseError> {
        let url = base.join(&format!("stores/{store_id}/check"))?;
        Ok(HttpDecisionPoint {
            inner: Arc::new(HttpInner {
                url,
                api_key,
                model_id,
                http,
            }),
        })
    }
}

#[async_trait]
impl DecisionPoint for HttpDecisionPoint {
    async fn check(&self, q: &CheckQuery<'_>) -> Result<bool, Unavailable> {
        let inner = &self.inner;
        let mut body = json!({
            "tuple_key": { "user": q.subject, "relation": q.relation, "object": q.object },
        });
        if let (Some(model), Some(obj)) = (&inner.model_id, body.as_object_mut()) {
            obj.insert("authorization_model_id".into(), json!(model));
        }
        let mut request = inner
            .http
            .post(inner.url.clone())
            .bearer_auth(inner.api_key.expose())
            .json(&body);
        if let Some(id) = q.request_id {
            request = request.header("x-request-id", id);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Unavailable(format!("request failed: {e}")))?;
        let status = response.status();
        let answer = crate::http_util::read_bounded(response, MAX_ANSWER_BYTES)
            .await
            .map_err(Unavailable)?;
        if !status.is_success() {
            let code = serde_json::from_slice::<serde_json::Value>(&answer)
                .ok()
                .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned))
                .unwrap_or_default();
            return Err(Unavailable(format!("answered {status} {code}")));
        }
        serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.get("allowed").and_then(serde_json::Value::as_bool))
            .ok_or_else(|| Unavailable("answer without a boolean `allowed`".into()))
    }
}
