//! `GET /stores/{store_id}/watch` (a trustgate addition): the store's revision as server-sent
//! events, for policy enforcement points that cache decisions
//! ([`trustgate_pep::DecisionCache`]).
//!
//! ```text
//! event: revision
//! data: {"consistency_token":"dGcxOj...","authorization_model_id":"01J..."}
//!
//! :
//! ```
//! The first event is the revision when the stream opens; another follows whenever this
//! replica's index applies a tuple change or learns of a new latest model
//! ([`trustgate_pdp::watch`]); changes in between are coalesced into the newest.
//!
//! ```text
//! event: credentials
//! data: {"credential_epoch":42}
//! ```
//! follows with trustgate's credential epoch as this replica reads it (every
//! `api_keys.revocation_poll_ms`), and again whenever it moves: it moves with every revocation
//! of a session, grant, access token or API key and every disabled owner, so an enforcement
//! point can empty its introspection cache ([`trustgate_pep::Introspector::follow_revocations`]).
//! The value says only that something was revoked somewhere, never what. An empty
//! comment is sent after every [`HEARTBEAT`] without an event, so a watcher can tell a silent
//! store from a dead connection. The stream ends when the store is deleted and when the server
//! shuts down. It needs the same permission as Check (`reader` on the store).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use trustgate_pdp::{Revision, RevisionWatch};

use super::{FgaError, check_store_id};
use crate::AppState;
use crate::auth::{Authorized, StoreReader};

/// The longest silence on a watch stream.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

#[derive(Serialize)]
struct RevisionEvent<'a> {
    consistency_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_model_id: Option<&'a str>,
}

fn event(revision: &Revision) -> Event {
    let body = RevisionEvent {
        consistency_token: revision.token.as_str(),
        authorization_model_id: revision.latest_model_id.as_deref(),
    };
    Event::default()
        .event("revision")
        .json_data(body)
        .unwrap_or_else(|_| Event::default().event("revision"))
}

#[derive(Serialize)]
struct CredentialsEvent {
    credential_epoch: i64,
}

fn credentials_event(epoch: i64) -> Event {
    Event::default()
        .event("credentials")
        .json_data(CredentialsEvent {
            credential_epoch: epoch,
        })
        .unwrap_or_else(|_| Event::default().event("credentials"))
}

/// What the stream still has to say: the first revision, then the changes of either.
struct Watching {
    first: Option<Revision>,
    watch: RevisionWatch,
    credentials: tokio::sync::watch::Receiver<Option<i64>>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// `GET /stores/{store_id}/watch`.
pub async fn watch(
    _caller: Authorized<StoreReader>,
    State(state): State<AppState>,
    Path(store_id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, FgaError> {
    check_store_id(&store_id)?;
    let mut watch = state.pdp.watch(&store_id).await?;
    let first = watch.current();
    let mut credentials = state.api_keys.credential_epochs();
    // The epoch known now is sent after the first revision; later ones as they are read.
    credentials.mark_changed();
    let watching = Watching {
        first: Some(first),
        watch,
        credentials,
        stopping: state.stopping.subscribe(),
    };
    let stream = futures::stream::unfold(watching, |mut w| async move {
        if let Some(first) = w.first.take() {
            return Some((Ok(event(&first)), w));
        }
        loop {
            let next = tokio::select! {
                changed = w.watch.changed() => changed.ok().map(|r| event(&r)),
                changed = w.credentials.changed() => match changed {
                    Ok(()) => match *w.credentials.borrow_and_update() {
                        Some(epoch) => Some(credentials_event(epoch)),
                        // Not read yet: nothing to say.
                        None => continue,
                    },
                    // The key service is gone: the server is stopping.
                    Err(_) => None,
                },
                _ = w.stopping.wait_for(|stopping| *stopping) => None,
            };
            // `None`: the store is gone or the server stops; the stream ends.
            return next.map(|e| (Ok(e), w));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT)))
}
