//! Machine principals and their bearer tokens.
//!
//! A service account is a non-human principal. Its tokens are opaque 256-bit secrets; the store
//! keeps only their [`TokenDigest`], so a database leak does not leak usable credentials.

use async_trait::async_trait;
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

use crate::StoreError;

/// What a service account may do through the management API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountRole {
    /// Full access to the admin and management APIs.
    Admin,
}

impl AccountRole {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountRole::Admin => "admin",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(AccountRole::Admin),
            _ => None,
        }
    }
}

/// A machine principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Stable id.
    pub id: String,
    /// Unique human-readable name.
    pub name: String,
    /// What it may do.
    pub role: AccountRole,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it was disabled; a disabled account's tokens authenticate nothing.
    pub disabled_at: Option<OffsetDateTime>,
}

/// Outcome of [`ServiceAccountStore::ensure_account_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredToken {
    /// The account the token belongs to.
    pub account: ServiceAccount,
    /// Whether this call created the account (false if it existed).
    pub account_created: bool,
    /// Whether this call registered the token (false if it was registered already).
    pub token_created: bool,
}

/// Storage of service accounts and their token digests.
#[async_trait]
pub trait ServiceAccountStore: std::fmt::Debug + Send + Sync {
    /// The account named `name`, if any.
    async fn find_service_account(&self, name: &str) -> Result<Option<ServiceAccount>, StoreError>;

    /// Creates the account `name` with one token, atomically, unless an account of that name
    /// exists (then nothing is written and `None` is returned). Of replicas racing on first
    /// start, exactly one creates the account.
    async fn create_service_account(
        &self,
        account_id: &str,
        name: &str,
        role: AccountRole,
        digest: &TokenDigest,
        token_label: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ServiceAccount>, StoreError>;

    /// Creates the account `name` if it does not exist and registers `digest` for it if it is
    /// not registered yet, atomically. Replicas racing on first start end up with one account.
    async fn ensure_account_token(
        &self,
        account_id: &str,
        name: &str,
        role: AccountRole,
        digest: &TokenDigest,
        token_label: &str,
        now: OffsetDateTime,
    ) -> Result<EnsuredToken, StoreError>;

    /// The enabled account a token digest belongs to.
    async fn authenticate_service_token(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<ServiceAccount>, StoreError>;
}
