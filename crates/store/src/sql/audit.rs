//! [`AuditStore`]: the audit trail's two hash chains and their anchors.
//!
//! An append runs in one write transaction: it reads the chain's head row (on PostgreSQL
//! `FOR UPDATE`, so replicas appending to the same database take turns; SQLite's writer
//! transaction already serializes), gives each event the next position, its predecessor's hash
//! and its own ([`record_hash`]), inserts them with multi-row statements and advances the head.
//! A batch reads the head once, not once per event. Anchors are numbered under the same head
//! lock, and a truncation checks, deletes and anchors in one transaction.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{Arg, Database, Query, Row, RowLock, SqlStore, Tx, TxMode, args};
use crate::accounts::{
    AuditEvent, AuditFilter, AuditStore, check_audit_event, check_audit_filter, check_optional,
    object_from_text,
};
use crate::relationships::{check_input, check_page_size, normalize_time};
use trustgate_store_api::audit::MAX_ANCHOR_BYTES;
use trustgate_store_api::{
    AnchorKind, AuditAnchor, AuditChain, AuditRecord, ChainHead, Conflict, StoreError, record_hash,
};

/// Parameters of one audit event in an INSERT.
const AUDIT_INSERT_PARAMS: usize = 15;

const AUDIT_COLUMNS: &str = "id, at, chain, kind, outcome, actor, user_id, ip, user_agent, \
                             request_id, resource, detail, seq, prev_hash, hash";

const ANCHOR_COLUMNS: &str = "chain, number, seq, hash, kind, at, kid, jws, sealed_key";

