//! The client registry on real databases (SQLite and PostgreSQL), negatives first: invalid
//! registrations write nothing, only secret digests are stored, rotation kills the old secret,
//! and client authentication insists on the registered method without telling an unknown
//! client id from a wrong secret.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use time::macros::datetime;
use trustgate_core::{Clock, ManualClock, Secret, TokenDigest};
use trustgate_oauth::clients::{
    AuthMethod, Client, ClientCacheConfig, ClientError, ClientRegistration, ClientRegistry,
    GrantType, JWT_BEARER_ASSERTION_TYPE, PresentedCredentials,
};
use trustgate_oauth::{ErrorCode, OAuthError};
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_tokens::{Algorithm, KeyManager};

const TOKEN_ENDPOINT: &str = "https://id.example.com/oauth2/token";
const ISSUER: &str = "https://id.example.com";
const AUDIENCES: &[&str] = &[TOKEN_ENDPOINT, ISSUER];

fn clock() -> ManualClock {
    ManualClock::new(datetime!(2026-03-01 12:00 UTC))
}

fn registry(db: &TestDatabase, clock: &ManualClock) -> ClientRegistry {
    ClientRegistry::new(db.store.clone(), Arc::new(clock.clone()))
}

fn web_app(method: AuthMethod) -> ClientRegistration {
    ClientRegistration {
        redirect_uris: vec!["https://app.example.com/cb".into()],
        auth_method: method,
        ..ClientRegistration::named("Web App")
    }
}

fn basic(client_id: &str, secret: &str) -> PresentedCredentials {
    PresentedCredentials::Basic {
        client_id: client_id.into(),
        secret: Secret::new(secret),
    }
}

fn post(client_id: &str, secret: &str) -> PresentedCredentials {
    PresentedCredentials::Post {
        client_id: client_id.into(),
        secret: Secret::new(secret),
    }
}

fn public(client_id: &str) -> PresentedCredentials {
    PresentedCredentials::None {
        client_id: client_id.into(),
    }
}

async fn refused(registry: &ClientRegistry, presented: &PresentedCredentials) -> OAuthError {
    let err = registry
        .authenticate(presented, AUDIENCES)
        .await
        .expect_err("must be refused");
    assert_eq!(err.code, ErrorCode::InvalidClient, "{presented:?}: {err}");
    err
}

test_on_both_backends!(
    tls_client_auth_matches_the_registered_certificate_name_only,
    tls_client_auth_matches_dns_ip_and_email_sans,
    self_signed_tls_client_auth_matches_a_registered_certificate,
    invalid_registrations_write_nothing,
    create_stores_only_the_secret_digest,
    list_pages_by_id,
    update_replaces_and_manages_the_secret,
    rotation_invalidates_the_old_secret,
    delete_removes_the_client,
    secret_authentication,
    method_must_be_the_registered_one,
    public_clients_present_only_their_id,
    private_key_jwt_assertions,
    cached_clients_follow_every_change,
    cache_is_bypassed_when_the_epoch_is_stale,
);

async fn invalid_registrations_write_nothing(db: TestDatabase) {
    let clock = clock();
    let registry = registry(&db, &clock);
    for (reg, code) in [
        (ClientRegistration::named(""), "invalid_client_name"),
        (
            ClientRegistration::named("No redirect"),
            "invalid_grant_types",
        ),
        (
            ClientRegistration {
                redirect_uris: vec!["http://app.example.com/cb".into()],
                ..ClientRegistration::named("Plain http")
            },
            "invalid_redirect_uri",
        ),
        (
            ClientRegistration {
                grant_types: vec![GrantType::ClientCredentials],
                auth_method: AuthMethod::None,
                ..ClientRegistration::named("Public service")
            },
            "invalid_grant_types",
        ),
        (
            ClientRegistration {
                grant_types: vec![GrantType::ClientCredentials],
                auth_method: AuthMethod::PrivateKeyJwt,
                ..ClientRegistration::named("No keys")
            },
            "invalid_jwks",
        ),
    ] {
        match registry.create(reg).await {
            Err(ClientError::Invalid { code: got, .. }) => assert_eq!(got, code),
            other => panic!("expected {code}, got {other:?}"),
        }
    }
    let (clients, next) = registry.list(None, 100).await.expect("list");
    assert!(clients.is_empty() && next.is_none());
}

