//! Slow and numerous connections (issue #13, finding 2): a real server on an ephemeral port,
//! real sockets from several loopback addresses (Linux routes all of 127/8 to `lo`, so a client
//! socket may bind 127.0.0.2 before it connects).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use trustgate_core::Secret;
use trustgate_server::config::HttpConfig;
use trustgate_server::{Config, Server, StartError};

const TOKEN: &str = "tg_test_connections_0123456789abcdefghij";

/// Longest any single answer may take in these tests: a stalled server fails them, it does not
/// hang them.
const BOUND: Duration = Duration::from_secs(5);

/// A server on `127.0.0.1:0` over a fresh SQLite data directory.
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), StartError>>,
    _dir: tempfile::TempDir,
}

fn config(dir: &tempfile::TempDir, http: impl FnOnce(&mut HttpConfig)) -> Config {
    let mut config = Config {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        data_dir: dir.path().join("data"),
        bootstrap_token: Some(Secret::new(TOKEN)),
        ..Config::default()
    };
    http(&mut config.http);
    config
}

async fn start(http: impl FnOnce(&mut HttpConfig)) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(&dir, http)).await.expect("start");
    let addr = server.local_addr().expect("bound");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

impl Running {
    /// Signals shutdown and waits (bounded) for `run` to return; how long it took.
    async fn shut_down(mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("shutdown completes")
            .expect("run did not panic");
        result.expect("run ends cleanly");
        started.elapsed()
    }
}

/// A connection to `to` from `from` (a 127/8 address).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// What came back on a connection.
#[derive(Debug)]
enum Answer {
    /// A complete response: status and body.
    Response(u16, String),
    /// Closed (EOF or reset) before a complete response.
    Closed,
}

impl Answer {
    /// Turned away at the door: closed, or the listener's fixed 503.
    fn is_refusal(&self) -> bool {
        match self {
            Self::Closed => true,
            Self::Response(503, body) => body.contains("connection_limit"),
            Self::Response(..) => false,
        }
    }

    #[track_caller]
    fn status(&self) -> u16 {
        match self {
            Self::Response(status, _) => *status,
            Self::Closed => panic!("connection closed without an answer"),
        }
    }

    #[track_caller]
    fn json(&self) -> Value {
        match self {
            Self::Response(_, body) => serde_json::from_str(body).expect("json body"),
            Self::Closed => panic!("connection closed without an answer"),
        }
    }
}

/// Reads one response (head plus `Content-Length` body), or notes the close; bounded.
async fn read_response(stream: &mut TcpStream) -> Answer {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    let status = head
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .expect("status line");
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]);
                    return Answer::Response(status, body.to_string());
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return Answer::Closed,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(BOUND, read)
        .await
        .expect("an answer or a close within the bound")
}

/// Sends `request` and reads the answer.
async fn exchange(stream: &mut TcpStream, request: &str) -> Answer {
    if stream.write_all(request.as_bytes()).await.is_err() {
        return Answer::Closed;
    }
    read_response(stream).await
}

fn get(path: &str, connection: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: trustgate.test\r\nConnection: {connection}\r\n\r\n")
}

/// `GET /healthz` on a new connection from `from`.
async fn healthz_from(from: [u8; 4], to: SocketAddr) -> Answer {
    match connect_from(from, to).await {
        Ok(mut stream) => exchange(&mut stream, &get("/healthz", "close")).await,
        Err(_) => Answer::Closed,
    }
}

/// Waits (bounded) until the server closes `stream`; how long that took.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
    started.elapsed()
}

/// A connection from `from` that sent part of a request header and stalls.
async fn half_header(from: [u8; 4], to: SocketAddr) -> Option<TcpStream> {
    let mut stream = connect_from(from, to).await.ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: trustgate.test\r\nX-Slow: ")
        .await
        .ok()?;
    Some(stream)
}

