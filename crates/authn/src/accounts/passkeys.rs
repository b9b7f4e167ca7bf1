//! Passkeys (WebAuthn): registration from the account page (needs a recent authentication),
//! passwordless sign-in with discoverable credentials, removal.
//!
//! Each ceremony starts with a random 32-byte challenge sealed (purpose
//! [`PURPOSE_PASSKEY_CHALLENGE`]) together with its kind, its expiry
//! ([`PASSKEY_CHALLENGE_TTL`]), the origin it was issued for and, for registration, the session
//! and user it belongs to. The browser hands the sealed state back with the authenticator's
//! response; the challenge is then spent in the [`ChallengeLedger`] (the database's ledger of
//! one-time values), so it works once on whichever replica completes it first and never again
//! on any.
//!
//! Amr (RFC 8176): `hwk` for a device-bound credential, `swk` for one that may be synced (BE
//! flag), plus `user` and `mfa` since sign-in requires user verification (possession plus PIN or
//! biometrics); `acr` is therefore `"2"`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use trustgate_core::{Secret, TokenDigest};
use trustgate_store_api::{NonceStore, Passkey, StoreError};

use trustgate_audit::{AuditKind, Event, Outcome};

use super::{
    AccountError, Accounts, CurrentSession, IssuedSession, RequestContext, UserStatus, plus,
    subject,
};
use crate::webauthn::{self, CHALLENGE_BYTES, Challenge, RelyingParty, WebauthnError};

/// Purpose of sealed passkey ceremony states.
pub const PURPOSE_PASSKEY_CHALLENGE: &str = "passkey-challenge";
/// How long a passkey challenge is valid.
pub const PASSKEY_CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
/// Longest passkey name.
pub const MAX_PASSKEY_NAME_CHARS: usize = 64;
/// Most passkeys per user.
pub const MAX_PASSKEYS: usize = 20;
/// Longest sealed state accepted.
const MAX_STATE_CHARS: usize = 2048;

/// The [`NonceStore`] purpose under which passkey challenges are spent.
const NONCE_PURPOSE: &str = "passkey-challenge";

/// Spent passkey challenges, in the database so that every replica sees them: a challenge
/// (by its SHA-256) is recorded until its ceremony expires, and of two replicas completing the
/// same ceremony at once exactly one succeeds.
#[derive(Clone)]
pub(crate) struct ChallengeLedger {
    store: Arc<dyn NonceStore>,
}

impl ChallengeLedger {
    pub(crate) fn new(store: Arc<dyn NonceStore>) -> Self {
        Self { store }
    }

    /// Marks `challenge` (valid until `expires_at`) used; `false` if it was already, or it has
    /// expired at `now`.
    async fn consume(
        &self,
        challenge: &[u8; CHALLENGE_BYTES],
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        if now >= expires_at {
            return Ok(false);
        }
        let digest = TokenDigest::of(&b64(challenge));
        self.store
            .spend_nonce(NONCE_PURPOSE, &digest, expires_at, now)
            .await
    }
}

const KIND_REGISTER: &str = "register";
const KIND_LOGIN: &str = "login";

/// A started ceremony: `options` go to `navigator.credentials.create/get` (binary fields in
/// base64url), `state` comes back with the response.
#[derive(Debug, Clone)]
pub struct PasskeyCeremony {
    /// `PublicKeyCredentialCreationOptions` or `...RequestOptions` as JSON.
    pub options: Value,
    /// The sealed state (base64url).
    pub state: Secret,
}

/// What `navigator.credentials.create` returned.
#[derive(Debug, Clone, Default)]
pub struct PasskeyRegistration {
    /// `response.clientDataJSON`.
    pub client_data_json: Vec<u8>,
    /// `response.attestationObject`.
    pub attestation_object: Vec<u8>,
    /// `response.getTransports()`.
    pub transports: Vec<String>,
}

