//! `trustgate-load`: HTTP load against a running trustgate.
//!
//! Creates a store, writes the Drive-like model and a dataset (default 10k tuples) through the
//! OpenFGA-compatible API, verifies every generated check query over HTTP, then measures with N
//! concurrent keep-alive connections, in interleaved rounds of the same run:
//!
//! - `GET /healthz` — the trivial endpoint (the baseline),
//! - `GET /admin/v1/whoami` — bearer-token authentication and nothing else,
//! - `POST /stores/{id}/check` — the queries of the dataset, all classes in turn, with the admin
//!   token,
//! - the same checks with an API key of a service account that holds only `reader` on the store
//!   (provisioned through the admin API),
//!
//! and prints requests/s, p50 and p99 of each, the ratio check/healthz and the ratio key/admin.
//! `scripts/load.sh` starts a server and runs this against it.
//!
//! `trustgate-load oauth ...` measures `POST /oauth2/token` (client credentials) and
//! `POST /oauth2/introspect` against `GET /healthz` in the same run ([`OAuthArgs`]);
//! `scripts/oauth-load.sh` starts a server and runs it.
//!
//! `trustgate-load gateway ...` measures an upstream called directly and through
//! `trustgate gateway` (a child process, against the server's JWKS, token exchange and PDP) in
//! interleaved rounds, sharing the cores and then on a core of its own ([`GatewayArgs`]);
//! `scripts/gateway-load.sh` starts a server and runs it.
//!
//! `trustgate-load oauth-vs-node ...` measures `client_credentials` issuance (ES256 JWT access
//! tokens) of trustgate and of node `oidc-provider` in interleaved rounds of the same run, with
//! the same connections and durations, and prints the ratio ([`VsNodeArgs`]);
//! `scripts/oauth-vs-node.sh` starts both servers and runs it.
//!
//! `trustgate-load login ...` is the login flood instead ([`LoginArgs`]): it creates a user
//! through the admin API, measures `GET /healthz` on a light probe connection while idle, then
//! floods `/login` (N clients, each `GET /login` for the CSRF cookie and field, then
//! `POST /login` with the right password) while the same probe keeps measuring `/healthz`, and
//! prints logins/s, the 503 (hashing pool busy) and 429 (throttled) counts and the ratio
//! p99(healthz during the flood) / p99(healthz idle). A short wrong-password run at the end shows
//! the throttle answering 429. `scripts/login-load.sh` starts a server and runs this.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HeaderValue, ORIGIN, SET_COOKIE};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use trustgate_bench::login::{CSRF_COOKIE, LoginOutcome, SESSION_COOKIE, find_cookie, hidden_csrf};
use trustgate_bench::soak::{self, ErrorKind, Recorder, Windows};
use trustgate_bench::{Dataset, Stats, fmt_ns, http1};

#[derive(Debug, Parser)]
#[command(
    about = "HTTP load generator for trustgate's check endpoint",
    after_help = "`trustgate-load login --help`: the login-flood scenario instead."
)]
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
    /// Bytes the answer must contain (e.g. `"active":true`).
    expect_contains: Option<&'static [u8]>,
    /// An `Authorization` value replacing the client's.
    auth: Option<Arc<str>>,
    /// Sends a fresh DPoP proof with each request (RFC 9449), with the server's latest nonce.
    dpop: Option<Arc<DpopSigner>>,
}

/// A client's DPoP key and the nonce the server sent last: every request gets a new proof,
/// made by the load generator as a real client would (one ES256 signature).
#[derive(Debug)]
struct DpopSigner {
    key: trustgate_testkit::dpop::DpopKey,
    nonce: std::sync::Mutex<Option<String>>,
}

impl DpopSigner {
    fn new() -> Self {
        DpopSigner {
            key: trustgate_testkit::dpop::DpopKey::generate(),
            nonce: std::sync::Mutex::new(None),
        }
    }

    fn proof(&self, method: &str, url: &str) -> String {
        let nonce = self.nonce.lock().ok().and_then(|n| n.clone());
        let extra = nonce.map_or_else(|| json!({}), |nonce| json!({ "nonce": nonce }));
        self.key.proof(
            method,
            url,
            OffsetDateTime::now_utc().unix_timestamp(),
            extra,
        )
    }

    fn remember(&self, headers: &reqwest::header::HeaderMap) {
        if let Some(nonce) = headers.get("dpop-nonce").and_then(|v| v.to_str().ok())
            && let Ok(mut current) = self.nonce.lock()
        {
            *current = Some(nonce.to_owned());
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    samples: Vec<u64>,
    errors: u64,
    elapsed: Duration,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "login") {
        argv.remove(1);
        argv[0] = "trustgate-load login".into();
        return login_flood(LoginArgs::parse_from(argv)).await;
    }
    if argv.get(1).is_some_and(|a| a == "oauth") {
        argv.remove(1);
        argv[0] = "trustgate-load oauth".into();
        return oauth_load(OAuthArgs::parse_from(argv)).await;
    }
    if argv.get(1).is_some_and(|a| a == "oauth-vs-node") {
        argv.remove(1);
        argv[0] = "trustgate-load oauth-vs-node".into();
        return oauth_vs_node(VsNodeArgs::parse_from(argv)).await;
    }
    if argv.get(1).is_some_and(|a| a == "soak") {
        argv.remove(1);
        argv[0] = "trustgate-load soak".into();
        return soak_run(SoakArgs::parse_from(argv)).await;
    }
    if argv.get(1).is_some_and(|a| a == "gateway") {
        argv.remove(1);
        argv[0] = "trustgate-load gateway".into();
        return gateway_load(GatewayArgs::parse_from(argv)).await;
    }
    if argv.get(1).is_some_and(|a| a == "tls") {
        argv.remove(1);
        argv[0] = "trustgate-load tls".into();
        return tls_load(TlsArgs::parse_from(argv)).await;
    }
    check_load(Args::parse()).await
}

/// The check scenario (the default).
async fn check_load(args: Args) -> Result<()> {
    if args.connections == 0 || args.duration == 0 || args.rounds == 0 {
        bail!("--connections, --duration and --rounds must be positive");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let auth = format!("Bearer {}", args.token);
    let setup = client(&auth)?;

    let Provisioned {
        store_id,
        model_id,
        ds,
    } = provision_dataset(&setup, &base, args.tuples, args.write_batch).await?;
    let checks = check_requests(&ds, &format!("{base}/stores/{store_id}/check"), &model_id)?;
    // A service account holding only `reader` on this store, and a key limited to it: what an
    // application behind trustgate uses. The same checks are sent with it and with the admin
    // token, both as a per-request header so the two differ only in the credential.
    let reader_key = provision_reader_key(&setup, &base, &store_id).await?;
    let with_auth = |auth: String| {
        let auth: Arc<str> = Arc::from(auth);
        checks
            .iter()
            .map(|p| Prepared {
                auth: Some(auth.clone()),
                ..p.clone()
            })
            .collect::<Vec<_>>()
    };
    let admin_checks = with_auth(auth.clone());
    let key_checks = with_auth(format!("Bearer {reader_key}"));
    verify_checks(&setup, &key_checks).await?;
    // The same questions over AuthZEN 1.0 (the store named by the path), with the same key.
    let key_auth: Arc<str> = Arc::from(format!("Bearer {reader_key}"));
    let evaluations: Vec<Prepared> = authzen_requests(
        &ds,
        &format!("{base}/stores/{store_id}/access/v1/evaluation"),
    )?
    .into_iter()
    .map(|p| Prepared {
        auth: Some(key_auth.clone()),
        ..p
    })
    .collect();
    verify_checks(&setup, &evaluations).await?;
    let endpoints = [
        Endpoint {
            label: "GET /healthz",
            requests: Arc::new(vec![Prepared {
                method: reqwest::Method::GET,
                url: format!("{base}/healthz"),
                body: None,
                expect_allowed: None,
                expect_contains: None,
                auth: None,
                dpop: None,
            }]),
        },
        Endpoint {
            label: "GET /admin/v1/whoami",
            requests: Arc::new(vec![Prepared {
                method: reqwest::Method::GET,
                url: format!("{base}/admin/v1/whoami"),
                body: None,
                expect_allowed: None,
                expect_contains: None,
                auth: None,
                dpop: None,
            }]),
        },
        Endpoint {
            label: "POST check (admin token)",
            requests: Arc::new(admin_checks),
        },
        Endpoint {
            label: "POST check (store API key)",
            requests: Arc::new(key_checks),
        },
        Endpoint {
            label: "POST AuthZEN evaluation (key)",
            requests: Arc::new(evaluations),
        },
    ];

    // One client (and so one keep-alive connection) per worker, reused by every phase.
    let clients: Vec<Client> = (0..args.connections)
        .map(|_| client(&auth))
        .collect::<Result<_>>()?;
    let mut totals = run_rounds(
        &clients,
        &endpoints,
        args.warmup,
        args.duration,
        args.rounds,
    )
    .await;

    println!(
        "\nload: {} connections, {} s per endpoint in {} interleaved rounds, {} check queries \
         (all classes), {} CPUs shared by server and load generator",
        args.connections,
        args.duration,
        args.rounds,
        endpoints[3].requests.len(),
        cpus()
    );
    let rates = print_table(&endpoints, &mut totals);
    let errors: u64 = totals.iter().map(|t| t.errors).sum();
    println!(
        "check throughput / healthz throughput = {:.0}% (target ≥ 50%); check / whoami = {:.0}%",
        100.0 * rates[2] / rates[0].max(1e-9),
        100.0 * rates[2] / rates[1].max(1e-9),
    );
    println!(
        "check with a store-scoped API key / check with the admin token = {:.0}% (target ≥ 95%)",
        100.0 * rates[3] / rates[2].max(1e-9),
    );
    println!(
        "AuthZEN evaluation / OpenFGA check, same key and questions = {:.0}% (target ≥ 90%)",
        100.0 * rates[4] / rates[3].max(1e-9),
    );
    if errors > 0 {
        bail!("{errors} requests failed or answered unexpectedly");
    }
    Ok(())
}

/// A store with the Drive-like model and a dataset written to it.
struct Provisioned {
    store_id: String,
    model_id: String,
    ds: Dataset,
}

/// Creates a store, writes the bench model and a dataset of about `tuples` tuples (`write_batch`
/// per request) through the OpenFGA-compatible API.
async fn provision_dataset(
    setup: &Client,
    base: &str,
    tuples: usize,
    write_batch: usize,
) -> Result<Provisioned> {
    if write_batch == 0 {
        bail!("--write-batch must be positive");
    }
    let ds = Dataset::generate(tuples);
    let store: Value = send_json(
        setup,
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
        setup,
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
        .chunks(write_batch)
        .map(|c| json!({"writes": {"tuple_keys": c}, "authorization_model_id": model_id}))
        .collect();
    let write_url = format!("{base}/stores/{store_id}/write");
    let requests = post_all(setup, &write_url, chunks, 4).await?;
    println!(
        "setup: store {store_id}, model {model_id}, {} tuples written in {:.2} s ({} requests of ≤ {})",
        ds.tuples.len(),
        t.elapsed().as_secs_f64(),
        requests,
        write_batch
    );
    Ok(Provisioned {
        store_id,
        model_id,
        ds,
    })
}

/// The dataset's check queries as requests to `check_url`, each with its expected answer.
fn check_requests(ds: &Dataset, check_url: &str, model_id: &str) -> Result<Vec<Prepared>> {
    ds.queries
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
                url: check_url.to_owned(),
                body: Some(serde_json::to_vec(&body)?),
                expect_allowed: Some(q.expected),
                expect_contains: None,
                auth: None,
                dpop: None,
            })
        })
        .collect()
}

