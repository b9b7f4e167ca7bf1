//! The upgrade test: a data directory written by an earlier build (`tests/fixtures/upgrade-*`,
//! made with that build's CLI against its server) opens with this one. `trustgate migrate`
//! brings it forward; then everything in it still works: the administrator's token, the user's
//! password, the store's model and tuples through the store-reader API key, the OAuth client's
//! secret, and the signing key sealed by the old secrets key, which still signs.

use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::{Running, http, password_login, run, trustgate};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A private copy of the fixture's data directory.
fn data_dir_from(fixture: &Path, into: &Path) {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(into).expect("data dir");
    for file in ["trustgate.db", "secrets.key"] {
        std::fs::copy(fixture.join(file), into.join(file)).expect("copy");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(into.join(file), std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
        }
    }
}

#[test]
fn a_data_directory_from_the_previous_build_opens_and_works() {
    let fixture = Path::new(FIXTURES).join("upgrade-babaf44");
    let facts: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("facts.json")).expect("facts"))
            .expect("json");
    let text = |pointer: &str| {
        facts
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("facts{pointer}"))
            .to_owned()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    data_dir_from(&fixture, &data);

    // Migrated forward from the fixture's version.
    let mut migrate = trustgate();
    migrate.arg("migrate").arg("--data-dir").arg(&data);
    let out = run(migrate);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    let from = facts["migration_version"].as_i64().expect("version");
    assert!(
        said.contains(&format!("migration version {from} -> ")),
        "{said}"
    );

    let admin = text("/admin_token");
    let server = Running::start(&data, &[], &[("TRUSTGATE_BOOTSTRAP_TOKEN", &admin)]);
    let base = server.base.clone();

    // The administrator and the user.
    let users: Value = http()
        .get(format!("{base}/admin/v1/users"))
        .bearer_auth(&admin)
        .send()
        .expect("users")
        .json()
        .expect("json");
    assert!(users.to_string().contains("\"alice\""), "{users}");
    assert_eq!(
        password_login(&base, &text("/user/username"), &text("/user/password")),
        303,
        "the old password hash still verifies"
    );
    assert_ne!(
        password_login(&base, &text("/user/username"), "not the password"),
        303
    );

    // The store through the API key: the model and the tuples decide as before.
    let check = |user: &str| -> Value {
        http()
            .post(format!("{base}/stores/{}/check", text("/store_id")))
            .bearer_auth(text("/api_key"))
            .json(&json!({
                "tuple_key": { "user": user, "relation": "viewer", "object": "course:algebra" }
            }))
            .send()
            .expect("check")
            .json()
            .expect("json")
    };
    assert_eq!(check("user:alice")["allowed"], true);
    assert_eq!(check("user:bob")["allowed"], true);
    assert_eq!(check("user:carol")["allowed"], false);

    // The client's secret, and the signing key the old build sealed: it still signs.
    let issued: Value = http()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(text("/client/id"), Some(text("/client/secret")))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .expect("token")
        .json()
        .expect("json");
    let header = issued["access_token"]
        .as_str()
        .and_then(|t| t.split('.').next())
        .unwrap_or_else(|| panic!("no token: {issued}"));
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .expect("base64url"),
    )
    .expect("json");
    assert_eq!(header["kid"], text("/access_token_kid"));
    let out = server.terminate();
    assert!(out.status.success());
}
