//! `trustgate demo`: trustgate and the learning-platform example (`examples/learning-platform`)
//! in one process, seeded through trustgate's public admin and OpenFGA APIs exactly as an
//! operator would: demo users, the store with `model.fga` and its tuples, a service account
//! with a store-scoped key for the example's PDP calls, and the example's OAuth client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};
use trustgate_core::Secret;
use trustgate_learning_platform::api::{Catalogue, PLATFORM};
use trustgate_learning_platform::{API_AUDIENCE, LearningPlatform, MODEL, Parts, Settings};
use trustgate_server::Server;

use super::{Failure, ServerArgs};
use crate::client::{Client, ClientArgs};

/// What `trustgate demo` accepts.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Listen address of the learning platform.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    app_listen: SocketAddr,
    /// Also write what was created (URLs, users, ids, the admin token) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
}

/// The demo users: name, role in the story.
const USERS: [(&str, &str); 5] = [
    ("alice", "student of Rust"),
    ("bob", "student of Rust"),
    ("carol", "instructor, owns Rust"),
    ("dave", "instructor, owns Go"),
    ("erin", "platform admin"),
];
/// Every demo user's password (printed; the demo is a local playground).
pub const DEMO_PASSWORD: &str = "learning platform demo 2026";

/// Runs the demo until ctrl-c.
pub async fn demo(args: &DemoArgs, data_dir: Option<PathBuf>) -> Result<(), Failure> {
    let data_dir = data_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "trustgate-demo-{}",
            time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        ))
    });
    let mut config = args.server.load(Some(data_dir.clone()))?;
    trustgate_server::telemetry::init_logging(config.log_format, &config.log_level);
    let admin_token = trustgate_core::secret::generate_token("tg_admin_");
    config.bootstrap_token = Some(admin_token.clone());
    let server = Server::start(config)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let addr = server
        .local_addr()
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let trustgate_url = format!("http://{addr}");
    let app_listener = tokio::net::TcpListener::bind(args.app_listen)
        .await
        .map_err(|e| Failure::Failed(format!("listen on {}: {e}", args.app_listen)))?;
    let app_addr = app_listener
        .local_addr()
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let app_url = format!("http://{app_addr}/");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut server_stop = stop_rx.clone();
    let server_task = tokio::spawn(server.run(async move {
        let _ = server_stop.wait_for(|stop| *stop).await;
    }));

    let client = Client::new(&ClientArgs {
        server: trustgate_url.clone(),
        token: Some(admin_token.expose().to_owned()),
        data_dir: None,
    })?;
    let seeded = seed(&client, &app_url).await?;
    let settings = Settings {
        trustgate_url: url::Url::parse(&format!("{trustgate_url}/"))
            .map_err(|e| Failure::Failed(e.to_string()))?,
        public_url: url::Url::parse(&app_url).map_err(|e| Failure::Failed(e.to_string()))?,
        client_id: seeded.client_id.clone(),
        client_secret: seeded.client_secret.clone(),
        api_audience: API_AUDIENCE.to_owned(),
        store_id: seeded.store_id.clone(),
        pdp_key: seeded.pdp_key.clone(),
    };
    let platform = LearningPlatform::build(
        settings,
        trustgate_learning_platform::shared(Catalogue::demo(&seeded.users)),
        Parts::default(),
    )
    .await
    .map_err(|e| Failure::Failed(format!("the learning platform: {e}")))?;
    let mut app_stop = stop_rx.clone();
    let app_task = tokio::spawn(async move {
        axum::serve(
            app_listener,
            platform
                .app
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = app_stop.wait_for(|stop| *stop).await;
        })
        .await
    });

    let summary = json!({
        "trustgate": trustgate_url,
        "app": app_url,
        "admin_token": admin_token.expose(),
        "data_dir": data_dir.display().to_string(),
        "store_id": seeded.store_id,
        "client_id": seeded.client_id,
        "client_secret": seeded.client_secret.expose(),
        "pdp_key": seeded.pdp_key.expose(),
        "password": DEMO_PASSWORD,
        "users": seeded.users,
    });
    if let Some(path) = &args.summary {
        std::fs::write(path, format!("{summary:#}\n"))
            .map_err(|e| Failure::Failed(format!("{}: {e}", path.display())))?;
    }
    print_what_to_try(&trustgate_url, &app_url, &seeded, &admin_token, &data_dir);

    trustgate_server::shutdown_signal().await;
    let _ = stop_tx.send(true);
    let _ = app_task.await;
    match server_task.await {
        Ok(result) => result.map_err(|e| Failure::Failed(e.to_string())),
        Err(e) => Err(Failure::Failed(e.to_string())),
    }
}

/// What seeding created.
#[derive(Debug)]
struct Seeded {
    users: BTreeMap<String, String>,
    store_id: String,
    client_id: String,
    client_secret: Secret,
    pdp_key: Secret,
}

fn field(value: &Value, pointer: &str) -> Result<String, Failure> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Failure::Failed(format!("the answer has no {pointer}: {value}")))
}