/// The dataset's check queries as AuthZEN 1.0 evaluations to `url` (`type:id` split into
/// subject and resource, the relation as the action, the context as the request context),
/// each with its expected decision.
fn authzen_requests(ds: &Dataset, url: &str) -> Result<Vec<Prepared>> {
    let party = |typed: &str| -> Result<Value> {
        let (kind, id) = typed
            .split_once(':')
            .with_context(|| format!("`{typed}` is not type:id"))?;
        Ok(json!({ "type": kind, "id": id }))
    };
    ds.queries
        .iter()
        .map(|q| {
            let mut body = json!({
                "subject": party(&q.user)?,
                "action": { "name": q.relation },
                "resource": party(&q.object)?,
            });
            if let Some(ctx) = &q.context {
                body["context"] = Value::Object(ctx.clone());
            }
            let expected: &'static [u8] = if q.expected {
                b"\"decision\":true"
            } else {
                b"\"decision\":false"
            };
            Ok(Prepared {
                method: reqwest::Method::POST,
                url: url.to_owned(),
                body: Some(serde_json::to_vec(&body)?),
                expect_allowed: None,
                expect_contains: Some(expected),
                auth: None,
                dpop: None,
            })
        })
        .collect()
}

/// A registered confidential client for the client_credentials grant, and a first token.
struct CcClient {
    /// `Basic ...` for `client_secret_basic`.
    basic: String,
    /// The form body of a grant.
    grant: Vec<u8>,
    /// An access token from one grant.
    token: String,
}

/// Registers a client_credentials client through the admin API and gets one token with it.
async fn register_cc_client(admin: &Client, base: &str) -> Result<CcClient> {
    let registered = send_json(
        admin,
        reqwest::Method::POST,
        &format!("{base}/admin/v1/clients"),
        &json!({
            "name": "trustgate-load service",
            "redirect_uris": [],
            "grant_types": ["client_credentials"],
            "scopes": ["bench:read"],
            "audience": ["https://api.bench.example"],
        }),
    )
    .await
    .context("registering the benchmark client")?;
    let id = registered["client_id"].as_str().context("no client_id")?;
    let secret = registered["client_secret"]
        .as_str()
        .context("no client_secret")?;
    let basic = {
        use base64::Engine as _;
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                encode(id),
                encode(secret)
            ))
        )
    };
    let form = client_with(&basic, "application/x-www-form-urlencoded")?;
    let grant = b"grant_type=client_credentials&scope=bench%3Aread".to_vec();
    let issued: Value = form
        .post(format!("{base}/oauth2/token"))
        .body(grant.clone())
        .send()
        .await?
        .error_for_status()
        .context("the first client_credentials grant failed")?
        .json()
        .await?;
    let token = issued["access_token"].as_str().context("no access_token")?;
    Ok(CcClient {
        basic,
        grant,
        token: token.to_owned(),
    })
}

/// The form body introspecting `token`.
fn introspect_body(token: &str) -> String {
    format!(
        "token={}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    )
}

/// Creates a user with a password through the admin API.
async fn create_user(admin: &Client, base: &str, username: &str, password: &str) -> Result<()> {
    send_json(
        admin,
        reqwest::Method::POST,
        &format!("{base}/admin/v1/users"),
        &json!({
            "username": username,
            "email": format!("{username}@example.com"),
            "password": password,
        }),
    )
    .await
    .with_context(|| format!("creating user {username}"))?;
    Ok(())
}

/// A service account with `reader` on `store_id` and a key limited to it, through the admin API.
async fn provision_reader_key(admin: &Client, base: &str, store_id: &str) -> Result<String> {
    let suffix = std::process::id();
    let account: Value = send_json(
        admin,
        reqwest::Method::POST,
        &format!("{base}/admin/v1/service-accounts"),
        &json!({ "name": format!("trustgate-load-{suffix}-{store_id}") }),
    )
    .await
    .context("creating the service account")?;
    let id = account["id"].as_str().context("the account has no id")?;
    let role = format!("store:{store_id}:reader");
    send_json(
        admin,
        reqwest::Method::POST,
        &format!("{base}/admin/v1/roles"),
        &json!({ "subject": format!("service:{id}"), "role": role }),
    )
    .await
    .context("granting reader")?;
    let issued: Value = send_json(
        admin,
        reqwest::Method::POST,
        &format!("{base}/admin/v1/service-accounts/{id}/api-keys"),
        &json!({ "scopes": [role] }),
    )
    .await
    .context("issuing the key")?;
    Ok(issued["key"]
        .as_str()
        .context("the answer has no key")?
        .to_owned())
}

/// Warm-up per endpoint, then `rounds` interleaved rounds splitting `duration` seconds.
async fn run_rounds(
    clients: &[Client],
    endpoints: &[Endpoint],
    warmup: u64,
    duration: u64,
    rounds: u32,
) -> Vec<Tally> {
    for e in endpoints {
        phase(clients, e, Duration::from_secs(warmup)).await;
    }
    let slice = Duration::from_secs_f64(duration as f64 / f64::from(rounds));
    let mut totals: Vec<Tally> = endpoints.iter().map(|_| Tally::default()).collect();
    for _ in 0..rounds {
        for (e, total) in endpoints.iter().zip(&mut totals) {
            let t = phase(clients, e, slice).await;
            total.samples.extend(t.samples);
            total.errors += t.errors;
            total.elapsed += t.elapsed;
        }
    }
    totals
}

/// Prints requests, req/s, p50, p99 and errors per endpoint; returns the rates.
fn print_table(endpoints: &[Endpoint], totals: &mut [Tally]) -> Vec<f64> {
    println!(
        "{:<30} {:>9} {:>10} {:>10} {:>10} {:>7}",
        "endpoint", "requests", "req/s", "p50", "p99", "errors"
    );
    let mut rates = Vec::new();
    for (e, t) in endpoints.iter().zip(totals.iter_mut()) {
        let n = t.samples.len();
        let rate = n as f64 / t.elapsed.as_secs_f64().max(1e-9);
        let s = Stats::of(&mut t.samples);
        println!(
            "{:<30} {:>9} {:>10.0} {:>10} {:>10} {:>7}",
            e.label,
            n,
            rate,
            fmt_ns(s.p50_ns),
            fmt_ns(s.p99_ns),
            t.errors
        );
        rates.push(rate);
    }
    rates
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn client(auth: &str) -> Result<Client> {
    client_with(auth, "application/json")
}

fn client_with(auth: &str, content_type: &'static str) -> Result<Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(auth)
        .context("the token is not a valid header value")?;
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static(content_type),
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
    if let Some(auth) = &p.auth {
        req = req.header(reqwest::header::AUTHORIZATION, &**auth);
    }
    if let Some(body) = &p.body {
        req = req.body(body.clone());
    }
    if let Some(dpop) = &p.dpop {
        req = req.header("dpop", dpop.proof(p.method.as_str(), &p.url));
    }
    let resp = req.send().await?;
    if let Some(dpop) = &p.dpop {
        dpop.remember(resp.headers());
    }
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if status != StatusCode::OK {
        return Ok(false);
    }
    if let Some(needle) = p.expect_contains
        && !bytes.windows(needle.len()).any(|w| w == needle)
    {
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

// ---------------------------------------------------------------------------------------------
// Token issuance and introspection.

/// `trustgate-load oauth`: client-credentials grants/s and introspections/s against `/healthz`.
#[derive(Debug, Parser)]
#[command(
    name = "trustgate-load oauth",
    about = "client_credentials issuance and token introspection throughput, with /healthz as the baseline"
)]
struct OAuthArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin bearer token (registers the benchmark client).
    #[arg(long, env = "TRUSTGATE_LOAD_TOKEN", hide_env_values = true)]
    token: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of measurement per endpoint (split over the rounds).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Interleaved rounds.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Seconds of unmeasured warm-up per endpoint.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
}

async fn oauth_load(args: OAuthArgs) -> Result<()> {
    if args.connections == 0 || args.duration == 0 || args.rounds == 0 {
        bail!("--connections, --duration and --rounds must be positive");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let admin = client(&format!("Bearer {}", args.token))?;
    let CcClient {
        basic,
        grant,
        token,
    } = register_cc_client(&admin, &base).await?;
    let introspect_body = introspect_body(&token);
    let endpoints = [
        Endpoint {
            label: "GET /healthz",
            requests: Arc::new(vec![Prepared {
                method: reqwest::Method::GET,
                url: format!("{base}/healthz"),
                body: None,
                expect_allowed: None,
                expect_contains: None,
                auth: None,
                dpop: None,
            }]),
        },
        Endpoint {
            label: "POST /oauth2/token (cc)",
            requests: Arc::new(vec![Prepared {
                method: reqwest::Method::POST,
                url: format!("{base}/oauth2/token"),
                body: Some(grant.clone()),
                expect_allowed: None,
                expect_contains: Some(b"\"access_token\""),
                auth: None,
                dpop: None,
            }]),
        },
        Endpoint {
            label: "POST /oauth2/introspect",
            requests: Arc::new(vec![Prepared {
                method: reqwest::Method::POST,
                url: format!("{base}/oauth2/introspect"),
                body: Some(introspect_body.into_bytes()),
                expect_allowed: None,
                expect_contains: Some(b"\"active\":true"),
                auth: None,
                dpop: None,
            }]),
        },
        Endpoint {
            label: "POST /oauth2/token (cc, DPoP)",
            requests: Arc::new(vec![Prepared {
                method: reqwest::Method::POST,
                url: format!("{base}/oauth2/token"),
                body: Some(grant.clone()),
                expect_allowed: None,
                expect_contains: Some(b"\"token_type\":\"DPoP\""),
                auth: None,
                dpop: Some(Arc::new(DpopSigner::new())),
            }]),
        },
    ];
    let clients: Vec<Client> = (0..args.connections)
        .map(|_| client_with(&basic, "application/x-www-form-urlencoded"))
        .collect::<Result<_>>()?;
    let mut totals = run_rounds(
        &clients,
        &endpoints,
        args.warmup,
        args.duration,
        args.rounds,
    )
    .await;
    let cores = cpus();
    println!(
        "\nload: {} connections, {} s per endpoint in {} interleaved rounds, {cores} CPUs shared by \
         server and load generator",
        args.connections, args.duration, args.rounds,
    );
    let rates = print_table(&endpoints, &mut totals);
    let per_core = |rate: f64| rate / cores.max(1) as f64;
    println!(
        "client_credentials: {:.0}/s ({:.0}/s per core; target ≥ 3000/s per core), {:.0}% of /healthz",
        rates[1],
        per_core(rates[1]),
        100.0 * rates[1] / rates[0].max(1e-9)
    );
    println!(
        "introspection: {:.0}/s ({:.0}/s per core), {:.0}% of /healthz",
        rates[2],
        per_core(rates[2]),
        100.0 * rates[2] / rates[0].max(1e-9)
    );
    println!(
        "client_credentials with DPoP: {:.0}/s, {:.0}% of the bearer grant (proof made by the \
         load generator, verified, its jti spent in the database, token bound)",
        rates[3],
        100.0 * rates[3] / rates[1].max(1e-9)
    );
    let errors: u64 = totals.iter().map(|t| t.errors).sum();
    if errors > 0 {
        bail!("{errors} requests failed or answered unexpectedly");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Token issuance against node oidc-provider.

/// `trustgate-load oauth-vs-node`: trustgate's client_credentials grants/s against node
/// `oidc-provider`'s, both issuing ES256-signed JWT access tokens, measured in interleaved rounds
/// with the same connections and durations.
#[derive(Debug, Parser)]
#[command(
    name = "trustgate-load oauth-vs-node",
    about = "client_credentials issuance of trustgate against node oidc-provider (ES256 JWTs), interleaved rounds"
)]
struct VsNodeArgs {
    /// Base URL of trustgate.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// trustgate's admin bearer token (registers the benchmark client).
    #[arg(long, env = "TRUSTGATE_LOAD_TOKEN", hide_env_values = true)]
    token: String,
    /// Base URL of the node oidc-provider (its token endpoint is `/token`).
    #[arg(long)]
    node_url: String,
    /// The node provider's client id.
    #[arg(long, env = "NODE_OIDC_CLIENT_ID")]
    node_client_id: String,
    /// The node provider's client secret.
    #[arg(long, env = "NODE_OIDC_CLIENT_SECRET", hide_env_values = true)]
    node_client_secret: String,
    /// Concurrent keep-alive connections (to each server, one server at a time).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of measurement per server (split over the rounds).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Interleaved rounds (node, trustgate, node, trustgate, ...).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds of unmeasured warm-up per server before the first round.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
}

/// The `alg` of a JWS's protected header.
fn jws_alg(token: &str) -> Result<String> {
    use base64::Engine as _;
    let header = token.split('.').next().context("not a JWS")?;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .context("the JWS header is not base64url")?,
    )?;
    Ok(header["alg"]
        .as_str()
        .context("the JWS header has no alg")?
        .to_owned())
}

/// One client_credentials grant at `url` with `basic`; the access token.
async fn one_grant(c: &Client, url: &str, basic: &str, body: &[u8]) -> Result<String> {
    let answer: Value = c
        .post(url)
        .header(AUTHORIZATION, basic)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.to_vec())
        .send()
        .await?
        .error_for_status()
        .with_context(|| format!("the client_credentials grant at {url} failed"))?
        .json()
        .await?;
    Ok(answer["access_token"]
        .as_str()
        .with_context(|| format!("{url} answered without an access_token"))?
        .to_owned())
}

