//! `trustgate serve` as a process: startup, bootstrap token, operations endpoints, restarts,
//! the single-process lock on SQLite, and one clear line for every startup failure.

use std::net::TcpListener;

use crate::support::{Running, http, run, trustgate};

#[test]
fn fresh_start_serves_ops_endpoints_and_writes_a_private_admin_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Running::start(&data, &[], &[]);
    let client = http();

    let health = client
        .get(format!("{}/healthz", server.base))
        .send()
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = client
        .get(format!("{}/readyz", server.base))
        .header("x-request-id", "ci-req-1")
        .send()
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.headers()["x-request-id"], "ci-req-1");

    // The token is printed once and written with owner-only permissions.
    let token_path = data.join("admin.token");
    let token = std::fs::read_to_string(&token_path)
        .expect("admin.token")
        .trim()
        .to_owned();
    // An API key of the bootstrap service account: greppable prefix, key id, checksum.
    assert!(token.starts_with("tg_live_"), "{token}");
    assert!(matches!(
        trustgate_authn::api_keys::format::shape(&token),
        trustgate_authn::api_keys::format::Shape::Key { .. }
    ));
    assert!(
        server.stdout_lines.iter().any(|l| l.contains(&token)),
        "token printed once"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_path)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The data directory and everything with secrets or data in it: owner only.
        let mode_of =
            |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode_of(&data), 0o700, "data directory");
        for file in [
            "trustgate.db",
            "trustgate.db-wal",
            "trustgate.db-shm",
            "secrets.key",
        ] {
            let path = data.join(file);
            if path.exists() {
                assert_eq!(mode_of(&path), 0o600, "{file}");
            } else {
                assert_eq!(file, "trustgate.db-shm", "{file} missing");
            }
        }
        assert!(trustgate_server::serve::loosened_paths(&data).is_empty());
    }

    // The CLI finds the token in the data dir and talks to the server.
    let mut whoami = trustgate();
    whoami
        .args(["whoami", "--server", &server.base, "--data-dir"])
        .arg(&data);
    let out = run(whoami);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("service:"));

    // Wrong token: 401, WWW-Authenticate, JSON error shape with the request id.
    let denied = client
        .get(format!("{}/admin/v1/whoami", server.base))
        .bearer_auth("tg_admin_wrong")
        .send()
        .expect("whoami");
    assert_eq!(denied.status(), 401);
    assert!(
        denied.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Bearer")
    );
    let id = denied.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let body: serde_json::Value = denied.json().expect("json");
    assert_eq!(body["code"], "unauthenticated");
    assert_eq!(body["request_id"], id.as_str());

    let mut bad = trustgate();
    bad.args([
        "whoami",
        "--server",
        &server.base,
        "--token",
        "tg_admin_nope",
    ]);
    let out = run(bad);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );

    let out = server.terminate();
    assert!(out.status.success(), "clean exit on SIGTERM: {out:?}");
}

#[test]
fn restart_after_kill_9_keeps_data_and_does_not_mint_a_new_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Running::start(dir.path(), &[], &[]);
    let token = std::fs::read_to_string(dir.path().join("admin.token")).expect("token");
    server.kill9();

    let server = Running::start(dir.path(), &[], &[]);
    assert!(
        !server
            .stdout_lines
            .iter()
            .any(|l| l.contains("bootstrap admin token")),
        "no second token: {:?}",
        server.stdout_lines
    );
    let response = http()
        .get(format!("{}/admin/v1/whoami", server.base))
        .bearer_auth(token.trim())
        .send()
        .expect("whoami");
    assert_eq!(response.status(), 200, "the first token survives the crash");
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = Running::start(dir.path(), &[], &[]);
    let mut second = trustgate();
    second
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path());
    let out = run(second);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another trustgate process"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
}

#[test]
fn configured_bootstrap_token_is_used_instead_of_generating_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = "tg_admin_configured_0123456789abcdefghijklmnop";
    let server = Running::start(dir.path(), &[], &[("TRUSTGATE_BOOTSTRAP_TOKEN", token)]);
    assert!(!dir.path().join("admin.token").exists());
    let ok = http()
        .get(format!("{}/admin/v1/whoami", server.base))
        .bearer_auth(token)
        .send()
        .expect("whoami");
    assert_eq!(ok.status(), 200);
}

