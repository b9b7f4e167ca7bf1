//! The relationship commands against a running server: `store import` / `store test` on the
//! Drive example, a failing store test exits non-zero, `model write|get|transform`,
//! `tuple write|read|delete`, `check` (with context and contextual tuples, and `--explain`),
//! `list-objects`, `list-users`, and errors from the server surfacing with their OpenFGA code.

use std::process::Output;

use serde_json::Value;

use crate::support::{Running, run, trustgate};

const TOKEN: &str = "tg_admin_cli_relationships_0123456789abcdefgh";
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/drive");

fn cli(server: &Running, args: &[&str]) -> Output {
    let mut cmd = trustgate();
    cmd.args(args)
        .env("TRUSTGATE_SERVER", &server.base)
        .env("TRUSTGATE_TOKEN", TOKEN);
    run(cmd)
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn store_files_models_tuples_and_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Running::start(dir.path(), &[], &[("TRUSTGATE_BOOTSTRAP_TOKEN", TOKEN)]);
    let store_file = format!("{EXAMPLE}/drive.fga.yaml");

    // The example's own tests pass.
    let out = cli(&server, &["store", "test", &store_file]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");

    // A wrong expectation fails the run with a non-zero exit and names the assertion.
    let broken = dir.path().join("broken.fga.yaml");
    let text = std::fs::read_to_string(&store_file)
        .expect("read")
        .replace(
            "model_file: ./model.fga",
            &format!("model_file: {EXAMPLE}/model.fga"),
        )
        .replace(
            "tuple_file: ./tuples.yaml",
            &format!("tuple_file: {EXAMPLE}/tuples.yaml"),
        )
        .replace("can_view: false", "can_view: true");
    std::fs::write(&broken, text).expect("write");
    let out = cli(&server, &["store", "test", broken.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL") && stdout.contains("1 failed"),
        "{stdout}"
    );

    // Import, then query the imported store.
    let imported = json(&cli(&server, &["store", "import", &store_file]));
    let store = imported["store_id"].as_str().expect("store id").to_owned();
    assert_eq!(imported["tuples_written"], 10);
    let s = ["--store-id", store.as_str()];
    // Run again into the same store (an interrupted import retried): nothing new is written.
    let again = json(&cli(
        &server,
        &[&["store", "import", store_file.as_str()][..], &s].concat(),
    ));
    assert_eq!(again["tuples_written"], 0);
    assert_eq!(again["tuples_existing"], 10);

    let allowed = json(&cli(
        &server,
        &[
            &["check"][..],
            &s,
            &["user:beth", "viewer", "document:roadmap"],
        ]
        .concat(),
    ));
    assert_eq!(allowed["allowed"], true);
    let denied = json(&cli(
        &server,
        &[
            &["check"][..],
            &s,
            &["user:anne", "can_view", "document:roadmap"],
        ]
        .concat(),
    ));
    assert_eq!(denied["allowed"], false, "blocked beats inherited access");

    // --explain: why, as text. The deny names what excluded; the allow, the tuples that
    // granted it (through two nested groups and a parent folder); a condition, its values.
    let explain = |args: &[&str]| -> String {
        let out = cli(&server, &[&["check", "--explain"][..], &s, args].concat());
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let why = explain(&["user:anne", "can_view", "document:roadmap"]);
    assert!(why.starts_with("decision: denied\n"), "{why}");
    assert!(
        why.contains("reason: denied: excluded by document:roadmap#blocked@user:anne\n"),
        "{why}"
    );
    assert!(
        why.contains("denied  but not document:roadmap#can_view: excluded"),
        "{why}"
    );
    let why = explain(&["user:anne", "viewer", "document:roadmap"]);
    assert!(
        why.contains(
            "reason: allowed: document:roadmap#parent@folder:projects > \
             folder:projects#viewer@group:staff#member > \
             group:staff#member@group:eng#member > group:eng#member@user:anne\n"
        ),
        "{why}"
    );
    let why = explain(&[
        "user:dana",
        "viewer",
        "document:draft",
        "--context",
        r#"{"current_time":"2026-12-30T00:00:00Z"}"#,
    ]);
    assert!(
        why.contains(
            r#"reason: denied: condition not_expired false on document:draft#viewer@user:dana with {"current_time":"2026-12-30T00:00:00Z","grant_time":"2026-11-01T00:00:00Z","grant_duration":"240h"}"#
        ),
        "{why}"
    );
    let in_time = json(&cli(
        &server,
        &[
            &["check"][..],
            &s,
            &[
                "user:dana",
                "viewer",
                "document:draft",
                "--context",
                r#"{"current_time":"2026-11-02T00:00:00Z"}"#,
            ],
        ]
        .concat(),
    ));
    assert_eq!(in_time["allowed"], true);
    let contextual = json(&cli(
        &server,
        &[
            &["check"][..],
            &s,
            &[
                "user:fay",
                "viewer",
                "folder:projects",
                "--contextual-tuple",
                "user:fay member group:eng",
            ],
        ]
        .concat(),
    ));
    assert_eq!(contextual["allowed"], true);

    let objects = json(&cli(
        &server,
        &[
            &["list-objects"][..],
            &s,
            &["user:beth", "viewer", "document"],
        ]
        .concat(),
    ));
    let objects: Vec<&str> = objects["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        objects.contains(&"document:roadmap") && objects.contains(&"document:handbook"),
        "{objects:?}"
    );

    let users = json(&cli(
        &server,
        &[
            &["list-users"][..],
            &s,
            &["document:roadmap", "editor", "--user-filter", "user"],
        ]
        .concat(),
    ));
    assert_eq!(users["users"][0]["object"]["id"], "carl");

    // Tuples: write, read back, refuse a tuple that violates the model, delete.
    let out = cli(
        &server,
        &[
            &["tuple", "write"][..],
            &s,
            &["user:gus", "owner", "document:memo"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{out:?}");
    let read = json(&cli(
        &server,
        &[&["tuple", "read"][..], &s, &["--object", "document:memo"]].concat(),
    ));
    assert_eq!(read["tuples"].as_array().map(Vec::len), Some(1));
    let out = cli(
        &server,
        &[
            &["tuple", "write"][..],
            &s,
            &["user:gus", "no_such_relation", "document:memo"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("400"),
        "{out:?}"
    );
    let out = cli(
        &server,
        &[
            &["tuple", "delete"][..],
            &s,
            &["user:gus", "owner", "document:memo"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{out:?}");
    let after = json(&cli(
        &server,
        &[&["check"][..], &s, &["user:gus", "owner", "document:memo"]].concat(),
    ));
    assert_eq!(after["allowed"], false, "deletion is visible at once");

    // Stored attributes: set, get, refuse what is not an object, delete.
    let set = json(&cli(
        &server,
        &[
            &["attributes", "set"][..],
            &s,
            &["document:memo", r#"{"classification": "internal"}"#],
        ]
        .concat(),
    ));
    assert_eq!(set["attributes"]["classification"], "internal");
    let got = json(&cli(
        &server,
        &[&["attributes", "get"][..], &s, &["document:memo"]].concat(),
    ));
    assert_eq!(
        got,
        serde_json::json!({ "object": "document:memo", "attributes": { "classification": "internal" } })
    );
    let out = cli(
        &server,
        &[&["attributes", "set"][..], &s, &["document:memo", "[1]"]].concat(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = cli(
        &server,
        &[&["attributes", "delete"][..], &s, &["document:memo"]].concat(),
    );
    assert!(out.status.success(), "{out:?}");
    let got = json(&cli(
        &server,
        &[&["attributes", "get"][..], &s, &["document:memo"]].concat(),
    ));
    assert_eq!(got["attributes"], serde_json::json!({}));
    // A store file's `attributes` are written on import.
    let todo = json(&cli(
        &server,
        &[
            "store",
            "import",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/authzen/todo.fga.yaml"
            ),
        ],
    ));
    assert_eq!(todo["attributes_written"], 5);
    let rick = json(&cli(
        &server,
        &[
            "attributes",
            "get",
            "--store-id",
            todo["store_id"].as_str().expect("store id"),
            "user:CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs",
        ],
    ));
    assert_eq!(
        rick["attributes"],
        serde_json::json!({ "email": "rick@the-citadel.com" })
    );

    // Models: get as DSL round-trips through transform; a new version becomes the latest.
    let dsl = cli(&server, &[&["model", "get"][..], &s].concat());
    assert!(dsl.status.success(), "{dsl:?}");
    let dsl = String::from_utf8_lossy(&dsl.stdout).to_string();
    assert!(
        dsl.contains("define can_view: viewer but not blocked"),
        "{dsl}"
    );
    let model_file = dir.path().join("model.fga");
    std::fs::write(&model_file, &dsl).expect("write model");
    let as_json = json(&cli(
        &server,
        &["model", "transform", model_file.to_str().expect("utf8")],
    ));
    assert_eq!(as_json["schema_version"], "1.1");
    let written = json(&cli(
        &server,
        &[
            &["model", "write"][..],
            &s,
            &[model_file.to_str().expect("utf8")],
        ]
        .concat(),
    ));
    let latest = json(&cli(
        &server,
        &[&["model", "get"][..], &s, &["--format", "json"]].concat(),
    ));
    assert_eq!(latest["id"], written["authorization_model_id"]);

    // A malformed model is refused by the CLI before it reaches the server.
    std::fs::write(
        &model_file,
        "model\n  schema 1.1\ntype document\n  relations\n    define viewer: [usr]\n",
    )
    .expect("write");
    let out = cli(
        &server,
        &[
            &["model", "write"][..],
            &s,
            &[model_file.to_str().expect("utf8")],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // Unknown store: the server's OpenFGA code reaches the user.
    let out = cli(
        &server,
        &[
            "check",
            "--store-id",
            "01JZZZZZZZZZZZZZZZZZZZZZZZ",
            "user:a",
            "viewer",
            "document:x",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("store_id_not_found"),
        "{out:?}"
    );
}