/// A server under load through [`http1`] connections, kept open across phases.
struct Target {
    label: &'static str,
    addr: std::net::SocketAddr,
    request: Arc<http1::Request>,
    connections: Vec<http1::Connection>,
}

impl Target {
    /// `n` connections send the grant request back to back for `length`; an answer counts when
    /// it is 200 with an access token. A connection that fails is dropped (and reopened for the
    /// next phase).
    async fn phase(&mut self, n: usize, length: Duration) -> Result<Tally> {
        while self.connections.len() < n {
            self.connections.push(
                http1::Connection::connect(self.addr)
                    .await
                    .with_context(|| format!("connecting to {}", self.addr))?,
            );
        }
        let start = Instant::now();
        let deadline = start + length;
        let mut tasks = tokio::task::JoinSet::new();
        for mut conn in self.connections.drain(..) {
            let request = Arc::clone(&self.request);
            tasks.spawn(async move {
                let mut t = Tally::default();
                while Instant::now() < deadline {
                    let began = Instant::now();
                    match conn.send(&request).await {
                        Ok((200, body)) if contains(body, b"\"access_token\"") => {
                            t.samples.push(began.elapsed().as_nanos() as u64);
                        }
                        Ok(_) => t.errors += 1,
                        Err(_) => {
                            t.errors += 1;
                            return (None, t);
                        }
                    }
                }
                (Some(conn), t)
            });
        }
        let mut total = Tally::default();
        while let Some(joined) = tasks.join_next().await {
            let (conn, t) = joined?;
            self.connections.extend(conn);
            total.samples.extend(t.samples);
            total.errors += t.errors;
        }
        total.elapsed = start.elapsed();
        Ok(total)
    }
}

