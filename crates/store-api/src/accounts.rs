//! Human accounts: users and their profile, password hashes, server-side sessions, second
//! factors (TOTP, recovery codes, passkeys) and the audit trail of credential events.
//!
//! What is stored, and how:
//! - password hashes are argon2id PHC strings produced by `authn` (parameters live in the hash);
//! - session ids are 256-bit random values stored only as their SHA-256 [`TokenDigest`]; a
//!   session also has a public id (a ULID) by which a user lists and revokes it;
//! - TOTP secrets arrive already sealed (encrypted) by the caller; the store never sees them in
//!   the clear. The last accepted time step is kept so a code cannot be replayed, and advancing
//!   it is atomic ([`MfaStore::advance_totp_step`]) so two concurrent logins cannot both use it;
//! - recovery codes are stored as digests and consumed atomically;
//! - passkeys (WebAuthn credentials) keep their COSE public key and signature counter;
//! - audit events never contain a secret (the caller passes only ids, outcomes and context).
//!
//! Usernames and emails are unique case-insensitively: the store compares their lowercase forms
//! (Unicode lowercasing done by trustgate, so both backends agree). They also share one namespace:
//! no user's username may equal another user's email, so [`UserStore::find_user_by_login`] can
//! never match two users.

use async_trait::async_trait;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use trustgate_core::TokenDigest;

#[cfg(doc)]
use crate::Conflict;
use crate::StoreError;
use crate::audit::{AuditAnchor, AuditChain, AuditRecord, ChainHead};

/// Whether a user may authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// May log in.
    Active,
    /// May not log in; their sessions are revoked when this is set.
    Disabled,
}

impl UserStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(UserStatus::Active),
            "disabled" => Some(UserStatus::Disabled),
            _ => None,
        }
    }
}

/// A human account.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Stable id (a ULID).
    pub id: String,
    /// Unique login name.
    pub username: String,
    /// Unique email address.
    pub email: String,
    /// Whether the email address was verified.
    pub email_verified: bool,
    /// Display name.
    pub name: Option<String>,
    /// BCP 47 locale.
    pub locale: Option<String>,
    /// Custom attributes (a JSON object).
    pub attributes: Map<String, Value>,
    /// Active or disabled.
    pub status: UserStatus,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change of profile, status or password.
    pub updated_at: OffsetDateTime,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Id chosen by the caller (a ULID).
    pub id: String,
    /// Login name.
    pub username: String,
    /// Email address.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Locale.
    pub locale: Option<String>,
    /// Custom attributes.
    pub attributes: Map<String, Value>,
    /// An argon2id PHC string, if the user gets a password now.
    pub password_hash: Option<String>,
}

/// A profile change; `None` fields are left as they are.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    /// New email (resets `email_verified` unless that is given too, or only the case changes).
    pub email: Option<String>,
    /// New verification state.
    pub email_verified: Option<bool>,
    /// New display name (`Some(None)` clears it).
    pub name: Option<Option<String>>,
    /// New locale (`Some(None)` clears it).
    pub locale: Option<Option<String>>,
    /// Replaces the custom attributes.
    pub attributes: Option<Map<String, Value>>,
}

/// A page of users.
#[derive(Debug, Clone)]
pub struct UserPage {
    /// Users ordered by id.
    pub users: Vec<User>,
    /// The id to pass as `after` for the next page, if there is one.
    pub next: Option<String>,
}

/// Storage of users and their password hashes.
#[async_trait]
pub trait UserStore: std::fmt::Debug + Send + Sync {
    /// Creates a user (active, email not verified). A username or email taken
    /// (case-insensitively, as a username or as an email of another user) is
    /// [`StoreError::Conflict`] naming which ([`Conflict::UsernameTaken`], [`Conflict::EmailTaken`]), and nothing is
    /// written.
    async fn create_user(&self, user: &NewUser, now: OffsetDateTime) -> Result<User, StoreError>;

    /// The user with this id.
    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError>;

    /// The user whose username or email equals `login`, case-insensitively.
    async fn find_user_by_login(&self, login: &str) -> Result<Option<User>, StoreError>;

    /// Users ordered by id, after `after`, at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`](crate::relationships::MAX_PAGE_SIZE)).
    async fn list_users(&self, after: Option<&str>, limit: u32) -> Result<UserPage, StoreError>;

