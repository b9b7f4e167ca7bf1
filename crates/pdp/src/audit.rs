//! The decision audit trail: one record per check decision (each batch item too), written
//! through a [`DecisionLog`].
//!
//! This is the only place decisions are audited; every caller of [`crate::Pdp::check`] and
//! [`crate::Pdp::batch_check`] (the OpenFGA API, AuthZEN, the gateway) gets it. In the product
//! the log is the [`Auditor`]: decisions are queued for its batched writer to the audit store
//! and never wait for it (see `trustgate_audit`). Tests pass their own [`DecisionLog`] to
//! [`crate::Pdp::with_decision_log`].

use std::fmt;

use serde_json::{Map, Value};
use trustgate_audit::{Auditor, Decision, RequestContext};
use trustgate_authz::engine::{EngineError, Reason};

/// Who asked, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    /// The authenticated principal that asked (`service:...`, `user:...`), not the checked user.
    pub principal: &'a str,
    /// Where the question came from (client IP, user agent, request id).
    pub context: &'a RequestContext,
}

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Not allowed.
    Deny,
    /// No decision (which is never an allow); `reason` is the error code (`validation_error`,
    /// `type_not_found`, ...).
    Error {
        /// The error code.
        reason: &'static str,
    },
}

impl Verdict {
    /// The verdict of an evaluation result.
    pub(crate) fn of(result: &Result<bool, EngineError>) -> Self {
        match result {
            Ok(true) => Verdict::Allow,
            Ok(false) => Verdict::Deny,
            Err(e) => Verdict::Error {
                reason: e.code().name(),
            },
        }
    }

    /// `allow`, `deny` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Error { .. } => "error",
        }
    }

    /// The error code of an error, empty otherwise.
    pub fn reason(self) -> &'static str {
        match self {
            Verdict::Error { reason } => reason,
            _ => "",
        }
    }
}

/// One decision.
#[derive(Debug, Clone, Copy)]
pub struct DecisionRecord<'a> {
    /// Who asked.
    pub caller: Caller<'a>,
    /// The store.
    pub store_id: &'a str,
    /// The model the decision was evaluated with.
    pub model_id: &'a str,
    /// The checked object.
    pub object: &'a str,
    /// The checked relation.
    pub relation: &'a str,
    /// The checked user.
    pub user: &'a str,
    /// The decision.
    pub verdict: Verdict,
    /// Why, in the short form of an explanation (the granting tuples of an allow, the causes of
    /// a denial; see `trustgate_authz::engine::explain`).
    pub reason: &'a Reason,
}

/// Where decisions are recorded. Called on the check path, once per decision, before the
/// answer is returned: implementations must not block.
pub trait DecisionLog: Send + Sync + fmt::Debug {
    /// Records one decision.
    fn record(&self, decision: &DecisionRecord<'_>);
}

/// The longest audit reason recorded, in bytes; longer ones are cut with `…`.
pub const MAX_AUDIT_REASON_BYTES: usize = 1024;

fn short(reason: &str) -> String {
    if reason.len() <= MAX_AUDIT_REASON_BYTES {
        return reason.to_owned();
    }
    let mut end = MAX_AUDIT_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

/// The product's [`DecisionLog`]: each decision queued for the audit trail's batched writer.
impl DecisionLog for Auditor {
    fn record(&self, d: &DecisionRecord<'_>) {
        let mut detail = Map::new();
        detail.insert("store".into(), Value::from(d.store_id));
        detail.insert("model".into(), Value::from(d.model_id));
        detail.insert("relation".into(), Value::from(d.relation));
        detail.insert("user".into(), Value::from(d.user));
        if !matches!(d.verdict, Verdict::Error { .. }) {
            // What decided, in short (an error's reason is its code).
            detail.insert("reason".into(), Value::from(short(&d.reason.to_string())));
        }
        let verdict = match d.verdict {
            Verdict::Allow => trustgate_audit::Verdict::Allow,
            Verdict::Deny => trustgate_audit::Verdict::Deny,
            Verdict::Error { reason } => trustgate_audit::Verdict::Error(reason.to_owned()),
        };
        self.decision(
            d.caller.context,
            Decision {
                principal: d.caller.principal.to_owned(),
                action: "check",
                resource: d.object.to_owned(),
                verdict,
                detail,
            },
        );
    }
}
