//! Signing keys, OAuth clients and grant artifacts, on every backend.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tokio::sync::Barrier;
use trustgate_core::TokenDigest;
use trustgate_core::id::new_ulid;
use trustgate_oauth::device::poll_step;
use trustgate_oauth::refresh::rotation_step;
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{
    AuthorizationCode, CodeRedemption, Conflict, Consent, DeviceAuthorization, DevicePoll,
    DeviceStatus, Grant, KeyRetirement, NewUser, OAuthClient, PushedRequest, RefreshRotation,
    RefreshToken, RotationStep, SigningKey, StoreError, User, UserStatus,
};

test_on_both_backends!(
    key_rotation_is_a_compare_and_set,
    concurrent_key_rotations_produce_one_key,
    expired_keys_are_deleted,
    clients_round_trip,
    client_pages_walk_every_client_once,
    deleting_a_client_deletes_everything_issued_to_it,
    deleting_a_user_deletes_their_grant_artifacts,
    codes_are_redeemed_once,
    concurrent_code_redemptions_let_exactly_one_win,
    grants_need_a_known_client_and_an_active_user,
    grants_are_found_by_session_and_revoked_once,
    refresh_rotation_grace_and_reuse,
    refused_rotations_write_nothing,
    concurrent_rotations_of_one_refresh_token_rotate_once_and_grace_once,
    revoking_a_users_grants_bumps_their_token_version,
    consents_round_trip_and_withdrawing_revokes_grants,
    device_authorization_life,
    denied_expired_and_unknown_device_codes,
    concurrent_polls_of_an_approved_device_code_redeem_once,
    user_codes_are_unique_among_unexpired_authorizations,
    concurrent_puts_of_one_user_code_let_exactly_one_win,
    pushed_requests_are_used_once,
    client_assertion_ids_are_recorded_once,
    revoked_access_tokens_are_remembered_until_they_expire,
    purge_removes_only_dead_rows,
    bad_input_is_refused_and_writes_nothing,
);

const T0: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);
const GRACE: Duration = Duration::seconds(30);

/// The provider's refresh rule for `client_id` at `now`, as the provider passes it.
fn rule(
    client_id: &str,
    now: OffsetDateTime,
) -> impl Fn(&RefreshToken, &Grant, Option<UserStatus>) -> RotationStep + Send + Sync + '_ {
    move |token, grant, user_status| rotation_step(token, grant, user_status, client_id, now, GRACE)
}

