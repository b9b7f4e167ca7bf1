//! API keys and personal access tokens: a presented key → its owner's [`Principal`], the key's
//! scopes, its rate limit; and issuing, rotating and revoking keys.
//!
//! # Verification
//! A presented token is classified by [`format::shape`]: a key-shaped token with a wrong
//! checksum is refused with no database lookup; everything else is looked up by its SHA-256
//! digest only (never by key id), so an unknown key and a known key id with a wrong secret take
//! the same path and get the same refusal. Tokens of the earlier opaque format (the bootstrap
//! token of an earlier release, a configured `TRUSTGATE_BOOTSTRAP_TOKEN`) are keys too, migrated
//! with their digest.
//!
//! # Caching and revocation
//! Verified keys are cached by digest, so the hot path (a check per request of every service
//! behind trustgate) costs a hash and a map lookup. A cached entry is only used while:
//! - its **generation** is current: revoking or rotating a key, and disabling an owner, on this
//!   replica bumps the generation at once ([`ApiKeys::invalidate`]); a background task polls the
//!   database's credential epoch every [`ApiKeysConfig::epoch_poll`] and bumps it when another
//!   replica changed a credential — so revocation reaches every replica within one poll;
//! - the last successful poll is recent ([`ApiKeysConfig::stale_after`]): when the database
//!   cannot be polled, nothing is served from the cache;
//! - the key has not expired by this service's clock (checked on every use, to the second).
//!
//! Unknown keys are never cached: a flood of random tokens can neither evict good entries nor
//! grow memory past the bound.
//!
//! # Rate limits and last use
//! A key with `rate_limit_per_minute = n` gets a token bucket of `n` requests refilled at
//! `n/60` per second, **per replica**: a shared bucket would put a database or network round
//! trip on every request, which is what the cache exists to avoid; with `r` replicas behind a
//! balancer a key can make up to `r·n` requests a minute. Last-use time and client address are
//! noted in memory at most once a second per key and written in batches
//! ([`ApiKeysConfig::use_flush`]), never by a database write per request.

pub mod format;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use time::OffsetDateTime;
use trustgate_core::{Clock, Principal, PrincipalKind, Secret, TokenDigest};
use trustgate_store_api::{
    ApiKey, ApiKeyStore, KeyOwner, KeyUse, NewApiKey, StoreError, VerifiedKey,
};

/// The longest bearer token looked up; anything longer is not one of ours.
pub const MAX_KEY_BYTES: usize = 4096;
/// Verified keys remembered at most.
const CACHE_CAPACITY: u64 = 100_000;
/// Rate-limit buckets remembered at most (idle ones are dropped after ten minutes).
const BUCKET_CAPACITY: u64 = 100_000;

/// Settings of [`ApiKeys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeysConfig {
    /// The environment label in issued keys (`tg_<env>_…`), 1 to 10 of `a-z0-9`.
    pub environment: String,
    /// How often the credential epoch is polled (revocation latency on other replicas).
    pub epoch_poll: Duration,
    /// How old the last successful poll may be before the cache is bypassed.
    pub stale_after: Duration,
    /// The longest a verified key is cached even when nothing changes.
    pub cache_ttl: Duration,
    /// How often noted uses are written.
    pub use_flush: Duration,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        ApiKeysConfig {
            environment: "live".to_owned(),
            epoch_poll: Duration::from_millis(250),
            stale_after: Duration::from_secs(2),
            cache_ttl: Duration::from_secs(60),
            use_flush: Duration::from_secs(10),
        }
    }
}

/// A key that authenticated a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIdentity {
    /// The owner as a principal (`service:<id>` or `user:<id>`).
    pub principal: Principal,
    /// The key id.
    pub key_id: String,
    /// The owner.
    pub owner: KeyOwner,
    /// The scopes the key is limited to.
    pub scopes: Vec<String>,
    /// When the key stops working, if it expires (a rotated key's overlap end, or the expiry
    /// it was issued with).
    pub expires_at: Option<OffsetDateTime>,
}

