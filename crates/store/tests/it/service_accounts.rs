//! Service accounts and the bootstrap key, on every backend.

use time::OffsetDateTime;
use time::macros::datetime;
use trustgate_core::TokenDigest;
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{
    CertificateNameKind, Conflict, KeyOwner, NewApiKey, NewServiceAccount, StoreError,
};

test_on_both_backends!(
    certificate_names_bind_to_one_account_and_go_with_it,
    accounts_round_trip,
    names_are_unique_and_a_reused_id_is_a_duplicate,
    account_pages_walk_every_account_once,
    disable_and_enable_keep_the_first_disable_time,
    deleting_an_account_deletes_its_keys,
    bootstrap_key_authenticates_only_its_account,
    ensure_is_idempotent_and_adds_keys,
    key_of_another_owner_is_a_conflict,
    bad_input_is_refused,
    health_reports_migrations_current,
    migrate_twice_is_a_no_op,
);

const T0: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);

fn account<'a>(id: &'a str, name: &'a str) -> NewServiceAccount<'a> {
    NewServiceAccount {
        id,
        name,
        owner: Some("platform team"),
        description: "deploys things",
    }
}

fn admin_scopes() -> Vec<String> {
    vec!["admin".to_owned()]
}

fn key<'a>(id: &'a str, digest: &'a TokenDigest, scopes: &'a [String]) -> NewApiKey<'a> {
    NewApiKey {
        id,
        digest,
        description: "bootstrap",
        scopes,
        rate_limit_per_minute: None,
        expires_at: None,
    }
}

async fn accounts_round_trip(db: TestDatabase) {
    let created = db
        .store
        .create_service_account(&account("sa1", "ci"), T0)
        .await
        .expect("create");
    assert_eq!(created.id, "sa1");
    assert_eq!(created.owner.as_deref(), Some("platform team"));
    assert_eq!(created.description, "deploys things");
    assert_eq!(created.created_at, T0);
    assert_eq!(created.disabled_at, None);
    assert_eq!(
        db.store.get_service_account("sa1").await.expect("get"),
        Some(created.clone())
    );
    assert_eq!(
        db.store.find_service_account("ci").await.expect("find"),
        Some(created.clone())
    );
    let bare = db
        .store
        .create_service_account(
            &NewServiceAccount {
                id: "sa2",
                name: "bare",
                owner: None,
                description: "",
            },
            T0,
        )
        .await
        .expect("create without owner");
    assert_eq!(
        db.store.get_service_account("sa2").await.expect("get"),
        Some(bare)
    );
    assert_eq!(
        db.store.get_service_account("nope").await.expect("get"),
        None
    );
    assert_eq!(
        db.store.find_service_account("nope").await.expect("find"),
        None
    );
    // Creating accounts does not move the credential epoch.
    assert_eq!(db.store.credential_epoch().await.expect("epoch"), 0);
}

async fn names_are_unique_and_a_reused_id_is_a_duplicate(db: TestDatabase) {
    db.store
        .create_service_account(&account("sa1", "ci"), T0)
        .await
        .expect("create");
    let err = db
        .store
        .create_service_account(&account("sa2", "ci"), T0)
        .await
        .expect_err("name taken");
    assert!(
        matches!(err, StoreError::Conflict(Conflict::ServiceNameTaken)),
        "{err:?}"
    );
    assert_eq!(
        db.store.get_service_account("sa2").await.expect("get"),
        None
    );
    let err = db
        .store
        .create_service_account(&account("sa1", "other"), T0)
        .await
        .expect_err("id taken");
    assert!(
        matches!(err, StoreError::Conflict(Conflict::Duplicate(_))),
        "{err:?}"
    );
    assert_eq!(
        db.store.find_service_account("other").await.expect("find"),
        None
    );
}

