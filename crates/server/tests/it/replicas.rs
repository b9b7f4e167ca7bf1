//! Two replicas over one database enforce one set of limits (issue #13): password guesses
//! alternated between replicas meet the throttle after as many failures as on one replica; a
//! passkey challenge completed on one replica is refused on the other; device user-code guesses
//! alternated between replicas are throttled per session and per client IP. On PostgreSQL the
//! second replica has its own connection pool (`TestDatabase::replica_store`), as a second
//! process would; on SQLite (one process per file) both share the store.

use std::net::SocketAddr;

use http::StatusCode;
use trustgate_authn::accounts::{
    AccountError, PasskeyAssertion, PasskeyRegistration, RequestContext,
};
use trustgate_authn::webauthn::testing::{Authenticator, rp};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;

use crate::common::browser::Browser;
use crate::oauth_flows::{
    Op, PASSWORD, device_started, op, other_code, replica, retry_after, signed_in, type_code,
};

test_on_both_backends!(
    password_guesses_across_replicas_meet_one_throttle,
    a_passkey_challenge_completed_on_one_replica_is_refused_on_the_other,
    device_code_guesses_across_replicas_meet_one_throttle,
);

async fn two(db: &TestDatabase) -> (Op, Op) {
    let a = op(db).await;
    let b = replica(&a, db.replica_store().await).await;
    (a, b)
}

fn address(last: u8) -> Option<SocketAddr> {
    Some(SocketAddr::from(([198, 51, 100, last], 40_000)))
}

async fn password_guesses_across_replicas_meet_one_throttle(db: TestDatabase) {
    let (a, b) = two(&db).await;
    let mut browser = Browser::new();
    browser.ip = address(7);
    // On one replica the seventh attempt is the first refused (five free failures, the delay
    // starts after the sixth); alternating between two replicas changes nothing.
    for n in 0..6 {
        let replica = if n % 2 == 0 { &a } else { &b };
        let r = browser.login(replica, "alice", "not the password!").await;
        assert_eq!(r.status, StatusCode::OK, "attempt {n}: {}", r.body);
    }
    for replica in [&a, &b] {
        let r = browser.login(replica, "alice", "not the password!").await;
        assert!(retry_after(&r) >= 1);
        // The right password waits too, on either replica.
        let r = browser.login(replica, "alice", PASSWORD).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(browser.session().is_none());
    // After the wait, either replica lets the right password in.
    a.clock.advance(time::Duration::seconds(2));
    let r = browser.login(&b, "alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

async fn a_passkey_challenge_completed_on_one_replica_is_refused_on_the_other(db: TestDatabase) {
    let (a, b) = two(&db).await;
    let ctx = RequestContext::default();
    // alice registers a passkey on replica A.
    let issued = match a
        .state
        .accounts
        .login_password("alice", trustgate_core::Secret::new(PASSWORD), &ctx)
        .await
        .expect("login")
    {
        trustgate_authn::accounts::LoginStep::Complete(issued) => issued,
        other => panic!("no second factor expected: {other:?}"),
    };
    let current = a
        .state
        .accounts
        .authenticate_session(issued.token.expose(), &ctx)
        .await
        .expect("session")
        .expect("live");
    let mut key = Authenticator::p256(11);
    let ceremony = a
        .state
        .accounts
        .begin_passkey_registration(&current, &rp())
        .await
        .expect("begin");
    let (client_data_json, attestation_object) = key.create(&challenge_of(&ceremony.options));
    a.state
        .accounts
        .finish_passkey_registration(
            &current,
            &rp(),
            ceremony.state.expose(),
            "laptop",
            &PasskeyRegistration {
                client_data_json,
                attestation_object,
                transports: vec![],
            },
            &ctx,
        )
        .await
        .expect("registered");

    // A sign-in ceremony started on B and completed on A ...
    let login = b.state.accounts.begin_passkey_login(&rp()).expect("begin");
    let (client_data_json, authenticator_data, signature) = key.get(&challenge_of(&login.options));
    let answer = PasskeyAssertion {
        credential_id: key.credential_id.clone(),
        client_data_json,
        authenticator_data,
        signature,
        user_handle: None,
    };
    a.state
        .accounts
        .login_passkey(&rp(), login.state.expose(), &answer, &ctx)
        .await
        .expect("signed in on A");
    // ... cannot be completed again on B (nor on A) within the challenge's lifetime.
    for replica in [&b, &a] {
        let replay = replica
            .state
            .accounts
            .login_passkey(&rp(), login.state.expose(), &answer, &ctx)
            .await;
        assert!(
            matches!(replay, Err(AccountError::InvalidCredentials)),
            "{replay:?}"
        );
    }
    let events = b
        .state
        .accounts
        .audit(&trustgate_store_api::AuditFilter::default(), 50)
        .await
        .expect("audit")
        .into_iter()
        .map(|r| r.event)
        .collect::<Vec<_>>();
    assert!(
        events.iter().any(|e| e.kind == "login_failed"
            && e.detail.get("reason").and_then(|r| r.as_str()) == Some("webauthn_challenge_used")),
        "{events:?}"
    );
}

fn challenge_of(options: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    let text = options["challenge"].as_str().expect("challenge");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url")
}

async fn device_code_guesses_across_replicas_meet_one_throttle(db: TestDatabase) {
    let (a, b) = two(&db).await;
    let (_tv, _device_code, user_code) = device_started(&a).await;
    let mut guess = 0;
    let mut next_guess = || {
        guess += 1;
        other_code(&user_code, guess)
    };

    // Per session: five free failures; the sixth is still looked up; the seventh waits,
    // whichever replica each one reaches.
    let mut first = signed_in(&a, "alice").await;
    first.ip = address(20);
    for n in 0..6 {
        let replica = if n % 2 == 0 { &a } else { &b };
        let r = type_code(replica, &mut first, &next_guess()).await;
        assert_eq!(r.status, StatusCode::OK, "guess {n}: {}", r.body);
    }
    for replica in [&a, &b] {
        let r = type_code(replica, &mut first, &next_guess()).await;
        assert!(retry_after(&r) >= 1);
        let right = type_code(replica, &mut first, &user_code).await;
        assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    }

    // Per address: fresh sessions from the same address share its 20 free failures (six used
    // above), spread over both replicas.
    for s in 0..3 {
        let mut browser = signed_in(if s % 2 == 0 { &b } else { &a }, "bob").await;
        browser.ip = address(20);
        for n in 0..5 {
            let replica = if n % 2 == 0 { &a } else { &b };
            let r = type_code(replica, &mut browser, &next_guess()).await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "session {s} guess {n}: {}",
                r.body
            );
        }
    }
    // 21 failures from the address: a brand-new session there waits, on either replica ...
    let mut fresh = signed_in(&a, "bob").await;
    fresh.ip = address(20);
    for replica in [&a, &b] {
        let r = type_code(replica, &mut fresh, &user_code).await;
        assert!(retry_after(&r) >= 1);
    }
    // ... while the same user from another address is not held up, and finds the right code.
    let mut elsewhere = signed_in(&b, "bob").await;
    elsewhere.ip = address(21);
    let r = type_code(&b, &mut elsewhere, &user_code).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("TV"), "{}", r.body);
}
