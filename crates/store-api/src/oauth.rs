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
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

#[cfg(doc)]
use crate::Conflict;
use crate::StoreError;
use crate::accounts::UserStatus;

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
pub trait SigningKeyStore: std::fmt::Debug + Send + Sync {
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
pub trait ClientStore: std::fmt::Debug + Send + Sync {
    /// Registers a client. An existing id is [`StoreError::Conflict`].
    async fn create_client(&self, client: &OAuthClient) -> Result<(), StoreError>;

    /// The client with this id.
    async fn get_client(&self, id: &str) -> Result<Option<OAuthClient>, StoreError>;

    /// Clients with an id greater than `after`, at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`](crate::relationships::MAX_PAGE_SIZE)).
    async fn list_clients(&self, after: Option<&str>, limit: u32)
    -> Result<ClientPage, StoreError>;

    /// Replaces name and metadata and advances the credential epoch (replicas caching clients
    /// drop them); `None` if there is no such client.
    async fn update_client(
        &self,
        id: &str,
        name: &str,
        metadata: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<Option<OAuthClient>, StoreError>;

    /// Replaces (or removes) the secret digest and advances the credential epoch; `false` if
    /// there is no such client.
    async fn set_client_secret(
        &self,
        id: &str,
        digest: Option<&TokenDigest>,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Deletes the client and everything issued to it (codes, grants and their refresh tokens,
    /// consents, device authorizations, pushed requests) and advances the credential epoch;
    /// `false` if there was no such client.
    async fn delete_client(&self, id: &str) -> Result<bool, StoreError>;

    /// Records a client assertion's `jti` until `expires_at`; `false` if this client used that
    /// `jti` before (a replay; also while the old record awaits its purge after expiring).
    /// Atomic. Unknown client is [`StoreError::NotFound`].
    async fn record_client_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
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
    /// Whether, after its rotation, it was honoured once more within the grace period (a
    /// concurrent refresh); the grace is honoured only once.
    pub grace_used: bool,
}

/// The result of [`GrantStore::rotate_refresh_token`].
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshRotation {
    /// The token was current: it is now rotated and the new one stored.
    Rotated(Grant),
    /// The token had been rotated moments ago (a concurrent refresh, [`RotationStep::Grace`]): the new one is
    /// stored as well and the family lives on.
    WithinGrace(Grant),
    /// The token was replayed ([`RotationStep::Reuse`]). The whole grant was revoked
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
    /// Minimum seconds between polls (grows at each `slow_down`).
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
    /// No such device code (for this client).
    Unknown,
    /// Past `expires_at`.
    Expired,
    /// The user has not decided yet; `last_polled_at` moved.
    Pending,
    /// Polled sooner than the interval: the interval grew (stored).
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
pub trait GrantStore: std::fmt::Debug + Send + Sync {
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
    /// [`StoreError::Conflict`] [`Conflict::UserDisabled`].
    async fn create_grant(
        &self,
        grant: &Grant,
        refresh: Option<(&TokenDigest, &RefreshToken)>,
    ) -> Result<(), StoreError>;

    /// The grant with this id (revoked or not).
    async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError>;

    /// Revokes a grant (its refresh tokens die with it) and advances the credential epoch;
    /// `false` if unknown or already revoked.
    async fn revoke_grant(&self, id: &str, now: OffsetDateTime) -> Result<bool, StoreError>;

    /// Unexpired grants that came from this login session, revoked ones included (their clients
    /// still had the user signed in: back-channel logout notifies them too).
    async fn session_grants(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Grant>, StoreError>;

    /// Revokes every live grant of the user, increments the user's token version and advances
    /// the credential epoch, in one transaction; returns how many grants (0 for an unknown user). Used when a user is disabled
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

    /// Exchanges the refresh token `old` for `new`, which expires at `new_expires_at` or at the
    /// grant's `expires_at` if that is earlier, as `decide` rules: the store reads the token, its
    /// grant and the grant user's status under a lock, asks `decide` (the protocol's rule, owned
    /// by `oauth`) and applies the [`RotationStep`] in the same transaction, so of concurrent
    /// exchanges of one token exactly one sees it unrotated. An unknown token is
    /// [`RefreshRotation::Invalid`] without asking. A rotated token stays rotated at its first
    /// rotation time, so a grace period does not stretch with every concurrent refresh.
    async fn rotate_refresh_token(
        &self,
        old: &TokenDigest,
        new: &TokenDigest,
        new_expires_at: OffsetDateTime,
        now: OffsetDateTime,
        decide: &RotationRule<'_>,
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
    /// [`Conflict::UserCodeTaken`] (the caller draws again); an authorization holding it that has expired
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

    /// One poll of the token endpoint with this device code: the store reads the authorization
    /// under a lock, asks `decide` (RFC 8628's rules, owned by `oauth`) and applies the
    /// [`DevicePollStep`] in the same transaction, so exactly one poll redeems an approval. An
    /// unknown device code is [`DevicePoll::Unknown`] without asking.
    async fn poll_device_authorization(
        &self,
        device_digest: &TokenDigest,
        now: OffsetDateTime,
        decide: &DevicePollRule<'_>,
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

    /// Records that the access token with this `jti` is revoked until it expires anyway, and
    /// advances the credential epoch.
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

/// The protocol's rule for a presented refresh token: given the token, its grant and the status
/// of the grant's user (`None` for a client's own grant, or when the user is gone), what to do.
pub type RotationRule<'a> =
    dyn Fn(&RefreshToken, &Grant, Option<UserStatus>) -> RotationStep + Send + Sync + 'a;

/// What [`GrantStore::rotate_refresh_token`] does with the token it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    /// Write nothing: [`RefreshRotation::Invalid`].
    Invalid,
    /// Mark the token rotated and store the new one: [`RefreshRotation::Rotated`].
    Rotate,
    /// Store the new token, leaving the old one rotated and marking its grace used (a
    /// concurrent refresh, honoured once): [`RefreshRotation::WithinGrace`].
    Grace,
    /// Revoke the grant: [`RefreshRotation::Reused`].
    Reuse,
}

/// The protocol's rule for one poll of a stored device authorization.
pub type DevicePollRule<'a> = dyn Fn(&DeviceAuthorization) -> DevicePollStep + Send + Sync + 'a;

/// What [`GrantStore::poll_device_authorization`] does with the authorization it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePollStep {
    /// Answer without writing anything.
    Refuse(DevicePollRefusal),
    /// Mark it redeemed and hand the approval out: [`DevicePoll::Approved`].
    Redeem,
    /// Record the poll and store the grown interval: [`DevicePoll::SlowDown`].
    SlowDown {
        /// The new minimum number of seconds between polls.
        interval_secs: i64,
    },
    /// Record the poll: [`DevicePoll::Pending`].
    Pending,
}

/// The answers of a poll that writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePollRefusal {
    /// [`DevicePoll::Unknown`] (e.g. another client's device code).
    Unknown,
    /// [`DevicePoll::Expired`].
    Expired,
    /// [`DevicePoll::Denied`].
    Denied,
    /// [`DevicePoll::AlreadyRedeemed`].
    AlreadyRedeemed,
}

impl From<DevicePollRefusal> for DevicePoll {
    fn from(refusal: DevicePollRefusal) -> Self {
        match refusal {
            DevicePollRefusal::Unknown => DevicePoll::Unknown,
            DevicePollRefusal::Expired => DevicePoll::Expired,
            DevicePollRefusal::Denied => DevicePoll::Denied,
            DevicePollRefusal::AlreadyRedeemed => DevicePoll::AlreadyRedeemed,
        }
    }
}

/// Largest accepted sealed private key (an RSA-4096 PKCS#8 key, sealed, fits easily).
pub const MAX_SEALED_KEY_BYTES: usize = 16 * 1024;
/// Largest accepted redirect URI or scope string.
pub const MAX_TEXT_BYTES: usize = 4 * 1024;
