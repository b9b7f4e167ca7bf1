//! The accounts service on real databases (SQLite and PostgreSQL), negatives first: credential
//! failures are indistinguishable and throttled, dead sessions stay dead, codes work once,
//! pending logins cannot be forged, self-service needs a recent login, and the audit trail
//! records every credential event without a secret.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trustgate_audit::{Auditor, AuditorConfig};

use time::macros::datetime;
use trustgate_authn::accounts::{
    AccountError, Accounts, AccountsConfig, AuditFilter, CreateUser, CurrentSession, FactorKind,
    IssuedSession, LoginStep, RequestContext, SecondFactor, UserStatus, UserUpdate,
};
use trustgate_authn::password::{HashParams, PasswordHasherConfig, PasswordRejection};
use trustgate_authn::throttle::{LoginThrottle, ThrottlePolicy, ThrottleTracker};
use trustgate_authn::totp::TotpSecret;
use trustgate_core::{Clock, ManualClock, SealingKey, Secret};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

const PASSWORD: &str = "correct horse battery staple";
const OTHER_PASSWORD: &str = "violet kettle umbrella sonnet";

fn clock() -> ManualClock {
    // 10 s into a TOTP step, so the neighbouring steps are unambiguous.
    ManualClock::new(datetime!(2026-03-01 12:00:10 UTC))
}

fn ctx() -> RequestContext {
    RequestContext {
        ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
        user_agent: Some("accounts-test/1.0".into()),
        request_id: Some("req-test-1".into()),
    }
}

fn auditor(db: &TestDatabase, clock: &ManualClock) -> Auditor {
    Auditor::new(
        db.store.clone(),
        Arc::new(clock.clone()),
        AuditorConfig::default(),
    )
}

fn service(db: &TestDatabase, clock: &ManualClock) -> Accounts {
    Accounts::new(
        db.store.clone(),
        auditor(db, clock),
        Arc::new(clock.clone()),
        SealingKey::generate(),
        AccountsConfig::default(),
    )
}

async fn create(accounts: &Accounts, username: &str) -> trustgate_authn::accounts::User {
    accounts
        .create_user(
            CreateUser {
                username: username.into(),
                email: format!("{username}@example.com"),
                name: Some(format!("{username} Example")),
                password: Some(Secret::new(PASSWORD)),
                ..CreateUser::default()
            },
            "service:test-admin",
            &ctx(),
        )
        .await
        .expect("create user")
}

async fn login(accounts: &Accounts, login: &str, password: &str) -> IssuedSession {
    match accounts
        .login_password(login, Secret::new(password), &ctx())
        .await
        .expect("login")
    {
        LoginStep::Complete(issued) => issued,
        LoginStep::SecondFactorRequired { .. } => panic!("unexpected second factor"),
    }
}

async fn pending(accounts: &Accounts, login: &str) -> (Secret, Vec<FactorKind>) {
    match accounts
        .login_password(login, Secret::new(PASSWORD), &ctx())
        .await
        .expect("password step")
    {
        LoginStep::SecondFactorRequired { pending, methods } => (pending, methods),
        LoginStep::Complete(_) => panic!("second factor expected"),
    }
}

async fn current(accounts: &Accounts, token: &Secret) -> CurrentSession {
    accounts
        .authenticate_session(token.expose(), &ctx())
        .await
        .expect("authenticate")
        .expect("live session")
}

async fn is_live(accounts: &Accounts, token: &Secret) -> bool {
    accounts
        .authenticate_session(token.expose(), &ctx())
        .await
        .expect("authenticate")
        .is_some()
}