fn at(seconds: i64) -> OffsetDateTime {
    T0 + Duration::seconds(seconds)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn conflict(err: &StoreError) -> &Conflict {
    match err {
        StoreError::Conflict(kind) => kind,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("{what}: expected not found, got {other:?}"),
    }
}

async fn create_user(db: &TestDatabase, name: &str) -> User {
    let user = NewUser {
        id: new_ulid(T0),
        username: name.to_owned(),
        email: format!("{name}@example.com"),
        name: None,
        locale: None,
        attributes: Map::new(),
        password_hash: None,
    };
    db.store.create_user(&user, T0).await.expect("create user")
}

fn client(id: &str) -> OAuthClient {
    OAuthClient {
        id: id.to_owned(),
        name: format!("The {id} app"),
        secret_digest: Some(TokenDigest::of(&format!("secret of {id}"))),
        metadata: object(json!({
            "redirect_uris": [format!("https://{id}.example/cb")],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_basic",
        })),
        created_at: T0,
        updated_at: T0,
    }
}

async fn register(db: &TestDatabase, id: &str) -> OAuthClient {
    let c = client(id);
    db.store.create_client(&c).await.expect("create client");
    c
}

fn code(client_id: &str, user: &User) -> AuthorizationCode {
    AuthorizationCode {
        client_id: client_id.to_owned(),
        user_id: user.id.clone(),
        session_id: Some("session-1".to_owned()),
        redirect_uri: format!("https://{client_id}.example/cb"),
        grant_id: new_ulid(T0),
        created_at: T0,
        expires_at: at(60),
        detail: object(json!({
            "scope": "openid profile",
            "nonce": "n-0S6_WzA2Mj",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        })),
    }
}

/// A grant created at T0 that lives an hour.
fn grant(client_id: &str, user: Option<&User>, session_id: Option<&str>) -> Grant {
    Grant {
        id: new_ulid(T0),
        client_id: client_id.to_owned(),
        user_id: user.map(|u| u.id.clone()),
        session_id: session_id.map(str::to_owned),
        scope: "openid offline_access".to_owned(),
        created_at: T0,
        expires_at: at(3600),
        revoked_at: None,
        detail: object(json!({"auth_time": 1_795_428_000, "amr": ["pwd"], "acr": "1"})),
    }
}

/// The first refresh token of `grant`, living 30 minutes.
fn refresh(grant: &Grant) -> RefreshToken {
    RefreshToken {
        grant_id: grant.id.clone(),
        created_at: T0,
        expires_at: at(1800),
        rotated_at: None,
        grace_used: false,
    }
}

/// Creates `grant` with a first refresh token whose secret is `secret`.
async fn issue(db: &TestDatabase, grant: &Grant, secret: &str) -> TokenDigest {
    let digest = TokenDigest::of(secret);
    db.store
        .create_grant(grant, Some((&digest, &refresh(grant))))
        .await
        .expect("create grant");
    digest
}

async fn rotate(
    db: &TestDatabase,
    old: &TokenDigest,
    new: &str,
    client_id: &str,
    now: OffsetDateTime,
) -> RefreshRotation {
    db.store
        .rotate_refresh_token(
            old,
            &TokenDigest::of(new),
            now + Duration::minutes(30),
            now,
            &rule(client_id, now),
        )
        .await
        .expect("rotate")
}

async fn token(db: &TestDatabase, digest: &TokenDigest) -> Option<RefreshToken> {
    db.store
        .find_refresh_token(digest)
        .await
        .expect("find refresh token")
        .map(|(token, _)| token)
}

async fn grant_of(db: &TestDatabase, id: &str) -> Option<Grant> {
    db.store.get_grant(id).await.expect("get grant")
}

fn device(client_id: &str, user_code: &str) -> DeviceAuthorization {
    DeviceAuthorization {
        user_code: user_code.to_owned(),
        client_id: client_id.to_owned(),
        scope: "openid".to_owned(),
        created_at: T0,
        expires_at: at(600),
        interval_secs: 5,
        last_polled_at: None,
        status: DeviceStatus::Pending,
        user_id: None,
        session_id: None,
        detail: Map::new(),
    }
}

async fn put_device(db: &TestDatabase, client_id: &str, user_code: &str) -> TokenDigest {
    let digest = TokenDigest::of(&format!("device code {user_code}"));
    db.store
        .put_device_authorization(&digest, &device(client_id, user_code))
        .await
        .expect("put device authorization");
    digest
}

async fn poll(
    db: &TestDatabase,
    digest: &TokenDigest,
    client_id: &str,
    now: OffsetDateTime,
) -> DevicePoll {
    db.store
        .poll_device_authorization(digest, now, &|a| poll_step(a, client_id, now))
        .await
        .expect("poll")
}

fn pushed(client_id: &str, expires_at: OffsetDateTime) -> PushedRequest {
    PushedRequest {
        client_id: client_id.to_owned(),
        parameters: object(json!({
            "response_type": "code",
            "client_id": client_id,
            "scope": "openid",
            "state": "af0ifjsldkj",
        })),
        created_at: T0,
        expires_at,
    }
}

fn signing_key(kid: &str, algorithm: &str, created_at: OffsetDateTime) -> SigningKey {
    SigningKey {
        kid: kid.to_owned(),
        algorithm: algorithm.to_owned(),
        public_jwk: object(json!({
            "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            "kid": kid, "alg": algorithm, "use": "sig",
        })),
        sealed_private_key: format!("sealed {kid}").into_bytes(),
        created_at,
        activates_at: created_at + Duration::hours(1),
        retires_at: None,
        expires_at: None,
    }
}

async fn kids(db: &TestDatabase) -> Vec<String> {
    db.store
        .list_signing_keys()
        .await
        .expect("list keys")
        .into_iter()
        .map(|k| k.kid)
        .collect()
}

// ---------------------------------------------------------------------------------------------

async fn key_rotation_is_a_compare_and_set(db: TestDatabase) {
    assert!(kids(&db).await.is_empty());
    let k1 = signing_key("k1", "EdDSA", T0);
    assert!(
        db.store
            .rotate_signing_key(&k1, None, None)
            .await
            .expect("first key")
    );
    // A writer that believes there is no key yet lost the race: nothing written.
    let stale = signing_key("k2", "EdDSA", at(10));
    assert!(
        !db.store
            .rotate_signing_key(&stale, None, None)
            .await
            .expect("stale rotation")
    );
    assert_eq!(kids(&db).await, ["k1"]);

    let retirement = KeyRetirement {
        retires_at: at(3600),
        expires_at: at(7200),
    };
    let k2 = signing_key("k2", "EdDSA", at(10));
    assert!(
        db.store
            .rotate_signing_key(&k2, Some("k1"), Some(retirement))
            .await
            .expect("rotation")
    );
    // k1 is no longer the newest: expecting it is stale, and the retirement is not applied.
    let k3 = signing_key("k3", "EdDSA", at(20));
    let late = KeyRetirement {
        retires_at: at(99),
        expires_at: at(99),
    };
    assert!(
        !db.store
            .rotate_signing_key(&k3, Some("k1"), Some(late))
            .await
            .expect("stale rotation")
    );
    // A duplicate kid is a conflict, and the retirement of the newest is rolled back with it.
    let duplicate = signing_key("k1", "EdDSA", at(20));
    let err = db
        .store
        .rotate_signing_key(&duplicate, Some("k2"), Some(late))
        .await
        .expect_err("duplicate kid");
    assert_eq!(conflict(&err), &Conflict::KidTaken);

    // Each algorithm has its own newest key.
    let e1 = signing_key("e1", "ES256", at(30));
    assert!(
        db.store
            .rotate_signing_key(&e1, None, None)
            .await
            .expect("other algorithm")
    );

    let keys = db.store.list_signing_keys().await.expect("list");
    let expected_k1 = SigningKey {
        retires_at: Some(at(3600)),
        expires_at: Some(at(7200)),
        ..k1
    };
    assert_eq!(keys, vec![expected_k1, k2, e1], "oldest first, k1 retired");
}

async fn concurrent_key_rotations_produce_one_key(db: TestDatabase) {
    let k0 = signing_key("k0", "EdDSA", T0);
    assert!(
        db.store
            .rotate_signing_key(&k0, None, None)
            .await
            .expect("first key")
    );
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = db.store.clone();
            let key = signing_key(&format!("replica-{i}"), "EdDSA", at(60));
            let retirement = KeyRetirement {
                retires_at: at(3600),
                expires_at: at(7200),
            };
            tokio::spawn(async move {
                store
                    .rotate_signing_key(&key, Some("k0"), Some(retirement))
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        if task.await.expect("task").expect("rotate") {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(kids(&db).await.len(), 2);
}

async fn expired_keys_are_deleted(db: TestDatabase) {
    let k1 = signing_key("k1", "EdDSA", T0);
    let k2 = signing_key("k2", "EdDSA", at(10));
    let k3 = signing_key("k3", "EdDSA", at(20));
    let retire = |s| KeyRetirement {
        retires_at: at(s),
        expires_at: at(s + 100),
    };
    db.store
        .rotate_signing_key(&k1, None, None)
        .await
        .expect("k1");
    db.store
        .rotate_signing_key(&k2, Some("k1"), Some(retire(100)))
        .await
        .expect("k2");
    db.store
        .rotate_signing_key(&k3, Some("k2"), Some(retire(300)))
        .await
        .expect("k3");
    assert_eq!(
        db.store
            .delete_expired_signing_keys(at(199))
            .await
            .expect("purge"),
        0
    );
    // At its expires_at, k1 goes; k2 (expires at 400) and the current k3 stay.
    assert_eq!(
        db.store
            .delete_expired_signing_keys(at(200))
            .await
            .expect("purge"),
        1
    );
    assert_eq!(kids(&db).await, ["k2", "k3"]);
    assert_eq!(
        db.store
            .delete_expired_signing_keys(at(100_000))
            .await
            .expect("purge"),
        1
    );
    assert_eq!(kids(&db).await, ["k3"]);
}

async fn clients_round_trip(db: TestDatabase) {
    let app = register(&db, "app").await;
    assert_eq!(
        db.store.get_client("app").await.expect("get"),
        Some(app.clone())
    );
    assert_eq!(db.store.get_client("nope").await.expect("get"), None);

    let mut again = client("app");
    again.name = "Impostor".to_owned();
    let err = db
        .store
        .create_client(&again)
        .await
        .expect_err("duplicate id");
    assert_eq!(conflict(&err), &Conflict::ClientExists);
    assert_eq!(
        db.store.get_client("app").await.expect("get"),
        Some(app.clone()),
        "the first registration is untouched"
    );

    let metadata = object(json!({"redirect_uris": ["https://app.example/new"]}));
    let updated = db
        .store
        .update_client("app", "Renamed", &metadata, at(10))
        .await
        .expect("update")
        .expect("app exists");
    let expected = OAuthClient {
        name: "Renamed".to_owned(),
        metadata: metadata.clone(),
        updated_at: at(10),
        ..app.clone()
    };
    assert_eq!(updated, expected);
    assert_eq!(
        db.store.get_client("app").await.expect("get"),
        Some(expected.clone())
    );
    assert_eq!(
        db.store
            .update_client("nope", "x", &metadata, at(10))
            .await
            .expect("update unknown"),
        None
    );

    // Secrets are replaced and removed (a public client has none).
    let new_secret = TokenDigest::of("rotated secret");
    assert!(
        db.store
            .set_client_secret("app", Some(&new_secret), at(20))
            .await
            .expect("set secret")
    );
    let got = db.store.get_client("app").await.expect("get").expect("app");
    assert_eq!(got.secret_digest, Some(new_secret));
    assert_eq!(got.updated_at, at(20));
    assert!(
        db.store
            .set_client_secret("app", None, at(30))
            .await
            .expect("remove secret")
    );
    let got = db.store.get_client("app").await.expect("get").expect("app");
    assert_eq!(got.secret_digest, None);
    assert!(
        !db.store
            .set_client_secret("nope", None, at(30))
            .await
            .expect("unknown client")
    );

    let public = OAuthClient {
        secret_digest: None,
        ..client("public")
    };
    db.store.create_client(&public).await.expect("public");
    assert_eq!(
        db.store.get_client("public").await.expect("get"),
        Some(public)
    );

    assert!(db.store.delete_client("app").await.expect("delete"));
    assert!(!db.store.delete_client("app").await.expect("delete again"));
    assert_eq!(db.store.get_client("app").await.expect("get"), None);
}

async fn client_pages_walk_every_client_once(db: TestDatabase) {
    // Ids compare bytewise on both backends ("B" < "a").
    let ids = ["B-app", "a-app", "b-app", "c-app", "d-app"];
    for id in ids.iter().rev() {
        register(&db, id).await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = db
            .store
            .list_clients(after.as_deref(), 2)
            .await
            .expect("page");
        pages += 1;
        assert!(page.clients.len() <= 2);
        seen.extend(page.clients.iter().map(|c| c.id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);
    let all = db.store.list_clients(None, 100).await.expect("all");
    assert_eq!(all.clients.len(), 5);
    assert_eq!(all.next, None);
    assert_eq!(all.clients[0], client("B-app"));
}

async fn deleting_a_client_deletes_everything_issued_to_it(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "doomed").await;
    register(&db, "kept").await;

    let code_digest = TokenDigest::of("code");
    db.store
        .put_authorization_code(&code_digest, &code("doomed", &ann))
        .await
        .expect("code");
    let doomed_grant = grant("doomed", Some(&ann), None);
    let doomed_token = issue(&db, &doomed_grant, "doomed refresh").await;
    let kept_grant = grant("kept", Some(&ann), None);
    let kept_token = issue(&db, &kept_grant, "kept refresh").await;
    for client_id in ["doomed", "kept"] {
        db.store
            .put_consent(&Consent {
                user_id: ann.id.clone(),
                client_id: client_id.to_owned(),
                scopes: vec!["openid".to_owned()],
                created_at: T0,
                updated_at: T0,
            })
            .await
            .expect("consent");
    }
    let device_digest = put_device(&db, "doomed", "DOOM-DOOM").await;
    db.store
        .put_pushed_request("par-1", &pushed("doomed", at(60)))
        .await
        .expect("pushed");
    assert!(
        db.store
            .record_client_assertion("doomed", "jti-1", at(60))
            .await
            .expect("jti")
    );

    assert!(db.store.delete_client("doomed").await.expect("delete"));

    assert_eq!(
        db.store
            .redeem_authorization_code(&code_digest, at(1))
            .await
            .expect("redeem"),
        CodeRedemption::Unknown
    );
    assert_eq!(grant_of(&db, &doomed_grant.id).await, None);
    assert_eq!(token(&db, &doomed_token).await, None);
    assert_eq!(
        db.store
            .get_consent(&ann.id, "doomed")
            .await
            .expect("consent"),
        None
    );
    assert_eq!(
        poll(&db, &device_digest, "doomed", at(1)).await,
        DevicePoll::Unknown
    );
    assert_eq!(
        db.store
            .find_pending_device_authorization("DOOM-DOOM", at(1))
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        db.store
            .get_pushed_request("par-1", at(1))
            .await
            .expect("pushed"),
        None
    );
    // The client is gone, and so is its assertion record: a new one is refused as unknown.
    assert_not_found(
        db.store
            .record_client_assertion("doomed", "jti-1", at(60))
            .await,
        "assertion of a deleted client",
    );

    // The other client keeps what it was issued.
    assert!(grant_of(&db, &kept_grant.id).await.is_some());
    assert!(token(&db, &kept_token).await.is_some());
    let consents = db.store.list_consents(&ann.id).await.expect("consents");
    assert_eq!(consents.len(), 1);
    assert_eq!(consents[0].client_id, "kept");
}

async fn deleting_a_user_deletes_their_grant_artifacts(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    let bob = create_user(&db, "bob").await;
    register(&db, "app").await;
    let code_digest = TokenDigest::of("code");
    db.store
        .put_authorization_code(&code_digest, &code("app", &ann))
        .await
        .expect("code");
    let ann_grant = grant("app", Some(&ann), None);
    let ann_token = issue(&db, &ann_grant, "ann refresh").await;
    let bob_grant = grant("app", Some(&bob), None);
    let bob_token = issue(&db, &bob_grant, "bob refresh").await;
    db.store
        .put_consent(&Consent {
            user_id: ann.id.clone(),
            client_id: "app".to_owned(),
            scopes: vec!["openid".to_owned()],
            created_at: T0,
            updated_at: T0,
        })
        .await
        .expect("consent");

    assert!(db.store.delete_user(&ann.id).await.expect("delete user"));

    assert_eq!(
        db.store
            .redeem_authorization_code(&code_digest, at(1))
            .await
            .expect("redeem"),
        CodeRedemption::Unknown
    );
    assert_eq!(grant_of(&db, &ann_grant.id).await, None);
    assert_eq!(token(&db, &ann_token).await, None);
    assert!(
        db.store
            .list_consents(&ann.id)
            .await
            .expect("consents")
            .is_empty()
    );
    assert_eq!(
        db.store.user_token_version(&ann.id).await.expect("uv"),
        None
    );
    assert!(grant_of(&db, &bob_grant.id).await.is_some());
    assert!(token(&db, &bob_token).await.is_some());
}

async fn codes_are_redeemed_once(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "app").await;
    let c = code("app", &ann);
    let digest = TokenDigest::of("the code");

    assert_not_found(
        db.store
            .put_authorization_code(&digest, &code("nope", &ann))
            .await,
        "unknown client",
    );
    let mut stranger = c.clone();
    stranger.user_id = "no-such-user".to_owned();
    match db.store.put_authorization_code(&digest, &stranger).await {
        Err(StoreError::NotFound(m)) => assert!(m.contains("user"), "{m}"),
        other => panic!("unknown user: {other:?}"),
    }
    assert_eq!(
        db.store
            .redeem_authorization_code(&digest, at(1))
            .await
            .expect("redeem"),
        CodeRedemption::Unknown,
        "nothing was stored by the refused puts"
    );

    db.store
        .put_authorization_code(&digest, &c)
        .await
        .expect("put code");
    let err = db
        .store
        .put_authorization_code(&digest, &c)
        .await
        .expect_err("same digest twice");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    assert_eq!(
        db.store
            .redeem_authorization_code(&digest, at(1))
            .await
            .expect("redeem"),
        CodeRedemption::Redeemed(c.clone())
    );
    // A replay gets the code back (so the caller can revoke the grant it created).
    assert_eq!(
        db.store
            .redeem_authorization_code(&digest, at(2))
            .await
            .expect("replay"),
        CodeRedemption::AlreadyRedeemed(c.clone())
    );
    assert_eq!(
        db.store
            .redeem_authorization_code(&TokenDigest::of("other"), at(1))
            .await
            .expect("unknown"),
        CodeRedemption::Unknown
    );
}

async fn concurrent_code_redemptions_let_exactly_one_win(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "app").await;
    let digest = TokenDigest::of("raced code");
    db.store
        .put_authorization_code(&digest, &code("app", &ann))
        .await
        .expect("put code");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move { store.redeem_authorization_code(&digest, at(1)).await })
        })
        .collect();
    let mut redeemed = 0;
    for task in tasks {
        match task.await.expect("task").expect("redeem") {
            CodeRedemption::Redeemed(_) => redeemed += 1,
            CodeRedemption::AlreadyRedeemed(_) => {}
            CodeRedemption::Unknown => panic!("the code exists"),
        }
    }
    assert_eq!(redeemed, 1);
}

