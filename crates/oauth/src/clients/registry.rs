//! [`ClientRegistry`]: registration, lookup and authentication of clients over the store.
//!
//! The store's metadata object for a client is [`StoredMetadata`] as JSON: the registration
//! minus the name (which has its own column), lifetimes as given (`null`: the default), plus a
//! format version `v`. Unknown members are ignored when reading, so a newer version's extra
//! fields do not make a client unreadable after a rollback.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::Duration;
use trustgate_core::secret::generate_token;
use trustgate_core::{Clock, Secret, TokenDigest};
use trustgate_store_api::{ApiKeyStore, ClientStore, OAuthClient, StoreError};

use super::assertion;
use super::credentials::{JWT_BEARER_ASSERTION_TYPE, PresentedCredentials, TlsClientAuthNames};
use super::{
    ApplicationType, AuthMethod, Client, ClientError, ClientRegistration, DEFAULT_ACCESS_TOKEN_TTL,
    DEFAULT_REFRESH_TOKEN_TTL, GrantType, TokenExchangePolicy, validate_registration,
};
use crate::error::OAuthError;

/// Prefix of client ids (then 22 base64url characters: 128 random bits).
pub const CLIENT_ID_PREFIX: &str = "tgc_";
/// Prefix of client secrets (then 256 random bits), so secret scanners recognise them.
pub const CLIENT_SECRET_PREFIX: &str = "tgcs_";
/// Most clients one listing returns.
pub const MAX_PAGE: u32 = 1000;
/// How far in the future a client assertion's `exp` may lie.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::minutes(10);

/// The one description of every failed secret or public-client authentication: it must not
/// tell an unknown client id from a wrong secret or a wrong method.
pub(super) const AUTH_FAILED: &str = "client authentication failed";

/// Format version of [`StoredMetadata`].
const METADATA_VERSION: u32 = 1;

/// The `metadata` object the store keeps for a client.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredMetadata {
    v: u32,
    auth_method: AuthMethod,
    application_type: ApplicationType,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    grant_types: Vec<GrantType>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    jwks: Option<Value>,
    #[serde(default)]
    require_par: bool,
    #[serde(default)]
    dpop_bound_access_tokens: bool,
    #[serde(flatten)]
    tls_client_auth: TlsClientAuthNames,
    #[serde(default)]
    skip_consent: bool,
    #[serde(default)]
    access_token_ttl_secs: Option<u32>,
    #[serde(default)]
    refresh_token_ttl_secs: Option<u32>,
    #[serde(default)]
    refresh_grace_secs: Option<u32>,
    #[serde(default)]
    audience: Vec<String>,
    #[serde(default)]
    resource_audiences: Vec<String>,
    #[serde(default)]
    backchannel_logout_uri: Option<String>,
    #[serde(default)]
    backchannel_logout_session_required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_exchange: Option<TokenExchangePolicy>,
}

impl StoredMetadata {
    fn of(reg: &ClientRegistration) -> Self {
        Self {
            v: METADATA_VERSION,
            auth_method: reg.auth_method,
            application_type: reg.application_type,
            redirect_uris: reg.redirect_uris.clone(),
            post_logout_redirect_uris: reg.post_logout_redirect_uris.clone(),
            grant_types: reg.grant_types.clone(),
            scopes: reg.scopes.clone(),
            jwks: reg.jwks.clone(),
            require_par: reg.require_par,
            dpop_bound_access_tokens: reg.dpop_bound_access_tokens,
            tls_client_auth: reg.tls_client_auth_names(),
            skip_consent: reg.skip_consent,
            access_token_ttl_secs: reg.access_token_ttl_secs,
            refresh_token_ttl_secs: reg.refresh_token_ttl_secs,
            refresh_grace_secs: reg.refresh_grace_secs,
            audience: reg.audience.clone(),
            resource_audiences: reg.resource_audiences.clone(),
            backchannel_logout_uri: reg.backchannel_logout_uri.clone(),
            backchannel_logout_session_required: reg.backchannel_logout_session_required,
            token_exchange: reg.token_exchange.clone(),
        }
    }