async fn create_stores_only_the_secret_digest(db: TestDatabase) {
    let clock = clock();
    let registry = registry(&db, &clock);
    let (client, secret) = registry
        .create(web_app(AuthMethod::ClientSecretBasic))
        .await
        .expect("create");
    let secret = secret.expect("a secret for client_secret_basic");
    assert!(client.id.starts_with("tgc_"));
    assert!(secret.expose().starts_with("tgcs_"));
    assert!(client.has_secret);
    assert_eq!(client.created_at, datetime!(2026-03-01 12:00 UTC));
    assert_eq!(
        client.grant_types,
        [GrantType::AuthorizationCode, GrantType::RefreshToken]
    );

    let stored = db
        .store
        .get_client(&client.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.secret_digest, Some(TokenDigest::of(secret.expose())));
    let everything = format!("{stored:?} {}", Value::Object(stored.metadata.clone()));
    assert!(
        !everything.contains(secret.expose()),
        "secret stored in the clear"
    );
    let shown = serde_json::to_string(&client).expect("json");
    assert!(!shown.contains(secret.expose()));

    assert_eq!(
        registry.get(&client.id).await.expect("get"),
        Some(client.clone())
    );
    assert_eq!(registry.get("tgc_unknown").await.expect("get"), None);

    // Methods without a secret get none.
    for method in [AuthMethod::None] {
        let (c, s) = registry.create(web_app(method)).await.expect("create");
        assert!(s.is_none() && !c.has_secret, "{method}");
    }
    let (c, s) = registry
        .create(web_app(AuthMethod::ClientSecretPost))
        .await
        .expect("create");
    assert!(s.is_some() && c.has_secret);
}

async fn list_pages_by_id(db: TestDatabase) {
    let clock = clock();
    let registry = registry(&db, &clock);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            registry
                .create(web_app(AuthMethod::None))
                .await
                .expect("create")
                .0
                .id,
        );
    }
    ids.sort();
    let (first, next) = registry.list(None, 2).await.expect("page 1");
    assert_eq!(
        first.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        ids[..2]
    );
    let next = next.expect("more");
    let (second, last) = registry.list(Some(&next), 2).await.expect("page 2");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, ids[2]);
    assert!(last.is_none());
    // A limit of 0 is clamped to 1.
    assert_eq!(registry.list(None, 0).await.expect("clamped").0.len(), 1);
}

async fn update_replaces_and_manages_the_secret(db: TestDatabase) {
    let clock = clock();
    let registry = registry(&db, &clock);
    let (client, secret) = registry
        .create(web_app(AuthMethod::ClientSecretBasic))
        .await
        .expect("create");
    let secret = secret.expect("secret");

    // An invalid update changes nothing.
    let mut bad = client.registration();
    bad.redirect_uris = vec!["https://app.example.com/*".into()];
    assert!(matches!(
        registry.update(&client.id, bad).await,
        Err(ClientError::Invalid {
            code: "invalid_redirect_uri",
            ..
        })
    ));
    assert_eq!(
        registry.get(&client.id).await.expect("get"),
        Some(client.clone())
    );
    assert!(matches!(
        registry.update("tgc_unknown", client.registration()).await,
        Err(ClientError::NotFound)
    ));

    // Same method: the secret stays.
    clock.advance(time::Duration::minutes(1));
    let mut reg = client.registration();
    reg.name = "Renamed".into();
    reg.scopes = vec!["openid".into(), "api".into()];
    reg.access_token_ttl_secs = Some(300);
    let (updated, issued) = registry.update(&client.id, reg).await.expect("update");
    assert!(issued.is_none());
    assert_eq!(updated.name, "Renamed");
    assert_eq!(updated.access_token_ttl, time::Duration::minutes(5));
    assert!(updated.allows_scope("api") && !updated.allows_scope("email"));
    assert!(updated.updated_at > updated.created_at);
    registry
        .authenticate(&basic(&client.id, secret.expose()), AUDIENCES)
        .await
        .expect("the secret still works");

    // Switching to a public client removes the digest.
    let mut reg = updated.registration();
    reg.auth_method = AuthMethod::None;
    let (public_client, issued) = registry.update(&client.id, reg).await.expect("to none");
    assert!(issued.is_none() && !public_client.has_secret);
    let stored = db
        .store
        .get_client(&client.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.secret_digest, None);
    refused(&registry, &basic(&client.id, secret.expose())).await;

    // Switching back to a secret method issues a new secret.
    let mut reg = public_client.registration();
    reg.auth_method = AuthMethod::ClientSecretPost;
    let (confidential, issued) = registry.update(&client.id, reg).await.expect("to post");
    let issued = issued.expect("a new secret");
    assert_ne!(issued, secret);
    assert!(confidential.has_secret);
    registry
        .authenticate(&post(&client.id, issued.expose()), AUDIENCES)
        .await
        .expect("new secret works");
    refused(&registry, &post(&client.id, secret.expose())).await;
}