/// The process-wide count of refusals for `reason` (metrics are process-wide: other tests
/// running at the same time only add to it).
async fn refusals(server: SocketAddr, reason: &str) -> u64 {
    let mut stream = connect_from([127, 0, 0, 1], server).await.expect("connect");
    let Answer::Response(200, text) = exchange(&mut stream, &get("/metrics", "close")).await else {
        panic!("metrics");
    };
    let series = format!("http_connections_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |n| n.trim().parse::<f64>().expect("a number") as u64)
}

/// Attackers 127.0.0.2..=127.0.0.5 open 30 connections each (120, more than the global cap of
/// 64), send half a header and stall.
async fn flood(server: SocketAddr) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for host in 2..=5 {
        for _ in 0..30 {
            held.extend(half_header([127, 0, 0, host], server).await);
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_per_address_cap_a_half_header_flood_starves_healthz() {
    // The control for the next test: a per-address cap as large as the global one lets four
    // addresses take every slot, and a newcomer is turned away.
    let server = start(|http| {
        http.max_connections = 64;
        http.max_connections_per_ip = 64;
        http.header_read_timeout_secs = 30;
    })
    .await;
    let _held = flood(server.addr).await;
    let answer = healthz_from([127, 0, 0, 1], server.addr).await;
    assert!(answer.is_refusal(), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_a_half_header_flood_is_held_off_by_the_per_address_cap() {
    let server = start(|http| {
        http.max_connections = 64;
        http.max_connections_per_ip = 8;
        http.header_read_timeout_secs = 30;
    })
    .await;
    let before = refusals(server.addr, "max_connections_per_ip").await;
    let _held = flood(server.addr).await;
    // Each attacker holds 8 connections (32 in all); the other 88 were refused at once.
    let started = Instant::now();
    let answer = healthz_from([127, 0, 0, 1], server.addr).await;
    assert_eq!(answer.status(), 200, "{answer:?}");
    assert_eq!(answer.json()["status"], "ok");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered promptly: {:?}",
        started.elapsed()
    );
    let after = refusals(server.addr, "max_connections_per_ip").await;
    assert!(after - before >= 4 * (30 - 8), "{before} -> {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_not_complete_in_time_closes_the_connection() {
    let server = start(|http| {
        http.header_read_timeout_secs = 1;
        http.idle_timeout_secs = 60;
    })
    .await;

    // Half a header, then nothing: closed once the header-read timeout has passed.
    let mut stalled = half_header([127, 0, 0, 2], server.addr)
        .await
        .expect("connect");
    let waited = closed_after(&mut stalled).await;
    assert!(
        waited >= Duration::from_millis(800),
        "closed early: {waited:?}"
    );

    // Dripping a byte every 100 ms does not keep it open: the deadline is for the whole header.
    let mut drip = connect_from([127, 0, 0, 2], server.addr)
        .await
        .expect("connect");
    drip.write_all(b"GET /healthz HTTP/1.1\r\nX-Drip: ")
        .await
        .expect("start");
    let started = Instant::now();
    let mut chunk = [0u8; 256];
    loop {
        assert!(started.elapsed() < BOUND, "a dripping header is never cut");
        if drip.write_all(b"a").await.is_err() {
            break;
        }
        // Nothing to read within 100 ms (the usual case) or a response: keep dripping.
        let read = tokio::time::timeout(Duration::from_millis(100), drip.read(&mut chunk)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            break;
        }
    }

    // A header completed within the timeout, in two parts, is answered.
    let mut timely = connect_from([127, 0, 0, 2], server.addr)
        .await
        .expect("connect");
    timely
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: trustgate.test\r\n")
        .await
        .expect("first part");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = exchange(&mut timely, "Connection: close\r\n\r\n").await;
    assert_eq!(answer.status(), 200, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let server = start(|http| {
        http.header_read_timeout_secs = 1;
        http.idle_timeout_secs = 2;
    })
    .await;
    let mut stream = connect_from([127, 0, 0, 2], server.addr)
        .await
        .expect("connect");
    let first = exchange(&mut stream, &get("/healthz", "keep-alive")).await;
    assert_eq!(first.status(), 200);
    // Idle longer than the header-read timeout but within the idle timeout: still open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = exchange(&mut stream, &get("/healthz", "keep-alive")).await;
    assert_eq!(second.status(), 200, "kept alive: {second:?}");
    // Then nothing: closed after the idle timeout.
    let waited = closed_after(&mut stream).await;
    assert!(
        waited >= Duration::from_millis(1500),
        "closed early: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_cap_refuses_one_more_and_is_released_on_close() {
    let server = start(|http| {
        http.max_connections = 64;
        http.max_connections_per_ip = 3;
        http.header_read_timeout_secs = 30;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            connect_from([127, 0, 0, 2], server.addr)
                .await
                .expect("connect"),
        );
    }
    let fourth = healthz_from([127, 0, 0, 2], server.addr).await;
    assert!(fourth.is_refusal(), "{fourth:?}");
    let other = healthz_from([127, 0, 0, 3], server.addr).await;
    assert_eq!(other.status(), 200, "another address is served: {other:?}");

    drop(held);
    let answer = eventually_served([127, 0, 0, 2], server.addr).await;
    assert_eq!(answer.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_cap_refuses_across_addresses_and_is_released_on_close() {
    let server = start(|http| {
        http.max_connections = 4;
        http.max_connections_per_ip = 4;
        http.header_read_timeout_secs = 30;
    })
    .await;
    let before = refusals(server.addr, "max_connections").await;
    let mut held = Vec::new();
    for host in [2, 2, 3, 3] {
        held.push(
            connect_from([127, 0, 0, host], server.addr)
                .await
                .expect("connect"),
        );
    }
    let newcomer = healthz_from([127, 0, 0, 4], server.addr).await;
    assert!(newcomer.is_refusal(), "{newcomer:?}");

    held.truncate(3);
    let answer = eventually_served([127, 0, 0, 4], server.addr).await;
    assert_eq!(answer.status(), 200);
    drop(held);
    let after = refusals(server.addr, "max_connections").await;
    assert!(after > before, "refusal counted: {before} -> {after}");
}

/// Retries (bounded) until `from` is served: the server notices a client's close
/// asynchronously.
async fn eventually_served(from: [u8; 4], to: SocketAddr) -> Answer {
    let started = Instant::now();
    loop {
        let answer = healthz_from(from, to).await;
        if !answer.is_refusal() || started.elapsed() > BOUND {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_within_the_grace_period_with_stalled_connections() {
    let server = start(|http| {
        http.shutdown_grace_secs = 1;
        http.header_read_timeout_secs = 60;
        http.request_timeout_secs = 60;
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.extend(half_header([127, 0, 0, 2], server.addr).await);
    }
    // A request in flight whose body never finishes.
    let mut in_flight = connect_from([127, 0, 0, 3], server.addr)
        .await
        .expect("connect");
    in_flight
        .write_all(
            format!(
                "POST /stores HTTP/1.1\r\nHost: trustgate.test\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
            )
            .as_bytes(),
        )
        .await
        .expect("headers");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = server.addr;

    let took = server.shut_down().await;
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    for stream in &mut stalled {
        closed_after(stream).await;
    }
    assert!(matches!(
        read_response(&mut in_flight).await,
        Answer::Closed
    ));
    assert!(
        connect_from([127, 0, 0, 1], addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_still_see_the_client_address() {
    let server = start(|_| {}).await;
    let body = r#"{"username":"conn-carol","email":"conn-carol@example.com"}"#;
    let mut stream = connect_from([127, 0, 0, 3], server.addr)
        .await
        .expect("connect");
    let request = format!(
        "POST /admin/v1/users HTTP/1.1\r\nHost: trustgate.test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let created = exchange(&mut stream, &request).await;
    assert_eq!(created.status(), 201, "{created:?}");

    let mut stream = connect_from([127, 0, 0, 1], server.addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /admin/v1/audit?kind=user_created HTTP/1.1\r\nHost: trustgate.test\r\n\
         Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let listed = exchange(&mut stream, &request).await.json();
    let events = listed["events"].as_array().expect("events");
    assert!(
        events.iter().any(|e| e["ip"] == "127.0.0.3"),
        "the creator's address is recorded: {listed}"
    );
}

#[tokio::test]
async fn nonsensical_connection_settings_are_refused_at_start() {
    for (http, key) in [
        (
            HttpConfig {
                max_connections: 0,
                ..HttpConfig::default()
            },
            "http.max_connections:",
        ),
        (
            HttpConfig {
                max_connections: 10,
                max_connections_per_ip: 11,
                ..HttpConfig::default()
            },
            "http.max_connections_per_ip:",
        ),
        (
            HttpConfig {
                header_read_timeout_secs: 0,
                ..HttpConfig::default()
            },
            "http.header_read_timeout_secs:",
        ),
        (
            HttpConfig {
                idle_timeout_secs: 0,
                ..HttpConfig::default()
            },
            "http.idle_timeout_secs:",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Server::start(config(&dir, |h| *h = http))
            .await
            .expect_err(key);
        assert!(matches!(err, StartError::Config(_)), "{err}");
        assert!(err.to_string().contains(key), "{err}");
        assert!(
            !dir.path().join("data").exists(),
            "refused before touching the data directory"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_stream_ends_at_shutdown_instead_of_holding_the_drain() {
    // A grace period far longer than the bound: only the stream ending lets shutdown finish.
    let server = start(|http| http.shutdown_grace_secs = 30).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let store: Value = http
        .post(format!("{base}/stores"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "name": "watched" }))
        .send()
        .await
        .expect("create store")
        .json()
        .await
        .expect("json");
    let id = store["id"].as_str().expect("id");
    let mut stream = http
        .get(format!("{base}/stores/{id}/watch"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("watch");
    assert_eq!(stream.status(), 200);
    let first = tokio::time::timeout(BOUND, stream.chunk())
        .await
        .expect("the first event in time")
        .expect("a chunk")
        .expect("not the end");
    assert!(
        String::from_utf8_lossy(&first).contains("event: revision"),
        "{first:?}"
    );
    let took = server.shut_down().await;
    assert!(
        took < BOUND,
        "shutdown took {took:?}: the stream held the drain"
    );
    // Whatever was sent before shutdown is read, then the stream ends (cleanly or cut).
    tokio::time::timeout(BOUND, async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await
    .expect("the stream ends");
}