    fn to_map(&self) -> Result<Map<String, Value>, ClientError> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ClientError::Corrupt {
                id: String::new(),
                detail: "metadata did not serialize to an object".into(),
            }),
            Err(e) => Err(ClientError::Corrupt {
                id: String::new(),
                detail: e.to_string(),
            }),
        }
    }
}

/// RFC 8705 §2.2.2: the certificate is one of the `x5c` leaf certificates of the client's
/// registered JWK Set (compared by SHA-256 of the DER).
fn registered_certificate(client: &Client, certificate: &super::ClientCertificate) -> bool {
    let keys = client
        .jwks
        .as_ref()
        .and_then(|jwks| jwks.get("keys"))
        .and_then(Value::as_array);
    keys.into_iter().flatten().any(|key| {
        key.get("x5c")
            .and_then(|chain| chain.get(0))
            .and_then(Value::as_str)
            .and_then(|leaf| STANDARD.decode(leaf).ok())
            .is_some_and(|der| {
                trustgate_tokens::Confirmation::certificate_thumbprint(&der)
                    == certificate.thumbprint
            })
    })
}

/// A [`Client`] from what the store holds.
fn decode(stored: OAuthClient) -> Result<Client, ClientError> {
    let corrupt = |detail: String| ClientError::Corrupt {
        id: stored.id.clone(),
        detail,
    };
    let meta: StoredMetadata = serde_json::from_value(Value::Object(stored.metadata.clone()))
        .map_err(|e| corrupt(e.to_string()))?;
    if meta.v != METADATA_VERSION {
        return Err(corrupt(format!("unknown metadata version {}", meta.v)));
    }
    let ttl = |secs: Option<u32>, default: Duration| {
        secs.map_or(default, |s| Duration::seconds(i64::from(s)))
    };
    Ok(Client {
        has_secret: stored.secret_digest.is_some(),
        id: stored.id,
        name: stored.name,
        auth_method: meta.auth_method,
        application_type: meta.application_type,
        redirect_uris: meta.redirect_uris,
        post_logout_redirect_uris: meta.post_logout_redirect_uris,
        grant_types: meta.grant_types,
        scopes: meta.scopes,
        jwks: meta.jwks,
        require_par: meta.require_par,
        dpop_bound_access_tokens: meta.dpop_bound_access_tokens,
        tls_client_auth: meta.tls_client_auth,
        skip_consent: meta.skip_consent,
        access_token_ttl: ttl(meta.access_token_ttl_secs, DEFAULT_ACCESS_TOKEN_TTL),
        refresh_token_ttl: ttl(meta.refresh_token_ttl_secs, DEFAULT_REFRESH_TOKEN_TTL),
        refresh_grace: meta
            .refresh_grace_secs
            .map(|s| Duration::seconds(i64::from(s))),
        audience: meta.audience,
        resource_audiences: meta.resource_audiences,
        backchannel_logout_uri: meta.backchannel_logout_uri,
        backchannel_logout_session_required: meta.backchannel_logout_session_required,
        token_exchange: meta.token_exchange,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    })
}

/// A new client id: `tgc_` and 128 random bits in base64url (22 characters).
fn new_client_id() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{CLIENT_ID_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A new secret and its digest.
fn new_secret() -> (Secret, TokenDigest) {
    let secret = generate_token(CLIENT_SECRET_PREFIX);
    let digest = TokenDigest::of(secret.expose());
    (secret, digest)
}

/// The most clients [`ClientRegistry::browser_origins`] reads.
pub const MAX_ORIGIN_SCAN: usize = 100_000;

/// Settings of the cache of authenticated clients ([`ClientRegistry::with_cache`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCacheConfig {
    /// How often the credential epoch is polled (how late another replica's change of a client
    /// takes effect here).
    pub epoch_poll: std::time::Duration,
    /// How old the last successful poll may be before the cache is bypassed.
    pub stale_after: std::time::Duration,
    /// The longest a client is cached even when nothing changes.
    pub ttl: std::time::Duration,
    /// Clients cached at most.
    pub capacity: u64,
}

impl Default for ClientCacheConfig {
    fn default() -> Self {
        Self {
            epoch_poll: std::time::Duration::from_millis(250),
            stale_after: std::time::Duration::from_secs(2),
            ttl: std::time::Duration::from_secs(60),
            capacity: 10_000,
        }
    }
}

