//! [`RelationshipStore`]: OpenFGA stores, authorization models, tuples and the changelog.
//!
//! A tuple write locks its store's row first (`FOR UPDATE` on PostgreSQL, the write
//! transaction on SQLite) and only then reads `last_seq`, so writers of one store, on any
//! replica, queue behind each other and assign seqs without gaps in commit order; writers of
//! different stores do not contend on PostgreSQL. `load_tuples` reads the tuples and the seq
//! from one snapshot without blocking writers.
//!
//! An import batch takes the same lock and then works in multi-row statements, each as large as
//! the backend's parameter limit allows: `INSERT ... ON CONFLICT DO NOTHING RETURNING` the keys
//! it inserted, a `(key) IN (VALUES ...)` read of the others (to tell an identical tuple, which
//! is skipped, from a conflicting condition, which fails the batch), and the changelog rows of
//! the inserted tuples in input order. The store id and the time are bound once per statement.

use std::collections::HashMap;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{Arg, Database, Query, Row, RowLock, SqlStore, Tx, TxMode, args};
use crate::relationships::{
    CheckedTuple, FgaStore, ImportOutcome, MAX_IMPORT_BATCH, OnDuplicate, OnMissing,
    RelationshipStore, StoredModel, StoredTuple, TOKEN_MODELS, TOKEN_STORES, TupleChangeRecord,
    TupleFilter, TupleKey, TupleOperation, TupleSnapshot, TupleWriteError, WriteOptions,
    WriteOutcome, attributes_from_text, attributes_text, check_attribute_object, check_filter,
    check_input, check_model, check_page_size, check_write_request, context_from_text,
    decode_changes_token, decode_models_token, decode_stores_token, decode_tuples_token,
    encode_changes_token, encode_token, encode_tuples_token, finish_page, normalize_time,
    operation_from_db, store_not_found, tuple_from_parts,
};
use serde_json::{Map, Value};
use trustgate_store_api::{MAX_ATTRIBUTE_OBJECTS_PER_READ, StoreError};

const STORE_COLUMNS: &str = "id, name, created_at, updated_at, deleted_at";
const MODEL_COLUMNS: &str = "m.store_id, m.id, m.schema_version, m.model, m.created_at";
const TUPLE_COLUMNS: &str =
    "object_type, object_id, relation, tuple_user, condition_name, condition_context";
const CHANGE_COLUMNS: &str = "seq, operation, object_type, object_id, relation, tuple_user, \
                              condition_name, condition_context, changed_at";
/// The store's `last_seq` (`$1`: the store id) unless it does not exist or was deleted.
const LIVE_SEQ: &str = "SELECT last_seq FROM fga_stores WHERE id = $1 AND deleted_at IS NULL";
/// The tuple `$2..=$5` of store `$1`.
const TUPLE_KEY: &str = "store_id = $1 AND object_type = $2 AND object_id = $3 \
                         AND relation = $4 AND tuple_user = $5";

fn store_from_row(row: &impl Row) -> Result<FgaStore, StoreError> {
    Ok(FgaStore {
        id: row.text("id")?,
        name: row.text("name")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        deleted_at: row.opt_time("deleted_at")?,
    })
}

fn model_from_row(row: &impl Row) -> Result<StoredModel, StoreError> {
    Ok(StoredModel {
        id: row.text("id")?,
        store_id: row.text("store_id")?,
        schema_version: row.text("schema_version")?,
        model_json: serde_json::from_str(row.json("model")?)
            .map_err(|e| StoreError::Corrupt(format!("stored model is not JSON: {e}")))?,
        created_at: row.time("created_at")?,
    })
}

fn tuple_from_row(row: &impl Row) -> Result<TupleKey, StoreError> {
    Ok(tuple_from_parts(
        row.text("object_type")?,
        row.str("object_id")?,
        row.text("relation")?,
        row.text("tuple_user")?,
        row.opt_text("condition_name")?,
        context_from_text(row.opt_json("condition_context")?)?,
    ))
}

fn change_from_row(row: &impl Row) -> Result<TupleChangeRecord, StoreError> {
    Ok(TupleChangeRecord {
        seq: row.i64("seq")?,
        operation: operation_from_db(row.str("operation")?)?,
        tuple: tuple_from_row(row)?,
        timestamp: row.time("changed_at")?,
    })
}

