//! The pages in a real browser: Debian's headless Chromium driven by `playwright-core` (pinned in
//! `tests/e2e/package.json`, installed with `npm ci --prefix crates/cli/tests/e2e`) against the
//! binary. Scenarios: password sign-in and sign-out; authenticator-app enrolment and sign-in with
//! a TOTP code computed in the script (RFC 6238 over node:crypto) and with a recovery code;
//! signing another browser's session out from the account page; passkeys with Chromium's
//! virtual authenticator (register two on `/account`, sign out, sign in with a passkey, remove
//! one); a single-page app on another origin signing in with code + PKCE + DPoP from the page
//! (oauth4webapi in Chromium, through trustgate's CORS answers). Screenshots of the login, MFA
//! and account pages go to `target/e2e-artifacts/`.
//!
//! Without Chromium, node or the npm packages the test skips with a message saying how to install
//! them, unless `TRUSTGATE_REQUIRE_BROWSER_TESTS=1` (CI), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::support::{E2E, Running, browser_available, chromium, http, run};

const TOKEN: &str = "tg_admin_browser_tests_0123456789abcdefghijkl";
const PASSWORD: &str = "a long browser passphrase 2026";

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-artifacts")
}

/// Creates a user through the admin API.
fn create_user(server: &Running, username: &str) {
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
    let status = response.status();
    assert!(
        status.is_success(),
        "create user {username}: {status} {}",
        response.text().unwrap_or_default()
    );
}

fn scenario(server: &Running, script: &str, username: &str) {
    create_user(server, username);
    let mut cmd = Command::new("node");
    cmd.arg(Path::new(E2E).join(script))
        .arg(&server.base)
        .arg(username)
        .arg(PASSWORD)
        .arg(artifacts())
        .env("TRUSTGATE_CHROMIUM", chromium())
        .env("TRUSTGATE_ADMIN_TOKEN", TOKEN);
    let out = run(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("OK: "), "{script}: {stdout}\n{stderr}");
}

#[test]
fn pages_in_headless_chromium() {
    if !browser_available("browser tests", &["playwright-core"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Running::start(dir.path(), &[], &[("TRUSTGATE_BOOTSTRAP_TOKEN", TOKEN)]);
    scenario(&server, "login_logout.mjs", "erin");
    scenario(&server, "totp.mjs", "tom");
    scenario(&server, "sessions.mjs", "sam");
    scenario(&server, "passkey.mjs", "pia");
    scenario(&server, "spa_dpop.mjs", "dora");
    for shot in [
        "login",
        "mfa",
        "account",
        "passkeys-account",
        "passkey-signed-in",
        "spa-dpop",
    ] {
        let file = artifacts().join(format!("{shot}.png"));
        assert!(file.exists(), "screenshot {} missing", file.display());
    }
}
