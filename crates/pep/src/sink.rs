//! Where every outcome goes: the [`DecisionSink`] trait, its record, and the `tracing`
//! implementation. (The in-process sink that writes trustgate's audit trail lives in
//! `trustgate-server`.)

use std::fmt;

use serde::Serialize;

use crate::principal::Principal;

/// What the layer answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Passed to the service.
    Allow,
    /// 401: no or an invalid credential.
    Unauthenticated,
    /// 403: a known principal (or a route without a rule) was refused; 429: it is over its
    /// request rate.
    Deny,
    /// 503: the PDP, the JWKS, introspection or the session store could not answer.
    Unavailable,
}

impl Decision {
    /// The stable spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Unauthenticated => "unauthenticated",
            Decision::Deny => "deny",
            Decision::Unavailable => "unavailable",
        }
    }
}

/// Why. [`code`](Reason::code) is stable: tests, dashboards and the audit trail key on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// The PDP allowed it.
    Allowed,
    /// A public route: no authentication, no decision.
    PublicRoute,
    /// No credential was presented.
    MissingCredential,
    /// A credential was presented and refused.
    InvalidToken {
        /// Why, a stable code (e.g. `token_expired`, `token_audience_wrong`, `inactive`).
        why: String,
    },
    /// A DPoP proof was presented with the token and refused (RFC 9449 §7.1).
    InvalidDpopProof {
        /// Why, a stable code (e.g. `dpop_proof_stale`, `dpop_proof_replayed`).
        why: String,
    },
    /// No rule matches the method and path (deny by default).
    NoRule,
    /// The credential lacks scopes the route requires.
    MissingScope {
        /// The route's required scopes.
        required: Vec<String>,
    },
    /// The authentication is too old or too weak for the route (RFC 9470).
    StepUp {
        /// The route's `max_age`, when the authentication is too old.
        max_age: Option<u64>,
        /// The `acr_values` asked for, when methods are missing.
        acr_values: Vec<String>,
    },
    /// The PDP said no.
    PdpDeny,
    /// The principal is over its request rate (an [`Admission`](crate::Admission) refused it,
    /// before the PDP was asked).
    RateLimited {
        /// Seconds until a request would be admitted again (at least 1).
        retry_after_secs: u64,
    },
    /// The PDP could not answer.
    PdpUnavailable {
        /// Why.
        why: String,
    },
    /// The JWKS, introspection or the session store could not answer.
    AuthenticationUnavailable {
        /// Why.
        why: String,
    },
}

impl Reason {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::PublicRoute => "public_route",
            Reason::MissingCredential => "missing_credential",
            Reason::InvalidToken { .. } => "invalid_token",
            Reason::InvalidDpopProof { .. } => "invalid_dpop_proof",
            Reason::NoRule => "no_rule",
            Reason::MissingScope { .. } => "missing_scope",
            Reason::StepUp { .. } => "step_up_required",
            Reason::PdpDeny => "pdp_deny",
            Reason::RateLimited { .. } => "rate_limited",
            Reason::PdpUnavailable { .. } => "pdp_unavailable",
            Reason::AuthenticationUnavailable { .. } => "authentication_unavailable",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::InvalidToken { why }
            | Reason::InvalidDpopProof { why }
            | Reason::PdpUnavailable { why }
            | Reason::AuthenticationUnavailable { why } => write!(f, "{}: {why}", self.code()),
            Reason::MissingScope { required } => {
                write!(f, "{}: {}", self.code(), required.join(" "))
            }
            Reason::RateLimited { retry_after_secs } => {
                write!(f, "{}: retry_after={retry_after_secs}", self.code())
            }
            Reason::StepUp {
                max_age,
                acr_values,
            } => {
                write!(f, "{}:", self.code())?;
                if let Some(max_age) = max_age {
                    write!(f, " max_age={max_age}")?;
                }
                if !acr_values.is_empty() {
                    write!(f, " acr_values={}", acr_values.join(" "))?;
                }
                Ok(())
            }
            _ => f.write_str(self.code()),
        }
    }
}

/// One outcome of the layer. Never holds a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRecord {
    /// The caller, when authenticated.
    pub principal: Option<Principal>,
    /// The request's method and path (the path only, never the query string).
    pub method: String,
    /// The path.
    pub path: String,
    /// The relation asked (empty when no rule matched or the route is public).
    pub action: String,
    /// The object asked about (empty when no rule matched or the route is public).
    pub resource: String,
    /// What was answered.
    pub decision: Decision,
    /// Why.
    pub reason: Reason,
    /// The request's `X-Request-ID`, if it had a valid one.
    pub request_id: Option<String>,
    /// The peer address, when the server put `ConnectInfo<SocketAddr>` in the request.
    pub ip: Option<String>,
}

/// Receives every outcome. Called on the request path: an implementation must not block
/// (queue, or write through a batched writer).
pub trait DecisionSink: fmt::Debug + Send + Sync {
    /// One outcome.
    fn record(&self, record: &DecisionRecord);
}

/// Logs every outcome with `tracing` (target `trustgate_pep`): allows at `debug`, refusals at
/// `info`, unavailability at `warn`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

impl DecisionSink for TracingSink {
    fn record(&self, r: &DecisionRecord) {
        let principal = r.principal.as_ref().map(Principal::subject);
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(
                    target: "trustgate_pep",
                    principal = principal.as_deref().unwrap_or("-"),
                    method = %r.method,
                    path = %r.path,
                    action = %r.action,
                    resource = %r.resource,
                    decision = r.decision.as_str(),
                    reason = %r.reason,
                    request_id = r.request_id.as_deref().unwrap_or("-"),
                    ip = r.ip.as_deref().unwrap_or("-"),
                    "pep decision"
                )
            };
        }
        match r.decision {
            Decision::Allow => emit!(debug),
            Decision::Unauthenticated | Decision::Deny => emit!(info),
            Decision::Unavailable => emit!(warn),
        }
    }
}

/// Keeps the latest outcomes in memory, oldest first, for tests of a protected service and for
/// diagnostics; bounded (the oldest are dropped beyond the capacity).
#[derive(Debug)]
pub struct MemorySink {
    records: parking_lot::Mutex<std::collections::VecDeque<DecisionRecord>>,
    capacity: usize,
}

impl Default for MemorySink {
    fn default() -> Self {
        MemorySink::with_capacity(10_000)
    }
}

impl MemorySink {
    /// A sink keeping at most `capacity` records (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        MemorySink {
            records: parking_lot::Mutex::new(std::collections::VecDeque::new()),
            capacity: capacity.max(1),
        }
    }

    /// The records kept, oldest first.
    pub fn records(&self) -> Vec<DecisionRecord> {
        self.records.lock().iter().cloned().collect()
    }

    /// The newest record.
    pub fn last(&self) -> Option<DecisionRecord> {
        self.records.lock().back().cloned()
    }

    /// How many records are kept.
    pub fn len(&self) -> usize {
        self.records.lock().len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.records.lock().is_empty()
    }
}

impl DecisionSink for MemorySink {
    fn record(&self, record: &DecisionRecord) {
        let mut records = self.records.lock();
        if records.len() >= self.capacity {
            records.pop_front();
        }
        records.push_back(record.clone());
    }
}