async fn account_pages_walk_every_account_once(db: TestDatabase) {
    let ids: Vec<String> = (0..5).map(|i| format!("sa{i}")).collect();
    for id in ids.iter().rev() {
        db.store
            .create_service_account(&account(id, &format!("name-{id}")), T0)
            .await
            .expect("create");
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = db
            .store
            .list_service_accounts(after.as_deref(), 2)
            .await
            .expect("page");
        assert!(page.accounts.len() <= 2);
        seen.extend(page.accounts.iter().map(|a| a.id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let err = db
        .store
        .list_service_accounts(None, 0)
        .await
        .expect_err("page size 0");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
}

async fn disable_and_enable_keep_the_first_disable_time(db: TestDatabase) {
    let t1 = T0 + time::Duration::seconds(1);
    let t2 = T0 + time::Duration::seconds(2);
    db.store
        .create_service_account(&account("sa1", "ci"), T0)
        .await
        .expect("create");
    let disabled = db
        .store
        .set_service_account_disabled("sa1", true, t1)
        .await
        .expect("disable")
        .expect("exists");
    assert_eq!(disabled.disabled_at, Some(t1));
    assert_eq!(db.store.credential_epoch().await.expect("epoch"), 1);
    let again = db
        .store
        .set_service_account_disabled("sa1", true, t2)
        .await
        .expect("disable again")
        .expect("exists");
    assert_eq!(again.disabled_at, Some(t1));
    let enabled = db
        .store
        .set_service_account_disabled("sa1", false, t2)
        .await
        .expect("enable")
        .expect("exists");
    assert_eq!(enabled.disabled_at, None);
    assert_eq!(
        db.store.get_service_account("sa1").await.expect("get"),
        Some(enabled)
    );
    let epoch = db.store.credential_epoch().await.expect("epoch");
    assert_eq!(
        db.store
            .set_service_account_disabled("nope", true, t2)
            .await
            .expect("unknown"),
        None
    );
    assert_eq!(db.store.credential_epoch().await.expect("epoch"), epoch);
}

async fn deleting_an_account_deletes_its_keys(db: TestDatabase) {
    let digest = TokenDigest::of("tg_key");
    let scopes = admin_scopes();
    db.store
        .create_service_account(&account("sa1", "ci"), T0)
        .await
        .expect("create");
    db.store
        .create_api_key(
            &KeyOwner::Service("sa1".into()),
            &key("K1", &digest, &scopes),
            T0,
        )
        .await
        .expect("key");
    let before = db.store.credential_epoch().await.expect("epoch");
    assert!(
        db.store
            .delete_service_account("sa1")
            .await
            .expect("delete")
    );
    assert_eq!(
        db.store.credential_epoch().await.expect("epoch"),
        before + 1
    );
    assert_eq!(db.store.get_api_key("K1").await.expect("get"), None);
    assert_eq!(
        db.store.authenticate_api_key(&digest).await.expect("auth"),
        None
    );
    assert!(!db.store.delete_service_account("sa1").await.expect("again"));
    assert_eq!(
        db.store.credential_epoch().await.expect("epoch"),
        before + 1
    );
}

async fn bootstrap_key_authenticates_only_its_account(db: TestDatabase) {
    let digest = TokenDigest::of("tg_admin_secret");
    let scopes = admin_scopes();
    let ensured = db
        .store
        .ensure_bootstrap_key(&account("sa1", "admin"), &key("K1", &digest, &scopes), T0)
        .await
        .expect("ensure");
    assert!(ensured.account_created && ensured.key_created);
    assert_eq!(ensured.account.created_at, T0);
    assert_eq!(ensured.account.name, "admin");

    let found = db
        .store
        .authenticate_api_key(&digest)
        .await
        .expect("lookup")
        .expect("key authenticates");
    assert_eq!(found.owner_name, "admin");
    assert_eq!(found.key.owner, KeyOwner::Service("sa1".into()));
    assert_eq!(found.key.scopes, scopes);
    assert_eq!(found.key.id, "K1");

    let wrong = db
        .store
        .authenticate_api_key(&TokenDigest::of("tg_admin_secreT"))
        .await
        .expect("lookup");
    assert_eq!(wrong, None);
}

async fn ensure_is_idempotent_and_adds_keys(db: TestDatabase) {
    let scopes = admin_scopes();
    let first = TokenDigest::of("one");
    db.store
        .ensure_bootstrap_key(&account("sa1", "admin"), &key("K1", &first, &scopes), T0)
        .await
        .expect("first");
    let again = db
        .store
        .ensure_bootstrap_key(&account("sa2", "admin"), &key("K2", &first, &scopes), T0)
        .await
        .expect("again");
    assert!(!again.account_created && !again.key_created);
    assert_eq!(again.account.id, "sa1", "existing account is kept");
    assert_eq!(db.store.get_api_key("K2").await.expect("get"), None);

    let second = TokenDigest::of("two");
    let added = db
        .store
        .ensure_bootstrap_key(&account("sa3", "admin"), &key("K3", &second, &scopes), T0)
        .await
        .expect("second key");
    assert!(!added.account_created && added.key_created);
    for d in [first, second] {
        let verified = db.store.authenticate_api_key(&d).await.expect("lookup");
        assert_eq!(
            verified.map(|v| v.key.owner),
            Some(KeyOwner::Service("sa1".to_owned()))
        );
    }
}

async fn key_of_another_owner_is_a_conflict(db: TestDatabase) {
    let scopes = admin_scopes();
    let digest = TokenDigest::of("shared");
    db.store
        .ensure_bootstrap_key(&account("sa1", "admin"), &key("K1", &digest, &scopes), T0)
        .await
        .expect("first");
    let err = db
        .store
        .ensure_bootstrap_key(&account("sa2", "ops"), &key("K2", &digest, &scopes), T0)
        .await
        .expect_err("digest belongs to admin");
    assert!(
        matches!(err, StoreError::Conflict(Conflict::TokenOwnedElsewhere)),
        "{err:?}"
    );
    // The failed call rolled back: no "ops" account was left behind.
    assert_eq!(
        db.store.find_service_account("ops").await.expect("find"),
        None
    );
}

async fn bad_input_is_refused(db: TestDatabase) {
    let long = "x".repeat(1025);
    for bad in [
        NewServiceAccount {
            id: "",
            ..account("sa1", "ci")
        },
        NewServiceAccount {
            name: "",
            ..account("sa1", "ci")
        },
        NewServiceAccount {
            description: &long,
            ..account("sa1", "ci")
        },
        NewServiceAccount {
            owner: Some("nul\0"),
            ..account("sa1", "ci")
        },
    ] {
        let err = db
            .store
            .create_service_account(&bad, T0)
            .await
            .expect_err("invalid");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
    assert_eq!(
        db.store.get_service_account("sa1").await.expect("get"),
        None
    );
}

async fn health_reports_migrations_current(db: TestDatabase) {
    let health = db.store.health().await.expect("health");
    assert!(health.migrations_current(), "{health:?}");
    assert_eq!(health.expected_version, 12);
}

async fn migrate_twice_is_a_no_op(db: TestDatabase) {
    let report = db.store.migrate().await.expect("migrate");
    assert_eq!(report.before, report.after);
}

async fn certificate_names_bind_to_one_account_and_go_with_it(db: TestDatabase) {
    use CertificateNameKind::{SpiffeId, SubjectDn};
    let store = &db.store;
    store
        .create_service_account(&account("sa1", "billing"), T0)
        .await
        .expect("create");
    store
        .create_service_account(&account("sa2", "reports"), T0)
        .await
        .expect("create");
    let spiffe = "spiffe://example.org/ns/prod/sa/billing";
    let epoch = store.credential_epoch().await.expect("epoch");
    assert!(
        store
            .bind_certificate("sa1", SpiffeId, spiffe, T0)
            .await
            .expect("bind")
    );
    assert!(
        store.credential_epoch().await.expect("epoch") > epoch,
        "a binding moves the epoch"
    );
    assert!(
        !store
            .bind_certificate("sa1", SpiffeId, spiffe, T0)
            .await
            .expect("again")
    );
    // The same text as another kind is another name.
    assert!(
        store
            .bind_certificate("sa2", SubjectDn, spiffe, T0)
            .await
            .expect("bind")
    );
    let err = store
        .bind_certificate("sa2", SpiffeId, spiffe, T0)
        .await
        .expect_err("taken");
    assert!(
        matches!(err, StoreError::Conflict(Conflict::CertificateNameTaken)),
        "{err}"
    );
    let err = store
        .bind_certificate("nobody", SpiffeId, "spiffe://example.org/x", T0)
        .await
        .expect_err("no account");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    for bad in ["", &"x".repeat(2049), "nul\0"] {
        let err = store
            .bind_certificate("sa1", SubjectDn, bad, T0)
            .await
            .expect_err("bad name");
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    }
    let found = store
        .certificate_account(SpiffeId, spiffe)
        .await
        .expect("find")
        .expect("bound");
    assert_eq!(found.id, "sa1");
    assert_eq!(
        store
            .certificate_account(SubjectDn, "CN=nobody")
            .await
            .expect("find"),
        None
    );
    let bound = store.certificate_bindings("sa1").await.expect("list");
    assert_eq!(bound.len(), 1);
    assert_eq!((bound[0].kind, bound[0].name.as_str()), (SpiffeId, spiffe));
    assert_eq!(bound[0].created_at, T0);

    // Unbinding is per account; deleting an account deletes its names.
    assert!(
        !store
            .unbind_certificate("sa2", SpiffeId, spiffe)
            .await
            .expect("not its")
    );
    assert!(
        store
            .unbind_certificate("sa1", SpiffeId, spiffe)
            .await
            .expect("unbind")
    );
    assert_eq!(
        store
            .certificate_account(SpiffeId, spiffe)
            .await
            .expect("find"),
        None
    );
    assert!(store.delete_service_account("sa2").await.expect("delete"));
    assert_eq!(
        store
            .certificate_account(SubjectDn, spiffe)
            .await
            .expect("find"),
        None
    );
    assert!(
        store
            .bind_certificate("sa1", SubjectDn, spiffe, T0)
            .await
            .expect("free again")
    );
}
