//! Outbound event delivery: audit events to webhook subscribers, signed per Standard Webhooks,
//! and OpenID Connect back-channel logout tokens to clients, through one durable outbox.
//!
//! ```text
//! Auditor ─(AuditTap::offer, never waits)─► bounded queue ─► batcher: match subscriptions,
//!   │ full: dropped, counted in                               one enqueue per batch
//!   │ webhook_events_dropped_total{reason="queue_full"}              │
//! logout ─(Webhooks::enqueue_backchannel, awaited)──────────────────►│
//!                                                                    ▼
//!                                            outbox (WebhookStore: webhook_deliveries)
//!                                                                    │ claim under a lease
//!                                                                    ▼ (SKIP LOCKED)
//!   worker on every replica: POST with a timeout; 2xx ─► delivered; else retry after the
//!   backoff schedule (with jitter) until max_attempts, then dead ─► admin redeliver
//! ```
//!
//! - [`Webhooks`] is the service: subscriptions (a fresh `whsec_` secret shown once at
//!   creation and at rotation, stored sealed with the server's secrets key), the tap, the
//!   back-channel entry and the [`worker`].
//! - [`target`]: which URLs deliveries may reach (https, or http to loopback; never link-local
//!   or metadata addresses, checked again at connect time by the resolver).
//! - [`worker`]: claims, sends, schedules retries.
//!
//! What a subscriber receives: `POST` with `content-type: application/json`, the Standard
//! Webhooks headers (`webhook-id` = the message id, the same on every retry;
//! `webhook-timestamp`; `webhook-signature`, signed with every secret still in its rotation
//! overlap) and the body `{"type": <audit kind>, "timestamp": <RFC 3339>, "data": <the audit
//! event>}`. Receivers verify with `trustgate_pep::webhooks::Verifier`.
//!
//! Back-channel logout deliveries are not signed this way: their body is the form
//! `logout_token=<JWT>` of OpenID Connect Back-Channel Logout 1.0 §2.5, and the token is its own
//! signature. A 2xx is success; anything else is retried on the same schedule.
//!
//! Loss policy, as for the audit trail's streamed path: offering an event never waits; when the
//! queue is full the event is not delivered and is counted; a batch the store refuses is counted
//! with `reason="store_error"`. Once in the outbox a delivery survives restarts.

pub mod target;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Notify, mpsc};
use trustgate_audit::{AuditTap, Auditor};
use trustgate_core::id::new_ulid;
use trustgate_core::{Clock, SealingKey};
use trustgate_pep::webhooks::WebhookSecret;
use trustgate_store_api::{
    AuditEvent, DeliveryKind, NewDelivery, NewSubscription, StoreError, Subscription, WebhookStore,
};

pub use target::{TargetError, check_url};

/// The purpose webhook secrets are sealed for.
pub const SECRET_PURPOSE: &str = "webhook-secret";
/// Key bytes of a generated secret.
pub const SECRET_BYTES: usize = 32;
/// The longest rotation overlap: a year.
pub const MAX_OVERLAP: Duration = Duration::from_secs(366 * 24 * 3600);
/// How long the batcher keeps the subscription list before reading it again (changes made on
/// this replica are seen at once; on others within this).
const SUBSCRIPTIONS_TTL: Duration = Duration::from_secs(5);

