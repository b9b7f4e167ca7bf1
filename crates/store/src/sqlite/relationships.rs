//! [`RelationshipStore`] on SQLite.
//!
//! Tuple writes run in `BEGIN IMMEDIATE` transactions: the write lock is taken before the store's
//! `last_seq` is read, so concurrent writers queue (up to the busy timeout) instead of failing on
//! a stale snapshot, and seqs are assigned in commit order. Reads that need one consistent view
//! (`load_tuples`) run in one transaction, which in WAL mode reads a single snapshot.

use crate::error::db;
use async_trait::async_trait;
use sqlx::sqlite::{SqliteRow, SqliteTransaction};
use sqlx::{AssertSqlSafe, Row};
use time::OffsetDateTime;

use super::SqliteStore;
use crate::relationships::{
    CheckedTuple, FgaStore, OnDuplicate, OnMissing, RelationshipStore, StoredModel, StoredTuple,
    TOKEN_MODELS, TOKEN_STORES, TupleChangeRecord, TupleFilter, TupleKey, TupleOperation,
    TupleSnapshot, TupleWriteError, WriteOptions, WriteOutcome, check_filter, check_input,
    check_model, check_page_size, check_write_request, context_from_text, decode_changes_token,
    decode_models_token, decode_stores_token, decode_tuples_token, encode_changes_token,
    encode_token, encode_tuples_token, finish_page, from_unix_micros, normalize_time,
    operation_from_db, store_not_found, tuple_from_parts, unix_micros,
};
use trustgate_store_api::StoreError;

const STORE_COLUMNS: &str = "id, name, created_at, updated_at, deleted_at";
const MODEL_COLUMNS: &str = "m.store_id, m.id, m.schema_version, m.model, m.created_at";
const TUPLE_COLUMNS: &str =
    "object_type, object_id, relation, tuple_user, condition_name, condition_context";
const CHANGE_COLUMNS: &str = "seq, operation, object_type, object_id, relation, tuple_user, \
                              condition_name, condition_context, changed_at";

fn store_from_row(row: &SqliteRow) -> Result<FgaStore, StoreError> {
    Ok(FgaStore {
        id: row.try_get("id").map_err(db)?,
        name: row.try_get("name").map_err(db)?,
        created_at: from_unix_micros(row.try_get("created_at").map_err(db)?)?,
        updated_at: from_unix_micros(row.try_get("updated_at").map_err(db)?)?,
        deleted_at: row
            .try_get::<Option<i64>, _>("deleted_at")
            .map_err(db)?
            .map(from_unix_micros)
            .transpose()?,
    })
}

fn model_from_row(row: &SqliteRow) -> Result<StoredModel, StoreError> {
    let text: &str = row.try_get("model").map_err(db)?;
    Ok(StoredModel {
        id: row.try_get("id").map_err(db)?,
        store_id: row.try_get("store_id").map_err(db)?,
        schema_version: row.try_get("schema_version").map_err(db)?,
        model_json: serde_json::from_str(text)
            .map_err(|e| StoreError::Corrupt(format!("stored model is not JSON: {e}")))?,
        created_at: from_unix_micros(row.try_get("created_at").map_err(db)?)?,
    })
}

fn tuple_from_row(row: &SqliteRow) -> Result<TupleKey, StoreError> {
    Ok(tuple_from_parts(
        row.try_get("object_type").map_err(db)?,
        row.try_get::<&str, _>("object_id").map_err(db)?,
        row.try_get("relation").map_err(db)?,
        row.try_get("tuple_user").map_err(db)?,
        row.try_get("condition_name").map_err(db)?,
        context_from_text(
            row.try_get::<Option<&str>, _>("condition_context")
                .map_err(db)?,
        )?,
    ))
}

fn change_from_row(row: &SqliteRow) -> Result<TupleChangeRecord, StoreError> {
    Ok(TupleChangeRecord {
        seq: row.try_get("seq").map_err(db)?,
        operation: operation_from_db(row.try_get::<&str, _>("operation").map_err(db)?)?,
        tuple: tuple_from_row(row)?,
        timestamp: from_unix_micros(row.try_get("changed_at").map_err(db)?)?,
    })
}

impl SqliteStore {
    /// The store's `last_seq` unless it does not exist or was deleted.
    async fn live_seq<'e, E>(executor: E, store_id: &str) -> Result<Option<i64>, StoreError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
    {
        sqlx::query_scalar("SELECT last_seq FROM fga_stores WHERE id = ? AND deleted_at IS NULL")
            .bind(store_id)
            .fetch_optional(executor)
            .await
            .map_err(db)
    }

