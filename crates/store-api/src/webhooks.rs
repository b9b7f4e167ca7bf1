//! Outbound event delivery: webhook subscriptions and the outbox of deliveries.
//!
//! A subscription is a URL, the audit event kinds it wants (none listed: all), and its signing
//! secrets. Secrets are HMAC keys the server must recover to sign, so they arrive **sealed**
//! (encrypted) by the caller; the store never sees them in the clear. During a rotation a
//! subscription has several secrets, each with its own expiry.
//!
//! The outbox holds one row per message to deliver: a Standard Webhooks event for a
//! subscription, or an OpenID Connect back-channel logout token for a client. Workers on every
//! replica [`claim`](WebhookStore::claim_deliveries) due rows under a lease: a claimed row is
//! invisible to other claims until its lease ends, and only the holder of the lease token can
//! [`complete`](WebhookStore::complete_delivery) the attempt, so two replicas never deliver the
//! same attempt at once, and a worker that died mid-attempt is replaced when its lease ends.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::StoreError;

/// The most subscriptions a deployment may have.
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// The most secrets one subscription holds at once (the current one and those still in their
/// rotation overlap).
pub const MAX_SECRETS: usize = 8;

/// A signing secret as stored: sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// The sealed key bytes.
    pub sealed: Vec<u8>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it stops being used to sign; `None` while it is the current secret.
    pub expires_at: Option<OffsetDateTime>,
}

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Its id (a ULID).
    pub id: String,
    /// Where events are posted.
    pub url: String,
    /// The audit event kinds it receives; empty means every kind.
    pub kinds: Vec<String>,
    /// What it is for.
    pub description: String,
    /// Whether events are queued for it.
    pub enabled: bool,
    /// Its secrets, newest first (expired ones are dropped at the next rotation).
    pub secrets: Vec<StoredSecret>,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

impl Subscription {
    /// Whether it wants events of `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.enabled && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
    }

    /// The secrets that sign at `now`: the current one and those whose overlap has not ended.
    pub fn signing_secrets(&self, now: OffsetDateTime) -> impl Iterator<Item = &StoredSecret> {
        self.secrets
            .iter()
            .filter(move |s| s.expires_at.is_none_or(|at| at > now))
    }
}

/// A subscription to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSubscription<'a> {
    /// Its id (a ULID).
    pub id: &'a str,
    /// The URL (checked by the caller: scheme, host).
    pub url: &'a str,
    /// The kinds it receives; empty for all.
    pub kinds: &'a [String],
    /// What it is for.
    pub description: &'a str,
    /// Whether events are queued for it.
    pub enabled: bool,
    /// Its first secret, sealed.
    pub sealed_secret: &'a [u8],
}

/// How a delivery is sent: the format belongs to the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryKind {
    /// A JSON body signed per Standard Webhooks with the subscription's secrets.
    Webhook,
    /// An OpenID Connect Back-Channel Logout 1.0 §2.5 form POST of `logout_token`.
    BackchannelLogout,
}

impl DeliveryKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Webhook => "webhook",
            DeliveryKind::BackchannelLogout => "backchannel_logout",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(DeliveryKind::Webhook),
            "backchannel_logout" => Some(DeliveryKind::BackchannelLogout),
            _ => None,
        }
    }
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting for its next attempt (or being attempted under a lease).
    Pending,
    /// A 2xx answered it.
    Delivered,
    /// Its attempts ran out: the dead-letter list, until redelivered.
    Dead,
}

impl DeliveryState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "dead" => Some(DeliveryState::Dead),
            _ => None,
        }
    }
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message id (`msg_<ULID>`), the same on every attempt: receivers deduplicate on it.
    pub id: String,
    /// The format.
    pub kind: DeliveryKind,
    /// The subscription it is for (webhooks), or `None` (back-channel logout).
    pub subscription_id: Option<String>,
    /// Who it is for, for operators: the subscription id or the OAuth client id.
    pub target: String,
    /// Where it is posted.
    pub url: String,
    /// What is posted: the JSON body of a webhook, the logout token of a back-channel logout.
    pub payload: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Where it is.
    pub state: DeliveryState,
    /// When it is next due (pending), or when it was delivered or given up.
    pub next_attempt_at: OffsetDateTime,
    /// The HTTP status of the last attempt, if one answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: OffsetDateTime,
}