#[test]
fn bad_configuration_names_the_key_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = trustgate();
    cmd.args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("TRUSTGATE_HTTP__REQUEST_TIMEOUT_SECS", "soon");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(stderr.contains("request_timeout_secs"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A well-typed but nonsensical connection limit: refused with its bounds, before serving.
    let mut cmd = trustgate();
    cmd.args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("TRUSTGATE_HTTP__MAX_CONNECTIONS", "100")
        .env("TRUSTGATE_HTTP__MAX_CONNECTIONS_PER_IP", "101");
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http.max_connections_per_ip"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "listen = 8080\n").expect("write");
    let mut cmd = trustgate();
    cmd.args(["config", "show", "--config"]).arg(&file);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));

    let mut cmd = trustgate();
    cmd.args(["serve", "--listen", "not-an-address"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_show_prints_effective_values_with_secrets_redacted() {
    let mut cmd = trustgate();
    cmd.args(["config", "show", "--listen", "127.0.0.1:9999"])
        .env(
            "TRUSTGATE_DATABASE_URL",
            "postgres://app:hunter2@db:5432/trust",
        )
        .env(
            "TRUSTGATE_BOOTSTRAP_TOKEN",
            "tg_admin_supersecret_0123456789abcdefghij",
        );
    let out = run(cmd);
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("127.0.0.1:9999"), "{shown}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("supersecret"),
        "{shown}"
    );
}

#[test]
fn port_in_use_and_unusable_data_dir_fail_with_one_line() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = trustgate();
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir.path());
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot listen on") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("error:").count(),
        1,
        "one clear line: {stderr}"
    );

    // A data dir below a regular file cannot be created, even by root.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").expect("write");
    let mut cmd = trustgate();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(file.join("data"));
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("data directory") && stderr.contains("not usable"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn help_lists_every_command_and_version_prints() {
    let mut cmd = trustgate();
    cmd.arg("--help");
    let out = run(cmd);
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["serve", "migrate", "config", "whoami", "version"] {
        assert!(
            help.contains(command),
            "{command} missing from --help: {help}"
        );
    }
    let mut cmd = trustgate();
    cmd.arg("version");
    let out = run(cmd);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("trustgate "));
}

/// The top-level commands `trustgate --help` lists (the lines of its Commands section).
fn listed_commands() -> Vec<String> {
    let mut cmd = trustgate();
    cmd.arg("--help");
    let help = String::from_utf8_lossy(&run(cmd).stdout).into_owned();
    help.split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("Options:").next())
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn completions_and_man_pages_cover_every_command() {
    let commands = listed_commands();
    assert!(commands.len() > 20, "{commands:?}");
    // bash: a script bash accepts, offering every command and the flags of serve.
    // (Command::output reads while the script is written: it is larger than a pipe's buffer.)
    let mut cmd = trustgate();
    cmd.args(["completions", "bash"]);
    let out = cmd.output().expect("completions");
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout).into_owned();
    for command in &commands {
        assert!(script.contains(command.as_str()), "{command} not completed");
    }
    assert!(script.contains("--mtls-listen"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("trustgate.bash");
    std::fs::write(&file, &script).expect("write");
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .status()
        .expect("bash");
    assert!(syntax.success(), "bash -n refused the script");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let mut cmd = trustgate();
        cmd.args(["completions", shell]);
        let out = cmd.output().expect("completions");
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
    }
    let mut cmd = trustgate();
    cmd.args(["completions", "tcsh"]);
    assert_eq!(run(cmd).status.code(), Some(2), "no such shell");

    // Man pages: trustgate.1 and one per command and subcommand, each a roff page.
    let pages = dir.path().join("man");
    let mut cmd = trustgate();
    cmd.args(["manpages", "--dir"]).arg(&pages);
    assert!(run(cmd).status.success());
    let mut expected = vec![
        "trustgate.1".to_owned(),
        "trustgate-client-create.1".to_owned(),
    ];
    expected.extend(commands.iter().map(|c| format!("trustgate-{c}.1")));
    for page in expected {
        let text = std::fs::read_to_string(pages.join(&page)).unwrap_or_default();
        assert!(text.contains("\n.TH trustgate"), "{page}: {text:.80}");
    }
    let serve = std::fs::read_to_string(pages.join("trustgate-serve.1")).expect("serve page");
    assert!(serve.contains("mtls\\-listen"), "{serve:.400}");
}