/// `name value` lines of a Prometheus text exposition whose metric name is `metric`, summed.
fn metric_sum(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn oauth_vs_node(args: VsNodeArgs) -> Result<()> {
    if args.connections == 0 || args.duration == 0 || args.rounds == 0 {
        bail!("--connections, --duration and --rounds must be positive");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let node_base = args.node_url.trim_end_matches('/').to_owned();
    let admin = client(&format!("Bearer {}", args.token))?;
    let tg = register_cc_client(&admin, &base).await?;
    let node_basic = {
        use base64::Engine as _;
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                encode(&args.node_client_id),
                encode(&args.node_client_secret)
            ))
        )
    };
    let grant = tg.grant.clone();
    let node_url = format!("{node_base}/token");
    // The same algorithm on both sides, checked rather than assumed.
    let probe = Client::builder().timeout(Duration::from_secs(30)).build()?;
    let node_token = one_grant(&probe, &node_url, &node_basic, &grant)
        .await
        .context("node oidc-provider")?;
    for (who, token) in [
        ("trustgate", &tg.token),
        ("node oidc-provider", &node_token),
    ] {
        let alg = jws_alg(token).with_context(|| format!("{who}'s access token"))?;
        if alg != "ES256" {
            bail!("{who} signs access tokens with {alg}, not ES256");
        }
    }
    // Both servers are driven by the same minimal HTTP/1.1 client (`trustgate_bench::http1`):
    // the load generator shares the cores, so the lighter it is the more of them the servers get.
    let form = "application/x-www-form-urlencoded";
    let target = |label: &'static str, base: &str, path: &str, basic: &str| -> Result<Target> {
        let parsed = url::Url::parse(base)?;
        let host = parsed.host_str().context("no host in the URL")?;
        let port = parsed
            .port_or_known_default()
            .context("no port in the URL")?;
        Ok(Target {
            label,
            addr: format!("{host}:{port}")
                .parse()
                .context("use an IP address in the URL")?,
            request: Arc::new(http1::Request::post(
                &format!("{host}:{port}"),
                path,
                &[("authorization", basic), ("content-type", form)],
                &grant,
            )),
            connections: Vec::new(),
        })
    };
    let mut targets = [
        target(
            "node oidc-provider POST /token",
            &node_base,
            "/token",
            &node_basic,
        )?,
        target(
            "trustgate POST /oauth2/token",
            &base,
            "/oauth2/token",
            &tg.basic,
        )?,
    ];
    // Grants trustgate answered, warm-up and the provisioning grant included: every one of them
    // must be in the audit trail.
    let mut tg_issued: u64 = 1;
    for (i, t) in targets.iter_mut().enumerate() {
        let warm = t
            .phase(args.connections, Duration::from_secs(args.warmup))
            .await?;
        if warm.errors > 0 {
            bail!(
                "{}: {} failed requests in the warm-up",
                t.label,
                warm.errors
            );
        }
        if i == 1 {
            tg_issued += warm.samples.len() as u64;
        }
    }
    let slice = Duration::from_secs_f64(args.duration as f64 / f64::from(args.rounds));
    let mut totals: Vec<Tally> = targets.iter().map(|_| Tally::default()).collect();
    let mut per_round: Vec<(f64, f64)> = Vec::new();
    for _ in 0..args.rounds {
        let mut rates = [0.0; 2];
        for ((t, total), rate) in targets.iter_mut().zip(&mut totals).zip(&mut rates) {
            let tally = t.phase(args.connections, slice).await?;
            *rate = tally.samples.len() as f64 / tally.elapsed.as_secs_f64().max(1e-9);
            total.samples.extend(tally.samples);
            total.errors += tally.errors;
            total.elapsed += tally.elapsed;
        }
        per_round.push((rates[0], rates[1]));
    }
    let endpoints: Vec<Endpoint> = targets
        .iter()
        .map(|t| Endpoint {
            label: t.label,
            requests: Arc::new(Vec::new()),
        })
        .collect();
    tg_issued += totals[1].samples.len() as u64;
    println!(
        "\nload: {} connections, {} s per server in {} interleaved rounds (+{} s warm-up each), \
         {} CPUs shared by both servers and the load generator; ES256 JWT access tokens on both",
        args.connections,
        args.duration,
        args.rounds,
        args.warmup,
        cpus(),
    );
    let rates = print_table(&endpoints, &mut totals);
    for (i, (node, tg)) in per_round.iter().enumerate() {
        println!(
            "round {}: node {node:.0}/s, trustgate {tg:.0}/s, {:.2}x",
            i + 1,
            tg / node.max(1e-9)
        );
    }
    println!(
        "client_credentials: trustgate {:.0}/s vs node oidc-provider {:.0}/s = {:.2}x",
        rates[1],
        rates[0],
        rates[1] / rates[0].max(1e-9)
    );
    // The audit trail: everything queued is written, nothing was dropped.
    let metrics_url = format!("{base}/metrics");
    let mut written = 0.0;
    let mut dropped: f64;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = probe.get(&metrics_url).send().await?.text().await?;
        let now_written = metric_sum(&text, "audit_events_written_total");
        dropped = metric_sum(&text, "audit_events_dropped_total");
        if now_written == written || Instant::now() > deadline {
            break;
        }
        written = now_written;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "trustgate grants answered: {tg_issued} (warm-up included); streamed audit events written: \
         {written:.0}, dropped: {dropped:.0}"
    );
    println!("trustgate_grants_answered={tg_issued}");
    let errors: u64 = totals.iter().map(|t| t.errors).sum();
    if errors > 0 {
        bail!("{errors} requests failed or answered unexpectedly");
    }
    if dropped > 0.0 {
        bail!("{dropped} audit events were dropped");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The login flood.

/// `trustgate-load login`: logins/s, and `/healthz` latency while idle and during a login flood.
#[derive(Debug, Parser)]
#[command(
    name = "trustgate-load login",
    about = "Login flood against trustgate's /login page, with /healthz latency idle and during it"
)]
struct LoginArgs {
    /// Base URL of the server.
    #[arg(
        long,
        visible_alias = "server",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// The admin bearer token (creates the benchmark users).
    #[arg(long, env = "TRUSTGATE_LOAD_TOKEN", hide_env_values = true)]
    token: String,
    /// Concurrent login clients (each: GET /login, then POST /login, in a loop).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds of login flood, and of the idle `/healthz` measurement before it.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Pause of the `/healthz` probe between two requests, milliseconds (one connection).
    #[arg(long, default_value_t = 2)]
    probe_interval_ms: u64,
    /// How long a login client waits after a 503 or 429 before trying again, milliseconds.
    #[arg(long, default_value_t = 100)]
    backoff_ms: u64,
    /// Wrong-password attempts after the flood (one at a time, against a second user).
    #[arg(long, default_value_t = 30)]
    wrong_attempts: u32,
}

/// Counts of one set of login attempts.
#[derive(Debug, Default)]
struct LoginTally {
    signed_in: u64,
    busy: u64,
    throttled: u64,
    rejected: u64,
    other: u64,
    /// `GET /login` + `POST /login` of each successful login, nanoseconds.
    samples: Vec<u64>,
    elapsed: Duration,
}

impl LoginTally {
    fn add(&mut self, other: LoginTally) {
        self.signed_in += other.signed_in;
        self.busy += other.busy;
        self.throttled += other.throttled;
        self.rejected += other.rejected;
        self.other += other.other;
        self.samples.extend(other.samples);
    }

    fn count(&mut self, outcome: LoginOutcome) {
        match outcome {
            LoginOutcome::SignedIn => self.signed_in += 1,
            LoginOutcome::Busy => self.busy += 1,
            LoginOutcome::Throttled => self.throttled += 1,
            LoginOutcome::Rejected => self.rejected += 1,
            LoginOutcome::Other => self.other += 1,
        }
    }
}

/// Where the pages are and who logs in.
#[derive(Debug, Clone)]
struct LoginTarget {
    login_url: String,
    /// `scheme://host:port` of the server, for the `Origin` header.
    origin: String,
    username: String,
    password: String,
}

async fn login_flood(args: LoginArgs) -> Result<()> {
    if args.concurrency == 0 || args.duration == 0 {
        bail!("--concurrency and --duration must be positive");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let origin = reqwest::Url::parse(&base)
        .context("--url is not a URL")?
        .origin()
        .ascii_serialization();
    let admin = client(&format!("Bearer {}", args.token))?;

    // Two users: one for the flood, one for the wrong-password run (its account throttle must
    // not touch the flood's user). The same client IP throttles only on failures, so the flood
    // runs first and the wrong passwords last.
    let nonce = OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_000_000;
    let password = format!("Load-bench {nonce} passphrase");
    let mut targets = Vec::new();
    for role in ["flood", "wrong"] {
        let username = format!("loadbench-{role}-{nonce}");
        create_user(&admin, &base, &username, &password).await?;
        targets.push(LoginTarget {
            login_url: format!("{base}/login"),
            origin: origin.clone(),
            username,
            password: password.clone(),
        });
    }
    let (flood_user, wrong_user) = (targets[0].clone(), targets[1].clone());

    // One login end to end, so a broken flow fails loudly instead of counting as "other".
    let first = page_client()?;
    let t = Instant::now();
    match one_login(&first, &flood_user).await {
        Ok(LoginOutcome::SignedIn) => {}
        Ok(other) => bail!("the first login did not sign in: {other:?}"),
        Err(e) => return Err(e.context("the first login failed")),
    }
    println!(
        "setup: users {} and {} created; one login (GET + POST /login → 303 with a session \
         cookie) in {}",
        flood_user.username,
        wrong_user.username,
        fmt_ns(t.elapsed().as_nanos() as f64)
    );

    let length = Duration::from_secs(args.duration);
    let pause = Duration::from_millis(args.probe_interval_ms);
    let healthz = format!("{base}/healthz");

    // (a) /healthz, idle.
    let idle = probe_thread(healthz.clone(), length, pause).await?;

    // (b) + (c): the flood, with the same probe alongside.
    let probe = probe_thread(healthz, length, pause);
    let start = Instant::now();
    let deadline = start + length;
    let backoff = Duration::from_millis(args.backoff_ms);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (c, target) = (page_client()?, flood_user.clone());
        tasks.spawn(async move {
            let mut t = LoginTally::default();
            while Instant::now() < deadline {
                let began = Instant::now();
                let outcome = one_login(&c, &target).await.unwrap_or(LoginOutcome::Other);
                t.count(outcome);
                match outcome {
                    LoginOutcome::SignedIn => t.samples.push(began.elapsed().as_nanos() as u64),
                    LoginOutcome::Busy | LoginOutcome::Throttled => {
                        tokio::time::sleep(backoff).await
                    }
                    _ => {}
                }
            }
            t
        });
    }
    let (busy_probe, mut flood) = tokio::join!(probe, async {
        let mut total = LoginTally::default();
        while let Some(r) = tasks.join_next().await {
            if let Ok(t) = r {
                total.add(t);
            }
        }
        total.elapsed = start.elapsed();
        total
    });
    let busy_probe = busy_probe?;

    // Wrong passwords, one at a time, then the right one for the same account.
    let c = page_client()?;
    let mut wrong = LoginTally::default();
    let bad = LoginTarget {
        password: format!("{}-wrong", wrong_user.password),
        ..wrong_user.clone()
    };
    for _ in 0..args.wrong_attempts {
        wrong.count(one_login(&c, &bad).await.unwrap_or(LoginOutcome::Other));
    }
    let after = one_login(&c, &wrong_user)
        .await
        .unwrap_or(LoginOutcome::Other);

    // Report.
    println!(
        "\nlogin flood: {} clients for {} s (each: GET /login, POST /login with the right \
         password; {} ms pause after a 503/429); /healthz probe: 1 connection, {} ms between \
         requests; {} CPUs shared by server and load generator",
        args.concurrency,
        args.duration,
        args.backoff_ms,
        args.probe_interval_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<28} {:>9} {:>9} {:>10} {:>10} {:>7}",
        "", "requests", "req/s", "p50", "p99", "errors"
    );
    let mut p99s = Vec::new();
    for (label, mut t) in [
        ("GET /healthz, idle", idle),
        ("GET /healthz, during flood", busy_probe),
    ] {
        let n = t.samples.len();
        let rate = n as f64 / t.elapsed.as_secs_f64().max(1e-9);
        let s = Stats::of(&mut t.samples);
        println!(
            "{label:<28} {n:>9} {rate:>9.0} {:>10} {:>10} {:>7}",
            fmt_ns(s.p50_ns),
            fmt_ns(s.p99_ns),
            t.errors
        );
        p99s.push(s.p99_ns);
    }
    let logins = flood.signed_in;
    let rate = logins as f64 / flood.elapsed.as_secs_f64().max(1e-9);
    let s = Stats::of(&mut flood.samples);
    println!(
        "{:<28} {:>9} {:>9.0} {:>10} {:>10} {:>7}",
        "logins (GET + POST /login)",
        logins,
        rate,
        fmt_ns(s.p50_ns),
        fmt_ns(s.p99_ns),
        flood.other
    );
    println!(
        "logins: {} signed in (303 + session cookie) = {rate:.1} logins/s; 503 busy: {}; \
         429 throttled: {}; 200 rejected: {}; other: {}",
        flood.signed_in, flood.busy, flood.throttled, flood.rejected, flood.other
    );
    println!(
        "p99(/healthz during flood) / p99(/healthz idle) = {:.2}",
        p99s[1] / p99s[0].max(1.0)
    );
    println!(
        "wrong password: {} attempts, one at a time → {} rejected (200), {} throttled (429), \
         {} busy (503), {} other; then the right password → {after:?}",
        args.wrong_attempts, wrong.rejected, wrong.throttled, wrong.busy, wrong.other
    );
    if flood.other > 0 || flood.rejected > 0 || flood.throttled > 0 {
        bail!(
            "{} flood logins failed unexpectedly",
            flood.other + flood.rejected + flood.throttled
        );
    }
    if wrong.throttled == 0 {
        bail!("the wrong-password run was never throttled");
    }
    Ok(())
}

