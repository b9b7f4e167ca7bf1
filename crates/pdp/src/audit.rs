//! The decision audit trail: one record per check decision (each batch item too), written
//! through a [`DecisionLog`].
//!
//! This is the only place decisions are audited; every caller of [`crate::Pdp::check`] and
//! [`crate::Pdp::batch_check`] (the OpenFGA API, AuthZEN, the gateway) gets it. The default log,
//! [`TracingDecisionLog`], emits one `trustgate::audit` tracing event per decision. Replacing it
//! (say, by a batched writer to the audit store) is one implementation of [`DecisionLog`] passed
//! to [`crate::Pdp::with_decision_log`].

use std::fmt;

use trustgate_authz::engine::EngineError;

/// Who asked, for the audit trail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caller<'a> {
    /// The authenticated principal that asked (`service:...`, `user:...`), not the checked user.
    pub principal: &'a str,
    /// The id of the request that carried the question (empty if none).
    pub request_id: &'a str,
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
}

/// Where decisions are recorded. Called on the check path, once per decision, before the
/// answer is returned: implementations must not block.
pub trait DecisionLog: Send + Sync + fmt::Debug {
    /// Records one decision.
    fn record(&self, decision: &DecisionRecord<'_>);
}

/// The default [`DecisionLog`]: an `INFO` event with target `trustgate::audit` and the fields
/// `principal`, `action` (`check`), `store`, `model`, `object`, `relation`, `user`, `decision`,
/// `reason` and `request_id`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingDecisionLog;

impl DecisionLog for TracingDecisionLog {
    fn record(&self, d: &DecisionRecord<'_>) {
        tracing::info!(
            target: "trustgate::audit",
            principal = %d.caller.principal,
            action = "check",
            store = %d.store_id,
            model = %d.model_id,
            object = %d.object,
            relation = %d.relation,
            user = %d.user,
            decision = d.verdict.as_str(),
            reason = %d.verdict.reason(),
            request_id = %d.caller.request_id,
            "authorization decision"
        );
    }
}
