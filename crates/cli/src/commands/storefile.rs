//! The `fga model test` store file (`*.fga.yaml`): a model (inline `model` or `model_file`),
//! tuples (inline `tuples`, `tuple_file`, `tuple_files`; YAML, JSON or CSV) and tests with
//! `check`, `list_objects` and `list_users` assertions. Paths are relative to the store file.
//!
//! trustgate adds `attributes`: object `type:id` → a JSON object, the object's stored
//! attributes (what AuthZEN conditions read as `subject.properties` / `resource.properties`),
//! written through the attributes API on import. OpenFGA's CLI does not know the key; a file
//! that has it is still a valid store file for trustgate's own `store test`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use trustgate_authz::model::AuthorizationModel;

use super::Failure;

/// A store file as written.
#[derive(Debug, Deserialize)]
pub struct StoreFile {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    model_file: Option<PathBuf>,
    #[serde(default)]
    tuples: Vec<Tuple>,
    #[serde(default)]
    tuple_file: Option<PathBuf>,
    #[serde(default)]
    tuple_files: Vec<PathBuf>,
    /// Stored attributes: object → its attributes (a JSON object each).
    #[serde(default)]
    pub attributes: BTreeMap<String, Map<String, Value>>,
    #[serde(default)]
    pub tests: Vec<TestCase>,
}

/// A tuple as written in store files.
#[derive(Debug, Clone, Deserialize)]
pub struct Tuple {
    pub user: String,
    pub relation: String,
    pub object: String,
    #[serde(default)]
    pub condition: Option<TupleCondition>,
}

/// A tuple's condition.
#[derive(Debug, Clone, Deserialize)]
pub struct TupleCondition {
    pub name: String,
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
}

impl Tuple {
    /// The OpenFGA wire form.
    pub fn to_json(&self) -> Value {
        let mut key =
            json!({ "user": self.user, "relation": self.relation, "object": self.object });
        if let Some(c) = &self.condition {
            key["condition"] =
                json!({ "name": c.name, "context": c.context.clone().unwrap_or_default() });
        }
        key
    }
}

/// One test.
#[derive(Debug, Deserialize)]
pub struct TestCase {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    tuples: Vec<Tuple>,
    #[serde(default)]
    tuple_file: Option<PathBuf>,
    #[serde(default)]
    tuple_files: Vec<PathBuf>,
    #[serde(default)]
    pub check: Vec<CheckTest>,
    #[serde(default)]
    pub list_objects: Vec<ListObjectsTest>,
    #[serde(default)]
    pub list_users: Vec<ListUsersTest>,
}

/// `check:` entries: one or several users against one or several objects.
#[derive(Debug, Deserialize)]
pub struct CheckTest {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub objects: Vec<String>,
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    pub assertions: BTreeMap<String, bool>,
}

impl CheckTest {
    /// Every (user, object) pair the entry names.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let users: Vec<&String> = self.user.iter().chain(&self.users).collect();
        let objects: Vec<&String> = self.object.iter().chain(&self.objects).collect();
        users
            .iter()
            .flat_map(|u| objects.iter().map(move |o| ((*u).clone(), (*o).clone())))
            .collect()
    }
}

/// `list_objects:` entries.
#[derive(Debug, Deserialize)]
pub struct ListObjectsTest {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(rename = "type")]
    pub object_type: String,
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    pub assertions: BTreeMap<String, Vec<String>>,
}

/// `list_users:` entries.
#[derive(Debug, Deserialize)]
pub struct ListUsersTest {
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub objects: Vec<String>,
    pub user_filter: Vec<UserFilter>,
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
    pub assertions: BTreeMap<String, ListUsersExpectation>,
}

/// A list-users filter.
#[derive(Debug, Deserialize)]
pub struct UserFilter {
    #[serde(rename = "type")]
    pub user_type: String,
    #[serde(default)]
    pub relation: Option<String>,
}

/// The users a list-users assertion expects.
#[derive(Debug, Deserialize)]
pub struct ListUsersExpectation {
    #[serde(default)]
    pub users: Vec<String>,
}

/// A store file with its referenced files loaded.
#[derive(Debug)]
pub struct Loaded {
    pub file: StoreFile,
    pub model: AuthorizationModel,
    pub tuples: Vec<Tuple>,
    dir: PathBuf,
}

impl Loaded {
    /// The tuples one test adds to the store's.
    pub fn test_tuples(&self, test: &TestCase) -> Result<Vec<Tuple>, Failure> {
        let mut tuples = test.tuples.clone();
        for path in test.tuple_file.iter().chain(&test.tuple_files) {
            tuples.extend(read_tuple_file(&self.dir.join(path))?);
        }
        Ok(tuples)
    }
}

/// Reads a store file and everything it references.
pub fn load(path: &Path) -> Result<Loaded, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
    let file: StoreFile = serde_norway::from_str(&text).map_err(|e| {
        Failure::Usage(format!("{} is not a valid store file: {e}", path.display()))
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let model_text = match (&file.model, &file.model_file) {
        (Some(inline), _) => inline.clone(),
        (None, Some(model_file)) => {
            let p = dir.join(model_file);
            std::fs::read_to_string(&p)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", p.display())))?
        }
        (None, None) => {
            return Err(Failure::Usage(format!(
                "{}: a store file needs `model` or `model_file`",
                path.display()
            )));
        }
    };
    let model = parse_model(&model_text)?;
    let mut tuples = file.tuples.clone();
    for p in file.tuple_file.iter().chain(&file.tuple_files) {
        tuples.extend(read_tuple_file(&dir.join(p))?);
    }
    Ok(Loaded {
        file,
        model,
        tuples,
        dir,
    })
}

/// A model in the DSL or in OpenFGA's JSON format.
pub fn parse_model(text: &str) -> Result<AuthorizationModel, Failure> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text)
            .map_err(|e| Failure::Usage(format!("invalid JSON model: {e}")));
    }
    trustgate_authz::dsl::parse(text).map_err(|e| Failure::Usage(format!("invalid model: {e}")))
}

