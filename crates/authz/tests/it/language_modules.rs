//! Modular models: OpenFGA's `fga.mod` cases (`fga-mod-transformer-cases.yaml`) and module
//! directories (`transformer-module/`). Every case runs; the assertion lists every failing case.
//!
//! - `fga.mod`: a valid file must give upstream's JSON form (values and positions); an invalid
//!   one every expected error, in order, with message, lines and columns.
//! - a module directory (`module/*.fga`, read in path order, combined with schema `1.2`): either
//!   the combined `authorization-model.json` (including module and source-file metadata), or
//!   exactly the errors of `expected_errors.json` (message, file, lines, columns, `errorType`),
//!   syntax errors under the contract of `tests/language_validation.rs` (the first per file, at
//!   upstream's position, upstream's text unless that is an ANTLR recovery artefact).
//! - `combined.fga` / `combined-sourceinfo.fga`: the combined model written back as one DSL
//!   file in upstream's module order, without and with source comments.
//! - `expected_modules.json`: the modules a combined model names, sorted.

use std::path::{Path, PathBuf};

use crate::language_support::{
    apply_syntax_contract, case_name, compare_errors, language_path, load_cases, report,
};
use serde_json::Value;
use trustgate_authz::dsl::{self, DslError};
use trustgate_authz::model::AuthorizationModel;

#[test]
fn fga_mod_cases() {
    let file = "fga-mod-transformer-cases.yaml";
    let cases = load_cases(file);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case_name(case);
        let text = case.get("modFile").and_then(Value::as_str).unwrap_or("");
        let expected: Vec<Value> = case
            .get("expected_errors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match (dsl::parse_mod_file(text), expected.is_empty()) {
            (Ok(parsed), true) => {
                let want: Value = case
                    .get("json")
                    .and_then(Value::as_str)
                    .and_then(|j| serde_json::from_str(j).ok())
                    .unwrap_or(Value::Null);
                let got = serde_json::to_value(&parsed).unwrap_or(Value::Null);
                if got != want {
                    failures.push((name, format!("got {got}\nwant {want}")));
                }
            }
            (Ok(parsed), false) => {
                failures.push((name, format!("expected errors, got {parsed:?}")));
            }
            (Err(e), _) => {
                if let Err(why) = compare_errors(&expected, &e.errors) {
                    failures.push((name, why));
                }
            }
        }
    }
    report(file, cases.len(), failures);
}

