//! `trustgate-pep`: a policy enforcement point as a tower [`Layer`](tower::Layer) that any
//! axum or hyper service puts in front of its handlers. It closes trustgate's chain —
//! credential → principal → decision → handler → audit — inside the protected service:
//!
//! ```text
//! request ─► RouteTable::find(method, path)        no rule ─► 403 (deny by default)
//!            │ public rule ─► the service, no principal
//!            ▼
//!          Authenticator (first credential found decides; present but invalid ─► 401)
//!            1. Authorization: Bearer <JWT>  ─► JwtVerifier: tokens::verify against the issuer's
//!               JWKS (cached; unknown kid ─► one refetch per interval), iss exact, aud = this
//!               service, typ at+jwt, exp/nbf with the configured skew only (default none)
//!               Authorization: Bearer <opaque> ─► Introspector (RFC 7662, short positive cache)
//!               Authorization: DPoP <token> + DPoP proof ─► DpopVerifier (RFC 9449 §7: htm,
//!               htu = origin + path, iat, ath, jti once) then the token as above
//!               every token: its cnf binding must hold for how it came (check_binding)
//!            2. X-API-Key: <key>             ─► Introspector
//!            3. session cookie               ─► SessionResolver
//!            none ─► 401 `Bearer realm=…` (no error code)   issuer down ─► 503
//!            ▼
//!          Admission, if any (the gateway's rate limiter)    ─► else 429 + Retry-After
//!          required scopes ⊆ granted (not for sessions) ─► else 403 insufficient_scope
//!          step-up (auth_time within max_age; amr or acr)  ─► else 401
//!                                                 insufficient_user_authentication (RFC 9470)
//!          DecisionPoint::check(subject, action, resource) ─► false 403, error 503, never allow
//!            (a DecisionCache answers from the current store revision when it can)
//!            ▼
//!          the service, with the Principal in the request's extensions (the extractor)
//! every outcome ─► DecisionSink (principal, action, resource, decision, reason, request id, IP)
//! ```
//!
//! # Modules, one job each
//! - [`principal`]: the [`Principal`] (id, kind, tenant, scopes, amr, auth_time, acr,
//!   client_id, the RFC 8693 `act` chain, how it was authenticated) and its axum extractor.
//! - [`routes`]: the [`RouteTable`] — method + path template (`/courses/{id}/progress`) →
//!   action, resource template (`course:{id}`), scopes, step-up ([`StepUp`]), or public.
//!   Parameters that are not plainly ids (`:`, `#`, `*`, percent-encoded bytes) match nothing,
//!   so a path can never name another object or a userset.
//! - [`authenticate`]: the order of credentials ([`Authenticator`]) and the
//!   [`SessionResolver`] trait.
//! - [`jwks`]: the remote JWKS and local JWT verification ([`JwtVerifier`]).
//! - [`dpop`]: DPoP proofs at a resource server ([`DpopVerifier`]) with a per-process `jti`
//!   ledger.
//! - [`introspection`]: RFC 7662 for opaque tokens and API keys ([`Introspector`]), with the
//!   revocation bound documented there: a revoked token or key is refused at most
//!   [`IntrospectionConfig::ttl`] (≤ 30 s, default 5 s) after trustgate stops answering
//!   `active`.
//! - [`pdp`]: the [`DecisionPoint`] trait and [`HttpDecisionPoint`] over trustgate's
//!   `POST /stores/{id}/check`, and the store's revision feed over `GET /stores/{id}/watch`
//!   ([`HttpDecisionPoint::follow_revisions`]).
//! - [`decision_cache`]: [`DecisionCache`], a [`DecisionPoint`] that reuses answers while the
//!   store's revision stays the same: a tuple change or a new model drops them all, nothing is
//!   cached while the feed is down, and a request with `X-Consistency-Token` always asks.
//! - [`answer`]: statuses, `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9470 §3) and the
//!   JSON bodies with their stable `code`.
//! - [`sink`]: the [`DecisionSink`] trait, its [`DecisionRecord`] and [`Reason`]s, the
//!   [`TracingSink`] and the bounded in-memory [`MemorySink`].
//! - [`layer`]: [`Pep`], [`PepLayer`] and [`PepService`], and the [`Admission`] hook that
//!   refuses an authenticated principal before it costs a decision (a rate limiter).
//! - [`http_util`]: bounded reads of remote answers, shared with the gateway.
//! - [`webhooks`]: the Standard Webhooks signature scheme and its [`webhooks::Verifier`], for
//!   services that receive trustgate's audit events as signed webhooks.
//!
//! The in-process adapters for a service embedded in trustgate itself — a `DecisionPoint`
//! over `pdp::Pdp`, a `SessionResolver` over `authn::accounts::Accounts`, a `DecisionSink`
//! writing trustgate's audit trail — live in `trustgate-server` (`server::pep`), so this crate
//! depends only on `tokens` (the one verification policy, JWK parsing) and `core`.
//!
//! # Revocation bounds
//! - Decisions (with a [`DecisionCache`]): never past a tuple change or a new model as the PDP
//!   replica the feed watches has applied it; the feed delivers each change as one event.
//! - JWT access tokens are verified locally: a revoked JWT is honoured until its `exp`
//!   (trustgate's access tokens live minutes). Protect routes where that matters with
//!   introspected credentials, or keep access tokens short.
//! - Opaque tokens and API keys: at most the introspection TTL; with
//!   [`Introspector::follow_revocations`] on a live feed, within trustgate's credential-epoch
//!   poll (250 ms by default) plus one event. The same holds for `jwt_liveness`.
//! - Sessions: the resolver decides (the in-process one asks the store on every request).
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use http::Method;
//! use trustgate_pep::*;
//!
//! # fn build(http: reqwest::Client, pdp: Arc<dyn DecisionPoint>) -> Result<(), Box<dyn std::error::Error>> {
//! let clock: Arc<dyn trustgate_core::Clock> = Arc::new(trustgate_core::SystemClock);
//! let jwt = JwtConfig::for_trustgate("https://id.example.com", "https://learn.example.com")?;
//! let authenticator = Authenticator {
//!     jwt: Some(JwtVerifier::new(jwt, http.clone(), clock.clone())),
//!     ..Authenticator::default()
//! };
//! let routes = RouteTable::new([
//!     Rule::new(Method::GET, "/courses/{id}/progress", "viewer", "course:{id}")
//!         .scopes(["progress:read"]),
//!     Rule::public(Method::GET, "/healthz"),
//! ])?;
//! let layer = Pep::builder("learning", routes, authenticator, pdp).clock(clock).build();
//! let app: Router = Router::new()
//!     .route("/courses/{id}/progress", get(|p: Principal| async move { p.id }))
//!     .layer(layer);
//! # Ok(()) }
//! ```

pub mod answer;
pub mod authenticate;
pub mod decision_cache;
pub mod dpop;
pub mod http_util;
pub mod introspection;
pub mod jwks;
pub mod layer;
pub mod pdp;
pub mod principal;
pub mod routes;
pub mod sink;
pub mod webhooks;

pub use authenticate::{
    AuthError, Authenticator, PresentedCertificate, SessionCookie, SessionResolver,
};
pub use decision_cache::{
    DecisionCache, DecisionCacheConfig, LiveRevision, Revision, RevisionFeed,
};
pub use dpop::{DpopConfig, DpopVerifier};
pub use introspection::{IntrospectionConfig, Introspector};
pub use jwks::{IdTokenClaims, JwtConfig, JwtVerifier};
pub use layer::{Admission, PendingRecord, Pep, PepBuilder, PepLayer, PepService};
pub use pdp::{CheckQuery, DecisionPoint, HttpDecisionPoint, Unavailable};
pub use principal::{AuthMethod, MissingPrincipal, Principal, PrincipalKind};
pub use routes::{Matched, RouteError, RouteTable, Rule, StepUp};
pub use sink::{Decision, DecisionRecord, DecisionSink, MemorySink, Reason, TracingSink};
