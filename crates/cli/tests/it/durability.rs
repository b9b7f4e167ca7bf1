//! Durability and faults of the real binary:
//! - every write the server acknowledged (relationship tuples, users, role grants) survives a
//!   `kill -9` in the middle of concurrent writes, on SQLite and on PostgreSQL;
//! - a PostgreSQL server that restarts under a running trustgate (a throwaway cluster driven by
//!   `pg_ctl`): `/readyz`, a Check, a token request and a login answer 503 while it is down (no
//!   500, no answer computed without the database) and the same process recovers once it is
//!   back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trustgate_store::testing::{POSTGRES_URL_VAR, TestDatabase};

use crate::support::{Running, http};

const TOKEN: &str = "tg_admin_durability_test_0123456789abcdefghij";
const SECRETS_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TRUSTGATE_BOOTSTRAP_TOKEN", TOKEN),
        ("TRUSTGATE_SECRETS_KEY", SECRETS_KEY),
        ("TRUSTGATE_DATABASE__ACQUIRE_TIMEOUT_SECS", "1"),
    ]
}

fn post(base: &str, path: &str, body: &Value) -> reqwest::Result<reqwest::blocking::Response> {
    http()
        .post(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
}

fn ok_json(response: reqwest::blocking::Response, what: &str) -> Value {
    let status = response.status();
    let text = response.text().unwrap_or_default();
    assert!(status.is_success(), "{what}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A relationship store with a model where users view documents; returns its id.
fn fga_store(base: &str) -> String {
    let store = ok_json(
        post(base, "/stores", &json!({"name": "durable"})).expect("create store"),
        "create store",
    );
    let id = store["id"].as_str().expect("store id").to_owned();
    let model = json!({
        "schema_version": "1.1",
        "type_definitions": [
            {"type": "user"},
            {"type": "doc", "relations": {"viewer": {"this": {}}},
             "metadata": {"relations": {"viewer": {"directly_related_user_types": [{"type": "user"}]}}}}
        ]
    });
    ok_json(
        post(base, &format!("/stores/{id}/authorization-models"), &model).expect("model"),
        "write model",
    );
    id
}

/// Every tuple of a store, as `object#relation@user`.
fn all_tuples(base: &str, store: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut token = String::new();
    loop {
        let mut body = json!({"page_size": 100});
        if !token.is_empty() {
            body["continuation_token"] = json!(token);
        }
        let page = ok_json(
            post(base, &format!("/stores/{store}/read"), &body).expect("read"),
            "read tuples",
        );
        for t in page["tuples"].as_array().expect("tuples") {
            let k = &t["key"];
            out.insert(format!(
                "{}#{}@{}",
                k["object"].as_str().unwrap_or(""),
                k["relation"].as_str().unwrap_or(""),
                k["user"].as_str().unwrap_or("")
            ));
        }
        token = page["continuation_token"].as_str().unwrap_or("").to_owned();
        if token.is_empty() {
            return out;
        }
    }
}

/// What the writers had acknowledged when the server died.
#[derive(Default)]
struct Acknowledged {
    tuples: Vec<String>,
    users: Vec<String>,
    grants: Vec<String>,
}

/// Writes concurrently (two tuple writers, a user creator, a role granter) until `stop` or the
/// first failed request, recording every write answered with success.
fn write_until_killed(base: &str, store: &str, stop: &Arc<AtomicBool>) -> Arc<Mutex<Acknowledged>> {
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut writers = Vec::new();
    for w in 0..2 {
        let (base, store, stop, acked) = (
            base.to_owned(),
            store.to_owned(),
            stop.clone(),
            acked.clone(),
        );
        writers.push(std::thread::spawn(move || {
            for n in 0.. {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let (object, user) = (format!("doc:w{w}-{n}"), format!("user:u{n}"));
                let body = json!({"writes": {"tuple_keys": [
                    {"user": user, "relation": "viewer", "object": object}
                ]}});
                match post(&base, &format!("/stores/{store}/write"), &body) {
                    Ok(r) if r.status().is_success() => acked
                        .lock()
                        .expect("lock")
                        .tuples
                        .push(format!("{object}#viewer@{user}")),
                    _ => return,
                }
            }
        }));
    }
    {
        let (base, stop, acked) = (base.to_owned(), stop.clone(), acked.clone());
        writers.push(std::thread::spawn(move || {
            for n in 0.. {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let body = json!({"username": format!("durable{n}"), "email": format!("durable{n}@example.com")});
                let Ok(r) = post(&base, "/admin/v1/users", &body) else {
                    return;
                };
                if !r.status().is_success() {
                    return;
                }
                let Ok(user) = r.json::<Value>() else { return };
                let id = user["id"].as_str().unwrap_or_default().to_owned();
                acked.lock().expect("lock").users.push(id.clone());
                // A role grant on the user just created: a second acknowledged write.
                let grant = json!({"subject": format!("user:{id}"), "role": "auditor"});
                match post(&base, "/admin/v1/roles", &grant) {
                    Ok(r) if r.status().is_success() => acked.lock().expect("lock").grants.push(id),
                    _ => return,
                }
            }
        }));
    }
    // The writers end on their own once the server is gone.
    std::thread::spawn(move || {
        for w in writers {
            let _ = w.join();
        }
    });
    acked
}

/// Starts a server, writes concurrently for a while, kills it with SIGKILL mid-stream, starts it
/// again on the same data and checks every acknowledged write.
fn acknowledged_writes_survive_kill_9(data: &Path, args: &[&str]) {
    let env = env();
    let server = Running::start(data, args, &env);
    let store = fga_store(&server.base);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = write_until_killed(&server.base, &store, &stop);
    // Kill mid-stream once every writer has made progress (at least 1.5 s, at most 30 s: on a
    // machine busy with the rest of the suite the first writes can take a while).
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500)
        || (started.elapsed() < Duration::from_secs(30) && {
            let a = acked.lock().expect("lock");
            a.tuples.len() <= 10 || a.users.is_empty() || a.grants.is_empty()
        })
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill9();
    // Give in-flight answers a moment to arrive (or fail); later writes cannot succeed.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    assert!(
        acked.tuples.len() > 10 && !acked.users.is_empty() && !acked.grants.is_empty(),
        "the writers made progress: {} tuples, {} users, {} grants",
        acked.tuples.len(),
        acked.users.len(),
        acked.grants.len()
    );

    let server = Running::start(data, args, &env);
    let stored = all_tuples(&server.base, &store);
    let lost: Vec<&String> = acked
        .tuples
        .iter()
        .filter(|t| !stored.contains(*t))
        .collect();
    assert!(lost.is_empty(), "acknowledged tuples lost: {lost:?}");
    for id in &acked.users {
        let r = http()
            .get(format!("{}/admin/v1/users/{id}", server.base))
            .bearer_auth(TOKEN)
            .send()
            .expect("get user");
        assert_eq!(r.status(), 200, "acknowledged user {id} lost");
    }
    for id in &acked.grants {
        let roles = ok_json(
            http()
                .get(format!("{}/admin/v1/roles", server.base))
                .query(&[("subject", format!("user:{id}"))])
                .bearer_auth(TOKEN)
                .send()
                .expect("roles"),
            "list roles",
        );
        assert_eq!(roles["roles"], json!(["auditor"]), "grant to {id} lost");
    }
}

#[test]
fn acknowledged_writes_survive_kill_9_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    acknowledged_writes_survive_kill_9(&dir.path().join("data"), &[]);
}