/// The arguments of [`TUPLE_KEY`].
fn key_args<'a>(store_id: &'a str, t: &'a CheckedTuple<'a>) -> [Arg<'a>; 5] {
    [
        store_id.into(),
        t.object_type.into(),
        t.object_id.into(),
        (&t.tuple.relation).into(),
        (&t.tuple.user).into(),
    ]
}

impl<D: Database> SqlStore<D> {
    async fn require_live_seq(&self, store_id: &str) -> Result<i64, StoreError> {
        check_input("store id", store_id)?;
        match self.fetch_optional(LIVE_SEQ, args![store_id]).await? {
            Some(row) => row.i64("last_seq"),
            None => Err(store_not_found(store_id)),
        }
    }
}

/// Takes the writers' lock of a live store for the rest of `tx` and returns its last changelog
/// seq: the writers of one store are serialized until commit, so the changelog is in commit
/// order.
async fn lock_for_writing<D: Database>(
    tx: &mut Tx<'_, D>,
    store_id: &str,
) -> Result<i64, TupleWriteError> {
    Ok(tx
        .fetch_optional(
            &format!("{LIVE_SEQ}{}", D::row_lock(RowLock::Update)),
            args![store_id],
        )
        .await?
        .ok_or_else(|| TupleWriteError::StoreNotFound(store_id.to_owned()))?
        .i64("last_seq")?)
}

/// Ends a write begun with [`lock_for_writing`] at `start`: the store's sequence moves to `seq`
/// (if anything was appended) and the transaction commits.
async fn finish_writing<D: Database>(
    mut tx: Tx<'_, D>,
    store_id: &str,
    start: i64,
    seq: i64,
) -> Result<(), TupleWriteError> {
    if seq != start {
        tx.execute(
            "UPDATE fga_stores SET last_seq = $1 WHERE id = $2",
            args![seq, store_id],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn append_change<D: Database>(
    tx: &mut Tx<'_, D>,
    store_id: &str,
    seq: i64,
    operation: TupleOperation,
    t: &CheckedTuple<'_>,
    (condition_name, condition_context): (Option<&str>, Option<&str>),
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let [store, object_type, object_id, relation, user] = key_args(store_id, t);
    tx.execute(
        "INSERT INTO tuple_changes (store_id, seq, operation, object_type, object_id, relation, \
         tuple_user, condition_name, condition_context, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            store,
            seq.into(),
            operation.as_str().into(),
            object_type,
            object_id,
            relation,
            user,
            condition_name.into(),
            Arg::Json(condition_context),
            now.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Parameters per row of the widest import statement (the changelog's: seq and the six tuple
/// fields; the store id and the time are shared).
const IMPORT_ROW_PARAMS: usize = 7;

/// The rows of one multi-row import statement on backend `D`.
fn import_chunk_rows<D: Database>() -> usize {
    (D::MULTI_ROW_PARAMS.min(D::MAX_BIND_PARAMS) - 2) / IMPORT_ROW_PARAMS
}

/// The key fields of `t` (without the store id), for multi-row statements.
fn fields<'a>(t: &'a CheckedTuple<'_>) -> [Arg<'a>; 4] {
    let [_, object_type, object_id, relation, user] = key_args("", t);
    [object_type, object_id, relation, user]
}

/// A statement whose `$1` is the store id and `$2` the time, for multi-row statements that
/// share them.
fn shared_query<'a>(sql: &str, store_id: &'a str, now: OffsetDateTime) -> Query<'a> {
    let mut query = Query::new(sql);
    query.args.push(store_id.into());
    query.args.push(now.into());
    query
}

/// Appends `(` `values` bound as new parameters `)`, after a comma unless it is the first row.
fn push_row<'a>(query: &mut Query<'a>, first: bool, values: impl IntoIterator<Item = Arg<'a>>) {
    query.push(if first { "(" } else { ", (" });
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            query.push(", ");
        }
        query.bind(v);
    }
    query.push(")");
}