    async fn require_live_seq(&self, store_id: &str) -> Result<i64, StoreError> {
        check_input("store id", store_id)?;
        Self::live_seq(&self.pool, store_id)
            .await
            .map_err(db)?
            .ok_or_else(|| store_not_found(store_id))
    }
}

async fn append_change(
    tx: &mut SqliteTransaction<'_>,
    store_id: &str,
    seq: i64,
    operation: TupleOperation,
    t: &CheckedTuple<'_>,
    (condition_name, condition_context): (Option<&str>, Option<&str>),
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO tuple_changes (store_id, seq, operation, object_type, object_id, relation, \
         tuple_user, condition_name, condition_context, changed_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(store_id)
    .bind(seq)
    .bind(operation.as_str())
    .bind(t.object_type)
    .bind(t.object_id)
    .bind(&t.tuple.relation)
    .bind(&t.tuple.user)
    .bind(condition_name)
    .bind(condition_context)
    .bind(unix_micros(now))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl RelationshipStore for SqliteStore {
    async fn create_fga_store(
        &self,
        id: &str,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<FgaStore, StoreError> {
        check_input("store id", id)?;
        check_input("store name", name)?;
        let now = normalize_time(now);
        sqlx::query(
            "INSERT INTO fga_stores (id, name, last_seq, created_at, updated_at) \
             VALUES (?, ?, 0, ?, ?)",
        )
        .bind(id)
        .bind(name)
        .bind(unix_micros(now))
        .bind(unix_micros(now))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(FgaStore {
            id: id.to_owned(),
            name: name.to_owned(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
        })
    }

    async fn get_fga_store(&self, id: &str) -> Result<Option<FgaStore>, StoreError> {
        check_input("store id", id)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {STORE_COLUMNS} FROM fga_stores WHERE id = ? AND deleted_at IS NULL"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(store_from_row).transpose()
    }

    async fn list_fga_stores(
        &self,
        page_size: u32,
        continuation: Option<&str>,
    ) -> Result<(Vec<FgaStore>, Option<String>), StoreError> {
        let page = check_page_size(page_size)?;
        let after = continuation.map(decode_stores_token).transpose()?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {STORE_COLUMNS} FROM fga_stores \
             WHERE deleted_at IS NULL AND (? IS NULL OR id > ?) ORDER BY id LIMIT ?"
        )))
        .bind(after.as_deref())
        .bind(after.as_deref())
        .bind(page + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let stores = rows
            .iter()
            .map(store_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(stores, page, |s| {
            encode_token(TOKEN_STORES, &[&s.id])
        }))
    }

    async fn delete_fga_store(&self, id: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        check_input("store id", id)?;
        let now = normalize_time(now);
        let deleted = sqlx::query(
            "UPDATE fga_stores SET deleted_at = ?, updated_at = ? \
             WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(unix_micros(now))
        .bind(unix_micros(now))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        Ok(deleted == 1)
    }

    async fn live_store_seqs(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT id, last_seq FROM fga_stores WHERE deleted_at IS NULL ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id").map_err(db)?,
                    r.try_get("last_seq").map_err(db)?,
                ))
            })
            .collect()
    }

    async fn write_model(&self, model: &StoredModel) -> Result<(), StoreError> {
        let json = check_model(model)?;
        let inserted = sqlx::query(
            "INSERT INTO authorization_models (store_id, id, schema_version, model, created_at) \
             SELECT ?, ?, ?, ?, ? \
             WHERE EXISTS (SELECT 1 FROM fga_stores WHERE id = ? AND deleted_at IS NULL)",
        )
        .bind(&model.store_id)
        .bind(&model.id)
        .bind(&model.schema_version)
        .bind(json)
        .bind(unix_micros(normalize_time(model.created_at)))
        .bind(&model.store_id)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        if inserted == 0 {
            return Err(store_not_found(&model.store_id));
        }
        Ok(())
    }

    async fn get_model(
        &self,
        store_id: &str,
        model_id: &str,
    ) -> Result<Option<StoredModel>, StoreError> {
        check_input("store id", store_id)?;
        check_input("model id", model_id)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {MODEL_COLUMNS} FROM authorization_models m \
             JOIN fga_stores s ON s.id = m.store_id AND s.deleted_at IS NULL \
             WHERE m.store_id = ? AND m.id = ?"
        )))
        .bind(store_id)
        .bind(model_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(model_from_row).transpose()
    }

    async fn latest_model(&self, store_id: &str) -> Result<Option<StoredModel>, StoreError> {
        check_input("store id", store_id)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {MODEL_COLUMNS} FROM authorization_models m \
             JOIN fga_stores s ON s.id = m.store_id AND s.deleted_at IS NULL \
             WHERE m.store_id = ? ORDER BY m.id DESC LIMIT 1"
        )))
        .bind(store_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(model_from_row).transpose()
    }

    async fn list_models(
        &self,
        store_id: &str,
        page_size: u32,
        continuation: Option<&str>,
    ) -> Result<(Vec<StoredModel>, Option<String>), StoreError> {
        let page = check_page_size(page_size)?;
        let before = continuation
            .map(|t| decode_models_token(t, store_id))
            .transpose()?;
        self.require_live_seq(store_id).await.map_err(db)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {MODEL_COLUMNS} FROM authorization_models m \
             WHERE m.store_id = ? AND (? IS NULL OR m.id < ?) ORDER BY m.id DESC LIMIT ?"
        )))
        .bind(store_id)
        .bind(before.as_deref())
        .bind(before.as_deref())
        .bind(page + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let models = rows
            .iter()
            .map(model_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(models, page, |m| {
            encode_token(TOKEN_MODELS, &[store_id, &m.id])
        }))
    }

    async fn write_tuples(
        &self,
        store_id: &str,
        writes: &[TupleKey],
        deletes: &[TupleKey],
        options: WriteOptions,
        now: OffsetDateTime,
    ) -> Result<WriteOutcome, TupleWriteError> {
        check_input("store id", store_id)?;
        let (writes, deletes) = check_write_request(writes, deletes)?;
        let now = normalize_time(now);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let start = Self::live_seq(&mut *tx, store_id)
            .await
            .map_err(db)?
            .ok_or_else(|| TupleWriteError::StoreNotFound(store_id.to_owned()))?;
        let mut seq = start;
        for d in &deletes {
            let removed = sqlx::query(
                "DELETE FROM relation_tuples WHERE store_id = ? AND object_type = ? \
                 AND object_id = ? AND relation = ? AND tuple_user = ? \
                 RETURNING condition_name, condition_context",
            )
            .bind(store_id)
            .bind(d.object_type)
            .bind(d.object_id)
            .bind(&d.tuple.relation)
            .bind(&d.tuple.user)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            let Some(removed) = removed else {
                match options.on_missing {
                    OnMissing::Error => return Err(TupleWriteError::does_not_exist(d.tuple)),
                    OnMissing::Ignore => continue,
                }
            };
            let name: Option<String> = removed.try_get("condition_name").map_err(db)?;
            let context: Option<String> = removed.try_get("condition_context").map_err(db)?;
            seq += 1;
            append_change(
                &mut tx,
                store_id,
                seq,
                TupleOperation::Delete,
                d,
                (name.as_deref(), context.as_deref()),
                now,
            )
            .await
            .map_err(db)?;
        }
        for w in &writes {
            let inserted = sqlx::query(
                "INSERT INTO relation_tuples (store_id, object_type, object_id, relation, \
                 tuple_user, condition_name, condition_context, written_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(store_id)
            .bind(w.object_type)
            .bind(w.object_id)
            .bind(&w.tuple.relation)
            .bind(&w.tuple.user)
            .bind(w.tuple.condition_name())
            .bind(w.context_json.as_deref())
            .bind(unix_micros(now))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected()
                == 1;
            if !inserted {
                if options.on_duplicate == OnDuplicate::Error {
                    return Err(TupleWriteError::already_exists(w.tuple));
                }
                let existing = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {TUPLE_COLUMNS} FROM relation_tuples WHERE store_id = ? \
                     AND object_type = ? AND object_id = ? AND relation = ? AND tuple_user = ?"
                )))
                .bind(store_id)
                .bind(w.object_type)
                .bind(w.object_id)
                .bind(&w.tuple.relation)
                .bind(&w.tuple.user)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                if tuple_from_row(&existing)?.same_condition(w.tuple) {
                    continue;
                }
                return Err(TupleWriteError::condition_conflict(w.tuple));
            }
            seq += 1;
            append_change(
                &mut tx,
                store_id,
                seq,
                TupleOperation::Write,
                w,
                (w.tuple.condition_name(), w.context_json.as_deref()),
                now,
            )
            .await
            .map_err(db)?;
        }
        if seq != start {
            sqlx::query("UPDATE fga_stores SET last_seq = ? WHERE id = ?")
                .bind(seq)
                .bind(store_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(WriteOutcome { seq })
    }

    async fn read_tuples(
        &self,
        store_id: &str,
        filter: &TupleFilter,
        page_size: u32,
        continuation: Option<&str>,
    ) -> Result<(Vec<StoredTuple>, Option<String>), StoreError> {
        check_input("store id", store_id)?;
        check_filter(filter)?;
        let page = check_page_size(page_size)?;
        let after = continuation
            .map(|t| decode_tuples_token(t, store_id))
            .transpose()?;
        self.require_live_seq(store_id).await.map_err(db)?;

        let conditions = [
            (&filter.object_type, " AND object_type = ?"),
            (&filter.object_id, " AND object_id = ?"),
            (&filter.relation, " AND relation = ?"),
            (&filter.user, " AND tuple_user = ?"),
        ];
        let mut sql =
            format!("SELECT {TUPLE_COLUMNS}, written_at FROM relation_tuples WHERE store_id = ?");
        for (value, clause) in &conditions {
            if value.is_some() {
                sql.push_str(clause);
            }
        }
        if after.is_some() {
            sql.push_str(" AND (object_type, object_id, relation, tuple_user) > (?, ?, ?, ?)");
        }
        sql.push_str(" ORDER BY object_type, object_id, relation, tuple_user LIMIT ?");

        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(store_id);
        for (value, _) in conditions {
            if let Some(v) = value {
                query = query.bind(v.as_str());
            }
        }
        if let Some(key) = &after {
            for part in key {
                query = query.bind(part.as_str());
            }
        }
        let rows = query
            .bind(page + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let tuples = rows
            .iter()
            .map(|r| {
                Ok(StoredTuple {
                    tuple: tuple_from_row(r)?,
                    timestamp: from_unix_micros(r.try_get("written_at").map_err(db)?)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(finish_page(tuples, page, |t| {
            encode_tuples_token(store_id, &t.tuple)
        }))
    }

    async fn read_changes(
        &self,
        store_id: &str,
        object_type: Option<&str>,
        start_time: Option<OffsetDateTime>,
        page_size: u32,
        continuation: Option<&str>,
    ) -> Result<(Vec<TupleChangeRecord>, String), StoreError> {
        check_input("store id", store_id)?;
        if let Some(t) = object_type {
            check_input("object type", t)?;
        }
        let page = check_page_size(page_size)?;
        let after = continuation
            .map(|t| decode_changes_token(t, store_id, object_type))
            .transpose()?;
        // Every change up to `end` is committed; reading no further keeps the token exact.
        let end = self.require_live_seq(store_id).await.map_err(db)?;

        let mut sql = format!(
            "SELECT {CHANGE_COLUMNS} FROM tuple_changes WHERE store_id = ? AND seq > ? AND seq <= ?"
        );
        if object_type.is_some() {
            sql.push_str(" AND object_type = ?");
        }
        let since = match (after, start_time) {
            (None, Some(t)) => Some(unix_micros(normalize_time(t))),
            _ => None,
        };
        if since.is_some() {
            sql.push_str(" AND changed_at >= ?");
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        let after = after.unwrap_or(0);
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(store_id)
            .bind(after)
            .bind(end);
        if let Some(t) = object_type {
            query = query.bind(t);
        }
        if let Some(s) = since {
            query = query.bind(s);
        }
        let rows = query.bind(page).fetch_all(&self.pool).await.map_err(db)?;
        let changes = rows
            .iter()
            .map(change_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let resume = match changes.last() {
            Some(last) if i64::try_from(changes.len()).unwrap_or(i64::MAX) >= page => last.seq,
            _ => end.max(after),
        };
        Ok((changes, encode_changes_token(store_id, object_type, resume)))
    }

    async fn load_tuples(&self, store_id: &str) -> Result<TupleSnapshot, StoreError> {
        check_input("store id", store_id)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let seq = Self::live_seq(&mut *tx, store_id)
            .await
            .map_err(db)?
            .ok_or_else(|| store_not_found(store_id))?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TUPLE_COLUMNS} FROM relation_tuples WHERE store_id = ? \
             ORDER BY object_type, object_id, relation, tuple_user"
        )))
        .bind(store_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let tuples = rows.iter().map(tuple_from_row).collect::<Result<_, _>>()?;
        Ok(TupleSnapshot { tuples, seq })
    }

    async fn changes_since(
        &self,
        store_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<TupleChangeRecord>, StoreError> {
        let limit = check_page_size(limit)?;
        if after_seq < 0 {
            return Err(StoreError::InvalidInput(format!(
                "sequence numbers start at 0, not {after_seq}"
            )));
        }
        self.require_live_seq(store_id).await.map_err(db)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CHANGE_COLUMNS} FROM tuple_changes WHERE store_id = ? AND seq > ? \
             ORDER BY seq LIMIT ?"
        )))
        .bind(store_id)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(change_from_row).collect()
    }

    async fn store_seq(&self, store_id: &str) -> Result<i64, StoreError> {
        self.require_live_seq(store_id).await
    }
}
