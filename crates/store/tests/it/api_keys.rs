//! API keys and personal access tokens, and the credential epoch, on every backend.

use serde_json::Map;
use sqlx::Row as _;
use time::OffsetDateTime;
use time::macros::datetime;
use trustgate_core::TokenDigest;
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{
    Backend, Conflict, KeyOwner, KeyUse, NewApiKey, NewServiceAccount, NewUser, StoreError,
    UserStatus,
};

test_on_both_backends!(
    only_the_digest_is_stored,
    keys_round_trip_and_list_by_owner,
    duplicate_missing_and_disabled_owners_conflict,
    authentication_refuses_revoked_keys_and_dead_owners,
    rotation_inherits_and_shortens_the_old_expiry,
    rotating_a_revoked_or_unknown_key_is_none,
    the_epoch_moves_on_every_ending_and_only_then,
    uses_are_recorded_in_batches_and_never_go_back,
    bad_keys_are_refused,
);

const T0: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);

fn at(seconds: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(seconds)
}

async fn service(db: &TestDatabase, id: &str) -> KeyOwner {
    db.store
        .create_service_account(
            &NewServiceAccount {
                id,
                name: &format!("svc-{id}"),
                owner: None,
                description: "",
            },
            T0,
        )
        .await
        .expect("service account");
    KeyOwner::Service(id.to_owned())
}

async fn user(db: &TestDatabase, id: &str) -> KeyOwner {
    db.store
        .create_user(
            &NewUser {
                id: id.to_owned(),
                username: format!("user-{id}"),
                email: format!("{id}@example.com"),
                name: None,
                locale: None,
                attributes: Map::new(),
                password_hash: None,
            },
            T0,
        )
        .await
        .expect("user");
    KeyOwner::User(id.to_owned())
}

fn scopes(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

fn new_key<'a>(id: &'a str, digest: &'a TokenDigest, scopes: &'a [String]) -> NewApiKey<'a> {
    NewApiKey {
        id,
        digest,
        description: "a key",
        scopes,
        rate_limit_per_minute: Some(120),
        expires_at: Some(at(3600)),
    }
}