/// Enrolls TOTP for the session's user; returns the secret and the recovery codes.
async fn enroll_totp(
    accounts: &Accounts,
    clock: &ManualClock,
    session: &CurrentSession,
) -> (TotpSecret, Vec<Secret>) {
    let enrollment = accounts
        .begin_totp_enrollment(session)
        .await
        .expect("begin enrollment");
    assert!(
        enrollment
            .provisioning_uri
            .expose()
            .starts_with("otpauth://totp/")
    );
    let secret = TotpSecret::from_base32(enrollment.secret_base32.expose()).expect("base32");
    let codes = accounts
        .confirm_totp_enrollment(session, &secret.code_at(clock.now()), &ctx())
        .await
        .expect("confirm");
    (secret, codes)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

test_on_both_backends!(
    unknown_user_wrong_password_and_disabled_user_look_the_same,
    failures_are_throttled_and_success_resets_the_account,
    disabled_user_cannot_log_in_and_loses_sessions,
    session_id_changes_at_login_and_step_up,
    expired_and_logged_out_sessions_are_refused,
    totp_codes_work_once_and_login_needs_them,
    recovery_codes_work_once,
    pending_login_tokens_cannot_be_tampered_or_outlived,
    self_service_needs_a_recent_login,
    password_change_checks_old_password_and_policy,
    admin_user_management,
    outdated_hashes_are_upgraded_at_login,
    audit_records_credential_events_without_secrets,
);

async fn unknown_user_wrong_password_and_disabled_user_look_the_same(db: TestDatabase) {
    let clock = clock();
    // A generous throttle: this test is about timing, not guessing.
    let throttle = LoginThrottle::new(
        ThrottlePolicy::new(
            1000,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::ZERO,
        ),
        ThrottlePolicy::new(
            1000,
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::ZERO,
        ),
        Arc::new(ThrottleTracker::default()),
        Arc::new(clock.clone()),
    );
    let accounts = Accounts::with_throttle(
        db.store.clone(),
        auditor(&db, &clock),
        Arc::new(clock.clone()),
        SealingKey::generate(),
        AccountsConfig::default(),
        throttle,
    );
    create(&accounts, "alice").await;
    let mallory = create(&accounts, "mallory").await;
    accounts
        .set_user_status(&mallory.id, UserStatus::Disabled, "service:t", &ctx())
        .await
        .expect("disable");

    let attempt = |login: String, password: &'static str| {
        let accounts = accounts.clone();
        async move {
            let started = Instant::now();
            let result = accounts
                .login_password(&login, Secret::new(password), &ctx())
                .await;
            (started.elapsed(), result)
        }
    };
    // Warm the dummy hash so its one-time creation is not measured.
    let _ = attempt("warm-up".into(), "x").await;

    let (mut wrong, mut unknown, mut disabled) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..7 {
        let (t, r) = attempt("alice".into(), "not the right password").await;
        assert_eq!(r.expect_err("wrong password").code(), "invalid_credentials");
        wrong.push(t);
        let (t, r) = attempt(format!("nobody-{i}"), "not the right password").await;
        assert_eq!(r.expect_err("unknown user").code(), "invalid_credentials");
        unknown.push(t);
        // The right password of a disabled user fails the same way.
        let (t, r) = attempt("mallory".into(), PASSWORD).await;
        assert_eq!(r.expect_err("disabled").code(), "invalid_credentials");
        disabled.push(t);
    }
    let (wrong, unknown, disabled) = (median(wrong), median(unknown), median(disabled));
    for (name, other) in [("unknown user", unknown), ("disabled user", disabled)] {
        let ratio = other.as_secs_f64() / wrong.as_secs_f64();
        assert!(
            (0.5..=2.0).contains(&ratio),
            "{name}: median {other:?} vs wrong password {wrong:?} (ratio {ratio:.2})"
        );
    }
    // Empty and absurd logins fail the same way too.
    for login in ["", "   ", &"x".repeat(10_000)] {
        let err = accounts
            .login_password(login, Secret::new("whatever"), &ctx())
            .await
            .expect_err("refused");
        assert!(matches!(err, AccountError::InvalidCredentials), "{err:?}");
    }
}

async fn failures_are_throttled_and_success_resets_the_account(db: TestDatabase) {
    let clock = clock();
    let accounts = service(&db, &clock);
    create(&accounts, "alice").await;
    let no_ip = RequestContext::default();
    let wrong = |accounts: Accounts, ctx: RequestContext| async move {
        accounts
            .login_password("alice", Secret::new("wrong password!!"), &ctx)
            .await
            .map(|_| ())
    };
    // Five free failures, and the sixth attempt is still checked (the delay starts after it).
    for _ in 0..6 {
        let err = wrong(accounts.clone(), no_ip.clone())
            .await
            .expect_err("wrong");
        assert!(matches!(err, AccountError::InvalidCredentials), "{err:?}");
    }
    let err = wrong(accounts.clone(), no_ip.clone())
        .await
        .expect_err("throttled");
    let retry = err.retry_after().expect("Retry-After");
    assert_eq!(err.code(), "too_many_attempts");
    assert!(retry.retry_after_secs() >= 1);
    // Throttled before hashing: even the right password waits, and the login name's case does
    // not matter.
    let err = accounts
        .login_password("ALICE", Secret::new(PASSWORD), &no_ip)
        .await
        .expect_err("still throttled");
    assert_eq!(err.code(), "too_many_attempts");

    clock.advance(time::Duration::seconds(2));
    login(&accounts, "alice", PASSWORD).await;
    // Success forgot the account's failures: the next mistake is an ordinary failure.
    let err = wrong(accounts.clone(), no_ip.clone())
        .await
        .expect_err("wrong again");
    assert!(matches!(err, AccountError::InvalidCredentials), "{err:?}");

    // One address guessing at many accounts is throttled by address (20 free failures).
    let from = ctx();
    for i in 0..21 {
        let err = accounts
            .login_password(&format!("guess-{i}"), Secret::new("x"), &from)
            .await
            .expect_err("unknown");
        assert!(
            matches!(err, AccountError::InvalidCredentials),
            "{i}: {err:?}"
        );
    }
    let err = accounts
        .login_password("guess-final", Secret::new("x"), &from)
        .await
        .expect_err("address throttled");
    assert_eq!(err.code(), "too_many_attempts");
}