#[test]
fn acknowledged_writes_survive_kill_9_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(db) = runtime.block_on(TestDatabase::postgres("kill_9_on_postgres")) else {
        return;
    };
    let schema = db.schema.clone().expect("schema");
    let separator = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}options=-c%20search_path%3D{schema}", db.url);
    let dir = tempfile::tempdir().expect("tempdir");
    acknowledged_writes_survive_kill_9(dir.path(), &["--database-url", &url]);
    drop(db);
}

/// A PostgreSQL cluster of its own in a temporary directory, run as the `postgres` OS user
/// (PostgreSQL refuses root). Stopped and removed on drop, even when the test fails.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// A running cluster, or `None` with the reason when this machine cannot run one.
    fn start() -> Result<Cluster, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|_| "no /usr/lib/postgresql (install postgresql)".to_owned())?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
            .max()
            .ok_or("no initdb and pg_ctl under /usr/lib/postgresql/*/bin")?;
        let whoami = Command::new("id")
            .arg("-un")
            .output()
            .map_err(|e| e.to_string())?;
        let me = String::from_utf8_lossy(&whoami.stdout).trim().to_owned();
        let as_postgres = match me.as_str() {
            "root" => true,
            "postgres" => false,
            other => return Err(format!("running as {other}; needs root or postgres")),
        };
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("cannot chown the cluster directory to postgres".into());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let cluster = Cluster {
            bin,
            dir,
            port,
            as_postgres,
        };
        let data = cluster.data();
        let out = cluster
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(self.data())
            .args(["-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &options, "start"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl start failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
            ))
        }
    }

    fn stop_immediately(&self) {
        let _ = self
            .command("pg_ctl")
            .args(["-w", "-D"])
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_immediately();
    }
}

