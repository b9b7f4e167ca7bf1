//! [`WebhookStore`]: subscriptions, their sealed secrets, and the delivery outbox.
//!
//! A claim marks each row with a fresh lease token and moves its `next_attempt_at` to the end of
//! the lease, in one statement over a `SELECT … FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite's
//! single writer serializes claims): a row is claimable again only when its lease has run out,
//! and a completion must name the lease it holds, so a worker whose lease ran out cannot
//! overwrite the outcome of the worker that took the row over.

use async_trait::async_trait;
use time::OffsetDateTime;
use trustgate_core::id::new_ulid;
use trustgate_store_api::StoreError;

use super::{Database, Row, RowLock, SqlStore, Tx, TxMode, args};
use crate::relationships::{check_input, check_page_size, finish_page, normalize_time};
use crate::webhooks::{
    AttemptResult, ClaimedDelivery, Delivery, DeliveryKind, DeliveryPage, DeliveryState,
    MAX_ENQUEUE, MAX_SECRETS, MAX_SUBSCRIPTIONS, NewDelivery, NewSubscription, StoredSecret,
    Subscription, WebhookStore, check_new_delivery, check_new_subscription, check_sealed,
    kinds_from_text, stored_error,
};

const SUBSCRIPTION_COLUMNS: &str = "id, url, kinds, description, enabled, created_at";
const DELIVERY_COLUMNS: &str = "id, kind, subscription_id, target, url, payload, attempts, state, \
     next_attempt_at, last_status, last_error, created_at";