async fn disabled_user_cannot_log_in_and_loses_sessions(db: TestDatabase) {
    let clock = clock();
    let accounts = service(&db, &clock);
    let alice = create(&accounts, "alice").await;
    let first = login(&accounts, "alice", PASSWORD).await;
    let second = login(&accounts, "alice@example.com", PASSWORD).await;
    assert_eq!(
        accounts.list_sessions(&alice.id).await.expect("list").len(),
        2
    );

    let disabled = accounts
        .set_user_status(&alice.id, UserStatus::Disabled, "service:t", &ctx())
        .await
        .expect("disable");
    assert_eq!(disabled.status, UserStatus::Disabled);
    assert!(!is_live(&accounts, &first.token).await);
    assert!(!is_live(&accounts, &second.token).await);
    assert!(
        accounts
            .list_sessions(&alice.id)
            .await
            .expect("list")
            .is_empty()
    );
    let err = accounts
        .login_password("alice", Secret::new(PASSWORD), &ctx())
        .await
        .expect_err("disabled");
    assert!(matches!(err, AccountError::InvalidCredentials), "{err:?}");

    accounts
        .set_user_status(&alice.id, UserStatus::Active, "service:t", &ctx())
        .await
        .expect("enable");
    assert!(
        !is_live(&accounts, &first.token).await,
        "revoked stays revoked"
    );
    login(&accounts, "alice", PASSWORD).await;
}

async fn session_id_changes_at_login_and_step_up(db: TestDatabase) {
    let clock = clock();
    let accounts = service(&db, &clock);
    let alice = create(&accounts, "alice").await;
    let a = login(&accounts, "alice", PASSWORD).await;
    let b = login(&accounts, "alice", PASSWORD).await;
    assert_ne!(a.token, b.token);
    assert_ne!(a.session.id, b.session.id);
    assert!(a.token.expose().starts_with("tg_sess_"));
    assert_eq!(a.session.amr, ["pwd"]);
    assert_eq!(a.session.acr, "1");
    assert_eq!(a.session.auth_time, clock.now());
    assert_eq!(a.session.user_id, alice.id);
    assert_eq!(a.session.ip.as_deref(), Some("203.0.113.7"));

    clock.advance(time::Duration::minutes(5));
    let cur = current(&accounts, &a.token).await;
    // Wrong password at step-up: refused, and the session is untouched.
    let err = accounts
        .reauthenticate(&cur, Secret::new("wrong password!!"), None, &ctx())
        .await
        .expect_err("wrong");
    assert!(matches!(err, AccountError::InvalidCredentials), "{err:?}");
    assert!(is_live(&accounts, &a.token).await);

    let stepped = accounts
        .reauthenticate(&cur, Secret::new(PASSWORD), None, &ctx())
        .await
        .expect("step up");
    assert_ne!(stepped.token, a.token);
    assert_ne!(stepped.session.id, a.session.id);
    assert_eq!(stepped.session.auth_time, clock.now());
    assert!(!is_live(&accounts, &a.token).await, "old id stops working");
    assert!(is_live(&accounts, &stepped.token).await);
    assert!(
        is_live(&accounts, &b.token).await,
        "other sessions unaffected"
    );
    // The replaced session cannot be stepped up again.
    let err = accounts
        .reauthenticate(&cur, Secret::new(PASSWORD), None, &ctx())
        .await
        .expect_err("rotated away");
    assert!(matches!(err, AccountError::InvalidCredentials), "{err:?}");

    // Garbage tokens are simply not sessions.
    for token in [
        "",
        "tg_sess_",
        "nope",
        &"x".repeat(5000),
        &format!("{}x", b.token.expose()),
    ] {
        assert!(!is_live(&accounts, &Secret::new(token)).await, "{token:?}");
    }
}

async fn expired_and_logged_out_sessions_are_refused(db: TestDatabase) {
    let clock = clock();
    let accounts = service(&db, &clock);
    create(&accounts, "alice").await;

    // Idle: 30 minutes without use.
    let idle = login(&accounts, "alice", PASSWORD).await;
    clock.advance(time::Duration::minutes(29));
    assert!(
        is_live(&accounts, &idle.token).await,
        "use moves the idle expiry"
    );
    clock.advance(time::Duration::minutes(29));
    assert!(is_live(&accounts, &idle.token).await);
    clock.advance(time::Duration::minutes(31));
    assert!(!is_live(&accounts, &idle.token).await, "idle expired");

    // Absolute: 12 hours whatever the use.
    let busy = login(&accounts, "alice", PASSWORD).await;
    for _ in 0..35 {
        clock.advance(time::Duration::minutes(20));
        assert!(is_live(&accounts, &busy.token).await);
    }
    clock.advance(time::Duration::minutes(20));
    assert!(!is_live(&accounts, &busy.token).await, "absolute expiry");

    // Logout.
    let out = login(&accounts, "alice", PASSWORD).await;
    accounts
        .logout(out.token.expose(), &ctx())
        .await
        .expect("logout");
    assert!(!is_live(&accounts, &out.token).await);
    accounts
        .logout(out.token.expose(), &ctx())
        .await
        .expect("logging out twice is fine");
    accounts
        .logout("garbage", &ctx())
        .await
        .expect("garbage ignored");
    assert!(accounts.purge_expired().await.expect("purge") >= 3);
}

