//! Relationship commands: clients of the OpenFGA-compatible `/stores` API (`store`, `model`,
//! `tuple`, `attributes`, `check`, `list-objects`, `list-users`), plus `model transform`, which runs locally.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};
use trustgate_authz::engine::Step;

use super::Failure;
use super::storefile::{self, Loaded, Tuple};
use crate::client::{Client, ClientArgs, print_json};

/// OpenFGA's limit on tuples per Write request.
const WRITE_CHUNK: usize = 100;
/// Tuples per `POST /stores/{id}/import` of `store import` / `store test`: half the server's
/// default `authz.max_tuples_per_import`, a few megabytes of JSON.
const IMPORT_CHUNK: usize = 50_000;

/// Which store a command addresses.
#[derive(Debug, Clone, Args)]
pub struct StoreArg {
    /// The store id [env: FGA_STORE_ID].
    #[arg(long, env = "FGA_STORE_ID")]
    store_id: String,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create a store.
    Create {
        /// Its name.
        name: String,
    },
    /// List stores.
    List,
    /// Show a store.
    Get(StoreArg),
    /// Delete a store.
    Delete(StoreArg),
    /// Create a store from an `fga` store file (model, tuples, stored attributes) and print its
    /// ids; the tuples go through the bulk import endpoint, 50,000 a request (tuples that exist
    /// identically are skipped, so an interrupted import can be run again with `--store-id`).
    Import {
        /// The `*.fga.yaml` store file.
        file: PathBuf,
        /// Import into this existing store instead of creating one.
        #[arg(long)]
        store_id: Option<String>,
    },
    /// Run a store file's check / list_objects / list_users tests against the server.
    Test {
        /// The `*.fga.yaml` store file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Write a model (DSL `.fga` or JSON) as the store's newest version.
    Write {
        #[command(flatten)]
        store: StoreArg,
        /// The model file.
        file: PathBuf,
    },
    /// Print a model (the latest unless --model-id), as DSL or JSON.
    Get {
        #[command(flatten)]
        store: StoreArg,
        /// A specific model version.
        #[arg(long)]
        model_id: Option<String>,
        /// dsl or json.
        #[arg(long, default_value = "dsl")]
        format: String,
    },
    /// List model versions, newest first.
    List(StoreArg),
    /// Convert a model file between the DSL and JSON (locally; no server).
    Transform {
        /// The model file (`.fga` DSL or `.json`).
        file: PathBuf,
        /// Output: dsl or json (default: the other one).
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct TupleArgs {
    #[command(flatten)]
    store: StoreArg,
    /// `type:id`, `type:*` or `type:id#relation`.
    user: Option<String>,
    /// The relation.
    relation: Option<String>,
    /// `type:id`.
    object: Option<String>,
    /// A condition name for the tuple.
    #[arg(long)]
    condition_name: Option<String>,
    /// The condition's stored context as a JSON object.
    #[arg(long)]
    condition_context: Option<String>,
    /// Tuples from a file (YAML, JSON or CSV) instead of arguments.
    #[arg(long)]
    file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TupleCommand {
    /// Write tuples (all or nothing per 100).
    Write(TupleArgs),
    /// Delete tuples.
    Delete(TupleArgs),
    /// Read tuples matching a filter (all pages).
    Read {
        #[command(flatten)]
        store: StoreArg,
        /// Filter by user.
        #[arg(long)]
        user: Option<String>,
        /// Filter by relation.
        #[arg(long)]
        relation: Option<String>,
        /// Filter by object (`type:id`, or `type:` for every object of a type).
        #[arg(long)]
        object: Option<String>,
    },
}

/// Stored attributes of objects, which AuthZEN evaluations merge into the subject's and the
/// resource's `properties` (`/stores/{id}/attributes/{object}`).
#[derive(Debug, Subcommand)]
pub enum AttributesCommand {
    /// Replace the attributes of OBJECT with a JSON object.
    Set {
        #[command(flatten)]
        store: StoreArg,
        /// The object, `type:id` (a subject too: `user:alice`).
        object: String,
        /// The attributes, a JSON object (at most 16 KiB).
        attributes: String,
    },
    /// Show the attributes of OBJECT (`{}` when none are stored).
    Get {
        #[command(flatten)]
        store: StoreArg,
        /// The object, `type:id`.
        object: String,
    },
    /// Delete the attributes of OBJECT.
    Delete {
        #[command(flatten)]
        store: StoreArg,
        /// The object, `type:id`.
        object: String,
    },
}

/// `object` as one path segment: everything but unreserved characters and `:` percent-encoded.
fn segment(object: &str) -> String {
    let mut out = String::with_capacity(object.len());
    for b in object.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn attributes(command: AttributesCommand, args: &ClientArgs) -> Result<(), Failure> {
    let client = Client::new(args)?;
    match command {
        AttributesCommand::Set {
            store,
            object,
            attributes,
        } => {
            let attributes = json_object(Some(&attributes), "the attributes")?.unwrap_or_default();
            print_json(
                &client
                    .call(
                        Method::PUT,
                        &path(
                            &store.store_id,
                            &format!("/attributes/{}", segment(&object)),
                        ),
                        Some(&Value::Object(attributes)),
                    )
                    .await?,
            );
        }
        AttributesCommand::Get { store, object } => {
            print_json(
                &client
                    .call(
                        Method::GET,
                        &path(
                            &store.store_id,
                            &format!("/attributes/{}", segment(&object)),
                        ),
                        None,
                    )
                    .await?,
            );
        }
        AttributesCommand::Delete { store, object } => {
            client
                .call(
                    Method::DELETE,
                    &path(
                        &store.store_id,
                        &format!("/attributes/{}", segment(&object)),
                    ),
                    None,
                )
                .await?;
            println!("deleted the attributes of {object}");
        }
    }
    Ok(())
}

/// Options shared by the evaluation commands.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    store: StoreArg,
    /// Evaluate against this model version (default: latest).
    #[arg(long)]
    model_id: Option<String>,
    /// Request context for conditions, a JSON object.
    #[arg(long)]
    context: Option<String>,
    /// A contextual tuple "USER RELATION OBJECT" (repeatable).
    #[arg(long = "contextual-tuple", value_name = "USER RELATION OBJECT")]
    contextual_tuples: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    eval: EvalArgs,
    /// The user.
    user: String,
    /// The relation.
    relation: String,
    /// The object.
    object: String,
    /// Explain the decision: its reason and the steps that led to it (the path of tuples that
    /// granted an allow, every branch of a deny and why it failed), as text.
    #[arg(long)]
    explain: bool,
}

#[derive(Debug, Args)]
pub struct ListObjectsArgs {
    #[command(flatten)]
    eval: EvalArgs,
    /// The user.
    user: String,
    /// The relation.
    relation: String,
    /// The object type.
    object_type: String,
}

#[derive(Debug, Args)]
pub struct ListUsersArgs {
    #[command(flatten)]
    eval: EvalArgs,
    /// The object.
    object: String,
    /// The relation.
    relation: String,
    /// The kind of users to list: `TYPE` or `TYPE#RELATION` (one, as OpenFGA's API takes).
    #[arg(long = "user-filter")]
    user_filter: String,
}

fn path(store_id: &str, rest: &str) -> String {
    format!("/stores/{store_id}{rest}")
}

fn json_object(raw: Option<&str>, what: &str) -> Result<Option<Map<String, Value>>, Failure> {
    raw.map(|s| {
        serde_json::from_str::<Map<String, Value>>(s)
            .map_err(|e| Failure::Usage(format!("{what} must be a JSON object: {e}")))
    })
    .transpose()
}

pub async fn store(command: StoreCommand, args: &ClientArgs) -> Result<(), Failure> {
    let client = Client::new(args)?;
    match command {
        StoreCommand::Create { name } => {
            print_json(
                &client
                    .call(Method::POST, "/stores", Some(&json!({ "name": name })))
                    .await?,
            );
        }
        StoreCommand::List => {
            let mut stores = Vec::new();
            let mut token = String::new();
            loop {
                let page = client
                    .call(
                        Method::GET,
                        &format!("/stores?page_size=100&continuation_token={token}"),
                        None,
                    )
                    .await?;
                stores.extend(page["stores"].as_array().cloned().unwrap_or_default());
                token = page["continuation_token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if token.is_empty() {
                    break;
                }
            }
            print_json(&json!({ "stores": stores }));
        }
        StoreCommand::Get(s) => print_json(
            &client
                .call(Method::GET, &path(&s.store_id, ""), None)
                .await?,
        ),
        StoreCommand::Delete(s) => {
            client
                .call(Method::DELETE, &path(&s.store_id, ""), None)
                .await?;
            println!("deleted store {}", s.store_id);
        }
        StoreCommand::Import { file, store_id } => {
            let loaded = storefile::load(&file)?;
            let imported = import(&client, &loaded, store_id, &loaded.tuples).await?;
            print_json(&json!({
                "store_id": imported.store_id,
                "authorization_model_id": imported.model_id,
                "tuples_written": imported.written,
                "tuples_existing": imported.existing,
                "attributes_written": loaded.file.attributes.len(),
            }));
        }
        StoreCommand::Test { file } => return test(&client, &file).await,
    }
    Ok(())
}

/// What [`import`] did.
struct Imported {
    store_id: String,
    model_id: String,
    /// Tuples written.
    written: u64,
    /// Tuples that existed identically (skipped).
    existing: u64,
}

/// Creates (or reuses) a store, writes the model, imports the tuples and writes the stored
/// attributes (each object's replacing what it had).
async fn import(
    client: &Client,
    loaded: &Loaded,
    store_id: Option<String>,
    tuples: &[Tuple],
) -> Result<Imported, Failure> {
    let store_id = match store_id {
        Some(id) => id,
        None => {
            let name = loaded
                .file
                .name
                .clone()
                .unwrap_or_else(|| "imported".into());
            let created = client
                .call(Method::POST, "/stores", Some(&json!({ "name": name })))
                .await?;
            created["id"].as_str().unwrap_or_default().to_owned()
        }
    };
    let model =
        serde_json::to_value(&loaded.model).map_err(|e| Failure::Failed(format!("model: {e}")))?;
    let written = client
        .call(
            Method::POST,
            &path(&store_id, "/authorization-models"),
            Some(&model),
        )
        .await?;
    let model_id = written["authorization_model_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (mut written, mut existing) = (0, 0);
    for chunk in tuples.chunks(IMPORT_CHUNK) {
        let keys: Vec<Value> = chunk.iter().map(Tuple::to_json).collect();
        let answer = client
            .call(
                Method::POST,
                &path(&store_id, "/import"),
                Some(&json!({ "authorization_model_id": model_id, "tuple_keys": keys })),
            )
            .await?;
        written += answer["written"].as_u64().unwrap_or(0);
        existing += answer["existing"].as_u64().unwrap_or(0);
    }
    for (object, attributes) in &loaded.file.attributes {
        client
            .call(
                Method::PUT,
                &path(&store_id, &format!("/attributes/{}", segment(object))),
                Some(&Value::Object(attributes.clone())),
            )
            .await?;
    }
    Ok(Imported {
        store_id,
        model_id,
        written,
        existing,
    })
}

/// Runs every test of a store file, each in a fresh store holding the file's tuples plus the
/// test's own; prints failures and `N passed, N failed`.
async fn test(client: &Client, file: &std::path::Path) -> Result<(), Failure> {
    let loaded = storefile::load(file)?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for (i, case) in loaded.file.tests.iter().enumerate() {
        let name = if case.name.is_empty() {
            format!("test {}", i + 1)
        } else {
            case.name.clone()
        };
        let mut tuples = loaded.tuples.clone();
        tuples.extend(loaded.test_tuples(case)?);
        let Imported {
            store_id, model_id, ..
        } = import(client, &loaded, None, &tuples).await?;
        let mut report = |ok: bool, what: String| {
            if ok {
                passed += 1;
            } else {
                failed += 1;
                println!("FAIL {name}: {what}");
            }
        };
        for c in &case.check {
            for (user, object) in c.pairs() {
                for (relation, expected) in &c.assertions {
                    let mut body = json!({
                        "authorization_model_id": model_id,
                        "tuple_key": { "user": user, "relation": relation, "object": object },
                    });
                    if let Some(ctx) = &c.context {
                        body["context"] = Value::Object(ctx.clone());
                    }
                    let got = client
                        .call(Method::POST, &path(&store_id, "/check"), Some(&body))
                        .await;
                    let got = got.map(|v| v["allowed"].as_bool().unwrap_or(false));
                    report(
                        matches!(got, Ok(a) if a == *expected),
                        format!(
                            "check {user} {relation} {object}: expected {expected}, got {}",
                            show(&got)
                        ),
                    );
                }
            }
        }
        for l in &case.list_objects {
            for user in l.user.iter().chain(&l.users) {
                for (relation, expected) in &l.assertions {
                    let mut body = json!({
                        "authorization_model_id": model_id,
                        "type": l.object_type, "relation": relation, "user": user,
                    });
                    if let Some(ctx) = &l.context {
                        body["context"] = Value::Object(ctx.clone());
                    }
                    let got = client
                        .call(Method::POST, &path(&store_id, "/list-objects"), Some(&body))
                        .await
                        .map(|v| strings(&v["objects"]));
                    let want: BTreeSet<String> = expected.iter().cloned().collect();
                    report(
                        matches!(&got, Ok(g) if *g == want),
                        format!(
                            "list-objects {user} {relation} {}: expected {want:?}, got {}",
                            l.object_type,
                            show(&got)
                        ),
                    );
                }
            }
        }
        for l in &case.list_users {
            for object in l.object.iter().chain(&l.objects) {
                let Some((object_type, object_id)) = object.split_once(':') else {
                    report(false, format!("list-users: bad object {object}"));
                    continue;
                };
                let filters: Vec<Value> = l
                    .user_filter
                    .iter()
                    .map(|f| match &f.relation {
                        Some(r) => json!({ "type": f.user_type, "relation": r }),
                        None => json!({ "type": f.user_type }),
                    })
                    .collect();
                for (relation, expected) in &l.assertions {
                    let mut body = json!({
                        "authorization_model_id": model_id,
                        "object": { "type": object_type, "id": object_id },
                        "relation": relation,
                        "user_filters": filters,
                    });
                    if let Some(ctx) = &l.context {
                        body["context"] = Value::Object(ctx.clone());
                    }
                    let got = client
                        .call(Method::POST, &path(&store_id, "/list-users"), Some(&body))
                        .await
                        .map(|v| {
                            v["users"]
                                .as_array()
                                .map(|us| us.iter().map(user_string).collect::<BTreeSet<String>>())
                                .unwrap_or_default()
                        });
                    let want: BTreeSet<String> = expected.users.iter().cloned().collect();
                    report(
                        matches!(&got, Ok(g) if *g == want),
                        format!(
                            "list-users {object} {relation}: expected {want:?}, got {}",
                            show(&got)
                        ),
                    );
                }
            }
        }
        client
            .call(Method::DELETE, &path(&store_id, ""), None)
            .await?;
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        return Err(Failure::Failed(format!("{failed} assertion(s) failed")));
    }
    Ok(())
}

fn show<T: std::fmt::Debug>(r: &Result<T, Failure>) -> String {
    match r {
        Ok(v) => format!("{v:?}"),
        Err(Failure::Failed(m) | Failure::Usage(m)) => format!("error {m}"),
    }
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A list-users answer entry in the string form store files use.
fn user_string(u: &Value) -> String {
    if let Some(o) = u.get("object") {
        format!(
            "{}:{}",
            o["type"].as_str().unwrap_or(""),
            o["id"].as_str().unwrap_or("")
        )
    } else if let Some(s) = u.get("userset") {
        format!(
            "{}:{}#{}",
            s["type"].as_str().unwrap_or(""),
            s["id"].as_str().unwrap_or(""),
            s["relation"].as_str().unwrap_or("")
        )
    } else if let Some(w) = u.get("wildcard") {
        format!("{}:*", w["type"].as_str().unwrap_or(""))
    } else {
        u.to_string()
    }
}

pub async fn model(command: ModelCommand, args: &ClientArgs) -> Result<(), Failure> {
    if let ModelCommand::Transform { file, to } = &command {
        return transform(file, to.as_deref());
    }
    let client = Client::new(args)?;
    match command {
        ModelCommand::Write { store, file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
            let model = storefile::parse_model(&text)?;
            let body = serde_json::to_value(&model).map_err(|e| Failure::Failed(e.to_string()))?;
            print_json(
                &client
                    .call(
                        Method::POST,
                        &path(&store.store_id, "/authorization-models"),
                        Some(&body),
                    )
                    .await?,
            );
        }
        ModelCommand::Get {
            store,
            model_id,
            format,
        } => {
            let model = match model_id {
                Some(id) => client
                    .call(
                        Method::GET,
                        &path(&store.store_id, &format!("/authorization-models/{id}")),
                        None,
                    )
                    .await?["authorization_model"]
                    .clone(),
                None => {
                    let list = client
                        .call(
                            Method::GET,
                            &path(&store.store_id, "/authorization-models?page_size=1"),
                            None,
                        )
                        .await?;
                    list["authorization_models"]
                        .get(0)
                        .cloned()
                        .ok_or_else(|| Failure::Failed("the store has no model".into()))?
                }
            };
            if format == "json" {
                print_json(&model);
            } else {
                let parsed: trustgate_authz::model::AuthorizationModel =
                    serde_json::from_value(model).map_err(|e| {
                        Failure::Failed(format!("server returned an unreadable model: {e}"))
                    })?;
                let dsl = trustgate_authz::dsl::write(&parsed)
                    .map_err(|e| Failure::Failed(format!("cannot write as DSL: {e}")))?;
                print!("{dsl}");
            }
        }
        ModelCommand::List(store) => {
            print_json(
                &client
                    .call(
                        Method::GET,
                        &path(&store.store_id, "/authorization-models"),
                        None,
                    )
                    .await?,
            );
        }
        ModelCommand::Transform { .. } => {}
    }
    Ok(())
}

fn transform(file: &std::path::Path, to: Option<&str>) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
    let is_json = text.trim_start().starts_with('{');
    let model = storefile::parse_model(&text)?;
    match to.unwrap_or(if is_json { "dsl" } else { "json" }) {
        "json" => {
            let v = serde_json::to_value(&model).map_err(|e| Failure::Failed(e.to_string()))?;
            print_json(&v);
        }
        "dsl" => {
            let dsl = trustgate_authz::dsl::write(&model)
                .map_err(|e| Failure::Failed(format!("cannot write as DSL: {e}")))?;
            print!("{dsl}");
        }
        other => {
            return Err(Failure::Usage(format!(
                "--to must be dsl or json, not {other}"
            )));
        }
    }
    Ok(())
}

fn tuples_of(args: &TupleArgs) -> Result<Vec<Value>, Failure> {
    if let Some(file) = &args.file {
        return Ok(storefile::read_tuple_file(file)?
            .iter()
            .map(Tuple::to_json)
            .collect());
    }
    let (Some(user), Some(relation), Some(object)) = (&args.user, &args.relation, &args.object)
    else {
        return Err(Failure::Usage("give USER RELATION OBJECT or --file".into()));
    };
    let condition = match &args.condition_name {
        Some(name) => Some(storefile::TupleCondition {
            name: name.clone(),
            context: json_object(args.condition_context.as_deref(), "--condition-context")?,
        }),
        None => None,
    };
    Ok(vec![
        Tuple {
            user: user.clone(),
            relation: relation.clone(),
            object: object.clone(),
            condition,
        }
        .to_json(),
    ])
}

pub async fn tuple(command: TupleCommand, args: &ClientArgs) -> Result<(), Failure> {
    let client = Client::new(args)?;
    match command {
        TupleCommand::Write(t) => {
            let keys = tuples_of(&t)?;
            for chunk in keys.chunks(WRITE_CHUNK) {
                client
                    .call(
                        Method::POST,
                        &path(&t.store.store_id, "/write"),
                        Some(&json!({ "writes": { "tuple_keys": chunk } })),
                    )
                    .await?;
            }
            println!("wrote {} tuple(s)", keys.len());
        }
        TupleCommand::Delete(t) => {
            let keys: Vec<Value> = tuples_of(&t)?
                .into_iter()
                .map(|mut k| {
                    if let Some(o) = k.as_object_mut() {
                        o.remove("condition");
                    }
                    k
                })
                .collect();
            for chunk in keys.chunks(WRITE_CHUNK) {
                client
                    .call(
                        Method::POST,
                        &path(&t.store.store_id, "/write"),
                        Some(&json!({ "deletes": { "tuple_keys": chunk } })),
                    )
                    .await?;
            }
            println!("deleted {} tuple(s)", keys.len());
        }
        TupleCommand::Read {
            store,
            user,
            relation,
            object,
        } => {
            let mut filter = Map::new();
            for (k, v) in [("user", user), ("relation", relation), ("object", object)] {
                if let Some(v) = v {
                    filter.insert(k.into(), Value::String(v));
                }
            }
            let mut tuples = Vec::new();
            let mut token = String::new();
            loop {
                let mut body = json!({ "page_size": 100, "continuation_token": token });
                if !filter.is_empty() {
                    body["tuple_key"] = Value::Object(filter.clone());
                }
                let page = client
                    .call(Method::POST, &path(&store.store_id, "/read"), Some(&body))
                    .await?;
                tuples.extend(page["tuples"].as_array().cloned().unwrap_or_default());
                token = page["continuation_token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if token.is_empty() {
                    break;
                }
            }
            print_json(&json!({ "tuples": tuples }));
        }
    }
    Ok(())
}

fn eval_body(eval: &EvalArgs, mut body: Value) -> Result<Value, Failure> {
    if let Some(id) = &eval.model_id {
        body["authorization_model_id"] = Value::String(id.clone());
    }
    if let Some(ctx) = json_object(eval.context.as_deref(), "--context")? {
        body["context"] = Value::Object(ctx);
    }
    if !eval.contextual_tuples.is_empty() {
        let keys = eval
            .contextual_tuples
            .iter()
            .map(|t| {
                let parts: Vec<&str> = t.split_whitespace().collect();
                match parts.as_slice() {
                    [user, relation, object] => {
                        Ok(json!({ "user": user, "relation": relation, "object": object }))
                    }
                    _ => Err(Failure::Usage(format!(
                        "--contextual-tuple wants \"USER RELATION OBJECT\", got {t:?}"
                    ))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        body["contextual_tuples"] = json!({ "tuple_keys": keys });
    }
    Ok(body)
}

pub async fn check(a: CheckArgs, args: &ClientArgs) -> Result<(), Failure> {
    let client = Client::new(args)?;
    let body = eval_body(
        &a.eval,
        json!({ "tuple_key": { "user": a.user, "relation": a.relation, "object": a.object } }),
    )?;
    let route = if a.explain { "/explain" } else { "/check" };
    let answer = client
        .call(
            Method::POST,
            &path(&a.eval.store.store_id, route),
            Some(&body),
        )
        .await?;
    if a.explain {
        print!("{}", explanation_text(&answer)?);
    } else {
        print_json(&answer);
    }
    Ok(())
}

/// An `/explain` answer as text: the decision, its reason, then the steps, one per line.
fn explanation_text(answer: &Value) -> Result<String, Failure> {
    let tree: Step = serde_json::from_value(answer["explanation"].clone())
        .map_err(|e| Failure::Failed(format!("unexpected explanation from the server: {e}")))?;
    let decision = match (&answer["allowed"], answer.get("error")) {
        (_, Some(error)) => format!(
            "error ({})",
            error["message"].as_str().unwrap_or("could not be decided")
        ),
        (Value::Bool(true), None) => "allowed".to_owned(),
        _ => "denied".to_owned(),
    };
    let mut out = format!(
        "decision: {decision}\nreason: {}\n",
        answer["reason"].as_str().unwrap_or_default()
    );
    out.push_str(&tree.to_text());
    if answer["truncated"] == Value::Bool(true) {
        out.push_str("(more steps were taken than an explanation shows)\n");
    }
    Ok(out)
}

pub async fn list_objects(a: ListObjectsArgs, args: &ClientArgs) -> Result<(), Failure> {
    let client = Client::new(args)?;
    let body = eval_body(
        &a.eval,
        json!({ "user": a.user, "relation": a.relation, "type": a.object_type }),
    )?;
    print_json(
        &client
            .call(
                Method::POST,
                &path(&a.eval.store.store_id, "/list-objects"),
                Some(&body),
            )
            .await?,
    );
    Ok(())
}

pub async fn list_users(a: ListUsersArgs, args: &ClientArgs) -> Result<(), Failure> {
    let client = Client::new(args)?;
    let Some((object_type, object_id)) = a.object.split_once(':') else {
        return Err(Failure::Usage(format!(
            "OBJECT must be type:id, got {}",
            a.object
        )));
    };
    let filters = [match a.user_filter.split_once('#') {
        Some((t, r)) => json!({ "type": t, "relation": r }),
        None => json!({ "type": a.user_filter }),
    }];
    let body = eval_body(
        &a.eval,
        json!({ "object": { "type": object_type, "id": object_id }, "relation": a.relation, "user_filters": filters }),
    )?;
    print_json(
        &client
            .call(
                Method::POST,
                &path(&a.eval.store.store_id, "/list-users"),
                Some(&body),
            )
            .await?,
    );
    Ok(())
}