/// Why a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyRefusal {
    /// Missing, malformed, unknown, wrong secret, revoked, expired, or its owner is disabled:
    /// one refusal for all, so a caller learns nothing about which.
    #[error("the API key is not valid")]
    Invalid,
    /// The key's rate limit is exhausted; retry after this many seconds (at least 1).
    #[error("the API key's rate limit is exhausted")]
    RateLimited {
        /// Seconds until a request would be allowed.
        retry_after_secs: u64,
    },
    /// The database could not be asked.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a new key is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySpec {
    /// What it is for.
    pub description: String,
    /// The permissions it is limited to (validated by the caller).
    pub scopes: Vec<String>,
    /// When it stops authenticating, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// Requests per minute, if limited.
    pub rate_limit_per_minute: Option<u32>,
}

/// A freshly issued key: the only time its string exists outside the caller's hands.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The key string, to show exactly once.
    pub key: Secret,
    /// What is stored about it.
    pub record: ApiKey,
}

struct Cached {
    identity: Arc<KeyIdentity>,
    expires_at: Option<OffsetDateTime>,
    rate_limit_per_minute: Option<u32>,
    generation: u64,
    /// The unix second of the last use noted for the batched write.
    noted_second: AtomicI64,
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: OffsetDateTime,
}

/// Verifies, issues, rotates and revokes API keys. Cheap to clone.
#[derive(Clone)]
pub struct ApiKeys {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ApiKeyStore>,
    clock: Arc<dyn Clock>,
    config: ApiKeysConfig,
    verified: moka::sync::Cache<TokenDigest, Arc<Cached>>,
    buckets: moka::sync::Cache<String, Arc<Mutex<Bucket>>>,
    generation: AtomicU64,
    /// The credential epoch last seen, and when it was last read successfully.
    epoch: Mutex<Option<(i64, Instant)>>,
    /// The credential epoch as last read, for followers outside this service.
    epochs: tokio::sync::watch::Sender<Option<i64>>,
    uses: Mutex<HashMap<String, KeyUse>>,
    sync_started: AtomicBool,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("cached", &self.inner.verified.entry_count())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ApiKeys {
    /// A service over `store`. The background task that polls the credential epoch and writes
    /// noted uses starts with the first verification and stops when the last clone is dropped.
    pub fn new(store: Arc<dyn ApiKeyStore>, clock: Arc<dyn Clock>, config: ApiKeysConfig) -> Self {
        let verified = moka::sync::Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .time_to_live(config.cache_ttl)
            .build();
        let buckets = moka::sync::Cache::builder()
            .max_capacity(BUCKET_CAPACITY)
            .time_to_idle(Duration::from_secs(600))
            .build();
        ApiKeys {
            inner: Arc::new(Inner {
                store,
                clock,
                config,
                verified,
                buckets,
                generation: AtomicU64::new(0),
                epoch: Mutex::new(None),
                epochs: tokio::sync::watch::Sender::new(None),
                uses: Mutex::new(HashMap::new()),
                sync_started: AtomicBool::new(false),
            }),
        }
    }

    /// The identity behind `token`, presented from `ip`. Every kind of invalid key is the one
    /// [`KeyRefusal::Invalid`].
    pub async fn verify(
        &self,
        token: &str,
        ip: Option<&str>,
    ) -> Result<Arc<KeyIdentity>, KeyRefusal> {
        self.start_sync();
        if token.is_empty() || token.len() > MAX_KEY_BYTES {
            return Err(KeyRefusal::Invalid);
        }
        if format::shape(token) == format::Shape::BadChecksum {
            return Err(KeyRefusal::Invalid);
        }
        let inner = &self.inner;
        let digest = TokenDigest::of(token);
        let generation = inner.generation.load(Ordering::Acquire);
        let now = inner.clock.now();
        let cached = match inner.verified.get(&digest) {
            Some(entry) if entry.generation == generation && inner.epoch_fresh() => entry,
            _ => {
                let Some(found) = inner.store.authenticate_api_key(&digest).await? else {
                    return Err(KeyRefusal::Invalid);
                };
                let entry = Arc::new(Cached::from(found, generation));
                inner.verified.insert(digest, entry.clone());
                entry
            }
        };
        if cached.expires_at.is_some_and(|at| at <= now) {
            return Err(KeyRefusal::Invalid);
        }
        if let Some(limit) = cached.rate_limit_per_minute {
            inner.take_token(&cached.identity.key_id, limit, now)?;
        }
        inner.note_use(&cached, now, ip);
        Ok(cached.identity.clone())
    }

    /// Issues a key for `owner`.
    pub async fn issue(&self, owner: &KeyOwner, spec: &KeySpec) -> Result<IssuedKey, StoreError> {
        let now = self.inner.clock.now();
        let id = trustgate_core::id::new_ulid(now);
        let key = format::generate(&self.inner.config.environment, &id);
        let record = self
            .inner
            .store
            .create_api_key(
                owner,
                &NewApiKey {
                    id: &id,
                    digest: &TokenDigest::of(key.expose()),
                    description: &spec.description,
                    scopes: &spec.scopes,
                    rate_limit_per_minute: spec.rate_limit_per_minute,
                    expires_at: spec.expires_at,
                },
                now,
            )
            .await?;
        Ok(IssuedKey { key, record })
    }

    /// Rotates key `id`: a new key with the same owner, scopes, description and rate limit
    /// (expiring at `expires_at`), while the old one stays valid for `overlap` more (or until
    /// its own expiry, if sooner). `None` if the key does not exist or is revoked. Returns the
    /// new key and the old one's record.
    pub async fn rotate(
        &self,
        id: &str,
        overlap: Duration,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<Option<(IssuedKey, ApiKey)>, StoreError> {
        let now = self.inner.clock.now();
        let new_id = trustgate_core::id::new_ulid(now);
        let key = format::generate(&self.inner.config.environment, &new_id);
        let overlap = time::Duration::try_from(overlap).unwrap_or(time::Duration::MAX);
        let valid_until = now.checked_add(overlap).unwrap_or(now);
        let rotated = self
            .inner
            .store
            .rotate_api_key(
                id,
                &NewApiKey {
                    id: &new_id,
                    digest: &TokenDigest::of(key.expose()),
                    description: "",
                    scopes: &[],
                    rate_limit_per_minute: None,
                    expires_at,
                },
                valid_until,
                now,
            )
            .await?;
        self.invalidate();
        Ok(rotated.map(|(old, record)| (IssuedKey { key, record }, old)))
    }

    /// Revokes key `id` at once on this replica (on the others within an epoch poll). The key
    /// as stored afterwards; `None` if there is no such key.
    pub async fn revoke(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let revoked = self
            .inner
            .store
            .revoke_api_key(id, self.inner.clock.now())
            .await?;
        self.invalidate();
        Ok(revoked)
    }

    /// The key `id`.
    pub async fn get(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        self.inner.store.get_api_key(id).await
    }

    /// The keys of `owner` (every key when `None`).
    pub async fn list(&self, owner: Option<&KeyOwner>) -> Result<Vec<ApiKey>, StoreError> {
        self.inner.store.list_api_keys(owner).await
    }

    /// Forgets every cached verification on this replica: call after a change that ends
    /// credentials (an owner disabled or deleted) so it takes effect here at once.
    pub fn invalidate(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.verified.invalidate_all();
    }

    /// Writes the uses noted since the last flush (also done periodically; call at shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush_uses().await
    }

    /// Reads the credential epoch now (the background task does this periodically); bumps the
    /// generation if it moved.
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.inner.poll_epoch().await
    }