async fn totp_codes_work_once_and_login_needs_them(db: TestDatabase) {
    let clock = clock();
    let accounts = service(&db, &clock);
    let alice = create(&accounts, "alice").await;
    let issued = login(&accounts, "alice", PASSWORD).await;
    let cur = current(&accounts, &issued.token).await;
    assert!(!accounts.totp_enabled(&alice.id).await.expect("enabled?"));

    // Confirmation needs a right code.
    let enrollment = accounts.begin_totp_enrollment(&cur).await.expect("begin");
    let secret = TotpSecret::from_base32(enrollment.secret_base32.expose()).expect("secret");
    let wrong = if secret.code_at(clock.now()) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let err = accounts
        .confirm_totp_enrollment(&cur, wrong, &ctx())
        .await
        .expect_err("wrong code");
    assert!(matches!(err, AccountError::InvalidSecondFactor), "{err:?}");
    assert!(!accounts.totp_enabled(&alice.id).await.expect("enabled?"));
    let codes = accounts
        .confirm_totp_enrollment(&cur, &secret.code_at(clock.now()), &ctx())
        .await
        .expect("confirm");
    assert_eq!(codes.len(), 10);
    assert!(accounts.totp_enabled(&alice.id).await.expect("enabled?"));
    let err = accounts
        .begin_totp_enrollment(&cur)
        .await
        .expect_err("already enrolled");
    assert!(matches!(err, AccountError::Conflict(_)), "{err:?}");

    // The password alone no longer logs in.
    let (token, methods) = pending(&accounts, "alice").await;
    assert_eq!(methods, [FactorKind::Totp, FactorKind::RecoveryCode]);
    assert_eq!(
        accounts
            .pending_login_methods(token.expose())
            .await
            .expect("methods"),
        methods
    );
    // The enrollment code's step is used up: the same code is a replay.
    let err = accounts
        .login_second_factor(
            token.expose(),
            SecondFactor::Totp(secret.code_at(clock.now())),
            &ctx(),
        )
        .await
        .expect_err("replayed enrollment code");
    assert!(matches!(err, AccountError::InvalidSecondFactor), "{err:?}");
    for garbage in ["", "12345", "abcdef", &"9".repeat(100)] {
        let err = accounts
            .login_second_factor(token.expose(), SecondFactor::Totp(garbage.into()), &ctx())
            .await
            .expect_err("garbage");
        assert!(matches!(err, AccountError::InvalidSecondFactor), "{err:?}");
    }

    clock.advance(time::Duration::seconds(30));
    let code = secret.code_at(clock.now());
    let issued = accounts
        .login_second_factor(token.expose(), SecondFactor::Totp(code.clone()), &ctx())
        .await
        .expect("second factor");
    assert_eq!(issued.session.amr, ["pwd", "otp", "mfa"]);
    assert_eq!(issued.session.acr, "2");
    assert!(is_live(&accounts, &issued.token).await);

    // The same code again, on a fresh pending login: replay.
    let (token, _) = pending(&accounts, "alice").await;
    let err = accounts
        .login_second_factor(token.expose(), SecondFactor::Totp(code), &ctx())
        .await
        .expect_err("replay");
    assert!(matches!(err, AccountError::InvalidSecondFactor), "{err:?}");
    clock.advance(time::Duration::seconds(30));
    accounts
        .login_second_factor(
            token.expose(),
            SecondFactor::Totp(secret.code_at(clock.now())),
            &ctx(),
        )
        .await
        .expect("next step's code");

    // Step-up with TOTP enrolled needs a code too.
    clock.advance(time::Duration::seconds(30));
    let cur = current(&accounts, &issued.token).await;
    let err = accounts
        .reauthenticate(&cur, Secret::new(PASSWORD), None, &ctx())
        .await
        .expect_err("code missing");
    assert!(matches!(err, AccountError::InvalidSecondFactor), "{err:?}");
    let stepped = accounts
        .reauthenticate(
            &cur,
            Secret::new(PASSWORD),
            Some(&secret.code_at(clock.now())),
            &ctx(),
        )
        .await
        .expect("step up with code");
    assert_eq!(stepped.session.amr, ["pwd", "otp", "mfa"]);

    // Removal (recent session) brings back password-only login.
    let cur = current(&accounts, &stepped.token).await;
    accounts.remove_totp(&cur, &ctx()).await.expect("remove");
    assert!(!accounts.totp_enabled(&alice.id).await.expect("enabled?"));
    login(&accounts, "alice", PASSWORD).await;
    let _ = codes;
}

