//! A client of a running server's management API.
//!
//! The server URL comes from `--server` / `TRUSTGATE_SERVER` (default http://127.0.0.1:8080); the
//! bearer token from `--token` / `TRUSTGATE_TOKEN`, else from `<data-dir>/admin.token` (the file
//! the server wrote at bootstrap; `--data-dir` / `TRUSTGATE_DATA_DIR`, default ./trustgate-data).

use std::path::PathBuf;

use clap::Args;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::commands::Failure;

/// How to reach the server.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the running server.
    #[arg(
        long,
        env = "TRUSTGATE_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// Admin bearer token (default: TRUSTGATE_TOKEN, then `<data-dir>/admin.token`).
    #[arg(long, env = "TRUSTGATE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Data directory (the server's; management commands read admin.token from it)
    /// [env: TRUSTGATE_DATA_DIR] [default: ./trustgate-data].
    #[arg(long = "data-dir", value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

/// An authenticated API client.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// Resolves the server and token.
    pub fn new(args: &ClientArgs) -> Result<Self, Failure> {
        let token = match &args.token {
            Some(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                let dir = args
                    .data_dir
                    .clone()
                    .or_else(|| std::env::var_os("TRUSTGATE_DATA_DIR").map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from("./trustgate-data"));
                let path = dir.join("admin.token");
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| {
                        Failure::Usage(format!(
                            "no admin token: set TRUSTGATE_TOKEN or --token, or run where {} is readable ({e})",
                            path.display()
                        ))
                    })?
            }
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("trustgate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::Failed(format!("http client: {e}")))?;
        Ok(Self {
            http,
            base: args.server.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Sends a request with an optional JSON body and returns the JSON answer; a non-2xx answer
    /// becomes a failure carrying the server's code and message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Failed(format!("cannot reach {}: {e}", self.base)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::Failed(format!("reading the answer: {e}")))?;
        let json: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(json);
        }
        let code = json.get("code").and_then(Value::as_str).unwrap_or("error");
        let message = json
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("request failed"));
        let hint = if status == StatusCode::UNAUTHORIZED {
            " (check TRUSTGATE_TOKEN or --token)"
        } else {
            ""
        };
        Err(Failure::Failed(format!(
            "{} {}: {code}: {message}{hint}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )))
    }
}

/// Prints a JSON value, pretty.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}
