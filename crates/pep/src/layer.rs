//! The tower [`Layer`]: route → authenticate → scopes → step-up → PDP → the service, with
//! every outcome sent to the [`DecisionSink`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use http::request::Parts;
use http::{Request, Response};
use tower::{Layer, Service};
use trustgate_core::{Clock, SystemClock};

use crate::answer;
use crate::authenticate::{AuthError, Authenticator};
use crate::pdp::{CheckQuery, DecisionPoint};
use crate::principal::{AuthMethod, Principal};
use crate::routes::{RouteTable, StepUp};
use crate::sink::{Decision, DecisionRecord, DecisionSink, Reason, TracingSink};

/// The longest `X-Request-ID` taken into a record (the server's own limit).
const MAX_REQUEST_ID: usize = 128;

/// Everything the layer needs; build with [`Pep::builder`].
#[derive(Debug)]
pub struct Pep {
    realm: String,
    routes: RouteTable,
    authenticator: Authenticator,
    pdp: Arc<dyn DecisionPoint>,
    sink: Arc<dyn DecisionSink>,
    clock: Arc<dyn Clock>,
    admission: Option<Arc<dyn Admission>>,
}

/// The record of one decision, written to the sink when dropped (see
/// [`Pep::decide_pending`]).
#[must_use = "the record is written when this is dropped"]
pub struct PendingRecord<'a> {
    sink: &'a dyn DecisionSink,
    record: Option<DecisionRecord>,
}

impl std::fmt::Debug for PendingRecord<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRecord")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl PendingRecord<'_> {
    /// Records `reason` instead of the decision's own (an allowed request that is refused
    /// after all), with the decision it implies.
    pub fn overrule(mut self, reason: Reason) {
        if let Some(record) = &mut self.record {
            record.decision = decision_of(&reason);
            record.reason = reason;
        }
    }
}

impl Drop for PendingRecord<'_> {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            self.sink.record(&record);
        }
    }
}

/// Admits an authenticated principal before its request costs a decision: a rate limiter
/// (the gateway's, keyed by principal). Runs after authentication, before scopes, step-up and
/// the PDP; a refusal is recorded like every other outcome.
pub trait Admission: std::fmt::Debug + Send + Sync {
    /// `Ok` to go on, or the refusal (typically [`Reason::RateLimited`]).
    fn admit(&self, principal: &Principal) -> Result<(), Reason>;
}

/// Builds a [`Pep`].
#[derive(Debug)]
pub struct PepBuilder {
    realm: String,
    routes: RouteTable,
    authenticator: Authenticator,
    pdp: Arc<dyn DecisionPoint>,
    sink: Arc<dyn DecisionSink>,
    clock: Arc<dyn Clock>,
    admission: Option<Arc<dyn Admission>>,
}

impl Pep {
    /// A builder: the realm of the challenges, the routes, the credential kinds accepted and
    /// the PDP are required; the sink defaults to [`TracingSink`], the clock to the system's.
    pub fn builder(
        realm: &str,
        routes: RouteTable,
        authenticator: Authenticator,
        pdp: Arc<dyn DecisionPoint>,
    ) -> PepBuilder {
        PepBuilder {
            realm: realm.to_owned(),
            routes,
            authenticator,
            pdp,
            sink: Arc::new(TracingSink),
            clock: Arc::new(SystemClock),
            admission: None,
        }
    }

    /// Decides a request: `Ok(principal)` (none on a public route) or the refusal. Every
    /// outcome is recorded.
    pub async fn decide(&self, request: &Parts) -> Result<Option<Principal>, Reason> {
        let (outcome, _recorded_on_drop) = self.decide_pending(request).await;
        outcome
    }

