//! OAuth 2.0 / OpenID Connect state: signing keys, registered clients, and the artifacts of the
//! grants (authorization codes, grants and their refresh tokens, consents, device
//! authorizations, pushed authorization requests, client-assertion ids, revoked access tokens,
//! per-user token versions).
//!
//! What is stored, and how:
//! - signing keys: the public JWK in the clear, the private key sealed (encrypted) by the caller;
//!   the store never sees a private key in the clear. A key's life is `created_at` (published in
//!   JWKS) → `activates_at` (may sign) → `retires_at` (signs no more) → `expires_at` (leaves
//!   JWKS, purged). Rotation is a compare-and-set on the newest key of an algorithm, so two
//!   replicas rotating at once produce one new key, not two;
//! - client secrets, authorization codes, refresh tokens and device codes are high-entropy
//!   secrets stored only as their SHA-256 [`TokenDigest`];
//! - protocol detail (a client's registration metadata, a code's PKCE challenge and nonce, a
//!   grant's `auth_time`/`amr`/`acr`) is a JSON object owned by the `oauth` crate; the store
//!   keeps it verbatim and interprets only the columns it indexes or compares;
//! - every consuming operation (redeeming a code, rotating a refresh token, polling a device
//!   code, recording an assertion `jti`) is one atomic statement or transaction: of concurrent
//!   calls exactly one wins.
//!
//! Every `expires_at` is the first instant at which the thing is dead: it is live while
//! `now < expires_at`, and purges delete it once `expires_at <= now`.
//!
//! A *grant* is one authorization of one client by one user (or by the client itself): the family
//! that refresh tokens descend from. Revoking the grant kills every refresh token of the family,
//! and access tokens that name the grant (`gid`) stop introspecting as active.

use async_trait::async_trait;
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};
use trustgate_core::TokenDigest;

use crate::StoreError;
use crate::accounts::{
    MAX_JSON_BYTES, UserStatus, check_bytes, check_optional, json_object_text, status_from_db,
    user_not_found,
};
use crate::relationships::{check_input, json_text, normalize_time, shorten};

/// A JWS signing key.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKey {
    /// Key id (`kid`), unique.
    pub kid: String,
    /// JWS algorithm: `EdDSA`, `ES256` or `RS256` (not interpreted by the store).
    pub algorithm: String,
    /// The public key as a JWK object (with `kid`, `alg`, `use`).
    pub public_jwk: Map<String, Value>,
    /// The private key, sealed by the caller.
    pub sealed_private_key: Vec<u8>,
    /// Created and published in JWKS.
    pub created_at: OffsetDateTime,
    /// From when it may sign (published before it signs, so verifiers can fetch it first).
    pub activates_at: OffsetDateTime,
    /// From when it signs no more; `None` while it is current.
    pub retires_at: Option<OffsetDateTime>,
    /// From when it leaves JWKS (after every token it signed has expired); `None` while current.
    pub expires_at: Option<OffsetDateTime>,
}

/// When the key being replaced stops signing and leaves JWKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRetirement {
    /// Stops signing.
    pub retires_at: OffsetDateTime,
    /// Leaves JWKS.
    pub expires_at: OffsetDateTime,
}

/// Storage of signing keys.
#[async_trait]
pub trait SigningKeyStore {
    /// Every stored key, oldest first (by `created_at`, then `kid`).
    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>, StoreError>;

    /// Inserts `key` provided the newest key of `key.algorithm` (greatest `created_at`, then
    /// `kid`) is still `expected_newest` (`None`: there is no key of that algorithm). When it is,
    /// that key gets `retirement` (if given) in the same transaction. `false` (nothing written)
    /// when another writer rotated first. A duplicate `kid` is [`StoreError::Conflict`].
    async fn rotate_signing_key(
        &self,
        key: &SigningKey,
        expected_newest: Option<&str>,
        retirement: Option<KeyRetirement>,
    ) -> Result<bool, StoreError>;

