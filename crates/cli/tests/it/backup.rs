//! `trustgate backup` and `trustgate restore` as processes: a checked snapshot taken while the
//! server writes, a restore refused while it runs, a corrupt or foreign backup refused with
//! nothing changed, and a restored data directory serving what was backed up (and not what
//! came after), with the replaced files kept.

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};

use crate::support::{Running, failed_with, http, ok_json, run, trustgate};

fn command(args: &[&str], data: &Path) -> Output {
    let mut cmd = trustgate();
    cmd.args(args).arg("--data-dir").arg(data);
    run(cmd)
}

fn token(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin.token"))
        .expect("admin token")
        .trim()
        .to_owned()
}

fn create_store(server: &Running, data: &Path, name: &str) {
    let response = http()
        .post(format!("{}/stores", server.base))
        .bearer_auth(token(data))
        .json(&json!({ "name": name }))
        .send()
        .expect("create store");
    assert_eq!(response.status().as_u16(), 201);
}

fn store_names(server: &Running, data: &Path) -> Vec<String> {
    let listed: Value = http()
        .get(format!("{}/stores", server.base))
        .bearer_auth(token(data))
        .send()
        .expect("list stores")
        .json()
        .expect("json");
    let mut names: Vec<String> = listed["stores"]
        .as_array()
        .expect("stores")
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_backup_taken_while_serving_restores_what_it_saw_and_keeps_what_it_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let backup = dir.path().join("backup");
    let server = Running::start(&data, &[], &[]);
    create_store(&server, &data, "before");

    // Online: a checked snapshot and the secrets key, owner-only.
    let summary = ok_json(&command(
        &["backup", "--to", backup.to_str().expect("utf-8")],
        &data,
    ));
    assert_eq!(summary["integrity"], "ok");
    assert_eq!(summary["secrets_key"], true);
    assert!(summary["migration_version"].as_i64().is_some_and(|v| v > 0));
    #[cfg(unix)]
    {
        assert_eq!(mode(&backup), 0o700);
        assert_eq!(mode(&backup.join("trustgate.db")), 0o600);
        assert_eq!(mode(&backup.join("secrets.key")), 0o600);
    }
    // Into a directory that is not empty: refused (exit 2), nothing overwritten.
    failed_with(
        &command(&["backup", "--to", backup.to_str().expect("utf-8")], &data),
        2,
        "not empty",
    );

    create_store(&server, &data, "after");
    // While the server runs: refused, and the server's data is untouched.
    failed_with(
        &command(
            &["restore", "--from", backup.to_str().expect("utf-8")],
            &data,
        ),
        1,
        "in use by another trustgate process",
    );
    assert_eq!(store_names(&server, &data), ["after", "before"]);

    // A corrupt backup: refused before anything is replaced.
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir(&corrupt).expect("mkdir");
    let mut bytes = std::fs::read(backup.join("trustgate.db")).expect("read");
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 4096] {
        *byte = 0x5a;
    }
    std::fs::write(corrupt.join("trustgate.db"), &bytes).expect("write");
    let out = server.terminate();
    assert!(out.status.success());
    let refused = command(
        &["restore", "--from", corrupt.to_str().expect("utf-8")],
        &data,
    );
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    // Not a backup at all: a usage error.
    failed_with(
        &command(
            &["restore", "--from", dir.path().to_str().expect("utf-8")],
            &data,
        ),
        2,
        "not a trustgate backup",
    );
    let server = Running::start(&data, &[], &[]);
    assert_eq!(
        store_names(&server, &data),
        ["after", "before"],
        "the refused restores changed nothing"
    );
    let out = server.terminate();
    assert!(out.status.success());

    // Stopped: restored; the replaced database is kept aside.
    let restored = ok_json(&command(
        &["restore", "--from", backup.to_str().expect("utf-8")],
        &data,
    ));
    let aside = Path::new(restored["replaced_into"].as_str().expect("aside")).to_path_buf();
    assert!(aside.join("trustgate.db").is_file());
    assert!(aside.join("secrets.key").is_file());
    assert_eq!(
        std::fs::read(data.join("secrets.key")).expect("key"),
        std::fs::read(backup.join("secrets.key")).expect("key")
    );
    // Restored again at once: the first restore's kept files are not overwritten.
    let again = ok_json(&command(
        &["restore", "--from", backup.to_str().expect("utf-8")],
        &data,
    ));
    assert_ne!(again["replaced_into"], restored["replaced_into"]);
    assert!(aside.join("trustgate.db").is_file());
    let server = Running::start(&data, &[], &[]);
    assert_eq!(store_names(&server, &data), ["before"]);
    let out = server.terminate();
    assert!(out.status.success());
}

#[test]
fn postgres_is_backed_up_with_pg_dump() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = command(
        &[
            "backup",
            "--to",
            dir.path().join("b").to_str().expect("utf-8"),
            "--database-url",
            "postgres://postgres@127.0.0.1:5432/test",
        ],
        dir.path(),
    );
    failed_with(&out, 2, "pg_dump");
    assert!(!dir.path().join("b").exists(), "nothing written");
}
