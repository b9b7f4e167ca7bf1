//! A SQLite database written by an earlier release opens with this code, migrates (0005 turns
//! the TEXT times of 0001–0002 into INTEGER microseconds; 0006 turns service tokens into API
//! keys and the admin role into a tuple of the system store) and reads back exactly what that
//! release returned. See `fixtures/README.md` for how the fixture was made.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{AssertSqlSafe, Row as _};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use trustgate_core::TokenDigest;
use trustgate_store::{ConnectOptions, connect};
use trustgate_store_api::{
    KeyOwner, NewApiKey, NewServiceAccount, OnDuplicate, OnMissing, SYSTEM_STORE_ID, Store,
    StoredTuple, TupleFilter, TupleKey, TupleOperation, WriteOptions,
};

const FIXTURE_DB: &[u8] = include_bytes!("../fixtures/release-e19de9d.db");
const RECORDED: &str = include_str!("../fixtures/release-e19de9d.json");

const STRICT: WriteOptions = WriteOptions {
    on_duplicate: OnDuplicate::Error,
    on_missing: OnMissing::Error,
};

fn recorded() -> Value {
    serde_json::from_str(RECORDED).expect("recorded answers are JSON")
}

fn text(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn time(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(text(v), &Rfc3339).expect("an RFC 3339 time")
}

fn from_micros(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).expect("time in range")
}

/// A copy of the fixture in a fresh directory, and its path.
fn copy_fixture(dir: &Path) -> PathBuf {
    let path = dir.join("trustgate.db");
    std::fs::write(&path, FIXTURE_DB).expect("copy fixture");
    path
}

async fn open(path: &Path) -> Arc<dyn Store> {
    connect(
        &format!("sqlite://{}", path.display()),
        &ConnectOptions::default(),
    )
    .await
    .expect("open the old database")
}

/// A plain connection to the file, for what the store does not show.
async fn raw(path: &Path) -> SqlitePool {
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(path))
        .await
        .expect("raw connection")
}