async fn grants_need_a_known_client_and_an_active_user(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "app").await;

    let orphan = grant("nope", Some(&ann), None);
    match db.store.create_grant(&orphan, None).await {
        Err(StoreError::NotFound(m)) => assert!(m.contains("client"), "{m}"),
        other => panic!("unknown client: {other:?}"),
    }
    let mut stranger = grant("app", Some(&ann), None);
    stranger.user_id = Some("no-such-user".to_owned());
    match db.store.create_grant(&stranger, None).await {
        Err(StoreError::NotFound(m)) => assert!(m.contains("user"), "{m}"),
        other => panic!("unknown user: {other:?}"),
    }
    assert!(
        db.store
            .set_user_status(&ann.id, UserStatus::Disabled, T0)
            .await
            .expect("disable")
    );
    let refused = grant("app", Some(&ann), None);
    let digest = TokenDigest::of("refused refresh");
    let err = db
        .store
        .create_grant(&refused, Some((&digest, &refresh(&refused))))
        .await
        .expect_err("disabled user");
    assert_eq!(conflict(&err), &Conflict::UserDisabled);
    for id in [&orphan.id, &stranger.id, &refused.id] {
        assert_eq!(grant_of(&db, id).await, None, "nothing written");
    }
    assert_eq!(token(&db, &digest).await, None);

    // A client acting on its own behalf needs no user.
    let machine = grant("app", None, None);
    db.store
        .create_grant(&machine, None)
        .await
        .expect("client grant");
    assert_eq!(grant_of(&db, &machine.id).await, Some(machine.clone()));
    let err = db
        .store
        .create_grant(&machine, None)
        .await
        .expect_err("same id twice");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // The first refresh token never outlives its grant.
    assert!(
        db.store
            .set_user_status(&ann.id, UserStatus::Active, T0)
            .await
            .expect("enable")
    );
    let mut short = grant("app", Some(&ann), None);
    short.expires_at = at(100);
    let digest = TokenDigest::of("short refresh");
    db.store
        .create_grant(&short, Some((&digest, &refresh(&short))))
        .await
        .expect("short grant");
    let (stored, with) = db
        .store
        .find_refresh_token(&digest)
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.expires_at, at(100));
    assert_eq!(stored.rotated_at, None);
    assert_eq!(with, short);
}