    /// Follows the credential epoch as this service reads it (every
    /// [`ApiKeysConfig::epoch_poll`]; `None` until the first read): it moves with every
    /// revocation of any credential (see `ApiKeyStore::credential_epoch`). Starts the
    /// background poll if it is not running.
    pub fn credential_epochs(&self) -> tokio::sync::watch::Receiver<Option<i64>> {
        self.start_sync();
        self.inner.epochs.subscribe()
    }

    fn start_sync(&self) {
        if self.inner.sync_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.sync_started.store(false, Ordering::Release);
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let poll = self.inner.config.epoch_poll;
        let flush_every = self.inner.config.use_flush;
        runtime.spawn(async move {
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_flush = Instant::now();
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = inner.poll_epoch().await {
                    tracing::warn!(error = %e, "cannot read the credential epoch; API keys are verified against the database until it answers");
                }
                if last_flush.elapsed() >= flush_every {
                    last_flush = Instant::now();
                    if let Err(e) = inner.flush_uses().await {
                        tracing::warn!(error = %e, "cannot record API key uses");
                    }
                }
            }
        });
    }
}

impl Cached {
    fn from(found: VerifiedKey, generation: u64) -> Self {
        let key = found.key;
        let kind = match key.owner {
            KeyOwner::Service(_) => PrincipalKind::Service,
            KeyOwner::User(_) => PrincipalKind::User,
        };
        let principal = Principal {
            kind,
            id: key.owner.id().to_owned(),
            display_name: found.owner_name,
            amr: Vec::new(),
        };
        Cached {
            identity: Arc::new(KeyIdentity {
                principal,
                key_id: key.id,
                owner: key.owner,
                scopes: key.scopes,
                expires_at: key.expires_at,
            }),
            expires_at: key.expires_at,
            rate_limit_per_minute: key.rate_limit_per_minute,
            generation,
            noted_second: AtomicI64::new(i64::MIN),
        }
    }
}