async fn rotation_invalidates_the_old_secret(db: TestDatabase) {
    let clock = clock();
    let registry = registry(&db, &clock);
    let (client, old) = registry
        .create(web_app(AuthMethod::ClientSecretBasic))
        .await
        .expect("create");
    let old = old.expect("secret");
    let new = registry.rotate_secret(&client.id).await.expect("rotate");
    assert_ne!(old, new);
    refused(&registry, &basic(&client.id, old.expose())).await;
    registry
        .authenticate(&basic(&client.id, new.expose()), AUDIENCES)
        .await
        .expect("new secret");
    let stored = db
        .store
        .get_client(&client.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.secret_digest, Some(TokenDigest::of(new.expose())));

    assert!(matches!(
        registry.rotate_secret("tgc_unknown").await,
        Err(ClientError::NotFound)
    ));
    let (public_client, _) = registry
        .create(web_app(AuthMethod::None))
        .await
        .expect("public");
    let err = registry
        .rotate_secret(&public_client.id)
        .await
        .expect_err("no secret");
    assert!(matches!(err, ClientError::NoSecret(AuthMethod::None)));
    assert_eq!(err.http_status(), 409);
}

async fn delete_removes_the_client(db: TestDatabase) {
    let clock = clock();
    let registry = registry(&db, &clock);
    let (client, secret) = registry
        .create(web_app(AuthMethod::ClientSecretBasic))
        .await
        .expect("create");
    let secret = secret.expect("secret");
    assert!(registry.delete(&client.id).await.expect("delete"));
    assert!(!registry.delete(&client.id).await.expect("again"));
    assert_eq!(registry.get(&client.id).await.expect("get"), None);
    refused(&registry, &basic(&client.id, secret.expose())).await;
}

async fn secret_authentication(db: TestDatabase) {
    let clock = clock();
    let registry = registry(&db, &clock);
    let (basic_client, basic_secret) = registry
        .create(web_app(AuthMethod::ClientSecretBasic))
        .await
        .expect("basic");
    let basic_secret = basic_secret.expect("secret");
    let (post_client, post_secret) = registry
        .create(web_app(AuthMethod::ClientSecretPost))
        .await
        .expect("post");
    let post_secret = post_secret.expect("secret");

    let got = registry
        .authenticate(&basic(&basic_client.id, basic_secret.expose()), AUDIENCES)
        .await
        .expect("basic");
    assert_eq!(got.id, basic_client.id);
    let got = registry
        .authenticate(&post(&post_client.id, post_secret.expose()), AUDIENCES)
        .await
        .expect("post");
    assert_eq!(got.id, post_client.id);

    // Wrong secret, another client's secret, unknown id: one and the same answer.
    let wrong = refused(&registry, &basic(&basic_client.id, "tgcs_wrong")).await;
    let crossed = refused(&registry, &basic(&basic_client.id, post_secret.expose())).await;
    let unknown = refused(&registry, &basic("tgc_unknown", basic_secret.expose())).await;
    let empty = refused(&registry, &basic(&basic_client.id, "")).await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, crossed);
    assert_eq!(wrong, empty);
    assert!(!wrong.description.contains("unknown") && !wrong.description.contains("exist"));
}

async fn method_must_be_the_registered_one(db: TestDatabase) {
    let clock = clock();
    let registry = registry(&db, &clock);
    let (basic_client, basic_secret) = registry
        .create(web_app(AuthMethod::ClientSecretBasic))
        .await
        .expect("basic");
    let basic_secret = basic_secret.expect("secret");
    let (post_client, post_secret) = registry
        .create(web_app(AuthMethod::ClientSecretPost))
        .await
        .expect("post");
    let post_secret = post_secret.expect("secret");

    // The right secret by the wrong method.
    let a = refused(&registry, &post(&basic_client.id, basic_secret.expose())).await;
    let b = refused(&registry, &basic(&post_client.id, post_secret.expose())).await;
    let unknown = refused(&registry, &basic("tgc_unknown", "x")).await;
    assert_eq!(a, unknown);
    assert_eq!(b, unknown);
    // A confidential client presenting only its id.
    assert_eq!(refused(&registry, &public(&basic_client.id)).await, unknown);
    assert_eq!(refused(&registry, &public(&post_client.id)).await, unknown);
    // A secret client presenting an assertion.
    refused(
        &registry,
        &PresentedCredentials::Assertion {
            client_id: Some(basic_client.id.clone()),
            assertion_type: trustgate_oauth::clients::JWT_BEARER_ASSERTION_TYPE.into(),
            assertion: "e30.e30.sig".into(),
        },
    )
    .await;
}