async fn recovery_codes_work_once(db: TestDatabase) {
    let clock = clock();
    let accounts = service(&db, &clock);
    create(&accounts, "alice").await;
    let issued = login(&accounts, "alice", PASSWORD).await;
    let cur = current(&accounts, &issued.token).await;
    let (_secret, codes) = enroll_totp(&accounts, &clock, &cur).await;

    let (token, _) = pending(&accounts, "alice").await;
    let first = codes[0].expose().to_owned();
    // Typed loosely: upper case, no dashes.
    let loose = first.replace('-', "").to_uppercase();
    let issued = accounts
        .login_second_factor(token.expose(), SecondFactor::RecoveryCode(loose), &ctx())
        .await
        .expect("recovery code");
    assert!(issued.session.amr.contains(&"mfa".to_owned()));
    let (token, _) = pending(&accounts, "alice").await;
    let err = accounts
        .login_second_factor(token.expose(), SecondFactor::RecoveryCode(first), &ctx())
        .await
        .expect_err("used");
    assert!(matches!(err, AccountError::InvalidSecondFactor), "{err:?}");
    let err = accounts
        .login_second_factor(
            token.expose(),
            SecondFactor::RecoveryCode("not-a-code".into()),
            &ctx(),
        )
        .await
        .expect_err("malformed");
    assert!(matches!(err, AccountError::InvalidSecondFactor), "{err:?}");
    accounts
        .login_second_factor(
            token.expose(),
            SecondFactor::RecoveryCode(codes[1].expose().into()),
            &ctx(),
        )
        .await
        .expect("another code");
}

async fn pending_login_tokens_cannot_be_tampered_or_outlived(db: TestDatabase) {
    let clock = clock();
    let accounts = service(&db, &clock);
    create(&accounts, "alice").await;
    let issued = login(&accounts, "alice", PASSWORD).await;
    let cur = current(&accounts, &issued.token).await;
    let (secret, _) = enroll_totp(&accounts, &clock, &cur).await;
    clock.advance(time::Duration::seconds(30));

    let (token, _) = pending(&accounts, "alice").await;
    let raw = token.expose();
    let mut tampered: Vec<char> = raw.chars().collect();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    for bad in [
        tampered.as_str(),
        "",
        "not base64!",
        &raw[..raw.len() - 2],
        &"A".repeat(5000),
    ] {
        let err = accounts
            .login_second_factor(bad, SecondFactor::Totp(secret.code_at(clock.now())), &ctx())
            .await
            .expect_err("tampered");
        assert!(
            matches!(err, AccountError::InvalidSecondFactor),
            "{bad:?}: {err:?}"
        );
        let err = accounts
            .pending_login_methods(bad)
            .await
            .expect_err("tampered");
        assert!(matches!(err, AccountError::InvalidSecondFactor), "{err:?}");
    }
    // Another deployment's key cannot have made it either.
    let foreign = service(&db, &clock);
    let err = foreign
        .login_second_factor(raw, SecondFactor::Totp(secret.code_at(clock.now())), &ctx())
        .await
        .expect_err("foreign key");
    assert!(matches!(err, AccountError::InvalidSecondFactor), "{err:?}");

    clock.advance(time::Duration::minutes(6));
    let err = accounts
        .login_second_factor(raw, SecondFactor::Totp(secret.code_at(clock.now())), &ctx())
        .await
        .expect_err("expired");
    assert!(matches!(err, AccountError::InvalidSecondFactor), "{err:?}");
}

async fn self_service_needs_a_recent_login(db: TestDatabase) {
    let clock = clock();
    let accounts = service(&db, &clock);
    create(&accounts, "alice").await;
    let issued = login(&accounts, "alice", PASSWORD).await;
    assert!(accounts.is_recent(&issued.session));
    clock.advance(time::Duration::minutes(11));
    let cur = current(&accounts, &issued.token).await;
    assert!(!accounts.is_recent(&cur.session));

    let err = accounts
        .change_password(
            &cur,
            Secret::new(PASSWORD),
            Secret::new(OTHER_PASSWORD),
            false,
            &ctx(),
        )
        .await
        .expect_err("not recent");
    assert!(matches!(err, AccountError::StepUpRequired), "{err:?}");
    assert_eq!(err.code(), "step_up_required");
    let err = accounts
        .begin_totp_enrollment(&cur)
        .await
        .expect_err("not recent");
    assert!(matches!(err, AccountError::StepUpRequired), "{err:?}");
    let err = accounts
        .remove_totp(&cur, &ctx())
        .await
        .expect_err("not recent");
    assert!(matches!(err, AccountError::StepUpRequired), "{err:?}");
    // The password did not change.
    login(&accounts, "alice", PASSWORD).await;

    let stepped = accounts
        .reauthenticate(&cur, Secret::new(PASSWORD), None, &ctx())
        .await
        .expect("step up");
    let cur = current(&accounts, &stepped.token).await;
    assert!(accounts.is_recent(&cur.session));
    accounts
        .change_password(
            &cur,
            Secret::new(PASSWORD),
            Secret::new(OTHER_PASSWORD),
            false,
            &ctx(),
        )
        .await
        .expect("recent enough");
}

