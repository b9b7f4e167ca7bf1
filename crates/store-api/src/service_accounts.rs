//! Machine principals, and the API keys that machines and users authenticate with.
//!
//! A service account is a non-human principal; what it may do is not stored here but decided by
//! trustgate's own PDP over the system store (roles are relationship tuples). An API key belongs
//! to a service account or, as a personal access token, to a user. Keys are 256-bit secrets; the
//! store keeps only their [`TokenDigest`], so a database leak does not leak usable credentials.
//!
//! Every change that must end a credential's life at once on every replica (a key revoked or
//! rotated, an owner disabled or deleted) advances the **credential epoch** in the same
//! transaction; replicas that cache verified keys poll [`ApiKeyStore::credential_epoch`] and drop
//! their cache when it moves.

use async_trait::async_trait;
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

use crate::StoreError;

/// The id of the relationship store that holds trustgate's own roles (the system store). A
/// ULID-shaped id no generated store id can take (time zero); the OpenFGA API never shows it.
pub const SYSTEM_STORE_ID: &str = "00000000000000000000000000";

/// A machine principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Stable id (a ULID).
    pub id: String,
    /// Unique human-readable name.
    pub name: String,
    /// Who is responsible for it (a team, a person, an application), free text.
    pub owner: Option<String>,
    /// What it is for.
    pub description: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it was disabled; a disabled account's keys authenticate nothing.
    pub disabled_at: Option<OffsetDateTime>,
}

/// A service account to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewServiceAccount<'a> {
    /// Its id (a ULID).
    pub id: &'a str,
    /// Unique name (1 to 64 characters; checked by the caller).
    pub name: &'a str,
    /// Who is responsible for it.
    pub owner: Option<&'a str>,
    /// What it is for.
    pub description: &'a str,
}

/// A page of service accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountPage {
    /// Accounts ordered by id.
    pub accounts: Vec<ServiceAccount>,
    /// The id to pass as `after` for the next page, if there may be one.
    pub next: Option<String>,
}

/// Whose an API key is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyOwner {
    /// A service account's key (by account id).
    Service(String),
    /// A user's personal access token (by user id).
    User(String),
}

impl KeyOwner {
    /// `service` or `user`: the owner's type in relationship tuples.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyOwner::Service(_) => "service",
            KeyOwner::User(_) => "user",
        }
    }

    /// The owner's id.
    pub fn id(&self) -> &str {
        match self {
            KeyOwner::Service(id) | KeyOwner::User(id) => id,
        }
    }
}

/// A stored API key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Key id (a ULID); also the non-secret part of the key string.
    pub id: String,
    /// Whose key it is.
    pub owner: KeyOwner,
    /// What it is for.
    pub description: String,
    /// The permissions it is limited to (scope strings, checked by the caller).
    pub scopes: Vec<String>,
    /// Requests per minute this key may make (a token bucket of that size), if limited.
    pub rate_limit_per_minute: Option<u32>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it stops authenticating, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// When it was revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<String>,
    /// When it last authenticated a request (written in batches, so up to a flush behind).
    pub last_used_at: Option<OffsetDateTime>,
    /// The client address of that request.
    pub last_used_ip: Option<String>,
}

/// An API key to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewApiKey<'a> {
    /// Key id (a ULID).
    pub id: &'a str,
    /// Digest of the whole key string.
    pub digest: &'a TokenDigest,
    /// What it is for.
    pub description: &'a str,
    /// The permissions it is limited to.
    pub scopes: &'a [String],
    /// Requests per minute, if limited.
    pub rate_limit_per_minute: Option<u32>,
    /// When it stops authenticating, if ever.
    pub expires_at: Option<OffsetDateTime>,
}

/// A key that authenticated: the key and its owner's display name. Only returned for a key
/// that is not revoked and whose owner exists and is enabled; expiry is the caller's to check
/// against its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKey {
    /// The key.
    pub key: ApiKey,
    /// The owner's name (service account name or username), for logs and audit.
    pub owner_name: String,
}

/// One use of a key, recorded in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// The key.
    pub key_id: String,
    /// When.
    pub at: OffsetDateTime,
    /// From where.
    pub ip: Option<String>,
}

/// Outcome of [`ServiceAccountStore::ensure_bootstrap_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredKey {
    /// The account the key belongs to.
    pub account: ServiceAccount,
    /// Whether this call created the account (false if it existed).
    pub account_created: bool,
    /// Whether this call registered the key (false if its digest was registered already).
    pub key_created: bool,
}

/// What a client certificate (mutual TLS) is matched by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertificateNameKind {
    /// The certificate's SPIFFE ID (`spiffe://trust-domain/path`).
    SpiffeId,
    /// The certificate's subject, RFC 4514.
    SubjectDn,
}

impl CertificateNameKind {
    /// The stored spelling (`spiffe_id`, `subject_dn`).
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateNameKind::SpiffeId => "spiffe_id",
            CertificateNameKind::SubjectDn => "subject_dn",
        }
    }
}

impl std::str::FromStr for CertificateNameKind {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "spiffe_id" => Ok(CertificateNameKind::SpiffeId),
            "subject_dn" => Ok(CertificateNameKind::SubjectDn),
            _ => Err(()),
        }
    }
}

/// The longest certificate name stored (a SPIFFE ID is at most 2048 bytes).
pub const MAX_CERTIFICATE_NAME_BYTES: usize = 2048;

/// A certificate name bound to a service account: a client certificate naming it authenticates
/// as the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateBinding {
    /// How the certificate is matched.
    pub kind: CertificateNameKind,
    /// The SPIFFE ID or subject DN.
    pub name: String,
    /// The account.
    pub account_id: String,
    /// When it was bound.
    pub created_at: OffsetDateTime,
}