/// Tuples from a `.yaml`/`.yml`, `.json` or `.csv` file.
pub fn read_tuple_file(path: &Path) -> Result<Vec<Tuple>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
    let bad = |e: String| Failure::Usage(format!("{}: {e}", path.display()));
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text).map_err(|e| bad(e.to_string())),
        Some("csv") => read_csv(&text).map_err(bad),
        _ => serde_norway::from_str(&text).map_err(|e| bad(e.to_string())),
    }
}

/// OpenFGA CLI's CSV columns: user_type, user_id, user_relation, relation, object_type,
/// object_id, condition_name, condition_context.
fn read_csv(text: &str) -> Result<Vec<Tuple>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty CSV file")?
        .split(',')
        .map(str::trim)
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(ut), Some(ui), Some(rel), Some(ot), Some(oi)) = (
        col("user_type"),
        col("user_id"),
        col("relation"),
        col("object_type"),
        col("object_id"),
    ) else {
        return Err(
            "CSV needs user_type, user_id, relation, object_type, object_id columns".into(),
        );
    };
    let ur = col("user_relation");
    let cn = col("condition_name");
    let cc = col("condition_context");
    let mut tuples = Vec::new();
    for (n, line) in lines.enumerate() {
        // The context column is JSON and may contain commas: it is the rest of the line.
        let fields: Vec<&str> = match cc {
            Some(i) => line.splitn(i + 1, ',').collect(),
            None => line.split(',').collect(),
        };
        let get = |i: usize| fields.get(i).map(|f| f.trim()).unwrap_or_default();
        let mut user = format!("{}:{}", get(ut), get(ui));
        if let Some(i) = ur.filter(|i| !get(*i).is_empty()) {
            user = format!("{user}#{}", get(i));
        }
        let condition = match cn.map(get).filter(|s| !s.is_empty()) {
            Some(name) => {
                let context = match cc.map(get).filter(|s| !s.is_empty()) {
                    Some(raw) => Some(
                        serde_json::from_str(raw.trim_matches('"'))
                            .map_err(|e| format!("line {}: condition_context: {e}", n + 2))?,
                    ),
                    None => None,
                };
                Some(TupleCondition {
                    name: name.to_owned(),
                    context,
                })
            }
            None => None,
        };
        tuples.push(Tuple {
            user,
            relation: get(rel).to_owned(),
            object: format!("{}:{}", get(ot), get(oi)),
            condition,
        });
    }
    Ok(tuples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_tuples_with_usersets_and_conditions() {
        let csv = "user_type,user_id,user_relation,relation,object_type,object_id,condition_name,condition_context\n\
                   user,anne,,viewer,doc,1,,\n\
                   group,eng,member,viewer,doc,2,in_hours,{\"start\":\"9\",\"end\":\"17\"}\n";
        let tuples = read_csv(csv).expect("csv");
        assert_eq!(tuples.len(), 2);
        assert_eq!(tuples[0].user, "user:anne");
        assert_eq!(tuples[1].user, "group:eng#member");
        let c = tuples[1].condition.as_ref().expect("condition");
        assert_eq!(c.name, "in_hours");
        assert_eq!(c.context.as_ref().expect("ctx")["end"], "17");
        assert!(read_csv("a,b\n1,2\n").is_err());
    }

    #[test]
    fn attributes_are_objects_by_object() {
        let file: StoreFile = serde_norway::from_str(
            "model: m\nattributes:\n  user:anne: {email: anne@example.com, level: 2}\n",
        )
        .expect("yaml");
        assert_eq!(
            Value::Object(file.attributes["user:anne"].clone()),
            json!({ "email": "anne@example.com", "level": 2 })
        );
        let none: StoreFile = serde_norway::from_str("model: m\n").expect("yaml");
        assert!(none.attributes.is_empty());
        for bad in [
            "model: m\nattributes: [a]\n",
            "model: m\nattributes:\n  user:anne: eng\n",
            "model: m\nattributes:\n  user:anne: [1]\n",
        ] {
            assert!(serde_norway::from_str::<StoreFile>(bad).is_err(), "{bad}");
        }
        // The example the AuthZEN Todo tests load carries its users' emails.
        let todo = load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/authzen/todo.fga.yaml"
        )))
        .expect("the Todo store file");
        assert_eq!(todo.file.attributes.len(), 5);
        assert!(
            todo.file
                .attributes
                .values()
                .all(|a| a["email"].as_str().is_some_and(|e| e.contains('@')))
        );
    }

    #[test]
    fn check_entries_expand_users_times_objects() {
        let t: CheckTest = serde_norway::from_str(
            "users: [user:a, user:b]\nobject: doc:1\nassertions: {viewer: true}\n",
        )
        .expect("yaml");
        assert_eq!(t.pairs().len(), 2);
    }
}