async fn public_clients_present_only_their_id(db: TestDatabase) {
    let clock = clock();
    let registry = registry(&db, &clock);
    let (client, secret) = registry
        .create(ClientRegistration {
            application_type: trustgate_oauth::clients::ApplicationType::Native,
            redirect_uris: vec!["com.example.app:/cb".into()],
            ..web_app(AuthMethod::None)
        })
        .await
        .expect("public");
    assert!(secret.is_none());
    let got = registry
        .authenticate(&public(&client.id), AUDIENCES)
        .await
        .expect("public");
    assert!(got.is_public());
    let unknown = refused(&registry, &public("tgc_unknown")).await;
    // A public client presenting a secret (whatever it is) is refused.
    assert_eq!(refused(&registry, &basic(&client.id, "")).await, unknown);
    assert_eq!(
        refused(&registry, &basic(&client.id, "anything")).await,
        unknown
    );
    assert_eq!(
        refused(&registry, &post(&client.id, "anything")).await,
        unknown
    );
}

/// A key manager standing in for a client's (or an attacker's) own keys, on a database of its own.
async fn own_keys(clock: &ManualClock) -> (TestDatabase, KeyManager) {
    let db = TestDatabase::sqlite().await;
    let keys = crate::support::signing_keys(db.store.clone(), clock).await;
    (db, keys)
}

fn assertion(client_id: Option<&str>, jwt: String) -> PresentedCredentials {
    PresentedCredentials::Assertion {
        client_id: client_id.map(str::to_owned),
        assertion_type: JWT_BEARER_ASSERTION_TYPE.into(),
        assertion: jwt,
    }
}

/// A JWT with this header and these claims and a made-up signature.
fn unsigned(header: &Value, claims: &Value, signature: &str) -> String {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"));
    format!("{}.{}.{signature}", b64(header), b64(claims))
}

