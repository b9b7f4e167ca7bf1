//! The decision point behind the layer: the [`DecisionPoint`] trait and its HTTP implementation
//! over trustgate's OpenFGA-compatible `POST /stores/{id}/check`. (The in-process one, over
//! `pdp::Pdp`, lives in `trustgate-server`.)
//!
//! Every failure to get a definite answer — unreachable, timeout, a non-200 status, an answer
//! without a boolean `allowed` — is an [`Unavailable`] error, which the layer answers 503. Never
//! an allow. Decisions are cached only by wrapping a decision point in a
//! [`crate::DecisionCache`], which follows the store's revision
//! ([`HttpDecisionPoint::follow_revisions`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::watch;
use trustgate_core::Secret;

use crate::decision_cache::{FEED_DEAD_AFTER, LiveRevision, Revision, RevisionFeed};

/// The largest check answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// The header carrying trustgate's consistency tokens, both ways.
pub const CONSISTENCY_HEADER: &str = "x-consistency-token";

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
    /// A consistency token the answer must reflect (the request's `X-Consistency-Token`: the
    /// caller wrote a tuple and wants its own write seen). A query with one is never answered
    /// from a cache.
    pub consistency_token: Option<&'a str>,
    /// The model to ask when the decision point pins none (a [`crate::DecisionCache`] names
    /// the latest model of the revision its entries belong to); `None`: the latest.
    pub model_id: Option<&'a str>,
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
    watch_url: url::Url,
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
        let watch_url = base.join(&format!("stores/{store_id}/watch"))?;
        Ok(HttpDecisionPoint {
            inner: Arc::new(HttpInner {
                url,
                watch_url,
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
        let model = inner.model_id.as_deref().or(q.model_id);
        if let (Some(model), Some(obj)) = (model, body.as_object_mut()) {
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
        if let Some(token) = q.consistency_token {
            request = request.header(CONSISTENCY_HEADER, token);
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

/// The longest line of the revision feed read (an event is one short JSON line).
const MAX_FEED_LINE: usize = 16 * 1024;
/// Reconnection backoff of the revision feed.
const FEED_BACKOFF_MIN: Duration = Duration::from_millis(100);
const FEED_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One event of `GET /stores/{id}/watch`: the store's revision, or trustgate's credential
/// epoch.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum WatchEvent {
    Revision {
        consistency_token: String,
        #[serde(default)]
        authorization_model_id: Option<String>,
    },
    Credentials {
        credential_epoch: i64,
    },
}

/// The senders a feed connection writes.
struct FeedSenders {
    revision: watch::Sender<Option<Arc<LiveRevision>>>,
    credentials: watch::Sender<Option<i64>>,
}

impl HttpDecisionPoint {
    /// Follows the store's revision (and trustgate's credential epoch, for
    /// [`Introspector::follow_revocations`](crate::Introspector::follow_revocations)) over
    /// `GET {base}/stores/{id}/watch` (server-sent events, the same API key) in a background
    /// task, reconnecting with backoff. The feed is down (`None`) whenever the stream is not
    /// open or has been silent for [`FEED_DEAD_AFTER`].
    /// `connect_timeout` bounds each connection attempt. Must run inside a tokio runtime.
    pub fn follow_revisions(&self, connect_timeout: Duration) -> Result<RevisionFeed, Unavailable> {
        // The stream is long-lived: no overall timeout, only the connect timeout and the
        // heartbeat deadline below.
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .tcp_keepalive(Duration::from_secs(15))
            .build()
            .map_err(|e| Unavailable(format!("watch client: {e}")))?;
        let (revision, rx) = watch::channel(None);
        let (credentials, credentials_rx) = watch::channel(None);
        let tx = FeedSenders {
            revision,
            credentials,
        };
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let mut generation = 0u64;
            let mut backoff = FEED_BACKOFF_MIN;
            loop {
                match follow_once(&inner, &http, &tx, &mut generation).await {
                    Ok(()) => backoff = FEED_BACKOFF_MIN,
                    Err(why) => {
                        tracing::warn!(target: "trustgate_pep", url = %inner.watch_url, %why, "revision feed down; decisions are not cached until it is back");
                    }
                }
                tx.revision.send_replace(None);
                tx.credentials.send_replace(None);
                if tx.revision.is_closed() && tx.credentials.is_closed() {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(FEED_BACKOFF_MAX);
            }
        });
        Ok(RevisionFeed::new(rx, credentials_rx, Some(task)))
    }
}

/// One connection of the feed: `Ok` when the server ended the stream after at least one event
/// (a restart, a shutdown), `Err` otherwise.
async fn follow_once(
    inner: &HttpInner,
    http: &reqwest::Client,
    tx: &FeedSenders,
    generation: &mut u64,
) -> Result<(), String> {
    let mut response = tokio::time::timeout(
        FEED_DEAD_AFTER,
        http.get(inner.watch_url.clone())
            .bearer_auth(inner.api_key.expose())
            .header(http::header::ACCEPT, "text/event-stream")
            .send(),
    )
    .await
    .map_err(|_| "no answer".to_owned())?
    .map_err(|e| format!("request failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let mut line: Vec<u8> = Vec::new();
    let mut events = 0u64;
    loop {
        let chunk = tokio::time::timeout(FEED_DEAD_AFTER, response.chunk())
            .await
            .map_err(|_| "no heartbeat".to_owned())?
            .map_err(|e| format!("stream failed: {e}"))?;
        let Some(chunk) = chunk else {
            return if events > 0 {
                Ok(())
            } else {
                Err("the stream ended before its first event".into())
            };
        };
        for &byte in chunk.iter() {
            if byte != b'\n' {
                if line.len() >= MAX_FEED_LINE {
                    return Err("a line of the stream is too long".into());
                }
                line.push(byte);
                continue;
            }
            // Only `data:` lines matter (each of trustgate's events is one JSON line); the
            // `event:` name, comments (heartbeats) and blank lines only prove liveness.
            let text = line.strip_suffix(b"\r").unwrap_or(&line);
            if let Some(data) = text.strip_prefix(b"data:") {
                let event: WatchEvent = serde_json::from_slice(data.trim_ascii())
                    .map_err(|e| format!("a malformed event: {e}"))?;
                events += 1;
                match event {
                    WatchEvent::Revision {
                        consistency_token,
                        authorization_model_id,
                    } => {
                        *generation += 1;
                        tx.revision.send_replace(Some(Arc::new(LiveRevision {
                            generation: *generation,
                            revision: Revision {
                                consistency_token,
                                latest_model_id: authorization_model_id,
                            },
                        })));
                    }
                    WatchEvent::Credentials { credential_epoch } => {
                        tx.credentials.send_if_modified(|known| {
                            let moved = *known != Some(credential_epoch);
                            *known = Some(credential_epoch);
                            moved
                        });
                    }
                }
            }
            line.clear();
        }
    }
}