/// Registered clients: CRUD for the admin API and authentication for the protocol endpoints.
#[derive(Debug, Clone)]
pub struct ClientRegistry {
    store: Arc<dyn ClientStore>,
    clock: Arc<dyn Clock>,
    assertion_leeway: time::Duration,
    cache: Option<Arc<ClientCache>>,
}

/// Registered clients as last read, so that authenticating a client on the token endpoint's hot
/// path costs a digest and a map lookup instead of a database read and a metadata decode.
///
/// The rules are those of the API key cache (`trustgate_authn::api_keys`): an entry is used only
/// while its generation is current (every change of a client through this registry bumps it at
/// once; a background task polls the database's credential epoch, which every client update,
/// secret change and deletion advances, and bumps it when another replica changed a client) and
/// while the last poll succeeded recently (otherwise every authentication reads the database).
/// Unknown client ids are never cached, so random ids cannot evict registered ones, and the
/// presented secret is still compared, in constant time, with the stored digest on every request.
struct ClientCache {
    epochs: Arc<dyn ApiKeyStore>,
    config: ClientCacheConfig,
    entries: moka::sync::Cache<String, Arc<Cached>>,
    /// The browser origins of every client ([`ClientRegistry::browser_origins`]), as read at a
    /// generation and a time.
    origins: parking_lot::Mutex<Option<CachedOrigins>>,
    /// Held while the origins are read from the registry: one scan at a time.
    origins_scan: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    /// The credential epoch last seen, and when it was last read successfully.
    epoch: parking_lot::Mutex<Option<(i64, Instant)>>,
    poll_started: AtomicBool,
}

/// Invalidates the registry's cache when dropped: at the end of a change, after its
/// transaction committed, so a concurrent authentication that read the old row cannot cache it
/// under the new generation.
struct InvalidateOnDrop<'a>(&'a ClientRegistry);

impl Drop for InvalidateOnDrop<'_> {
    fn drop(&mut self) {
        self.0.invalidate();
    }
}

/// The browser origins as read at a generation, and when that read began.
type CachedOrigins = (u64, Instant, Arc<BTreeSet<String>>);

/// A client and its secret digest, as read at `generation`.
struct Cached {
    client: Client,
    secret_digest: Option<TokenDigest>,
    generation: u64,
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCache")
            .field("cached", &self.entries.entry_count())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClientCache {
    fn fresh(&self) -> bool {
        self.epoch
            .lock()
            .is_some_and(|(_, at)| at.elapsed() <= self.config.stale_after)
    }

    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }

    async fn poll_epoch(&self) -> Result<(), StoreError> {
        let epoch = self.epochs.credential_epoch().await?;
        let mut seen = self.epoch.lock();
        if seen.is_some_and(|(e, _)| e != epoch) {
            self.invalidate();
        }
        *seen = Some((epoch, Instant::now()));
        Ok(())
    }

    /// Starts the epoch poll on the current runtime, once; it ends with the last registry.
    fn start_polling(self: &Arc<Self>) {
        if self.poll_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.poll_started.store(false, Ordering::Release);
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.config.epoch_poll;
        runtime.spawn(async move {
            // The first poll one period from now, not at once: the task may start at any time
            // after the registry was first used, and a read at an arbitrary moment would make
            // what the cache serves before the first period depend on scheduling. (Until the
            // epoch is read, by this task or `sync`, clients are authenticated against the
            // database.)
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(cache) = weak.upgrade() else { return };
                if let Err(e) = cache.poll_epoch().await {
                    tracing::warn!(error = %e, "cannot read the credential epoch; clients are authenticated against the database until it answers");
                }
            }
        });
    }
}

