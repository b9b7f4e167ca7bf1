//! The binary on PostgreSQL: it comes up and is ready; when the database goes away `/readyz`
//! says 503 (and `/healthz` stays 200), and it recovers on its own when the database returns.
//! The outage is simulated by a TCP relay between the server and PostgreSQL that the test cuts.
//! Two replicas on one database share their signing keys: a rotation through one reaches the
//! other's JWKS by its key maintenance (every 60 s), not by a restart. Skips with a message when
//! `TRUSTGATE_TEST_DATABASE_URL` is unset.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trustgate_store::testing::TestDatabase;

use crate::support::{Running, http, run, trustgate};

/// Forwards TCP connections to `upstream` while `up` is set; cutting it closes every open
/// connection and refuses new ones.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(upstream: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let open = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let (up2, open2) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if !up2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let mut guard = open2.lock().expect("lock");
                for s in [&client, &server] {
                    if let Ok(clone) = s.try_clone() {
                        guard.push(clone);
                    }
                }
                drop(guard);
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        Relay { port, up, open }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().expect("lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

fn wait_for_status(url: &str, want: u16, limit: Duration) -> u16 {
    let client = http();
    let deadline = Instant::now() + limit;
    loop {
        let status = client.get(url).send().map_or(0, |r| r.status().as_u16());
        if status == want || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn readyz_follows_postgres_availability_without_restart() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(db) = runtime.block_on(TestDatabase::postgres("readyz_follows_postgres")) else {
        return;
    };
    let schema = db.schema.clone().expect("schema");
    // postgres://user@host:port/db -> host:port
    let authority = db.url.split("://").nth(1).expect("url");
    let host_port = authority
        .split('/')
        .next()
        .and_then(|a| a.rsplit('@').next())
        .expect("host");
    let relay = Relay::start(host_port.to_owned());
    let database = db.url.split('/').next_back().expect("database name");
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/{database}?options=-c%20search_path%3D{schema}",
        relay.port
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "tg_admin_postgres_test_0123456789abcdefghijkl";
    let server = Running::start(
        dir.path(),
        &["--database-url", &url],
        &[
            ("TRUSTGATE_BOOTSTRAP_TOKEN", token),
            (
                "TRUSTGATE_SECRETS_KEY",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ),
            ("TRUSTGATE_DATABASE__ACQUIRE_TIMEOUT_SECS", "1"),
        ],
    );
    let readyz = format!("{}/readyz", server.base);
    let ready = http().get(&readyz).send().expect("readyz");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().expect("json");
    assert_eq!(body["database"], "postgres");

    relay.cut();
    assert_eq!(wait_for_status(&readyz, 503, Duration::from_secs(20)), 503);
    let health = http()
        .get(format!("{}/healthz", server.base))
        .send()
        .expect("healthz");
    assert_eq!(
        health.status(),
        200,
        "liveness does not depend on the database"
    );

    relay.restore();
    assert_eq!(
        wait_for_status(&readyz, 200, Duration::from_secs(30)),
        200,
        "recovers without a restart"
    );
    let whoami = http()
        .get(format!("{}/admin/v1/whoami", server.base))
        .bearer_auth(token)
        .send()
        .expect("whoami");
    assert_eq!(whoami.status(), 200);
    drop(server);
    drop(db);
}

/// The kids in a server's published JWKS.
fn published_kids(base: &str) -> Vec<String> {
    let jwks: serde_json::Value = http()
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .expect("jwks")
        .json()
        .expect("json");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_key_rotated_on_one_replica_reaches_the_other() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(db) = runtime.block_on(TestDatabase::postgres("key_rotation_replicas")) else {
        return;
    };
    let schema = db.schema.clone().expect("schema");
    let separator = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}options=-c%20search_path%3D{schema}", db.url);
    let token = "tg_admin_replicas_test_0123456789abcdefghijkl";
    let env = [
        ("TRUSTGATE_BOOTSTRAP_TOKEN", token),
        (
            "TRUSTGATE_SECRETS_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
    ];
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a = Running::start(dir_a.path(), &["--database-url", &url], &env);
    let b = Running::start(dir_b.path(), &["--database-url", &url], &env);
    let mut initial = published_kids(&a.base);
    initial.sort();
    let mut on_b = published_kids(&b.base);
    on_b.sort();
    assert_eq!(initial.len(), 3);
    assert_eq!(initial, on_b, "both replicas publish the same keys");

    let mut cmd = trustgate();
    cmd.args([
        "keys",
        "rotate",
        "--algorithm",
        "EdDSA",
        "--server",
        &a.base,
    ])
    .args(["--token", token]);
    let out = run(cmd);
    assert!(out.status.success(), "{out:?}");
    let rotated: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let new_kid = rotated["keys"][0]["kid"].as_str().expect("kid").to_owned();
    assert!(
        published_kids(&a.base).contains(&new_kid),
        "A publishes at once"
    );

    // B learns it from the database at its next maintenance, well before the key signs
    // (oauth.key_publish_ahead_secs, 600 s).
    let deadline = Instant::now() + Duration::from_secs(90);
    while !published_kids(&b.base).contains(&new_kid) {
        assert!(
            Instant::now() < deadline,
            "replica B never published {new_kid}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut cmd = trustgate();
    cmd.args(["keys", "list", "--server", &b.base, "--token", token]);
    let out = run(cmd);
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let state = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == new_kid.as_str())
        .map(|k| k["state"].clone());
    assert_eq!(state, Some(serde_json::json!("published")));
    drop(a);
    drop(b);
    drop(db);
}
