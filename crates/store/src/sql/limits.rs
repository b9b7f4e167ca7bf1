//! [`AttemptStore`] and [`NonceStore`]: attempt counters and spent one-time values, each
//! operation one statement (atomic on its own on both backends, so no transaction or lock).
//!
//! An increment is an upsert that reads its result back (`RETURNING`): PostgreSQL applies a
//! conflicting `ON CONFLICT DO UPDATE` to the latest committed row under its row lock, SQLite
//! runs one writer at a time, so N concurrent increments from any replicas count N. A spend is
//! an upsert that replaces only an expired record: of concurrent spends exactly one inserts (or
//! replaces) and the others change no row.

use async_trait::async_trait;
use time::OffsetDateTime;
use trustgate_core::TokenDigest;
use trustgate_store_api::StoreError;

use super::{Database, Row, SqlStore, args};
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
        let changed = self
            .execute(
                "INSERT INTO spent_nonces (purpose, digest, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (purpose, digest) DO UPDATE SET expires_at = $3 \
                 WHERE spent_nonces.expires_at <= $4",
                args![purpose, digest, expires_at, now],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn purge_nonces(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM spent_nonces WHERE expires_at <= $1",
            args![now],
        )
        .await
    }
}
