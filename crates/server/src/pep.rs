//! The in-process adapters of the `pep` layer, for a service embedded with trustgate (same
//! process, same store): a [`DecisionPoint`] over [`trustgate_pdp::Pdp`], a
//! [`SessionResolver`] over [`Accounts`], and a [`DecisionSink`] that writes trustgate's audit
//! trail through the [`Auditor`] (kind `authorization_decision`, streamed: the request never
//! waits on the disk).

use std::net::IpAddr;

use async_trait::async_trait;
use serde_json::{Map, Value};
use trustgate_audit::{Auditor, Decision as AuditDecision, RequestContext, Verdict};
use trustgate_authn::accounts::Accounts;
use trustgate_pdp::{Caller, CheckRequest, Pdp, QueryScope};
use trustgate_pep::{
    AuthMethod, CheckQuery, Decision, DecisionPoint, DecisionRecord, DecisionSink, Principal,
    PrincipalKind, SessionResolver, Unavailable,
};

/// Checks against a store of the in-process PDP, at its latest model (or a pinned one) and
/// minimal latency (the PDP's index follows every write on this replica at once, and other
/// replicas' within its refresh interval), or at least as fresh as the request's consistency
/// token. Each check is in the PDP's decision log under
/// `asked_by`.
#[derive(Debug, Clone)]
pub struct InProcessDecisionPoint {
    pdp: Pdp,
    store_id: String,
    model_id: Option<String>,
    asked_by: String,
}

impl InProcessDecisionPoint {
    /// Checks in `store_id`; `asked_by` names the protected service in the decision log
    /// (e.g. `service:learning`).
    pub fn new(pdp: Pdp, store_id: &str, model_id: Option<String>, asked_by: &str) -> Self {
        InProcessDecisionPoint {
            pdp,
            store_id: store_id.to_owned(),
            model_id,
            asked_by: asked_by.to_owned(),
        }
    }
}

#[async_trait]
impl DecisionPoint for InProcessDecisionPoint {
    async fn check(&self, q: &CheckQuery<'_>) -> Result<bool, Unavailable> {
        let mut scope = QueryScope::latest(&self.store_id);
        scope.model_id = self.model_id.as_deref().or(q.model_id);
        scope.freshness.token = q.consistency_token;
        let context = RequestContext::new(
            q.ip.and_then(|ip| ip.parse::<IpAddr>().ok()),
            None,
            q.request_id,
        );
        self.pdp
            .check(
                &scope,
                &CheckRequest {
                    object: q.object,
                    relation: q.relation,
                    user: q.subject,
                    contextual_tuples: &[],
                    context: None,
                },
                Caller {
                    principal: &self.asked_by,
                    context: &context,
                },
            )
            .await
            .map_err(|e| Unavailable(e.to_string()))
    }
}

/// Resolves trustgate's session cookie (`__Host-trustgate_session`) with
/// [`Accounts::authenticate_session`]: the store is asked on every request, so a revoked
/// session, a logout or a disabled user is refused at once.
#[derive(Debug, Clone)]
pub struct AccountsSessionResolver {
    accounts: Accounts,
}

impl AccountsSessionResolver {
    /// A resolver over `accounts`.
    pub fn new(accounts: Accounts) -> Self {
        AccountsSessionResolver { accounts }
    }
}

#[async_trait]
impl SessionResolver for AccountsSessionResolver {
    async fn resolve(&self, cookie: &str) -> Result<Option<Principal>, String> {
        let current = self
            .accounts
            .authenticate_session(cookie, &RequestContext::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(current.map(|current| Principal {
            id: current.user.id,
            kind: PrincipalKind::User,
            tenant: None,
            scopes: Vec::new(),
            amr: current.session.amr,
            auth_time: Some(current.session.auth_time.unix_timestamp()),
            acr: Some(current.session.acr).filter(|a| !a.is_empty()),
            client_id: None,
            act: None,
            key_id: None,
            cnf: None,
            method: AuthMethod::Session,
        }))
    }
}

/// Writes every outcome of the layer to trustgate's audit trail as an
/// `authorization_decision` event (action `enforce`; the relation, the reason's code and
/// detail, the method, path and how the caller was authenticated in the details).
#[derive(Debug, Clone)]
pub struct AuditSink {
    auditor: Auditor,
}

impl AuditSink {
    /// A sink over `auditor`.
    pub fn new(auditor: Auditor) -> Self {
        AuditSink { auditor }
    }
}

impl DecisionSink for AuditSink {
    fn record(&self, r: &DecisionRecord) {
        let mut detail = Map::new();
        detail.insert("source".into(), Value::from("pep"));
        detail.insert("method".into(), Value::from(r.method.as_str()));
        detail.insert("path".into(), Value::from(r.path.as_str()));
        detail.insert("relation".into(), Value::from(r.action.as_str()));
        detail.insert("pep_decision".into(), Value::from(r.decision.as_str()));
        detail.insert("reason".into(), Value::from(r.reason.code()));
        detail.insert("reason_detail".into(), Value::from(r.reason.to_string()));
        if let Some(p) = &r.principal {
            detail.insert("authenticated_by".into(), Value::from(p.method.as_str()));
            if let Some(client) = &p.client_id {
                detail.insert("client_id".into(), Value::from(client.as_str()));
            }
        }
        let verdict = match r.decision {
            Decision::Allow => Verdict::Allow,
            Decision::Unauthenticated | Decision::Deny => Verdict::Deny,
            Decision::Unavailable => Verdict::Error(r.reason.code().to_owned()),
        };
        let context = RequestContext::new(
            r.ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()),
            None,
            r.request_id.as_deref(),
        );
        self.auditor.decision(
            &context,
            AuditDecision {
                principal: r
                    .principal
                    .as_ref()
                    .map(Principal::subject)
                    .unwrap_or_else(|| "anonymous".to_owned()),
                action: "enforce",
                resource: r.resource.clone(),
                verdict,
                detail,
            },
        );
    }
}