#[tokio::test]
async fn a_database_of_release_e19de9d_reads_back_unchanged() {
    let recorded = recorded();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = copy_fixture(dir.path());
    let store = open(&path).await;

    let health = store.health().await.expect("health");
    assert_eq!(health.applied_version, 4);
    assert!(!health.migrations_current());
    let report = store.migrate().await.expect("migrate");
    assert_eq!((report.before, report.after), (4, health.expected_version));
    assert!(store.health().await.expect("health").migrations_current());

    // Every TEXT time is now the INTEGER microseconds computed independently from its text.
    let pool = raw(&path).await;
    for entry in recorded["raw_times"].as_array().expect("raw times") {
        let (table, column) = (text(&entry["table"]), text(&entry["column"]));
        // 0006 moved the service tokens into api_keys, digest and creation time unchanged.
        let table = if table == "service_tokens" {
            "api_keys"
        } else {
            table
        };
        let key = entry["key"].as_object().expect("key");
        let mut sql =
            format!("SELECT typeof({column}) AS kind, {column} AS value FROM {table} WHERE 1 = 1");
        for name in key.keys() {
            if name == "digest" {
                sql.push_str(&format!(" AND hex({name}) = upper(?)"));
            } else {
                sql.push_str(&format!(" AND {name} = ?"));
            }
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for value in key.values() {
            query = query.bind(text(value).to_owned());
        }
        let row = query.fetch_one(&pool).await.expect("row still there");
        let value: Option<i64> = row.get("value");
        match entry["micros"].as_i64() {
            Some(micros) => {
                assert_eq!(row.get::<String, _>("kind"), "integer", "{entry}");
                assert_eq!(value, Some(micros), "{entry}");
            }
            None => assert_eq!(value, None, "{entry}"),
        }
    }
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .expect("integrity check");
    assert_eq!(integrity, "ok");
    let dangling = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&pool)
        .await
        .expect("foreign key check");
    assert!(dangling.is_empty());
    for table in [
        "service_accounts",
        "api_keys",
        "credential_epoch",
        "fga_stores",
        "authorization_models",
        "relation_tuples",
        "tuple_changes",
    ] {
        let sql: String =
            sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?")
                .bind(table)
                .fetch_one(&pool)
                .await
                .expect("table exists");
        assert!(sql.contains("STRICT"), "{sql}");
        assert!(!sql.contains("_v5"), "{sql}");
    }
    let gone: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name LIKE 'service_tokens%'")
            .fetch_one(&pool)
            .await
            .expect("lookup");
    assert_eq!(gone, 0, "service_tokens and its index are dropped");
    for index in [
        "api_keys_service_account",
        "api_keys_user",
        "relation_tuples_user",
        "tuple_changes_type",
    ] {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?",
        )
        .bind(index)
        .fetch_one(&pool)
        .await
        .expect("index lookup");
        assert_eq!(n, 1, "{index}");
    }
    pool.close().await;

    // The bootstrap administrator, found by the digest of the token the release printed: the
    // token is now an API key with the scope "admin", its id derived from the digest.
    let token = text(&recorded["admin_token"]);
    let digest = TokenDigest::of(token);
    let verified = store
        .authenticate_api_key(&digest)
        .await
        .expect("lookup")
        .expect("the bootstrap token still authenticates");
    assert_eq!(verified.key.scopes, ["admin"]);
    let key_id: String = digest.as_bytes()[..13]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(verified.key.id, key_id);
    assert_eq!(verified.key.id.len(), 26);
    assert_eq!(verified.key.revoked_at, None);
    assert_eq!(verified.key.expires_at, None);
    assert_eq!(verified.key.rotated_from, None);
    let KeyOwner::Service(account_id) = &verified.key.owner else {
        panic!("a service account's key: {:?}", verified.key.owner);
    };
    let account = store
        .get_service_account(account_id)
        .await
        .expect("get")
        .expect("the account");
    assert_eq!(verified.owner_name, account.name);
    assert_eq!(account.disabled_at, None);
    assert_eq!(account.owner, None);
    assert_eq!(account.description, "");
    assert_eq!(store.credential_epoch().await.expect("epoch"), 0);
    assert_eq!(
        store.list_api_keys(None).await.expect("keys"),
        vec![verified.key.clone()]
    );
    let created = recorded["raw_times"]
        .as_array()
        .expect("raw times")
        .iter()
        .find(|e| e["table"] == "service_accounts" && e["column"] == "created_at")
        .expect("account time");
    assert_eq!(
        account.created_at,
        from_micros(created["micros"].as_i64().expect("µs"))
    );
    assert_eq!(
        store
            .find_service_account(&account.name)
            .await
            .expect("find"),
        Some(account.clone())
    );

    // The system store holds the administrator's role, with a changelog the PDP's index loads.
    let system = store
        .get_fga_store(SYSTEM_STORE_ID)
        .await
        .expect("get")
        .expect("the system store");
    assert_eq!(system.name, "trustgate system");
    let role = TupleKey::new("system:trustgate", "admin", format!("service:{account_id}"));
    let loaded = store.load_tuples(SYSTEM_STORE_ID).await.expect("load");
    assert_eq!(loaded.tuples, vec![role.clone()]);
    assert_eq!(loaded.seq, 1);
    let (system_changes, _) = store
        .read_changes(SYSTEM_STORE_ID, None, None, 100, None)
        .await
        .expect("changes");
    assert_eq!(system_changes.len(), 1);
    assert_eq!(system_changes[0].seq, 1);
    assert_eq!(system_changes[0].operation, TupleOperation::Write);
    assert_eq!(system_changes[0].tuple, role);
    assert_eq!(
        store
            .changes_since(SYSTEM_STORE_ID, 0, 100)
            .await
            .expect("since"),
        system_changes
    );
    assert_eq!(store.store_seq(SYSTEM_STORE_ID).await.expect("seq"), 1);
    assert!(
        store
            .latest_model(SYSTEM_STORE_ID)
            .await
            .expect("model")
            .is_none()
    );

    // The relationship stores, as listed and read by the release, after the system store
    // (which the store lists like any other; the PDP service hides it).
    let (stores, next) = store.list_fga_stores(100, None, None).await.expect("list");
    assert_eq!(next, None);
    assert_eq!(stores[0].id, SYSTEM_STORE_ID);
    let stores = &stores[1..];
    let listed = recorded["stores"]["stores"].as_array().expect("stores");
    assert_eq!(stores.len(), listed.len());
    for (got, want) in stores.iter().zip(listed) {
        assert_eq!(got.id, text(&want["id"]));
        assert_eq!(got.name, text(&want["name"]));
        assert_eq!(got.created_at, time(&want["created_at"]));
        assert_eq!(got.updated_at, time(&want["updated_at"]));
        assert_eq!(got.deleted_at, None);
    }
    let store_id = text(&recorded["store"]["id"]);
    let got = store
        .get_fga_store(store_id)
        .await
        .expect("get")
        .expect("store");
    assert_eq!(got.name, text(&recorded["store"]["name"]));
    assert_eq!(got.created_at, time(&recorded["store"]["created_at"]));
    assert_eq!(got.updated_at, time(&recorded["store"]["updated_at"]));
    assert_eq!(recorded["deleted_store_status"], 404);
    let deleted_id = text(&recorded["created"]["deleted"]["id"]);
    assert_eq!(store.get_fga_store(deleted_id).await.expect("get"), None);

    // The model, with its condition, as the release served it.
    let served = &recorded["model"]["authorization_model"];
    let model_id = text(&served["id"]);
    let model = store
        .get_model(store_id, model_id)
        .await
        .expect("get model")
        .expect("model");
    assert_eq!(model.schema_version, text(&served["schema_version"]));
    let stored = model.model_json.as_object().expect("model object");
    let served = served.as_object().expect("served model");
    for (field, value) in served.iter().filter(|(k, _)| *k != "id") {
        assert_eq!(stored.get(field), Some(value), "{field}");
    }
    assert!(stored.keys().all(|k| k == "id" || served.contains_key(k)));
    assert_eq!(
        store
            .latest_model(store_id)
            .await
            .expect("latest")
            .map(|m| m.id),
        Some(model_id.to_owned())
    );

    // The tuples with their conditions, contexts and times.
    let expected_tuples = |answer: &Value| -> Vec<StoredTuple> {
        answer["tuples"]
            .as_array()
            .expect("tuples")
            .iter()
            .map(|t| StoredTuple {
                tuple: serde_json::from_value(t["key"].clone()).expect("tuple key"),
                timestamp: time(&t["timestamp"]),
            })
            .collect()
    };
    let (tuples, next) = store
        .read_tuples(store_id, &TupleFilter::default(), 100, None)
        .await
        .expect("read");
    assert_eq!(next, None);
    assert_eq!(tuples, expected_tuples(&recorded["read"]));
    let other_id = text(&recorded["other_store"]["id"]);
    let (other, _) = store
        .read_tuples(other_id, &TupleFilter::default(), 100, None)
        .await
        .expect("read other");
    assert_eq!(other, expected_tuples(&recorded["other_read"]));
    let snapshot = store.load_tuples(store_id).await.expect("load");
    assert_eq!(
        snapshot.tuples,
        tuples.iter().map(|t| t.tuple.clone()).collect::<Vec<_>>()
    );

    // The changelog.
    let served_changes = recorded["changes"]["changes"].as_array().expect("changes");
    let (changes, _) = store
        .read_changes(store_id, None, None, 100, None)
        .await
        .expect("changes");
    assert_eq!(changes.len(), served_changes.len());
    for (i, (got, want)) in changes.iter().zip(served_changes).enumerate() {
        let tuple: TupleKey = serde_json::from_value(want["tuple_key"].clone()).expect("key");
        let operation = match text(&want["operation"]) {
            "TUPLE_OPERATION_WRITE" => TupleOperation::Write,
            "TUPLE_OPERATION_DELETE" => TupleOperation::Delete,
            other => panic!("operation {other}"),
        };
        assert_eq!(got.seq, i64::try_from(i).expect("small") + 1);
        assert_eq!(got.tuple, tuple);
        assert_eq!(got.operation, operation);
        assert_eq!(got.timestamp, time(&want["timestamp"]));
    }
    assert_eq!(snapshot.seq, changes.last().expect("changes").seq);
    assert_eq!(
        store.changes_since(store_id, 0, 100).await.expect("since"),
        changes
    );

    // A second migration does nothing.
    let again = store.migrate().await.expect("migrate again");
    assert_eq!((again.before, again.after), (report.after, report.after));

    // And the upgraded database takes new writes.
    let now = datetime!(2027-01-02 03:04:05.678901 UTC);
    let written = store
        .write_tuples(
            store_id,
            &[TupleKey::new("document:new", "viewer", "user:zoe")],
            &[TupleKey::new("document:plan", "owner", "user:anne")],
            STRICT,
            now,
        )
        .await
        .expect("write after the upgrade");
    assert_eq!(written.seq, snapshot.seq + 2);
    let (page, _) = store
        .read_tuples(
            store_id,
            &TupleFilter {
                object_type: Some("document".into()),
                object_id: Some("new".into()),
                ..TupleFilter::default()
            },
            10,
            None,
        )
        .await
        .expect("read new");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].timestamp, now);
    let fresh = store
        .create_fga_store("01KZZZZZZZZZZZZZZZZZZZZZZZ", "after upgrade", now)
        .await
        .expect("create store");
    assert_eq!(
        store.get_fga_store(&fresh.id).await.expect("get"),
        Some(fresh)
    );
    assert!(
        store
            .delete_fga_store(other_id, now)
            .await
            .expect("delete store")
    );
    let second = TokenDigest::of("a second admin token");
    let scopes = vec!["admin".to_owned()];
    let added = store
        .ensure_bootstrap_key(
            &NewServiceAccount {
                id: "sa-new",
                name: &account.name,
                owner: None,
                description: "",
            },
            &NewApiKey {
                id: "01KZZZZZZZZZZZZZZZZZZZZZZZ",
                digest: &second,
                description: "after upgrade",
                scopes: &scopes,
                rate_limit_per_minute: None,
                expires_at: None,
            },
            now,
        )
        .await
        .expect("add a key");
    assert!(!added.account_created && added.key_created);
    assert_eq!(added.account, account);
    assert!(
        store
            .authenticate_api_key(&second)
            .await
            .expect("auth")
            .is_some()
    );
    // The old token can be revoked like any key.
    store
        .revoke_api_key(&key_id, now)
        .await
        .expect("revoke")
        .expect("the migrated key");
    assert_eq!(
        store.authenticate_api_key(&digest).await.expect("auth"),
        None
    );
    assert_eq!(store.credential_epoch().await.expect("epoch"), 1);
    store.close().await;
}