/// What `navigator.credentials.get` returned.
#[derive(Debug, Clone, Default)]
pub struct PasskeyAssertion {
    /// `rawId`.
    pub credential_id: Vec<u8>,
    /// `response.clientDataJSON`.
    pub client_data_json: Vec<u8>,
    /// `response.authenticatorData`.
    pub authenticator_data: Vec<u8>,
    /// `response.signature`.
    pub signature: Vec<u8>,
    /// `response.userHandle`.
    pub user_handle: Option<Vec<u8>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CeremonyState {
    /// Challenge, base64url.
    c: String,
    /// `register` or `login`.
    k: String,
    /// Origin it was issued for.
    o: String,
    /// Session id (registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    /// Expiry, unix seconds.
    exp: i64,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Accounts {
    fn seal_ceremony(
        &self,
        kind: &str,
        rp: &RelyingParty,
        session_id: Option<&str>,
    ) -> Result<(Challenge, Secret), AccountError> {
        let challenge = Challenge::new();
        let state = CeremonyState {
            c: challenge.to_base64url(),
            k: kind.to_owned(),
            o: rp.origin().to_owned(),
            s: session_id.map(str::to_owned),
            exp: plus(self.now(), PASSKEY_CHALLENGE_TTL).unix_timestamp(),
        };
        let json = serde_json::to_vec(&state).map_err(|e| AccountError::Internal(e.to_string()))?;
        let sealed = self.inner.key.seal(PURPOSE_PASSKEY_CHALLENGE, &json);
        Ok((challenge, Secret::new(URL_SAFE_NO_PAD.encode(sealed))))
    }

    /// Opens a sealed state of `kind` for `rp` (and `session_id`), and spends its challenge.
    /// The outer error is the ledger's (the database): the ceremony is refused, not accepted.
    async fn spend_ceremony(
        &self,
        state: &str,
        kind: &str,
        rp: &RelyingParty,
        session_id: Option<&str>,
    ) -> Result<Result<[u8; CHALLENGE_BYTES], WebauthnError>, AccountError> {
        let opened = match self.open_ceremony(state, kind, rp, session_id) {
            Ok(opened) => opened,
            Err(e) => return Ok(Err(e)),
        };
        let (challenge, expires) = opened;
        if !self
            .inner
            .challenges
            .consume(&challenge, expires, self.now())
            .await?
        {
            return Ok(Err(WebauthnError::ChallengeUsed));
        }
        Ok(Ok(challenge))
    }

    /// Opens and checks a sealed state: its challenge and expiry.
    fn open_ceremony(
        &self,
        state: &str,
        kind: &str,
        rp: &RelyingParty,
        session_id: Option<&str>,
    ) -> Result<([u8; CHALLENGE_BYTES], OffsetDateTime), WebauthnError> {
        let state = state.trim();
        if state.is_empty() || state.len() > MAX_STATE_CHARS {
            return Err(WebauthnError::Malformed("ceremony state"));
        }
        let sealed = URL_SAFE_NO_PAD
            .decode(state)
            .map_err(|_| WebauthnError::Malformed("ceremony state"))?;
        let json = self
            .inner
            .key
            .open(PURPOSE_PASSKEY_CHALLENGE, &sealed)
            .ok_or(WebauthnError::Malformed("ceremony state"))?;
        let state: CeremonyState = serde_json::from_slice(&json)
            .map_err(|_| WebauthnError::Malformed("ceremony state"))?;
        if state.k != kind || state.s.as_deref() != session_id {
            return Err(WebauthnError::WrongChallenge);
        }
        if state.o != rp.origin() {
            return Err(WebauthnError::WrongOrigin);
        }
        let challenge: [u8; CHALLENGE_BYTES] = URL_SAFE_NO_PAD
            .decode(&state.c)
            .ok()
            .and_then(|c| c.try_into().ok())
            .ok_or(WebauthnError::Malformed("ceremony state"))?;
        let expires = OffsetDateTime::from_unix_timestamp(state.exp)
            .map_err(|_| WebauthnError::Malformed("ceremony state"))?;
        Ok((challenge, expires))
    }

    /// Starts registering a passkey for the signed-in user (needs a recent authentication).
    pub async fn begin_passkey_registration(
        &self,
        current: &CurrentSession,
        rp: &RelyingParty,
    ) -> Result<PasskeyCeremony, AccountError> {
        self.require_recent(current)?;
        let user = &current.user;
        let existing = self.store().list_passkeys(&user.id).await?;
        let (challenge, state) =
            self.seal_ceremony(KIND_REGISTER, rp, Some(&current.session.id))?;
        let exclude: Vec<Value> = existing
            .iter()
            .map(|p| json!({"type": "public-key", "id": b64(&p.credential_id)}))
            .collect();
        let options = json!({
            "challenge": challenge.to_base64url(),
            "rp": {"id": rp.id(), "name": self.inner.config.totp_issuer},
            "user": {
                "id": b64(user.id.as_bytes()),
                "name": user.username,
                "displayName": user.name.clone().unwrap_or_else(|| user.username.clone()),
            },
            "pubKeyCredParams": [
                {"type": "public-key", "alg": -8},
                {"type": "public-key", "alg": -7},
            ],
            "timeout": u64::try_from(PASSKEY_CHALLENGE_TTL.as_millis()).unwrap_or(u64::MAX),
            "excludeCredentials": exclude,
            "authenticatorSelection": {
                "residentKey": "required",
                "requireResidentKey": true,
                "userVerification": "required",
            },
            "attestation": "none",
        });
        Ok(PasskeyCeremony { options, state })
    }

    /// Finishes a registration: verifies the authenticator's answer and stores the passkey
    /// under `name`. A refused answer is [`AccountError::InvalidInput`] (audited).
    pub async fn finish_passkey_registration(
        &self,
        current: &CurrentSession,
        rp: &RelyingParty,
        state: &str,
        name: &str,
        response: &PasskeyRegistration,
        ctx: &RequestContext,
    ) -> Result<Passkey, AccountError> {
        self.require_recent(current)?;
        let user = &current.user;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_PASSKEY_NAME_CHARS {
            return Err(AccountError::InvalidInput("passkey name".into()));
        }
        let verified = self
            .spend_ceremony(state, KIND_REGISTER, rp, Some(&current.session.id))
            .await?
            .and_then(|challenge| {
                webauthn::verify_registration(
                    rp,
                    &challenge,
                    &response.client_data_json,
                    &response.attestation_object,
                    true,
                )
            });
        let credential = match verified {
            Ok(c) => c,
            Err(e) => {
                self.record_quietly(
                    ctx,
                    Event::new(AuditKind::PasskeyAdded, Outcome::Failure)
                        .by_user(&user.id)
                        .detail("reason", e.code()),
                )
                .await;
                return Err(AccountError::InvalidInput(e.to_string()));
            }
        };
        if self.store().list_passkeys(&user.id).await?.len() >= MAX_PASSKEYS {
            return Err(AccountError::Conflict("too many passkeys".into()));
        }
        let mut metadata = Map::new();
        metadata.insert("alg".into(), credential.algorithm.id().into());
        metadata.insert("aaguid".into(), b64(&credential.aaguid).into());
        metadata.insert("user_verified".into(), credential.user_verified.into());
        metadata.insert("backup_eligible".into(), credential.backup_eligible.into());
        metadata.insert("backed_up".into(), credential.backed_up.into());
        let transports: Vec<Value> = response
            .transports
            .iter()
            .take(8)
            .map(|t| Value::from(t.chars().take(32).collect::<String>()))
            .collect();
        metadata.insert("transports".into(), transports.into());
        let passkey = Passkey {
            credential_id: credential.credential_id,
            user_id: user.id.clone(),
            name: name.to_owned(),
            public_key: credential.public_key,
            sign_count: i64::from(credential.sign_count),
            metadata,
            created_at: self.now(),
            last_used_at: None,
        };
        self.store().add_passkey(&passkey).await?;
        self.record(
            ctx,
            Event::new(AuditKind::PasskeyAdded, Outcome::Success)
                .by_user(&user.id)
                .detail("credential_id", b64(&passkey.credential_id))
                .detail("name", passkey.name.clone())
                .detail("backup_eligible", credential.backup_eligible),
        )
        .await?;
        Ok(passkey)
    }

    /// Starts a passwordless sign-in with a discoverable credential (no user named yet).
    pub fn begin_passkey_login(&self, rp: &RelyingParty) -> Result<PasskeyCeremony, AccountError> {
        let (challenge, state) = self.seal_ceremony(KIND_LOGIN, rp, None)?;
        let options = json!({
            "challenge": challenge.to_base64url(),
            "rpId": rp.id(),
            "timeout": u64::try_from(PASSKEY_CHALLENGE_TTL.as_millis()).unwrap_or(u64::MAX),
            "userVerification": "required",
            "allowCredentials": [],
        });
        Ok(PasskeyCeremony { options, state })
    }

    /// Signs in with a passkey. Any refusal is [`AccountError::InvalidCredentials`] (audited
    /// with its reason); a signature-counter regression is also audited as
    /// `passkey_counter_regression`. Failures are throttled per client address.
    pub async fn login_passkey(
        &self,
        rp: &RelyingParty,
        state: &str,
        assertion: &PasskeyAssertion,
        ctx: &RequestContext,
    ) -> Result<IssuedSession, AccountError> {
        if let Err(e) = self.inner.throttle.check(None, ctx.ip).await {
            let e = AccountError::from(e);
            if matches!(e, AccountError::Throttled(_)) {
                self.record_quietly(
                    ctx,
                    Event::new(AuditKind::LoginFailed, Outcome::Denied)
                        .detail("reason", "throttled")
                        .detail("factor", "passkey"),
                )
                .await;
            }
            return Err(e);
        }
        let outcome = self.check_assertion(rp, state, assertion).await?;
        let (passkey, verified, user) = match outcome {
            Ok(found) => found,
            Err((reason, user_id, regression)) => {
                self.inner.throttle.record_failure(None, ctx.ip).await?;
                if let Some((stored, presented)) = regression {
                    let mut event =
                        Event::new(AuditKind::PasskeyCounterRegression, Outcome::Denied)
                            .detail("credential_id", b64(&assertion.credential_id))
                            .detail("stored", stored)
                            .detail("presented", presented);
                    if let Some(user_id) = &user_id {
                        event = event.user(user_id);
                    }
                    self.record_quietly(ctx, event).await;
                }
                let mut event = Event::new(AuditKind::LoginFailed, Outcome::Failure)
                    .detail("reason", reason)
                    .detail("factor", "passkey");
                if let Some(user_id) = &user_id {
                    event = event.user(user_id);
                }
                self.record_quietly(ctx, event).await;
                return Err(AccountError::InvalidCredentials);
            }
        };
        let now = self.now();
        self.store()
            .record_passkey_use(&passkey.credential_id, i64::from(verified.sign_count), now)
            .await?;
        let key_kind = if verified.backup_eligible {
            "swk"
        } else {
            "hwk"
        };
        let amr = [key_kind, "user", "mfa"];
        let issued = self.issue_session(user, &amr, now, ctx).await?;
        self.record(
            ctx,
            Event::new(AuditKind::Login, Outcome::Success)
                .by_user(&issued.user.id)
                .actor(subject(&issued.user.id))
                .detail("session_id", issued.session.id.clone())
                .detail("amr", issued.session.amr.clone())
                .detail("method", "passkey")
                .detail("credential_id", b64(&passkey.credential_id)),
        )
        .await?;
        Ok(issued)
    }

    /// The checks of a passkey sign-in: `Ok(Err((reason, user, counter regression)))` when
    /// refused.
    #[allow(clippy::type_complexity)]
    async fn check_assertion(
        &self,
        rp: &RelyingParty,
        state: &str,
        assertion: &PasskeyAssertion,
    ) -> Result<
        Result<
            (Passkey, webauthn::VerifiedAssertion, super::User),
            (&'static str, Option<String>, Option<(u32, u32)>),
        >,
        AccountError,
    > {
        let challenge = match self.spend_ceremony(state, KIND_LOGIN, rp, None).await? {
            Ok(c) => c,
            Err(e) => return Ok(Err((e.code(), None, None))),
        };
        if assertion.credential_id.is_empty() || assertion.credential_id.len() > 1023 {
            return Ok(Err(("passkey_unknown", None, None)));
        }
        let Some(passkey) = self.store().find_passkey(&assertion.credential_id).await? else {
            return Ok(Err(("passkey_unknown", None, None)));
        };
        let user_id = Some(passkey.user_id.clone());
        if let Some(handle) = &assertion.user_handle
            && handle.as_slice() != passkey.user_id.as_bytes()
        {
            return Ok(Err(("passkey_user_handle_mismatch", user_id, None)));
        }
        let stored = u32::try_from(passkey.sign_count).unwrap_or(u32::MAX);
        let verified = match webauthn::verify_assertion(
            rp,
            &challenge,
            &assertion.client_data_json,
            &assertion.authenticator_data,
            &assertion.signature,
            &passkey.public_key,
            stored,
            true,
        ) {
            Ok(v) => v,
            Err(WebauthnError::CounterRegression { stored, presented }) => {
                return Ok(Err((
                    "webauthn_counter_regression",
                    user_id,
                    Some((stored, presented)),
                )));
            }
            Err(e) => return Ok(Err((e.code(), user_id, None))),
        };
        let user = match self.store().get_user(&passkey.user_id).await? {
            Some(user) if user.status == UserStatus::Active => user,
            _ => return Ok(Err(("disabled", user_id, None))),
        };
        Ok(Ok((passkey, verified, user)))
    }

    /// The user's passkeys, oldest first.
    pub async fn list_passkeys(&self, user_id: &str) -> Result<Vec<Passkey>, AccountError> {
        Ok(self.store().list_passkeys(user_id).await?)
    }

    /// Removes one of the signed-in user's passkeys (needs a recent authentication).
    pub async fn remove_passkey(
        &self,
        current: &CurrentSession,
        credential_id: &[u8],
        ctx: &RequestContext,
    ) -> Result<(), AccountError> {
        self.require_recent(current)?;
        let user = &current.user;
        if credential_id.is_empty() || !self.store().delete_passkey(&user.id, credential_id).await?
        {
            return Err(AccountError::NotFound);
        }
        self.record(
            ctx,
            Event::new(AuditKind::PasskeyRemoved, Outcome::Success)
                .by_user(&user.id)
                .detail("credential_id", b64(credential_id)),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use trustgate_core::{ManualClock, SealingKey};
    use trustgate_store::testing::TestDatabase;
    use trustgate_store_api::AuditFilter;

    use super::*;
    use crate::accounts::{AccountsConfig, CreateUser, LoginStep};
    use crate::webauthn::testing::{Authenticator, rp};

    const PASSWORD: &str = "correct horse battery staple 2026";

    trustgate_store::test_on_both_backends!(
        register_login_replay_regression_and_remove,
        registration_needs_step_up_and_a_fresh_challenge,
        a_challenge_completed_on_one_replica_is_refused_on_another,
    );

    async fn setup(db: TestDatabase) -> (Accounts, ManualClock, CurrentSession, TestDatabase) {
        let clock = ManualClock::new(OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000));
        let accounts = Accounts::new(
            db.store.clone(),
            trustgate_audit::Auditor::new(
                db.store.clone(),
                Arc::new(clock.clone()),
                trustgate_audit::AuditorConfig::default(),
            ),
            Arc::new(clock.clone()),
            SealingKey::generate(),
            AccountsConfig::default(),
        );
        let ctx = RequestContext::default();
        accounts
            .create_user(
                CreateUser {
                    username: "pat".into(),
                    email: "pat@example.com".into(),
                    password: Some(Secret::new(PASSWORD)),
                    ..Default::default()
                },
                "service:test",
                &ctx,
            )
            .await
            .expect("user");
        let LoginStep::Complete(issued) = accounts
            .login_password("pat", Secret::new(PASSWORD), &ctx)
            .await
            .expect("login")
        else {
            panic!("no second factor expected");
        };
        let current = accounts
            .authenticate_session(issued.token.expose(), &ctx)
            .await
            .expect("auth")
            .expect("live");
        (accounts, clock, current, db)
    }

    fn challenge_of(c: &PasskeyCeremony) -> Vec<u8> {
        let text = c.options["challenge"].as_str().expect("challenge");
        URL_SAFE_NO_PAD.decode(text).expect("b64")
    }

    async fn register(accounts: &Accounts, current: &CurrentSession, a: &Authenticator) -> Passkey {
        let ceremony = accounts
            .begin_passkey_registration(current, &rp())
            .await
            .expect("begin");
        let (client, object) = a.create(&challenge_of(&ceremony));
        accounts
            .finish_passkey_registration(
                current,
                &rp(),
                ceremony.state.expose(),
                "laptop",
                &PasskeyRegistration {
                    client_data_json: client,
                    attestation_object: object,
                    transports: vec!["internal".into()],
                },
                &RequestContext::default(),
            )
            .await
            .expect("finish")
    }

    fn assertion(a: &mut Authenticator, challenge: &[u8]) -> PasskeyAssertion {
        let (client, auth, sig) = a.get(challenge);
        PasskeyAssertion {
            credential_id: a.credential_id.clone(),
            client_data_json: client,
            authenticator_data: auth,
            signature: sig,
            user_handle: None,
        }
    }

    async fn register_login_replay_regression_and_remove(db: TestDatabase) {
        let (accounts, _clock, current, _db) = setup(db).await;
        let ctx = RequestContext::default();
        let mut a = Authenticator::p256(5);
        let passkey = register(&accounts, &current, &a).await;
        assert_eq!(passkey.name, "laptop");
        let mut b = Authenticator::ed25519(6);
        register(&accounts, &current, &b).await;
        assert_eq!(
            accounts
                .list_passkeys(&current.user.id)
                .await
                .expect("list")
                .len(),
            2
        );

        let login = accounts.begin_passkey_login(&rp()).expect("begin");
        let answer = assertion(&mut a, &challenge_of(&login));
        let issued = accounts
            .login_passkey(&rp(), login.state.expose(), &answer, &ctx)
            .await
            .expect("login");
        assert_eq!(issued.session.amr, ["hwk", "user", "mfa"]);
        assert_eq!(issued.session.acr, "2");
        // The same state and answer again: the challenge is spent.
        let replay = accounts
            .login_passkey(&rp(), login.state.expose(), &answer, &ctx)
            .await;
        assert!(matches!(replay, Err(AccountError::InvalidCredentials)));

        // Ed25519 works too.
        let login = accounts.begin_passkey_login(&rp()).expect("begin");
        let answer = assertion(&mut b, &challenge_of(&login));
        accounts
            .login_passkey(&rp(), login.state.expose(), &answer, &ctx)
            .await
            .expect("ed25519 login");

        // A cloned authenticator with an older counter is refused and flagged.
        a.counter = 0;
        let login = accounts.begin_passkey_login(&rp()).expect("begin");
        let answer = assertion(&mut a, &challenge_of(&login));
        let refused = accounts
            .login_passkey(&rp(), login.state.expose(), &answer, &ctx)
            .await;
        assert!(matches!(refused, Err(AccountError::InvalidCredentials)));
        let events = accounts
            .audit(&AuditFilter::default(), 100)
            .await
            .expect("audit")
            .into_iter()
            .map(|r| r.event)
            .collect::<Vec<_>>();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert!(kinds.contains(&"passkey_counter_regression"), "{kinds:?}");
        assert!(kinds.contains(&"passkey_added"), "{kinds:?}");
        assert!(
            events.iter().any(|e| e.kind == "login"
                && e.detail.get("method").and_then(Value::as_str) == Some("passkey")),
            "{kinds:?}"
        );

        // Login state from another origin is refused.
        let login = accounts.begin_passkey_login(&rp()).expect("begin");
        let other = RelyingParty::from_origin("https://other.example.com").expect("rp");
        let answer = assertion(&mut a, &challenge_of(&login));
        assert!(
            accounts
                .login_passkey(&other, login.state.expose(), &answer, &ctx)
                .await
                .is_err()
        );

        accounts
            .remove_passkey(&current, &passkey.credential_id, &ctx)
            .await
            .expect("remove");
        assert_eq!(
            accounts
                .list_passkeys(&current.user.id)
                .await
                .expect("list")
                .len(),
            1
        );
        let events = accounts
            .audit(&AuditFilter::default(), 100)
            .await
            .expect("audit")
            .into_iter()
            .map(|r| r.event)
            .collect::<Vec<_>>();
        assert!(events.iter().any(|e| e.kind == "passkey_removed"));
        // A removed passkey no longer signs in.
        let login = accounts.begin_passkey_login(&rp()).expect("begin");
        let answer = assertion(&mut a, &challenge_of(&login));
        assert!(
            accounts
                .login_passkey(&rp(), login.state.expose(), &answer, &ctx)
                .await
                .is_err()
        );
    }

    async fn a_challenge_completed_on_one_replica_is_refused_on_another(db: TestDatabase) {
        let (a_replica, clock, current, db) = setup(db).await;
        let ctx = RequestContext::default();
        let mut a = Authenticator::p256(9);
        register(&a_replica, &current, &a).await;
        // A second replica: its own service over its own connections, sharing the database
        // and the secrets key, as replicas do.
        let b_replica = Accounts::new(
            db.replica_store().await,
            trustgate_audit::Auditor::new(
                db.store.clone(),
                Arc::new(clock.clone()),
                trustgate_audit::AuditorConfig::default(),
            ),
            Arc::new(clock.clone()),
            a_replica.inner.key.clone(),
            AccountsConfig::default(),
        );
        let login = a_replica.begin_passkey_login(&rp()).expect("begin");
        let answer = assertion(&mut a, &challenge_of(&login));
        a_replica
            .login_passkey(&rp(), login.state.expose(), &answer, &ctx)
            .await
            .expect("login on A");
        let replay = b_replica
            .login_passkey(&rp(), login.state.expose(), &answer, &ctx)
            .await;
        assert!(
            matches!(replay, Err(AccountError::InvalidCredentials)),
            "{replay:?}"
        );
        // B completes ceremonies of its own, and A's ceremonies too when they are fresh.
        let login = a_replica.begin_passkey_login(&rp()).expect("begin");
        let answer = assertion(&mut a, &challenge_of(&login));
        b_replica
            .login_passkey(&rp(), login.state.expose(), &answer, &ctx)
            .await
            .expect("a fresh ceremony works on B");
        // Two replicas completing one ceremony at once: exactly one signs in.
        let login = a_replica.begin_passkey_login(&rp()).expect("begin");
        let answer = assertion(&mut a, &challenge_of(&login));
        let party = rp();
        let (first, second) = tokio::join!(
            a_replica.login_passkey(&party, login.state.expose(), &answer, &ctx),
            b_replica.login_passkey(&party, login.state.expose(), &answer, &ctx),
        );
        assert_eq!(
            u8::from(first.is_ok()) + u8::from(second.is_ok()),
            1,
            "{first:?} / {second:?}"
        );
    }

    async fn registration_needs_step_up_and_a_fresh_challenge(db: TestDatabase) {
        let (accounts, clock, current, _db) = setup(db).await;
        let ctx = RequestContext::default();
        let a = Authenticator::p256(7);
        let ceremony = accounts
            .begin_passkey_registration(&current, &rp())
            .await
            .expect("begin");
        let (client, object) = a.create(&challenge_of(&ceremony));
        let response = PasskeyRegistration {
            client_data_json: client,
            attestation_object: object,
            transports: vec![],
        };
        // A login challenge cannot register.
        let login = accounts.begin_passkey_login(&rp()).expect("login");
        assert!(matches!(
            accounts
                .finish_passkey_registration(
                    &current,
                    &rp(),
                    login.state.expose(),
                    "x",
                    &response,
                    &ctx
                )
                .await,
            Err(AccountError::InvalidInput(_))
        ));
        clock.advance(time::Duration::minutes(11));
        assert!(matches!(
            accounts
                .finish_passkey_registration(
                    &current,
                    &rp(),
                    ceremony.state.expose(),
                    "x",
                    &response,
                    &ctx
                )
                .await,
            Err(AccountError::StepUpRequired)
        ));
        assert!(matches!(
            accounts.begin_passkey_registration(&current, &rp()).await,
            Err(AccountError::StepUpRequired)
        ));
    }
}