fn delivery_from_row(row: &impl Row) -> Result<Delivery, StoreError> {
    let kind = row.str("kind")?;
    let state = row.str("state")?;
    Ok(Delivery {
        id: row.text("id")?,
        kind: DeliveryKind::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery kind {kind}")))?,
        subscription_id: row.opt_text("subscription_id")?,
        target: row.text("target")?,
        url: row.text("url")?,
        payload: row.text("payload")?,
        attempts: u32::try_from(row.i64("attempts")?)
            .map_err(|_| StoreError::Corrupt("delivery attempts out of range".into()))?,
        state: DeliveryState::parse(state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery state {state}")))?,
        next_attempt_at: row.time("next_attempt_at")?,
        last_status: row
            .opt_i64("last_status")?
            .map(|s| {
                u16::try_from(s)
                    .map_err(|_| StoreError::Corrupt("stored status out of range".into()))
            })
            .transpose()?,
        last_error: row.opt_text("last_error")?,
        created_at: row.time("created_at")?,
    })
}

impl<D: Database> SqlStore<D> {
    /// The subscription with its secrets, newest secret first, read on `tx` or the pool.
    async fn subscription_on(
        &self,
        tx: Option<&mut Tx<'_, D>>,
        id: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let select =
            format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = $1");
        let secrets_sql = "SELECT sealed, created_at, expires_at FROM webhook_secrets \
                           WHERE subscription_id = $1 ORDER BY id DESC";
        let (row, secret_rows) = match tx {
            Some(tx) => {
                let row = tx.fetch_optional(&select, args![id]).await?;
                let mut secrets = Vec::new();
                tx.for_each(secrets_sql, args![id], |r| {
                    secrets.push(secret_from_row(r)?);
                    Ok(())
                })
                .await?;
                (row, secrets)
            }
            None => {
                let row = self.fetch_optional(&select, args![id]).await?;
                let rows = self.fetch_all(secrets_sql, args![id]).await?;
                let secrets = rows.iter().map(secret_from_row).collect::<Result<_, _>>()?;
                (row, secrets)
            }
        };
        let Some(row) = row else {
            return Ok(None);
        };
        let mut subscription = subscription_from_row(&row)?;
        subscription.secrets = secret_rows;
        Ok(Some(subscription))
    }
}

fn subscription_from_row(row: &impl Row) -> Result<Subscription, StoreError> {
    Ok(Subscription {
        id: row.text("id")?,
        url: row.text("url")?,
        kinds: kinds_from_text(row.json("kinds")?)?,
        description: row.text("description")?,
        enabled: row.bool("enabled")?,
        secrets: Vec::new(),
        created_at: row.time("created_at")?,
    })
}

fn secret_from_row(row: &impl Row) -> Result<StoredSecret, StoreError> {
    Ok(StoredSecret {
        sealed: row.bytes("sealed")?.to_vec(),
        created_at: row.time("created_at")?,
        expires_at: row.opt_time("expires_at")?,
    })
}

fn status_arg(status: Option<u16>) -> Option<i64> {
    status.map(i64::from)
}

#[async_trait]
impl<D: Database> WebhookStore for SqlStore<D> {
    async fn create_subscription(
        &self,
        new: &NewSubscription<'_>,
        now: OffsetDateTime,
    ) -> Result<Subscription, StoreError> {
        let kinds = check_new_subscription(new)?;
        let now = normalize_time(now);
        let mut tx = self.begin(TxMode::Write).await?;
        let count = tx
            .fetch_one("SELECT COUNT(*) AS n FROM webhook_subscriptions", args![])
            .await?
            .i64("n")?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= MAX_SUBSCRIPTIONS {
            return Err(StoreError::InvalidInput(format!(
                "at most {MAX_SUBSCRIPTIONS} webhook subscriptions are kept"
            )));
        }
        tx.execute(
            "INSERT INTO webhook_subscriptions (id, url, kinds, description, enabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                new.id.into(),
                new.url.into(),
                super::Arg::json(&kinds),
                new.description.into(),
                new.enabled.into(),
                now.into(),
            ],
        )
        .await?;
        tx.execute(
            "INSERT INTO webhook_secrets (subscription_id, sealed, created_at) VALUES ($1, $2, $3)",
            args![new.id, new.sealed_secret, now],
        )
        .await?;
        tx.commit().await?;
        Ok(Subscription {
            id: new.id.to_owned(),
            url: new.url.to_owned(),
            kinds: new.kinds.to_vec(),
            description: new.description.to_owned(),
            enabled: new.enabled,
            secrets: vec![StoredSecret {
                sealed: new.sealed_secret.to_vec(),
                created_at: now,
                expires_at: None,
            }],
            created_at: now,
        })
    }

    async fn get_subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        check_input("webhook id", id)?;
        self.subscription_on(None, id).await
    }

    async fn list_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let mut tx = self.begin(TxMode::Snapshot).await?;
        let mut subscriptions = Vec::new();
        tx.for_each(
            &format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY id LIMIT $1"
            ),
            args![i64::try_from(MAX_SUBSCRIPTIONS).unwrap_or(i64::MAX)],
            |row| {
                subscriptions.push(subscription_from_row(row)?);
                Ok(())
            },
        )
        .await?;
        let mut secrets: Vec<(String, StoredSecret)> = Vec::new();
        tx.for_each(
            "SELECT subscription_id, sealed, created_at, expires_at FROM webhook_secrets \
             ORDER BY id DESC",
            args![],
            |row| {
                secrets.push((row.text("subscription_id")?, secret_from_row(row)?));
                Ok(())
            },
        )
        .await?;
        drop(tx);
        let index: std::collections::HashMap<String, usize> = subscriptions
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        for (subscription_id, secret) in secrets {
            if let Some(&i) = index.get(&subscription_id) {
                subscriptions[i].secrets.push(secret);
            }
        }
        Ok(subscriptions)
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        check_input("webhook id", id)?;
        // Its secrets and queued deliveries go with it (ON DELETE CASCADE).
        Ok(self
            .execute("DELETE FROM webhook_subscriptions WHERE id = $1", args![id])
            .await?
            == 1)
    }

    async fn rotate_subscription_secret(
        &self,
        id: &str,
        sealed: &[u8],
        old_valid_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<Subscription>, StoreError> {
        check_input("webhook id", id)?;
        check_sealed(sealed)?;
        let now = normalize_time(now);
        let old_valid_until = normalize_time(old_valid_until);
        let mut tx = self.begin(TxMode::Write).await?;
        let exists = tx
            .fetch_optional(
                &format!(
                    "SELECT id FROM webhook_subscriptions WHERE id = $1{}",
                    D::row_lock(RowLock::Update)
                ),
                args![id],
            )
            .await?
            .is_some();
        if !exists {
            return Ok(None);
        }
        tx.execute(
            "DELETE FROM webhook_secrets WHERE subscription_id = $1 AND expires_at <= $2",
            args![id, now],
        )
        .await?;
        tx.execute(
            "UPDATE webhook_secrets SET expires_at = $2 \
             WHERE subscription_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
            args![id, old_valid_until],
        )
        .await?;
        let live = tx
            .fetch_one(
                "SELECT COUNT(*) AS n FROM webhook_secrets WHERE subscription_id = $1",
                args![id],
            )
            .await?
            .i64("n")?;
        if usize::try_from(live).unwrap_or(usize::MAX) >= MAX_SECRETS {
            return Err(StoreError::InvalidInput(format!(
                "a webhook holds at most {MAX_SECRETS} secrets; wait for an overlap to end"
            )));
        }
        tx.execute(
            "INSERT INTO webhook_secrets (subscription_id, sealed, created_at) VALUES ($1, $2, $3)",
            args![id, sealed, now],
        )
        .await?;
        let subscription = self.subscription_on(Some(&mut tx), id).await?;
        tx.commit().await?;
        Ok(subscription)
    }

    async fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery<'_>],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if deliveries.len() > MAX_ENQUEUE {
            return Err(StoreError::InvalidInput(format!(
                "at most {MAX_ENQUEUE} deliveries are queued at once"
            )));
        }
        for delivery in deliveries {
            check_new_delivery(delivery)?;
        }
        if deliveries.is_empty() {
            return Ok(());
        }
        let now = normalize_time(now);
        let mut tx = self.begin(TxMode::Write).await?;
        for d in deliveries {
            // A subscription deleted since the event was matched gets nothing.
            tx.execute(
                "INSERT INTO webhook_deliveries (id, kind, subscription_id, target, url, payload, \
                 attempts, state, next_attempt_at, created_at) \
                 SELECT $1, $2, $3, $4, $5, $6, 0, 'pending', $7, $7 \
                 WHERE $3 IS NULL OR EXISTS (SELECT 1 FROM webhook_subscriptions WHERE id = $3)",
                args![
                    d.id,
                    d.kind.as_str(),
                    d.subscription_id,
                    d.target,
                    d.url,
                    d.payload,
                    now
                ],
            )
            .await?;
        }
        tx.commit().await
    }

    async fn claim_deliveries(
        &self,
        limit: u32,
        lease_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let limit = check_page_size(limit)?;
        let now = normalize_time(now);
        let lease_until = normalize_time(lease_until);
        if lease_until <= now {
            return Err(StoreError::InvalidInput(
                "a lease must end after it begins".into(),
            ));
        }
        let lease = new_ulid(now);
        let mut tx = self.begin(TxMode::Write).await?;
        let mut claimed = Vec::new();
        tx.for_each(
            &format!(
                "UPDATE webhook_deliveries SET lease = $1, next_attempt_at = $2 \
                 WHERE id IN (SELECT id FROM webhook_deliveries \
                              WHERE state = 'pending' AND next_attempt_at <= $3 \
                              ORDER BY next_attempt_at, id LIMIT $4{}) \
                 RETURNING {DELIVERY_COLUMNS}",
                D::row_lock(RowLock::UpdateSkipLocked)
            ),
            args![lease.as_str(), lease_until, now, limit],
            |row| {
                claimed.push(ClaimedDelivery {
                    delivery: delivery_from_row(row)?,
                    lease: lease.clone(),
                });
                Ok(())
            },
        )
        .await?;
        tx.commit().await?;
        claimed.sort_by(|a, b| a.delivery.id.cmp(&b.delivery.id));
        Ok(claimed)
    }

    async fn complete_delivery(
        &self,
        id: &str,
        lease: &str,
        result: &AttemptResult,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        check_input("delivery id", id)?;
        check_input("lease", lease)?;
        let now = normalize_time(now);
        let (state, status, error, next) = match result {
            AttemptResult::Delivered { status } => {
                (DeliveryState::Delivered, Some(*status), None, now)
            }
            AttemptResult::Retry {
                status,
                error,
                next_attempt_at,
            } => (
                DeliveryState::Pending,
                *status,
                Some(stored_error(error)),
                normalize_time(*next_attempt_at),
            ),
            AttemptResult::Dead { status, error } => {
                (DeliveryState::Dead, *status, Some(stored_error(error)), now)
            }
        };
        let changed = self
            .execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, state = $3, \
                 next_attempt_at = $4, last_status = $5, last_error = $6, lease = NULL \
                 WHERE id = $1 AND lease = $2 AND state = 'pending'",
                args![
                    id,
                    lease,
                    state.as_str(),
                    next,
                    super::Arg::I64(status_arg(status)),
                    error.as_deref()
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        check_input("delivery id", id)?;
        let row = self
            .fetch_optional(
                &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"),
                args![id],
            )
            .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn list_deliveries(
        &self,
        state: DeliveryState,
        after: Option<&str>,
        limit: u32,
    ) -> Result<DeliveryPage, StoreError> {
        let page = check_page_size(limit)?;
        if let Some(after) = after {
            check_input("after", after)?;
        }
        let rows = self
            .fetch_all(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                     WHERE state = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
                ),
                args![state.as_str(), after, page + 1],
            )
            .await?;
        let items = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let (deliveries, next) = finish_page(items, page, |d| d.id.clone());
        Ok(DeliveryPage { deliveries, next })
    }

    async fn redeliver(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Delivery>, StoreError> {
        check_input("delivery id", id)?;
        let now = normalize_time(now);
        let row = self
            .fetch_optional(
                &format!(
                    "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, \
                     next_attempt_at = $2, lease = NULL \
                     WHERE id = $1 AND state = 'dead' RETURNING {DELIVERY_COLUMNS}"
                ),
                args![id, now],
            )
            .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn purge_delivered(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM webhook_deliveries WHERE state = 'delivered' AND next_attempt_at < $1",
            args![normalize_time(before)],
        )
        .await
    }
}
