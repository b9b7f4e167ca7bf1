//! `trustgate service`, `apikey` and `role` against a running server: a service account gets a
//! role and keys (printed once), a key does what its scope allows and nothing else, rotation
//! keeps the old key for the overlap, revocation and disabling stop a key; client-certificate
//! names are bound, listed and unbound.

use std::process::Output;

use serde_json::Value;

use crate::support::{Running, run, trustgate};

const TOKEN: &str = "tg_admin_cli_machines_0123456789abcdefghijkl";

fn cli_as(server: &Running, token: &str, args: &[&str]) -> Output {
    let mut cmd = trustgate();
    cmd.args(args)
        .env("TRUSTGATE_SERVER", &server.base)
        .env("TRUSTGATE_TOKEN", token);
    run(cmd)
}

fn cli(server: &Running, args: &[&str]) -> Output {
    cli_as(server, TOKEN, args)
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn service_accounts_roles_and_api_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Running::start(dir.path(), &[], &[("TRUSTGATE_BOOTSTRAP_TOKEN", TOKEN)]);

    let account = json(&cli(
        &server,
        &["service", "create", "ci-bot", "--owner", "platform team"],
    ));
    assert_eq!(account["name"], "ci-bot");
    assert_eq!(account["status"], "active");
    let id = account["id"].as_str().expect("id").to_owned();

    // No role yet: a key cannot be scoped beyond it.
    let out = cli(
        &server,
        &[
            "apikey",
            "create",
            "--service",
            "ci-bot",
            "--scope",
            "auditor",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("scope_exceeds_owner"),
        "{out:?}"
    );
    // Client-certificate names (mutual TLS): bound, listed, unbound; one account each.
    let spiffe = "spiffe://example.org/ns/ci/sa/bot";
    let bound = json(&cli(
        &server,
        &[
            "service",
            "bind-certificate",
            "ci-bot",
            "--spiffe-id",
            spiffe,
        ],
    ));
    assert_eq!(bound["name"], spiffe);
    json(&cli(
        &server,
        &[
            "service",
            "bind-certificate",
            "ci-bot",
            "--subject-dn",
            "O=Example,CN=ci bot",
        ],
    ));
    let listed = json(&cli(&server, &["service", "certificates", "ci-bot"]));
    let names: Vec<&str> = listed["certificates"]
        .as_array()
        .expect("certificates")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, [spiffe, "O=Example,CN=ci bot"]);
    json(&cli(&server, &["service", "create", "other-bot"]));
    let out = cli(
        &server,
        &[
            "service",
            "bind-certificate",
            "other-bot",
            "--spiffe-id",
            spiffe,
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate_name_taken"),
        "{out:?}"
    );
    json(&cli(
        &server,
        &[
            "service",
            "unbind-certificate",
            "ci-bot",
            "--subject-dn",
            "O=Example,CN=ci bot",
        ],
    ));
    let listed = json(&cli(&server, &["service", "certificates", "ci-bot"]));
    assert_eq!(listed["certificates"].as_array().map(Vec::len), Some(1));
    let out = cli(&server, &["service", "bind-certificate", "ci-bot"]);
    assert!(!out.status.success(), "a name is required");
    json(&cli(&server, &["service", "delete", "other-bot"]));

    let roles = json(&cli(
        &server,
        &["role", "grant", "service:ci-bot", "auditor"],
    ));
    assert_eq!(roles["roles"], serde_json::json!(["auditor"]));

    // Plain output: the key alone on stdout, the advice on stderr.
    let out = cli(
        &server,
        &[
            "apikey",
            "create",
            "--service",
            "ci-bot",
            "--scope",
            "auditor",
            "--expires-in",
            "90d",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(key.starts_with("tg_live_"), "{key}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown this once"));

    // --json: the whole answer.
    let created = json(&cli(
        &server,
        &[
            "apikey",
            "create",
            "--service",
            &id,
            "--scope",
            "auditor",
            "--json",
        ],
    ));
    let second_key = created["key"].as_str().expect("key").to_owned();
    let second_id = created["api_key"]["id"].as_str().expect("id").to_owned();

    // The key reads the audit trail and nothing else.
    json(&cli_as(&server, &key, &["audit", "list"]));
    let out = cli_as(&server, &key, &["user", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission_denied"));

    // Listing never shows a secret.
    let listed = cli(&server, &["apikey", "list", "--service", "ci-bot"]);
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    assert_eq!(json(&listed)["api_keys"].as_array().expect("keys").len(), 2);
    assert!(!text.contains(&key[key.len() - 49..]));
    assert!(!text.contains(&second_key[second_key.len() - 49..]));

    // Rotation keeps the old key for the overlap.
    let rotated = json(&cli(
        &server,
        &["apikey", "rotate", &second_id, "--overlap", "1h", "--json"],
    ));
    let third_key = rotated["key"].as_str().expect("key").to_owned();
    assert_eq!(rotated["api_key"]["rotated_from"], second_id.as_str());
    assert!(rotated["previous"]["expires_at"].is_string());
    json(&cli_as(&server, &second_key, &["audit", "list"]));
    json(&cli_as(&server, &third_key, &["audit", "list"]));

    // Revocation stops a key at once; disabling the account stops all of them.
    json(&cli(&server, &["apikey", "revoke", &second_id]));
    assert!(
        !cli_as(&server, &second_key, &["audit", "list"])
            .status
            .success()
    );
    json(&cli(&server, &["service", "disable", "ci-bot"]));
    let out = cli_as(&server, &key, &["audit", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unauthenticated"),
        "{out:?}"
    );
    json(&cli(&server, &["service", "enable", "ci-bot"]));
    json(&cli_as(&server, &key, &["audit", "list"]));

    let shown = json(&cli(&server, &["service", "get", "ci-bot"]));
    assert_eq!(shown["roles"], serde_json::json!(["auditor"]));
    json(&cli(&server, &["service", "delete", "ci-bot"]));
    assert!(!cli_as(&server, &key, &["audit", "list"]).status.success());
    let listed = json(&cli(&server, &["service", "list"]));
    let names: Vec<&str> = listed["service_accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["admin"]);
}
