//! `trustgate-load`: HTTP load against a running trustgate.
//!
//! Creates a store, writes the Drive-like model and a dataset (default 10k tuples) through the
//! OpenFGA-compatible API, verifies every generated check query over HTTP, then measures with N
//! concurrent keep-alive connections, in interleaved rounds of the same run:
//!
//! - `GET /healthz` — the trivial endpoint (the baseline),
//! - `GET /admin/v1/whoami` — bearer-token authentication and nothing else,
//! - `POST /stores/{id}/check` — the queries of the dataset, all classes in turn,
//!
//! and prints requests/s, p50 and p99 of each and the ratio check/healthz.
//! `scripts/load.sh` starts a server and runs this against it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use trustgate_bench::{Dataset, Stats, fmt_ns};

#[derive(Debug, Parser)]
#[command(about = "HTTP load generator for trustgate's check endpoint")]
struct Args {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin bearer token.
    #[arg(long, env = "TRUSTGATE_LOAD_TOKEN", hide_env_values = true)]
    token: String,
    /// Tuples to generate and write.
    #[arg(long, default_value_t = 10_000)]
    tuples: usize,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of measurement per endpoint (split over the rounds).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Interleaved rounds (healthz, whoami, check, healthz, ...).
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Seconds of unmeasured warm-up load per endpoint before the first round.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Tuples per write request (the server's `authz.max_tuples_per_write`, default 100).
    #[arg(long, default_value_t = 100)]
    write_batch: usize,
}

/// One kind of request.
#[derive(Debug, Clone)]
struct Endpoint {
    label: &'static str,
    /// Builds the i-th request.
    requests: Arc<Vec<Prepared>>,
}

#[derive(Debug, Clone)]
struct Prepared {
    method: reqwest::Method,
    url: String,
    body: Option<Vec<u8>>,
    /// For checks: the expected `allowed`.
    expect_allowed: Option<bool>,
}

#[derive(Debug, Default)]
struct Tally {
    samples: Vec<u64>,
    errors: u64,
    elapsed: Duration,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.connections == 0 || args.duration == 0 || args.rounds == 0 {
        bail!("--connections, --duration and --rounds must be positive");
    }
    if args.write_batch == 0 {
        bail!("--write-batch must be positive");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let auth = format!("Bearer {}", args.token);
    let setup = client(&auth)?;

    // Setup: store, model, tuples.
    let ds = Dataset::generate(args.tuples);
    let store: Value = send_json(
        &setup,
        reqwest::Method::POST,
        &format!("{base}/stores"),
        &json!({"name": "trustgate-load"}),
    )
    .await
    .context("creating a store")?;
    let store_id = store["id"]
        .as_str()
        .context("the store answer has no id")?
        .to_owned();
    let model = Dataset::model().map_err(|e| anyhow::anyhow!("bench model: {e}"))?;
    let written: Value = send_json(
        &setup,
        reqwest::Method::POST,
        &format!("{base}/stores/{store_id}/authorization-models"),
        &serde_json::to_value(&model)?,
    )
    .await
    .context("writing the model")?;
    let model_id = written["authorization_model_id"]
        .as_str()
        .context("the model answer has no authorization_model_id")?
        .to_owned();
    let t = Instant::now();
    let chunks: Vec<Value> = ds
        .tuples
        .chunks(args.write_batch)
        .map(|c| json!({"writes": {"tuple_keys": c}, "authorization_model_id": model_id}))
        .collect();
    let write_url = format!("{base}/stores/{store_id}/write");
    let requests = post_all(&setup, &write_url, chunks, 4).await?;
    println!(
        "setup: store {store_id}, model {model_id}, {} tuples written in {:.2} s ({} requests of ≤ {})",
        ds.tuples.len(),
        t.elapsed().as_secs_f64(),
        requests,
        args.write_batch
    );

    // Requests.
    let check_url = format!("{base}/stores/{store_id}/check");
    let checks: Vec<Prepared> = ds
        .queries
        .iter()
        .map(|q| {
            let mut body = json!({
                "tuple_key": {"user": q.user, "relation": q.relation, "object": q.object},
                "authorization_model_id": model_id,
            });
            if let Some(ctx) = &q.context {
                body["context"] = Value::Object(ctx.clone());
            }
            Ok(Prepared {
                method: reqwest::Method::POST,
                url: check_url.clone(),
                body: Some(serde_json::to_vec(&body)?),
                expect_allowed: Some(q.expected),
            })
        })
        .collect::<Result<_>>()?;
    verify_checks(&setup, &checks).await?;
    let endpoints = [
        Endpoint {
            label: "GET /healthz",
            requests: Arc::new(vec![Prepared {
                method: reqwest::Method::GET,
                url: format!("{base}/healthz"),
                body: None,
                expect_allowed: None,
            }]),
        },
        Endpoint {
            label: "GET /admin/v1/whoami",
            requests: Arc::new(vec![Prepared {
                method: reqwest::Method::GET,
                url: format!("{base}/admin/v1/whoami"),
                body: None,
                expect_allowed: None,
            }]),
        },
        Endpoint {
            label: "POST /stores/{id}/check",
            requests: Arc::new(checks),
        },
    ];

    // One client (and so one keep-alive connection) per worker, reused by every phase.
    let clients: Vec<Client> = (0..args.connections)
        .map(|_| client(&auth))
        .collect::<Result<_>>()?;
    for e in &endpoints {
        phase(&clients, e, Duration::from_secs(args.warmup)).await;
    }
    let slice = Duration::from_secs_f64(args.duration as f64 / f64::from(args.rounds));
    let mut totals: Vec<Tally> = endpoints.iter().map(|_| Tally::default()).collect();
    for _ in 0..args.rounds {
        for (e, total) in endpoints.iter().zip(&mut totals) {
            let t = phase(&clients, e, slice).await;
            total.samples.extend(t.samples);
            total.errors += t.errors;
            total.elapsed += t.elapsed;
        }
    }

    println!(
        "\nload: {} connections, {} s per endpoint in {} interleaved rounds, {} check queries \
         (all classes), {} CPUs shared by server and load generator",
        args.connections,
        args.duration,
        args.rounds,
        endpoints[2].requests.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<26} {:>9} {:>10} {:>10} {:>10} {:>7}",
        "endpoint", "requests", "req/s", "p50", "p99", "errors"
    );
    let mut rates = Vec::new();
    for (e, t) in endpoints.iter().zip(&mut totals) {
        let n = t.samples.len();
        let rate = n as f64 / t.elapsed.as_secs_f64().max(1e-9);
        let s = Stats::of(&mut t.samples);
        println!(
            "{:<26} {:>9} {:>10.0} {:>10} {:>10} {:>7}",
            e.label,
            n,
            rate,
            fmt_ns(s.p50_ns),
            fmt_ns(s.p99_ns),
            t.errors
        );
        rates.push(rate);
    }
    let errors: u64 = totals.iter().map(|t| t.errors).sum();
    println!(
        "check throughput / healthz throughput = {:.0}% (target ≥ 50%); check / whoami = {:.0}%",
        100.0 * rates[2] / rates[0].max(1e-9),
        100.0 * rates[2] / rates[1].max(1e-9),
    );
    if errors > 0 {
        bail!("{errors} requests failed or answered unexpectedly");
    }
    Ok(())
}

fn client(auth: &str) -> Result<Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(auth)
        .context("the token is not a valid header value")?;
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/json"),
    );
    Ok(Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

async fn send_json(
    client: &Client,
    method: reqwest::Method,
    url: &str,
    body: &Value,
) -> Result<Value> {
    let resp = client.request(method, url).json(body).send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("{url}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

/// Posts `bodies` to `url` with at most `parallel` requests in flight; returns how many were
/// sent.
async fn post_all(
    client: &Client,
    url: &str,
    bodies: Vec<Value>,
    parallel: usize,
) -> Result<usize> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel {
        let (client, url, bodies, next) =
            (client.clone(), url.to_owned(), bodies.clone(), next.clone());
        tasks.spawn(async move {
            let mut done = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                send_json(&client, reqwest::Method::POST, &url, body)
                    .await
                    .with_context(|| format!("writing tuple batch {i}"))?;
                done += 1;
            }
            Ok::<_, anyhow::Error>(done)
        });
    }
    let mut all = 0;
    while let Some(r) = tasks.join_next().await {
        all += r??;
    }
    Ok(all)
}

/// Every check answers as the dataset says (retrying for a while: the index follows the
/// changelog asynchronously).
async fn verify_checks(client: &Client, checks: &[Prepared]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    for c in checks {
        loop {
            let ok = send(client, c).await?;
            if ok {
                break;
            }
            if Instant::now() > deadline {
                let body = c.body.as_deref().map(String::from_utf8_lossy);
                bail!(
                    "check {body:?} did not answer allowed={:?}",
                    c.expect_allowed
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Sends one request; `Ok(false)` for a non-success status or an unexpected check answer.
async fn send(client: &Client, p: &Prepared) -> Result<bool> {
    let mut req = client.request(p.method.clone(), &p.url);
    if let Some(body) = &p.body {
        req = req.body(body.clone());
    }
    let resp = req.send().await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if status != StatusCode::OK {
        return Ok(false);
    }
    Ok(match p.expect_allowed {
        None => true,
        Some(expected) => {
            let needle: &[u8] = if expected {
                b"\"allowed\":true"
            } else {
                b"\"allowed\":false"
            };
            bytes.windows(needle.len()).any(|w| w == needle)
        }
    })
}

/// Runs `endpoint` on every client for `length`, each client sending one request at a time.
async fn phase(clients: &[Client], endpoint: &Endpoint, length: Duration) -> Tally {
    let start = Instant::now();
    let deadline = start + length;
    let mut tasks = tokio::task::JoinSet::new();
    for (w, client) in clients.iter().enumerate() {
        let (client, requests) = (client.clone(), endpoint.requests.clone());
        tasks.spawn(async move {
            let mut t = Tally::default();
            let mut i = w * 7;
            while Instant::now() < deadline {
                let Some(p) = requests.get(i % requests.len().max(1)) else {
                    break;
                };
                i += 1;
                let began = Instant::now();
                match send(&client, p).await {
                    Ok(true) => t.samples.push(began.elapsed().as_nanos() as u64),
                    _ => t.errors += 1,
                }
            }
            t
        });
    }
    let mut total = Tally::default();
    while let Some(r) = tasks.join_next().await {
        if let Ok(t) = r {
            total.samples.extend(t.samples);
            total.errors += t.errors;
        }
    }
    total.elapsed = start.elapsed();
    total
}
