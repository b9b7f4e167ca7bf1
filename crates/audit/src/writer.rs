use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use trustgate_core::Clock;
use trustgate_core::id::UlidSequence;
use trustgate_store_api::{AuditChain, AuditEvent, AuditStore, StoreError};

use crate::{AuditKind, Delivery, Outcome, RequestContext};

/// Sizes of the streamed path.
#[derive(Debug, Clone, Copy)]
pub struct AuditorConfig {
    /// Streamed events waiting to be written; beyond this they are dropped and counted.
    pub queue_capacity: usize,
    /// Most events written in one batch (one transaction).
    pub max_batch: usize,
}

impl Default for AuditorConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            max_batch: 500,
        }
    }
}

/// One event to audit: what happened, how it ended, who did it, to whom, and non-secret detail.
#[derive(Debug, Clone)]
pub struct Event {
    kind: AuditKind,
    outcome: Outcome,
    actor: Option<String>,
    user_id: Option<String>,
    resource: Option<String>,
    detail: Map<String, Value>,
}

impl Event {
    /// An event of `kind` that ended with `outcome`.
    pub fn new(kind: AuditKind, outcome: Outcome) -> Self {
        Self {
            kind,
            outcome,
            actor: None,
            user_id: None,
            resource: None,
            detail: Map::new(),
        }
    }

    /// Who acted: a subject string such as `user:ID` or `service:ID`.
    pub fn actor(mut self, subject: impl Into<String>) -> Self {
        self.actor = Some(subject.into());
        self
    }

    /// A user acting on their own account: the user and the actor `user:ID`.
    pub fn by_user(self, user_id: &str) -> Self {
        self.actor(format!("user:{user_id}")).user(user_id)
    }

    /// The user the event concerns.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// What the event is about (e.g. `document:1`, a client id); filterable in the trail.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Adds a detail (never a secret).
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }

    /// Adds several details (never secrets).
    pub fn details(mut self, detail: Map<String, Value>) -> Self {
        self.detail.extend(detail);
        self
    }

    /// The kind.
    pub fn kind(&self) -> AuditKind {
        self.kind
    }
}

/// What an authorization decision came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Denied by policy.
    Deny,
    /// Not evaluated to an answer (the caller denied); the stable error code.
    Error(String),
}

/// An authorization decision: principal, action, resource, verdict and reason.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Who asked (the caller's subject).
    pub principal: String,
    /// What was asked, e.g. `check`.
    pub action: &'static str,
    /// What it was asked about, e.g. `document:1`.
    pub resource: String,
    /// The answer.
    pub verdict: Verdict,
    /// Further non-secret detail (store, model, relation, user, …).
    pub detail: Map<String, Value>,
}

impl Decision {
    fn into_event(self) -> Event {
        let (outcome, verdict, error) = match self.verdict {
            Verdict::Allow => (Outcome::Success, "allow", None),
            Verdict::Deny => (Outcome::Denied, "deny", None),
            Verdict::Error(code) => (Outcome::Failure, "error", Some(code)),
        };
        let mut event = Event::new(AuditKind::AuthorizationDecision, outcome)
            .actor(self.principal)
            .resource(self.resource)
            .detail("action", self.action)
            .detail("decision", verdict)
            .details(self.detail);
        if let Some(code) = error {
            event = event.detail("reason", code);
        }
        event
    }
}

/// Receives every event once the trail holds it: recorded kinds after their append, streamed
/// kinds after their batch is written (an event the trail dropped is never offered). Webhook
/// delivery taps the trail this way, so subscribers see exactly what the trail shows.
///
/// `offer` runs on the request path (recorded kinds) and on the writer task: it must never
/// wait, only queue.
pub trait AuditTap: Send + Sync + std::fmt::Debug {
    /// Takes a copy of a stored event.
    fn offer(&self, event: &AuditEvent);
}

type Tap = Arc<OnceLock<Arc<dyn AuditTap>>>;

enum Message {
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// Writes the audit trail (see the crate documentation for the policy). Cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    store: Arc<dyn AuditStore>,
    clock: Arc<dyn Clock>,
    // Events are listed newest first by id: ids must increase within a millisecond too.
    ids: Arc<UlidSequence>,
    queue: mpsc::Sender<Message>,
    tap: Tap,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field(
                "queued",
                &(self.queue.max_capacity() - self.queue.capacity()),
            )
            .finish_non_exhaustive()
    }
}