    /// Decides a request like [`decide`](Self::decide), but its record is written when the
    /// returned [`PendingRecord`] is dropped, so that a caller which still can refuse an
    /// allowed request (the gateway, when the token exchange refuses the caller's credential)
    /// records the outcome the client actually gets ([`PendingRecord::overrule`]).
    pub async fn decide_pending(
        &self,
        request: &Parts,
    ) -> (Result<Option<Principal>, Reason>, PendingRecord<'_>) {
        let method = &request.method;
        let path = request.uri.path();
        let request_id = request
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID);
        let ip = request
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        let matched = self.routes.find(method, path);
        let (action, resource) = matched
            .as_ref()
            .filter(|m| !m.rule.is_public())
            .map(|m| (m.rule.action().to_owned(), m.resource.clone()))
            .unwrap_or_default();
        let mut principal = None;
        let outcome = self
            .evaluate(
                request,
                matched.as_ref(),
                &mut principal,
                request_id,
                ip.as_deref(),
            )
            .await;
        let (decision, reason) = match &outcome {
            Ok(reason) => (Decision::Allow, reason.clone()),
            Err(reason) => (decision_of(reason), reason.clone()),
        };
        let record = DecisionRecord {
            principal: principal.clone(),
            method: method.to_string(),
            path: path.to_owned(),
            action,
            resource,
            decision,
            reason,
            request_id: request_id.map(str::to_owned),
            ip,
        };
        (
            outcome.map(|_| principal),
            PendingRecord {
                sink: self.sink.as_ref(),
                record: Some(record),
            },
        )
    }

    async fn evaluate(
        &self,
        request: &Parts,
        matched: Option<&crate::routes::Matched<'_>>,
        principal_out: &mut Option<Principal>,
        request_id: Option<&str>,
        ip: Option<&str>,
    ) -> Result<Reason, Reason> {
        // Deny by default, before any credential is looked at: an unknown path costs nothing.
        let Some(matched) = matched else {
            return Err(Reason::NoRule);
        };
        if matched.rule.is_public() {
            return Ok(Reason::PublicRoute);
        }
        let principal = match self.authenticator.authenticate(request).await {
            Ok(Some(principal)) => principal,
            Ok(None) => return Err(Reason::MissingCredential),
            Err(AuthError::Invalid(why)) => return Err(Reason::InvalidToken { why }),
            Err(AuthError::InvalidProof(why)) => return Err(Reason::InvalidDpopProof { why }),
            Err(AuthError::Unavailable(why)) => {
                return Err(Reason::AuthenticationUnavailable { why });
            }
        };
        *principal_out = Some(principal.clone());
        if let Some(admission) = &self.admission {
            admission.admit(&principal)?;
        }
        let rule = matched.rule;
        // Scopes limit what a delegated credential may do; a session is the user in person.
        if principal.method != AuthMethod::Session && !principal.has_scopes(rule.required_scopes())
        {
            return Err(Reason::MissingScope {
                required: rule.required_scopes().to_vec(),
            });
        }
        if let Some(step_up) = rule.required_step_up() {
            self.check_step_up(&principal, step_up)?;
        }
        let subject = principal.subject();
        let query = CheckQuery {
            subject: &subject,
            relation: rule.action(),
            object: &matched.resource,
            request_id,
            ip,
            consistency_token: request
                .headers
                .get(crate::pdp::CONSISTENCY_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty()),
            model_id: None,
        };
        match self.pdp.check(&query).await {
            Ok(true) => Ok(Reason::Allowed),
            Ok(false) => Err(Reason::PdpDeny),
            Err(e) => Err(Reason::PdpUnavailable { why: e.0 }),
        }
    }

    /// RFC 9470: the authentication must be recent enough (`auth_time` within `max_age`; a
    /// credential without `auth_time` is not) and, when the rule names `amr` or `acr_values`,
    /// strong enough (every required `amr`, or an `acr` among the rule's `acr_values`).
    fn check_step_up(&self, principal: &Principal, step_up: &StepUp) -> Result<(), Reason> {
        let now = self.clock.now().unix_timestamp();
        let too_old = step_up.max_age.is_some_and(|max_age| {
            principal.auth_time.is_none_or(|at| {
                now.saturating_sub(at) > i64::try_from(max_age).unwrap_or(i64::MAX)
            })
        });
        let weak = !is_strong_enough(principal, step_up);
        if too_old || weak {
            return Err(Reason::StepUp {
                max_age: step_up.max_age.filter(|_| too_old),
                acr_values: if weak {
                    step_up.acr_values.clone()
                } else {
                    Vec::new()
                },
            });
        }
        Ok(())
    }

    /// The routes.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The realm of the challenges.
    pub fn realm(&self) -> &str {
        &self.realm
    }
}

/// Whether the authentication is as strong as the rule asks: no strength asked (neither `amr`
/// nor `acr_values`), every required `amr` present, or an `acr` among the `acr_values`. An
/// empty `amr` list satisfies nothing by itself: a rule with only `acr_values` needs the `acr`.
fn is_strong_enough(principal: &Principal, step_up: &StepUp) -> bool {
    if step_up.amr.is_empty() && step_up.acr_values.is_empty() {
        return true;
    }
    let methods = !step_up.amr.is_empty() && step_up.amr.iter().all(|m| principal.amr.contains(m));
    let class = principal
        .acr
        .as_ref()
        .is_some_and(|acr| step_up.acr_values.contains(acr));
    methods || class
}