impl ClientRegistry {
    /// A registry over `store`, reading the time from `clock`.
    pub fn new(store: Arc<dyn ClientStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            assertion_leeway: super::assertion::DEFAULT_ASSERTION_LEEWAY,
            cache: None,
        }
    }

    /// Caches authenticated clients (see [`ClientCacheConfig`]), dropping them when the
    /// credential epoch read from `epochs` moves. Without this every authentication reads the
    /// client from the store.
    pub fn with_cache(mut self, epochs: Arc<dyn ApiKeyStore>, config: ClientCacheConfig) -> Self {
        self.cache = Some(Arc::new(ClientCache {
            epochs,
            config,
            entries: moka::sync::Cache::builder()
                .max_capacity(config.capacity)
                .time_to_live(config.ttl)
                .build(),
            origins: parking_lot::Mutex::new(None),
            origins_scan: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            epoch: parking_lot::Mutex::new(None),
            poll_started: AtomicBool::new(false),
        }));
        self
    }

    /// Forgets every cached client on this replica (every change through this registry does
    /// it; other replicas follow the credential epoch).
    pub fn invalidate(&self) {
        if let Some(cache) = &self.cache {
            cache.invalidate();
        }
    }

    /// Reads the credential epoch now (the background task does this periodically) and drops
    /// the cached clients if it moved.
    pub async fn sync(&self) -> Result<(), StoreError> {
        match &self.cache {
            Some(cache) => cache.poll_epoch().await,
            None => Ok(()),
        }
    }

    /// The clock skew tolerated on `private_key_jwt` assertions (`exp`, `nbf`, `iat`).
    pub fn with_assertion_leeway(mut self, leeway: time::Duration) -> Self {
        self.assertion_leeway = leeway;
        self
    }

    /// The current time at the precision both stores keep (microseconds), so what `create`
    /// returns equals what `get` reads back.
    fn now(&self) -> time::OffsetDateTime {
        let now = self.clock.now();
        now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
            .unwrap_or(now)
    }

    /// Validates and registers a client. Returns it with its secret (shown this once) when its
    /// method uses one (`client_secret_basic`, `client_secret_post`).
    pub async fn create(
        &self,
        reg: ClientRegistration,
    ) -> Result<(Client, Option<Secret>), ClientError> {
        let reg = validate_registration(reg)?;
        let metadata = StoredMetadata::of(&reg).to_map()?;
        let (secret, digest) = if reg.auth_method.uses_secret() {
            let (secret, digest) = new_secret();
            (Some(secret), Some(digest))
        } else {
            (None, None)
        };
        let now = self.now();
        let stored = OAuthClient {
            id: new_client_id(),
            name: reg.name,
            secret_digest: digest,
            metadata,
            created_at: now,
            updated_at: now,
        };
        self.store.create_client(&stored).await?;
        Ok((decode(stored)?, secret))
    }

    /// The client with this id, if registered.
    pub async fn get(&self, id: &str) -> Result<Option<Client>, ClientError> {
        match self.store.get_client(id).await? {
            Some(stored) => decode(stored).map(Some),
            None => Ok(None),
        }
    }

    /// The web origins that browser applications of registered clients run on: the origins of
    /// public clients' `http(s)` redirect URIs (see [`Client::browser_origins`]). The CORS
    /// answers of the endpoints a single-page application calls are given to these origins
    /// only.
    ///
    /// With the cache, the set is read once per generation (any client change here, or the
    /// credential epoch moving on another replica) and at most [`ClientCacheConfig::ttl`] old,
    /// and only while the epoch poll is fresh; otherwise the registry is read again, one scan
    /// at a time per replica: requests that arrive during a scan wait for it and take its
    /// result, which was read after they arrived. Without the cache every call reads the
    /// registry. At most 100,000 clients are read (`MAX_ORIGIN_SCAN`).
    pub async fn browser_origins(&self) -> Result<Arc<BTreeSet<String>>, ClientError> {
        let Some(cache) = &self.cache else {
            return Ok(Arc::new(self.scan_browser_origins().await?));
        };
        let arrived = Instant::now();
        cache.start_polling();
        let current = |cache: &ClientCache| {
            let generation = cache.generation.load(Ordering::Acquire);
            match &*cache.origins.lock() {
                Some((g, at, origins))
                    if cache.fresh() && *g == generation && at.elapsed() <= cache.config.ttl =>
                {
                    Some(origins.clone())
                }
                _ => None,
            }
        };
        if let Some(origins) = current(cache) {
            return Ok(origins);
        }
        let _scan = cache.origins_scan.lock().await;
        if let Some((_, at, origins)) = &*cache.origins.lock()
            && *at >= arrived
        {
            return Ok(origins.clone());
        }
        // Stamped with when the read began, so a waiter takes only a read that began after it
        // arrived.
        let generation = cache.generation.load(Ordering::Acquire);
        let began = Instant::now();
        let origins = Arc::new(self.scan_browser_origins().await?);
        *cache.origins.lock() = Some((generation, began, origins.clone()));
        Ok(origins)
    }

    async fn scan_browser_origins(&self) -> Result<BTreeSet<String>, ClientError> {
        let mut origins = BTreeSet::new();
        let mut after: Option<String> = None;
        let mut read = 0;
        loop {
            let (clients, next) = self.list(after.as_deref(), MAX_PAGE).await?;
            read += clients.len();
            for client in &clients {
                origins.extend(client.browser_origins());
            }
            match next {
                Some(next) if read < MAX_ORIGIN_SCAN => after = Some(next),
                Some(_) => {
                    tracing::warn!(
                        read,
                        "more clients than the CORS origin scan reads; later clients' origins are not allowed"
                    );
                    break;
                }
                None => break,
            }
        }
        Ok(origins)
    }

    /// Up to `limit` clients (clamped to 1..=[`MAX_PAGE`]) with an id after `after`, by id, and
    /// the `after` of the next page (`None` on the last one).
    pub async fn list(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Client>, Option<String>), ClientError> {
        let page = self
            .store
            .list_clients(after, limit.clamp(1, MAX_PAGE))
            .await?;
        let clients = page
            .clients
            .into_iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((clients, page.next))
    }

    /// Replaces a client's registration with `reg` (validated completely first). Switching to
    /// a secret method from one without a secret issues a secret (returned, shown once);
    /// switching to a method without a secret removes the stored digest.
    pub async fn update(
        &self,
        id: &str,
        reg: ClientRegistration,
    ) -> Result<(Client, Option<Secret>), ClientError> {
        let reg = validate_registration(reg)?;
        let metadata = StoredMetadata::of(&reg).to_map()?;
        let now = self.now();
        // Whatever happens below, what was cached before is stale after it.
        let _stale = InvalidateOnDrop(self);
        let mut stored = self
            .store
            .update_client(id, &reg.name, &metadata, now)
            .await?
            .ok_or(ClientError::NotFound)?;
        let mut issued = None;
        match (
            reg.auth_method.uses_secret(),
            stored.secret_digest.is_some(),
        ) {
            (true, false) => {
                let (secret, digest) = new_secret();
                if !self.store.set_client_secret(id, Some(&digest), now).await? {
                    return Err(ClientError::NotFound);
                }
                stored.secret_digest = Some(digest);
                issued = Some(secret);
            }
            (false, true) => {
                if !self.store.set_client_secret(id, None, now).await? {
                    return Err(ClientError::NotFound);
                }
                stored.secret_digest = None;
            }
            _ => {}
        }
        Ok((decode(stored)?, issued))
    }

    /// Issues a new secret for a `client_secret_*` client; the old one stops working at once.
    pub async fn rotate_secret(&self, id: &str) -> Result<Secret, ClientError> {
        let client = self.get(id).await?.ok_or(ClientError::NotFound)?;
        if !client.auth_method.uses_secret() {
            return Err(ClientError::NoSecret(client.auth_method));
        }
        let (secret, digest) = new_secret();
        let _stale = InvalidateOnDrop(self);
        if !self
            .store
            .set_client_secret(id, Some(&digest), self.now())
            .await?
        {
            return Err(ClientError::NotFound);
        }
        Ok(secret)
    }

    /// Deletes a client and everything issued to it; `false` if there was no such client.
    pub async fn delete(&self, id: &str) -> Result<bool, ClientError> {
        let _stale = InvalidateOnDrop(self);
        Ok(self.store.delete_client(id).await?)
    }

    /// Authenticates the client of a token, introspection, revocation, PAR or device request.
    ///
    /// The presented method must be the registered one: a confidential client presenting only
    /// its id, a public client presenting a secret, a secret client presenting an assertion
    /// (or the other way round) all fail. Secrets are compared by SHA-256 digest in constant
    /// time, and an unknown client id costs the same digest and comparison as a wrong secret.
    /// For `private_key_jwt`, `audiences` are the values the assertion's `aud` may have (the
    /// endpoint URL and the issuer; RFC 7523 §3, OIDC Core §9).
    ///
    /// Every failure is `invalid_client` (a storage failure is `server_error` or
    /// `temporarily_unavailable`); the description never tells whether the id exists: unknown
    /// id, wrong secret, wrong method and an assertion whose signature does not verify against
    /// the client's keys all read the same. Only an assertion the client verifiably signed gets
    /// a specific description (expired, wrong `aud`, `jti` replayed, ...).
    #[tracing::instrument(
        name = "authn.client",
        skip_all,
        fields(method = presented.method_name())
    )]
    pub async fn authenticate(
        &self,
        presented: &PresentedCredentials,
        audiences: &[&str],
    ) -> Result<Client, OAuthError> {
        match presented {
            PresentedCredentials::Basic { client_id, secret } => {
                self.authenticate_secret(client_id, secret, AuthMethod::ClientSecretBasic)
                    .await
            }
            PresentedCredentials::Post { client_id, secret } => {
                self.authenticate_secret(client_id, secret, AuthMethod::ClientSecretPost)
                    .await
            }
            PresentedCredentials::Certificate {
                client_id,
                certificate,
            } => match self.lookup(client_id).await? {
                // A public client over mutual TLS: the certificate binds its tokens, it does
                // not authenticate it.
                Some(client) if client.auth_method == AuthMethod::None => Ok(client),
                Some(client)
                    if client.auth_method == AuthMethod::TlsClientAuth
                        && client.tls_client_auth.matches(certificate) =>
                {
                    Ok(client)
                }
                Some(client)
                    if client.auth_method == AuthMethod::SelfSignedTlsClientAuth
                        && registered_certificate(&client, certificate) =>
                {
                    Ok(client)
                }
                _ => Err(OAuthError::invalid_client(AUTH_FAILED)),
            },
            PresentedCredentials::None { client_id } => match self.lookup(client_id).await? {
                Some(client) if client.auth_method == AuthMethod::None => Ok(client),
                _ => Err(OAuthError::invalid_client(AUTH_FAILED)),
            },
            PresentedCredentials::Assertion {
                client_id,
                assertion_type,
                assertion,
            } => {
                self.authenticate_assertion(
                    client_id.as_deref(),
                    assertion_type,
                    assertion,
                    audiences,
                )
                .await
            }
        }
    }

    /// The client with this id; a corrupt record counts as absent (and is logged).
    async fn lookup(&self, id: &str) -> Result<Option<Client>, OAuthError> {
        Ok(self.lookup_cached(id).await?.map(|c| c.client.clone()))
    }

    /// The client with this id and its secret digest: from the cache when it may be used, else
    /// from the store (and then cached). A corrupt record counts as absent (and is logged).
    async fn lookup_cached(&self, id: &str) -> Result<Option<Arc<Cached>>, OAuthError> {
        // Read before the store, so a change committed while we read makes what we cache stale.
        let generation = self.cache.as_ref().map(|cache| {
            cache.start_polling();
            cache.generation.load(Ordering::Acquire)
        });
        if let (Some(cache), Some(generation)) = (&self.cache, generation)
            && let Some(entry) = cache.entries.get(id)
            && entry.generation == generation
            && cache.fresh()
        {
            return Ok(Some(entry));
        }
        let Some(stored) = self.store.get_client(id).await? else {
            return Ok(None);
        };
        let secret_digest = stored.secret_digest;
        let client = match decode(stored) {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "unreadable client record");
                return Ok(None);
            }
        };
        let entry = Arc::new(Cached {
            client,
            secret_digest,
            generation: generation.unwrap_or_default(),
        });
        if let Some(cache) = &self.cache {
            cache.entries.insert(id.to_owned(), Arc::clone(&entry));
        }
        Ok(Some(entry))
    }

    async fn authenticate_secret(
        &self,
        client_id: &str,
        secret: &Secret,
        method: AuthMethod,
    ) -> Result<Client, OAuthError> {
        let presented = TokenDigest::of(secret.expose());
        let found = self.lookup_cached(client_id).await?;
        // Compare against a fixed digest when there is nothing to compare with, so an unknown id
        // or a missing secret costs what a wrong secret costs.
        let unknown = TokenDigest::of("");
        let expected = found
            .as_ref()
            .and_then(|c| c.secret_digest.as_ref())
            .unwrap_or(&unknown);
        let secret_ok =
            presented.ct_eq(expected) && found.as_ref().is_some_and(|c| c.secret_digest.is_some());
        let Some(found) = found else {
            tracing::debug!("client authentication: unknown (or unreadable) client id");
            return Err(OAuthError::invalid_client(AUTH_FAILED));
        };
        let client = &found.client;
        if client.auth_method != method {
            tracing::debug!(
                client_id = %client.id,
                registered = %client.auth_method,
                presented = %method,
                "client authentication: wrong method"
            );
            return Err(OAuthError::invalid_client(AUTH_FAILED));
        }
        if !secret_ok {
            tracing::debug!(client_id = %client.id, "client authentication: wrong secret");
            return Err(OAuthError::invalid_client(AUTH_FAILED));
        }
        Ok(client.clone())
    }

    async fn authenticate_assertion(
        &self,
        form_client_id: Option<&str>,
        assertion_type: &str,
        assertion: &str,
        audiences: &[&str],
    ) -> Result<Client, OAuthError> {
        if assertion_type != JWT_BEARER_ASSERTION_TYPE {
            return Err(OAuthError::invalid_client(format!(
                "unsupported client_assertion_type (use {JWT_BEARER_ASSERTION_TYPE})"
            )));
        }
        // Which client: the form's client_id, else the (not yet verified) issuer. Whichever it
        // is, the verified assertion must name it as both iss and sub.
        let client_id = match form_client_id {
            Some(id) => id.to_owned(),
            None => assertion::unverified_issuer(assertion)
                .ok_or_else(|| OAuthError::invalid_client("malformed client assertion"))?,
        };
        let client = match self.lookup(&client_id).await? {
            Some(client) if client.auth_method == AuthMethod::PrivateKeyJwt => client,
            _ => return Err(OAuthError::invalid_client(AUTH_FAILED)),
        };
        let now = self.now();
        let verified =
            assertion::verify(&client, assertion, audiences, now, self.assertion_leeway)?;
        let recorded = self
            .store
            .record_client_assertion(&client.id, &verified.jti, verified.expires_at)
            .await?;
        if !recorded {
            tracing::info!(client_id = %client.id, "client assertion replayed");
            return Err(OAuthError::invalid_client(
                "client assertion was used before (jti replay)",
            ));
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets_have_their_shape() {
        let id = new_client_id();
        assert!(id.starts_with(CLIENT_ID_PREFIX));
        assert_eq!(id.len(), CLIENT_ID_PREFIX.len() + 22);
        assert!(
            id[CLIENT_ID_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(id, new_client_id());
        let (secret, digest) = new_secret();
        assert!(secret.expose().starts_with(CLIENT_SECRET_PREFIX));
        assert!(digest.ct_eq(&TokenDigest::of(secret.expose())));
    }

    #[test]
    fn metadata_round_trips_and_tolerates_unknown_members() {
        let reg = validate_registration(ClientRegistration {
            redirect_uris: vec!["https://a.example/cb".into()],
            access_token_ttl_secs: Some(120),
            ..ClientRegistration::named("App")
        })
        .expect("valid");
        let mut metadata = StoredMetadata::of(&reg).to_map().expect("map");
        metadata.insert("from_a_newer_version".into(), Value::Bool(true));
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let client = decode(OAuthClient {
            id: "tgc_x".into(),
            name: reg.name.clone(),
            secret_digest: None,
            metadata: metadata.clone(),
            created_at: now,
            updated_at: now,
        })
        .expect("decode");
        assert_eq!(client.access_token_ttl, Duration::seconds(120));
        assert_eq!(client.refresh_token_ttl, DEFAULT_REFRESH_TOKEN_TTL);
        assert!(!client.has_secret);
        let mut again = client.registration();
        again.refresh_token_ttl_secs = None;
        assert_eq!(again, reg);

        metadata.insert("v".into(), Value::from(99));
        let err = decode(OAuthClient {
            id: "tgc_x".into(),
            name: "App".into(),
            secret_digest: None,
            metadata,
            created_at: now,
            updated_at: now,
        })
        .expect_err("unknown version");
        assert!(matches!(err, ClientError::Corrupt { .. }));
    }
}
