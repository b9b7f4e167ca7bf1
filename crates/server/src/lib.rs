//! trustgate's HTTP server: the axum routers of every surface, their layers, configuration and
//! the server's life cycle. It wires the lower crates together and holds no domain logic of its
//! own: authentication lives in `trustgate-authn`, policy in `trustgate-authz` and the PDP
//! service `trustgate-pdp`, SQL in `trustgate-store`.
//!
//! - [`config`]: layered configuration (defaults, TOML file, `TRUSTGATE_*` env, flags).
//! - [`serve`]: start (data dir, database, migrations, bootstrap admin, bind), run, drain.
//! - [`listener`]: the HTTP/1.1 accept loop: global and per-address connection caps, header-read
//!   and idle timeouts, `ConnectInfo`, graceful shutdown that always completes.
//! - [`app`]: shared state and the router with its layers (request id, error shape, metrics,
//!   timeout, body limit).
//! - [`error`]: the JSON error shape of trustgate's own APIs.
//! - [`client_context`]: the client IP, user agent and request id recorded by audit and sessions.
//! - [`auth`]: extractors that authenticate callers of the machine APIs (API keys) and
//!   authorize them by trustgate's own PDP over the system model.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`admin`]: the admin JSON API under `/admin/v1`.
//! - [`admin_users`]: its users, sessions and audit part (`/admin/v1/users`, `/admin/v1/audit`).
//! - [`admin_clients`]: its registered OAuth clients part (`/admin/v1/clients`).
//! - [`admin_keys`]: its signing-key part (`/admin/v1/keys`).
//! - [`admin_services`]: service accounts, API keys and roles (`/admin/v1/service-accounts`,
//!   `/admin/v1/api-keys`, `/admin/v1/roles`).
//! - [`admin_webhooks`]: webhook subscriptions and the dead-letter list (`/admin/v1/webhooks`),
//!   over `trustgate-webhooks`.
//! - [`fga`]: the OpenFGA-compatible relationship PDP API under `/stores` (stores, models,
//!   tuples, check, batch-check, expand, list-objects, list-users) with OpenFGA's JSON and error
//!   bodies: thin adapters over the PDP service (`trustgate-pdp`), which owns the in-memory
//!   tuple indexes, their freshness and the consistency tokens for read-your-writes.
//! - [`authzen`]: the AuthZEN 1.0 Authorization API (`/access/v1/evaluation(s)`,
//!   `/access/v1/search/*`, `/.well-known/authzen-configuration`), another thin adapter over the
//!   PDP service; the store is named by `X-Trustgate-Store` or by a `/stores/{id}` prefix.
//! - [`pages`]: server-rendered pages for people (login, second factor, account).
//! - [`pep`]: the in-process adapters of the `trustgate-pep` layer (PDP, sessions, audit) for
//!   a service embedded with trustgate.
//!
//! Invariant: handlers never build error bodies by hand; they return [`error::ApiError`] (or the
//! OpenFGA error type on `/stores` routes) and the layers render them.

pub mod admin;
pub mod admin_audit;
pub mod admin_clients;
pub mod admin_keys;
pub mod admin_services;
pub mod admin_users;
pub mod admin_webhooks;
pub mod app;
pub mod auth;
pub mod authzen;
pub mod backup;
pub mod bootstrap;
pub mod client_context;
pub mod config;
pub mod error;
pub mod fga;
pub use trustgate_listener as listener;
pub mod oauth;
pub mod ops;
pub mod pages;
pub mod pep;
pub mod request_id;
pub mod serve;
pub mod telemetry;

pub use app::{AppState, router};
pub use config::{Config, ConfigError, LogFormat, Overrides};
pub use serve::{Server, StartError, migrate, shutdown_signal};
