//! API key verification over the real store: the cache honours revocation through the
//! credential epoch, expiry to the second, per-key token buckets, batched last use, and refusals
//! that never say why.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use time::macros::datetime;
use trustgate_authn::api_keys::{ApiKeys, ApiKeysConfig, KeyRefusal, KeySpec, format};
use trustgate_core::{ManualClock, TokenDigest};
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{
    ApiKey, ApiKeyStore, KeyOwner, KeyUse, NewApiKey, NewServiceAccount, StoreError, VerifiedKey,
};

const T0: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

/// The real store, counting how often a key is looked up.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn trustgate_store_api::Store>,
    lookups: AtomicUsize,
}

#[async_trait]
impl ApiKeyStore for Counting {
    async fn create_api_key(
        &self,
        owner: &KeyOwner,
        key: &NewApiKey<'_>,
        now: OffsetDateTime,
    ) -> Result<ApiKey, StoreError> {
        self.inner.create_api_key(owner, key, now).await
    }
    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        self.inner.get_api_key(id).await
    }
    async fn list_api_keys(&self, owner: Option<&KeyOwner>) -> Result<Vec<ApiKey>, StoreError> {
        self.inner.list_api_keys(owner).await
    }
    async fn revoke_api_key(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ApiKey>, StoreError> {
        self.inner.revoke_api_key(id, now).await
    }
    async fn rotate_api_key(
        &self,
        old_id: &str,
        new: &NewApiKey<'_>,
        old_valid_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<(ApiKey, ApiKey)>, StoreError> {
        self.inner
            .rotate_api_key(old_id, new, old_valid_until, now)
            .await
    }
    async fn authenticate_api_key(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<VerifiedKey>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.authenticate_api_key(digest).await
    }
    async fn record_api_key_uses(&self, uses: &[KeyUse]) -> Result<(), StoreError> {
        self.inner.record_api_key_uses(uses).await
    }
    async fn credential_epoch(&self) -> Result<i64, StoreError> {
        self.inner.credential_epoch().await
    }
}

struct Fixture {
    db: TestDatabase,
    store: Arc<Counting>,
    clock: ManualClock,
    owner: KeyOwner,
}

async fn fixture() -> Fixture {
    let db = TestDatabase::sqlite_in_memory().await;
    db.store
        .create_service_account(
            &NewServiceAccount {
                id: "01JF3Z9Q7W8X2Y4Z6A8B0C2D4E",
                name: "app",
                owner: None,
                description: "",
            },
            T0,
        )
        .await
        .expect("service account");
    Fixture {
        store: Arc::new(Counting {
            inner: db.store.clone(),
            lookups: AtomicUsize::new(0),
        }),
        db,
        clock: ManualClock::new(T0),
        owner: KeyOwner::Service("01JF3Z9Q7W8X2Y4Z6A8B0C2D4E".to_owned()),
    }
}

impl Fixture {
    fn keys(&self) -> ApiKeys {
        ApiKeys::new(
            self.store.clone(),
            Arc::new(self.clock.clone()),
            ApiKeysConfig::default(),
        )
    }

    fn lookups(&self) -> usize {
        self.store.lookups.load(Ordering::SeqCst)
    }
}

fn spec(scopes: &[&str]) -> KeySpec {
    KeySpec {
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        ..KeySpec::default()
    }
}

#[tokio::test]
async fn a_verified_key_is_cached_until_the_credential_epoch_moves() {
    let f = fixture().await;
    let here = f.keys();
    let there = f.keys();
    let issued = here
        .issue(&f.owner, &spec(&["auditor"]))
        .await
        .expect("issue");
    let key = issued.key.expose();
    there.sync().await.expect("sync");
    let identity = there.verify(key, Some("192.0.2.1")).await.expect("valid");
    assert_eq!(
        identity.principal.subject(),
        format!("service:{}", f.owner.id())
    );
    assert_eq!(identity.scopes, ["auditor"]);
    let before = f.lookups();
    there.verify(key, None).await.expect("cached");
    assert_eq!(
        f.lookups(),
        before,
        "the second verification is served from the cache"
    );

    here.revoke(&issued.record.id).await.expect("revoke");
    // This replica learns of it by its next epoch poll; then the key is gone.
    there.sync().await.expect("sync");
    assert!(matches!(
        there.verify(key, None).await,
        Err(KeyRefusal::Invalid)
    ));
    assert!(matches!(
        here.verify(key, None).await,
        Err(KeyRefusal::Invalid)
    ));
}

#[tokio::test]
async fn without_a_recent_epoch_the_cache_is_not_trusted() {
    let f = fixture().await;
    let keys = f.keys();
    let issued = keys
        .issue(&f.owner, &spec(&["auditor"]))
        .await
        .expect("issue");
    // Never synced: every verification asks the database.
    keys.verify(issued.key.expose(), None).await.expect("valid");
    keys.verify(issued.key.expose(), None).await.expect("valid");
    assert_eq!(f.lookups(), 2);
}

#[tokio::test]
async fn expiry_is_exact_to_the_second() {
    let f = fixture().await;
    let keys = f.keys();
    let issued = keys
        .issue(
            &f.owner,
            &KeySpec {
                expires_at: Some(T0 + time::Duration::hours(1)),
                ..spec(&["auditor"])
            },
        )
        .await
        .expect("issue");
    f.clock.advance(time::Duration::seconds(3599));
    keys.verify(issued.key.expose(), None)
        .await
        .expect("valid a second before");
    f.clock.advance(time::Duration::seconds(1));
    assert!(matches!(
        keys.verify(issued.key.expose(), None).await,
        Err(KeyRefusal::Invalid)
    ));
}

#[tokio::test]
async fn rotation_overlap_ends_to_the_second() {
    let f = fixture().await;
    let keys = f.keys();
    let old = keys
        .issue(&f.owner, &spec(&["auditor"]))
        .await
        .expect("issue");
    let (new, previous) = keys
        .rotate(&old.record.id, Duration::from_secs(600), None)
        .await
        .expect("rotate")
        .expect("rotated");
    assert_eq!(previous.expires_at, Some(T0 + time::Duration::minutes(10)));
    assert_eq!(
        new.record.rotated_from.as_deref(),
        Some(old.record.id.as_str())
    );
    f.clock.advance(time::Duration::seconds(599));
    keys.verify(old.key.expose(), None)
        .await
        .expect("old key in the overlap");
    f.clock.advance(time::Duration::seconds(1));
    assert!(keys.verify(old.key.expose(), None).await.is_err());
    keys.verify(new.key.expose(), None).await.expect("new key");
}

#[tokio::test]
async fn the_token_bucket_refills_at_the_configured_rate() {
    let f = fixture().await;
    let keys = f.keys();
    let issued = keys
        .issue(
            &f.owner,
            &KeySpec {
                rate_limit_per_minute: Some(60),
                ..spec(&["auditor"])
            },
        )
        .await
        .expect("issue");
    for _ in 0..60 {
        keys.verify(issued.key.expose(), None)
            .await
            .expect("within the limit");
    }
    match keys.verify(issued.key.expose(), None).await {
        Err(KeyRefusal::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
        other => panic!("expected a rate limit, got {other:?}"),
    }
    f.clock.advance(time::Duration::seconds(1));
    keys.verify(issued.key.expose(), None)
        .await
        .expect("one token refilled");
    assert!(keys.verify(issued.key.expose(), None).await.is_err());
}

#[tokio::test]
async fn uses_are_noted_in_memory_and_written_in_one_batch() {
    let f = fixture().await;
    let keys = f.keys();
    let issued = keys
        .issue(&f.owner, &spec(&["auditor"]))
        .await
        .expect("issue");
    for _ in 0..5 {
        keys.verify(issued.key.expose(), Some("192.0.2.7"))
            .await
            .expect("valid");
    }
    let stored =
        f.db.store
            .get_api_key(&issued.record.id)
            .await
            .expect("get")
            .expect("key");
    assert_eq!(stored.last_used_at, None, "no write per request");
    f.clock.advance(time::Duration::seconds(2));
    keys.verify(issued.key.expose(), Some("192.0.2.8"))
        .await
        .expect("valid");
    keys.flush().await.expect("flush");
    let stored =
        f.db.store
            .get_api_key(&issued.record.id)
            .await
            .expect("get")
            .expect("key");
    assert_eq!(stored.last_used_at, Some(T0 + time::Duration::seconds(2)));
    assert_eq!(stored.last_used_ip.as_deref(), Some("192.0.2.8"));
}

#[tokio::test]
async fn a_bad_checksum_is_refused_without_a_lookup_and_every_refusal_is_the_same() {
    let f = fixture().await;
    let keys = f.keys();
    let issued = keys
        .issue(&f.owner, &spec(&["auditor"]))
        .await
        .expect("issue");
    let mut broken = issued.key.expose().to_owned();
    let last = broken.pop().expect("non-empty");
    broken.push(if last == 'a' { 'b' } else { 'a' });
    assert!(matches!(
        keys.verify(&broken, None).await,
        Err(KeyRefusal::Invalid)
    ));
    assert_eq!(
        f.lookups(),
        0,
        "a checksum failure never reaches the database"
    );

    let same_id_other_secret = format::generate("live", &issued.record.id);
    let unknown = format::generate("live", "01JF3Z9Q7W8X2Y4Z6A8B0C2D4F");
    for token in [same_id_other_secret.expose(), unknown.expose(), "", "x"] {
        let refusal = keys.verify(token, None).await.expect_err("refused");
        assert_eq!(refusal.to_string(), "the API key is not valid");
    }
    assert!(keys.verify(&"a".repeat(5000), None).await.is_err());
}
