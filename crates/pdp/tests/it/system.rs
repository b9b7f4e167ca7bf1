//! trustgate's own permissions over the system store: hidden from the store API, the role
//! hierarchy of the system model, store roles confined to their store, and keys allowed only
//! what both their scopes and their owner hold. Permission checks stay out of the decision log.

use std::sync::Arc;

use trustgate_pdp::system::{Asker, ReadableStores, Role, parse_scopes};
use trustgate_pdp::{DecisionLog, DecisionRecord, Limits, Page, Pdp, PdpError};
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::SYSTEM_STORE_ID;

#[derive(Debug, Default)]
struct CountingLog(std::sync::atomic::AtomicUsize);

impl DecisionLog for CountingLog {
    fn record(&self, _: &DecisionRecord<'_>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn service() -> (Pdp, Arc<CountingLog>, TestDatabase) {
    let db = TestDatabase::sqlite_in_memory().await;
    let log = Arc::new(CountingLog::default());
    let pdp = Pdp::with_decision_log(
        db.store.clone(),
        Arc::new(trustgate_core::SystemClock),
        Limits::default(),
        log.clone(),
    );
    pdp.system_access().install().await.expect("install");
    (pdp, log, db)
}

fn role(s: &str) -> Role {
    s.parse().expect("role")
}

fn owner(subject: &str) -> Asker<'_> {
    Asker { subject, key: None }
}

#[tokio::test]
async fn the_system_store_is_not_reachable_through_the_store_api() {
    let (pdp, _, _db) = service().await;
    assert!(matches!(
        pdp.get_store(SYSTEM_STORE_ID).await,
        Err(PdpError::StoreNotFound)
    ));
    assert!(matches!(
        pdp.read(SYSTEM_STORE_ID, None, Page::default()).await,
        Err(PdpError::StoreNotFound)
    ));
    let listed = pdp.list_stores(Page::default(), None).await.expect("list");
    assert!(listed.items.iter().all(|s| s.id != SYSTEM_STORE_ID));
    // Installing again changes nothing (start-up on every replica).
    pdp.system_access().install().await.expect("install again");
    let models = pdp.system_access();
    models
        .grant("service:a", &role("auditor"))
        .await
        .expect("grant");
    assert_eq!(
        models.roles_of("service:a").await.expect("roles"),
        [role("auditor")]
    );
}

#[tokio::test]
async fn roles_imply_what_the_model_says_and_stay_on_their_store() {
    let (pdp, log, _db) = service().await;
    let access = pdp.system_access();
    let a = pdp.create_store("tenant a").await.expect("store").id;
    let b = pdp.create_store("tenant b").await.expect("store").id;
    access
        .grant("service:root", &role("admin"))
        .await
        .expect("grant");
    access
        .grant("service:app", &role(&format!("store:{a}:writer")))
        .await
        .expect("grant");
    for needed in ["user_admin", "client_admin", "auditor", "admin"] {
        assert!(
            access
                .allows(owner("service:root"), &role(needed))
                .await
                .expect("check")
        );
        assert!(
            !access
                .allows(owner("service:app"), &role(needed))
                .await
                .expect("check")
        );
    }
    for store in [&a, &b] {
        let admin = role(&format!("store:{store}:store_admin"));
        assert!(
            access
                .allows(owner("service:root"), &admin)
                .await
                .expect("check")
        );
    }
    let reader_a = role(&format!("store:{a}:reader"));
    assert!(
        access
            .allows(owner("service:app"), &reader_a)
            .await
            .expect("check")
    );
    assert!(
        !access
            .allows(
                owner("service:app"),
                &role(&format!("store:{a}:store_admin"))
            )
            .await
            .expect("check")
    );
    assert!(
        !access
            .allows(owner("service:app"), &role(&format!("store:{b}:reader")))
            .await
            .expect("check")
    );
    assert_eq!(
        access
            .readable_stores(owner("service:app"))
            .await
            .expect("stores"),
        ReadableStores::Only([a.clone()].into_iter().collect())
    );
    assert_eq!(
        access
            .readable_stores(owner("service:root"))
            .await
            .expect("stores"),
        ReadableStores::All
    );
    assert_eq!(
        log.0.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "permission checks are not decisions of a user store"
    );
    // Forgetting a store removes the roles on it.
    access.forget_store(&a).await.expect("forget");
    assert!(
        !access
            .allows(owner("service:app"), &reader_a)
            .await
            .expect("check")
    );
}

#[tokio::test]
async fn a_key_gets_the_intersection_of_its_scopes_and_its_owner() {
    let (pdp, _, _db) = service().await;
    let access = pdp.system_access();
    let s = pdp.create_store("docs").await.expect("store").id;
    access
        .grant("service:root", &role("admin"))
        .await
        .expect("grant");
    access
        .grant("service:app", &role(&format!("store:{s}:reader")))
        .await
        .expect("grant");
    let scopes = parse_scopes(&[format!("store:{s}:writer")]).expect("scopes");
    let reader = role(&format!("store:{s}:reader"));
    let writer = role(&format!("store:{s}:writer"));
    // An admin's key limited to one store's writer: writer and reader there, nothing else.
    let root_key = Asker {
        subject: "service:root",
        key: Some(("K1", &scopes)),
    };
    assert!(access.allows(root_key, &writer).await.expect("check"));
    assert!(access.allows(root_key, &reader).await.expect("check"));
    assert!(
        !access
            .allows(root_key, &role("admin"))
            .await
            .expect("check")
    );
    assert!(
        !access
            .allows(root_key, &role(&format!("store:{s}:store_admin")))
            .await
            .expect("check")
    );
    // The same scopes on a reader's key: the owner's reader bounds it.
    let app_key = Asker {
        subject: "service:app",
        key: Some(("K2", &scopes)),
    };
    assert!(access.allows(app_key, &reader).await.expect("check"));
    assert!(!access.allows(app_key, &writer).await.expect("check"));
    // A key with the admin scope is no more than its owner either.
    let admin_scope = parse_scopes(&["admin"]).expect("scopes");
    let app_admin_key = Asker {
        subject: "service:app",
        key: Some(("K3", &admin_scope)),
    };
    assert!(
        !access
            .allows(app_admin_key, &role("auditor"))
            .await
            .expect("check")
    );
    assert!(access.allows(app_admin_key, &reader).await.expect("check"));
    assert_eq!(
        access.readable_stores(app_key).await.expect("stores"),
        ReadableStores::Only([s.clone()].into_iter().collect())
    );
}