impl Auditor {
    /// An auditor over `store`; spawns the batched writer on the current tokio runtime. The
    /// writer ends when the last clone of the auditor is dropped, after writing what is queued.
    pub fn new(store: Arc<dyn AuditStore>, clock: Arc<dyn Clock>, config: AuditorConfig) -> Self {
        let (queue, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let tap = Tap::default();
        tokio::spawn(write_batches(
            Arc::clone(&store),
            receiver,
            config.max_batch.max(1),
            Arc::clone(&tap),
        ));
        Self {
            store,
            clock,
            ids: Arc::default(),
            queue,
            tap,
        }
    }

    /// Installs the [`AuditTap`] that every event stored from now on is offered to (on every
    /// clone). Only the first call takes effect; returns whether this one did.
    pub fn set_tap(&self, tap: Arc<dyn AuditTap>) -> bool {
        self.tap.set(tap).is_ok()
    }

    /// Audits `event` of a request from `ctx`. A recorded kind is appended before this returns,
    /// and an append that fails is this call's error: the caller fails its request. A streamed
    /// kind is queued and this returns `Ok` at once.
    pub async fn record(&self, ctx: &RequestContext, event: Event) -> Result<(), StoreError> {
        let delivery = event.kind.delivery();
        let stored = self.stored(ctx, event);
        match delivery {
            Delivery::Recorded => {
                self.store.append_audit(&stored).await.map_err(|e| {
                    tracing::error!(error = %e, kind = %stored.kind, "cannot append audit event");
                    e
                })?;
                if let Some(tap) = self.tap.get() {
                    tap.offer(&stored);
                }
                Ok(())
            }
            Delivery::Streamed => {
                self.enqueue(stored);
                Ok(())
            }
        }
    }

    /// Queues an authorization decision; never waits.
    pub fn decision(&self, ctx: &RequestContext, decision: Decision) {
        let stored = self.stored(ctx, decision.into_event());
        self.enqueue(stored);
    }

    /// Waits until every streamed event queued before this call is written (or dropped), at
    /// most `timeout`. Returns whether it finished in time.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (done, finished) = oneshot::channel();
        let flushed = async {
            self.queue.send(Message::Flush(done)).await.ok()?;
            finished.await.ok()
        };
        matches!(tokio::time::timeout(timeout, flushed).await, Ok(Some(())))
    }

    fn stored(&self, ctx: &RequestContext, event: Event) -> AuditEvent {
        let at = self.clock.now();
        AuditEvent {
            id: self.ids.next(at, None),
            at,
            chain: match event.kind.delivery() {
                Delivery::Recorded => AuditChain::Recorded,
                Delivery::Streamed => AuditChain::Streamed,
            },
            kind: event.kind.as_str().to_owned(),
            outcome: event.outcome.as_str().to_owned(),
            actor: event.actor,
            user_id: event.user_id,
            ip: ctx.ip.map(|ip| ip.to_string()),
            user_agent: ctx.user_agent.clone(),
            request_id: ctx.request_id.clone(),
            resource: event.resource,
            detail: event.detail,
        }
    }

    fn enqueue(&self, event: AuditEvent) {
        if let Err(err) = self.queue.try_send(Message::Event(Box::new(event))) {
            let reason = match err {
                mpsc::error::TrySendError::Full(_) => "queue_full",
                mpsc::error::TrySendError::Closed(_) => "closed",
            };
            metrics::counter!("audit_events_dropped_total", "reason" => reason).increment(1);
        }
    }
}

/// The batched writer: takes what is queued (up to `max_batch` at a time) and appends it in one
/// call; answers flush requests once everything before them is written.
async fn write_batches(
    store: Arc<dyn AuditStore>,
    mut receiver: mpsc::Receiver<Message>,
    max_batch: usize,
    tap: Tap,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut flushes = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(event) => batch.push(*event),
                Message::Flush(done) => flushes.push(done),
            }
            if batch.len() < max_batch {
                next = receiver.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let written = u64::try_from(batch.len()).unwrap_or(u64::MAX);
            match store.append_audits(&batch).await {
                Ok(()) => {
                    metrics::counter!("audit_events_written_total").increment(written);
                    if let Some(tap) = tap.get() {
                        for event in &batch {
                            tap.offer(event);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, events = batch.len(), "cannot append audit events");
                    metrics::counter!("audit_events_dropped_total", "reason" => "store_error")
                        .increment(written);
                }
            }
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}