/// Delivery settings (`[webhooks]` in the server's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Allow `http://` URLs to non-loopback hosts. Off: webhook bodies are audit events, and
    /// only TLS keeps them (and the signature's freshness) from the network.
    pub allow_http: bool,
    /// Attempts before a delivery is dead-lettered (1 to 50).
    pub max_attempts: u32,
    /// The waits after each failed attempt, in milliseconds (1 to 32 entries, each 10 to
    /// 86400000); the last repeats. Each wait gets ±20 % jitter.
    pub retry_delays_ms: Vec<u64>,
    /// How long one attempt may take, in milliseconds (100 to 60000).
    pub timeout_ms: u64,
    /// How often an idle worker looks for due deliveries, in milliseconds (10 to 60000).
    pub poll_interval_ms: u64,
    /// Events waiting to be matched and queued (100 to 1000000); beyond it they are dropped and
    /// counted.
    pub queue_capacity: usize,
    /// Attempts in flight at once per replica (1 to 256).
    pub concurrency: usize,
    /// Hours delivered messages are kept in the outbox (1 to 8760).
    pub delivered_retention_hours: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            max_attempts: 8,
            retry_delays_ms: vec![
                5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 7_200_000,
            ],
            timeout_ms: 10_000,
            poll_interval_ms: 1_000,
            queue_capacity: 10_000,
            concurrency: 8,
            delivered_retention_hours: 24,
        }
    }
}

impl WebhooksConfig {
    /// Refuses values outside the documented bounds, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |what: &str| Err(format!("webhooks.{what}"));
        if !(1..=50).contains(&self.max_attempts) {
            return bad("max_attempts: must be between 1 and 50");
        }
        if self.retry_delays_ms.is_empty()
            || self.retry_delays_ms.len() > 32
            || self
                .retry_delays_ms
                .iter()
                .any(|d| !(10..=86_400_000).contains(d))
        {
            return bad(
                "retry_delays_ms: 1 to 32 waits, each between 10 and 86400000 milliseconds",
            );
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            return bad("timeout_ms: must be between 100 and 60000");
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            return bad("poll_interval_ms: must be between 10 and 60000");
        }
        if !(100..=1_000_000).contains(&self.queue_capacity) {
            return bad("queue_capacity: must be between 100 and 1000000");
        }
        if !(1..=256).contains(&self.concurrency) {
            return bad("concurrency: must be between 1 and 256");
        }
        if !(1..=8760).contains(&self.delivered_retention_hours) {
            return bad("delivered_retention_hours: must be between 1 and 8760");
        }
        Ok(())
    }
}

/// Why a webhook operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is refused by the policy of [`target`].
    #[error("{0}")]
    Target(#[from] TargetError),
    /// An event kind that does not exist.
    #[error("unknown event kind {0}")]
    UnknownKind(String),
    /// The store failed or refused.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A subscription and its new secret in text form: shown once.
#[derive(Debug)]
pub struct Issued {
    /// The subscription as stored.
    pub subscription: Subscription,
    /// `whsec_…`, for the receiver's verifier.
    pub secret: WebhookSecret,
}

/// A subscription to create.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionSpec {
    /// Where to post.
    pub url: String,
    /// Audit kinds to receive (their stored spelling); empty for all.
    pub kinds: Vec<String>,
    /// What it is for.
    pub description: String,
}

struct Shared {
    store: Arc<dyn WebhookStore>,
    clock: Arc<dyn Clock>,
    sealing: SealingKey,
    config: WebhooksConfig,
    /// Wakes the worker when something was queued on this replica.
    wake: Notify,
    /// The subscription list the batcher matches against, and when it was read.
    subscriptions: Mutex<Option<(tokio::time::Instant, Arc<Vec<Subscription>>)>>,
}