#[tokio::test]
async fn the_time_conversion_is_exact_for_every_text_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = copy_fixture(dir.path());
    // Times as sqlx may have written them (RFC 3339 with or without a fraction, any offset, up
    // to nine fraction digits), plus forms SQLite's date functions also read.
    let cases = [
        ("2026-01-01T00:00:00Z", datetime!(2026-01-01 00:00:00 UTC)),
        (
            "2026-01-01T00:00:00.5Z",
            datetime!(2026-01-01 00:00:00.5 UTC),
        ),
        // Floating point would round this up into the next second.
        (
            "2026-06-30T23:59:59.9999999Z",
            datetime!(2026-06-30 23:59:59.999999 UTC),
        ),
        (
            "2026-11-23T10:00:00.123456789Z",
            datetime!(2026-11-23 10:00:00.123456 UTC),
        ),
        (
            "2026-01-01T01:30:00.000001+01:30",
            datetime!(2026-01-01 00:00:00.000001 UTC),
        ),
        (
            "1969-12-31T23:59:59.25-00:30",
            datetime!(1970-01-01 00:29:59.25 UTC),
        ),
        (
            "1960-02-29T12:00:00.000100Z",
            datetime!(1960-02-29 12:00:00.0001 UTC),
        ),
        (
            "2026-01-01 12:00:00.123+00:00",
            datetime!(2026-01-01 12:00:00.123 UTC),
        ),
    ];
    let pool = raw(&path).await;
    for (i, (text, _)) in cases.iter().enumerate() {
        sqlx::query(
            "INSERT INTO fga_stores (id, name, last_seq, created_at, updated_at, deleted_at) \
             VALUES (?, ?, 0, ?, ?, NULL)",
        )
        .bind(format!("case-{i}"))
        .bind(*text)
        .bind(*text)
        .bind(*text)
        .execute(&pool)
        .await
        .expect("insert an old-style row");
    }
    pool.close().await;

    let store = open(&path).await;
    store.migrate().await.expect("migrate");
    for (i, (text, want)) in cases.iter().enumerate() {
        let got = store
            .get_fga_store(&format!("case-{i}"))
            .await
            .expect("get")
            .expect("store");
        assert_eq!(got.created_at, *want, "{text}");
        assert_eq!(got.updated_at, *want, "{text}");
    }
}

#[tokio::test]
async fn an_unreadable_time_fails_the_migration_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = copy_fixture(dir.path());
    let pool = raw(&path).await;
    sqlx::query(
        "INSERT INTO fga_stores (id, name, last_seq, created_at, updated_at) \
         VALUES ('bad', 'bad', 0, 'yesterday', 'yesterday')",
    )
    .execute(&pool)
    .await
    .expect("insert");
    pool.close().await;

    let store = open(&path).await;
    store
        .migrate()
        .await
        .expect_err("a time that does not parse stops the migration");
    assert_eq!(
        store.health().await.expect("health").applied_version,
        4,
        "the failed migration is rolled back"
    );
}