async fn grants_are_found_by_session_and_revoked_once(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "app").await;
    register(&db, "other").await;
    let live = grant("app", Some(&ann), Some("s1"));
    let live_other_client = grant("other", Some(&ann), Some("s1"));
    let revoked = grant("app", Some(&ann), Some("s1"));
    let mut expired = grant("app", Some(&ann), Some("s1"));
    expired.expires_at = at(100);
    let elsewhere = grant("app", Some(&ann), Some("s2"));
    for g in [&live, &live_other_client, &revoked, &expired, &elsewhere] {
        db.store.create_grant(g, None).await.expect("grant");
    }
    let epoch = db.store.credential_epoch().await.expect("epoch");
    assert!(
        db.store
            .revoke_grant(&revoked.id, at(10))
            .await
            .expect("revoke")
    );
    let moved = db.store.credential_epoch().await.expect("epoch");
    assert!(
        moved > epoch,
        "a revoked grant advances the credential epoch"
    );
    assert!(
        !db.store
            .revoke_grant(&revoked.id, at(20))
            .await
            .expect("revoke again")
    );
    assert_eq!(
        db.store.credential_epoch().await.expect("epoch"),
        moved,
        "revoking nothing moves nothing"
    );
    assert!(
        !db.store
            .revoke_grant("no-such-grant", at(20))
            .await
            .expect("revoke unknown")
    );
    let got = grant_of(&db, &revoked.id).await.expect("revoked grant");
    assert_eq!(got.revoked_at, Some(at(10)), "the first revocation counts");

    let mut found: Vec<String> = db
        .store
        .session_grants("s1", at(200))
        .await
        .expect("session grants")
        .into_iter()
        .map(|g| g.id)
        .collect();
    found.sort();
    // Revoked grants are included (their clients still get a back-channel logout), expired
    // ones and other sessions' are not.
    let mut expected = vec![
        live.id.clone(),
        live_other_client.id.clone(),
        revoked.id.clone(),
    ];
    expected.sort();
    assert_eq!(found, expected);
    assert_eq!(
        db.store
            .session_grants("s1", at(50))
            .await
            .expect("before expiry")
            .len(),
        4
    );
    assert!(
        db.store
            .session_grants("s3", at(0))
            .await
            .expect("none")
            .is_empty()
    );
}

async fn refresh_rotation_grace_and_reuse(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "app").await;
    let g = grant("app", Some(&ann), None);
    let r0 = issue(&db, &g, "r0").await;

    assert_eq!(
        rotate(&db, &r0, "r1", "app", at(10)).await,
        RefreshRotation::Rotated(g.clone())
    );
    let rotated = token(&db, &r0).await.expect("r0 kept");
    assert_eq!(rotated.rotated_at, Some(at(10)));
    let r1 = TokenDigest::of("r1");
    let fresh = token(&db, &r1).await.expect("r1 stored");
    assert_eq!(
        fresh,
        RefreshToken {
            grant_id: g.id.clone(),
            created_at: at(10),
            expires_at: at(10) + Duration::minutes(30),
            rotated_at: None,
            grace_used: false,
        }
    );

    // A concurrent refresh with r0 shortly after: the family lives on, r2 is stored too, and
    // r0's rotation time does not move.
    assert_eq!(
        rotate(&db, &r0, "r2", "app", at(39)).await,
        RefreshRotation::WithinGrace(g.clone())
    );
    assert!(token(&db, &TokenDigest::of("r2")).await.is_some());
    let graced = token(&db, &r0).await.expect("r0");
    assert_eq!(graced.rotated_at, Some(at(10)));
    assert!(graced.grace_used, "the grace is honoured once");

    assert_eq!(
        rotate(&db, &r1, "r3", "app", at(35)).await,
        RefreshRotation::Rotated(g.clone())
    );

    // r0 again, grace long gone: a replay. The whole family is revoked, nothing new stored.
    assert_eq!(
        rotate(&db, &r0, "r4", "app", at(40)).await,
        RefreshRotation::Reused {
            grant_id: g.id.clone()
        },
        "exactly `grace` after the rotation is too late"
    );
    assert_eq!(token(&db, &TokenDigest::of("r4")).await, None);
    let revoked = grant_of(&db, &g.id).await.expect("grant");
    assert_eq!(revoked.revoked_at, Some(at(40)));
    // Every token of the family, including the ones the rotations issued, is dead now.
    for (old, new) in [("r3", "r5"), ("r2", "r6"), ("r1", "r7"), ("r0", "r8")] {
        assert_eq!(
            rotate(&db, &TokenDigest::of(old), new, "app", at(70)).await,
            RefreshRotation::Invalid,
            "{old}"
        );
        assert_eq!(token(&db, &TokenDigest::of(new)).await, None);
    }
    assert_eq!(
        grant_of(&db, &g.id).await.expect("grant").revoked_at,
        Some(at(40)),
        "revoked once"
    );
}

