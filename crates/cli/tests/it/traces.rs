//! OpenTelemetry: with `[telemetry] otlp_endpoint`, a token request's trace reaches an OTLP/HTTP
//! collector (here, one in the test: it records what is posted to `/v1/traces`) as one trace:
//! the request span with its request id, `oauth.token` under it, client authentication and the
//! store's query under that, from `service.name` trustgate; the request's log lines carry the
//! trace id. A bad endpoint is refused.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::support::{Running, failed_with, http, run, trustgate};

/// An OTLP/HTTP receiver: every JSON body posted to it, in order.
fn collector() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || serve(stream, &sink));
        }
    });
    (addr, received)
}

/// HTTP/1.1 requests with a `Content-Length` body, one after another on the connection.
fn serve(stream: TcpStream, sink: &Mutex<Vec<Value>>) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(json) = serde_json::from_slice(&body) {
            sink.lock().expect("lock").push(json);
        }
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// A span as exported: its name, ids and string attributes.
struct Span {
    name: String,
    trace: String,
    id: String,
    parent: String,
    attributes: Vec<(String, String)>,
    service: String,
}

impl Span {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn spans(bodies: &[Value]) -> Vec<Span> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut out = Vec::new();
    for body in bodies {
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .map(|a| text(&a["value"]["stringValue"]))
                .unwrap_or_default();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    out.push(Span {
                        name: text(&span["name"]),
                        trace: text(&span["traceId"]),
                        id: text(&span["spanId"]),
                        parent: text(&span["parentSpanId"]),
                        attributes: span["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|a| (text(&a["key"]), text(&a["value"]["stringValue"])))
                            .collect(),
                        service: service.clone(),
                    });
                }
            }
        }
    }
    out
}

#[test]
fn a_token_request_is_one_trace_at_the_collector() {
    let (collector, received) = collector();
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://{collector}");
    let server = Running::start(
        dir.path(),
        &["--log-format", "json"],
        &[
            ("TRUSTGATE_TELEMETRY__OTLP_ENDPOINT", &endpoint),
            ("TRUSTGATE_LOG_LEVEL", "info,trustgate_oauth=debug"),
        ],
    );
    let answer = http()
        .post(format!("{}/oauth2/token", server.base))
        .header("x-request-id", "trace-me-1")
        .basic_auth("tgc_nobody", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .expect("token request");
    assert_eq!(answer.status().as_u16(), 401);
    // Shutdown exports what is pending.
    let out = server.terminate();
    assert!(out.status.success(), "{out:?}");

    let spans = spans(&received.lock().expect("lock"));
    let request = spans
        .iter()
        .find(|s| s.name == "request" && s.attribute("request_id") == Some("trace-me-1"))
        .unwrap_or_else(|| panic!("no request span among {} spans", spans.len()));
    assert_eq!(request.service, "trustgate");
    let in_trace = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.trace == request.trace)
            .unwrap_or_else(|| panic!("no {name} span in the request's trace"))
    };
    let token = in_trace("oauth.token");
    assert_eq!(token.parent, request.id);
    assert_eq!(token.attribute("grant_type"), Some("client_credentials"));
    let client = in_trace("authn.client");
    assert_eq!(client.parent, token.id);
    // The request's log lines name its trace.
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.lines()
            .any(|line| line.contains("\"request_id\":\"trace-me-1\"")
                && line.contains(&format!("\"trace_id\":\"{}\"", request.trace))),
        "no log line of the request with its trace id"
    );
    let query = in_trace("store.query");
    assert_eq!(query.attribute("db.operation"), Some("SELECT"));
    // The background pollers' queries are not traces of their own.
    assert!(
        spans
            .iter()
            .filter(|s| s.name == "store.query")
            .all(|s| !s.parent.is_empty()),
        "a store.query span without a parent was exported"
    );
}

#[test]
fn an_endpoint_that_is_not_a_url_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = trustgate();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("TRUSTGATE_TELEMETRY__OTLP_ENDPOINT", "collector:4318");
    failed_with(&run(cmd), 2, "telemetry.otlp_endpoint");
}