async fn private_key_jwt_assertions(db: TestDatabase) {
    let clock = clock();
    let registry = registry(&db, &clock);
    let (_client_db, client_keys) = own_keys(&clock).await;
    let (_attacker_db, attacker_keys) = own_keys(&clock).await;
    let (client, secret) = registry
        .create(ClientRegistration {
            grant_types: vec![GrantType::ClientCredentials],
            auth_method: AuthMethod::PrivateKeyJwt,
            jwks: Some(client_keys.jwks()),
            ..ClientRegistration::named("Signed service")
        })
        .await
        .expect("register");
    assert!(secret.is_none() && !client.has_secret);
    let id = client.id.clone();
    let now = clock.now().unix_timestamp();
    let claims = |jti: &str| json!({"iss": id, "sub": id, "aud": TOKEN_ENDPOINT, "exp": now + 300, "iat": now, "jti": jti});
    let with = |jti: &str, name: &str, value: Value| {
        let mut c = claims(jti);
        match value {
            Value::Null => {
                c.as_object_mut().expect("object").remove(name);
            }
            v => c[name] = v,
        }
        c
    };
    let sign =
        |keys: &KeyManager, alg: Algorithm, c: &Value| keys.sign(alg, "JWT", c).expect("sign");
    let ok = |presented: PresentedCredentials| {
        let registry = registry.clone();
        async move { registry.authenticate(&presented, AUDIENCES).await }
    };

    // Every algorithm of the client's JWKS works, with the form's client_id or without it.
    for (i, alg) in Algorithm::all().into_iter().enumerate() {
        let jwt = sign(&client_keys, alg, &claims(&format!("ok-{i}")));
        let got: Client = ok(assertion(Some(&id), jwt))
            .await
            .expect("valid assertion");
        assert_eq!(got.id, id);
    }
    let jwt = sign(&client_keys, Algorithm::ES256, &claims("no-form-id"));
    ok(assertion(None, jwt)).await.expect("client found by iss");
    let jwt = sign(
        &client_keys,
        Algorithm::ES256,
        &with("issuer-aud", "aud", json!([ISSUER])),
    );
    ok(assertion(Some(&id), jwt))
        .await
        .expect("the issuer as aud");

    // A jti is accepted once.
    let jwt = sign(&client_keys, Algorithm::EdDSA, &claims("once"));
    ok(assertion(Some(&id), jwt.clone()))
        .await
        .expect("first use");
    let err = refused(&registry, &assertion(Some(&id), jwt)).await;
    assert!(err.description.contains("jti"), "{err}");

    // What an unknown client id gets: the reference answer for unverifiable assertions.
    let unknown = refused(
        &registry,
        &assertion(
            None,
            sign(&client_keys, Algorithm::ES256, &json!({"iss": "tgc_unknown", "sub": "tgc_unknown", "aud": TOKEN_ENDPOINT, "exp": now + 300, "jti": "u"})),
        ),
    )
    .await;

    // Not signed by a key of the client's JWKS, or not signed at all: same answer as unknown.
    let kid = client_keys.list()[0].kid.clone();
    for (name, jwt) in [
        (
            "attacker's key",
            sign(&attacker_keys, Algorithm::ES256, &claims("burnt")),
        ),
        (
            "alg none",
            unsigned(&json!({"alg": "none", "kid": kid}), &claims("n"), ""),
        ),
        (
            "HS256 with the client's kid",
            unsigned(
                &json!({"alg": "HS256", "kid": kid, "typ": "JWT"}),
                &claims("h"),
                "c2ln",
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
        ("bad signature", {
            let good = sign(&client_keys, Algorithm::ES256, &claims("s"));
            let (rest, _) = good.rsplit_once('.').expect("jws");
            format!("{rest}.AAAA")
        }),
        ("alg swapped to another of ours", {
            let good = sign(&client_keys, Algorithm::ES256, &claims("swap"));
            let mut parts = good.splitn(2, '.');
            let header: Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(parts.next().expect("header"))
                    .expect("b64"),
            )
            .expect("json");
            let mut header = header;
            header["alg"] = json!("RS256");
            format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("json")),
                parts.next().expect("rest")
            )
        }),
    ] {
        let err = refused(&registry, &assertion(Some(&id), jwt)).await;
        assert_eq!(err, unknown, "{name}");
    }
    // A refused assertion does not use up its jti.
    let jwt = sign(&client_keys, Algorithm::ES256, &claims("burnt"));
    ok(assertion(Some(&id), jwt))
        .await
        .expect("jti of a refused forgery still usable");

    // Signed by the client but breaking a claim rule.
    for (name, c) in [
        (
            "wrong aud",
            with("a", "aud", json!("https://elsewhere.example/token")),
        ),
        ("no aud", with("a2", "aud", Value::Null)),
        ("expired", with("e", "exp", json!(now - 3600))),
        ("no exp", with("e2", "exp", Value::Null)),
        (
            "exp too far ahead",
            with("f", "exp", json!(now + 11 * 60 + 61)),
        ),
        ("not yet valid", with("nb", "nbf", json!(now + 600))),
        ("no jti", with("x", "jti", Value::Null)),
        ("empty jti", with("x", "jti", json!(""))),
        (
            "sub is not the client",
            with("s", "sub", json!("someone-else")),
        ),
        (
            "iss is not the client",
            with("i", "iss", json!("tgc_someone")),
        ),
    ] {
        let jwt = sign(&client_keys, Algorithm::ES256, &c);
        let err = refused(&registry, &assertion(Some(&id), jwt)).await;
        // The signature held: the client may learn which rule it broke.
        assert_ne!(err, unknown, "{name}");
    }

    // The form's client_id must be the assertion's client.
    let (other, _) = registry
        .create(ClientRegistration {
            grant_types: vec![GrantType::ClientCredentials],
            auth_method: AuthMethod::PrivateKeyJwt,
            jwks: Some(attacker_keys.jwks()),
            ..ClientRegistration::named("Other signed service")
        })
        .await
        .expect("register other");
    let jwt = sign(&client_keys, Algorithm::ES256, &claims("mismatch"));
    refused(&registry, &assertion(Some(&other.id), jwt)).await;

    // Only the JWT bearer assertion type.
    let jwt = sign(&client_keys, Algorithm::ES256, &claims("type"));
    refused(
        &registry,
        &PresentedCredentials::Assertion {
            client_id: Some(id.clone()),
            assertion_type: "urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into(),
            assertion: jwt,
        },
    )
    .await;

    // The registered method only: no secret, no bare id; and secret clients cannot assert.
    assert_eq!(refused(&registry, &basic(&id, "")).await, unknown);
    assert_eq!(refused(&registry, &post(&id, "x")).await, unknown);
    assert_eq!(refused(&registry, &public(&id)).await, unknown);
    let (secret_client, _) = registry
        .create(web_app(AuthMethod::ClientSecretBasic))
        .await
        .expect("secret client");
    let jwt = sign(
        &client_keys,
        Algorithm::ES256,
        &json!({"iss": secret_client.id, "sub": secret_client.id, "aud": TOKEN_ENDPOINT, "exp": now + 300, "jti": "sc"}),
    );
    assert_eq!(
        refused(&registry, &assertion(Some(&secret_client.id), jwt)).await,
        unknown
    );
}