async fn refused_rotations_write_nothing(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "app").await;
    register(&db, "other").await;
    let g = grant("app", Some(&ann), None);
    let r0 = issue(&db, &g, "r0").await;
    let untouched = token(&db, &r0).await.expect("r0");

    // Unknown token.
    assert_eq!(
        rotate(&db, &TokenDigest::of("nope"), "n1", "app", at(10)).await,
        RefreshRotation::Invalid
    );
    // Another client presenting it.
    assert_eq!(
        rotate(&db, &r0, "n2", "other", at(10)).await,
        RefreshRotation::Invalid
    );
    // A disabled user's token, until the user is enabled again.
    db.store
        .set_user_status(&ann.id, UserStatus::Disabled, at(5))
        .await
        .expect("disable");
    assert_eq!(
        rotate(&db, &r0, "n3", "app", at(10)).await,
        RefreshRotation::Invalid
    );
    db.store
        .set_user_status(&ann.id, UserStatus::Active, at(6))
        .await
        .expect("enable");
    // The token at its expiry.
    assert_eq!(
        rotate(&db, &r0, "n4", "app", at(1800)).await,
        RefreshRotation::Invalid
    );
    for new in ["n1", "n2", "n3", "n4"] {
        assert_eq!(token(&db, &TokenDigest::of(new)).await, None, "{new}");
    }
    assert_eq!(token(&db, &r0).await, Some(untouched.clone()));
    assert_eq!(grant_of(&db, &g.id).await, Some(g.clone()));

    // A grant that has expired, even though its token has not.
    let mut short = grant("app", Some(&ann), None);
    short.expires_at = at(100);
    let s0 = TokenDigest::of("s0");
    let mut long_token = refresh(&short);
    long_token.expires_at = at(1000);
    db.store
        .create_grant(&short, Some((&s0, &long_token)))
        .await
        .expect("short grant");
    assert_eq!(
        rotate(&db, &s0, "n5", "app", at(100)).await,
        RefreshRotation::Invalid
    );
    // A revoked grant.
    let revoked = grant("app", Some(&ann), None);
    let v0 = issue(&db, &revoked, "v0").await;
    db.store
        .revoke_grant(&revoked.id, at(10))
        .await
        .expect("revoke");
    assert_eq!(
        rotate(&db, &v0, "n6", "app", at(20)).await,
        RefreshRotation::Invalid
    );
    for new in ["n5", "n6"] {
        assert_eq!(token(&db, &TokenDigest::of(new)).await, None, "{new}");
    }

    // And the untouched token still rotates; the new one never outlives the grant.
    let rotated = db
        .store
        .rotate_refresh_token(
            &r0,
            &TokenDigest::of("n7"),
            at(100_000),
            at(20),
            &rule("app", at(20)),
        )
        .await
        .expect("rotate");
    assert_eq!(rotated, RefreshRotation::Rotated(g.clone()));
    assert_eq!(
        token(&db, &TokenDigest::of("n7"))
            .await
            .expect("n7")
            .expires_at,
        g.expires_at
    );
    // A client acting on its own behalf refreshes without a user.
    let machine = grant("app", None, None);
    let m0 = issue(&db, &machine, "m0").await;
    assert_eq!(
        rotate(&db, &m0, "m1", "app", at(20)).await,
        RefreshRotation::Rotated(machine)
    );
}

async fn concurrent_rotations_of_one_refresh_token_rotate_once_and_grace_once(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "app").await;
    for round in 0..3 {
        let g = grant("app", Some(&ann), None);
        let r0 = issue(&db, &g, &format!("r0 of round {round}")).await;
        let start = Arc::new(Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = db.store.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    let new = TokenDigest::of(&format!("racer {round}-{i}"));
                    start.wait().await;
                    store
                        .rotate_refresh_token(&r0, &new, at(1800), at(10), &rule("app", at(10)))
                        .await
                })
            })
            .collect();
        // Serialised by the row lock: one rotation, one concurrent refresh honoured by the
        // grace (once), one reuse that revokes the family, and the rest find it revoked.
        let (mut rotated, mut within_grace, mut reused, mut invalid) = (0, 0, 0, 0);
        for task in tasks {
            match task.await.expect("task").expect("rotate") {
                RefreshRotation::Rotated(_) => rotated += 1,
                RefreshRotation::WithinGrace(_) => within_grace += 1,
                RefreshRotation::Reused { .. } => reused += 1,
                RefreshRotation::Invalid => invalid += 1,
            }
        }
        assert_eq!(
            (rotated, within_grace, reused, invalid),
            (1, 1, 1, 5),
            "round {round}"
        );
        assert_eq!(token(&db, &r0).await.expect("r0").rotated_at, Some(at(10)));
        assert_eq!(
            grant_of(&db, &g.id).await.expect("grant").revoked_at,
            Some(at(10))
        );
    }
}

async fn revoking_a_users_grants_bumps_their_token_version(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    let bob = create_user(&db, "bob").await;
    register(&db, "app").await;
    register(&db, "other").await;
    assert_eq!(
        db.store.user_token_version(&ann.id).await.expect("uv"),
        Some(0)
    );
    assert_eq!(
        db.store
            .user_token_version("no-such-user")
            .await
            .expect("uv"),
        None
    );

    let a1 = grant("app", Some(&ann), None);
    let a2 = grant("other", Some(&ann), None);
    let mut a_expired = grant("app", Some(&ann), None);
    a_expired.expires_at = at(50);
    let a_revoked = grant("app", Some(&ann), None);
    let b1 = grant("app", Some(&bob), None);
    let t1 = issue(&db, &a1, "a1").await;
    let t2 = issue(&db, &a2, "a2").await;
    db.store
        .create_grant(&a_expired, None)
        .await
        .expect("expired grant");
    db.store
        .create_grant(&a_revoked, None)
        .await
        .expect("revoked grant");
    db.store
        .revoke_grant(&a_revoked.id, at(10))
        .await
        .expect("revoke");
    let tb = issue(&db, &b1, "b1").await;

    assert_eq!(
        db.store
            .revoke_user_grants(&ann.id, at(100))
            .await
            .expect("revoke all"),
        2,
        "only live grants count"
    );
    assert_eq!(
        db.store.user_token_version(&ann.id).await.expect("uv"),
        Some(1)
    );
    assert_eq!(
        db.store.user_token_version(&bob.id).await.expect("uv"),
        Some(0)
    );
    for t in [&t1, &t2] {
        assert_eq!(
            rotate(&db, t, "new", "app", at(110)).await,
            RefreshRotation::Invalid
        );
    }
    assert_eq!(
        grant_of(&db, &a_revoked.id)
            .await
            .expect("grant")
            .revoked_at,
        Some(at(10)),
        "an earlier revocation is kept"
    );
    assert!(matches!(
        rotate(&db, &tb, "b2", "app", at(110)).await,
        RefreshRotation::Rotated(_)
    ));

    // Nothing left to revoke, but the version still moves (logging out everywhere again).
    assert_eq!(
        db.store
            .revoke_user_grants(&ann.id, at(200))
            .await
            .expect("again"),
        0
    );
    assert_eq!(
        db.store.user_token_version(&ann.id).await.expect("uv"),
        Some(2)
    );
    assert_eq!(
        db.store
            .revoke_user_grants("no-such-user", at(200))
            .await
            .expect("unknown user"),
        0
    );
}

