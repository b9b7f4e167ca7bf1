//! A PostgreSQL database at schema version 5 (built by applying migrations 0001–0005 as they
//! are) migrates to version 6 without losing access: the service tokens authenticate as API keys
//! with the scope "admin", and every former administrator holds the admin role in the system
//! store, with a changelog the PDP's index loads. Runs when `TRUSTGATE_TEST_DATABASE_URL` is set.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgConnectOptions;
use time::macros::datetime;
use trustgate_core::TokenDigest;
use trustgate_store::postgres::PostgresStore;
use trustgate_store::testing::postgres_url;
use trustgate_store::{ConnectOptions, connect};
use trustgate_store_api::{KeyOwner, SYSTEM_STORE_ID, TupleKey, TupleOperation};

/// Drops the schema when the test ends, passed or not.
struct SchemaGuard {
    url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let cleanup = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime")
                .block_on(PostgresStore::drop_schema(&url, &schema))
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("could not drop test schema: {e}");
        }
    }
}

/// The migrations up to `version`, copied unchanged (so their checksums are the ones the store
/// embeds) into `dir`.
async fn migrator_up_to(version: i64, dir: &Path) -> Migrator {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    for entry in std::fs::read_dir(&source).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let number: i64 = name[..4].parse().expect("numbered migration");
        if number <= version {
            std::fs::copy(&path, dir.join(&name)).expect("copy migration");
        }
    }
    Migrator::new(dir).await.expect("migrator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_5_database_upgrades_without_losing_access() {
    let Some(url) = postgres_url("postgres_upgrade") else {
        return;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let schema = format!("tg_upgrade_{}_{nanos}", std::process::id());
    let _guard = SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let options: PgConnectOptions = url.parse().expect("url");
    let admin = PgPool::connect_with(options.clone())
        .await
        .expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("schema");
    admin.close().await;
    let pool = PgPool::connect_with(options.options([("search_path", schema.as_str())]))
        .await
        .expect("connect to schema");

    // Version 5, and what a release of that version wrote: two administrators (one disabled),
    // their tokens, and a user store with a tuple.
    let dir = tempfile::tempdir().expect("tempdir");
    migrator_up_to(5, dir.path())
        .await
        .run(&pool)
        .await
        .expect("migrations 1-5");
    let created = datetime!(2026-11-23 10:00:00.123456 UTC);
    let accounts = [
        ("01KADMIN00000000000000000B", "admin", None),
        ("01KADMIN00000000000000000A", "ops", Some(created)),
    ];
    for (id, name, disabled_at) in accounts {
        sqlx::query(
            "INSERT INTO service_accounts (id, name, role, created_at, disabled_at) \
             VALUES ($1, $2, 'admin', $3, $4)",
        )
        .bind(id)
        .bind(name)
        .bind(created)
        .bind(disabled_at)
        .execute(&pool)
        .await
        .expect("account");
    }
    let token = "tg_admin_c2VjcmV0IHRva2VuIG9mIHRoZSBvbGQgcmVsZWFzZQ";
    let digest = TokenDigest::of(token);
    let ops_digest = TokenDigest::of("tg_ops_token");
    for (d, account, label) in [
        (&digest, accounts[0].0, "bootstrap"),
        (&ops_digest, accounts[1].0, "ops"),
    ] {
        sqlx::query(
            "INSERT INTO service_tokens (digest, account_id, label, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(d.as_bytes().as_slice())
        .bind(account)
        .bind(label)
        .bind(created)
        .execute(&pool)
        .await
        .expect("token");
    }
    sqlx::query(
        "INSERT INTO fga_stores (id, name, last_seq, created_at, updated_at) \
         VALUES ('01KUSERSTORE00000000000000', 'user store', 1, $1, $1)",
    )
    .bind(created)
    .execute(&pool)
    .await
    .expect("user store");
    for sql in [
        "INSERT INTO relation_tuples (store_id, object_type, object_id, relation, tuple_user, \
         written_at) VALUES ('01KUSERSTORE00000000000000', 'doc', '1', 'viewer', 'user:anne', $1)",
        "INSERT INTO tuple_changes (store_id, seq, operation, object_type, object_id, relation, \
         tuple_user, changed_at) VALUES ('01KUSERSTORE00000000000000', 1, 'write', 'doc', '1', \
         'viewer', 'user:anne', $1)",
    ] {
        sqlx::query(sql)
            .bind(created)
            .execute(&pool)
            .await
            .expect("tuple");
    }

    // The store migrates it to version 6.
    let store = connect(
        &url,
        &ConnectOptions {
            postgres_schema: Some(schema.clone()),
            max_connections: 2,
            ..ConnectOptions::default()
        },
    )
    .await
    .expect("open");
    let report = store.migrate().await.expect("migrate");
    let expected = store.health().await.expect("health").expected_version;
    assert_eq!((report.before, report.after), (5, expected));
    assert!(store.health().await.expect("health").migrations_current());

    // The old token authenticates as an API key with the scope "admin".
    let verified = store
        .authenticate_api_key(&digest)
        .await
        .expect("auth")
        .expect("the old token still authenticates");
    let key_id: String = digest.as_bytes()[..13]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(verified.key.id, key_id);
    assert_eq!(verified.key.scopes, ["admin"]);
    assert_eq!(verified.key.description, "bootstrap");
    assert_eq!(verified.key.created_at, created);
    assert_eq!(
        verified.key.owner,
        KeyOwner::Service(accounts[0].0.to_owned())
    );
    assert_eq!(verified.owner_name, "admin");
    // The disabled account's token is migrated but authenticates nothing.
    assert_eq!(
        store.authenticate_api_key(&ops_digest).await.expect("auth"),
        None
    );
    let ops = store
        .get_service_account(accounts[1].0)
        .await
        .expect("get")
        .expect("ops");
    assert_eq!(ops.disabled_at, Some(created));
    assert_eq!((ops.owner, ops.description.as_str()), (None, ""));
    assert_eq!(store.list_api_keys(None).await.expect("keys").len(), 2);
    assert_eq!(store.credential_epoch().await.expect("epoch"), 0);

    // Both former administrators hold the role in the system store, seqs 1 and 2 in id order.
    let role = |id: &str| TupleKey::new("system:trustgate", "admin", format!("service:{id}"));
    let snapshot = store.load_tuples(SYSTEM_STORE_ID).await.expect("load");
    assert_eq!(snapshot.seq, 2);
    let mut tuples = snapshot.tuples.clone();
    tuples.sort_by(|a, b| a.user.cmp(&b.user));
    assert_eq!(tuples, vec![role(accounts[1].0), role(accounts[0].0)]);
    let changes = store
        .changes_since(SYSTEM_STORE_ID, 0, 100)
        .await
        .expect("changes");
    assert_eq!(changes.len(), 2);
    for (i, (change, id)) in changes
        .iter()
        .zip([accounts[1].0, accounts[0].0])
        .enumerate()
    {
        assert_eq!(change.seq, i64::try_from(i).expect("small") + 1);
        assert_eq!(change.operation, TupleOperation::Write);
        assert_eq!(change.tuple, role(id));
    }
    let system = store
        .get_fga_store(SYSTEM_STORE_ID)
        .await
        .expect("get")
        .expect("system store");
    assert_eq!(system.name, "trustgate system");
    assert!(
        store
            .latest_model(SYSTEM_STORE_ID)
            .await
            .expect("model")
            .is_none()
    );

    // User stores are as they were.
    let (stores, _) = store.list_fga_stores(10, None, None).await.expect("list");
    assert_eq!(
        stores.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [SYSTEM_STORE_ID, "01KUSERSTORE00000000000000"]
    );
    let user_store = store
        .load_tuples("01KUSERSTORE00000000000000")
        .await
        .expect("load");
    assert_eq!(user_store.seq, 1);
    assert_eq!(
        user_store.tuples,
        vec![TupleKey::new("doc:1", "viewer", "user:anne")]
    );

    // The old schema is gone: no service_tokens, no role column.
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 \
         AND (table_name = 'service_tokens' OR (table_name = 'service_accounts' \
         AND column_name = 'role'))",
    )
    .bind(&schema)
    .fetch_one(&pool)
    .await
    .expect("columns");
    assert_eq!(leftovers, 0);
    pool.close().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_database_gets_an_empty_system_store() {
    let Some(db) = trustgate_store::testing::TestDatabase::postgres("fresh system store").await
    else {
        return;
    };
    assert_eq!(
        db.store.live_store_seqs().await.expect("live"),
        vec![(SYSTEM_STORE_ID.to_owned(), 0)]
    );
    let snapshot = db.store.load_tuples(SYSTEM_STORE_ID).await.expect("load");
    assert!(snapshot.tuples.is_empty());
    assert_eq!(snapshot.seq, 0);
    assert_eq!(db.store.credential_epoch().await.expect("epoch"), 0);
}
