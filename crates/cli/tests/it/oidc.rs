//! A real relying party drives trustgate's OAuth 2.0 / OpenID Connect provider end to end:
//! `openid-client` 6 (OpenID-certified) and `jose` from npm, with headless Chromium for the
//! pages, in `tests/e2e/oidc_rp.mjs`. Discovery; authorization code + PKCE through the login and
//! consent pages; ID token checked against the JWKS; userinfo; introspection; refresh rotation
//! and reuse detection; DPoP-bound tokens (client credentials, a public client's code flow with `dpop_jkt`, userinfo, bound refresh tokens, a bound token refused as bearer); `max_age` re-authentication; signing-key rotation in the middle of the
//! session with every token still verifying; token exchange (RFC 8693) by a gateway, with
//! `act`; revocation; client credentials; the device flow
//! through `/device`; RP-initiated logout with a back-channel logout token; `prompt=none`
//! without a session.
//!
//! Skips (or fails under `TRUSTGATE_REQUIRE_BROWSER_TESTS=1`) like `browser.rs` when Chromium or
//! the npm packages are missing.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::{E2E, Running, browser_available, chromium, http, run};

const TOKEN: &str = "tg_admin_oidc_rp_tests_0123456789abcdefghijklm";
const PASSWORD: &str = "a long relying party passphrase 2026";

#[test]
fn openid_client_drives_every_flow() {
    if !browser_available(
        "the relying-party test",
        &["playwright-core", "openid-client", "jose"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Running::start(
        dir.path(),
        &[],
        &[
            ("TRUSTGATE_BOOTSTRAP_TOKEN", TOKEN),
            ("TRUSTGATE_OAUTH__REFRESH_GRACE_SECS", "1"),
            ("TRUSTGATE_OAUTH__KEY_PUBLISH_AHEAD_SECS", "4"),
            ("TRUSTGATE_OAUTH__DEVICE_POLL_INTERVAL_SECS", "1"),
        ],
    );
    let username = "rita";
    let response = http()
        .post(format!("{}/admin/v1/users", server.base))
        .bearer_auth(TOKEN)
        .json(&json!({
            "username": username,
            "email": format!("{username}@example.com"),
            "password": PASSWORD,
        }))
        .send()
        .expect("create user");
    assert!(
        response.status().is_success(),
        "create user: {}",
        response.status()
    );

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-artifacts");
    let mut cmd = Command::new("node");
    cmd.arg(Path::new(E2E).join("oidc_rp.mjs"))
        .arg(&server.base)
        .arg(username)
        .arg(PASSWORD)
        .arg(&artifacts)
        .env("TRUSTGATE_CHROMIUM", chromium())
        .env("TRUSTGATE_ADMIN_TOKEN", TOKEN);
    let out = run(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "oidc_rp.mjs failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK: "), "{stdout}\n{stderr}");
    for shot in ["consent", "device"] {
        let file = artifacts.join(format!("{shot}.png"));
        assert!(file.exists(), "screenshot {} missing", file.display());
    }
}