/// Storage of service accounts.
#[async_trait]
pub trait ServiceAccountStore: std::fmt::Debug + Send + Sync {
    /// Creates an account; [`crate::Conflict::ServiceNameTaken`] if the name is taken.
    async fn create_service_account(
        &self,
        new: &NewServiceAccount<'_>,
        now: OffsetDateTime,
    ) -> Result<ServiceAccount, StoreError>;

    /// The account with id `id`.
    async fn get_service_account(&self, id: &str) -> Result<Option<ServiceAccount>, StoreError>;

    /// The account named `name`.
    async fn find_service_account(&self, name: &str) -> Result<Option<ServiceAccount>, StoreError>;

    /// Accounts ordered by id, after `after`, at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`](crate::relationships::MAX_PAGE_SIZE)).
    async fn list_service_accounts(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<ServiceAccountPage, StoreError>;

    /// Disables (`true`) or re-enables (`false`) the account and advances the credential epoch,
    /// in one transaction. `None` if there is no such account.
    async fn set_service_account_disabled(
        &self,
        id: &str,
        disabled: bool,
        now: OffsetDateTime,
    ) -> Result<Option<ServiceAccount>, StoreError>;

    /// Deletes the account with its keys and advances the credential epoch. Its role tuples in
    /// the system store are the caller's to delete. `false` if there was no such account.
    async fn delete_service_account(&self, id: &str) -> Result<bool, StoreError>;

    /// Creates the account `account.name` if it does not exist and registers `key` for it if
    /// its digest is not registered yet, atomically. Replicas racing on first start end up with
    /// one account; [`crate::Conflict::TokenOwnedElsewhere`] if the digest is another owner's.
    async fn ensure_bootstrap_key(
        &self,
        account: &NewServiceAccount<'_>,
        key: &NewApiKey<'_>,
        now: OffsetDateTime,
    ) -> Result<EnsuredKey, StoreError>;

    /// Binds the certificate name (1 to [`MAX_CERTIFICATE_NAME_BYTES`] bytes) to the account
    /// and advances the credential epoch: `true` if bound now, `false` if it was bound to this
    /// account already. [`crate::Conflict::CertificateNameTaken`] if another account has it,
    /// [`StoreError::NotFound`] if there is no such account.
    async fn bind_certificate(
        &self,
        account_id: &str,
        kind: CertificateNameKind,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Unbinds the name from the account and advances the credential epoch; `false` if it was
    /// not bound to it.
    async fn unbind_certificate(
        &self,
        account_id: &str,
        kind: CertificateNameKind,
        name: &str,
    ) -> Result<bool, StoreError>;

    /// The names bound to the account, by kind then name.
    async fn certificate_bindings(
        &self,
        account_id: &str,
    ) -> Result<Vec<CertificateBinding>, StoreError>;

    /// The account the name is bound to (enabled or not: the caller checks).
    async fn certificate_account(
        &self,
        kind: CertificateNameKind,
        name: &str,
    ) -> Result<Option<ServiceAccount>, StoreError>;
}

/// Storage of API keys and personal access tokens.
#[async_trait]
pub trait ApiKeyStore: std::fmt::Debug + Send + Sync {
    /// Stores a key for `owner`; [`crate::Conflict::Reference`] if the owner does not exist,
    /// [`crate::Conflict::OwnerDisabled`] if it is disabled, [`crate::Conflict::Duplicate`] if
    /// the id or digest is taken.
    async fn create_api_key(
        &self,
        owner: &KeyOwner,
        key: &NewApiKey<'_>,
        now: OffsetDateTime,
    ) -> Result<ApiKey, StoreError>;

    /// The key with id `id`.
    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError>;

    /// The keys of `owner` (all keys when `None`) ordered by id, revoked ones included.
    async fn list_api_keys(&self, owner: Option<&KeyOwner>) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes the key (if not revoked already) and advances the credential epoch. The key as
    /// stored afterwards; `None` if there is no such key.
    async fn revoke_api_key(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ApiKey>, StoreError>;

    /// Rotation, atomically: `new` is stored for the owner of key `old_id` with the old key's
    /// description, scopes and rate limit (its own id, digest and expiry), `rotated_from` set;
    /// the old key's expiry becomes `old_valid_until` unless it expires earlier; the credential
    /// epoch advances. Returns `(old, new)`; `None` if the old key does not exist or is revoked.
    async fn rotate_api_key(
        &self,
        old_id: &str,
        new: &NewApiKey<'_>,
        old_valid_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<(ApiKey, ApiKey)>, StoreError>;

    /// The key whose digest is `digest`, if it is not revoked and its owner exists and is
    /// enabled (expiry is not checked here).
    async fn authenticate_api_key(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<VerifiedKey>, StoreError>;

    /// Records last-use times and addresses, in one transaction; a use older than the stored
    /// one does not overwrite it, unknown keys are skipped.
    async fn record_api_key_uses(&self, uses: &[KeyUse]) -> Result<(), StoreError>;

    /// The credential epoch: advances with every revocation, rotation and owner disable or
    /// deletion (user disable and deletion included), with every change of an OAuth client
    /// ([`ClientStore`](crate::ClientStore): update, secret change, deletion), and with every
    /// revocation of a session, a grant or an access token and every "revoke all tokens of a
    /// user" ([`AccountStore`](crate::AccountStore), [`OAuthStore`](crate::OAuthStore)), so that
    /// a cache of any credential's validity (an introspection cache at an enforcement point)
    /// can follow it.
    async fn credential_epoch(&self) -> Result<i64, StoreError>;
}
