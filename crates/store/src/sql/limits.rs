//! [`AttemptStore`] and [`NonceStore`]: attempt counters and spent one-time values, each
//! operation one statement (atomic on its own on both backends, so no transaction or lock).
//!
//! An increment is an upsert that reads its result back (`RETURNING`): PostgreSQL applies a
//! conflicting `ON CONFLICT DO UPDATE` to the latest committed row under its row lock, SQLite
//! runs one writer at a time, so N concurrent increments from any replicas count N. A spend is
//! an upsert that replaces only an expired record: of concurrent spends exactly one inserts (or
//! replaces) and the others change no row.
//!
//! Spends are committed in groups: they are the one write on hot paths (every DPoP proof), and
//! a commit waits for the disk (SQLite's `synchronous = FULL`, PostgreSQL's
//! `synchronous_commit = on`). One task per store takes every spend queued while the previous
//! group committed — no added wait when the store is idle — and commits them in one
//! transaction; each caller gets its own answer once that commit is durable. A spend of the
//! same value twice in one group: the first spends it, the second finds it spent.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use trustgate_core::TokenDigest;
use trustgate_store_api::StoreError;

use super::{Database, Row, SqlStore, Tx, TxMode, args};
use crate::limits::{AttemptCount, AttemptStore, NonceStore, check_kind};

fn count_from_row(row: &impl Row) -> Result<AttemptCount, StoreError> {
    let failures = row.i64("failures")?;
    Ok(AttemptCount {
        failures: u32::try_from(failures.max(0)).unwrap_or(u32::MAX),
        last_failure_at: Some(row.time("last_failure_at")?),
    })
}

#[async_trait]
impl<D: Database> AttemptStore for SqlStore<D> {
    async fn attempt_count(
        &self,
        kind: &str,
        digest: &TokenDigest,
        now: OffsetDateTime,
    ) -> Result<AttemptCount, StoreError> {
        check_kind("attempt kind", kind)?;
        self.fetch_optional(
            "SELECT failures, last_failure_at FROM attempt_counters \
             WHERE kind = $1 AND digest = $2 AND expires_at > $3",
            args![kind, digest, now],
        )
        .await?
        .map_or(Ok(AttemptCount::default()), |row| count_from_row(&row))
    }

    async fn add_attempt_failure(
        &self,
        kind: &str,
        digest: &TokenDigest,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<AttemptCount, StoreError> {
        check_kind("attempt kind", kind)?;
        let greatest = D::GREATEST;
        // Every SET expression reads the row as it was before this statement, so "expired" is
        // judged once, on the old row.
        let row = self
            .fetch_optional(
                &format!(
                    "INSERT INTO attempt_counters \
                     (kind, digest, failures, last_failure_at, expires_at) \
                     VALUES ($1, $2, 1, $3, $4) \
                     ON CONFLICT (kind, digest) DO UPDATE SET \
                     failures = CASE WHEN attempt_counters.expires_at <= $3 THEN 1 \
                       ELSE attempt_counters.failures + 1 END, \
                     last_failure_at = CASE WHEN attempt_counters.expires_at <= $3 THEN $3 \
                       ELSE {greatest}(attempt_counters.last_failure_at, $3) END, \
                     expires_at = CASE WHEN attempt_counters.expires_at <= $3 THEN $4 \
                       ELSE {greatest}(attempt_counters.expires_at, $4) END \
                     RETURNING failures, last_failure_at"
                ),
                args![kind, digest, now, expires_at],
            )
            .await?
            .ok_or_else(|| StoreError::Database("an upsert returned no row".into()))?;
        count_from_row(&row)
    }

    async fn clear_attempts(&self, kind: &str, digest: &TokenDigest) -> Result<bool, StoreError> {
        check_kind("attempt kind", kind)?;
        Ok(self
            .execute(
                "DELETE FROM attempt_counters WHERE kind = $1 AND digest = $2",
                args![kind, digest],
            )
            .await?
            > 0)
    }

    async fn purge_attempts(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM attempt_counters WHERE expires_at <= $1",
            args![now],
        )
        .await
    }
}

#[async_trait]
impl<D: Database> NonceStore for SqlStore<D> {
    async fn spend_nonce(
        &self,
        purpose: &str,
        digest: &TokenDigest,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_kind("nonce purpose", purpose)?;
        if expires_at <= now {
            return Ok(false);
        }
        let spender = self
            .spends
            .get_or_init(|| spawn_spender(Arc::clone(&self.db)));
        let (answer, answered) = oneshot::channel();
        let pending = PendingSpend {
            purpose: purpose.to_owned(),
            digest: *digest,
            expires_at,
            now,
            answer,
        };
        let stopped = || StoreError::Unavailable("the spend writer has stopped".into());
        spender.send(pending).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    async fn purge_nonces(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM spent_nonces WHERE expires_at <= $1",
            args![now],
        )
        .await
    }
}

/// Most spends committed in one transaction.
const MAX_SPEND_GROUP: usize = 256;
/// Spends waiting for a commit at most; more wait to be queued.
pub(super) const SPEND_QUEUE: usize = 4096;

/// A spend waiting for the next group commit.
pub(super) struct PendingSpend {
    purpose: String,
    digest: TokenDigest,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
    answer: oneshot::Sender<Result<bool, StoreError>>,
}

/// Starts the task that commits queued spends in groups; it ends with the last sender (the
/// store).
fn spawn_spender<D: Database>(db: Arc<D>) -> mpsc::Sender<PendingSpend> {
    let (sender, mut queue) = mpsc::channel::<PendingSpend>(SPEND_QUEUE);
    tokio::spawn(async move {
        let mut group = Vec::with_capacity(MAX_SPEND_GROUP);
        while let Some(first) = queue.recv().await {
            group.push(first);
            while group.len() < MAX_SPEND_GROUP {
                match queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            match spend_group(&db, &group).await {
                Ok(spent) => {
                    for (pending, spent) in group.drain(..).zip(spent) {
                        let _ = pending.answer.send(Ok(spent));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, spends = group.len(), "a group of spends failed");
                    for pending in group.drain(..) {
                        let _ = pending.answer.send(Err(same_failure(&e)));
                    }
                }
            }
        }
    });
    sender
}

/// Commits one group: whether each spend spent its value.
async fn spend_group<D: Database>(
    db: &Arc<D>,
    group: &[PendingSpend],
) -> Result<Vec<bool>, StoreError> {
    let mut tx = Tx {
        db: &**db,
        tx: db.begin(TxMode::Write).await?,
    };
    let mut spent = Vec::with_capacity(group.len());
    for p in group {
        let changed = tx
            .execute(
                "INSERT INTO spent_nonces (purpose, digest, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (purpose, digest) DO UPDATE SET expires_at = $3 \
                 WHERE spent_nonces.expires_at <= $4",
                args![p.purpose.as_str(), &p.digest, p.expires_at, p.now],
            )
            .await?;
        spent.push(changed == 1);
    }
    tx.commit().await?;
    Ok(spent)
}

/// The failure of a group, for each of its callers: the same kind (so an outage stays an
/// outage), the same message.
fn same_failure(e: &StoreError) -> StoreError {
    let message = e.to_string();
    match e {
        StoreError::Unavailable(_) => StoreError::Unavailable(message.into()),
        StoreError::StorageFull(_) => StoreError::StorageFull(message.into()),
        StoreError::ReadOnly(_) => StoreError::ReadOnly(message.into()),
        StoreError::InvalidInput(m) => StoreError::InvalidInput(m.clone()),
        _ => StoreError::Database(message.into()),
    }
}