    /// Deletes keys whose `expires_at` is at or before `now`; returns how many.
    async fn delete_expired_signing_keys(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthClient {
    /// `client_id`, unique.
    pub id: String,
    /// Display name (shown on the consent page).
    pub name: String,
    /// Digest of the client secret; `None` for public clients and `private_key_jwt` clients.
    pub secret_digest: Option<TokenDigest>,
    /// Registration metadata (redirect URIs, grant types, scopes, auth method, ...), owned by
    /// the `oauth` crate.
    pub metadata: Map<String, Value>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// One page of clients.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientPage {
    /// Clients ordered by id.
    pub clients: Vec<OAuthClient>,
    /// The id to pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Storage of registered clients.
#[async_trait]
pub trait ClientStore {
    /// Registers a client. An existing id is [`StoreError::Conflict`].
    async fn create_client(&self, client: &OAuthClient) -> Result<(), StoreError>;

    /// The client with this id.
    async fn get_client(&self, id: &str) -> Result<Option<OAuthClient>, StoreError>;

    /// Clients with an id greater than `after`, at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`](crate::relationships::MAX_PAGE_SIZE)).
    async fn list_clients(&self, after: Option<&str>, limit: u32)
    -> Result<ClientPage, StoreError>;

    /// Replaces name and metadata; `None` if there is no such client.
    async fn update_client(
        &self,
        id: &str,
        name: &str,
        metadata: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<Option<OAuthClient>, StoreError>;

    /// Replaces (or removes) the secret digest; `false` if there is no such client.
    async fn set_client_secret(
        &self,
        id: &str,
        digest: Option<&TokenDigest>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Deletes the client and everything issued to it (codes, grants and their refresh tokens,
    /// consents, device authorizations, pushed requests); `false` if there was no such client.
    async fn delete_client(&self, id: &str) -> Result<bool, StoreError>;
}

/// An authorization code, between `/authorize` and its redemption at `/token`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationCode {
    /// The client it was issued to.
    pub client_id: String,
    /// The user who authorized.
    pub user_id: String,
    /// The login session it came from (OIDC `sid`).
    pub session_id: Option<String>,
    /// The redirect URI it was sent to (must be repeated at the token endpoint).
    pub redirect_uri: String,
    /// The id the grant created at redemption will get, so a replayed code can revoke it.
    pub grant_id: String,
    /// Issued.
    pub created_at: OffsetDateTime,
    /// Unusable after.
    pub expires_at: OffsetDateTime,
    /// Scope, nonce, PKCE challenge, auth_time, amr, acr, ... (owned by `oauth`).
    pub detail: Map<String, Value>,
}

/// The result of [`GrantStore::redeem_authorization_code`].
#[derive(Debug, Clone, PartialEq)]
pub enum CodeRedemption {
    /// First redemption: the code is now used.
    Redeemed(AuthorizationCode),
    /// The code was redeemed before: a replay. The caller revokes `grant_id`.
    AlreadyRedeemed(AuthorizationCode),
    /// No such code (or purged).
    Unknown,
}

/// One authorization of a client: the family refresh tokens descend from.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// Id (a ULID), carried by access tokens as `gid`.
    pub id: String,
    /// The client.
    pub client_id: String,
    /// The user; `None` for a client acting on its own behalf.
    pub user_id: Option<String>,
    /// The login session it came from (OIDC `sid`), for logout.
    pub session_id: Option<String>,
    /// Granted scope (space separated).
    pub scope: String,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Refresh tokens of this grant are unusable after (absolute lifetime).
    pub expires_at: OffsetDateTime,
    /// When revoked; `None` while live.
    pub revoked_at: Option<OffsetDateTime>,
    /// auth_time, amr, acr, ... (owned by `oauth`).
    pub detail: Map<String, Value>,
}

/// A refresh token (stored under its digest).
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshToken {
    /// The family.
    pub grant_id: String,
    /// Issued.
    pub created_at: OffsetDateTime,
    /// Unusable after (never later than the grant's `expires_at`).
    pub expires_at: OffsetDateTime,
    /// When it was exchanged for a new one; `None` while it is the current token.
    pub rotated_at: Option<OffsetDateTime>,
}

/// The result of [`GrantStore::rotate_refresh_token`].
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshRotation {
    /// The token was current: it is now rotated and the new one stored.
    Rotated(Grant),
    /// The token had been rotated less than `grace` ago (a concurrent refresh): the new one is
    /// stored as well and the family lives on.
    WithinGrace(Grant),
    /// The token had been rotated longer than `grace` ago: a replay. The whole grant was revoked
    /// in the same transaction; nothing new stored.
    Reused {
        /// The revoked grant.
        grant_id: String,
    },
    /// Unknown, expired, issued to another client, its grant revoked or expired, or its user
    /// disabled or deleted. Nothing written.
    Invalid,
}

/// A user's consent to a client, per scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Consent {
    /// The user.
    pub user_id: String,
    /// The client.
    pub client_id: String,
    /// Consented scopes (distinct).
    pub scopes: Vec<String>,
    /// First granted.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// Where a device authorization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Waiting for the user.
    Pending,
    /// The user approved; tokens not yet collected.
    Approved,
    /// The user denied.
    Denied,
    /// Tokens were issued; any further poll is refused.
    Redeemed,
}

/// A device authorization (RFC 8628), stored under the digest of its device code.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceAuthorization {
    /// The code the user types (normalized by `oauth`), unique among unexpired ones.
    pub user_code: String,
    /// The client (device).
    pub client_id: String,
    /// Requested scope.
    pub scope: String,
    /// Issued.
    pub created_at: OffsetDateTime,
    /// Unusable after.
    pub expires_at: OffsetDateTime,
    /// Minimum seconds between polls (grows by 5 at each `slow_down`).
    pub interval_secs: i64,
    /// Last poll.
    pub last_polled_at: Option<OffsetDateTime>,
    /// Where it stands.
    pub status: DeviceStatus,
    /// Who approved or denied.
    pub user_id: Option<String>,
    /// The approving login session.
    pub session_id: Option<String>,
    /// auth_time, amr, acr of the approval (owned by `oauth`).
    pub detail: Map<String, Value>,
}

/// The result of [`GrantStore::poll_device_authorization`].
#[derive(Debug, Clone, PartialEq)]
pub enum DevicePoll {
    /// No such device code for this client.
    Unknown,
    /// Past `expires_at`.
    Expired,
    /// The user has not decided yet; `last_polled_at` moved.
    Pending,
    /// Polled sooner than the interval: the interval grew by 5 seconds (stored).
    SlowDown,
    /// The user denied.
    Denied,
    /// The user approved: now marked redeemed (exactly one poll gets this). The authorization
    /// is returned as now stored (status [`DeviceStatus::Redeemed`]).
    Approved(Box<DeviceAuthorization>),
    /// Tokens were issued already.
    AlreadyRedeemed,
}

/// A pushed authorization request (RFC 9126), stored under its `request_uri` id.
#[derive(Debug, Clone, PartialEq)]
pub struct PushedRequest {
    /// The client that pushed it.
    pub client_id: String,
    /// The authorization request parameters.
    pub parameters: Map<String, Value>,
    /// Pushed.
    pub created_at: OffsetDateTime,
    /// Unusable after.
    pub expires_at: OffsetDateTime,
}

/// Storage of grant artifacts.
#[async_trait]
pub trait GrantStore {
    /// Stores a code under its digest. Unknown client or user is [`StoreError::NotFound`].
    async fn put_authorization_code(
        &self,
        digest: &TokenDigest,
        code: &AuthorizationCode,
    ) -> Result<(), StoreError>;

    /// Marks the code used and returns it, atomically; a second call gets
    /// [`CodeRedemption::AlreadyRedeemed`]. Expiry is the caller's to check.
    async fn redeem_authorization_code(
        &self,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<CodeRedemption, StoreError>;

    /// Creates a grant, and its first refresh token when `refresh` is given, in one transaction.
    /// Unknown client or user is [`StoreError::NotFound`]; a disabled user is
    /// [`StoreError::Conflict`] [`USER_DISABLED`](crate::accounts::USER_DISABLED).
    async fn create_grant(
        &self,
        grant: &Grant,
        refresh: Option<(&TokenDigest, &RefreshToken)>,
    ) -> Result<(), StoreError>;

    /// The grant with this id (revoked or not).
    async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError>;

    /// Revokes a grant (its refresh tokens die with it); `false` if unknown or already revoked.
    async fn revoke_grant(&self, id: &str, now: OffsetDateTime) -> Result<bool, StoreError>;

    /// Unexpired grants that came from this login session, revoked ones included (their clients
    /// still had the user signed in: back-channel logout notifies them too).
    async fn session_grants(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Grant>, StoreError>;

    /// Revokes every live grant of the user and increments the user's token version, in one
    /// transaction; returns how many grants (0 for an unknown user). Used when a user is disabled
    /// or logs out everywhere.
    async fn revoke_user_grants(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError>;

    /// The user's token version (`uv` claim), `None` if there is no such user. Starts at 0.
    async fn user_token_version(&self, user_id: &str) -> Result<Option<i64>, StoreError>;

    /// The refresh token with this digest and its grant (whatever their state).
    async fn find_refresh_token(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<(RefreshToken, Grant)>, StoreError>;

    /// Exchanges the refresh token `old` (which must belong to `client_id`) for `new`, which
    /// expires at `new_expires_at` or at the grant's `expires_at` if that is earlier. See
    /// [`RefreshRotation`] for the outcomes; all are atomic. A rotated token stays rotated at its
    /// first rotation time, so the grace period does not stretch with every concurrent refresh.
    async fn rotate_refresh_token(
        &self,
        old: &TokenDigest,
        new: &TokenDigest,
        new_expires_at: OffsetDateTime,
        client_id: &str,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<RefreshRotation, StoreError>;

    /// The user's consent to the client.
    async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Consent>, StoreError>;

    /// Creates or replaces the consent (the caller merges scopes). Replacing keeps the stored
    /// `created_at` (first granted). Unknown client or user is [`StoreError::NotFound`].
    async fn put_consent(&self, consent: &Consent) -> Result<(), StoreError>;

    /// The user's consents, by client id.
    async fn list_consents(&self, user_id: &str) -> Result<Vec<Consent>, StoreError>;

    /// Withdraws the user's consent to the client and revokes the user's live grants to that
    /// client, in one transaction; `false` if there was no consent (live grants are revoked all
    /// the same: withdrawing access never leaves a grant behind).
    async fn delete_consent(
        &self,
        user_id: &str,
        client_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Stores a device authorization under the digest of its device code. A `user_code` that an
    /// unexpired authorization already uses is [`StoreError::Conflict`]
    /// [`USER_CODE_TAKEN`] (the caller draws again); an authorization holding it that has expired
    /// by `authorization.created_at` is deleted in the same transaction and the code reused.
    /// Unknown client is [`StoreError::NotFound`].
    async fn put_device_authorization(
        &self,
        device_digest: &TokenDigest,
        authorization: &DeviceAuthorization,
    ) -> Result<(), StoreError>;

    /// The pending, unexpired authorization with this user code.
    async fn find_pending_device_authorization(
        &self,
        user_code: &str,
        now: OffsetDateTime,
    ) -> Result<Option<DeviceAuthorization>, StoreError>;

    /// Approves (`approve`) or denies the pending, unexpired authorization with this user code,
    /// recording the user, session and detail; `false` if it is not pending or has expired.
    async fn decide_device_authorization(
        &self,
        user_code: &str,
        approve: bool,
        user_id: &str,
        session_id: Option<&str>,
        detail: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// One poll of the token endpoint with this device code by `client_id`. See [`DevicePoll`].
    async fn poll_device_authorization(
        &self,
        device_digest: &TokenDigest,
        client_id: &str,
        now: OffsetDateTime,
    ) -> Result<DevicePoll, StoreError>;

    /// Stores a pushed authorization request under `id` (the `request_uri` suffix). Unknown
    /// client is [`StoreError::NotFound`], an id in use [`StoreError::Conflict`].
    async fn put_pushed_request(&self, id: &str, request: &PushedRequest)
    -> Result<(), StoreError>;

    /// The unexpired, unconsumed pushed request with this id.
    async fn get_pushed_request(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<PushedRequest>, StoreError>;

    /// Marks the pushed request used (it then is never returned again); `false` if it was used
    /// already or is unknown.
    async fn consume_pushed_request(&self, id: &str) -> Result<bool, StoreError>;

    /// Records a client assertion's `jti` until `expires_at`; `false` if this client used that
    /// `jti` before (a replay; also while the old record awaits its purge after expiring).
    /// Atomic. Unknown client is [`StoreError::NotFound`].
    async fn record_client_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Records that the access token with this `jti` is revoked until it expires anyway.
    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Whether the access token with this `jti` was revoked.
    async fn access_token_revoked(&self, jti: &str) -> Result<bool, StoreError>;

    /// Deletes what can no longer be used at `now`: expired codes, device authorizations, pushed
    /// requests, assertion ids and revoked-token records, and grants (with their refresh tokens)
    /// that expired or were revoked before `now`. Also expired refresh tokens of live grants
    /// (an expired token is refused before reuse detection looks at it) and consumed pushed
    /// requests. Consumed codes and rotated refresh tokens stay until they expire: they are what
    /// recognises a replay. Returns how many rows (refresh tokens included).
    async fn purge_grants(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}

// ---------------------------------------------------------------------------------------------
// Validation, decisions and error mapping shared by the backends.

/// The [`StoreError::Conflict`] message when a client id is registered already.
pub const CLIENT_EXISTS: &str = "client id is already registered";
/// The [`StoreError::Conflict`] message when a signing key id is in use already.
pub const KID_TAKEN: &str = "signing key id is already in use";
/// The [`StoreError::Conflict`] message when an unexpired device authorization has the user code.
pub const USER_CODE_TAKEN: &str = "user code is in use by an unexpired device authorization";

/// Largest accepted sealed private key (an RSA-4096 PKCS#8 key, sealed, fits easily).
pub const MAX_SEALED_KEY_BYTES: usize = 16 * 1024;
/// Largest accepted redirect URI or scope string.
pub const MAX_TEXT_BYTES: usize = 4 * 1024;

pub(crate) fn client_not_found(id: &str) -> StoreError {
    StoreError::NotFound(format!("client {}", shorten(id)))
}

/// A text that may be empty (a scope) but is bounded and free of NUL.
fn check_text(what: &str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.len() > max {
        return Err(StoreError::InvalidInput(format!(
            "{what} is {} bytes long, at most {max} are accepted",
            value.len()
        )));
    }
    if value.contains('\0') {
        return Err(StoreError::InvalidInput(format!(
            "{what} must not contain NUL characters"
        )));
    }
    Ok(())
}

fn check_uri(what: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(StoreError::InvalidInput(format!(
            "{what} must not be empty"
        )));
    }
    check_text(what, value, MAX_TEXT_BYTES)
}

/// Checks a signing key for storage and returns its public JWK as JSON.
pub(crate) fn check_signing_key(
    key: &SigningKey,
    expected_newest: Option<&str>,
    retirement: Option<&KeyRetirement>,
) -> Result<String, StoreError> {
    check_input("key id", &key.kid)?;
    check_input("algorithm", &key.algorithm)?;
    check_optional("expected newest key id", expected_newest)?;
    check_bytes(
        "sealed private key",
        &key.sealed_private_key,
        MAX_SEALED_KEY_BYTES,
    )?;
    if let (Some(retires), Some(expires)) = (key.retires_at, key.expires_at)
        && expires < retires
    {
        return Err(StoreError::InvalidInput(
            "a key cannot leave JWKS before it stops signing".into(),
        ));
    }
    if let Some(r) = retirement
        && r.expires_at < r.retires_at
    {
        return Err(StoreError::InvalidInput(
            "a key cannot leave JWKS before it stops signing".into(),
        ));
    }
    json_object_text("public JWK", &key.public_jwk)
}

/// Checks a client for storage and returns its metadata as JSON.
pub(crate) fn check_client(client: &OAuthClient) -> Result<String, StoreError> {
    check_client_update(&client.id, &client.name, &client.metadata)
}

/// Checks a client's id, name and metadata and returns the metadata as JSON.
pub(crate) fn check_client_update(
    id: &str,
    name: &str,
    metadata: &Map<String, Value>,
) -> Result<String, StoreError> {
    check_input("client id", id)?;
    check_input("client name", name)?;
    json_object_text("client metadata", metadata)
}

/// Checks an authorization code for storage and returns its detail as JSON.
pub(crate) fn check_code(code: &AuthorizationCode) -> Result<String, StoreError> {
    check_input("client id", &code.client_id)?;
    check_input("user id", &code.user_id)?;
    check_optional("session id", code.session_id.as_deref())?;
    check_uri("redirect URI", &code.redirect_uri)?;
    check_input("grant id", &code.grant_id)?;
    json_object_text("code detail", &code.detail)
}

/// Checks a grant (and its first refresh token) for storage and returns its detail as JSON.
pub(crate) fn check_grant(
    grant: &Grant,
    refresh: Option<(&TokenDigest, &RefreshToken)>,
) -> Result<String, StoreError> {
    check_input("grant id", &grant.id)?;
    check_input("client id", &grant.client_id)?;
    check_optional("user id", grant.user_id.as_deref())?;
    check_optional("session id", grant.session_id.as_deref())?;
    check_text("scope", &grant.scope, MAX_TEXT_BYTES)?;
    if let Some((_, token)) = refresh
        && token.grant_id != grant.id
    {
        return Err(StoreError::InvalidInput(
            "the refresh token must belong to the grant being created".into(),
        ));
    }
    json_object_text("grant detail", &grant.detail)
}

/// A refresh token's expiry: never later than its grant's.
pub(crate) fn refresh_expiry(
    wanted: OffsetDateTime,
    grant_expires_at: OffsetDateTime,
) -> OffsetDateTime {
    normalize_time(wanted.min(grant_expires_at))
}

pub(crate) fn check_rotation(
    old: &TokenDigest,
    new: &TokenDigest,
    client_id: &str,
    grace: Duration,
) -> Result<(), StoreError> {
    check_input("client id", client_id)?;
    if grace.is_negative() {
        return Err(StoreError::InvalidInput(
            "the reuse grace period must not be negative".into(),
        ));
    }
    if old == new {
        return Err(StoreError::InvalidInput(
            "the new refresh token must differ from the old one".into(),
        ));
    }
    Ok(())
}

/// What [`GrantStore::rotate_refresh_token`] does with the token it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RotationStep {
    /// Nothing to do: [`RefreshRotation::Invalid`].
    Invalid,
    /// Mark rotated and store the new token.
    Rotate,
    /// Store the new token (the old one was rotated moments ago).
    Grace,
    /// Revoke the grant.
    Reuse,
}

/// Decides a rotation. `user_status` is the stored status of the grant's user (`None` if the
/// grant has no user, or the user is gone).
pub(crate) fn rotation_step(
    token: &RefreshToken,
    grant: &Grant,
    user_status: Option<&str>,
    client_id: &str,
    now: OffsetDateTime,
    grace: Duration,
) -> Result<RotationStep, StoreError> {
    if grant.client_id != client_id
        || token.expires_at <= now
        || grant.expires_at <= now
        || grant.revoked_at.is_some()
    {
        return Ok(RotationStep::Invalid);
    }
    if grant.user_id.is_some() {
        match user_status.map(status_from_db).transpose()? {
            Some(UserStatus::Active) => {}
            Some(UserStatus::Disabled) | None => return Ok(RotationStep::Invalid),
        }
    }
    Ok(match token.rotated_at {
        None => RotationStep::Rotate,
        Some(rotated) if now - rotated < grace => RotationStep::Grace,
        Some(_) => RotationStep::Reuse,
    })
}

/// Checks a consent for storage and returns its scopes as JSON.
pub(crate) fn check_consent(consent: &Consent) -> Result<String, StoreError> {
    check_input("user id", &consent.user_id)?;
    check_input("client id", &consent.client_id)?;
    let mut seen = std::collections::HashSet::new();
    for scope in &consent.scopes {
        check_input("scope", scope)?;
        if !seen.insert(scope.as_str()) {
            return Err(StoreError::InvalidInput(format!(
                "scope {} is listed twice",
                shorten(scope)
            )));
        }
    }
    json_text("scopes", &consent.scopes, MAX_JSON_BYTES).map_err(StoreError::InvalidInput)
}

pub(crate) fn scopes_from_text(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Database(format!("stored scopes are not a list of strings: {e}")))
}

/// The stored spelling of a device authorization's status.
pub(crate) fn device_status_str(status: DeviceStatus) -> &'static str {
    match status {
        DeviceStatus::Pending => "pending",
        DeviceStatus::Approved => "approved",
        DeviceStatus::Denied => "denied",
        DeviceStatus::Redeemed => "redeemed",
    }
}

pub(crate) fn device_status_from_db(s: &str) -> Result<DeviceStatus, StoreError> {
    match s {
        "pending" => Ok(DeviceStatus::Pending),
        "approved" => Ok(DeviceStatus::Approved),
        "denied" => Ok(DeviceStatus::Denied),
        "redeemed" => Ok(DeviceStatus::Redeemed),
        other => Err(StoreError::Database(format!(
            "unknown device authorization status {other:?}"
        ))),
    }
}

/// Checks a device authorization for storage and returns its detail as JSON.
pub(crate) fn check_device_authorization(
    authorization: &DeviceAuthorization,
) -> Result<String, StoreError> {
    check_input("user code", &authorization.user_code)?;
    check_input("client id", &authorization.client_id)?;
    check_text("scope", &authorization.scope, MAX_TEXT_BYTES)?;
    if authorization.interval_secs <= 0 {
        return Err(StoreError::InvalidInput(format!(
            "poll interval must be positive, not {}",
            authorization.interval_secs
        )));
    }
    check_optional("user id", authorization.user_id.as_deref())?;
    check_optional("session id", authorization.session_id.as_deref())?;
    json_object_text("device authorization detail", &authorization.detail)
}

/// Checks a device decision and returns its detail as JSON.
pub(crate) fn check_device_decision(
    user_code: &str,
    user_id: &str,
    session_id: Option<&str>,
    detail: &Map<String, Value>,
) -> Result<String, StoreError> {
    check_input("user code", user_code)?;
    check_input("user id", user_id)?;
    check_optional("session id", session_id)?;
    json_object_text("device authorization detail", detail)
}

/// What [`GrantStore::poll_device_authorization`] does with the authorization it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollStep {
    /// Answer without writing.
    Answer(DevicePollAnswer),
    /// Mark redeemed and hand the approval out.
    Redeem,
    /// Grow the interval by 5 seconds and record the poll.
    SlowDown,
    /// Record the poll.
    Pending,
}

/// The answers of a poll that writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DevicePollAnswer {
    Unknown,
    Expired,
    Denied,
    AlreadyRedeemed,
}

impl From<DevicePollAnswer> for DevicePoll {
    fn from(answer: DevicePollAnswer) -> Self {
        match answer {
            DevicePollAnswer::Unknown => DevicePoll::Unknown,
            DevicePollAnswer::Expired => DevicePoll::Expired,
            DevicePollAnswer::Denied => DevicePoll::Denied,
            DevicePollAnswer::AlreadyRedeemed => DevicePoll::AlreadyRedeemed,
        }
    }
}

/// How much a `slow_down` grows the poll interval (RFC 8628 section 3.5).
pub(crate) const SLOW_DOWN_SECS: i64 = 5;

/// Decides a poll by `client_id` at `now`.
pub(crate) fn poll_step(
    authorization: &DeviceAuthorization,
    client_id: &str,
    now: OffsetDateTime,
) -> PollStep {
    if authorization.client_id != client_id {
        return PollStep::Answer(DevicePollAnswer::Unknown);
    }
    if authorization.expires_at <= now {
        return PollStep::Answer(DevicePollAnswer::Expired);
    }
    match authorization.status {
        DeviceStatus::Denied => PollStep::Answer(DevicePollAnswer::Denied),
        DeviceStatus::Redeemed => PollStep::Answer(DevicePollAnswer::AlreadyRedeemed),
        DeviceStatus::Approved => PollStep::Redeem,
        DeviceStatus::Pending => match authorization.last_polled_at {
            Some(last) if now - last < Duration::seconds(authorization.interval_secs) => {
                PollStep::SlowDown
            }
            _ => PollStep::Pending,
        },
    }
}

/// Checks a pushed request for storage and returns its parameters as JSON.
pub(crate) fn check_pushed_request(
    id: &str,
    request: &PushedRequest,
) -> Result<String, StoreError> {
    check_input("request id", id)?;
    check_input("client id", &request.client_id)?;
    json_object_text("pushed request parameters", &request.parameters)
}

/// The error when an insert referencing a client (and perhaps a user) hit a foreign key:
/// whichever does not exist.
pub(crate) fn missing_owner(
    client_id: &str,
    client_exists: bool,
    user_id: Option<&str>,
) -> StoreError {
    match user_id {
        Some(user_id) if client_exists => user_not_found(user_id),
        _ => client_not_found(client_id),
    }
}

/// Whether an error is a foreign-key violation (a referenced client or user is missing).
pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

fn unique_violation_text(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => Some(format!(
            "{} {}",
            db.constraint().unwrap_or_default(),
            db.message()
        )),
        _ => None,
    }
}

/// Maps a write of a new client: an id taken.
pub(crate) fn client_write_error(err: sqlx::Error) -> StoreError {
    match unique_violation_text(&err) {
        Some(_) => StoreError::Conflict(CLIENT_EXISTS.into()),
        None => err.into(),
    }
}

/// Maps a write of a new signing key: a kid taken.
pub(crate) fn signing_key_write_error(err: sqlx::Error) -> StoreError {
    match unique_violation_text(&err) {
        Some(_) => StoreError::Conflict(KID_TAKEN.into()),
        None => err.into(),
    }
}

/// Maps a write of a new device authorization: a user code or device code taken.
pub(crate) fn device_write_error(err: sqlx::Error) -> StoreError {
    match unique_violation_text(&err) {
        Some(what) if what.contains("user_code") => StoreError::Conflict(USER_CODE_TAKEN.into()),
        Some(_) => StoreError::Conflict("device code is already stored".into()),
        None => err.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: OffsetDateTime = time::macros::datetime!(2026-11-23 10:00 UTC);

    fn grant() -> Grant {
        Grant {
            id: "g".into(),
            client_id: "c".into(),
            user_id: Some("u".into()),
            session_id: None,
            scope: "openid".into(),
            created_at: T0,
            expires_at: T0 + Duration::hours(1),
            revoked_at: None,
            detail: Map::new(),
        }
    }

    fn token(rotated_at: Option<OffsetDateTime>) -> RefreshToken {
        RefreshToken {
            grant_id: "g".into(),
            created_at: T0,
            expires_at: T0 + Duration::minutes(30),
            rotated_at,
        }
    }

    #[test]
    fn rotations_are_decided() {
        let grace = Duration::seconds(10);
        let now = T0 + Duration::minutes(1);
        let step = |t: &RefreshToken, g: &Grant, status: Option<&str>, client: &str, now| {
            rotation_step(t, g, status, client, now, grace).ok()
        };
        let active = Some("active");
        assert_eq!(
            step(&token(None), &grant(), active, "c", now),
            Some(RotationStep::Rotate)
        );
        let just = Some(now - Duration::seconds(9));
        assert_eq!(
            step(&token(just), &grant(), active, "c", now),
            Some(RotationStep::Grace)
        );
        let long_ago = Some(now - Duration::seconds(10));
        assert_eq!(
            step(&token(long_ago), &grant(), active, "c", now),
            Some(RotationStep::Reuse)
        );
        assert_eq!(
            step(&token(long_ago), &grant(), active, "other", now),
            Some(RotationStep::Invalid)
        );
        assert_eq!(
            step(&token(None), &grant(), Some("disabled"), "c", now),
            Some(RotationStep::Invalid)
        );
        assert_eq!(
            step(&token(None), &grant(), None, "c", now),
            Some(RotationStep::Invalid)
        );
        let machine = Grant {
            user_id: None,
            ..grant()
        };
        assert_eq!(
            step(&token(None), &machine, None, "c", now),
            Some(RotationStep::Rotate)
        );
        let at_expiry = T0 + Duration::minutes(30);
        assert_eq!(
            step(&token(None), &grant(), active, "c", at_expiry),
            Some(RotationStep::Invalid)
        );
        let revoked = Grant {
            revoked_at: Some(T0),
            ..grant()
        };
        assert_eq!(
            step(&token(None), &revoked, active, "c", now),
            Some(RotationStep::Invalid)
        );
    }

    #[test]
    fn polls_are_decided() {
        let pending = DeviceAuthorization {
            user_code: "ABCD-EFGH".into(),
            client_id: "c".into(),
            scope: String::new(),
            created_at: T0,
            expires_at: T0 + Duration::minutes(10),
            interval_secs: 5,
            last_polled_at: Some(T0),
            status: DeviceStatus::Pending,
            user_id: None,
            session_id: None,
            detail: Map::new(),
        };
        let at = |s| T0 + Duration::seconds(s);
        assert_eq!(
            poll_step(&pending, "x", at(6)),
            PollStep::Answer(DevicePollAnswer::Unknown)
        );
        assert_eq!(poll_step(&pending, "c", at(4)), PollStep::SlowDown);
        assert_eq!(poll_step(&pending, "c", at(5)), PollStep::Pending);
        assert_eq!(
            poll_step(&pending, "c", at(600)),
            PollStep::Answer(DevicePollAnswer::Expired)
        );
        let approved = DeviceAuthorization {
            status: DeviceStatus::Approved,
            ..pending.clone()
        };
        assert_eq!(poll_step(&approved, "c", at(1)), PollStep::Redeem);
    }

    #[test]
    fn inputs_are_checked() {
        let mut g = grant();
        g.scope = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(check_grant(&g, None).is_err());
        let t = RefreshToken {
            grant_id: "other".into(),
            ..token(None)
        };
        assert!(check_grant(&grant(), Some((&TokenDigest::of("r"), &t))).is_err());
        let consent = Consent {
            user_id: "u".into(),
            client_id: "c".into(),
            scopes: vec!["a".into(), "a".into()],
            created_at: T0,
            updated_at: T0,
        };
        assert!(check_consent(&consent).is_err());
        let d = TokenDigest::of("x");
        assert!(check_rotation(&d, &d, "c", Duration::ZERO).is_err());
        assert!(check_rotation(&d, &TokenDigest::of("y"), "c", Duration::seconds(-1)).is_err());
        assert_eq!(refresh_expiry(T0 + Duration::hours(2), T0), T0);
    }
}
