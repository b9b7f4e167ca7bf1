//! The `transformer/` conformance pairs: every `.fga` parses to its `.json` model, and every
//! `.json` model writes back to exactly its `.fga` text.

use trustgate_authz::dsl;
use trustgate_authz::model::AuthorizationModel;

use crate::language_support::{language_path, report};

fn cases() -> Vec<(String, String, String)> {
    let dir = language_path("transformer");
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("transformer dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dsl = std::fs::read_to_string(path.join("authorization-model.fga")).expect("fga");
        let json = std::fs::read_to_string(path.join("authorization-model.json")).expect("json");
        out.push((name, dsl, json));
    }
    out
}

#[test]
fn dsl_to_json() {
    let cases = cases();
    let mut failures = Vec::new();
    for (name, dsl_text, json) in &cases {
        let expected: AuthorizationModel = serde_json::from_str(json).expect("expected json");
        match dsl::parse_syntax_only(dsl_text) {
            Ok(model) if model == expected => {}
            Ok(model) => failures.push((
                name.clone(),
                format!(
                    "got {}\nwant {}",
                    serde_json::to_string(&model).unwrap_or_default(),
                    serde_json::to_string(&expected).unwrap_or_default()
                ),
            )),
            Err(e) => failures.push((name.clone(), e.to_string())),
        }
    }
    report("transformer dsl->json", cases.len(), failures);
}

#[test]
fn json_to_dsl() {
    let cases = cases();
    let mut failures = Vec::new();
    for (name, dsl_text, json) in &cases {
        let model: AuthorizationModel = serde_json::from_str(json).expect("json");
        match dsl::write(&model) {
            Ok(text) if text == *dsl_text => {}
            Ok(text) => failures.push((name.clone(), format!("got:\n{text}\nwant:\n{dsl_text}"))),
            Err(e) => failures.push((name.clone(), e.to_string())),
        }
    }
    report("transformer json->dsl", cases.len(), failures);
}