impl Inner {
    fn epoch_fresh(&self) -> bool {
        self.epoch
            .lock()
            .is_some_and(|(_, at)| at.elapsed() <= self.config.stale_after)
    }

    async fn poll_epoch(&self) -> Result<(), StoreError> {
        let epoch = self.store.credential_epoch().await?;
        let mut seen = self.epoch.lock();
        if seen.is_some_and(|(e, _)| e != epoch) {
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.verified.invalidate_all();
        }
        *seen = Some((epoch, Instant::now()));
        drop(seen);
        self.epochs.send_if_modified(|known| {
            let moved = *known != Some(epoch);
            *known = Some(epoch);
            moved
        });
        Ok(())
    }

    fn take_token(&self, key_id: &str, limit: u32, now: OffsetDateTime) -> Result<(), KeyRefusal> {
        let capacity = f64::from(limit.max(1));
        let per_second = capacity / 60.0;
        let bucket = self.buckets.get_with_by_ref(key_id, || {
            Arc::new(Mutex::new(Bucket {
                tokens: capacity,
                at: now,
            }))
        });
        let mut bucket = bucket.lock();
        let elapsed = (now - bucket.at).as_seconds_f64().max(0.0);
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_second;
            Err(KeyRefusal::RateLimited {
                retry_after_secs: (wait.ceil() as u64).max(1),
            })
        }
    }

    fn note_use(&self, cached: &Cached, now: OffsetDateTime, ip: Option<&str>) {
        let second = now.unix_timestamp();
        if cached.noted_second.swap(second, Ordering::Relaxed) == second {
            return;
        }
        self.uses.lock().insert(
            cached.identity.key_id.clone(),
            KeyUse {
                key_id: cached.identity.key_id.clone(),
                at: now,
                ip: ip.map(str::to_owned),
            },
        );
    }

    async fn flush_uses(&self) -> Result<(), StoreError> {
        let uses: Vec<KeyUse> = {
            let mut pending = self.uses.lock();
            if pending.is_empty() {
                return Ok(());
            }
            pending.drain().map(|(_, u)| u).collect()
        };
        self.store.record_api_key_uses(&uses).await
    }
}