/// The webhook service (see the crate documentation). Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<Shared>,
    queue: mpsc::Sender<AuditEvent>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// The service over `store`; spawns the batcher that turns tapped events into deliveries
    /// on the current tokio runtime (it ends when the last clone is dropped). Start the
    /// [`worker`] separately.
    pub fn new(
        store: Arc<dyn WebhookStore>,
        clock: Arc<dyn Clock>,
        sealing: SealingKey,
        config: WebhooksConfig,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let shared = Arc::new(Shared {
            store,
            clock,
            sealing,
            config,
            wake: Notify::new(),
            subscriptions: Mutex::new(None),
        });
        tokio::spawn(batch_events(Arc::downgrade(&shared), receiver));
        Self { shared, queue }
    }

    /// Taps `auditor`: every event it stores from now on is offered for delivery.
    pub fn tap(&self, auditor: &Auditor) -> bool {
        auditor.set_tap(Arc::new(Tap {
            queue: self.queue.clone(),
        }))
    }

    /// The settings.
    pub fn config(&self) -> &WebhooksConfig {
        &self.shared.config
    }

    /// Creates a subscription with a fresh secret (returned this once). `kinds` must be audit
    /// kinds.
    pub async fn create(&self, spec: &SubscriptionSpec) -> Result<Issued, WebhookError> {
        let url = check_url(&spec.url, self.shared.config.allow_http)?;
        for kind in &spec.kinds {
            if trustgate_audit::AuditKind::parse(kind).is_none() {
                return Err(WebhookError::UnknownKind(kind.clone()));
            }
        }
        let now = self.shared.clock.now();
        let secret = generate_secret();
        let sealed = self.shared.sealing.seal(SECRET_PURPOSE, secret.as_bytes());
        let id = new_ulid(now);
        let subscription = self
            .shared
            .store
            .create_subscription(
                &NewSubscription {
                    id: &id,
                    url: url.as_str(),
                    kinds: &spec.kinds,
                    description: &spec.description,
                    enabled: true,
                    sealed_secret: &sealed,
                },
                now,
            )
            .await?;
        self.forget_subscriptions();
        Ok(Issued {
            subscription,
            secret,
        })
    }

    /// Rotates a subscription's secret: the new one (returned this once) signs from now on,
    /// the current ones for `overlap` more (at most [`MAX_OVERLAP`]). `None` if there is no such subscription.
    pub async fn rotate(
        &self,
        id: &str,
        overlap: Duration,
    ) -> Result<Option<Issued>, WebhookError> {
        let now = self.shared.clock.now();
        let secret = generate_secret();
        let sealed = self.shared.sealing.seal(SECRET_PURPOSE, secret.as_bytes());
        // Bounded so the expiry is always a representable time.
        let overlap = overlap.min(MAX_OVERLAP);
        let until = now + time::Duration::try_from(overlap).unwrap_or(time::Duration::ZERO);
        let rotated = self
            .shared
            .store
            .rotate_subscription_secret(id, &sealed, until, now)
            .await?;
        self.forget_subscriptions();
        Ok(rotated.map(|subscription| Issued {
            subscription,
            secret,
        }))
    }

    /// Deletes a subscription and its queued deliveries.
    pub async fn delete(&self, id: &str) -> Result<bool, WebhookError> {
        let deleted = self.shared.store.delete_subscription(id).await?;
        self.forget_subscriptions();
        Ok(deleted)
    }

    /// Queues back-channel logout tokens (OIDC Back-Channel Logout §2.5) for their clients:
    /// `(client_id, backchannel_logout_uri, logout_token)`. Durable when this returns; the
    /// worker posts them with the same retries as webhooks.
    pub async fn enqueue_backchannel(
        &self,
        notices: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        if notices.is_empty() {
            return Ok(());
        }
        let now = self.shared.clock.now();
        let ids: Vec<String> = notices.iter().map(|_| message_id(now)).collect();
        let deliveries: Vec<NewDelivery<'_>> = notices
            .iter()
            .zip(&ids)
            .map(|((client_id, uri, token), id)| NewDelivery {
                id,
                kind: DeliveryKind::BackchannelLogout,
                subscription_id: None,
                target: client_id,
                url: uri,
                payload: token,
            })
            .collect();
        self.shared
            .store
            .enqueue_deliveries(&deliveries, now)
            .await?;
        self.shared.wake.notify_one();
        Ok(())
    }

    fn forget_subscriptions(&self) {
        *self.shared.subscriptions.lock() = None;
    }
}

/// A fresh secret of [`SECRET_BYTES`] random bytes.
fn generate_secret() -> WebhookSecret {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    WebhookSecret::from(bytes)
}