/// Every api_keys row as text (every column; bytes in lower-case hex), read past the store.
async fn raw_key_rows(db: &TestDatabase) -> Vec<String> {
    match db.store.backend() {
        Backend::Sqlite => {
            let path = db.url.strip_prefix("sqlite://").expect("sqlite url");
            let pool = sqlx::SqlitePool::connect_with(
                sqlx::sqlite::SqliteConnectOptions::new().filename(path),
            )
            .await
            .expect("raw sqlite");
            let rows = sqlx::query("SELECT * FROM api_keys")
                .fetch_all(&pool)
                .await
                .expect("raw rows");
            let out = rows
                .iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| {
                            if let Ok(Some(t)) = row.try_get::<Option<String>, _>(i) {
                                t
                            } else if let Ok(Some(b)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                                hex(&b)
                            } else if let Ok(Some(n)) = row.try_get::<Option<i64>, _>(i) {
                                n.to_string()
                            } else {
                                "NULL".to_owned()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            pool.close().await;
            out
        }
        Backend::Postgres => {
            let schema = db.schema.as_deref().expect("schema");
            let options: sqlx::postgres::PgConnectOptions = db.url.parse().expect("pg url");
            let pool = sqlx::PgPool::connect_with(options.options([("search_path", schema)]))
                .await
                .expect("raw postgres");
            let out = sqlx::query_scalar("SELECT row_to_json(k)::text FROM api_keys k")
                .fetch_all(&pool)
                .await
                .expect("raw rows");
            pool.close().await;
            out
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn only_the_digest_is_stored(db: TestDatabase) {
    let owner = service(&db, "sa1").await;
    let secret = "tg_01KEYID0000000000000000000_c2VjcmV0LXBhcnQtb2YtdGhlLWtleQ";
    let digest = TokenDigest::of(secret);
    let s = scopes(&["tuples:read"]);
    db.store
        .create_api_key(&owner, &new_key("K1", &digest, &s), T0)
        .await
        .expect("create");
    let rows = raw_key_rows(&db).await;
    assert_eq!(rows.len(), 1);
    let row = rows[0].to_lowercase();
    assert!(row.contains(&hex(digest.as_bytes())), "{row}");
    for part in [
        secret,
        "c2VjcmV0LXBhcnQtb2YtdGhlLWtleQ",
        "secret-part-of-the-key",
    ] {
        assert!(
            !row.contains(&part.to_lowercase()),
            "{part} stored in {row}"
        );
    }
}

async fn keys_round_trip_and_list_by_owner(db: TestDatabase) {
    let svc = service(&db, "sa1").await;
    let pat = user(&db, "u1").await;
    let (d1, d2, d3) = (
        TokenDigest::of("k1"),
        TokenDigest::of("k2"),
        TokenDigest::of("k3"),
    );
    let s = scopes(&["tuples:read", "tuples:write"]);
    let k1 = db
        .store
        .create_api_key(&svc, &new_key("K1", &d1, &s), T0)
        .await
        .expect("k1");
    assert_eq!(k1.id, "K1");
    assert_eq!(k1.owner, svc);
    assert_eq!(k1.description, "a key");
    assert_eq!(k1.scopes, s);
    assert_eq!(k1.rate_limit_per_minute, Some(120));
    assert_eq!(k1.created_at, T0);
    assert_eq!(k1.expires_at, Some(at(3600)));
    assert_eq!(
        (k1.revoked_at, k1.rotated_from.as_deref(), k1.last_used_at),
        (None, None, None)
    );
    let k3 = db
        .store
        .create_api_key(
            &pat,
            &NewApiKey {
                rate_limit_per_minute: None,
                expires_at: None,
                scopes: &[],
                ..new_key("K3", &d3, &s)
            },
            T0,
        )
        .await
        .expect("k3");
    assert_eq!(k3.owner, pat);
    assert!(k3.scopes.is_empty());
    assert_eq!((k3.rate_limit_per_minute, k3.expires_at), (None, None));
    let k2 = db
        .store
        .create_api_key(&svc, &new_key("K2", &d2, &s), T0)
        .await
        .expect("k2");
    assert_eq!(
        db.store.get_api_key("K1").await.expect("get"),
        Some(k1.clone())
    );
    assert_eq!(
        db.store.get_api_key("K3").await.expect("get"),
        Some(k3.clone())
    );
    assert_eq!(db.store.get_api_key("nope").await.expect("get"), None);
    assert_eq!(
        db.store.list_api_keys(Some(&svc)).await.expect("list"),
        vec![k1.clone(), k2.clone()]
    );
    assert_eq!(
        db.store.list_api_keys(Some(&pat)).await.expect("list"),
        vec![k3.clone()]
    );
    assert_eq!(
        db.store.list_api_keys(None).await.expect("list"),
        vec![k1, k2, k3]
    );
    // Revoked keys are listed too.
    db.store.revoke_api_key("K2", at(1)).await.expect("revoke");
    assert_eq!(
        db.store
            .list_api_keys(Some(&svc))
            .await
            .expect("list")
            .len(),
        2
    );
    assert!(
        db.store
            .list_api_keys(Some(&KeyOwner::User("nobody".into())))
            .await
            .expect("list")
            .is_empty()
    );
}

async fn duplicate_missing_and_disabled_owners_conflict(db: TestDatabase) {
    let svc = service(&db, "sa1").await;
    let pat = user(&db, "u1").await;
    let s = scopes(&["admin"]);
    let (d1, d2) = (TokenDigest::of("k1"), TokenDigest::of("k2"));
    db.store
        .create_api_key(&svc, &new_key("K1", &d1, &s), T0)
        .await
        .expect("k1");
    let conflict = |r: Result<_, StoreError>| match r {
        Err(StoreError::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    };
    // The same id, the same digest (for another owner too).
    assert!(matches!(
        conflict(
            db.store
                .create_api_key(&svc, &new_key("K1", &d2, &s), T0)
                .await
        ),
        Conflict::Duplicate(_)
    ));
    assert!(matches!(
        conflict(
            db.store
                .create_api_key(&pat, &new_key("K2", &d1, &s), T0)
                .await
        ),
        Conflict::Duplicate(_)
    ));
    // Owners that do not exist.
    for missing in [
        KeyOwner::Service("nope".into()),
        KeyOwner::User("nope".into()),
    ] {
        assert!(matches!(
            conflict(
                db.store
                    .create_api_key(&missing, &new_key("K2", &d2, &s), T0)
                    .await
            ),
            Conflict::Reference(_)
        ));
    }
    // Disabled owners.
    db.store
        .set_service_account_disabled("sa1", true, T0)
        .await
        .expect("disable");
    assert_eq!(
        conflict(
            db.store
                .create_api_key(&svc, &new_key("K2", &d2, &s), T0)
                .await
        ),
        Conflict::OwnerDisabled
    );
    assert!(
        db.store
            .set_user_status("u1", UserStatus::Disabled, T0)
            .await
            .expect("disable user")
    );
    assert_eq!(
        conflict(
            db.store
                .create_api_key(&pat, &new_key("K2", &d2, &s), T0)
                .await
        ),
        Conflict::OwnerDisabled
    );
    assert_eq!(db.store.get_api_key("K2").await.expect("get"), None);
    // Re-enabled, the owners take keys again.
    db.store
        .set_user_status("u1", UserStatus::Active, T0)
        .await
        .expect("enable user");
    db.store
        .create_api_key(&pat, &new_key("K2", &d2, &s), T0)
        .await
        .expect("k2");
}

async fn authentication_refuses_revoked_keys_and_dead_owners(db: TestDatabase) {
    let svc = service(&db, "sa1").await;
    let pat = user(&db, "u1").await;
    let s = scopes(&["admin"]);
    let digests: Vec<TokenDigest> = (0..4).map(|i| TokenDigest::of(&format!("k{i}"))).collect();
    let ids = ["K0", "K1", "K2", "K3"];
    for (i, id) in ids.iter().enumerate() {
        let owner = if i % 2 == 0 { &svc } else { &pat };
        db.store
            .create_api_key(owner, &new_key(id, &digests[i], &s), T0)
            .await
            .expect("key");
    }
    let auth = |i: usize| {
        let store = db.store.clone();
        let digest = digests[i];
        async move { store.authenticate_api_key(&digest).await.expect("auth") }
    };
    let v = auth(0).await.expect("service key");
    assert_eq!(
        (v.key.id.as_str(), v.owner_name.as_str()),
        ("K0", "svc-sa1")
    );
    let v = auth(1).await.expect("user key");
    assert_eq!(
        (v.key.id.as_str(), v.owner_name.as_str()),
        ("K1", "user-u1")
    );
    // Expiry is not checked here: it is the caller's, against its clock.
    assert!(auth(2).await.is_some());

    // Revoked.
    db.store.revoke_api_key("K2", at(1)).await.expect("revoke");
    assert_eq!(auth(2).await, None);
    assert!(auth(0).await.is_some());

    // A disabled service account, and enabled again.
    db.store
        .set_service_account_disabled("sa1", true, at(2))
        .await
        .expect("disable");
    assert_eq!(auth(0).await, None);
    db.store
        .set_service_account_disabled("sa1", false, at(3))
        .await
        .expect("enable");
    assert!(auth(0).await.is_some());

    // A disabled user, and enabled again.
    db.store
        .set_user_status("u1", UserStatus::Disabled, at(4))
        .await
        .expect("disable user");
    assert_eq!(auth(1).await, None);
    assert_eq!(auth(3).await, None);
    db.store
        .set_user_status("u1", UserStatus::Active, at(5))
        .await
        .expect("enable user");
    assert!(auth(1).await.is_some());

    // Deleted owners take their keys along.
    assert!(db.store.delete_user("u1").await.expect("delete user"));
    assert_eq!(auth(1).await, None);
    assert_eq!(db.store.get_api_key("K1").await.expect("get"), None);
    assert!(
        db.store
            .delete_service_account("sa1")
            .await
            .expect("delete")
    );
    assert_eq!(auth(0).await, None);
    assert!(db.store.list_api_keys(None).await.expect("list").is_empty());
}

async fn rotation_inherits_and_shortens_the_old_expiry(db: TestDatabase) {
    let svc = service(&db, "sa1").await;
    let s = scopes(&["tuples:read"]);
    let (d1, d2, d3) = (
        TokenDigest::of("k1"),
        TokenDigest::of("k2"),
        TokenDigest::of("k3"),
    );
    // Old key expires at +3600; valid_until +60 shortens it.
    db.store
        .create_api_key(&svc, &new_key("K1", &d1, &s), T0)
        .await
        .expect("k1");
    let other_scopes = scopes(&["everything"]);
    let replacement = NewApiKey {
        id: "K2",
        digest: &d2,
        description: "ignored",
        scopes: &other_scopes,
        rate_limit_per_minute: None,
        expires_at: Some(at(7200)),
    };
    let (old, new) = db
        .store
        .rotate_api_key("K1", &replacement, at(60), at(10))
        .await
        .expect("rotate")
        .expect("rotated");
    assert_eq!(old.id, "K1");
    assert_eq!(old.expires_at, Some(at(60)));
    assert_eq!(old.revoked_at, None);
    assert_eq!(db.store.get_api_key("K1").await.expect("get"), Some(old));
    assert_eq!(new.id, "K2");
    assert_eq!(new.owner, svc);
    assert_eq!(new.description, "a key");
    assert_eq!(new.scopes, s);
    assert_eq!(new.rate_limit_per_minute, Some(120));
    assert_eq!(new.expires_at, Some(at(7200)));
    assert_eq!(new.created_at, at(10));
    assert_eq!(new.rotated_from.as_deref(), Some("K1"));
    assert_eq!(db.store.get_api_key("K2").await.expect("get"), Some(new));
    // Both authenticate until the caller's clock passes the old key's expiry.
    assert!(
        db.store
            .authenticate_api_key(&d1)
            .await
            .expect("auth")
            .is_some()
    );
    assert!(
        db.store
            .authenticate_api_key(&d2)
            .await
            .expect("auth")
            .is_some()
    );

    // An old expiry earlier than valid_until is kept; no expiry becomes valid_until.
    let (old, _) = db
        .store
        .rotate_api_key(
            "K1",
            &NewApiKey {
                id: "K3",
                digest: &d3,
                ..replacement
            },
            at(600),
            at(20),
        )
        .await
        .expect("rotate")
        .expect("rotated");
    assert_eq!(old.expires_at, Some(at(60)));
    let (d4, d5) = (TokenDigest::of("k4"), TokenDigest::of("k5"));
    db.store
        .create_api_key(
            &svc,
            &NewApiKey {
                expires_at: None,
                ..new_key("K4", &d4, &s)
            },
            T0,
        )
        .await
        .expect("k4");
    let (old, new) = db
        .store
        .rotate_api_key(
            "K4",
            &NewApiKey {
                id: "K5",
                digest: &d5,
                expires_at: None,
                ..replacement
            },
            at(300),
            at(30),
        )
        .await
        .expect("rotate")
        .expect("rotated");
    assert_eq!(old.expires_at, Some(at(300)));
    assert_eq!(new.expires_at, None);

    // A reused digest fails the whole rotation.
    let err = db
        .store
        .rotate_api_key(
            "K5",
            &NewApiKey {
                id: "K6",
                digest: &d1,
                ..replacement
            },
            at(10),
            at(40),
        )
        .await
        .expect_err("digest taken");
    assert!(
        matches!(err, StoreError::Conflict(Conflict::Duplicate(_))),
        "{err:?}"
    );
    assert_eq!(
        db.store
            .get_api_key("K5")
            .await
            .expect("get")
            .and_then(|k| k.expires_at),
        None,
        "the failed rotation changed nothing"
    );
}

async fn rotating_a_revoked_or_unknown_key_is_none(db: TestDatabase) {
    let svc = service(&db, "sa1").await;
    let s = scopes(&["admin"]);
    let (d1, d2) = (TokenDigest::of("k1"), TokenDigest::of("k2"));
    db.store
        .create_api_key(&svc, &new_key("K1", &d1, &s), T0)
        .await
        .expect("k1");
    db.store.revoke_api_key("K1", at(1)).await.expect("revoke");
    let epoch = db.store.credential_epoch().await.expect("epoch");
    let replacement = new_key("K2", &d2, &s);
    assert_eq!(
        db.store
            .rotate_api_key("K1", &replacement, at(60), at(2))
            .await
            .expect("rotate revoked"),
        None
    );
    assert_eq!(
        db.store
            .rotate_api_key("nope", &replacement, at(60), at(2))
            .await
            .expect("rotate unknown"),
        None
    );
    assert_eq!(db.store.get_api_key("K2").await.expect("get"), None);
    assert_eq!(db.store.credential_epoch().await.expect("epoch"), epoch);
}

async fn the_epoch_moves_on_every_ending_and_only_then(db: TestDatabase) {
    let epoch = || {
        let store = db.store.clone();
        async move { store.credential_epoch().await.expect("epoch") }
    };
    assert_eq!(epoch().await, 0);
    let svc = service(&db, "sa1").await;
    let pat = user(&db, "u1").await;
    let s = scopes(&["admin"]);
    let d: Vec<TokenDigest> = (0..4).map(|i| TokenDigest::of(&format!("k{i}"))).collect();
    db.store
        .create_api_key(&svc, &new_key("K0", &d[0], &s), T0)
        .await
        .expect("k0");
    db.store
        .create_api_key(&pat, &new_key("K1", &d[1], &s), T0)
        .await
        .expect("k1");
    db.store
        .record_api_key_uses(&[KeyUse {
            key_id: "K0".into(),
            at: at(1),
            ip: None,
        }])
        .await
        .expect("uses");
    assert_eq!(epoch().await, 0, "creating and using keys does not move it");

    let revoked = db
        .store
        .revoke_api_key("K0", at(1))
        .await
        .expect("revoke")
        .expect("exists");
    assert_eq!(revoked.revoked_at, Some(at(1)));
    assert_eq!(epoch().await, 1);
    let again = db
        .store
        .revoke_api_key("K0", at(2))
        .await
        .expect("revoke again")
        .expect("exists");
    assert_eq!(
        again.revoked_at,
        Some(at(1)),
        "the first revocation is kept"
    );
    assert_eq!(epoch().await, 1, "a revoked key is not revoked twice");
    assert_eq!(
        db.store
            .revoke_api_key("nope", at(2))
            .await
            .expect("unknown"),
        None
    );
    assert_eq!(epoch().await, 1);

    db.store
        .rotate_api_key("K1", &new_key("K2", &d[2], &s), at(60), at(3))
        .await
        .expect("rotate")
        .expect("rotated");
    assert_eq!(epoch().await, 2);

    db.store
        .set_service_account_disabled("sa1", true, at(4))
        .await
        .expect("disable");
    assert_eq!(epoch().await, 3);
    db.store
        .set_user_status("u1", UserStatus::Disabled, at(5))
        .await
        .expect("disable user");
    assert_eq!(epoch().await, 4);
    // Enabling a user ends nothing.
    db.store
        .set_user_status("u1", UserStatus::Active, at(6))
        .await
        .expect("enable user");
    assert_eq!(epoch().await, 4);
    assert!(db.store.delete_user("u1").await.expect("delete user"));
    assert_eq!(epoch().await, 5);
    assert!(!db.store.delete_user("u1").await.expect("delete again"));
    assert_eq!(epoch().await, 5);
    assert!(
        db.store
            .delete_service_account("sa1")
            .await
            .expect("delete")
    );
    assert_eq!(epoch().await, 6);
}

async fn uses_are_recorded_in_batches_and_never_go_back(db: TestDatabase) {
    let svc = service(&db, "sa1").await;
    let s = scopes(&["admin"]);
    let (d1, d2) = (TokenDigest::of("k1"), TokenDigest::of("k2"));
    for (id, d) in [("K1", &d1), ("K2", &d2)] {
        db.store
            .create_api_key(&svc, &new_key(id, d, &s), T0)
            .await
            .expect("key");
    }
    let use_of = |key: &str, seconds: i64, ip: &str| KeyUse {
        key_id: key.to_owned(),
        at: at(seconds),
        ip: Some(ip.to_owned()),
    };
    // One batch, out of order, with an unknown key.
    db.store
        .record_api_key_uses(&[
            use_of("K1", 20, "10.0.0.2"),
            use_of("K1", 10, "10.0.0.1"),
            use_of("nope", 30, "10.0.0.9"),
            use_of("K2", 5, "10.0.0.5"),
        ])
        .await
        .expect("record");
    let last = |id: &'static str| {
        let store = db.store.clone();
        async move {
            let k = store.get_api_key(id).await.expect("get").expect("key");
            (k.last_used_at, k.last_used_ip)
        }
    };
    assert_eq!(last("K1").await, (Some(at(20)), Some("10.0.0.2".into())));
    assert_eq!(last("K2").await, (Some(at(5)), Some("10.0.0.5".into())));
    // An older use does not overwrite a newer one; a newer one does, also without an address.
    db.store
        .record_api_key_uses(&[use_of("K1", 15, "10.0.0.3")])
        .await
        .expect("older");
    assert_eq!(last("K1").await, (Some(at(20)), Some("10.0.0.2".into())));
    db.store
        .record_api_key_uses(&[KeyUse {
            key_id: "K1".into(),
            at: at(25),
            ip: None,
        }])
        .await
        .expect("newer");
    assert_eq!(last("K1").await, (Some(at(25)), None));
    db.store.record_api_key_uses(&[]).await.expect("empty");
    let err = db
        .store
        .record_api_key_uses(&[use_of("", 1, "x")])
        .await
        .expect_err("bad key id");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
}

async fn bad_keys_are_refused(db: TestDatabase) {
    let svc = service(&db, "sa1").await;
    let d = TokenDigest::of("k");
    let ok = scopes(&["admin"]);
    let long_description = "d".repeat(1025);
    let too_many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
    let long_scope = vec!["s".repeat(257)];
    for bad in [
        NewApiKey {
            id: "",
            ..new_key("K1", &d, &ok)
        },
        NewApiKey {
            description: &long_description,
            ..new_key("K1", &d, &ok)
        },
        NewApiKey {
            rate_limit_per_minute: Some(0),
            ..new_key("K1", &d, &ok)
        },
        new_key("K1", &d, &too_many),
        new_key("K1", &d, &long_scope),
    ] {
        let err = db
            .store
            .create_api_key(&svc, &bad, T0)
            .await
            .expect_err("invalid");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    let err = db
        .store
        .create_api_key(&KeyOwner::User(String::new()), &new_key("K1", &d, &ok), T0)
        .await
        .expect_err("empty owner");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    assert!(db.store.list_api_keys(None).await.expect("list").is_empty());
    // The largest limit round-trips.
    let k = db
        .store
        .create_api_key(
            &svc,
            &NewApiKey {
                rate_limit_per_minute: Some(u32::MAX),
                ..new_key("K1", &d, &ok)
            },
            T0,
        )
        .await
        .expect("max limit");
    assert_eq!(k.rate_limit_per_minute, Some(u32::MAX));
}