/// The multi-row INSERT for up to `remaining` audit events and how many rows it takes. Batches
/// are cut into a few fixed sizes (64, 32, …, 1 rows), so a handful of statements are prepared
/// once and reused, whatever the batch sizes; 64 rows are 960 parameters, far below SQLite's
/// 32,766 and PostgreSQL's 65,535.
fn audit_insert(remaining: usize) -> (&'static str, usize) {
    static STATEMENTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    const SIZES: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];
    let statements = STATEMENTS.get_or_init(|| {
        SIZES
            .iter()
            .map(|&rows| {
                let values: Vec<String> = (0..rows)
                    .map(|row| {
                        let params: Vec<String> = (1..=AUDIT_INSERT_PARAMS)
                            .map(|column| format!("${}", row * AUDIT_INSERT_PARAMS + column))
                            .collect();
                        format!("({})", params.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES {}",
                    values.join(", ")
                )
            })
            .collect()
    });
    let i = SIZES
        .iter()
        .position(|&rows| rows <= remaining)
        .unwrap_or(SIZES.len() - 1);
    (statements[i].as_str(), SIZES[i])
}

fn hash_from(what: &str, bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

fn chain_from(text: &str) -> Result<AuditChain, StoreError> {
    AuditChain::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown audit chain {text}")))
}

fn record_from_row(row: &impl Row) -> Result<AuditRecord, StoreError> {
    let opt_hash = |column: &str| -> Result<Option<[u8; 32]>, StoreError> {
        row.opt_bytes(column)?
            .map(|b| hash_from(column, b))
            .transpose()
    };
    Ok(AuditRecord {
        seq: row.opt_i64("seq")?,
        prev_hash: opt_hash("prev_hash")?,
        hash: opt_hash("hash")?,
        event: AuditEvent {
            id: row.text("id")?,
            at: row.time("at")?,
            chain: chain_from(row.str("chain")?)?,
            kind: row.text("kind")?,
            outcome: row.text("outcome")?,
            actor: row.opt_text("actor")?,
            user_id: row.opt_text("user_id")?,
            ip: row.opt_text("ip")?,
            user_agent: row.opt_text("user_agent")?,
            request_id: row.opt_text("request_id")?,
            resource: row.opt_text("resource")?,
            detail: object_from_text("audit detail", row.json("detail")?)?,
        },
    })
}

fn anchor_from_row(row: &impl Row) -> Result<AuditAnchor, StoreError> {
    let kind = row.str("kind")?;
    Ok(AuditAnchor {
        chain: chain_from(row.str("chain")?)?,
        number: row.i64("number")?,
        seq: row.i64("seq")?,
        hash: hash_from("anchor hash", row.bytes("hash")?)?,
        kind: AnchorKind::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown anchor kind {kind}")))?,
        at: row.time("at")?,
        kid: row.text("kid")?,
        jws: row.text("jws")?,
        sealed_key: row.bytes("sealed_key")?.to_vec(),
    })
}

fn check_anchor(anchor: &AuditAnchor) -> Result<(), StoreError> {
    check_input("anchor kid", &anchor.kid)?;
    if anchor.number < 1 || anchor.seq < 0 {
        return Err(StoreError::InvalidInput(
            "anchor numbers start at 1 and positions at 0".into(),
        ));
    }
    if anchor.jws.is_empty()
        || anchor.jws.len() > MAX_ANCHOR_BYTES
        || anchor.sealed_key.is_empty()
        || anchor.sealed_key.len() > MAX_ANCHOR_BYTES
    {
        return Err(StoreError::InvalidInput(format!(
            "anchor signature and key must be 1 to {MAX_ANCHOR_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Reads and locks the chain's head.
async fn lock_head<D: Database>(
    tx: &mut Tx<'_, D>,
    chain: AuditChain,
) -> Result<ChainHead, StoreError> {
    let row = tx
        .fetch_one(
            &format!(
                "SELECT seq, hash FROM audit_chain_heads WHERE chain = $1{}",
                D::row_lock(RowLock::Update)
            ),
            args![chain.as_str()],
        )
        .await?;
    Ok(ChainHead {
        seq: row.i64("seq")?,
        hash: hash_from("chain head hash", row.bytes("hash")?)?,
    })
}

/// Appends `events` (all of `chain`) after the locked head and advances it.
async fn append_chained<D: Database>(
    tx: &mut Tx<'_, D>,
    chain: AuditChain,
    events: &[(&AuditEvent, &String)],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut head = lock_head(tx, chain).await?;
    let mut links = Vec::with_capacity(events.len());
    for (event, _) in events {
        let seq = head.seq + 1;
        let hash = record_hash(chain, seq, &head.hash, event);
        links.push((seq, head.hash, hash));
        head = ChainHead { seq, hash };
    }
    let rows: Vec<_> = events.iter().zip(&links).collect();
    let mut rest = rows.as_slice();
    while !rest.is_empty() {
        let (sql, n) = audit_insert(rest.len());
        let (chunk, tail) = rest.split_at(n);
        let mut args: Vec<Arg<'_>> = Vec::with_capacity(n * AUDIT_INSERT_PARAMS);
        for ((event, detail), (seq, prev, hash)) in chunk {
            args.extend([
                (&event.id).into(),
                event.at.into(),
                chain.as_str().into(),
                (&event.kind).into(),
                (&event.outcome).into(),
                event.actor.as_deref().into(),
                event.user_id.as_deref().into(),
                event.ip.as_deref().into(),
                event.user_agent.as_deref().into(),
                event.request_id.as_deref().into(),
                event.resource.as_deref().into(),
                Arg::json(detail),
                (*seq).into(),
                Arg::Bytes(Some(&prev[..])),
                Arg::Bytes(Some(&hash[..])),
            ]);
        }
        tx.execute(sql, &args).await?;
        rest = tail;
    }
    tx.execute(
        "UPDATE audit_chain_heads SET seq = $2, hash = $3 WHERE chain = $1",
        &[
            chain.as_str().into(),
            head.seq.into(),
            Arg::Bytes(Some(&head.hash[..])),
        ],
    )
    .await?;
    Ok(())
}

/// Stores `anchor` as the chain's next anchor; the caller holds the head lock.
async fn insert_anchor<D: Database>(
    tx: &mut Tx<'_, D>,
    anchor: &AuditAnchor,
) -> Result<(), StoreError> {
    let last = tx
        .fetch_one(
            "SELECT COALESCE(MAX(number), 0) AS last FROM audit_anchors WHERE chain = $1",
            args![anchor.chain.as_str()],
        )
        .await?
        .i64("last")?;
    if anchor.number <= last {
        return Err(StoreError::Conflict(Conflict::Duplicate(format!(
            "anchor {} of the {} chain",
            anchor.number,
            anchor.chain.as_str()
        ))));
    }
    if anchor.number != last + 1 {
        return Err(StoreError::InvalidInput(format!(
            "the next anchor of the {} chain is number {}",
            anchor.chain.as_str(),
            last + 1
        )));
    }
    tx.execute(
        &format!(
            "INSERT INTO audit_anchors ({ANCHOR_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ),
        &[
            anchor.chain.as_str().into(),
            anchor.number.into(),
            anchor.seq.into(),
            Arg::Bytes(Some(&anchor.hash[..])),
            anchor.kind.as_str().into(),
            anchor.at.into(),
            (&anchor.kid).into(),
            (&anchor.jws).into(),
            (&anchor.sealed_key).into(),
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl<D: Database> AuditStore for SqlStore<D> {
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let detail = check_audit_event(event)?;
        let mut tx = self.begin(TxMode::Write).await?;
        append_chained(&mut tx, event.chain, &[(event, &detail)]).await?;
        tx.commit().await
    }

    async fn append_audits(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let details = events
            .iter()
            .map(check_audit_event)
            .collect::<Result<Vec<_>, _>>()?;
        let mut tx = self.begin(TxMode::Write).await?;
        // Heads are always locked in the same order, so two batches never wait on each other
        // in a cycle.
        for chain in AuditChain::ALL {
            let of_chain: Vec<(&AuditEvent, &String)> = events
                .iter()
                .zip(&details)
                .filter(|(e, _)| e.chain == chain)
                .collect();
            append_chained(&mut tx, chain, &of_chain).await?;
        }
        tx.commit().await
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        check_audit_filter(filter)?;
        let limit = check_page_size(limit)?;
        let mut query = Query::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE TRUE"
        ));
        let conditions = [
            (&filter.user_id, " AND user_id = "),
            (&filter.kind, " AND kind = "),
            (&filter.actor, " AND actor = "),
            (&filter.resource, " AND resource = "),
            (&filter.outcome, " AND outcome = "),
            (&filter.before, " AND id < "),
        ];
        for (value, clause) in conditions {
            if let Some(v) = value {
                query.push(clause).bind(v);
            }
        }
        if let Some(chain) = filter.chain {
            query.push(" AND chain = ").bind(chain.as_str());
        }
        if let Some(since) = filter.since {
            query.push(" AND at >= ").bind(normalize_time(since));
        }
        if let Some(until) = filter.until {
            query.push(" AND at < ").bind(normalize_time(until));
        }
        if let Some(after) = filter.after_seq {
            query.push(" AND seq > ").bind(after);
            query.push(" ORDER BY seq LIMIT ").bind(limit);
        } else {
            query.push(" ORDER BY id DESC LIMIT ").bind(limit);
        }
        let rows = self.fetch_all(&query.sql, &query.args).await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn audit_head(&self, chain: AuditChain) -> Result<ChainHead, StoreError> {
        let row = self
            .fetch_optional(
                "SELECT seq, hash FROM audit_chain_heads WHERE chain = $1",
                args![chain.as_str()],
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("the audit chain head is missing".into()))?;
        Ok(ChainHead {
            seq: row.i64("seq")?,
            hash: hash_from("chain head hash", row.bytes("hash")?)?,
        })
    }

    async fn audit_chain_page(
        &self,
        chain: AuditChain,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = check_page_size(limit)?;
        let rows = self
            .fetch_all(
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE chain = $1 AND seq > $2 \
                     ORDER BY seq LIMIT $3"
                ),
                args![chain.as_str(), after_seq, limit],
            )
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn audit_record_at(
        &self,
        chain: AuditChain,
        seq: i64,
    ) -> Result<Option<AuditRecord>, StoreError> {
        self.fetch_optional(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE chain = $1 AND seq = $2"),
            args![chain.as_str(), seq],
        )
        .await?
        .as_ref()
        .map(record_from_row)
        .transpose()
    }

    async fn audit_first_seq_since(
        &self,
        chain: AuditChain,
        at: OffsetDateTime,
    ) -> Result<Option<i64>, StoreError> {
        // Walks the (chain, seq) index from the oldest position and stops at the first young
        // enough event: the work is the old prefix retention deletes anyway, not the whole
        // retained chain an index on `at` would range over.
        self.fetch_optional(
            "SELECT seq FROM audit_events WHERE chain = $1 AND seq IS NOT NULL AND at >= $2 \
             ORDER BY seq LIMIT 1",
            &[chain.as_str().into(), normalize_time(at).into()],
        )
        .await?
        .map(|row| row.i64("seq"))
        .transpose()
    }

    async fn unchained_audit(
        &self,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        check_optional("after", after_id)?;
        let limit = check_page_size(limit)?;
        let rows = self
            .fetch_all(
                "SELECT id FROM audit_events WHERE seq IS NULL AND ($1 IS NULL OR id > $1) \
                 ORDER BY id LIMIT $2",
                args![after_id, limit],
            )
            .await?;
        rows.iter().map(|r| r.text("id")).collect()
    }

    async fn append_audit_anchor(&self, anchor: &AuditAnchor) -> Result<(), StoreError> {
        check_anchor(anchor)?;
        if anchor.kind != AnchorKind::Checkpoint {
            return Err(StoreError::InvalidInput(
                "a truncation anchor is stored by the truncation it states".into(),
            ));
        }
        let mut tx = self.begin(TxMode::Write).await?;
        lock_head(&mut tx, anchor.chain).await?;
        insert_anchor(&mut tx, anchor).await?;
        tx.commit().await
    }

    async fn audit_anchors(
        &self,
        chain: AuditChain,
        after_number: i64,
        limit: u32,
    ) -> Result<Vec<AuditAnchor>, StoreError> {
        let limit = check_page_size(limit)?;
        let rows = self
            .fetch_all(
                &format!(
                    "SELECT {ANCHOR_COLUMNS} FROM audit_anchors WHERE chain = $1 AND number > $2 \
                     ORDER BY number LIMIT $3"
                ),
                args![chain.as_str(), after_number, limit],
            )
            .await?;
        rows.iter().map(anchor_from_row).collect()
    }

    async fn last_audit_anchors(
        &self,
        chain: AuditChain,
    ) -> Result<(Option<AuditAnchor>, Option<AuditAnchor>), StoreError> {
        let last = self
            .fetch_optional(
                &format!(
                    "SELECT {ANCHOR_COLUMNS} FROM audit_anchors WHERE chain = $1 \
                     ORDER BY number DESC LIMIT 1"
                ),
                args![chain.as_str()],
            )
            .await?
            .as_ref()
            .map(anchor_from_row)
            .transpose()?;
        let truncation = self
            .fetch_optional(
                &format!(
                    "SELECT {ANCHOR_COLUMNS} FROM audit_anchors WHERE chain = $1 \
                     AND kind = 'truncation' ORDER BY number DESC LIMIT 1"
                ),
                args![chain.as_str()],
            )
            .await?
            .as_ref()
            .map(anchor_from_row)
            .transpose()?;
        Ok((last, truncation))
    }

    async fn truncate_audit(&self, anchor: &AuditAnchor) -> Result<u64, StoreError> {
        check_anchor(anchor)?;
        if anchor.kind != AnchorKind::Truncation || anchor.seq < 1 {
            return Err(StoreError::InvalidInput(
                "a truncation needs a truncation anchor at a stored position".into(),
            ));
        }
        let chain = anchor.chain.as_str();
        let mut tx = self.begin(TxMode::Write).await?;
        lock_head(&mut tx, anchor.chain).await?;
        let row = tx
            .fetch_optional(
                "SELECT id, hash FROM audit_events WHERE chain = $1 AND seq = $2",
                args![chain, anchor.seq],
            )
            .await?;
        let Some(row) = row else {
            return Err(StoreError::InvalidInput(format!(
                "the {chain} chain has no record at position {}",
                anchor.seq
            )));
        };
        if row.opt_bytes("hash")? != Some(&anchor.hash[..]) {
            return Err(StoreError::InvalidInput(format!(
                "the record at position {} of the {chain} chain does not have the anchored hash",
                anchor.seq
            )));
        }
        let id = row.text("id")?;
        insert_anchor(&mut tx, anchor).await?;
        let mut deleted = tx
            .execute(
                "DELETE FROM audit_events WHERE chain = $1 AND seq <= $2",
                args![chain, anchor.seq],
            )
            .await?;
        // Events from before the chains existed go with the prefix they precede.
        deleted += tx
            .execute(
                "DELETE FROM audit_events WHERE chain = $1 AND seq IS NULL AND id < $2",
                args![chain, &id],
            )
            .await?;
        // Anchors about deleted positions go too, as a prefix of the numbers (so the numbers
        // still kept have no gap): every anchor before the first checkpoint past the new start.
        tx.execute(
            "DELETE FROM audit_anchors WHERE chain = $1 AND number < COALESCE(\
             (SELECT MIN(number) FROM audit_anchors WHERE chain = $1 AND seq > $3), $2)",
            args![chain, anchor.number, anchor.seq],
        )
        .await?;
        tx.commit().await?;
        Ok(deleted)
    }
}