    /// Applies a profile change; `None` if there is no such user. Conflicts as in create.
    async fn update_user(
        &self,
        id: &str,
        update: &UserUpdate,
        now: OffsetDateTime,
    ) -> Result<Option<User>, StoreError>;

    /// Sets the status; disabling also revokes every session of the user and advances the
    /// credential epoch (their personal access tokens stop at once), in one transaction.
    /// `false` if there is no such user.
    async fn set_user_status(
        &self,
        id: &str,
        status: UserStatus,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Deletes the user and everything that belongs to them (sessions, factors, personal access
    /// tokens), advancing the credential epoch.
    async fn delete_user(&self, id: &str) -> Result<bool, StoreError>;

    /// The stored password hash, if the user has a password.
    async fn password_hash(&self, user_id: &str) -> Result<Option<String>, StoreError>;

    /// Replaces the password hash (a rehash with upgraded parameters, or a new password).
    async fn set_password_hash(
        &self,
        user_id: &str,
        hash: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
}

/// A server-side session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Public id (a ULID), shown in session lists; not a credential.
    pub id: String,
    /// The user.
    pub user_id: String,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last request seen.
    pub last_seen_at: OffsetDateTime,
    /// Expires if unused until then (moves on use).
    pub idle_expires_at: OffsetDateTime,
    /// Expires then whatever happens.
    pub absolute_expires_at: OffsetDateTime,
    /// When the user last authenticated actively (OIDC `auth_time`).
    pub auth_time: OffsetDateTime,
    /// Authentication methods (RFC 8176: `pwd`, `otp`, `hwk`, `swk`, `mfa`).
    pub amr: Vec<String>,
    /// Authentication context class.
    pub acr: String,
    /// Client IP at creation.
    pub ip: Option<String>,
    /// User agent at creation.
    pub user_agent: Option<String>,
}

/// Storage of sessions, looked up by the digest of their secret id.
#[async_trait]
pub trait SessionStore: std::fmt::Debug + Send + Sync {
    /// Stores a session under the digest of its secret. The user must exist
    /// ([`StoreError::NotFound`]) and be active ([`StoreError::Conflict`] [`Conflict::UserDisabled`]);
    /// this is checked in the same transaction, so a session cannot slip past a concurrent
    /// disable.
    async fn create_session(
        &self,
        digest: &TokenDigest,
        session: &Session,
    ) -> Result<(), StoreError>;

    /// The live session with this digest: not revoked, not expired at `now`, and belonging to an
    /// active user.
    async fn find_session(
        &self,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, StoreError>;

    /// Records use: moves `last_seen_at` and the idle expiry. Does nothing to a session that is
    /// not live (an expired session is not revived).
    async fn touch_session(
        &self,
        id: &str,
        now: OffsetDateTime,
        idle_expires_at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Atomically revokes the session `old_id` and stores `new` under `digest` (a new secret
    /// at step-up: session fixation defence). `false` (and nothing written) if `old_id` was not
    /// live or does not belong to `new.user_id`.
    async fn rotate_session(
        &self,
        old_id: &str,
        digest: &TokenDigest,
        new: &Session,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// The user's live sessions, newest first.
    async fn list_user_sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>, StoreError>;

    /// Revokes one session of `user_id` and advances the credential epoch; `false` if it is not
    /// theirs or not live.
    async fn revoke_session(
        &self,
        user_id: &str,
        session_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Revokes all of a user's live sessions except `keep` (advancing the credential epoch when
    /// any was live); returns how many.
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        keep: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError>;

    /// Deletes sessions that were dead (expired or revoked) at `before`; returns how many.
    async fn purge_sessions(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}

/// A user's TOTP credential.
#[derive(Debug, Clone, PartialEq)]
pub struct TotpCredential {
    /// The sealed (encrypted) secret, as the caller stored it.
    pub sealed_secret: Vec<u8>,
    /// Whether enrollment was confirmed with a valid code; only confirmed credentials count as a
    /// second factor.
    pub confirmed: bool,
    /// The last accepted time step (replay defence).
    pub last_step: Option<i64>,
    /// Created.
    pub created_at: OffsetDateTime,
}

/// A WebAuthn credential (passkey).
#[derive(Debug, Clone, PartialEq)]
pub struct Passkey {
    /// The credential id (raw bytes).
    pub credential_id: Vec<u8>,
    /// The owner.
    pub user_id: String,
    /// A name the user chose.
    pub name: String,
    /// The COSE_Key public key.
    pub public_key: Vec<u8>,
    /// The last signature counter seen.
    pub sign_count: i64,
    /// Whether the authenticator reported user verification capability / backup state, as JSON
    /// flags and transports (opaque to the store).
    pub metadata: Map<String, Value>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last used to authenticate.
    pub last_used_at: Option<OffsetDateTime>,
}

/// Storage of second factors.
#[async_trait]
pub trait MfaStore: std::fmt::Debug + Send + Sync {
    /// Stores a new, unconfirmed TOTP secret, replacing an unconfirmed one (a confirmed one is
    /// kept: [`StoreError::Conflict`] [`Conflict::TotpConfirmed`]). [`StoreError::NotFound`] if there is no
    /// such user.
    async fn put_pending_totp(
        &self,
        user_id: &str,
        sealed_secret: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// The user's TOTP credential.
    async fn get_totp(&self, user_id: &str) -> Result<Option<TotpCredential>, StoreError>;

    /// Marks the pending credential confirmed, recording `step` as used.
    async fn confirm_totp(&self, user_id: &str, step: i64) -> Result<bool, StoreError>;

    /// Records `step` as used if it is newer than the last used one, as one atomic
    /// compare-and-set: of concurrent calls with the same step exactly one gets `true`. `false`
    /// means replay (or no confirmed credential).
    async fn advance_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError>;

    /// Removes the TOTP credential and the recovery codes; `false` if there was no credential.
    async fn delete_totp(&self, user_id: &str) -> Result<bool, StoreError>;

    /// Replaces the recovery codes with these digests (distinct, at most
    /// [`MAX_RECOVERY_CODES`]). [`StoreError::NotFound`] if there is no such user.
    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        digests: &[TokenDigest],
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Consumes the code with this digest, atomically (of concurrent calls exactly one gets
    /// `true`); `false` if unknown or already used.
    async fn consume_recovery_code(
        &self,
        user_id: &str,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Unused recovery codes left.
    async fn recovery_codes_left(&self, user_id: &str) -> Result<u64, StoreError>;

    /// Adds a passkey; a credential id already registered (to anyone) is a conflict
    /// ([`Conflict::PasskeyTaken`]), an unknown user [`StoreError::NotFound`].
    async fn add_passkey(&self, passkey: &Passkey) -> Result<(), StoreError>;

    /// The user's passkeys, oldest first.
    async fn list_passkeys(&self, user_id: &str) -> Result<Vec<Passkey>, StoreError>;

    /// The passkey with this credential id.
    async fn find_passkey(&self, credential_id: &[u8]) -> Result<Option<Passkey>, StoreError>;

    /// Records a successful assertion. The stored counter never moves backwards; an unknown
    /// credential id is ignored.
    async fn record_passkey_use(
        &self,
        credential_id: &[u8],
        sign_count: i64,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Removes one of the user's passkeys; `false` if it is not theirs.
    async fn delete_passkey(&self, user_id: &str, credential_id: &[u8])
    -> Result<bool, StoreError>;
}

/// One audited event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Id (a ULID; sorts by time).
    pub id: String,
    /// When.
    pub at: OffsetDateTime,
    /// The chain it is appended to (decided by how its kind is delivered).
    pub chain: AuditChain,
    /// What, e.g. `login`, `login_failed`, `mfa_enrolled`, `session_revoked`, `password_changed`.
    pub kind: String,
    /// `success`, `failure`, `denied`.
    pub outcome: String,
    /// Who acted (a subject string such as `user:ID` or `service:ID`), if known.
    pub actor: Option<String>,
    /// The user the event concerns, if any.
    pub user_id: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// What it was about, e.g. `document:1` for a decision, a client id for a token issuance.
    pub resource: Option<String>,
    /// Further non-secret detail (for a decision: its action, decision and reason).
    pub detail: Map<String, Value>,
}

/// Which audit events to list. Every given condition must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only events concerning this user.
    pub user_id: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only events by this principal (the actor subject, e.g. `service:ID`).
    pub actor: Option<String>,
    /// Only events about this resource.
    pub resource: Option<String>,
    /// Only this outcome (`success`, `failure`, `denied`).
    pub outcome: Option<String>,
    /// Only events of this chain.
    pub chain: Option<AuditChain>,
    /// Only events at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Only events before this instant.
    pub until: Option<OffsetDateTime>,
    /// Only events with an id below this one (paging backwards in time).
    pub before: Option<String>,
    /// Only events of [`chain`](Self::chain) (required) after this position, listed in chain
    /// order instead of newest first: what follows the trail as it grows (`audit tail`,
    /// export), which an id cursor cannot do (ids are taken when an event happens, positions
    /// when it is written).
    pub after_seq: Option<i64>,
}

/// The append-only audit trail: two hash chains ([`crate::audit`]) and their anchors.
#[async_trait]
pub trait AuditStore: std::fmt::Debug + Send + Sync {
    /// Appends one event at the end of its chain. The outcome must be one of
    /// [`AUDIT_OUTCOMES`].
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError>;

    /// Appends several events at once, all or none, chained in order within each chain in one
    /// transaction (the batched writer of decision events).
    async fn append_audits(&self, events: &[AuditEvent]) -> Result<(), StoreError>;

    /// Events matching `filter`, newest first (by id), or in chain order when
    /// [`AuditFilter::after_seq`] is given; at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`](crate::relationships::MAX_PAGE_SIZE)).
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// The chain's head: its last position and hash, as the appenders see it.
    async fn audit_head(&self, chain: AuditChain) -> Result<ChainHead, StoreError>;

    /// The records of `chain` after position `after_seq`, in chain order, at most `limit`.
    async fn audit_chain_page(
        &self,
        chain: AuditChain,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// The record at `seq` of `chain`, if it is stored.
    async fn audit_record_at(
        &self,
        chain: AuditChain,
        seq: i64,
    ) -> Result<Option<AuditRecord>, StoreError>;

    /// The smallest position of `chain` whose event is at or after `at`, if any.
    async fn audit_first_seq_since(
        &self,
        chain: AuditChain,
        at: OffsetDateTime,
    ) -> Result<Option<i64>, StoreError>;

    /// Ids of events outside every chain (written before chains existed, or inserted by hand)
    /// with an id above `after_id`, ascending, at most `limit`.
    async fn unchained_audit(
        &self,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;

    /// Stores a checkpoint anchor. Its number must be the chain's next
    /// ([`Conflict::Duplicate`] when another replica wrote that
    /// number first).
    async fn append_audit_anchor(&self, anchor: &AuditAnchor) -> Result<(), StoreError>;

    /// The chain's anchors numbered after `after_number`, in order, at most `limit`.
    async fn audit_anchors(
        &self,
        chain: AuditChain,
        after_number: i64,
        limit: u32,
    ) -> Result<Vec<AuditAnchor>, StoreError>;

    /// The chain's newest anchor, and its newest truncation anchor.
    async fn last_audit_anchors(
        &self,
        chain: AuditChain,
    ) -> Result<(Option<AuditAnchor>, Option<AuditAnchor>), StoreError>;

    /// Retention: in one transaction, checks that the record at `anchor.seq` is still stored
    /// with `anchor.hash`, deletes every record of the chain up to it and stores the
    /// truncation anchor (numbered as in [`append_audit_anchor`](Self::append_audit_anchor)).
    /// Returns how many records were deleted; a record that no longer matches is
    /// [`StoreError::InvalidInput`] and nothing is deleted.
    async fn truncate_audit(&self, anchor: &AuditAnchor) -> Result<u64, StoreError>;
}

/// Largest accepted custom attributes, audit detail or passkey metadata, as JSON.
pub const MAX_JSON_BYTES: usize = 64 * 1024;
/// Largest accepted sealed TOTP secret or passkey public key.
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// Largest accepted passkey credential id (WebAuthn allows at most 1023 bytes).
pub const MAX_CREDENTIAL_ID_BYTES: usize = 1023;
/// Most recovery codes one user may have.
pub const MAX_RECOVERY_CODES: usize = 100;
/// Most authentication method references one session may carry.
pub const MAX_AMR: usize = 16;
/// The audit outcomes the store accepts.
pub const AUDIT_OUTCOMES: [&str; 3] = ["success", "failure", "denied"];
