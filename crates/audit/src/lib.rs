//! The audit trail: who did what to which, with what outcome, and why.
//!
//! Invariant: every audit event of trustgate is written through an [`Auditor`], under one write
//! policy decided by the event's [`AuditKind`], never by the caller:
//!
//! - **Recorded** kinds (credential events: logins, second factors, passkeys, passwords,
//!   sessions, consents, device decisions, revocations, replays; administrative changes) are
//!   appended to the [`AuditStore`] before [`Auditor::record`] returns. If the append fails,
//!   `record` fails and the caller fails the request: a change the trail cannot show does not
//!   happen silently.
//! - **Streamed** kinds (authorization decisions and token issuance, one or more per request on
//!   the hot paths of every service behind trustgate) are queued on a bounded channel and
//!   written in batches ([`AuditStore::append_audits`]) by a background task. Queuing never
//!   waits: when the queue is full the event is dropped and counted in the
//!   `audit_events_dropped_total{reason="queue_full"}` metric; a batch the store refuses is
//!   counted with `reason="store_error"`. [`Auditor::flush`] waits until everything queued
//!   before it is written (shutdown, tests).
//!
//! Every stored event is a link of a hash chain (one for the recorded kinds, one for the
//! streamed kinds; positions and hashes assigned by the store as it appends), and [`Chains`]
//! signs anchors of the chains, deletes old streamed events by prefix under a signed truncation
//! anchor and verifies the whole trail ([`chain`]). The loss policy stays explicit: a streamed
//! event dropped because the queue is full never reaches a chain, so the chain stays whole and
//! the loss is counted, not hidden.
//!
//! An [`AuditTap`] installed with [`Auditor::set_tap`] is offered every event once the trail
//! holds it; webhook delivery (`trustgate-webhooks`) subscribes to the trail this way.
//!
//! Every event carries the [`RequestContext`] (client IP, user agent, request id), the one
//! definition of "where a request came from" that authentication, the OAuth provider, the PDP
//! and the admin API share. Nothing secret is ever put into an event: callers pass ids,
//! outcomes and non-secret detail only.

pub mod chain;
mod context;
mod kind;
mod writer;

pub use chain::{ChainConfig, ChainError, Chains};
pub use context::{MAX_REQUEST_ID_CHARS, MAX_USER_AGENT_CHARS, RequestContext};
pub use kind::{AuditKind, Delivery, Outcome};
pub use writer::{AuditTap, Auditor, AuditorConfig, Decision, Event, Verdict};

#[cfg(doc)]
use trustgate_store_api::AuditStore;