async fn password_change_checks_old_password_and_policy(db: TestDatabase) {
    let clock = clock();
    let accounts = service(&db, &clock);
    create(&accounts, "alice").await;
    let other = login(&accounts, "alice", PASSWORD).await;
    let issued = login(&accounts, "alice", PASSWORD).await;
    let cur = current(&accounts, &issued.token).await;

    let err = accounts
        .change_password(
            &cur,
            Secret::new("not my password"),
            Secret::new(OTHER_PASSWORD),
            true,
            &ctx(),
        )
        .await
        .expect_err("wrong old password");
    assert!(matches!(err, AccountError::InvalidCredentials), "{err:?}");
    for (new, rejection) in [
        ("short", "password_too_short"),
        (
            "alice-and-her-long-password",
            "password_contains_user_identity",
        ),
        ("passwordpassword", "password_common"),
    ] {
        let err = accounts
            .change_password(&cur, Secret::new(PASSWORD), Secret::new(new), true, &ctx())
            .await
            .expect_err("policy");
        assert_eq!(err.code(), rejection, "{new}");
        assert!(matches!(err, AccountError::PasswordRejected(_)));
    }
    assert!(
        is_live(&accounts, &other.token).await,
        "nothing changed yet"
    );

    accounts
        .change_password(
            &cur,
            Secret::new(PASSWORD),
            Secret::new(OTHER_PASSWORD),
            true,
            &ctx(),
        )
        .await
        .expect("change");
    assert!(
        !is_live(&accounts, &other.token).await,
        "other sessions revoked"
    );
    assert!(
        is_live(&accounts, &issued.token).await,
        "current session kept"
    );
    let err = accounts
        .login_password("alice", Secret::new(PASSWORD), &ctx())
        .await
        .expect_err("old password");
    assert!(matches!(err, AccountError::InvalidCredentials), "{err:?}");
    login(&accounts, "alice", OTHER_PASSWORD).await;
}

