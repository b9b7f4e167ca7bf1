//! SQLite under storage faults: a full disk (simulated with `PRAGMA max_page_count`, which fails
//! writes with the same `SQLITE_FULL` a full disk gives) and a read-only database. Writes fail
//! with a typed outage and write nothing, reads keep working, the file stays intact, and writes
//! work again once space is freed.

use std::path::Path;

use serde_json::Map;
use time::OffsetDateTime;
use trustgate_store::{ConnectOptions, connect};
use trustgate_store_api::{
    AuditEvent, OnDuplicate, OnMissing, Outage, Store, StoreError, TupleFilter, TupleKey,
    TupleWriteError, WriteOptions,
};

const STRICT: WriteOptions = WriteOptions {
    on_duplicate: OnDuplicate::Error,
    on_missing: OnMissing::Error,
};

/// A migrated database file with one relationship store, closed again; returns its URL.
async fn prepared(dir: &Path) -> String {
    let url = format!("sqlite://{}", dir.join("tg.db").display());
    let store = connect(&url, &ConnectOptions::default())
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    store
        .create_fga_store("s1", "faults", OffsetDateTime::now_utc())
        .await
        .expect("store");
    store.close().await;
    url
}

fn pages(dir: &Path) -> u32 {
    let bytes = std::fs::metadata(dir.join("tg.db")).expect("db").len();
    u32::try_from(bytes / 4096).expect("small")
}

fn batch(n: usize) -> Vec<TupleKey> {
    (0..10)
        .map(|i| {
            TupleKey::new(
                format!("doc:{n}-{i}-{}", "x".repeat(100)),
                "viewer",
                "user:a",
            )
        })
        .collect()
}

fn audit(i: usize) -> AuditEvent {
    AuditEvent {
        id: trustgate_core::id::new_ulid(OffsetDateTime::now_utc()),
        at: OffsetDateTime::now_utc(),
        chain: trustgate_store_api::AuditChain::Streamed,
        kind: "authorization_decision".into(),
        outcome: "success".into(),
        actor: Some(format!("user:{i}")),
        user_id: None,
        ip: None,
        user_agent: None,
        request_id: Some("r".repeat(60)),
        resource: Some(format!("document:{i}")),
        detail: Map::new(),
    }
}

async fn all_tuples(store: &dyn Store) -> Vec<TupleKey> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let (page, next) = store
            .read_tuples("s1", &TupleFilter::default(), 100, token.as_deref())
            .await
            .expect("reads keep working");
        out.extend(page.into_iter().map(|t| t.tuple));
        match next {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

async fn integrity(url: &str) -> String {
    use sqlx::Connection as _;
    let path = url.trim_start_matches("sqlite://");
    let mut c = sqlx::sqlite::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(path),
    )
    .await
    .expect("connect");
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut c)
        .await
        .expect("integrity_check");
    c.close().await.expect("close");
    verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_whole_keeps_reads_and_recovers_when_space_is_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = prepared(dir.path()).await;
    let options = ConnectOptions {
        sqlite_max_pages: Some(pages(dir.path()) + 40),
        ..ConnectOptions::default()
    };
    let store = connect(&url, &options)
        .await
        .expect("reopen with a page limit");

    // Fill the space with purgeable audit events until the database is full.
    let mut full = None;
    for i in 0..10_000 {
        let events: Vec<AuditEvent> = (0..50).map(|j| audit(i * 50 + j)).collect();
        if let Err(e) = store.append_audits(&events).await {
            full = Some(e);
            break;
        }
    }
    let full = full.expect("the page limit is reached");
    assert!(matches!(full, StoreError::StorageFull(_)), "{full:?}");
    assert_eq!(full.outage(), Some(Outage::StorageFull));

    // Tuple batches until one no longer fits; each either lands whole or not at all.
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for n in 0..1000 {
        let writes = batch(n);
        match store
            .write_tuples("s1", &writes, &[], STRICT, OffsetDateTime::now_utc())
            .await
        {
            Ok(_) => acknowledged.extend(writes),
            Err(e) => {
                refused = Some((writes, e));
                break;
            }
        }
    }
    let (lost, err) = refused.expect("a batch is refused");
    assert!(
        matches!(err, TupleWriteError::Store(StoreError::StorageFull(_))),
        "{err:?}"
    );
    let stored = all_tuples(store.as_ref()).await;
    assert!(lost.iter().all(|t| !stored.contains(t)), "half a batch");
    assert_eq!(stored.len(), acknowledged.len());
    assert!(store.get_fga_store("s1").await.expect("read").is_some());

    // Space returns (retention purges the audit events): the same store writes again.
    let chain = trustgate_store_api::AuditChain::Streamed;
    let head = store.audit_head(chain).await.expect("head");
    let purged = store
        .truncate_audit(&trustgate_store_api::AuditAnchor {
            chain,
            number: 1,
            seq: head.seq,
            hash: head.hash,
            kind: trustgate_store_api::AnchorKind::Truncation,
            at: OffsetDateTime::now_utc(),
            kid: "kid".into(),
            jws: "header.claims.signature".into(),
            sealed_key: vec![1; 32],
        })
        .await
        .expect("a delete needs no new pages");
    assert!(purged > 0);
    store
        .write_tuples("s1", &lost, &[], STRICT, OffsetDateTime::now_utc())
        .await
        .expect("writes work again");
    assert_eq!(
        all_tuples(store.as_ref()).await.len(),
        acknowledged.len() + lost.len()
    );
    store.close().await;
    assert_eq!(integrity(&url).await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_refuses_writes_and_keeps_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = prepared(dir.path()).await;
    {
        let store = connect(&url, &ConnectOptions::default())
            .await
            .expect("open");
        store
            .write_tuples("s1", &batch(0), &[], STRICT, OffsetDateTime::now_utc())
            .await
            .expect("write");
        store.close().await;
    }
    // `mode=ro` is how a read-only file behaves even for root, who ignores permission bits.
    let store = connect(&format!("{url}?mode=ro"), &ConnectOptions::default())
        .await
        .expect("a read-only database opens");
    let err = store
        .write_tuples("s1", &batch(1), &[], STRICT, OffsetDateTime::now_utc())
        .await
        .expect_err("read-only");
    match err {
        TupleWriteError::Store(e) => {
            assert_eq!(e.outage(), Some(Outage::ReadOnly), "{e:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(all_tuples(store.as_ref()).await, batch(0));
    store.close().await;
    assert_eq!(integrity(&url).await, "ok");
}