fn wait_for_status(url: &str, want: u16, limit: Duration) -> u16 {
    let deadline = Instant::now() + limit;
    loop {
        let status = http().get(url).send().map_or(0, |r| r.status().as_u16());
        if status == want || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the test asks while the database is up or down: a Check, a token request, a login.
struct Probe {
    base: String,
    store: String,
    client_id: String,
    client_secret: String,
}

const PASSWORD: &str = "durable correct horse battery staple";

impl Probe {
    fn check(&self) -> (u16, Value) {
        let r = post(
            &self.base,
            &format!("/stores/{}/check", self.store),
            &json!({"tuple_key": {"user": "user:anne", "relation": "viewer", "object": "doc:1"}}),
        )
        .expect("check");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    fn token(&self) -> (u16, Value) {
        let r = http()
            .post(format!("{}/oauth2/token", self.base))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .expect("token");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// A password login through the page: the post's status.
    fn login(&self) -> u16 {
        crate::support::password_login(&self.base, "anne", PASSWORD)
    }
}

#[test]
fn a_postgres_restart_answers_503_and_recovers_without_a_restart() {
    let cluster = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(why) => {
            assert!(
                std::env::var_os(POSTGRES_URL_VAR).is_none(),
                "{POSTGRES_URL_VAR} is set (CI), but a throwaway PostgreSQL cluster cannot run: {why}"
            );
            eprintln!("skipping the PostgreSQL restart test: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let url = cluster.url();
    let server = Running::start(dir.path(), &["--database-url", &url], &env());
    let base = server.base.clone();
    let store = fga_store(&base);
    ok_json(
        post(
            &base,
            &format!("/stores/{store}/write"),
            &json!({"writes": {"tuple_keys": [
                {"user": "user:anne", "relation": "viewer", "object": "doc:1"}
            ]}}),
        )
        .expect("write"),
        "write tuple",
    );
    ok_json(
        post(
            &base,
            "/admin/v1/users",
            &json!({
                "username": "anne", "email": "anne@example.com", "password": PASSWORD
            }),
        )
        .expect("user"),
        "create user",
    );
    let client = ok_json(
        post(
            &base,
            "/admin/v1/clients",
            &json!({
                "name": "Reports", "grant_types": ["client_credentials"], "redirect_uris": []
            }),
        )
        .expect("client"),
        "create client",
    );
    let probe = Probe {
        base: base.clone(),
        store,
        client_id: client["id"]
            .as_str()
            .or(client["client_id"].as_str())
            .expect("client id")
            .to_owned(),
        client_secret: client["client_secret"].as_str().expect("secret").to_owned(),
    };
    let readyz = format!("{base}/readyz");
    assert_eq!(http().get(&readyz).send().expect("readyz").status(), 200);
    let (status, body) = probe.check();
    assert_eq!((status, &body["allowed"]), (200, &json!(true)), "{body}");
    let (status, body) = probe.token();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        probe.login(),
        303,
        "the login works while the database is up"
    );

    cluster.stop_immediately();
    assert_eq!(wait_for_status(&readyz, 503, Duration::from_secs(20)), 503);
    // A Check, a token and a login all need the database: 503, never 500, never an answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let (status, body) = probe.check();
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 503, "check while the database is down: {body}");
    assert!(body.get("allowed").is_none(), "{body}");
    let (status, body) = probe.token();
    assert_eq!(status, 503, "token while the database is down: {body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(probe.login(), 503, "login while the database is down");

    cluster.pg_ctl_start().expect("PostgreSQL starts again");
    assert_eq!(
        wait_for_status(&readyz, 200, Duration::from_secs(30)),
        200,
        "the same process is ready again"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = probe.check();
        if status == 200 {
            assert_eq!(body["allowed"], true, "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "check never recovered: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = probe.token();
    assert_eq!(status, 200, "{body}");
    assert_eq!(probe.login(), 303, "the login works again");
    drop(server);
}