async fn admin_user_management(db: TestDatabase) {
    let clock = clock();
    let accounts = service(&db, &clock);
    let alice = create(&accounts, "alice").await;
    assert_eq!(alice.email, "alice@example.com");
    assert_eq!(alice.status, UserStatus::Active);

    // Duplicates, case-insensitively, in either field.
    for (username, email) in [
        ("ALICE", "other@example.com"),
        ("other", "Alice@Example.com"),
    ] {
        let err = accounts
            .create_user(
                CreateUser {
                    username: username.into(),
                    email: email.into(),
                    ..CreateUser::default()
                },
                "service:t",
                &ctx(),
            )
            .await
            .expect_err("duplicate");
        assert!(
            matches!(err, AccountError::Conflict(_)),
            "{username}: {err:?}"
        );
    }
    // Invalid input.
    for (username, email) in [
        ("", "a@b.c"),
        ("has space", "a@b.c"),
        ("x@y", "a@b.c"),
        ("bob", "nope"),
    ] {
        let err = accounts
            .create_user(
                CreateUser {
                    username: username.into(),
                    email: email.into(),
                    ..CreateUser::default()
                },
                "service:t",
                &ctx(),
            )
            .await
            .expect_err("invalid");
        assert_eq!(err.code(), "invalid_input", "{username} {email}");
    }
    let err = accounts
        .create_user(
            CreateUser {
                username: "robert".into(),
                email: "robert@example.com".into(),
                password: Some(Secret::new("robert-likes-tea-1")),
                ..CreateUser::default()
            },
            "service:t",
            &ctx(),
        )
        .await
        .expect_err("policy");
    assert!(
        matches!(
            err,
            AccountError::PasswordRejected(PasswordRejection::ContainsUserIdentity)
        ),
        "{err:?}"
    );

    // Lookups by id, username and email; paging.
    assert_eq!(accounts.get_user(&alice.id).await.expect("id").id, alice.id);
    assert_eq!(
        accounts.get_user("ALICE").await.expect("username").id,
        alice.id
    );
    assert!(matches!(
        accounts.get_user("nobody").await,
        Err(AccountError::NotFound)
    ));
    let bob = create(&accounts, "bob").await;
    let carol = create(&accounts, "carol").await;
    let page = accounts.list_users(None, 2).await.expect("page 1");
    assert_eq!(page.users.len(), 2);
    let next = page.next.clone().expect("more");
    let rest = accounts.list_users(Some(&next), 2).await.expect("page 2");
    assert_eq!(rest.users.len(), 1);
    assert!(rest.next.is_none());
    let mut ids: Vec<String> = page
        .users
        .iter()
        .chain(&rest.users)
        .map(|u| u.id.clone())
        .collect();
    ids.sort();
    let mut expected = vec![alice.id.clone(), bob.id.clone(), carol.id.clone()];
    expected.sort();
    assert_eq!(ids, expected);

    // Profile change.
    let updated = accounts
        .update_user(
            &bob.id,
            UserUpdate {
                name: Some(None),
                locale: Some(Some("pt-BR".into())),
                ..UserUpdate::default()
            },
            "service:t",
            &ctx(),
        )
        .await
        .expect("update");
    assert_eq!(updated.name, None);
    assert_eq!(updated.locale.as_deref(), Some("pt-BR"));
    let err = accounts
        .update_user(
            &bob.id,
            UserUpdate {
                email: Some("alice@example.com".into()),
                ..UserUpdate::default()
            },
            "service:t",
            &ctx(),
        )
        .await
        .expect_err("email taken");
    assert!(matches!(err, AccountError::Conflict(_)), "{err:?}");

    // Admin password reset revokes sessions.
    let session = login(&accounts, "bob", PASSWORD).await;
    let err = accounts
        .admin_set_password(&bob.id, Secret::new("12345678"), "service:t", &ctx())
        .await
        .expect_err("policy");
    assert!(matches!(err, AccountError::PasswordRejected(_)), "{err:?}");
    accounts
        .admin_set_password(&bob.id, Secret::new(OTHER_PASSWORD), "service:t", &ctx())
        .await
        .expect("reset");
    assert!(!is_live(&accounts, &session.token).await);
    login(&accounts, "bob", OTHER_PASSWORD).await;

    // Revoking one and all sessions.
    let s1 = login(&accounts, "carol", PASSWORD).await;
    let s2 = login(&accounts, "carol", PASSWORD).await;
    let s3 = login(&accounts, "carol", PASSWORD).await;
    accounts
        .revoke_session(&carol.id, &s1.session.id, "service:t", &ctx())
        .await
        .expect("revoke one");
    assert!(matches!(
        accounts
            .revoke_session(&carol.id, &s1.session.id, "service:t", &ctx())
            .await,
        Err(AccountError::NotFound)
    ));
    assert!(matches!(
        accounts
            .revoke_session(&alice.id, &s2.session.id, "service:t", &ctx())
            .await,
        Err(AccountError::NotFound)
    ));
    assert!(!is_live(&accounts, &s1.token).await);
    let n = accounts
        .revoke_all_sessions(&carol.id, Some(&s3.session.id), "service:t", &ctx())
        .await
        .expect("revoke all but one");
    assert_eq!(n, 1);
    assert!(!is_live(&accounts, &s2.token).await);
    assert!(is_live(&accounts, &s3.token).await);

    // Delete: gone, sessions gone, login fails.
    accounts
        .delete_user(&carol.id, "service:t", &ctx())
        .await
        .expect("delete");
    assert!(!is_live(&accounts, &s3.token).await);
    assert!(matches!(
        accounts.get_user(&carol.id).await,
        Err(AccountError::NotFound)
    ));
    assert!(matches!(
        accounts.delete_user(&carol.id, "service:t", &ctx()).await,
        Err(AccountError::NotFound)
    ));
    let err = accounts
        .login_password("carol", Secret::new(PASSWORD), &ctx())
        .await
        .expect_err("deleted");
    assert!(matches!(err, AccountError::InvalidCredentials), "{err:?}");
}

async fn outdated_hashes_are_upgraded_at_login(db: TestDatabase) {
    let clock = clock();
    let key = SealingKey::generate();
    let weak = AccountsConfig {
        hasher: PasswordHasherConfig {
            params: HashParams {
                m_cost_kib: 8192,
                t_cost: 1,
                p_cost: 1,
            },
            ..PasswordHasherConfig::default()
        },
        ..AccountsConfig::default()
    };
    let old = Accounts::new(
        db.store.clone(),
        auditor(&db, &clock),
        Arc::new(clock.clone()),
        key.clone(),
        weak,
    );
    let alice = create(&old, "alice").await;
    let before = db
        .store
        .password_hash(&alice.id)
        .await
        .expect("hash")
        .expect("has one");
    assert!(before.contains("m=8192,t=1,p=1"), "{before}");

    let current = Accounts::new(
        db.store.clone(),
        auditor(&db, &clock),
        Arc::new(clock.clone()),
        key,
        AccountsConfig::default(),
    );
    login(&current, "alice", PASSWORD).await;
    let after = db
        .store
        .password_hash(&alice.id)
        .await
        .expect("hash")
        .expect("has one");
    assert!(after.contains("m=19456,t=2,p=1"), "{after}");
    login(&current, "alice", PASSWORD).await;
}