/// A client for the pages: no default headers, no redirects followed, no cookie jar.
fn page_client() -> Result<Client> {
    Ok(Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// `GET /login` (fresh browser: no cookies), then `POST /login` with the CSRF cookie and field.
async fn one_login(c: &Client, target: &LoginTarget) -> Result<LoginOutcome> {
    let page = c.get(&target.login_url).send().await?;
    if page.status() != StatusCode::OK {
        bail!("GET /login: {}", page.status());
    }
    let cookie = {
        let set = page
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let (name, value) =
            find_cookie(set, CSRF_COOKIE).context("GET /login set no CSRF cookie")?;
        format!("{name}={value}")
    };
    let html = page.text().await?;
    let token = hidden_csrf(&html).context("GET /login has no csrf field")?;
    let answer = c
        .post(&target.login_url)
        .header(ORIGIN, &target.origin)
        .header(COOKIE, cookie)
        .form(&[
            ("csrf", token),
            ("username", target.username.as_str()),
            ("password", target.password.as_str()),
        ])
        .send()
        .await?;
    let status = answer.status().as_u16();
    let session = find_cookie(
        answer
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        SESSION_COOKIE,
    )
    .is_some();
    // Read the body so the connection is reused.
    answer.bytes().await?;
    Ok(LoginOutcome::of(status, session))
}

/// `GET url` on one keep-alive connection for `length`, pausing `pause` between requests, on a
/// thread and runtime of its own so the flood's client tasks never delay a probe.
async fn probe_thread(url: String, length: Duration, pause: Duration) -> Result<Tally> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("healthz-probe".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(probe(&url, length, pause)));
            let _ = tx.send(result);
        })?;
    rx.await
        .context("the probe thread ended without a result")?
}

async fn probe(url: &str, length: Duration, pause: Duration) -> Result<Tally> {
    let c = page_client()?;
    let start = Instant::now();
    let deadline = start + length;
    let mut t = Tally::default();
    while Instant::now() < deadline {
        let began = Instant::now();
        let ok = match c.get(url).send().await {
            Ok(r) => r.status() == StatusCode::OK && r.bytes().await.is_ok(),
            Err(_) => false,
        };
        if ok {
            t.samples.push(began.elapsed().as_nanos() as u64);
        } else {
            t.errors += 1;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    t.elapsed = start.elapsed();
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// The soak: a long run of mixed load at a fixed fraction of the measured maximum.

/// `trustgate-load soak`: calibrates the mix's maximum rate, then runs it open-loop at a fraction
/// of it for `--duration`, sampling the server's RSS, and judges the run.
#[derive(Debug, Parser)]
#[command(
    name = "trustgate-load soak",
    about = "Mixed load (checks, tuple writes + deletes, client_credentials grants, \
             introspection, logins) at a fraction of the measured maximum for a long run, with \
             a per-minute table and a verdict: 0 errors, RSS flat, p99 stable"
)]
struct SoakArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin bearer token.
    #[arg(long, env = "TRUSTGATE_LOAD_TOKEN", hide_env_values = true)]
    token: String,
    /// Length of the paced run: `30m`, `2m`, `90s`, `1h`, or seconds. Under 11 minutes the
    /// warm-up (1 min) and the compared windows (5 min) shrink proportionally.
    #[arg(long, default_value = "30m", value_parser = soak::parse_duration)]
    duration: Duration,
    /// The server's process id: its RSS is read from `/proc/PID/status`.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds between two RSS samples.
    #[arg(long, default_value_t = 10)]
    rss_interval: u64,
    /// Tuples of the dataset the checks run against.
    #[arg(long, default_value_t = 10_000)]
    tuples: usize,
    /// Tuples per write request while writing the dataset.
    #[arg(long, default_value_t = 100)]
    write_batch: usize,
    /// Closed-loop connections measuring the maximum rate of the mix.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Length of the calibration.
    #[arg(long, default_value = "20s", value_parser = soak::parse_duration)]
    calibrate: Duration,
    /// Fraction of the calibrated maximum to run at.
    #[arg(long, default_value_t = 0.8)]
    load: f64,
    /// Mix operations per second to run at, skipping the calibration.
    #[arg(long)]
    rate: Option<f64>,
    /// Connections of the paced run; each sends on its own schedule, so more connections than
    /// the calibration keeps one slow answer from delaying many scheduled sends.
    #[arg(long, default_value_t = 64)]
    paced_connections: usize,
    /// Logins per second (GET + POST /login), at a fixed rate beside the mix, in the calibration
    /// too: an argon2id login costs about a thousand checks.
    #[arg(long, default_value_t = 2.0)]
    login_rate: f64,
    /// Users the logins rotate over.
    #[arg(long, default_value_t = 4)]
    users: usize,
    /// One round of the mix, as weights of: check, tuple write + delete (two requests, so the
    /// store does not grow), client_credentials grant, introspection. Logins are not in the mix
    /// (`--login-rate`). Zero weights leave an operation out, e.g. to find which one a memory
    /// growth follows.
    #[arg(long, default_value = "16,1,2,2", value_parser = soak::parse_mix)]
    mix: [u32; 4],
}

/// Operations, as recorded (indices into [`SOAK_LABELS`]).
const OP_CHECK: usize = 0;
const OP_WRITE: usize = 1;
const OP_DELETE: usize = 2;
const OP_GRANT: usize = 3;
const OP_INTROSPECT: usize = 4;
const OP_LOGIN: usize = 5;
const SOAK_LABELS: [&str; 6] = ["check", "write", "delete", "grant", "introspect", "login"];

const MIX_CHECK: usize = 0;
const MIX_WRITE_DELETE: usize = 1;
const MIX_GRANT: usize = 2;
const MIX_INTROSPECT: usize = 3;

/// Everything a soak worker needs.
struct SoakCtx {
    admin_auth: HeaderValue,
    basic_auth: HeaderValue,
    checks: Vec<Prepared>,
    write_url: String,
    model_id: String,
    token_url: String,
    introspect_url: String,
    grant: Vec<u8>,
    /// The token introspections ask about: the latest one a grant returned.
    latest_token: std::sync::RwLock<Arc<str>>,
    /// Makes every written tuple unique.
    next_tuple: std::sync::atomic::AtomicU64,
    schedule: Vec<usize>,
    logins: Vec<LoginTarget>,
    rec: std::sync::Mutex<Recorder>,
    /// Where the recorder's time starts.
    start: Instant,
}

type Outcome = std::result::Result<(), ErrorKind>;

impl SoakCtx {
    fn record(&self, scheduled: Instant, op: usize, latency: Duration, outcome: Outcome) {
        let at = scheduled.saturating_duration_since(self.start);
        let mut rec = self.rec.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(()) => rec.ok(at, op, latency),
            Err(kind) => rec.error(at, op, kind),
        }
    }

    /// Runs mix operation `op` (the `k`-th of its worker), scheduled at `scheduled`.
    async fn run(&self, c: &Client, op: usize, k: usize, scheduled: Instant) {
        match op {
            MIX_CHECK => {
                let p = &self.checks[k % self.checks.len()];
                let req = c
                    .post(&p.url)
                    .header(AUTHORIZATION, self.admin_auth.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(p.body.clone().unwrap_or_default());
                let outcome = exchange(req).await.and_then(|body| {
                    let needle: &[u8] = if p.expect_allowed == Some(true) {
                        b"\"allowed\":true"
                    } else {
                        b"\"allowed\":false"
                    };
                    expect(contains(&body, needle))
                });
                self.record(scheduled, OP_CHECK, scheduled.elapsed(), outcome);
            }
            MIX_WRITE_DELETE => {
                let n = self
                    .next_tuple
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let key = json!({"user": "user:soak", "relation": "viewer", "object": format!("document:soak{n}")});
                let write = json!({"writes": {"tuple_keys": [key]}, "authorization_model_id": self.model_id});
                let outcome = self.admin_post(c, &write).await;
                let written = outcome.is_ok();
                self.record(scheduled, OP_WRITE, scheduled.elapsed(), outcome);
                if written {
                    // Sent right after the write, so measured from its own send time.
                    let sent = Instant::now();
                    let delete = json!({"deletes": {"tuple_keys": [key]}, "authorization_model_id": self.model_id});
                    let outcome = self.admin_post(c, &delete).await;
                    self.record(sent, OP_DELETE, sent.elapsed(), outcome);
                }
            }
            MIX_GRANT => {
                let req = c
                    .post(&self.token_url)
                    .header(AUTHORIZATION, self.basic_auth.clone())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(self.grant.clone());
                let outcome = exchange(req).await.and_then(|body| {
                    let token = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v["access_token"].as_str().map(Arc::<str>::from))
                        .ok_or(ErrorKind::Unexpected)?;
                    *self.latest_token.write().unwrap_or_else(|e| e.into_inner()) = token;
                    Ok(())
                });
                self.record(scheduled, OP_GRANT, scheduled.elapsed(), outcome);
            }
            _ => {
                let token = self
                    .latest_token
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let req = c
                    .post(&self.introspect_url)
                    .header(AUTHORIZATION, self.basic_auth.clone())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(introspect_body(&token));
                let outcome = exchange(req)
                    .await
                    .and_then(|body| expect(contains(&body, b"\"active\":true")));
                self.record(scheduled, OP_INTROSPECT, scheduled.elapsed(), outcome);
            }
        }
    }

    async fn admin_post(&self, c: &Client, body: &Value) -> Outcome {
        let req = c
            .post(&self.write_url)
            .header(AUTHORIZATION, self.admin_auth.clone())
            .json(body);
        exchange(req).await.map(|_| ())
    }

    /// One login of user `k % users`, scheduled at `scheduled`.
    async fn login(&self, c: &Client, k: usize, scheduled: Instant) {
        let target = &self.logins[k % self.logins.len()];
        let outcome = match one_login(c, target).await {
            Ok(LoginOutcome::SignedIn) => Ok(()),
            Ok(LoginOutcome::Busy) => Err(ErrorKind::Status(503)),
            Ok(LoginOutcome::Throttled) => Err(ErrorKind::Status(429)),
            Ok(LoginOutcome::Rejected | LoginOutcome::Other) => Err(ErrorKind::Unexpected),
            Err(_) => Err(ErrorKind::Transport),
        };
        self.record(scheduled, OP_LOGIN, scheduled.elapsed(), outcome);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn expect(ok: bool) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(ErrorKind::Unexpected)
    }
}

