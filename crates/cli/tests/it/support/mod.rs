//! Runs the built `trustgate` binary as a child process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary under test.
pub fn trustgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trustgate"));
    // Keep the developer's environment out of the tests.
    for (key, _) in std::env::vars() {
        if key.starts_with("TRUSTGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A running server.
pub struct Running {
    pub child: Option<Child>,
    pub base: String,
    pub stdout_lines: Vec<String>,
}

impl Running {
    /// Starts `trustgate serve` with `args` on an ephemeral port and waits for its banner.
    pub fn start(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Running {
        Self::spawn(trustgate(), data_dir, args, envs)
    }

    /// As [`start`](Self::start), with the process's file-descriptor limit (soft and hard) set
    /// to `nofile` by the shell before it becomes the server.
    pub fn start_with_nofile(
        nofile: u64,
        data_dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Running {
        let mut cmd = trustgate();
        let binary = cmd.get_program().to_owned();
        let mut shell = Command::new("bash");
        shell
            .args(["-c", &format!("ulimit -n {nofile} && exec \"$0\" \"$@\"")])
            .arg(binary);
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => shell.env(key, value),
                None => shell.env_remove(key),
            };
        }
        cmd = shell;
        Self::spawn(cmd, data_dir, args, envs)
    }

    fn spawn(mut cmd: Command, data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Running {
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn trustgate serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let found = line
                        .split("listening on ")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                        .map(str::to_owned);
                    lines.push(line);
                    if let Some(base) = found {
                        return Running {
                            child: Some(child),
                            base,
                            stdout_lines: lines,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let output = child.wait_with_output().expect("wait");
                    panic!(
                        "server did not start; stdout {lines:?}; stderr {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
            }
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> Output {
        let child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        wait_with_timeout(child, Duration::from_secs(30))
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for a child, killing it after `limit`.
pub fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!("process did not exit within {limit:?}: {output:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command to completion with a time limit.
pub fn run(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    wait_with_timeout(child, Duration::from_secs(60))
}

/// A blocking HTTP client.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// The browser and node scenarios under `tests/e2e`.
pub const E2E: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e");

/// Debian's Chromium, or `TRUSTGATE_CHROMIUM`.
pub fn chromium() -> std::path::PathBuf {
    std::env::var_os("TRUSTGATE_CHROMIUM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/usr/bin/chromium"))
}

/// Whether Chromium, node and the npm `packages` of `tests/e2e` are installed. Without them a
/// scenario skips with a message saying how to install them, except under
/// `TRUSTGATE_REQUIRE_BROWSER_TESTS=1` (CI), where that panics.
pub fn browser_available(what: &str, packages: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !chromium().exists() {
        missing.push(format!(
            "Chromium at {} (sudo apt-get install -y chromium chromium-driver)",
            chromium().display()
        ));
    }
    if !Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        missing.push("node (apt-get install -y nodejs npm)".into());
    }
    for package in packages {
        if !Path::new(E2E).join("node_modules").join(package).exists() {
            missing.push(format!("{package} (npm ci --prefix crates/cli/tests/e2e)"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("TRUSTGATE_REQUIRE_BROWSER_TESTS").as_deref() != Ok("1"),
        "TRUSTGATE_REQUIRE_BROWSER_TESTS=1 but missing: {}",
        missing.join("; ")
    );
    eprintln!(
        "skipping {what}; missing: {} (or run scripts/ci-setup.sh)",
        missing.join("; ")
    );
    false
}

/// The JSON a command printed, which must have succeeded.
pub fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "status {:?}; stderr {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// The command exited with `code` and said `needle` on standard error.
pub fn failed_with(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
}

/// A password login through the page, as a browser does it: the form (pre-login CSRF cookie
/// and field), then the post. Returns the post's status (303 when signed in); 0 when the page
/// could not be had.
pub fn password_login(base: &str, username: &str, password: &str) -> u16 {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let Ok(page) = client.get(format!("{base}/login")).send() else {
        return 0;
    };
    let cookies: Vec<String> = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next().map(str::to_owned))
        .collect();
    let body = page.text().unwrap_or_default();
    let marker = "name=\"csrf\" value=\"";
    let Some(start) = body.find(marker).map(|i| i + marker.len()) else {
        return 0;
    };
    let csrf = body[start..].split('"').next().unwrap_or("").to_owned();
    client
        .post(format!("{base}/login"))
        .header("origin", base)
        .header("sec-fetch-site", "same-origin")
        .header("cookie", cookies.join("; "))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", username),
            ("password", password),
        ])
        .send()
        .map_or(0, |r| r.status().as_u16())
}