fn decision_of(reason: &Reason) -> Decision {
    match reason {
        Reason::Allowed | Reason::PublicRoute => Decision::Allow,
        Reason::MissingCredential
        | Reason::InvalidToken { .. }
        | Reason::InvalidDpopProof { .. }
        | Reason::StepUp { .. } => Decision::Unauthenticated,
        Reason::NoRule
        | Reason::MissingScope { .. }
        | Reason::PdpDeny
        | Reason::RateLimited { .. } => Decision::Deny,
        Reason::PdpUnavailable { .. } | Reason::AuthenticationUnavailable { .. } => {
            Decision::Unavailable
        }
    }
}

impl PepBuilder {
    /// Where outcomes go (default: [`TracingSink`]).
    pub fn sink(mut self, sink: Arc<dyn DecisionSink>) -> Self {
        self.sink = sink;
        self
    }

    /// Where time comes from for step-up (default: the system clock). Give the verifier and
    /// the introspection client the same clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Admits authenticated principals before they cost a decision (default: all).
    pub fn admission(mut self, admission: Arc<dyn Admission>) -> Self {
        self.admission = Some(admission);
        self
    }

    /// The enforcement point alone, for a service that is not a tower stack (the gateway).
    pub fn build_pep(self) -> Pep {
        Pep {
            realm: self.realm,
            routes: self.routes,
            authenticator: self.authenticator,
            pdp: self.pdp,
            sink: self.sink,
            clock: self.clock,
            admission: self.admission,
        }
    }

    /// The layer.
    pub fn build(self) -> PepLayer {
        PepLayer {
            pep: Arc::new(self.build_pep()),
        }
    }
}

/// The tower layer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PepLayer {
    pep: Arc<Pep>,
}

impl PepLayer {
    /// The enforcement point behind the layer.
    pub fn pep(&self) -> &Arc<Pep> {
        &self.pep
    }
}

impl<S> Layer<S> for PepLayer {
    type Service = PepService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PepService {
            inner,
            pep: self.pep.clone(),
        }
    }
}

/// The service the layer wraps around another.
#[derive(Debug, Clone)]
pub struct PepService<S> {
    inner: S,
    pep: Arc<Pep>,
}

impl<S, B, ResBody> Service<Request<B>> for PepService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let pep = self.pep.clone();
        // Decided on the head only: the body is moved along, never borrowed across an await
        // (axum's body is `Send` but not `Sync`).
        let (mut parts, body) = request.into_parts();
        Box::pin(async move {
            match pep.decide(&parts).await {
                Ok(principal) => {
                    if let Some(principal) = principal {
                        parts.extensions.insert(principal);
                    }
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(reason) => {
                    let request_id = parts
                        .headers
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID);
                    Ok(answer::render(&pep.realm, &reason, request_id))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::PrincipalKind;

    fn principal(amr: &[&str], acr: Option<&str>) -> Principal {
        Principal {
            id: "u1".into(),
            kind: PrincipalKind::User,
            tenant: None,
            scopes: Vec::new(),
            amr: amr.iter().map(|m| (*m).to_owned()).collect(),
            auth_time: Some(0),
            acr: acr.map(str::to_owned),
            client_id: None,
            act: None,
            key_id: None,
            cnf: None,
            method: AuthMethod::Jwt,
        }
    }

    fn step_up(amr: &[&str], acr_values: &[&str]) -> StepUp {
        StepUp {
            max_age: None,
            amr: amr.iter().map(|m| (*m).to_owned()).collect(),
            acr_values: acr_values.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn strength_is_required_whenever_the_rule_names_amr_or_acr_values() {
        let one_factor = principal(&["pwd"], Some("1"));
        let two_factors = principal(&["pwd", "otp", "mfa"], Some("2"));
        let cases = [
            // (rule amr, rule acr_values, principal, strong enough)
            (&[][..], &[][..], &one_factor, true),
            (&[], &["2"], &one_factor, false),
            (&[], &["2"], &two_factors, true),
            (&["mfa"], &["2"], &one_factor, false),
            (&["mfa"], &["2"], &two_factors, true),
            (&["mfa"], &["2"], &principal(&["pwd", "mfa"], None), true),
            (&["mfa"], &["2"], &principal(&["pwd"], Some("2")), true),
            (&[], &["2"], &principal(&["pwd", "mfa"], None), false),
        ];
        for (amr, acr_values, who, expected) in cases {
            assert_eq!(
                is_strong_enough(who, &step_up(amr, acr_values)),
                expected,
                "amr {amr:?} acr_values {acr_values:?} principal {:?} {:?}",
                who.amr,
                who.acr
            );
        }
    }
}