/// A replica's registry with the client cache, whose epoch is read only when the test says so
/// (`sync`), so what the cache serves between two polls is deterministic.
fn cached_replica(db: &TestDatabase, clock: &ManualClock) -> ClientRegistry {
    let hour = std::time::Duration::from_secs(3600);
    registry(db, clock).with_cache(
        db.store.clone(),
        ClientCacheConfig {
            epoch_poll: hour,
            stale_after: hour,
            ..ClientCacheConfig::default()
        },
    )
}

async fn cached_clients_follow_every_change(db: TestDatabase) {
    let clock = clock();
    let (here, there) = (cached_replica(&db, &clock), cached_replica(&db, &clock));
    let (client, old) = here
        .create(web_app(AuthMethod::ClientSecretBasic))
        .await
        .expect("create");
    let old = old.expect("secret");
    here.sync().await.expect("epoch");
    there.sync().await.expect("epoch");
    here.authenticate(&basic(&client.id, old.expose()), AUDIENCES)
        .await
        .expect("cached now");
    // A wrong secret is refused from the cache too: the digest is compared on every request.
    refused(&here, &basic(&client.id, "tgcs_wrong")).await;
    refused(&here, &post(&client.id, old.expose())).await;

    // Another replica rotates the secret: here the old one works until the next epoch poll
    // (the documented revocation latency), and not after it.
    let new = there.rotate_secret(&client.id).await.expect("rotate");
    here.authenticate(&basic(&client.id, old.expose()), AUDIENCES)
        .await
        .expect("served from the cache until the poll");
    here.sync().await.expect("epoch");
    refused(&here, &basic(&client.id, old.expose())).await;
    here.authenticate(&basic(&client.id, new.expose()), AUDIENCES)
        .await
        .expect("the new secret");

    // A rotation on this replica ends the old secret here at once, no poll needed.
    let newer = here.rotate_secret(&client.id).await.expect("rotate here");
    refused(&here, &basic(&client.id, new.expose())).await;
    here.authenticate(&basic(&client.id, newer.expose()), AUDIENCES)
        .await
        .expect("the newest secret");

    // Another replica changes the method to client_secret_post: after the poll, Basic is the
    // wrong method here.
    there
        .update(&client.id, web_app(AuthMethod::ClientSecretPost))
        .await
        .expect("update");
    here.sync().await.expect("epoch");
    refused(&here, &basic(&client.id, newer.expose())).await;
    here.authenticate(&post(&client.id, newer.expose()), AUDIENCES)
        .await
        .expect("post now");

    // Another replica deletes the client: gone here after the poll.
    assert!(there.delete(&client.id).await.expect("delete"));
    here.sync().await.expect("epoch");
    refused(&here, &post(&client.id, newer.expose())).await;
}

async fn cache_is_bypassed_when_the_epoch_is_stale(db: TestDatabase) {
    let clock = clock();
    // Every poll is stale at once: the cache must never be used.
    let here = registry(&db, &clock).with_cache(
        db.store.clone(),
        ClientCacheConfig {
            epoch_poll: std::time::Duration::from_secs(3600),
            stale_after: std::time::Duration::ZERO,
            ..ClientCacheConfig::default()
        },
    );
    let there = registry(&db, &clock);
    let (client, old) = here
        .create(web_app(AuthMethod::ClientSecretBasic))
        .await
        .expect("create");
    let old = old.expect("secret");
    here.sync().await.expect("epoch");
    here.authenticate(&basic(&client.id, old.expose()), AUDIENCES)
        .await
        .expect("authenticated");
    let new = there.rotate_secret(&client.id).await.expect("rotate");
    refused(&here, &basic(&client.id, old.expose())).await;
    here.authenticate(&basic(&client.id, new.expose()), AUDIENCES)
        .await
        .expect("the new secret, read from the store");
}