async fn consents_round_trip_and_withdrawing_revokes_grants(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    let bob = create_user(&db, "bob").await;
    register(&db, "b-app").await;
    register(&db, "a-app").await;
    assert_eq!(
        db.store.get_consent(&ann.id, "a-app").await.expect("get"),
        None
    );

    let consent = |client_id: &str, scopes: &[&str], at: OffsetDateTime| Consent {
        user_id: ann.id.clone(),
        client_id: client_id.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        created_at: at,
        updated_at: at,
    };
    db.store
        .put_consent(&consent("b-app", &["openid"], T0))
        .await
        .expect("put");
    db.store
        .put_consent(&consent("a-app", &["openid", "email"], T0))
        .await
        .expect("put");
    // Replacing keeps the first grant time.
    db.store
        .put_consent(&consent("a-app", &["openid", "email", "profile"], at(50)))
        .await
        .expect("replace");
    let a = db
        .store
        .get_consent(&ann.id, "a-app")
        .await
        .expect("get")
        .expect("consent");
    assert_eq!(
        a,
        Consent {
            created_at: T0,
            ..consent("a-app", &["openid", "email", "profile"], at(50))
        }
    );
    let listed: Vec<String> = db
        .store
        .list_consents(&ann.id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(listed, ["a-app", "b-app"], "by client id");
    assert!(
        db.store
            .list_consents(&bob.id)
            .await
            .expect("list")
            .is_empty()
    );

    assert_not_found(
        db.store
            .put_consent(&consent("nope", &["openid"], T0))
            .await,
        "unknown client",
    );
    let mut stranger = consent("a-app", &["openid"], T0);
    stranger.user_id = "no-such-user".to_owned();
    assert_not_found(db.store.put_consent(&stranger).await, "unknown user");

    let to_a = grant("a-app", Some(&ann), None);
    let ta = issue(&db, &to_a, "ta").await;
    let to_b = grant("b-app", Some(&ann), None);
    let bobs = grant("a-app", Some(&bob), None);
    for g in [&to_b, &bobs] {
        db.store.create_grant(g, None).await.expect("grant");
    }

    assert!(
        db.store
            .delete_consent(&ann.id, "a-app", at(100))
            .await
            .expect("withdraw")
    );
    assert_eq!(
        db.store.get_consent(&ann.id, "a-app").await.expect("get"),
        None
    );
    assert_eq!(
        grant_of(&db, &to_a.id).await.expect("grant").revoked_at,
        Some(at(100))
    );
    assert_eq!(
        rotate(&db, &ta, "ta2", "a-app", at(110)).await,
        RefreshRotation::Invalid
    );
    assert_eq!(grant_of(&db, &to_b.id).await, Some(to_b.clone()));
    assert_eq!(grant_of(&db, &bobs.id).await, Some(bobs.clone()));
    assert!(
        !db.store
            .delete_consent(&ann.id, "a-app", at(120))
            .await
            .expect("withdraw again")
    );
    // Without a consent, withdrawing still leaves no live grant behind.
    let no_consent = grant("a-app", Some(&ann), None);
    db.store
        .create_grant(&no_consent, None)
        .await
        .expect("grant");
    assert!(
        !db.store
            .delete_consent(&ann.id, "a-app", at(130))
            .await
            .expect("withdraw without consent")
    );
    assert_eq!(
        grant_of(&db, &no_consent.id)
            .await
            .expect("grant")
            .revoked_at,
        Some(at(130))
    );
}

async fn device_authorization_life(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "tv").await;
    register(&db, "other").await;
    let digest = put_device(&db, "tv", "WDJB-MJHT").await;

    assert_eq!(poll(&db, &digest, "tv", at(1)).await, DevicePoll::Pending);
    // Too soon: the interval grows by 5 seconds each time.
    assert_eq!(poll(&db, &digest, "tv", at(3)).await, DevicePoll::SlowDown);
    assert_eq!(poll(&db, &digest, "tv", at(12)).await, DevicePoll::SlowDown);
    assert_eq!(poll(&db, &digest, "tv", at(27)).await, DevicePoll::Pending);
    let pending = db
        .store
        .find_pending_device_authorization("WDJB-MJHT", at(28))
        .await
        .expect("find")
        .expect("pending");
    assert_eq!(
        pending,
        DeviceAuthorization {
            interval_secs: 15,
            last_polled_at: Some(at(27)),
            ..device("tv", "WDJB-MJHT")
        }
    );
    // Another client polling this device code learns nothing and changes nothing.
    assert_eq!(
        poll(&db, &digest, "other", at(28)).await,
        DevicePoll::Unknown
    );

    let detail = object(json!({"auth_time": 1_795_428_000, "amr": ["pwd", "otp"]}));
    assert_not_found(
        db.store
            .decide_device_authorization("WDJB-MJHT", true, "no-such-user", None, &detail, at(29))
            .await,
        "unknown approver",
    );
    assert!(
        db.store
            .decide_device_authorization(
                "WDJB-MJHT",
                true,
                &ann.id,
                Some("session-9"),
                &detail,
                at(30),
            )
            .await
            .expect("approve")
    );
    assert!(
        !db.store
            .decide_device_authorization("WDJB-MJHT", false, &ann.id, None, &detail, at(31))
            .await
            .expect("decide twice"),
        "only a pending authorization is decided"
    );
    assert_eq!(
        db.store
            .find_pending_device_authorization("WDJB-MJHT", at(31))
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        poll(&db, &digest, "other", at(45)).await,
        DevicePoll::Unknown
    );
    let approved = DeviceAuthorization {
        interval_secs: 15,
        last_polled_at: Some(at(45)),
        status: DeviceStatus::Redeemed,
        user_id: Some(ann.id.clone()),
        session_id: Some("session-9".to_owned()),
        detail,
        ..device("tv", "WDJB-MJHT")
    };
    assert_eq!(
        poll(&db, &digest, "tv", at(45)).await,
        DevicePoll::Approved(Box::new(approved))
    );
    assert_eq!(
        poll(&db, &digest, "tv", at(70)).await,
        DevicePoll::AlreadyRedeemed
    );
}

async fn denied_expired_and_unknown_device_codes(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "tv").await;
    let denied = put_device(&db, "tv", "DENY-DENY").await;
    assert!(
        db.store
            .decide_device_authorization("DENY-DENY", false, &ann.id, None, &Map::new(), at(5))
            .await
            .expect("deny")
    );
    assert_eq!(poll(&db, &denied, "tv", at(10)).await, DevicePoll::Denied);
    assert_eq!(poll(&db, &denied, "tv", at(11)).await, DevicePoll::Denied);

    let late = put_device(&db, "tv", "LATE-LATE").await;
    assert_eq!(
        db.store
            .find_pending_device_authorization("LATE-LATE", at(600))
            .await
            .expect("find"),
        None
    );
    assert!(
        !db.store
            .decide_device_authorization("LATE-LATE", true, &ann.id, None, &Map::new(), at(600))
            .await
            .expect("approve expired")
    );
    assert_eq!(poll(&db, &late, "tv", at(600)).await, DevicePoll::Expired);
    // Approved in time but collected too late.
    let slow = put_device(&db, "tv", "SLOW-SLOW").await;
    assert!(
        db.store
            .decide_device_authorization("SLOW-SLOW", true, &ann.id, None, &Map::new(), at(599))
            .await
            .expect("approve")
    );
    assert_eq!(poll(&db, &slow, "tv", at(600)).await, DevicePoll::Expired);

    assert_eq!(
        poll(&db, &TokenDigest::of("no such device code"), "tv", at(1)).await,
        DevicePoll::Unknown
    );
    assert_not_found(
        db.store
            .put_device_authorization(&TokenDigest::of("x"), &device("nope", "NOPE-NOPE"))
            .await,
        "unknown client",
    );
}

