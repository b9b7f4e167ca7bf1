//! SQLite allows one trustgate process per database file.

use trustgate_store::{ConnectOptions, connect};
use trustgate_store_api::StoreError;

#[tokio::test]
async fn second_open_of_the_same_file_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("nested/dir/tg.db").display());
    let first = connect(&url, &ConnectOptions::default())
        .await
        .expect("first open");
    first.migrate().await.expect("migrate");

    let err = connect(&url, &ConnectOptions::default())
        .await
        .expect_err("second open must fail");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("in use by another trustgate process")
    );

    first.close().await;
    drop(first);
    let reopened = connect(&url, &ConnectOptions::default())
        .await
        .expect("reopen");
    assert!(
        reopened
            .health()
            .await
            .expect("health")
            .migrations_current()
    );
}

#[tokio::test]
async fn unwritable_directory_is_a_clear_error() {
    let err = connect(
        "sqlite:///proc/trustgate-cannot-write/tg.db",
        &ConnectOptions::default(),
    )
    .await
    .expect_err("cannot create");
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/proc/trustgate-cannot-write"),
        "{err}"
    );
}