/// One chunk of an import inside the writer's transaction: inserts the new tuples, checks the
/// others and appends the changelog rows from `seq + 1`. Returns the new seq and how many
/// tuples existed.
async fn import_chunk<D: Database>(
    tx: &mut Tx<'_, D>,
    store_id: &str,
    chunk: &[CheckedTuple<'_>],
    mut seq: i64,
    now: OffsetDateTime,
) -> Result<(i64, u64), TupleWriteError> {
    let mut insert = shared_query(
        "INSERT INTO relation_tuples (store_id, object_type, object_id, relation, tuple_user, \
         condition_name, condition_context, written_at) VALUES ",
        store_id,
        now,
    );
    for (i, t) in chunk.iter().enumerate() {
        insert.push(if i == 0 { "($1, " } else { ", ($1, " });
        for v in fields(t) {
            insert.bind(v).push(", ");
        }
        insert
            .bind(t.tuple.condition_name())
            .push(", ")
            .bind(Arg::Json(t.context_json.as_deref()))
            .push(", $2)");
    }
    insert.push(" ON CONFLICT DO NOTHING RETURNING object_type, object_id, relation, tuple_user");
    // Where each key is in the chunk; RETURNING promises no order.
    let index: HashMap<(&str, &str, &str, &str), usize> = chunk
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let key = (
                t.object_type,
                t.object_id,
                t.tuple.relation.as_str(),
                t.tuple.user.as_str(),
            );
            (key, i)
        })
        .collect();
    let mut inserted = vec![false; chunk.len()];
    tx.for_each(&insert.sql, &insert.args, |row| {
        let key = (
            row.str("object_type")?,
            row.str("object_id")?,
            row.str("relation")?,
            row.str("tuple_user")?,
        );
        let i = index.get(&key).copied().ok_or_else(|| {
            StoreError::Database("an import inserted a tuple it was not given".into())
        })?;
        inserted[i] = true;
        Ok(())
    })
    .await?;

    let existing: Vec<&CheckedTuple<'_>> = chunk
        .iter()
        .zip(&inserted)
        .filter_map(|(t, new)| (!new).then_some(t))
        .collect();
    if !existing.is_empty() {
        let mut read = Query::new(format!(
            "SELECT {TUPLE_COLUMNS} FROM relation_tuples WHERE store_id = $1 \
             AND (object_type, object_id, relation, tuple_user) IN (VALUES "
        ));
        read.args.push(store_id.into());
        for (i, t) in existing.iter().enumerate() {
            push_row(&mut read, i == 0, fields(t));
        }
        read.push(")");
        let mut stored = HashMap::with_capacity(existing.len());
        tx.for_each(&read.sql, &read.args, |row| {
            let t = tuple_from_row(row)?;
            stored.insert((t.object.clone(), t.relation.clone(), t.user.clone()), t);
            Ok(())
        })
        .await?;
        for t in &existing {
            let key = (
                t.tuple.object.clone(),
                t.tuple.relation.clone(),
                t.tuple.user.clone(),
            );
            match stored.get(&key) {
                Some(s) if s.same_condition(t.tuple) => {}
                _ => return Err(TupleWriteError::condition_conflict(t.tuple)),
            }
        }
    }

    let mut changes = shared_query(
        "INSERT INTO tuple_changes (store_id, seq, operation, object_type, object_id, relation, \
         tuple_user, condition_name, condition_context, changed_at) VALUES ",
        store_id,
        now,
    );
    let mut first = true;
    for (t, _) in chunk.iter().zip(&inserted).filter(|(_, new)| **new) {
        seq += 1;
        changes.push(if first { "($1, " } else { ", ($1, " });
        first = false;
        changes
            .bind(seq)
            .push(&format!(", '{}'", TupleOperation::Write.as_str()));
        for v in fields(t) {
            changes.push(", ").bind(v);
        }
        changes
            .push(", ")
            .bind(t.tuple.condition_name())
            .push(", ")
            .bind(Arg::Json(t.context_json.as_deref()))
            .push(", $2)");
    }
    if !first {
        tx.execute(&changes.sql, &changes.args).await?;
    }
    Ok((seq, existing.len() as u64))
}

