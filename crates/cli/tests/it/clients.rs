//! `trustgate client ...` as processes against a running server: registration from flags, the
//! secret printed once, refusals with the field's code, partial updates that keep unspecified
//! fields, rotation, deletion.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Running, failed_with, ok_json, trustgate, wait_with_timeout};

/// Runs `trustgate ARGS --server BASE --data-dir DATA`.
fn cli(server: &Running, data: &Path, args: &[&str]) -> Output {
    let mut cmd = trustgate();
    cmd.args(args)
        .arg("--server")
        .arg(&server.base)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    wait_with_timeout(
        cmd.spawn().expect("spawn trustgate"),
        Duration::from_secs(60),
    )
}

#[test]
fn client_commands_drive_the_admin_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Running::start(&data, &[], &[]);

    // tls_client_auth: the certificate's name is the credential; no secret is printed.
    let worker = ok_json(&cli(
        &server,
        &data,
        &[
            "client",
            "create",
            "--name",
            "Certificate worker",
            "--grant",
            "client_credentials",
            "--scope",
            "reports:read",
            "--auth-method",
            "tls_client_auth",
            "--tls-client-auth-san-uri",
            "spiffe://example.org/worker",
        ],
    ));
    assert_eq!(worker["auth_method"], "tls_client_auth");
    assert_eq!(
        worker["tls_client_auth_san_uri"],
        "spiffe://example.org/worker"
    );
    assert!(
        worker.get("client_secret").is_none_or(Value::is_null),
        "{worker}"
    );
    let bad = cli(
        &server,
        &data,
        &[
            "client",
            "create",
            "--name",
            "No name",
            "--grant",
            "client_credentials",
            "--auth-method",
            "tls_client_auth",
        ],
    );
    failed_with(&bad, 1, "invalid_tls_client_auth");
    let by_ip = ok_json(&cli(
        &server,
        &data,
        &[
            "client",
            "create",
            "--name",
            "Worker by address",
            "--grant",
            "client_credentials",
            "--auth-method",
            "tls_client_auth",
            "--tls-client-auth-san-ip",
            "2001:db8::7",
        ],
    ));
    assert_eq!(by_ip["tls_client_auth_san_ip"], "2001:db8::7");
    assert_eq!(by_ip.get("tls_client_auth_san_uri"), None, "{by_ip}");
    // self_signed_tls_client_auth: the certificate comes in the JWKS file, as x5c.
    let own = trustgate_testkit::tls::self_signed_client("worker");
    let jwks_file = dir.path().join("worker-jwks.json");
    std::fs::write(
        &jwks_file,
        serde_json::json!({ "keys": [own.jwk] }).to_string(),
    )
    .expect("write");
    let self_signed = ok_json(&cli(
        &server,
        &data,
        &[
            "client",
            "create",
            "--name",
            "Self-signed worker",
            "--grant",
            "client_credentials",
            "--auth-method",
            "self_signed_tls_client_auth",
            "--jwks-file",
            jwks_file.to_str().expect("utf-8"),
        ],
    ));
    assert_eq!(self_signed["auth_method"], "self_signed_tls_client_auth");
    for created in [&by_ip, &self_signed] {
        let id = created["client_id"].as_str().expect("id");
        assert!(
            cli(&server, &data, &["client", "delete", id])
                .status
                .success()
        );
    }
    let worker_id = worker["client_id"].as_str().expect("id").to_owned();
    assert!(
        cli(&server, &data, &["client", "delete", &worker_id])
            .status
            .success()
    );

    // Refusals first: nothing is registered by them.
    let bad = cli(
        &server,
        &data,
        &[
            "client",
            "create",
            "--name",
            "Web",
            "--redirect-uri",
            "http://app.example.com/cb",
        ],
    );
    failed_with(&bad, 1, "invalid_redirect_uri");
    let bad = cli(
        &server,
        &data,
        &["client", "create", "--name", "Web", "--grant", "implicit"],
    );
    failed_with(&bad, 1, "400");
    let missing = cli(
        &server,
        &data,
        &[
            "client",
            "create",
            "--name",
            "Svc",
            "--auth-method",
            "private_key_jwt",
            "--jwks-file",
            "/nonexistent/jwks.json",
        ],
    );
    failed_with(&missing, 2, "--jwks-file");
    let both = cli(
        &server,
        &data,
        &[
            "client",
            "create",
            "--name",
            "X",
            "--public",
            "--auth-method",
            "client_secret_post",
        ],
    );
    assert_eq!(both.status.code(), Some(2), "{both:?}");

    // A confidential web app from flags.
    let web = ok_json(&cli(
        &server,
        &data,
        &[
            "client",
            "create",
            "--name",
            "Photo App",
            "--redirect-uri",
            "https://photos.example.com/cb",
            "--redirect-uri",
            "http://localhost:3000/cb",
            "--post-logout-redirect-uri",
            "https://photos.example.com/bye",
            "--scope",
            "openid",
            "--scope",
            "photos:read",
            "--audience",
            "https://api.photos.example.com",
            "--skip-consent",
            "--access-token-ttl",
            "300",
        ],
    ));
    let web_id = web["client_id"].as_str().expect("client_id").to_owned();
    let secret = web["client_secret"]
        .as_str()
        .expect("client_secret")
        .to_owned();
    assert!(web_id.starts_with("tgc_") && secret.starts_with("tgcs_"));
    assert_eq!(web["auth_method"], "client_secret_basic");
    assert_eq!(web["skip_consent"], true);
    assert_eq!(web["access_token_ttl_secs"], 300);
    assert_eq!(web["scopes"], json!(["openid", "photos:read"]));
    assert_eq!(
        web["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );

    // A public native app with the device grant.
    let native = ok_json(&cli(
        &server,
        &data,
        &[
            "client",
            "create",
            "--name",
            "TV App",
            "--public",
            "--native",
            "--redirect-uri",
            "com.example.tv:/cb",
            "--grant",
            "device_code",
            "--grant",
            "authorization_code",
            "--grant",
            "refresh_token",
            "--require-par",
        ],
    ));
    assert!(native.get("client_secret").is_none(), "{native}");
    assert_eq!(native["auth_method"], "none");
    assert_eq!(native["application_type"], "native");
    assert_eq!(native["require_par"], true);
    assert_eq!(
        native["grant_types"],
        json!([
            "urn:ietf:params:oauth:grant-type:device_code",
            "authorization_code",
            "refresh_token"
        ])
    );
    let native_id = native["client_id"].as_str().expect("id").to_owned();

    // Reading never shows the secret.
    let listed = ok_json(&cli(
        &server,
        &data,
        &["client", "list", "--limit", "1", "--all"],
    ));
    assert_eq!(listed["clients"].as_array().map(Vec::len), Some(2));
    let got = ok_json(&cli(&server, &data, &["client", "get", &web_id]));
    assert_eq!(got["name"], "Photo App");
    let shown = format!("{listed} {got}");
    assert!(!shown.contains(&secret));
    assert!(!shown.contains("client_secret\""));

    // Update: only what is given changes.
    let updated = ok_json(&cli(
        &server,
        &data,
        &[
            "client",
            "update",
            &web_id,
            "--name",
            "Photo App 2",
            "--skip-consent=false",
            "--audience",
            "",
            "--backchannel-logout-uri",
            "https://photos.example.com/bc",
        ],
    ));
    assert_eq!(updated["name"], "Photo App 2");
    assert_eq!(updated["skip_consent"], false);
    assert_eq!(updated["audience"], json!([]));
    assert_eq!(
        updated["backchannel_logout_uri"],
        "https://photos.example.com/bc"
    );
    assert_eq!(updated["redirect_uris"], web["redirect_uris"]);
    assert_eq!(updated["scopes"], web["scopes"]);
    assert_eq!(updated["access_token_ttl_secs"], 300);
    assert_eq!(updated["created_at"], web["created_at"]);
    assert!(updated.get("client_secret").is_none());
    let refused = cli(
        &server,
        &data,
        &["client", "update", &web_id, "--access-token-ttl", "5"],
    );
    failed_with(&refused, 1, "invalid_access_token_ttl");

    // Rotation prints a new secret; a public client has none to rotate.
    let rotated = ok_json(&cli(&server, &data, &["client", "rotate-secret", &web_id]));
    assert_eq!(rotated["client_id"], web_id.as_str());
    let new_secret = rotated["client_secret"].as_str().expect("secret");
    assert!(new_secret.starts_with("tgcs_") && new_secret != secret);
    let none = cli(&server, &data, &["client", "rotate-secret", &native_id]);
    failed_with(&none, 1, "client_has_no_secret");

    // Switching the public client to a secret method issues a secret with the update.
    let switched = ok_json(&cli(
        &server,
        &data,
        &[
            "client",
            "update",
            &native_id,
            "--auth-method",
            "client_secret_post",
        ],
    ));
    assert!(switched["client_secret"].as_str().is_some(), "{switched}");
    assert_eq!(switched["application_type"], "native");

    // Deletion.
    let deleted = cli(&server, &data, &["client", "delete", &web_id]);
    assert!(deleted.status.success(), "{deleted:?}");
    failed_with(&cli(&server, &data, &["client", "get", &web_id]), 1, "404");
    failed_with(
        &cli(&server, &data, &["client", "delete", &web_id]),
        1,
        "not_found",
    );

    // The audit trail has every change, without a secret.
    let audit = ok_json(&cli(&server, &data, &["audit", "list", "--limit", "100"]));
    let kinds: Vec<&str> = audit["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in [
        "client_created",
        "client_updated",
        "client_secret_rotated",
        "client_deleted",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert!(!audit.to_string().contains("tgcs_"));
    server.terminate();
}

#[test]
fn keys_commands_list_and_rotate_and_keys_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Running::start(&data, &[], &[]);
    let listed = ok_json(&cli(&server, &data, &["keys", "list"]));
    let keys = listed["keys"].as_array().expect("keys");
    let mut algorithms: Vec<&str> = keys
        .iter()
        .filter_map(|k| k["algorithm"].as_str())
        .collect();
    algorithms.sort_unstable();
    assert_eq!(algorithms, ["ES256", "EdDSA", "RS256"]);
    assert!(keys.iter().all(|k| k["state"] == "active"), "{listed}");

    let rotated = ok_json(&cli(
        &server,
        &data,
        &["keys", "rotate", "--algorithm", "ES256"],
    ));
    let new_kid = rotated["keys"][0]["kid"].as_str().expect("kid").to_owned();
    assert_eq!(
        rotated["keys"][0]["state"], "published",
        "signs only after publish-ahead"
    );
    let jwks: Value = crate::support::http()
        .get(format!("{}/.well-known/jwks.json", server.base))
        .send()
        .expect("jwks")
        .json()
        .expect("json");
    assert!(jwks.to_string().contains(&new_kid), "published at once");
    failed_with(
        &cli(&server, &data, &["keys", "rotate", "--algorithm", "HS256"]),
        1,
        "invalid_algorithm",
    );

    // The private keys are persisted (sealed): a restart keeps every kid.
    let before: Vec<String> = ok_json(&cli(&server, &data, &["keys", "list"]))["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect();
    drop(server);
    let server = Running::start(&data, &[], &[]);
    let after: Vec<String> = ok_json(&cli(&server, &data, &["keys", "list"]))["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(before, after);
}