/// A message to queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewDelivery<'a> {
    /// The message id.
    pub id: &'a str,
    /// The format.
    pub kind: DeliveryKind,
    /// The subscription (webhooks only).
    pub subscription_id: Option<&'a str>,
    /// Who it is for.
    pub target: &'a str,
    /// Where it is posted.
    pub url: &'a str,
    /// What is posted.
    pub payload: &'a str,
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    /// The delivery as it was claimed.
    pub delivery: Delivery,
    /// The lease: only its holder may complete the attempt.
    pub lease: String,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// A 2xx answer.
    Delivered {
        /// The status.
        status: u16,
    },
    /// It failed; try again at `next_attempt_at`.
    Retry {
        /// The status, if the receiver answered.
        status: Option<u16>,
        /// Why.
        error: String,
        /// When to try again.
        next_attempt_at: OffsetDateTime,
    },
    /// It failed for the last time: dead-letter it.
    Dead {
        /// The status, if the receiver answered.
        status: Option<u16>,
        /// Why.
        error: String,
    },
}

/// A page of deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPage {
    /// Deliveries ordered by id.
    pub deliveries: Vec<Delivery>,
    /// The id to pass as `after` for the next page, if there may be one.
    pub next: Option<String>,
}

/// Storage of webhook subscriptions and the delivery outbox.
#[async_trait]
pub trait WebhookStore: std::fmt::Debug + Send + Sync {
    /// Creates a subscription with its first secret; [`crate::Conflict::Duplicate`] if the id is
    /// taken, [`StoreError::InvalidInput`] beyond [`MAX_SUBSCRIPTIONS`].
    async fn create_subscription(
        &self,
        new: &NewSubscription<'_>,
        now: OffsetDateTime,
    ) -> Result<Subscription, StoreError>;

    /// The subscription with id `id`.
    async fn get_subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError>;

    /// Every subscription, ordered by id (at most [`MAX_SUBSCRIPTIONS`]).
    async fn list_subscriptions(&self) -> Result<Vec<Subscription>, StoreError>;

    /// Deletes the subscription and its queued deliveries; `false` if there was none.
    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError>;

    /// Rotation, atomically: the secrets that have no expiry or expire after `old_valid_until`
    /// now expire at `old_valid_until`, secrets expired by `now` are dropped, and `sealed` is
    /// added as the current secret. `None` if there is no such subscription.
    async fn rotate_subscription_secret(
        &self,
        id: &str,
        sealed: &[u8],
        old_valid_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<Subscription>, StoreError>;

    /// Queues deliveries, due at once, in one transaction. A delivery for a subscription that
    /// was deleted meanwhile is skipped.
    async fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery<'_>],
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Claims up to `limit` pending deliveries due at `now`, oldest due first, for one attempt
    /// each: they are not claimable again before `lease_until`. Rows another transaction is
    /// claiming are skipped, not waited for.
    async fn claim_deliveries(
        &self,
        limit: u32,
        lease_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records the attempt made under `lease` (one more attempt): delivered, due again, or
    /// dead. `false` if the lease is no longer held (it ran out and another worker claimed the
    /// delivery, or the delivery was deleted): the result is then dropped.
    async fn complete_delivery(
        &self,
        id: &str,
        lease: &str,
        result: &AttemptResult,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// The delivery with id `id`.
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError>;

    /// Deliveries in `state` ordered by id, after `after`, at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`](crate::relationships::MAX_PAGE_SIZE)).
    async fn list_deliveries(
        &self,
        state: DeliveryState,
        after: Option<&str>,
        limit: u32,
    ) -> Result<DeliveryPage, StoreError>;

    /// Puts a dead delivery back in the queue, due at `now`, with its attempts reset. `None` if
    /// there is no dead delivery with that id.
    async fn redeliver(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Delivery>, StoreError>;

    /// Deletes delivered messages delivered before `before`; how many.
    async fn purge_delivered(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}