async fn audit_records_credential_events_without_secrets(db: TestDatabase) {
    let clock = clock();
    let accounts = service(&db, &clock);
    let alice = create(&accounts, "alice").await;
    let _ = accounts
        .login_password("alice", Secret::new(OTHER_PASSWORD), &ctx())
        .await
        .expect_err("wrong");
    let issued = login(&accounts, "alice", PASSWORD).await;
    let cur = current(&accounts, &issued.token).await;
    let (secret, codes) = enroll_totp(&accounts, &clock, &cur).await;
    clock.advance(time::Duration::seconds(30));
    let (pending_token, _) = pending(&accounts, "alice").await;
    let code = secret.code_at(clock.now());
    let mfa = accounts
        .login_second_factor(
            pending_token.expose(),
            SecondFactor::Totp(code.clone()),
            &ctx(),
        )
        .await
        .expect("mfa");
    let (pending2, _) = pending(&accounts, "alice").await;
    let recovered = accounts
        .login_second_factor(
            pending2.expose(),
            SecondFactor::RecoveryCode(codes[0].expose().into()),
            &ctx(),
        )
        .await
        .expect("recovery");
    let cur = current(&accounts, &mfa.token).await;
    accounts
        .change_password(
            &cur,
            Secret::new(PASSWORD),
            Secret::new(OTHER_PASSWORD),
            true,
            &ctx(),
        )
        .await
        .expect("change");
    let cur = current(&accounts, &mfa.token).await;
    accounts.remove_totp(&cur, &ctx()).await.expect("remove");
    accounts
        .logout(mfa.token.expose(), &ctx())
        .await
        .expect("logout");
    // Event ids order by millisecond; a frozen clock needs a nudge for a definite newest.
    clock.advance(time::Duration::seconds(1));
    accounts
        .set_user_status(&alice.id, UserStatus::Disabled, "service:admin-1", &ctx())
        .await
        .expect("disable");
    clock.advance(time::Duration::seconds(1));
    accounts
        .set_user_status(&alice.id, UserStatus::Active, "service:admin-1", &ctx())
        .await
        .expect("enable");

    let events = accounts
        .audit(
            &AuditFilter {
                user_id: Some(alice.id.clone()),
                ..AuditFilter::default()
            },
            1000,
        )
        .await
        .expect("audit")
        .into_iter()
        .map(|r| r.event)
        .collect::<Vec<_>>();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for kind in [
        "user_created",
        "login_failed",
        "login",
        "login_pending",
        "mfa_enrolled",
        "recovery_code_used",
        "password_changed",
        "mfa_removed",
        "logout",
        "user_disabled",
        "user_enabled",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    // Newest first; context recorded.
    assert_eq!(events[0].kind, "user_enabled");
    assert_eq!(events[0].actor.as_deref(), Some("service:admin-1"));
    let failed = events
        .iter()
        .find(|e| e.kind == "login_failed")
        .expect("failed login");
    assert_eq!(failed.outcome, "failure");
    assert_eq!(failed.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(failed.user_agent.as_deref(), Some("accounts-test/1.0"));
    assert_eq!(failed.request_id.as_deref(), Some("req-test-1"));
    let only_logins = accounts
        .audit(
            &AuditFilter {
                kind: Some("login".into()),
                ..AuditFilter::default()
            },
            1000,
        )
        .await
        .expect("by kind")
        .into_iter()
        .map(|r| r.event)
        .collect::<Vec<_>>();
    assert!(!only_logins.is_empty());
    assert!(only_logins.iter().all(|e| e.kind == "login"));

    // No secret anywhere in what was recorded.
    let everything = accounts
        .audit(&AuditFilter::default(), 1000)
        .await
        .expect("all")
        .into_iter()
        .map(|r| r.event)
        .collect::<Vec<_>>();
    let dump = format!("{everything:?}");
    let mut secrets = vec![
        PASSWORD.to_owned(),
        OTHER_PASSWORD.to_owned(),
        secret.to_base32().expose().to_owned(),
        issued.token.expose().to_owned(),
        mfa.token.expose().to_owned(),
        recovered.token.expose().to_owned(),
        pending_token.expose().to_owned(),
    ];
    secrets.extend(codes.iter().map(|c| c.expose().to_owned()));
    secrets.extend(codes.iter().map(|c| c.expose().replace('-', "")));
    for secret in &secrets {
        assert!(!dump.contains(secret.as_str()), "audit contains a secret");
    }
    for event in &everything {
        let detail = serde_json::to_string(&event.detail).expect("json");
        for secret in &secrets {
            assert!(
                !detail.contains(secret.as_str()),
                "audit detail contains a secret"
            );
        }
        // A six-digit code could appear by chance inside a timestamp, so look for it as a value.
        assert!(
            !event
                .detail
                .values()
                .any(|v| v.as_str() == Some(code.as_str())),
            "audit detail contains a TOTP code"
        );
    }
}