#[test]
fn migrate_runs_alone_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = trustgate();
    cmd.args(["migrate", "--data-dir"]).arg(dir.path());
    let out = run(cmd);
    assert!(out.status.success(), "{out:?}");
    let first = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(first.contains("-> "), "{first}");
    let mut cmd = trustgate();
    cmd.args(["migrate", "--data-dir"]).arg(dir.path());
    let out = run(cmd);
    let second = String::from_utf8_lossy(&out.stdout);
    let version = first.trim().rsplit(' ').next().expect("version");
    assert!(
        second.contains(&format!("{version} -> {version}")),
        "{second}"
    );
}

#[test]
fn sigterm_drains_an_in_flight_request_then_exits_cleanly() {
    use std::io::{Read as _, Write as _};

    let dir = tempfile::tempdir().expect("tempdir");
    let token = "tg_admin_drain_test_0123456789abcdefghijklmnop";
    let server = Running::start(dir.path(), &[], &[("TRUSTGATE_BOOTSTRAP_TOKEN", token)]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let body = br#"{"name":"created-while-draining"}"#;
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        stream,
        "POST /stores HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("headers");
    stream.write_all(&body[..10]).expect("first half");
    stream.flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_millis(300));

    let pid = server.pid().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    std::thread::sleep(std::time::Duration::from_millis(300));

    // The request that was in flight when the signal came still completes.
    stream.write_all(&body[10..]).expect("second half");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains("created-while-draining"), "{response}");

    let out = server.terminate();
    assert!(out.status.success(), "clean exit after draining: {out:?}");
}

#[test]
fn log_lines_are_coloured_only_on_a_terminal_or_when_asked() {
    let escape = "\u{1b}[";
    let dir = tempfile::tempdir().expect("tempdir");
    // The default (auto) writing to a pipe: plain text.
    let out = Running::start(dir.path(), &[], &[]).terminate();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(
        !stderr.contains(escape),
        "escape codes in a redirected log: {stderr}"
    );
    // pretty: coloured all the same.
    let out = Running::start(dir.path(), &["--log-format", "pretty"], &[]).terminate();
    assert!(String::from_utf8_lossy(&out.stderr).contains(escape));
    // json stays plain; a format that does not exist is refused, naming the key.
    let out = Running::start(dir.path(), &["--log-format", "json"], &[]).terminate();
    assert!(!String::from_utf8_lossy(&out.stderr).contains(escape));
    let mut cmd = trustgate();
    cmd.args(["serve", "--log-format", "colourful", "--data-dir"])
        .arg(dir.path());
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log_format"));
}

#[test]
fn the_connection_cap_stays_below_the_descriptor_limit() {
    use std::io::{Read as _, Write as _};

    // 256 descriptors: less the pool (10) and the reserve (64), 182 connections fit, though
    // 4096 are configured. Without the clamp, accept would fail with EMFILE.
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Running::start_with_nofile(
        256,
        dir.path(),
        &["--log-format", "json"],
        &[
            ("TRUSTGATE_HTTP__MAX_CONNECTIONS", "4096"),
            ("TRUSTGATE_HTTP__MAX_CONNECTIONS_PER_IP", "4096"),
            ("TRUSTGATE_HTTP__HEADER_READ_TIMEOUT_SECS", "60"),
        ],
    );
    let addr = server.base.trim_start_matches("http://").to_owned();
    let healthz = || -> Option<String> {
        let mut stream = std::net::TcpStream::connect(&addr).ok()?;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        match stream.read_to_string(&mut answer) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => panic!("no answer: stalled"),
            _ => Some(answer),
        }
    };
    let held: Vec<_> = (0..220)
        .map(|_| std::net::TcpStream::connect(&addr).expect("connect"))
        .collect();
    // Every slot is taken: refused at once (503 or closed), not left hanging.
    let refused = healthz().unwrap_or_default();
    assert!(
        refused.is_empty() || refused.starts_with("HTTP/1.1 503"),
        "{refused}"
    );
    drop(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let answer = healthz().unwrap_or_default();
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not served again: {answer}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = server.terminate();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"max_connections\":182"), "{stderr}");
    assert!(stderr.contains("lowered to fit"), "{stderr}");
    assert!(!stderr.contains("cannot accept"), "no EMFILE: {stderr}");
}