async fn concurrent_polls_of_an_approved_device_code_redeem_once(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "tv").await;
    let digest = put_device(&db, "tv", "RACE-RACE").await;
    assert!(
        db.store
            .decide_device_authorization("RACE-RACE", true, &ann.id, None, &Map::new(), at(5))
            .await
            .expect("approve")
    );
    let start = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = db.store.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                store
                    .poll_device_authorization(&digest, at(10), &|a| poll_step(a, "tv", at(10)))
                    .await
            })
        })
        .collect();
    let mut approved = 0;
    for task in tasks {
        match task.await.expect("task").expect("poll") {
            DevicePoll::Approved(_) => approved += 1,
            DevicePoll::AlreadyRedeemed => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(approved, 1);
}

async fn user_codes_are_unique_among_unexpired_authorizations(db: TestDatabase) {
    register(&db, "tv").await;
    let first = put_device(&db, "tv", "SAME-CODE").await;

    // While the first lives (whatever its status), the code is taken and nothing is written.
    let second = TokenDigest::of("second device code");
    let mut clash = device("tv", "SAME-CODE");
    clash.created_at = at(599);
    clash.expires_at = at(1199);
    let err = db
        .store
        .put_device_authorization(&second, &clash)
        .await
        .expect_err("code in use");
    assert_eq!(conflict(&err), &Conflict::UserCodeTaken);
    assert_eq!(poll(&db, &second, "tv", at(600)).await, DevicePoll::Unknown);
    assert_eq!(poll(&db, &first, "tv", at(10)).await, DevicePoll::Pending);

    // Once it has expired, the code is free again and the expired row makes way.
    let mut reuse = device("tv", "SAME-CODE");
    reuse.created_at = at(600);
    reuse.expires_at = at(1200);
    db.store
        .put_device_authorization(&second, &reuse)
        .await
        .expect("expired code reused");
    assert_eq!(poll(&db, &first, "tv", at(601)).await, DevicePoll::Unknown);
    assert_eq!(
        db.store
            .find_pending_device_authorization("SAME-CODE", at(601))
            .await
            .expect("find"),
        Some(reuse)
    );
    // The same device code twice is a conflict too.
    let err = db
        .store
        .put_device_authorization(&second, &device("tv", "ANOTHER-CODE"))
        .await
        .expect_err("device code in use");
    assert_eq!(conflict(&err), &Conflict::DeviceCodeTaken);
}

async fn concurrent_puts_of_one_user_code_let_exactly_one_win(db: TestDatabase) {
    register(&db, "tv").await;
    let start = Arc::new(Barrier::new(6));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = db.store.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let digest = TokenDigest::of(&format!("racing device code {i}"));
                store
                    .put_device_authorization(&digest, &device("tv", "RACE-CODE"))
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => wins += 1,
            Err(StoreError::Conflict(Conflict::UserCodeTaken)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
}

async fn pushed_requests_are_used_once(db: TestDatabase) {
    register(&db, "app").await;
    let request = pushed("app", at(60));
    db.store
        .put_pushed_request("urn-1", &request)
        .await
        .expect("push");
    let err = db
        .store
        .put_pushed_request("urn-1", &request)
        .await
        .expect_err("id in use");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_not_found(
        db.store
            .put_pushed_request("urn-2", &pushed("nope", at(60)))
            .await,
        "unknown client",
    );
    assert_eq!(
        db.store
            .get_pushed_request("urn-2", at(1))
            .await
            .expect("get"),
        None
    );

    assert_eq!(
        db.store
            .get_pushed_request("urn-1", at(59))
            .await
            .expect("get"),
        Some(request.clone())
    );
    assert_eq!(
        db.store
            .get_pushed_request("urn-1", at(60))
            .await
            .expect("get expired"),
        None
    );
    assert!(db.store.consume_pushed_request("urn-1").await.expect("use"));
    assert!(
        !db.store
            .consume_pushed_request("urn-1")
            .await
            .expect("use again")
    );
    assert_eq!(
        db.store
            .get_pushed_request("urn-1", at(1))
            .await
            .expect("get used"),
        None
    );
    assert!(
        !db.store
            .consume_pushed_request("urn-unknown")
            .await
            .expect("unknown")
    );
}

async fn client_assertion_ids_are_recorded_once(db: TestDatabase) {
    register(&db, "app").await;
    register(&db, "other").await;
    let record = |client_id: &'static str, jti: &'static str| {
        let store = db.store.clone();
        async move {
            store
                .record_client_assertion(client_id, jti, at(60))
                .await
                .expect("record")
        }
    };
    assert!(record("app", "jti-1").await);
    assert!(!record("app", "jti-1").await, "replay");
    assert!(record("other", "jti-1").await, "ids are per client");
    assert!(record("app", "jti-2").await);
    assert_not_found(
        db.store
            .record_client_assertion("nope", "jti-1", at(60))
            .await,
        "unknown client",
    );
    // An expired record still counts as used until it is purged.
    assert!(!record("app", "jti-1").await);
    db.store.purge_grants(at(60)).await.expect("purge");
    assert!(record("app", "jti-1").await);

    // Of concurrent uses of one id exactly one is accepted.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move { store.record_client_assertion("app", "raced", at(60)).await })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        if task.await.expect("task").expect("record") {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1);
}

async fn revoked_access_tokens_are_remembered_until_they_expire(db: TestDatabase) {
    assert!(
        !db.store
            .access_token_revoked("at-1")
            .await
            .expect("revoked?")
    );
    let epoch = db.store.credential_epoch().await.expect("epoch");
    db.store
        .revoke_access_token("at-1", at(100))
        .await
        .expect("revoke");
    assert!(
        db.store
            .access_token_revoked("at-1")
            .await
            .expect("revoked?")
    );
    assert!(
        db.store.credential_epoch().await.expect("epoch") > epoch,
        "a revoked access token advances the credential epoch"
    );
    assert!(
        !db.store
            .access_token_revoked("at-2")
            .await
            .expect("revoked?")
    );
    // Revoking again is harmless and never shortens the record.
    db.store
        .revoke_access_token("at-1", at(50))
        .await
        .expect("revoke again");
    db.store.purge_grants(at(60)).await.expect("purge");
    assert!(
        db.store
            .access_token_revoked("at-1")
            .await
            .expect("revoked?")
    );
    db.store.purge_grants(at(100)).await.expect("purge");
    assert!(
        !db.store
            .access_token_revoked("at-1")
            .await
            .expect("revoked?")
    );
}

async fn purge_removes_only_dead_rows(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "app").await;
    let now = at(200);

    // Codes: one expired, one still there (redeemed, kept so that a replay is recognised).
    let dead_code = TokenDigest::of("dead code");
    db.store
        .put_authorization_code(&dead_code, &code("app", &ann))
        .await
        .expect("code");
    let mut long_lived = code("app", &ann);
    long_lived.expires_at = at(300);
    let live_code = TokenDigest::of("live code");
    db.store
        .put_authorization_code(&live_code, &long_lived)
        .await
        .expect("code");
    assert!(matches!(
        db.store
            .redeem_authorization_code(&live_code, at(1))
            .await
            .expect("redeem"),
        CodeRedemption::Redeemed(_)
    ));

    // Grants: a live one whose first token (expiring at 100) was rotated, a revoked one and an
    // expired one, each with a token.
    let live = grant("app", Some(&ann), None);
    let mut first = refresh(&live);
    first.expires_at = at(100);
    let r_old = TokenDigest::of("r old");
    db.store
        .create_grant(&live, Some((&r_old, &first)))
        .await
        .expect("live grant");
    assert!(matches!(
        rotate(&db, &r_old, "r new", "app", at(50)).await,
        RefreshRotation::Rotated(_)
    ));
    let r_new = TokenDigest::of("r new");
    let revoked = grant("app", Some(&ann), None);
    let r_revoked = issue(&db, &revoked, "r revoked").await;
    db.store
        .revoke_grant(&revoked.id, at(10))
        .await
        .expect("revoke");
    let mut expired = grant("app", Some(&ann), None);
    expired.expires_at = at(100);
    let r_expired = issue(&db, &expired, "r expired").await;

    // Device authorizations, pushed requests, assertion ids, revoked access tokens.
    let live_device = put_device(&db, "app", "LIVE-LIVE").await;
    let mut gone = device("app", "GONE-GONE");
    gone.expires_at = at(100);
    let dead_device = TokenDigest::of("dead device");
    db.store
        .put_device_authorization(&dead_device, &gone)
        .await
        .expect("device");
    for (id, expires) in [
        ("p-live", at(300)),
        ("p-dead", at(100)),
        ("p-used", at(300)),
    ] {
        db.store
            .put_pushed_request(id, &pushed("app", expires))
            .await
            .expect("pushed");
    }
    assert!(
        db.store
            .consume_pushed_request("p-used")
            .await
            .expect("use")
    );
    for (jti, expires) in [("j-live", at(300)), ("j-dead", at(100))] {
        db.store
            .record_client_assertion("app", jti, expires)
            .await
            .expect("jti");
        db.store
            .revoke_access_token(jti, expires)
            .await
            .expect("revoke access token");
    }

    // 1 code, 3 refresh tokens, 2 grants, 1 device, 2 pushed requests, 1 jti, 1 access token.
    assert_eq!(db.store.purge_grants(now).await.expect("purge"), 11);
    assert_eq!(db.store.purge_grants(now).await.expect("purge again"), 0);

    assert_eq!(
        db.store
            .redeem_authorization_code(&dead_code, now)
            .await
            .expect("redeem"),
        CodeRedemption::Unknown
    );
    assert!(matches!(
        db.store
            .redeem_authorization_code(&live_code, now)
            .await
            .expect("replay"),
        CodeRedemption::AlreadyRedeemed(_)
    ));
    assert_eq!(grant_of(&db, &live.id).await, Some(live.clone()));
    assert!(token(&db, &r_new).await.is_some());
    assert_eq!(token(&db, &r_old).await, None);
    for (id, t) in [(&revoked.id, &r_revoked), (&expired.id, &r_expired)] {
        assert_eq!(grant_of(&db, id).await, None);
        assert_eq!(token(&db, t).await, None);
    }
    assert_eq!(
        poll(&db, &live_device, "app", now).await,
        DevicePoll::Pending
    );
    assert_eq!(
        poll(&db, &dead_device, "app", now).await,
        DevicePoll::Unknown
    );
    assert!(
        db.store
            .get_pushed_request("p-live", now)
            .await
            .expect("get")
            .is_some()
    );
    assert!(
        !db.store
            .consume_pushed_request("p-dead")
            .await
            .expect("purged")
    );
    assert!(
        !db.store
            .record_client_assertion("app", "j-live", at(300))
            .await
            .expect("still a replay")
    );
    assert!(
        db.store
            .record_client_assertion("app", "j-dead", at(300))
            .await
            .expect("free again")
    );
    assert!(db.store.access_token_revoked("j-live").await.expect("live"));
    assert!(!db.store.access_token_revoked("j-dead").await.expect("gone"));
}

async fn bad_input_is_refused_and_writes_nothing(db: TestDatabase) {
    let ann = create_user(&db, "ann").await;
    register(&db, "app").await;
    let invalid = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::InvalidInput(_)) => {}
        other => panic!("{what}: expected invalid input, got {other:?}"),
    };
    let long = "x".repeat(2000);
    let huge = object(json!({"blob": "x".repeat(70_000)}));

    // Signing keys.
    for (kid, sealed) in [("", vec![1]), ("k", vec![]), ("k", vec![0; 17 * 1024])] {
        let mut key = signing_key(kid, "EdDSA", T0);
        key.sealed_private_key = sealed;
        invalid(
            db.store
                .rotate_signing_key(&key, None, None)
                .await
                .map(drop),
            "signing key",
        );
    }
    let mut key = signing_key("k", "EdDSA", T0);
    key.public_jwk = huge.clone();
    invalid(
        db.store
            .rotate_signing_key(&key, None, None)
            .await
            .map(drop),
        "huge JWK",
    );
    let backwards = KeyRetirement {
        retires_at: at(100),
        expires_at: at(50),
    };
    invalid(
        db.store
            .rotate_signing_key(&signing_key("k", "EdDSA", T0), None, Some(backwards))
            .await
            .map(drop),
        "expiry before retirement",
    );
    assert!(kids(&db).await.is_empty());

    // Clients.
    for (id, name) in [
        ("", "name"),
        ("id", ""),
        ("a\0b", "name"),
        (long.as_str(), "n"),
    ] {
        let mut c = client("x");
        c.id = id.to_owned();
        c.name = name.to_owned();
        invalid(db.store.create_client(&c).await, "client");
    }
    let mut c = client("big");
    c.metadata = huge.clone();
    invalid(db.store.create_client(&c).await, "huge metadata");
    invalid(
        db.store
            .update_client("app", "", &Map::new(), T0)
            .await
            .map(drop),
        "empty name",
    );
    invalid(db.store.get_client("").await.map(drop), "empty id");
    invalid(
        db.store.list_clients(None, 0).await.map(drop),
        "zero page size",
    );
    invalid(
        db.store.list_clients(Some(""), 10).await.map(drop),
        "empty after",
    );
    let page = db.store.list_clients(None, 10).await.expect("list");
    assert_eq!(page.clients, vec![client("app")]);

    // Codes and grants.
    let digest = TokenDigest::of("code");
    let mut c = code("app", &ann);
    c.redirect_uri = String::new();
    invalid(
        db.store.put_authorization_code(&digest, &c).await,
        "empty redirect URI",
    );
    let mut c = code("app", &ann);
    c.detail = huge.clone();
    invalid(
        db.store.put_authorization_code(&digest, &c).await,
        "huge detail",
    );
    assert_eq!(
        db.store
            .redeem_authorization_code(&digest, T0)
            .await
            .expect("redeem"),
        CodeRedemption::Unknown
    );
    let g = grant("app", Some(&ann), None);
    let foreign = refresh(&grant("app", Some(&ann), None));
    invalid(
        db.store
            .create_grant(&g, Some((&TokenDigest::of("r"), &foreign)))
            .await,
        "refresh token of another grant",
    );
    let mut wide = grant("app", Some(&ann), None);
    wide.scope = "s ".repeat(3000);
    invalid(db.store.create_grant(&wide, None).await, "huge scope");
    assert_eq!(grant_of(&db, &g.id).await, None);
    assert_eq!(grant_of(&db, &wide.id).await, None);
    let d = TokenDigest::of("r");
    invalid(
        db.store
            .rotate_refresh_token(&d, &d, at(10), T0, &rule("app", T0))
            .await
            .map(drop),
        "same digest",
    );
    invalid(
        db.store.session_grants("", T0).await.map(drop),
        "empty session",
    );
    invalid(
        db.store.revoke_user_grants("", T0).await.map(drop),
        "empty user",
    );

    // Consents.
    let mut consent = Consent {
        user_id: ann.id.clone(),
        client_id: "app".to_owned(),
        scopes: vec!["openid".to_owned(), "openid".to_owned()],
        created_at: T0,
        updated_at: T0,
    };
    invalid(db.store.put_consent(&consent).await, "repeated scope");
    consent.scopes = vec![String::new()];
    invalid(db.store.put_consent(&consent).await, "empty scope");
    assert!(
        db.store
            .list_consents(&ann.id)
            .await
            .expect("list")
            .is_empty()
    );

    // Device authorizations.
    let mut dev = device("app", "CODE-CODE");
    dev.interval_secs = 0;
    invalid(
        db.store
            .put_device_authorization(&TokenDigest::of("dev"), &dev)
            .await,
        "zero interval",
    );
    invalid(
        db.store
            .put_device_authorization(&TokenDigest::of("dev"), &device("app", ""))
            .await,
        "empty user code",
    );
    assert_eq!(
        db.store
            .find_pending_device_authorization("CODE-CODE", T0)
            .await
            .expect("find"),
        None
    );
    invalid(
        db.store
            .decide_device_authorization("CODE-CODE", true, "", None, &Map::new(), T0)
            .await
            .map(drop),
        "empty approver",
    );

    // Pushed requests, assertion ids, access tokens.
    invalid(
        db.store
            .put_pushed_request("", &pushed("app", at(60)))
            .await,
        "empty request id",
    );
    let mut big = pushed("app", at(60));
    big.parameters = huge;
    invalid(
        db.store.put_pushed_request("urn", &big).await,
        "huge parameters",
    );
    assert_eq!(
        db.store.get_pushed_request("urn", T0).await.expect("get"),
        None
    );
    invalid(
        db.store
            .record_client_assertion("app", "", at(60))
            .await
            .map(drop),
        "empty jti",
    );
    invalid(
        db.store.revoke_access_token("a\0b", at(60)).await,
        "NUL jti",
    );
    invalid(
        db.store.revoke_access_token(&long, at(60)).await,
        "long jti",
    );
}