#[async_trait]
impl<D: Database> RelationshipStore for SqlStore<D> {
    async fn create_fga_store(
        &self,
        id: &str,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<FgaStore, StoreError> {
        check_input("store id", id)?;
        check_input("store name", name)?;
        let now = normalize_time(now);
        self.execute(
            "INSERT INTO fga_stores (id, name, last_seq, created_at, updated_at) \
             VALUES ($1, $2, 0, $3, $3)",
            args![id, name, now],
        )
        .await?;
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
        let row = self
            .fetch_optional(
                &format!(
                    "SELECT {STORE_COLUMNS} FROM fga_stores WHERE id = $1 AND deleted_at IS NULL"
                ),
                args![id],
            )
            .await?;
        row.as_ref().map(store_from_row).transpose()
    }

    async fn list_fga_stores(
        &self,
        page_size: u32,
        continuation: Option<&str>,
        name: Option<&str>,
    ) -> Result<(Vec<FgaStore>, Option<String>), StoreError> {
        let page = check_page_size(page_size)?;
        let after = continuation.map(decode_stores_token).transpose()?;
        if let Some(name) = name {
            check_input("store name", name)?;
        }
        let rows = self
            .fetch_all(
                &format!(
                    "SELECT {STORE_COLUMNS} FROM fga_stores \
                     WHERE deleted_at IS NULL AND ($1 IS NULL OR id > $1) \
                     AND ($3 IS NULL OR name = $3) ORDER BY id LIMIT $2"
                ),
                args![after.as_deref(), page + 1, name],
            )
            .await?;
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
        let mut tx = self.begin(TxMode::Write).await?;
        let deleted = tx
            .execute(
                "UPDATE fga_stores SET deleted_at = $1, updated_at = $1 \
                 WHERE id = $2 AND deleted_at IS NULL",
                args![normalize_time(now), id],
            )
            .await?;
        tx.execute(
            "DELETE FROM object_attributes WHERE store_id = $1",
            args![id],
        )
        .await?;
        tx.commit().await?;
        Ok(deleted == 1)
    }

    async fn live_store_seqs(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self
            .fetch_all(
                "SELECT id, last_seq FROM fga_stores WHERE deleted_at IS NULL ORDER BY id",
                args![],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.text("id")?, r.i64("last_seq")?)))
            .collect()
    }

    async fn write_model(&self, model: &StoredModel) -> Result<(), StoreError> {
        let json = check_model(model)?;
        let inserted = self
            .execute(
                "INSERT INTO authorization_models (store_id, id, schema_version, model, \
                 created_at) SELECT $1, $2, $3, $4, $5 \
                 WHERE EXISTS (SELECT 1 FROM fga_stores WHERE id = $1 AND deleted_at IS NULL)",
                &[
                    (&model.store_id).into(),
                    (&model.id).into(),
                    (&model.schema_version).into(),
                    Arg::json(&json),
                    normalize_time(model.created_at).into(),
                ],
            )
            .await?;
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
        let row = self
            .fetch_optional(
                &format!(
                    "SELECT {MODEL_COLUMNS} FROM authorization_models m \
                     JOIN fga_stores s ON s.id = m.store_id AND s.deleted_at IS NULL \
                     WHERE m.store_id = $1 AND m.id = $2"
                ),
                args![store_id, model_id],
            )
            .await?;
        row.as_ref().map(model_from_row).transpose()
    }

    async fn latest_model(&self, store_id: &str) -> Result<Option<StoredModel>, StoreError> {
        check_input("store id", store_id)?;
        let row = self
            .fetch_optional(
                &format!(
                    "SELECT {MODEL_COLUMNS} FROM authorization_models m \
                     JOIN fga_stores s ON s.id = m.store_id AND s.deleted_at IS NULL \
                     WHERE m.store_id = $1 ORDER BY m.id DESC LIMIT 1"
                ),
                args![store_id],
            )
            .await?;
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
        self.require_live_seq(store_id).await?;
        let rows = self
            .fetch_all(
                &format!(
                    "SELECT {MODEL_COLUMNS} FROM authorization_models m \
                     WHERE m.store_id = $1 AND ($2 IS NULL OR m.id < $2) \
                     ORDER BY m.id DESC LIMIT $3"
                ),
                args![store_id, before.as_deref(), page + 1],
            )
            .await?;
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
        let mut tx = self.begin(TxMode::Write).await?;
        let start = lock_for_writing(&mut tx, store_id).await?;
        let mut seq = start;
        for d in &deletes {
            let removed = tx
                .fetch_optional(
                    &format!(
                        "DELETE FROM relation_tuples WHERE {TUPLE_KEY} \
                         RETURNING condition_name, condition_context"
                    ),
                    &key_args(store_id, d),
                )
                .await?;
            let Some(removed) = removed else {
                match options.on_missing {
                    OnMissing::Error => return Err(TupleWriteError::does_not_exist(d.tuple)),
                    OnMissing::Ignore => continue,
                }
            };
            let condition = (
                removed.opt_str("condition_name")?,
                removed.opt_json("condition_context")?,
            );
            seq += 1;
            append_change(
                &mut tx,
                store_id,
                seq,
                TupleOperation::Delete,
                d,
                condition,
                now,
            )
            .await?;
        }
        for w in &writes {
            let [store, object_type, object_id, relation, user] = key_args(store_id, w);
            let inserted = tx
                .execute(
                    "INSERT INTO relation_tuples (store_id, object_type, object_id, relation, \
                     tuple_user, condition_name, condition_context, written_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                    &[
                        store,
                        object_type,
                        object_id,
                        relation,
                        user,
                        w.tuple.condition_name().into(),
                        Arg::Json(w.context_json.as_deref()),
                        now.into(),
                    ],
                )
                .await?
                == 1;
            if !inserted {
                if options.on_duplicate == OnDuplicate::Error {
                    return Err(TupleWriteError::already_exists(w.tuple));
                }
                let existing = tx
                    .fetch_one(
                        &format!("SELECT {TUPLE_COLUMNS} FROM relation_tuples WHERE {TUPLE_KEY}"),
                        &key_args(store_id, w),
                    )
                    .await?;
                if tuple_from_row(&existing)?.same_condition(w.tuple) {
                    continue;
                }
                return Err(TupleWriteError::condition_conflict(w.tuple));
            }
            seq += 1;
            let condition = (w.tuple.condition_name(), w.context_json.as_deref());
            append_change(
                &mut tx,
                store_id,
                seq,
                TupleOperation::Write,
                w,
                condition,
                now,
            )
            .await?;
        }
        finish_writing(tx, store_id, start, seq).await?;
        Ok(WriteOutcome { seq })
    }

    async fn import_tuples(
        &self,
        store_id: &str,
        tuples: &[TupleKey],
        now: OffsetDateTime,
    ) -> Result<ImportOutcome, TupleWriteError> {
        check_input("store id", store_id)?;
        if tuples.len() > MAX_IMPORT_BATCH {
            return Err(TupleWriteError::InvalidInput(format!(
                "an import batch holds at most {MAX_IMPORT_BATCH} tuples, not {}",
                tuples.len()
            )));
        }
        let (tuples, _) = check_write_request(tuples, &[])?;
        let now = normalize_time(now);
        let mut tx = self.begin(TxMode::Write).await?;
        let start = lock_for_writing(&mut tx, store_id).await?;
        let mut seq = start;
        let mut existing = 0;
        for chunk in tuples.chunks(import_chunk_rows::<D>()) {
            let (next, skipped) = import_chunk(&mut tx, store_id, chunk, seq, now).await?;
            seq = next;
            existing += skipped;
        }
        finish_writing(tx, store_id, start, seq).await?;
        Ok(ImportOutcome {
            seq,
            written: u64::try_from(seq - start).unwrap_or(0),
            existing,
        })
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
        self.require_live_seq(store_id).await?;

        let mut query = Query::new(format!(
            "SELECT {TUPLE_COLUMNS}, written_at FROM relation_tuples WHERE store_id = "
        ));
        query.bind(store_id);
        let conditions = [
            (&filter.object_type, " AND object_type = "),
            (&filter.object_id, " AND object_id = "),
            (&filter.relation, " AND relation = "),
            (&filter.user, " AND tuple_user = "),
        ];
        for (value, clause) in conditions {
            if let Some(v) = value {
                query.push(clause).bind(v);
            }
        }
        if let Some([object_type, object_id, relation, user]) = &after {
            query
                .push(" AND (object_type, object_id, relation, tuple_user) > (")
                .bind(object_type)
                .push(", ")
                .bind(object_id)
                .push(", ")
                .bind(relation)
                .push(", ")
                .bind(user)
                .push(")");
        }
        query
            .push(" ORDER BY object_type, object_id, relation, tuple_user LIMIT ")
            .bind(page + 1);
        let rows = self.fetch_all(&query.sql, &query.args).await?;
        let tuples = rows
            .iter()
            .map(|r| {
                Ok(StoredTuple {
                    tuple: tuple_from_row(r)?,
                    timestamp: r.time("written_at")?,
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
        let end = self.require_live_seq(store_id).await?;
        let since = match (after, start_time) {
            (None, Some(t)) => Some(normalize_time(t)),
            _ => None,
        };
        let after = after.unwrap_or(0);

        let mut query = Query::new(format!(
            "SELECT {CHANGE_COLUMNS} FROM tuple_changes WHERE store_id = "
        ));
        query
            .bind(store_id)
            .push(" AND seq > ")
            .bind(after)
            .push(" AND seq <= ")
            .bind(end);
        if let Some(t) = object_type {
            query.push(" AND object_type = ").bind(t);
        }
        if let Some(s) = since {
            query.push(" AND changed_at >= ").bind(s);
        }
        query.push(" ORDER BY seq LIMIT ").bind(page);
        let rows = self.fetch_all(&query.sql, &query.args).await?;
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
        let mut tx = self.begin(TxMode::Snapshot).await?;
        let seq = tx
            .fetch_optional(LIVE_SEQ, args![store_id])
            .await?
            .ok_or_else(|| store_not_found(store_id))?
            .i64("last_seq")?;
        let mut tuples = Vec::new();
        tx.for_each(
            &format!(
                "SELECT {TUPLE_COLUMNS} FROM relation_tuples WHERE store_id = $1 \
                 ORDER BY object_type, object_id, relation, tuple_user"
            ),
            args![store_id],
            |row| {
                tuples.push(tuple_from_row(row)?);
                Ok(())
            },
        )
        .await?;
        tx.commit().await?;
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
        self.require_live_seq(store_id).await?;
        let rows = self
            .fetch_all(
                &format!(
                    "SELECT {CHANGE_COLUMNS} FROM tuple_changes WHERE store_id = $1 AND seq > $2 \
                     ORDER BY seq LIMIT $3"
                ),
                args![store_id, after_seq, limit],
            )
            .await?;
        rows.iter().map(change_from_row).collect()
    }

    async fn store_seq(&self, store_id: &str) -> Result<i64, StoreError> {
        self.require_live_seq(store_id).await
    }

    async fn put_object_attributes(
        &self,
        store_id: &str,
        object: &str,
        attributes: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        check_input("store id", store_id)?;
        check_attribute_object(object)?;
        let json = attributes_text(attributes)?;
        let written = self
            .execute(
                "INSERT INTO object_attributes (store_id, object, attributes, updated_at) \
                 SELECT $1, $2, $3, $4 \
                 WHERE EXISTS (SELECT 1 FROM fga_stores WHERE id = $1 AND deleted_at IS NULL) \
                 ON CONFLICT (store_id, object) \
                 DO UPDATE SET attributes = excluded.attributes, updated_at = excluded.updated_at",
                &[
                    store_id.into(),
                    object.into(),
                    Arg::json(&json),
                    normalize_time(now).into(),
                ],
            )
            .await?;
        if written == 0 {
            return Err(store_not_found(store_id));
        }
        Ok(())
    }

    async fn get_object_attributes(
        &self,
        store_id: &str,
        objects: &[&str],
    ) -> Result<Vec<(String, Map<String, Value>)>, StoreError> {
        if objects.len() > MAX_ATTRIBUTE_OBJECTS_PER_READ {
            return Err(StoreError::InvalidInput(format!(
                "at most {MAX_ATTRIBUTE_OBJECTS_PER_READ} objects a read, not {}",
                objects.len()
            )));
        }
        for object in objects {
            check_attribute_object(object)?;
        }
        let mut tx = self.begin(TxMode::Snapshot).await?;
        tx.fetch_optional(LIVE_SEQ, args![store_id])
            .await?
            .ok_or_else(|| store_not_found(store_id))?;
        let mut out = Vec::new();
        if !objects.is_empty() {
            let mut query =
                Query::new("SELECT object, attributes FROM object_attributes WHERE store_id = ");
            query.bind(store_id).push(" AND object IN (");
            for (i, object) in objects.iter().enumerate() {
                if i > 0 {
                    query.push(", ");
                }
                query.bind(*object);
            }
            query.push(") ORDER BY object");
            tx.for_each(&query.sql, &query.args, |row| {
                out.push((
                    row.text("object")?,
                    attributes_from_text(row.json("attributes")?)?,
                ));
                Ok(())
            })
            .await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn has_object_attributes(&self, store_id: &str) -> Result<bool, StoreError> {
        check_input("store id", store_id)?;
        Ok(self
            .fetch_optional(
                "SELECT 1 AS one FROM object_attributes WHERE store_id = $1 LIMIT 1",
                args![store_id],
            )
            .await?
            .is_some())
    }

    async fn delete_object_attributes(
        &self,
        store_id: &str,
        object: &str,
    ) -> Result<bool, StoreError> {
        check_attribute_object(object)?;
        self.require_live_seq(store_id).await?;
        let deleted = self
            .execute(
                "DELETE FROM object_attributes WHERE store_id = $1 AND object = $2",
                args![store_id, object],
            )
            .await?;
        Ok(deleted > 0)
    }
}