/// Sends `req`; the body of a 200 answer, or what went wrong.
async fn exchange(req: reqwest::RequestBuilder) -> std::result::Result<Vec<u8>, ErrorKind> {
    let resp = req.send().await.map_err(|_| ErrorKind::Transport)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|_| ErrorKind::Transport)?;
    if status != StatusCode::OK {
        return Err(ErrorKind::Status(status.as_u16()));
    }
    Ok(body.to_vec())
}

/// How a worker sends.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// The next request as soon as the previous answer is in (measuring the maximum).
    Closed,
    /// Request `j` at `first + j × interval`, late or not (latency counted from then).
    Open { first: Instant, interval: Duration },
}

impl Pace {
    /// When the `j`-th request is due; `None` when it would be at or after `end`.
    fn due(&self, j: u64, end: Instant) -> Option<Instant> {
        let at = match self {
            Pace::Closed => Instant::now(),
            Pace::Open { first, interval } => {
                *first
                    + Duration::from_nanos(
                        u64::try_from(interval.as_nanos())
                            .unwrap_or(u64::MAX)
                            .saturating_mul(j),
                    )
            }
        };
        (at < end).then_some(at)
    }
}

/// Worker `w` of `of`: runs the mix until `end`; returns the mix operations done.
async fn mix_worker(ctx: Arc<SoakCtx>, w: usize, of: usize, pace: Pace, end: Instant) -> u64 {
    let Ok(c) = page_client() else { return 0 };
    let mut j: u64 = 0;
    while let Some(at) = pace.due(j, end) {
        tokio::time::sleep_until(at.into()).await;
        let k = usize::try_from(j)
            .unwrap_or(usize::MAX)
            .wrapping_mul(of)
            .wrapping_add(w);
        let op = ctx.schedule[k % ctx.schedule.len()];
        ctx.run(&c, op, k / ctx.schedule.len() + w * 7, at).await;
        j += 1;
    }
    j
}

/// Logins at `rate` per second until `end`, spread over a few workers so one slow login (argon2id)
/// does not delay the next scheduled one.
fn spawn_logins(
    ctx: &Arc<SoakCtx>,
    tasks: &mut tokio::task::JoinSet<u64>,
    rate: f64,
    first: Instant,
    end: Instant,
) {
    if rate <= 0.0 {
        return;
    }
    const WORKERS: usize = 4;
    let interval = Duration::from_secs_f64(WORKERS as f64 / rate);
    for w in 0..WORKERS {
        let ctx = ctx.clone();
        let pace = Pace::Open {
            first: first + interval.mul_f64(w as f64 / WORKERS as f64),
            interval,
        };
        tasks.spawn(async move {
            let Ok(c) = page_client() else { return 0 };
            let mut j: u64 = 0;
            while let Some(at) = pace.due(j, end) {
                tokio::time::sleep_until(at.into()).await;
                let k = usize::try_from(j).unwrap_or(usize::MAX) * WORKERS + w;
                ctx.login(&c, k, at).await;
                j += 1;
            }
            0
        });
    }
}

/// Resident set size of `pid`, KiB, from `/proc/PID/status`.
fn read_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    line.split_whitespace()
        .nth(1)
        .context("an empty VmRSS line")?
        .parse()
        .context("VmRSS is not a number")
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

