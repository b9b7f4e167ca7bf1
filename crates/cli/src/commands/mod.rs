//! Command-line surface: one subcommand per task, each a thin call into the server crate or
//! the management API.

mod audit;
mod clients;
mod demo;
mod fga;
mod keys;
mod services;
mod storefile;
mod user;
mod webhooks;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use reqwest::Method;
use trustgate_server::{Config, Overrides, Server, bootstrap::Bootstrap};

use crate::client::{Client, ClientArgs, print_json};

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad usage or configuration (exit 2).
    Usage(String),
    /// The command ran and failed (exit 1).
    Failed(String),
}

/// trustgate: authentication, authorization and trust transport in one binary.
#[derive(Debug, Parser)]
#[command(name = "trustgate", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the server (embedded SQLite under ./trustgate-data unless --database-url is given).
    Serve(ServerArgs),
    /// Start trustgate and the learning-platform example with demo users, and print what to try.
    Demo(demo::DemoArgs),
    /// Apply pending database migrations and exit.
    Migrate(ServerArgs),
    /// Back up the embedded database while the server runs: a checked snapshot (and the
    /// secrets key file) into a new directory. PostgreSQL: use pg_dump.
    Backup {
        /// The directory to create (or an empty one).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Restore a backup made by `trustgate backup` (the server must be stopped); what it
    /// replaces is moved to DATA_DIR/before-restore-TIME/.
    Restore {
        /// The backup directory.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run the enforcing reverse proxy in front of upstream applications (SIGHUP reloads the
    /// configuration; SIGTERM/ctrl-c drain in-flight requests).
    Gateway(GatewayArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show who the API key authenticates as, its scopes and roles (checks --server and the key).
    Whoami,
    /// Relationship stores: create, list, get, delete, import and test `fga` store files.
    #[command(subcommand)]
    Store(fga::StoreCommand),
    /// Authorization models: write, get, list, transform (DSL <-> JSON).
    #[command(subcommand)]
    Model(fga::ModelCommand),
    /// Relationship tuples: write, delete, read.
    #[command(subcommand)]
    Tuple(fga::TupleCommand),
    /// Stored attributes of objects (read by AuthZEN conditions): set, get, delete.
    #[command(subcommand)]
    Attributes(fga::AttributesCommand),
    /// Check whether USER has RELATION to OBJECT.
    Check(fga::CheckArgs),
    /// List the objects of a type USER has RELATION to.
    ListObjects(fga::ListObjectsArgs),
    /// List the users that have RELATION to OBJECT.
    ListUsers(fga::ListUsersArgs),
    /// Human accounts: create, list, get, disable, enable, delete, set-password, sessions.
    #[command(subcommand)]
    User(user::UserCommand),
    /// The audit trail: list, tail, export, verify (the hash chains and their signed anchors).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Registered OAuth clients: create, list, get, update, delete, rotate-secret.
    #[command(subcommand)]
    Client(Box<clients::ClientCommand>),
    /// Signing keys of tokens: list, rotate.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Service accounts: create, list, get, disable, enable, delete.
    #[command(subcommand)]
    Service(services::ServiceCommand),
    /// API keys of service accounts: create (shown once), list, get, revoke, rotate.
    #[command(subcommand)]
    Apikey(services::ApiKeyCommand),
    /// Roles on trustgate and on stores: grant, revoke, list.
    #[command(subcommand)]
    Role(services::RoleCommand),
    /// Webhooks: subscribe URLs to audit events (create, list, get, rotate, delete) and the
    /// dead-letter list of deliveries (dead, redeliver).
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Print the version.
    Version,
    /// Print a shell completion script to standard output (e.g. `trustgate completions bash >
    /// /etc/bash_completion.d/trustgate`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (trustgate.1 and one per command, trustgate-serve.1, ...) into DIR.
    Manpages {
        /// The directory to write them to (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults < file < TRUSTGATE_* env < flags), secrets redacted.
    Show(ServerArgs),
}

/// Where the server's configuration comes from.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address [env: TRUSTGATE_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// sqlite://PATH or postgres://... [env: TRUSTGATE_DATABASE_URL] [default: SQLite in the data dir].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Log format: auto (coloured only on a terminal), pretty (always coloured) or json
    /// [env: TRUSTGATE_LOG_FORMAT] [default: auto].
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// PEM certificate chain: the listener speaks HTTPS (HTTP/2 and HTTP/1.1); reloaded on
    /// SIGHUP and when the file changes [env: TRUSTGATE_TLS__CERT_FILE].
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert [env: TRUSTGATE_TLS__KEY_FILE].
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A second listener, on ADDR, that requires client certificates chaining to
    /// `mtls.ca_files` (mutual TLS, with the --tls-cert certificate)
    /// [env: TRUSTGATE_MTLS__LISTEN].
    #[arg(long, value_name = "ADDR")]
    mtls_listen: Option<String>,
}

impl ServerArgs {
    fn load(&self, data_dir: Option<PathBuf>) -> Result<Config, Failure> {
        let overrides = Overrides {
            listen: self.listen.clone(),
            data_dir,
            database_url: self.database_url.clone(),
            log_format: self.log_format.clone(),
            tls: trustgate_server::config::TlsOverrides {
                cert_file: self.tls_cert.clone(),
                key_file: self.tls_key.clone(),
            },
            mtls: trustgate_server::config::MtlsOverrides {
                listen: self.mtls_listen.clone(),
            },
        };
        Config::load(self.config.as_deref(), &overrides).map_err(|e| Failure::Usage(e.to_string()))
    }
}

/// The gateway's command line.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// The gateway's TOML configuration (see trustgate_gateway::config).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Log format: auto (coloured only on a terminal), pretty (always coloured) or json.
    #[arg(long, value_name = "FORMAT", default_value = "auto")]
    log_format: String,
    /// Log filter (tracing env-filter syntax).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log_level: String,
}

async fn gateway(args: GatewayArgs) -> Result<(), Failure> {
    let format: trustgate_server::LogFormat = args
        .log_format
        .parse()
        .map_err(|e| Failure::Usage(format!("--log-format: {e}")))?;
    trustgate_server::telemetry::init_logging(format, &args.log_level);
    trustgate_gateway::run(
        args.config,
        std::sync::Arc::new(trustgate_pep::TracingSink),
        trustgate_server::shutdown_signal(),
    )
    .await
    .map_err(|e| match e {
        trustgate_gateway::GatewayError::Config(e) => Failure::Usage(e.to_string()),
        e => Failure::Failed(e.to_string()),
    })
}

/// PostgreSQL and unusable directories are usage errors (exit 2); the rest failed (exit 1).
fn backup_failure(e: trustgate_server::backup::BackupError) -> Failure {
    use trustgate_server::backup::BackupError;
    match e {
        BackupError::Postgres | BackupError::Directory(_) => Failure::Usage(e.to_string()),
        BackupError::Store(_) => Failure::Failed(e.to_string()),
    }
}

/// Writes the man pages of every command into `dir`.
fn manpages(dir: &std::path::Path) -> Result<(), Failure> {
    let failed = |e: std::io::Error| Failure::Failed(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(failed)?;
    let command = <Cli as clap::CommandFactory>::command();
    clap_mangen::generate_to(command, dir).map_err(failed)?;
    println!("man pages written to {}", dir.display());
    Ok(())
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve(args) => serve(&args, cli.client.data_dir.clone()).await,
        Command::Gateway(args) => gateway(args).await,
        Command::Demo(args) => demo::demo(&args, cli.client.data_dir.clone()).await,
        Command::Migrate(args) => {
            let config = args.load(cli.client.data_dir.clone())?;
            let report = trustgate_server::migrate(&config)
                .await
                .map_err(|e| Failure::Failed(e.to_string()))?;
            println!(
                "database {}: migration version {} -> {}",
                config.shown_database_url(),
                report.before,
                report.after
            );
            Ok(())
        }
        Command::Backup { to, server } => {
            let config = server.load(cli.client.data_dir.clone())?;
            let summary = trustgate_server::backup::backup(&config, &to)
                .await
                .map_err(backup_failure)?;
            print_json(&serde_json::json!(summary));
            Ok(())
        }
        Command::Restore { from, server } => {
            let config = server.load(cli.client.data_dir.clone())?;
            let summary = trustgate_server::backup::restore(&config, &from)
                .await
                .map_err(backup_failure)?;
            print_json(&serde_json::json!(summary));
            Ok(())
        }
        Command::Config(ConfigCommand::Show(args)) => {
            print!(
                "{}",
                args.load(cli.client.data_dir.clone())?.to_redacted_toml()
            );
            Ok(())
        }
        Command::Store(c) => fga::store(c, &cli.client).await,
        Command::Model(c) => fga::model(c, &cli.client).await,
        Command::Tuple(c) => fga::tuple(c, &cli.client).await,
        Command::Attributes(c) => fga::attributes(c, &cli.client).await,
        Command::Check(a) => fga::check(a, &cli.client).await,
        Command::ListObjects(a) => fga::list_objects(a, &cli.client).await,
        Command::ListUsers(a) => fga::list_users(a, &cli.client).await,
        Command::User(c) => user::user(c, &cli.client).await,
        Command::Audit(c) => audit::run(c, &cli.client).await,
        Command::Client(c) => clients::client(*c, &cli.client).await,
        Command::Keys(c) => keys::keys(c, &cli.client).await,
        Command::Service(c) => services::service(c, &cli.client).await,
        Command::Apikey(c) => services::apikey(c, &cli.client).await,
        Command::Role(c) => services::role(c, &cli.client).await,
        Command::Webhooks(c) => webhooks::webhooks(c, &cli.client).await,
        Command::Whoami => {
            let client = Client::new(&cli.client)?;
            print_json(&client.call(Method::GET, "/admin/v1/whoami", None).await?);
            Ok(())
        }
        Command::Version => {
            println!("trustgate {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "trustgate", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpages { dir } => manpages(&dir),
    }
}

async fn serve(args: &ServerArgs, data_dir: Option<PathBuf>) -> Result<(), Failure> {
    let config = args.load(data_dir)?;
    // The trace exporter's HTTP client blocks: made, and later flushed, off the async workers.
    let (format, level, traces) = (
        config.log_format,
        config.log_level.clone(),
        config.telemetry.clone(),
    );
    let telemetry = tokio::task::spawn_blocking(move || {
        trustgate_server::telemetry::init(format, &level, &traces)
    })
    .await
    .map_err(|e| Failure::Failed(e.to_string()))?
    .map_err(Failure::Usage)?;
    let served = serve_until_signal(config).await;
    let _ = tokio::task::spawn_blocking(move || drop(telemetry)).await;
    served
}

async fn serve_until_signal(config: Config) -> Result<(), Failure> {
    let database = config.shown_database_url();
    let data_dir = config.data_dir.clone();
    let server = Server::start(config)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let addr = server
        .local_addr()
        .map_err(|e| Failure::Failed(e.to_string()))?;
    if let Bootstrap::Generated { path, token } = server.bootstrap() {
        println!(
            "bootstrap admin token (shown once, also written to {}): {}",
            path.display(),
            token.expose()
        );
    }
    let scheme = if server.state().config.tls.enabled() {
        "https"
    } else {
        "http"
    };
    println!(
        "trustgate listening on {scheme}://{addr} (database {database}, data dir {})",
        data_dir.display()
    );
    server
        .run(trustgate_server::shutdown_signal())
        .await
        .map_err(|e| Failure::Failed(e.to_string()))
}