/// A message id: `msg_` and a ULID.
fn message_id(now: OffsetDateTime) -> String {
    format!("msg_{}", new_ulid(now))
}

/// The tap on the auditor: queues, never waits.
#[derive(Debug)]
struct Tap {
    queue: mpsc::Sender<AuditEvent>,
}

impl AuditTap for Tap {
    fn offer(&self, event: &AuditEvent) {
        if let Err(err) = self.queue.try_send(event.clone()) {
            let reason = match err {
                mpsc::error::TrySendError::Full(_) => "queue_full",
                mpsc::error::TrySendError::Closed(_) => "closed",
            };
            metrics::counter!("webhook_events_dropped_total", "reason" => reason).increment(1);
        }
    }
}

/// The most events matched and queued in one store call.
const MAX_BATCH: usize = 500;

/// Takes tapped events in batches, matches them against the subscriptions and queues one
/// delivery per (event, subscription) in one store call.
async fn batch_events(shared: std::sync::Weak<Shared>, mut receiver: mpsc::Receiver<AuditEvent>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let events = batch.len();
        if let Err(e) = queue_batch(&shared, &batch).await {
            tracing::error!(error = %e, events, "cannot queue webhook deliveries");
            metrics::counter!("webhook_events_dropped_total", "reason" => "store_error")
                .increment(u64::try_from(events).unwrap_or(u64::MAX));
        }
        batch.clear();
    }
}

async fn subscriptions(shared: &Shared) -> Result<Arc<Vec<Subscription>>, StoreError> {
    if let Some((read_at, list)) = shared.subscriptions.lock().as_ref()
        && read_at.elapsed() < SUBSCRIPTIONS_TTL
    {
        return Ok(Arc::clone(list));
    }
    let list = Arc::new(shared.store.list_subscriptions().await?);
    *shared.subscriptions.lock() = Some((tokio::time::Instant::now(), Arc::clone(&list)));
    Ok(list)
}

async fn queue_batch(shared: &Shared, events: &[AuditEvent]) -> Result<(), StoreError> {
    let subscriptions = subscriptions(shared).await?;
    if subscriptions.is_empty() {
        return Ok(());
    }
    let now = shared.clock.now();
    let mut rows: Vec<(String, &Subscription, String)> = Vec::new();
    for event in events {
        let wanting: Vec<&Subscription> = subscriptions
            .iter()
            .filter(|s| s.wants(&event.kind))
            .collect();
        if wanting.is_empty() {
            continue;
        }
        let body = event_body(event).to_string();
        for subscription in wanting {
            rows.push((message_id(now), subscription, body.clone()));
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let deliveries: Vec<NewDelivery<'_>> = rows
        .iter()
        .map(|(id, subscription, body)| NewDelivery {
            id,
            kind: DeliveryKind::Webhook,
            subscription_id: Some(&subscription.id),
            target: &subscription.id,
            url: &subscription.url,
            payload: body,
        })
        .collect();
    for chunk in deliveries.chunks(MAX_BATCH) {
        shared.store.enqueue_deliveries(chunk, now).await?;
    }
    metrics::counter!("webhook_deliveries_queued_total")
        .increment(u64::try_from(deliveries.len()).unwrap_or(u64::MAX));
    shared.wake.notify_one();
    Ok(())
}

/// The body of a webhook for an audit event: `{"type", "timestamp", "data"}`.
pub fn event_body(event: &AuditEvent) -> Value {
    let at = event.at.format(&Rfc3339).map_or(Value::Null, Value::from);
    json!({
        "type": event.kind,
        "timestamp": at,
        "data": {
            "id": event.id,
            "at": at,
            "chain": event.chain.as_str(),
            "kind": event.kind,
            "outcome": event.outcome,
            "actor": event.actor,
            "user_id": event.user_id,
            "resource": event.resource,
            "ip": event.ip,
            "user_agent": event.user_agent,
            "request_id": event.request_id,
            "detail": event.detail,
        },
    })
}
