//! `trustgate user ...` and `trustgate audit list/export/verify` as processes against a running server, and
//! the secrets key at start (created on SQLite, required on PostgreSQL).

use std::io::Write as _;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{Running, failed_with, ok_json, run, trustgate, wait_with_timeout};

const PASSWORD: &str = "correct horse battery staple";

/// Runs `trustgate ARGS --server BASE --data-dir DATA`, feeding `stdin` if given.
fn cli(server: &Running, data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = trustgate();
    cmd.args(args)
        .arg("--server")
        .arg(&server.base)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().expect("spawn trustgate");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    wait_with_timeout(child, Duration::from_secs(60))
}

#[test]
fn user_and_audit_commands_drive_the_admin_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Running::start(&data, &[], &[]);

    // The secrets key was created next to the database, owner-only.
    let key_file = data.join("secrets.key");
    assert!(key_file.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Refusals first: a weak password, then (after a create) a duplicate.
    let weak = cli(
        &server,
        &data,
        &[
            "user",
            "create",
            "--username",
            "alice",
            "--email",
            "alice@example.com",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    failed_with(&weak, 1, "password_too_short");
    let created = ok_json(&cli(
        &server,
        &data,
        &[
            "user",
            "create",
            "--username",
            "alice",
            "--email",
            "alice@example.com",
            "--name",
            "Alice Liddell",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    ));
    assert_eq!(created["username"], "alice");
    assert_eq!(created["name"], "Alice Liddell");
    assert_eq!(created["status"], "active");
    let id = created["id"].as_str().expect("id").to_owned();
    let duplicate = cli(
        &server,
        &data,
        &[
            "user",
            "create",
            "--username",
            "ALICE",
            "--email",
            "other@example.com",
        ],
        None,
    );
    failed_with(&duplicate, 1, "409");
    failed_with(&duplicate, 1, "conflict");
    ok_json(&cli(
        &server,
        &data,
        &[
            "user",
            "create",
            "--username",
            "bob",
            "--email",
            "bob@example.com",
        ],
        None,
    ));

    // Reading.
    let listed = ok_json(&cli(
        &server,
        &data,
        &["user", "list", "--limit", "1"],
        None,
    ));
    assert_eq!(listed["users"].as_array().map(Vec::len), Some(1));
    assert!(listed["next"].is_string());
    let all = ok_json(&cli(
        &server,
        &data,
        &["user", "list", "--limit", "1", "--all"],
        None,
    ));
    assert_eq!(all["users"].as_array().map(Vec::len), Some(2));
    let got = ok_json(&cli(
        &server,
        &data,
        &["user", "get", "alice@example.com"],
        None,
    ));
    assert_eq!(got["id"], id.as_str());
    let sessions = ok_json(&cli(&server, &data, &["user", "sessions", "alice"], None));
    assert_eq!(sessions["sessions"], serde_json::json!([]));
    let revoked = ok_json(&cli(
        &server,
        &data,
        &["user", "revoke-sessions", "alice"],
        None,
    ));
    assert_eq!(revoked["revoked"], 0);

    // Status and password.
    let disabled = ok_json(&cli(&server, &data, &["user", "disable", "alice"], None));
    assert_eq!(disabled["status"], "disabled");
    let enabled = ok_json(&cli(&server, &data, &["user", "enable", &id], None));
    assert_eq!(enabled["status"], "active");
    let no_stdin_flag = cli(&server, &data, &["user", "set-password", "alice"], None);
    failed_with(&no_stdin_flag, 2, "--password-stdin");
    let empty = cli(
        &server,
        &data,
        &["user", "set-password", "alice", "--password-stdin"],
        Some(""),
    );
    failed_with(&empty, 2, "standard input");
    let set = cli(
        &server,
        &data,
        &["user", "set-password", "alice", "--password-stdin"],
        Some("violet kettle umbrella sonnet\n"),
    );
    assert!(set.status.success(), "{set:?}");

    // The audit trail, by user and by kind, without the password.
    let audit = cli(&server, &data, &["audit", "list", "--user", "alice"], None);
    let events = ok_json(&audit);
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in [
        "user_created",
        "user_disabled",
        "user_enabled",
        "password_changed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let raw = String::from_utf8_lossy(&audit.stdout);
    assert!(!raw.contains(PASSWORD) && !raw.contains("violet kettle"));
    let created_events = ok_json(&cli(
        &server,
        &data,
        &["audit", "list", "--kind", "user_created"],
        None,
    ));
    assert_eq!(created_events["events"].as_array().map(Vec::len), Some(2));

    // Export as JSON lines, oldest first per chain; filters apply.
    let export = cli(
        &server,
        &data,
        &[
            "audit",
            "export",
            "--kind",
            "user_created",
            "--since",
            "2000-01-01T00:00:00Z",
        ],
        None,
    );
    assert!(export.status.success(), "{export:?}");
    let lines: Vec<Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["seq"].as_i64() < lines[1]["seq"].as_i64());
    assert!(lines.iter().all(|e| e["kind"] == "user_created"));

    // Verification passes, then finds an edited event and exits 1 naming it.
    let verified = cli(&server, &data, &["audit", "verify", "--budget", "3"], None);
    assert_eq!(ok_json(&verified)["ok"], true);
    let url = format!("sqlite://{}", data.join("trustgate.db").display());
    tokio::runtime::Runtime::new().expect("runtime").block_on(
        trustgate_store::testing::execute_raw_at(
            &url,
            None,
            "UPDATE audit_events SET actor = 'user:mallory' WHERE chain = 'recorded' AND seq = 2",
        ),
    );
    let tampered = cli(&server, &data, &["audit", "verify"], None);
    failed_with(&tampered, 1, "recorded record_hash_mismatch seq 2");
    let report: Value = serde_json::from_slice(&tampered.stdout).expect("report on stdout");
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"][0]["seq"], 2);

    // Deletion.
    let deleted = cli(&server, &data, &["user", "delete", "alice"], None);
    assert!(deleted.status.success(), "{deleted:?}");
    failed_with(&cli(&server, &data, &["user", "get", &id], None), 1, "404");
    failed_with(
        &cli(&server, &data, &["user", "get", "../../x"], None),
        1,
        "404",
    );
    server.terminate();
}

#[test]
fn postgres_without_a_secrets_key_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = trustgate();
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--database-url")
        .arg("postgres://postgres@127.0.0.1:5432/test");
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("TRUSTGATE_SECRETS_KEY"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");

    let mut cmd = trustgate();
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .env("TRUSTGATE_SECRETS_KEY", "too-short");
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "bad configuration: {stderr}");
    assert!(stderr.contains("secrets_key"), "{stderr}");
}