async fn soak_run(args: SoakArgs) -> Result<()> {
    if args.connections == 0 || args.paced_connections == 0 || args.users == 0 {
        bail!("--connections, --paced-connections and --users must be positive");
    }
    if !(args.load > 0.0 && args.load <= 1.0) {
        bail!("--load must be in (0, 1]");
    }
    if !(args.login_rate >= 0.0 && args.login_rate <= 20.0) {
        bail!("--login-rate must be between 0 and 20 per second (argon2id: ~60/s on 2 cores)");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be positive");
    }
    if args.rss_interval == 0 {
        bail!("--rss-interval must be positive");
    }
    let base = args.url.trim_end_matches('/').to_owned();
    let origin = reqwest::Url::parse(&base)
        .context("--url is not a URL")?
        .origin()
        .ascii_serialization();
    let admin_auth = format!("Bearer {}", args.token);
    let setup = client(&admin_auth)?;

    // Provisioning, once: the same dataset and client as the check and oauth scenarios.
    let Provisioned {
        store_id,
        model_id,
        ds,
    } = provision_dataset(&setup, &base, args.tuples, args.write_batch).await?;
    let checks = check_requests(&ds, &format!("{base}/stores/{store_id}/check"), &model_id)?;
    verify_checks(&setup, &checks).await?;
    let cc = register_cc_client(&setup, &base).await?;
    let nonce = OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_000_000;
    let password = format!("Soak {nonce} passphrase");
    let mut logins = Vec::new();
    let page = page_client()?;
    for i in 0..args.users {
        let username = format!("soak-{nonce}-{i}");
        create_user(&setup, &base, &username, &password).await?;
        let target = LoginTarget {
            login_url: format!("{base}/login"),
            origin: origin.clone(),
            username,
            password: password.clone(),
        };
        match one_login(&page, &target).await {
            Ok(LoginOutcome::SignedIn) => {}
            Ok(other) => bail!("the first login of {} gave {other:?}", target.username),
            Err(e) => return Err(e.context("the first login failed")),
        }
        logins.push(target);
    }
    let sensitive = |v: &str| -> Result<HeaderValue> {
        let mut h = HeaderValue::from_str(v).context("not a valid header value")?;
        h.set_sensitive(true);
        Ok(h)
    };
    let new_ctx = |start: Instant| -> Result<Arc<SoakCtx>> {
        Ok(Arc::new(SoakCtx {
            admin_auth: sensitive(&admin_auth)?,
            basic_auth: sensitive(&cc.basic)?,
            checks: checks.clone(),
            write_url: format!("{base}/stores/{store_id}/write"),
            model_id: model_id.clone(),
            token_url: format!("{base}/oauth2/token"),
            introspect_url: format!("{base}/oauth2/introspect"),
            grant: cc.grant.clone(),
            latest_token: std::sync::RwLock::new(Arc::from(cc.token.as_str())),
            next_tuple: std::sync::atomic::AtomicU64::new(0),
            schedule: soak::mix_schedule(&args.mix),
            logins: logins.clone(),
            rec: std::sync::Mutex::new(Recorder::new(SOAK_LABELS.to_vec())),
            start,
        }))
    };
    let mix = format!(
        "mix per round: {} check, {} tuple write + delete, {} client_credentials grant, {} \
         introspection; logins (GET + POST /login, {} users in turn) at {}/s beside it",
        args.mix[MIX_CHECK],
        args.mix[MIX_WRITE_DELETE],
        args.mix[MIX_GRANT],
        args.mix[MIX_INTROSPECT],
        args.users,
        args.login_rate
    );
    println!("{mix}; {} CPUs shared by server and load generator", cpus());

    // 1. Calibration: closed loop.
    let rate = match args.rate {
        Some(r) => {
            println!("rate given: {r:.0} mix operations/s (no calibration)");
            r
        }
        None => {
            let start = Instant::now();
            let ctx = new_ctx(start)?;
            let end = start + args.calibrate;
            let mut tasks = tokio::task::JoinSet::new();
            for w in 0..args.connections {
                tasks.spawn(mix_worker(
                    ctx.clone(),
                    w,
                    args.connections,
                    Pace::Closed,
                    end,
                ));
            }
            let mut logins = tokio::task::JoinSet::new();
            spawn_logins(&ctx, &mut logins, args.login_rate, start, end);
            let mut done = 0;
            while let Some(r) = tasks.join_next().await {
                done += r.unwrap_or(0);
            }
            let elapsed = start.elapsed().as_secs_f64();
            while logins.join_next().await.is_some() {}
            let max = done as f64 / elapsed;
            let rec = ctx.rec.lock().unwrap_or_else(|e| e.into_inner());
            let summary = rec.summary(Duration::ZERO, Duration::MAX);
            let line: Vec<String> = SOAK_LABELS
                .iter()
                .zip(&summary)
                .map(|(l, s)| format!("{l} {:.0}/s", s.requests as f64 / elapsed))
                .collect();
            println!(
                "calibration: {} closed-loop connections for {:.0} s (load average {}): maximum \
                 {max:.0} mix operations/s ({})",
                args.connections,
                elapsed,
                loadavg(),
                line.join(", ")
            );
            let errors = rec.errors();
            if !errors.is_empty() {
                bail!("the calibration had failed requests: {errors:?}");
            }
            max * args.load
        }
    };
    if rate < 1.0 {
        bail!("a rate of {rate:.2} mix operations/s is too low to run");
    }

    // 2. The paced run.
    let windows = Windows::for_run(args.duration);
    let share = match args.rate {
        Some(_) => "given".to_owned(),
        None => format!("{:.0}% of the maximum", 100.0 * args.load),
    };
    println!(
        "soak: {rate:.0} mix operations/s ({share}) + {}/s logins for {}, on {} paced \
         connections; latency from each request's scheduled send time; load average {}",
        args.login_rate,
        fmt_ns(args.duration.as_nanos() as f64),
        args.paced_connections,
        loadavg()
    );
    let start = Instant::now() + Duration::from_millis(100);
    let ctx = new_ctx(start)?;
    let end = start + args.duration;
    let interval = Duration::from_secs_f64(args.paced_connections as f64 / rate);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..args.paced_connections {
        let pace = Pace::Open {
            first: start + interval.mul_f64(w as f64 / args.paced_connections as f64),
            interval,
        };
        tasks.spawn(mix_worker(
            ctx.clone(),
            w,
            args.paced_connections,
            pace,
            end,
        ));
    }
    spawn_logins(&ctx, &mut tasks, args.login_rate, start, end);

    // 3. RSS every `--rss-interval` s.
    let sampler = args.server_pid.map(|pid| {
        let ctx = ctx.clone();
        let every = Duration::from_secs(args.rss_interval);
        tokio::spawn(async move {
            let mut i: u32 = 0;
            loop {
                let at = start + every * i;
                if at >= end {
                    return Ok::<(), anyhow::Error>(());
                }
                tokio::time::sleep_until(at.into()).await;
                let kib = read_rss_kib(pid)?;
                ctx.rec
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .rss(at - start, kib);
                i += 1;
            }
        })
    });
    if args.server_pid.is_none() {
        println!("no --server-pid: RSS is not sampled and the RSS criterion fails");
    }

    // 4. A row per minute, printed a few seconds after the minute so its requests are in.
    let minutes = args.duration.as_secs().div_ceil(60);
    {
        let ctx = ctx.clone();
        let header = ctx
            .rec
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .minute_header();
        println!("\n{header}  load1");
        tokio::spawn(async move {
            for m in 0..minutes {
                let due =
                    (start + Duration::from_secs(60 * (m + 1))).min(end) + Duration::from_secs(2);
                tokio::time::sleep_until(due.into()).await;
                // Copy the minute out so sorting does not hold the lock the workers record with.
                let minute = ctx.rec.lock().unwrap_or_else(|e| e.into_inner()).slice(
                    Duration::from_secs(60 * m),
                    Duration::from_secs(60 * (m + 1)),
                );
                println!("{}  {}", minute.minute_row(m), loadavg());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let rss_failure = match sampler {
        Some(handle) => match handle.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(e) => Some(e.to_string()),
        },
        None => None,
    };
    // Let the last minute's row print.
    tokio::time::sleep_until((end + Duration::from_secs(3)).into()).await;

    // 5. The verdict.
    let rec = ctx.rec.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (f0, f1) = windows.first();
    let (l0, l1) = windows.last();
    let (first, last) = (rec.summary(f0, f1), rec.summary(l0, l1));
    // The live rows miss the requests of a minute that were still in flight when it was printed
    // (a backlog after a stall); these are complete.
    println!(
        "\nper minute of scheduled send time, complete:\n{}",
        rec.minute_header()
    );
    for m in 0..minutes {
        println!("{}", rec.minute_row(m));
    }
    println!(
        "\n{}; load average at the end {}",
        windows.describe(),
        loadavg()
    );
    println!(
        "{:<11} {:>9} {:>10} {:>10} {:>9} {:>10} {:>10} {:>7}",
        "operation", "first: n", "p50", "p99", "last: n", "p50", "p99", "errors"
    );
    let whole = rec.summary(Duration::ZERO, Duration::MAX);
    for (i, label) in SOAK_LABELS.iter().enumerate() {
        let (a, b) = (first[i], last[i]);
        println!(
            "{label:<11} {:>9} {:>10} {:>10} {:>9} {:>10} {:>10} {:>7}",
            a.requests,
            fmt_ns(a.stats.p50_ns),
            fmt_ns(a.stats.p99_ns),
            b.requests,
            fmt_ns(b.stats.p50_ns),
            fmt_ns(b.stats.p99_ns),
            whole[i].errors
        );
    }
    let total: u64 = whole.iter().map(|s| s.requests + s.errors).sum();
    println!(
        "{total} requests in {:.0} s = {:.0} requests/s",
        args.duration.as_secs_f64(),
        total as f64 / args.duration.as_secs_f64()
    );
    let mut failed = Vec::new();
    for c in soak::verdict(&rec, &windows) {
        println!(
            "{} {}: {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.name,
            c.detail
        );
        if !c.passed {
            failed.push(c.name);
        }
    }
    if let Some(e) = rss_failure {
        println!("FAIL RSS sampling: {e}");
        failed.push("RSS sampling");
    }
    if !failed.is_empty() {
        // A verdict, not a malfunction of the tool: no error chain or backtrace, exit code 1.
        println!("soak failed: {}", failed.join(", "));
        std::process::exit(1);
    }
    println!("soak passed");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The gateway.

/// `trustgate-load gateway`: the same upstream called directly and through `trustgate-gateway`
/// (`trustgate gateway`, a child process), in interleaved rounds of one run.
#[derive(Debug, Parser)]
#[command(
    name = "trustgate-load gateway",
    about = "gateway overhead: an upstream called directly vs through the gateway (JWT verified, decision and exchanged token cached)"
)]
struct GatewayArgs {
    /// Base URL of the trustgate server (issuer, PDP, token exchange).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin bearer token.
    #[arg(long, env = "TRUSTGATE_LOAD_TOKEN", hide_env_values = true)]
    token: String,
    #[command(flatten)]
    child: ChildRun,
}

/// How a scenario that starts a `trustgate` child process measures.
#[derive(Debug, clap::Args)]
struct ChildRun {
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of measurement per endpoint (split over the rounds).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Interleaved rounds (one endpoint, the other, ...).
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// Seconds of unmeasured warm-up load per endpoint before the first round.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// The `trustgate` binary of the child process (default: next to this one).
    #[arg(long, value_name = "PATH")]
    trustgate_bin: Option<std::path::PathBuf>,
}

impl ChildRun {
    fn check(&self) -> Result<()> {
        if self.connections == 0 || self.duration == 0 || self.rounds == 0 {
            bail!("--connections, --duration and --rounds must be positive");
        }
        Ok(())
    }

    /// Warm-up, then the interleaved rounds over `clients`.
    async fn rounds(&self, clients: &[Client], endpoints: &[Endpoint]) -> Vec<Tally> {
        run_rounds(clients, endpoints, self.warmup, self.duration, self.rounds).await
    }

    /// Starts `trustgate <args>`, its output in `log`; killed when the guard drops.
    fn spawn(&self, args: &[&std::ffi::OsStr], log: &std::path::Path) -> Result<ChildGuard> {
        let binary = match &self.trustgate_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name("trustgate"),
        };
        let output = std::fs::File::create(log)?;
        Ok(ChildGuard(
            std::process::Command::new(&binary)
                .args(args)
                .env_remove("TRUSTGATE_DATABASE_URL")
                .env_remove("TRUSTGATE_CONFIG")
                .stdout(output.try_clone()?)
                .stderr(output)
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?,
        ))
    }
}

const GW_AUD: &str = "https://gateway.bench.example";
const APP_AUD: &str = "https://app.bench.example";

async fn gateway_load(args: GatewayArgs) -> Result<()> {
    args.child.check()?;
    let base = args.url.trim_end_matches('/').to_owned();
    let admin = client(&format!("Bearer {}", args.token))?;
    // The policy: the benchmark service may view course 1.
    let store: Value = send_json(
        &admin,
        reqwest::Method::POST,
        &format!("{base}/stores"),
        &json!({ "name": "trustgate-load gateway" }),
    )
    .await?;
    let store_id = store["id"].as_str().context("no store id")?.to_owned();
    let model = trustgate_authz::dsl::parse(
        "model\n  schema 1.1\ntype service\ntype course\n  relations\n    define viewer: [service]\n",
    )
    .context("the model")?;
    send_json(
        &admin,
        reqwest::Method::POST,
        &format!("{base}/stores/{store_id}/authorization-models"),
        &serde_json::to_value(&model)?,
    )
    .await?;
    let caller = send_json(
        &admin,
        reqwest::Method::POST,
        &format!("{base}/admin/v1/clients"),
        &json!({
            "name": "trustgate-load gateway caller",
            "redirect_uris": [],
            "grant_types": ["client_credentials"],
            "scopes": ["bench:read"],
            "audience": [GW_AUD],
        }),
    )
    .await
    .context("registering the caller")?;
    let caller_id = caller["client_id"].as_str().context("no client_id")?;
    let caller_secret = caller["client_secret"].as_str().context("no secret")?;
    let issued: Value = Client::new()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(caller_id, Some(caller_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "bench:read"),
        ])
        .send()
        .await?
        .error_for_status()
        .context("the caller's token")?
        .json()
        .await?;
    let access_token = issued["access_token"]
        .as_str()
        .context("no access_token")?
        .to_owned();
    send_json(
        &admin,
        reqwest::Method::POST,
        &format!("{base}/stores/{store_id}/write"),
        &json!({ "writes": { "tuple_keys": [
            { "user": format!("service:{caller_id}"), "relation": "viewer", "object": "course:1" }
        ] } }),
    )
    .await?;
    let gateway_client = send_json(
        &admin,
        reqwest::Method::POST,
        &format!("{base}/admin/v1/clients"),
        &json!({
            "name": "trustgate-load gateway",
            "redirect_uris": [],
            "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"],
            "scopes": ["bench:read"],
            "resource_audiences": [GW_AUD],
            "token_exchange": { "audiences": [APP_AUD] },
        }),
    )
    .await
    .context("registering the gateway's client")?;
    let reader_key = provision_reader_key(&admin, &base, &store_id).await?;

    // The upstream: the smallest axum answer.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    tokio::spawn(async move {
        let app =
            axum::Router::new().route("/courses/{id}", axum::routing::get(|| async { "course" }));
        let _ = axum::serve(upstream, app).await;
    });
    let dir = std::env::temp_dir().join(format!("trustgate-load-gateway-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let secret_file = dir.join("client-secret");
    std::fs::write(
        &secret_file,
        gateway_client["client_secret"]
            .as_str()
            .context("no secret")?,
    )?;
    let key_file = dir.join("pdp-key");
    std::fs::write(&key_file, &reader_key)?;
    // The gateway runs as operators run it: `trustgate gateway --config`, its own process, so
    // its CPU time can be read apart and it can be given a core of its own.
    let gateway_addr = {
        let free = std::net::TcpListener::bind("127.0.0.1:0")?;
        free.local_addr()?
    };
    let config_file = dir.join("gateway.toml");
    std::fs::write(
        &config_file,
        format!(
            r#"
listen = "{gateway_addr}"
issuer = "{base}"
audience = "{GW_AUD}"
[client]
id = "{client}"
secret_file = "{secret}"
[pdp]
url = "{base}/"
store_id = "{store_id}"
api_key_file = "{key}"
[[upstream]]
name = "app"
url = "http://{upstream_addr}"
audience = "{APP_AUD}"
[[upstream.route]]
method = "GET"
path = "/courses/{{id}}"
action = "viewer"
resource = "course:{{id}}"
scopes = ["bench:read"]
"#,
            client = gateway_client["client_id"]
                .as_str()
                .context("no client_id")?,
            secret = secret_file.display(),
            key = key_file.display(),
        ),
    )?;
    trustgate_gateway::GatewayConfig::load(&config_file).context("the gateway's configuration")?;
    let gateway = args.child.spawn(
        &[
            "gateway".as_ref(),
            "--log-level".as_ref(),
            "warn".as_ref(),
            "--config".as_ref(),
            config_file.as_os_str(),
        ],
        &dir.join("gateway.log"),
    )?;
    let gateway_pid = gateway.0.id();
    let bearer: Arc<str> = format!("Bearer {access_token}").into();
    let prepared = |url: String| Prepared {
        method: reqwest::Method::GET,
        url,
        body: None,
        expect_allowed: None,
        expect_contains: Some(b"course"),
        auth: Some(bearer.clone()),
        dpop: None,
    };
    let endpoints = [
        Endpoint {
            label: "upstream direct",
            requests: Arc::new(vec![prepared(format!("http://{upstream_addr}/courses/1"))]),
        },
        Endpoint {
            label: "through the gateway",
            requests: Arc::new(vec![prepared(format!("http://{gateway_addr}/courses/1"))]),
        },
    ];
    // Every request the benchmark counts must be an allow that reached the upstream.
    let probe = client(&bearer)?;
    let ready_by = Instant::now() + Duration::from_secs(30);
    while !send(&probe, &endpoints[1].requests[0])
        .await
        .unwrap_or(false)
    {
        if Instant::now() > ready_by {
            bail!(
                "the gateway did not answer 200 with the upstream's body within 30 s; its log: {}",
                std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for e in &endpoints {
        if !send(&probe, &e.requests[0]).await? {
            bail!("{} did not answer 200 with the upstream's body", e.label);
        }
    }
    let clients = (0..args.child.connections)
        .map(|_| client(&bearer))
        .collect::<Result<Vec<_>>>()?;
    println!(
        "gateway load, {} cpus (trustgate, the gateway, the upstream and this load generator \
         share them); {} s per endpoint in {} interleaved rounds",
        cpus(),
        args.child.duration,
        args.child.rounds,
    );
    // Latency: one request at a time, so the added p50 is the gateway's own time, not a queue.
    println!("latency: 1 connection");
    let mut one = args.child.rounds(&clients[..1], &endpoints).await;
    let p50s: Vec<f64> = one
        .iter()
        .map(|t| Stats::of(&mut t.samples.clone()).p50_ns)
        .collect();
    print_table(&endpoints, &mut one);
    // Throughput: every connection busy.
    println!("throughput: {} connections", args.child.connections);
    let cpu_before = cpu_time(gateway_pid)?;
    let mut totals = args.child.rounds(&clients, &endpoints).await;
    let gateway_cpu = cpu_time(gateway_pid)?.saturating_sub(cpu_before);
    let rates = print_table(&endpoints, &mut totals);
    // Warm-up requests count too: the CPU time covers them.
    let proxied = totals[1].samples.len() as f64 + rates[1] * args.child.warmup as f64;
    println!(
        "the gateway's CPU time per request: {} (user + system, warm-up included)",
        fmt_ns(gateway_cpu.as_nanos() as f64 / proxied.max(1.0))
    );
    let added = (p50s[1] - p50s[0]).max(0.0);
    println!(
        "added p50 (1 connection): {} (target <= 100 us); throughput through the gateway \
         ({} connections, every process on every core): {:.0}% of direct (target >= 70%)",
        fmt_ns(added),
        args.child.connections,
        100.0 * rates[1] / rates[0].max(1e-9)
    );
    // As deployed, a gateway has CPU of its own rather than taking it from the application and
    // its clients: this load generator and the upstream on core 0, the gateway on core 1.
    if cpus() >= 2 {
        pin_process(std::process::id(), 0)?;
        pin_process(gateway_pid, 1)?;
        println!(
            "throughput: {} connections, this load generator and the upstream on core 0, the \
             gateway on core 1",
            args.child.connections
        );
        let mut pinned = args.child.rounds(&clients, &endpoints).await;
        let rates = print_table(&endpoints, &mut pinned);
        println!(
            "throughput through the gateway on a core of its own: {:.0}% of direct (target >= 70%)",
            100.0 * rates[1] / rates[0].max(1e-9)
        );
    }
    drop(gateway);
    println!(
        "each gateway request: the caller's JWT (verified once, then remembered by its hash; \
         exp checked on every request; liveness introspected at most every liveness_ttl_secs = \
         5 s), the decision from pep's decision cache (the store's revision followed over \
         GET /stores/{{id}}/watch), the exchanged token from the cache"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A child process killed when dropped (the benchmark never leaves a gateway behind).
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process's CPU time so far (user + system), from `/proc/PID/stat` in clock ticks of
/// 1/100 s (Linux reports `/proc` times in USER_HZ, 100 on every architecture it runs here).
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it are fixed.
    let after_name = stat.rsplit_once(')').context("no command name")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `fields` starts at field 3.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .context("a short stat line")?
            .parse()
            .context("a CPU time is not a number")
    };
    Ok(Duration::from_millis((ticks(14)? + ticks(15)?) * 10))
}

/// Pins every thread of process `pid` to CPU `cpu`; threads created later inherit it from
/// their creator.
fn pin_process(pid: u32, cpu: usize) -> Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Some(tid) = task?
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            continue;
        };
        rustix::thread::sched_setaffinity(Some(tid), &set)
            .with_context(|| format!("pinning thread {tid:?} of {pid} to CPU {cpu}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// TLS.

/// `trustgate-load tls`: `/healthz` over plain HTTP (the server under `--url`) and over HTTPS
/// (a second `trustgate serve`, started here with a certificate generated here), on kept-alive
/// connections and with a new connection (a full handshake) per request.
#[derive(Debug, Parser)]
#[command(
    name = "trustgate-load tls",
    about = "requests/s and new connections/s over TLS vs plain HTTP (/healthz of two servers of the same build)"
)]
struct TlsArgs {
    /// Base URL of the plain-HTTP trustgate server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin bearer token (unused here; accepted so the script passes it like the others).
    #[arg(long, env = "TRUSTGATE_LOAD_TOKEN", hide_env_values = true)]
    token: String,
    #[command(flatten)]
    child: ChildRun,
}

async fn tls_load(args: TlsArgs) -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    args.child.check()?;
    let _ = &args.token;
    let dir = std::env::temp_dir().join(format!("trustgate-load-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // A CA and a certificate for 127.0.0.1, ECDSA P-256 (rcgen's default).
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let leaf = leaf.signed_by(&key, &issuer)?;
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, leaf.pem())?;
    std::fs::write(&key_file, key.serialize_pem())?;
    let log = dir.join("server.log");
    let data = dir.join("data");
    let _server = args.child.spawn(
        &[
            "serve".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
            "--tls-cert".as_ref(),
            cert_file.as_os_str(),
            "--tls-key".as_ref(),
            key_file.as_os_str(),
        ],
        &log,
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let https_base = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("listening on https://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or_default();
            break format!("https://{addr}");
        }
        if Instant::now() > deadline {
            bail!("the HTTPS server did not start within 30 s: {text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())?;
    let build = |reuse: bool| -> Result<Client> {
        Ok(Client::builder()
            .tls_certs_only([ca.clone()])
            .pool_max_idle_per_host(usize::from(reuse))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?)
    };
    let healthz = |base: &str| Prepared {
        method: reqwest::Method::GET,
        url: format!("{}/healthz", base.trim_end_matches('/')),
        body: None,
        expect_allowed: None,
        expect_contains: None,
        auth: None,
        dpop: None,
    };
    let endpoints = [
        Endpoint {
            label: "plain HTTP",
            requests: Arc::new(vec![healthz(&args.url)]),
        },
        Endpoint {
            label: "TLS 1.3",
            requests: Arc::new(vec![healthz(&https_base)]),
        },
    ];
    let probe = build(true)?;
    for e in &endpoints {
        if !send(&probe, &e.requests[0]).await? {
            bail!("{} did not answer 200", e.label);
        }
    }
    println!(
        "TLS load, {} cpus (both servers and this load generator share them); {} s per endpoint \
         in {} interleaved rounds; ECDSA P-256 certificate, rustls on aws-lc-rs",
        cpus(),
        args.child.duration,
        args.child.rounds
    );
    for (label, reuse) in [
        ("requests on kept-alive connections", true),
        (
            "a new connection per request (TCP + TLS handshake, then one request)",
            false,
        ),
    ] {
        println!("{label}: {} connections", args.child.connections);
        let clients = (0..args.child.connections)
            .map(|_| build(reuse))
            .collect::<Result<Vec<_>>>()?;
        let mut totals = args.child.rounds(&clients, &endpoints).await;
        let rates = print_table(&endpoints, &mut totals);
        println!(
            "  TLS: {:.0}% of plain HTTP",
            100.0 * rates[1] / rates[0].max(1e-9)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
