//! Service accounts and token digests, on every backend.

use time::macros::datetime;
use trustgate_core::TokenDigest;
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{AccountRole, StoreError};

test_on_both_backends!(
    token_authenticates_only_its_account,
    ensure_is_idempotent_and_adds_tokens,
    token_of_another_account_is_a_conflict,
    health_reports_migrations_current,
    migrate_twice_is_a_no_op,
    create_refuses_an_existing_name_and_writes_nothing,
);

async fn token_authenticates_only_its_account(db: TestDatabase) {
    let now = datetime!(2026-11-23 10:00 UTC);
    let digest = TokenDigest::of("tg_admin_secret");
    let ensured = db
        .store
        .ensure_account_token(
            "sa1",
            "admin",
            AccountRole::Admin,
            &digest,
            "bootstrap",
            now,
        )
        .await
        .expect("ensure");
    assert!(ensured.account_created && ensured.token_created);
    assert_eq!(ensured.account.created_at, now);

    let found = db
        .store
        .authenticate_service_token(&digest)
        .await
        .expect("lookup")
        .expect("token authenticates");
    assert_eq!(found.name, "admin");
    assert_eq!(found.role, AccountRole::Admin);

    let wrong = db
        .store
        .authenticate_service_token(&TokenDigest::of("tg_admin_secreT"))
        .await
        .expect("lookup");
    assert_eq!(wrong, None);
}

async fn ensure_is_idempotent_and_adds_tokens(db: TestDatabase) {
    let now = datetime!(2026-11-23 10:00 UTC);
    let first = TokenDigest::of("one");
    db.store
        .ensure_account_token("sa1", "admin", AccountRole::Admin, &first, "bootstrap", now)
        .await
        .expect("first");
    let again = db
        .store
        .ensure_account_token("sa2", "admin", AccountRole::Admin, &first, "bootstrap", now)
        .await
        .expect("again");
    assert!(!again.account_created && !again.token_created);
    assert_eq!(again.account.id, "sa1", "existing account is kept");

    let second = TokenDigest::of("two");
    let added = db
        .store
        .ensure_account_token("sa3", "admin", AccountRole::Admin, &second, "env", now)
        .await
        .expect("second token");
    assert!(!added.account_created && added.token_created);
    for d in [first, second] {
        let account = db
            .store
            .authenticate_service_token(&d)
            .await
            .expect("lookup");
        assert_eq!(account.map(|a| a.id), Some("sa1".to_owned()));
    }
}

async fn token_of_another_account_is_a_conflict(db: TestDatabase) {
    let now = datetime!(2026-11-23 10:00 UTC);
    let digest = TokenDigest::of("shared");
    db.store
        .ensure_account_token("sa1", "admin", AccountRole::Admin, &digest, "a", now)
        .await
        .expect("first");
    let err = db
        .store
        .ensure_account_token("sa2", "ops", AccountRole::Admin, &digest, "b", now)
        .await
        .expect_err("digest belongs to admin");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // The failed call rolled back: no "ops" account was left behind.
    assert_eq!(
        db.store.find_service_account("ops").await.expect("find"),
        None
    );
}

async fn health_reports_migrations_current(db: TestDatabase) {
    let health = db.store.health().await.expect("health");
    assert!(health.migrations_current(), "{health:?}");
    assert!(health.expected_version >= 1);
}

async fn migrate_twice_is_a_no_op(db: TestDatabase) {
    let report = db.store.migrate().await.expect("migrate");
    assert_eq!(report.before, report.after);
}

async fn create_refuses_an_existing_name_and_writes_nothing(db: TestDatabase) {
    let now = datetime!(2026-11-23 10:00 UTC);
    let first = TokenDigest::of("first");
    let created = db
        .store
        .create_service_account("sa1", "admin", AccountRole::Admin, &first, "bootstrap", now)
        .await
        .expect("create");
    assert_eq!(created.map(|a| a.id), Some("sa1".to_owned()));

    let second = TokenDigest::of("second");
    let refused = db
        .store
        .create_service_account(
            "sa2",
            "admin",
            AccountRole::Admin,
            &second,
            "bootstrap",
            now,
        )
        .await
        .expect("create again");
    assert_eq!(refused, None);
    let lookup = db
        .store
        .authenticate_service_token(&second)
        .await
        .expect("lookup");
    assert_eq!(lookup, None, "the losing token must not be registered");
}
