//! The parts of an OpenFGA store file (`*.fga.yaml`, the `fga model test` format that
//! `trustgate store import` reads) a test needs to load a store through the HTTP API: the model
//! (inline `model` or `model_file`, relative to the store file), the inline `tuples`, in
//! the OpenFGA write API's tuple-key shape, and trustgate's `attributes` (object → its stored
//! attributes, a JSON object each).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    model_file: Option<String>,
    #[serde(default)]
    tuples: Vec<Value>,
    #[serde(default)]
    attributes: BTreeMap<String, Map<String, Value>>,
}

/// A store file's model, tuples and stored attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreFile {
    /// The model in the DSL.
    pub model: String,
    /// Tuple keys (`user`, `relation`, `object`, optional `condition`) as JSON.
    pub tuples: Vec<Value>,
    /// Stored attributes by object (`type:id`).
    pub attributes: BTreeMap<String, Map<String, Value>>,
}

/// Reads the store file at `path`. Panics with the reason if it or its model file is missing
/// or unreadable (test support only).
pub fn load(path: &Path) -> StoreFile {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let raw: Raw =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    let model = match (raw.model, raw.model_file) {
        (Some(model), None) => model,
        (None, Some(file)) => {
            let model_path = path.parent().unwrap_or(Path::new(".")).join(file);
            std::fs::read_to_string(&model_path)
                .unwrap_or_else(|e| panic!("read {}: {e}", model_path.display()))
        }
        _ => panic!("{}: exactly one of model and model_file", path.display()),
    };
    StoreFile {
        model,
        tuples: raw.tuples,
        attributes: raw.attributes,
    }
}