/// The `.fga` files under `dir`, as (path relative to `dir` with `/`, contents), sorted by path.
fn module_files(dir: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "fga") {
                let rel = path
                    .strip_prefix(root)
                    .map(|p| p.to_string_lossy().replace('\\', "/"))
                    .unwrap_or_default();
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                out.push((rel, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn module_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(language_path("transformer-module"))
        .expect("transformer-module directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Compares combined-module errors under the syntax-error contract of
/// `tests/language_validation.rs`: `compare_errors` plus the file of each error.
fn compare_module_errors(expected: &[Value], actual: &[DslError]) -> Result<(), String> {
    let expected = &apply_syntax_contract(expected, actual);
    let mut problems = Vec::new();
    if let Err(why) = compare_errors(expected, actual) {
        problems.push(why);
    }
    for (i, (exp, act)) in expected.iter().zip(actual).enumerate() {
        let want = exp.get("file").and_then(Value::as_str);
        if want.is_some() && act.file.as_deref() != want {
            problems.push(format!("  #{i}: file {want:?} != {:?}", act.file));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn module_directories() {
    let mut failures = Vec::new();
    let mut total = 0;
    for dir in module_dirs() {
        let module_dir = dir.join("module");
        if !module_dir.is_dir() {
            continue;
        }
        total += 1;
        let name = dir_name(&dir);
        let files = module_files(&module_dir);
        let inputs: Vec<dsl::ModuleFile<'_>> = files
            .iter()
            .map(|(name, contents)| dsl::ModuleFile { name, contents })
            .collect();
        let result = dsl::combine_modules(&inputs, "1.2");
        let expected_errors: Option<Vec<Value>> =
            std::fs::read_to_string(dir.join("expected_errors.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        match (result, expected_errors) {
            (Err(e), Some(expected)) => {
                if let Err(why) = compare_module_errors(&expected, &e.errors) {
                    failures.push((name, why));
                }
            }
            (Ok(model), Some(_)) => failures.push((
                name,
                format!(
                    "expected errors, got {}",
                    serde_json::to_string(&model).unwrap_or_default()
                ),
            )),
            (Err(e), None) => failures.push((name, e.to_string())),
            (Ok(model), None) => {
                let want: Option<AuthorizationModel> =
                    std::fs::read_to_string(dir.join("authorization-model.json"))
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok());
                if want.as_ref() != Some(&model) {
                    failures.push((
                        name,
                        format!(
                            "got {}\nwant {}",
                            serde_json::to_string(&model).unwrap_or_default(),
                            serde_json::to_string(&want).unwrap_or_default()
                        ),
                    ));
                }
            }
        }
    }
    assert!(total > 0, "no module directories found");
    report("transformer-module", total, failures);
}

/// `combined.fga` / `combined-sourceinfo.fga`: a combined model written as one DSL file, in
/// upstream's module order, without and with source comments.
#[test]
fn combined_models_written_as_dsl() {
    let mut failures = Vec::new();
    let mut total = 0;
    for dir in module_dirs() {
        let model: Option<AuthorizationModel> =
            std::fs::read_to_string(dir.join("authorization-model.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        for (file, include_source_information) in
            [("combined.fga", false), ("combined-sourceinfo.fga", true)]
        {
            let Ok(want) = std::fs::read_to_string(dir.join(file)) else {
                continue;
            };
            total += 1;
            let name = format!("{}/{file}", dir_name(&dir));
            let Some(model) = &model else {
                failures.push((name, "authorization-model.json does not load".to_string()));
                continue;
            };
            let options = dsl::WriteOptions {
                include_source_information,
            };
            match dsl::write_with(model, options) {
                Ok(got) if got == want => {}
                Ok(got) => failures.push((name, format!("got:\n{got}\nwant:\n{want}"))),
                Err(e) => failures.push((name, e.to_string())),
            }
        }
    }
    assert!(total > 0, "no combined.fga found");
    report("transformer-module combined", total, failures);
}

#[test]
fn modules_of_combined_models() {
    let mut failures = Vec::new();
    let mut total = 0;
    for dir in module_dirs() {
        let Ok(modules) = std::fs::read_to_string(dir.join("expected_modules.json")) else {
            continue;
        };
        total += 1;
        let name = dir_name(&dir);
        let want: Vec<String> = serde_json::from_str(&modules).unwrap_or_default();
        let model: Option<AuthorizationModel> =
            std::fs::read_to_string(dir.join("authorization-model.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        let Some(model) = model else {
            failures.push((name, "authorization-model.json does not load".to_string()));
            continue;
        };
        let got = dsl::model_modules(&model);
        if got != want {
            failures.push((name, format!("got {got:?}, want {want:?}")));
        }
    }
    assert!(total > 0, "no expected_modules.json found");
    report("transformer-module modules", total, failures);
}

#[test]
fn fga_mod_yaml_forms() {
    // Flow sequences, comments, a sequence at the key's indentation, quoted names.
    let text = "# the manifest\nschema: \"1.2\" # version\ncontents: [core.fga, 'team/a.fga']\n";
    let parsed = dsl::parse_mod_file(text).expect("flow form");
    let files: Vec<&str> = parsed
        .contents
        .value
        .iter()
        .map(|f| f.value.as_str())
        .collect();
    assert_eq!(files, ["core.fga", "team/a.fga"]);
    assert_eq!(
        (parsed.schema.line.start, parsed.schema.column.start),
        (1, 8)
    );
    let text = "contents:\n- core.fga\n- b.fga\nschema: '1.2'\n";
    let parsed = dsl::parse_mod_file(text).expect("sequence at key indentation");
    assert_eq!(parsed.contents.value.len(), 2);
    // Numbers and booleans are not strings; nothing that is not a manifest parses.
    for (text, want) in [
        (
            "schema: 1.2\ncontents: [a.fga]\n",
            "unexpected schema type, expected string got value 1.2",
        ),
        (
            "schema: '1.2'\ncontents: {}\n",
            "unexpected contents type, expected list of strings got value a mapping",
        ),
        ("schema: '1.2\ncontents: [a.fga]\n", "invalid YAML"),
        ("  schema: '1.2'\n", "invalid YAML"),
    ] {
        let err = dsl::parse_mod_file(text).expect_err(text);
        assert!(
            err.errors.iter().any(|e| e.message.starts_with(want)),
            "{text:?}: {err}"
        );
    }
}

#[test]
fn module_combination_details() {
    let core = "module core\n\ntype user\n\ntype doc\n  relations\n    define owner: [user]\n";
    let extra = "module extra\n\nextend type doc\n  relations\n    define viewer: [user] or owner\n    define owner: [user]\n\nextend type missing\n";
    let files = [
        dsl::ModuleFile {
            name: "core.fga",
            contents: core,
        },
        dsl::ModuleFile {
            name: "extra/more.fga",
            contents: extra,
        },
    ];
    let err = dsl::combine_modules(&files, "1.2").expect_err("two problems");
    let got: Vec<(String, Option<String>, usize, usize)> = err
        .errors
        .iter()
        .map(|e| {
            (
                e.message.clone(),
                e.file.clone(),
                e.line.map_or(0, |l| l.start),
                e.column.map_or(0, |c| c.start),
            )
        })
        .collect();
    let file = Some("extra/more.fga".to_string());
    assert_eq!(
        got,
        vec![
            (
                "relation owner already exists on type doc".to_string(),
                file.clone(),
                5,
                11
            ),
            (
                "extended type missing does not exist".to_string(),
                file,
                7,
                12
            ),
        ]
    );
    // Without the conflicts the model combines; the extension's relation carries its module,
    // and a semantic error in it is reported in the extending file.
    let extra =
        "module extra\n\nextend type doc\n  relations\n    define viewer: [user] or editor\n";
    let files = [
        dsl::ModuleFile {
            name: "core.fga",
            contents: core,
        },
        dsl::ModuleFile {
            name: "extra.fga",
            contents: extra,
        },
    ];
    let err = dsl::combine_modules(&files, "1.2").expect_err("editor is missing");
    let e = &err.errors[0];
    assert_eq!(e.message, "the relation `editor` does not exist.");
    assert_eq!(e.file.as_deref(), Some("extra.fga"));
    assert_eq!(e.module.as_deref(), Some("extra"));
    assert_eq!(
        (e.line.map(|l| l.start), e.column.map(|c| c.start)),
        (Some(4), Some(29))
    );
    let extra =
        "module extra\n\nextend type doc\n  relations\n    define viewer: [user] or owner\n";
    let files = [
        dsl::ModuleFile {
            name: "core.fga",
            contents: core,
        },
        dsl::ModuleFile {
            name: "extra.fga",
            contents: extra,
        },
    ];
    let model = dsl::combine_modules(&files, "1.2").expect("combines");
    let doc = model.type_definition("doc").expect("doc");
    let meta = doc.relation_metadata("viewer").expect("viewer metadata");
    assert_eq!(meta.module, "extra");
    assert_eq!(
        meta.source_info.as_ref().map(|s| s.file.as_str()),
        Some("extra.fga")
    );
    assert_eq!(dsl::model_modules(&model), ["core", "extra"]);
}