async fn tls_client_auth_matches_the_registered_certificate_name_only(db: TestDatabase) {
    use trustgate_oauth::clients::ClientCertificate;
    let registry = registry(&db, &clock());
    let register = |edit: fn(&mut ClientRegistration)| {
        let registry = registry.clone();
        async move {
            let mut reg = ClientRegistration {
                grant_types: vec![GrantType::ClientCredentials],
                redirect_uris: Vec::new(),
                scopes: vec!["reports:read".into()],
                auth_method: AuthMethod::TlsClientAuth,
                ..ClientRegistration::named("worker")
            };
            edit(&mut reg);
            registry.create(reg).await
        }
    };
    // Exactly one certificate name, and only with the method.
    for bad in [
        (|_: &mut ClientRegistration| {}) as fn(&mut ClientRegistration),
        |r| {
            r.tls_client_auth_subject_dn = Some("CN=a".into());
            r.tls_client_auth_san_uri = Some("spiffe://example.org/a".into());
        },
        |r| r.tls_client_auth_subject_dn = Some("  ".into()),
        |r| {
            r.auth_method = AuthMethod::ClientSecretBasic;
            r.tls_client_auth_subject_dn = Some("CN=a".into());
        },
    ] {
        let err = register(bad).await.expect_err("refused");
        assert!(err.to_string().contains("tls_client_auth"), "{err}");
    }
    let (by_dn, secret) = register(|r| {
        r.tls_client_auth_subject_dn = Some("O=Example,CN=worker".into());
    })
    .await
    .expect("registered");
    assert!(secret.is_none(), "no secret for tls_client_auth");
    let (by_uri, _) = register(|r| {
        r.tls_client_auth_san_uri = Some("spiffe://example.org/worker".into());
    })
    .await
    .expect("registered");
    let certificate = |dn: &str, uris: &[&str]| ClientCertificate {
        subject_dn: dn.into(),
        san_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
        chain_trusted: true,
        ..ClientCertificate::default()
    };
    let over = |client_id: &str, cert: ClientCertificate| PresentedCredentials::Certificate {
        client_id: client_id.into(),
        certificate: cert,
    };
    let dn_cert = certificate("O=Example,CN=worker", &[]);
    let uri_cert = certificate("CN=other", &["https://x", "spiffe://example.org/worker"]);
    registry
        .authenticate(&over(&by_dn.id, dn_cert.clone()), AUDIENCES)
        .await
        .expect("the registered DN");
    registry
        .authenticate(&over(&by_uri.id, uri_cert.clone()), AUDIENCES)
        .await
        .expect("the registered URI SAN");
    for (client, cert) in [
        (&by_dn.id, certificate("O=Example,CN=worker2", &[])),
        (&by_dn.id, uri_cert),
        (&by_uri.id, dn_cert),
        (
            &by_uri.id,
            certificate("CN=x", &["spiffe://example.org/worker/x"]),
        ),
        // The right name in a certificate no trusted CA issued (a listener that accepts
        // self-signed certificates): anyone could have written it.
        (
            &by_dn.id,
            ClientCertificate {
                chain_trusted: false,
                ..certificate("O=Example,CN=worker", &[])
            },
        ),
    ] {
        let err = registry
            .authenticate(&over(client, cert), AUDIENCES)
            .await
            .expect_err("another certificate");
        assert_eq!(err.code, ErrorCode::InvalidClient);
    }
    // Without the certificate (the bare client id off the mutual-TLS listener): refused.
    let err = registry
        .authenticate(
            &PresentedCredentials::None {
                client_id: by_dn.id.clone(),
            },
            AUDIENCES,
        )
        .await
        .expect_err("no certificate");
    assert_eq!(err.code, ErrorCode::InvalidClient);
}

fn over_mtls(
    client_id: &str,
    certificate: trustgate_oauth::clients::ClientCertificate,
) -> PresentedCredentials {
    PresentedCredentials::Certificate {
        client_id: client_id.into(),
        certificate,
    }
}