/// Creates the users, the store with the model and tuples, the PDP key and the OAuth client.
async fn seed(client: &Client, app_url: &str) -> Result<Seeded, Failure> {
    let mut users = BTreeMap::new();
    for (name, _) in USERS {
        let created = client
            .call(
                Method::POST,
                "/admin/v1/users",
                Some(&json!({
                    "username": name,
                    "email": format!("{name}@learning.example"),
                    "password": DEMO_PASSWORD,
                })),
            )
            .await?;
        users.insert(name.to_owned(), field(&created, "/id")?);
    }
    let id = |name: &str| users.get(name).cloned().unwrap_or_default();

    let store = client
        .call(
            Method::POST,
            "/stores",
            Some(&json!({ "name": "learning" })),
        )
        .await?;
    let store_id = field(&store, "/id")?;
    let model = trustgate_authz::dsl::parse(MODEL)
        .map_err(|e| Failure::Failed(format!("model.fga: {e}")))?;
    let model = serde_json::to_value(&model).map_err(|e| Failure::Failed(e.to_string()))?;
    client
        .call(
            Method::POST,
            &format!("/stores/{store_id}/authorization-models"),
            Some(&model),
        )
        .await?;
    let user = |name: &str| format!("user:{}", id(name));
    let mut tuples = vec![
        (user("erin"), "admin".to_owned(), PLATFORM.to_owned()),
        (
            "user:*".to_owned(),
            "member".to_owned(),
            PLATFORM.to_owned(),
        ),
        (
            PLATFORM.to_owned(),
            "platform".to_owned(),
            "course:rust".to_owned(),
        ),
        (
            PLATFORM.to_owned(),
            "platform".to_owned(),
            "course:go".to_owned(),
        ),
        (user("carol"), "owner".to_owned(), "course:rust".to_owned()),
        (user("dave"), "owner".to_owned(), "course:go".to_owned()),
    ];
    for student in ["alice", "bob"] {
        let progress = format!("progress:{}", id(student));
        tuples.push((
            user(student),
            "student".to_owned(),
            "course:rust".to_owned(),
        ));
        tuples.push((user(student), "learner".to_owned(), progress.clone()));
        tuples.push(("course:rust".to_owned(), "course".to_owned(), progress));
    }
    let keys: Vec<Value> = tuples
        .iter()
        .map(|(u, r, o)| json!({ "user": u, "relation": r, "object": o }))
        .collect();
    client
        .call(
            Method::POST,
            &format!("/stores/{store_id}/write"),
            Some(&json!({ "writes": { "tuple_keys": keys } })),
        )
        .await?;

    // The example's PDP identity: a service account that may only read this store.
    let service = client
        .call(
            Method::POST,
            "/admin/v1/service-accounts",
            Some(&json!({ "name": "learning-platform", "description": "the example's PDP calls" })),
        )
        .await?;
    let service_id = field(&service, "/id")?;
    let role = format!("store:{store_id}:reader");
    client
        .call(
            Method::POST,
            "/admin/v1/roles",
            Some(&json!({ "subject": format!("service:{service_id}"), "role": role })),
        )
        .await?;
    let key = client
        .call(
            Method::POST,
            &format!("/admin/v1/service-accounts/{service_id}/api-keys"),
            Some(&json!({ "scopes": [role], "description": "learning platform PDP" })),
        )
        .await?;

    let registered = client
        .call(
            Method::POST,
            "/admin/v1/clients",
            Some(&json!({
                "name": "Learning platform",
                "auth_method": "client_secret_basic",
                "redirect_uris": [format!("{app_url}callback")],
                "post_logout_redirect_uris": [app_url],
                "grant_types": ["authorization_code"],
                "scopes": ["openid", "profile", "email", trustgate_learning_platform::api::SCOPE],
                "skip_consent": true,
                "audience": [API_AUDIENCE],
                "resource_audiences": [API_AUDIENCE],
            })),
        )
        .await?;
    Ok(Seeded {
        store_id,
        client_id: field(&registered, "/client_id")?,
        client_secret: Secret::new(field(&registered, "/client_secret")?),
        pdp_key: Secret::new(field(&key, "/key")?),
        users,
    })
}

fn print_what_to_try(
    trustgate_url: &str,
    app_url: &str,
    seeded: &Seeded,
    admin_token: &Secret,
    data_dir: &std::path::Path,
) {
    let id = |name: &str| seeded.users.get(name).cloned().unwrap_or_default();
    println!(
        "trustgate            {trustgate_url}   (admin token: {})",
        admin_token.expose()
    );
    println!("learning platform    {app_url}");
    println!(
        "data                 {} (SQLite; delete it when done)",
        data_dir.display()
    );
    println!();
    println!("users (password \"{DEMO_PASSWORD}\"):");
    for (name, role) in USERS {
        println!("  {name:<6} {role:<24} user:{}", id(name));
    }
    println!();
    println!("try, in a browser at {app_url}:");
    println!(
        "  sign in as alice: \"My progress\" is allowed; {app_url}progress/{} (bob's) is denied (403)",
        id("bob")
    );
    println!("  sign in as carol: edit course Rust (allowed, she owns it), then Go (denied)");
    println!(
        "  sign in as erin without an authenticator app: changing the settings asks for a second"
    );
    println!("    factor (401 insufficient_user_authentication, RFC 9470); set one up at");
    println!("    {trustgate_url}/account, sign in again and the change is allowed for 10 minutes");
    println!("every decision is logged by the example (target trustgate_pep); ctrl-c stops both");
}