async fn tls_client_auth_matches_dns_ip_and_email_sans(db: TestDatabase) {
    use std::net::IpAddr;
    use trustgate_oauth::clients::ClientCertificate;
    let registry = registry(&db, &clock());
    let worker = |edit: fn(&mut ClientRegistration)| {
        let mut reg = ClientRegistration {
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec!["reports:read".into()],
            auth_method: AuthMethod::TlsClientAuth,
            ..ClientRegistration::named("worker")
        };
        edit(&mut reg);
        reg
    };
    let bad_ip = registry
        .create(worker(|r| {
            r.tls_client_auth_san_ip = Some("10.0.0.256".into())
        }))
        .await
        .expect_err("not an address");
    assert!(
        bad_ip.to_string().contains("tls_client_auth_san_ip"),
        "{bad_ip}"
    );
    let two = registry
        .create(worker(|r| {
            r.tls_client_auth_san_dns = Some("a.example".into());
            r.tls_client_auth_san_email = Some("a@example.com".into());
        }))
        .await
        .expect_err("two names");
    assert!(two.to_string().contains("exactly one"), "{two}");

    let (by_dns, _) = registry
        .create(worker(|r| {
            r.tls_client_auth_san_dns = Some("Worker.Example.com".into())
        }))
        .await
        .expect("dns");
    let (by_ip, _) = registry
        .create(worker(|r| {
            r.tls_client_auth_san_ip = Some("2001:db8::7".into())
        }))
        .await
        .expect("ip");
    let (by_email, _) = registry
        .create(worker(|r| {
            r.tls_client_auth_san_email = Some("worker@example.com".into());
        }))
        .await
        .expect("email");
    assert_eq!(
        registry
            .get(&by_ip.id)
            .await
            .expect("read")
            .map(|c| c.tls_client_auth.san_ip),
        Some(Some("2001:db8::7".to_owned())),
        "kept as registered"
    );
    let cert = |dns: &[&str], ips: &[&str], emails: &[&str]| ClientCertificate {
        subject_dn: "CN=worker".into(),
        san_dns: dns.iter().map(|d| (*d).to_owned()).collect(),
        san_ips: ips
            .iter()
            .map(|i| i.parse::<IpAddr>().expect("ip"))
            .collect(),
        san_emails: emails.iter().map(|e| (*e).to_owned()).collect(),
        chain_trusted: true,
        ..ClientCertificate::default()
    };
    // DNS names compare without ASCII case; addresses as addresses (another spelling of the
    // same IPv6 address matches).
    for (client, presented) in [
        (
            &by_dns.id,
            cert(&["other.example", "worker.example.COM"], &[], &[]),
        ),
        (&by_ip.id, cert(&[], &["10.0.0.1", "2001:0db8:0:0::7"], &[])),
        (&by_email.id, cert(&[], &[], &["worker@example.com"])),
    ] {
        registry
            .authenticate(&over_mtls(client, presented), AUDIENCES)
            .await
            .expect("the registered SAN");
    }
    for (client, presented) in [
        (&by_dns.id, cert(&["worker.example.com.evil"], &[], &[])),
        (&by_dns.id, cert(&[], &[], &["Worker.Example.com"])),
        (&by_ip.id, cert(&[], &["2001:db8::8"], &[])),
        (&by_ip.id, cert(&["2001:db8::7"], &[], &[])),
        (&by_email.id, cert(&[], &[], &["Worker@example.com"])),
        (&by_email.id, cert(&["worker@example.com"], &[], &[])),
    ] {
        refused(&registry, &over_mtls(client, presented)).await;
    }
}

async fn self_signed_tls_client_auth_matches_a_registered_certificate(db: TestDatabase) {
    use trustgate_oauth::clients::ClientCertificate;
    use trustgate_testkit::tls::{TestCa, self_signed_client};
    let registry = registry(&db, &clock());
    let own = self_signed_client("worker");
    let other = self_signed_client("worker");
    let issued = TestCa::new("clients").client("worker", None);
    let reg = |jwks: Option<Value>| ClientRegistration {
        grant_types: vec![GrantType::ClientCredentials],
        scopes: vec!["reports:read".into()],
        auth_method: AuthMethod::SelfSignedTlsClientAuth,
        jwks,
        ..ClientRegistration::named("self-signed worker")
    };
    // The certificate must be registered: no JWKS, keys without x5c, an x5c that is not
    // base64 DER are all refused.
    let mut bare_key = own.jwk.clone();
    bare_key.as_object_mut().expect("object").remove("x5c");
    let mut url_safe = own.jwk.clone();
    url_safe["x5c"] = json!([URL_SAFE_NO_PAD.encode(&own.der)]);
    let mut empty_chain = own.jwk.clone();
    empty_chain["x5c"] = json!([]);
    for jwks in [
        None,
        Some(json!({ "keys": [bare_key] })),
        Some(json!({ "keys": [url_safe] })),
        Some(json!({ "keys": [empty_chain] })),
    ] {
        let err = registry.create(reg(jwks)).await.expect_err("refused");
        assert_eq!(err.code(), "invalid_jwks", "{err}");
        assert!(err.to_string().contains("x5c"), "{err}");
    }
    let (client, secret) = registry
        .create(reg(Some(json!({ "keys": [own.jwk, issued.jwk] }))))
        .await
        .expect("registered");
    assert!(
        secret.is_none(),
        "no secret for self_signed_tls_client_auth"
    );
    let presented = |der: &[u8], chain_trusted: bool| ClientCertificate {
        subject_dn: "O=trustgate tests,CN=worker".into(),
        thumbprint: URL_SAFE_NO_PAD.encode(<sha2::Sha256 as sha2::Digest>::digest(der)),
        chain_trusted,
        ..ClientCertificate::default()
    };
    // Either registered certificate, trusted chain or not (RFC 8705 §2.2: the chain is not
    // what authenticates).
    for (der, trusted) in [(&own.der, false), (&issued.der, true)] {
        registry
            .authenticate(&over_mtls(&client.id, presented(der, trusted)), AUDIENCES)
            .await
            .expect("a registered certificate");
    }
    // Another certificate with the same names, and no certificate at all: refused.
    refused(
        &registry,
        &over_mtls(&client.id, presented(&other.der, false)),
    )
    .await;
    refused(
        &registry,
        &PresentedCredentials::None {
            client_id: client.id.clone(),
        },
    )
    .await;
}
