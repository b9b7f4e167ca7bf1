//! The chains' anchors, retention and verification.
//!
//! The store chains every event as it appends it (see `trustgate_store_api::audit`); this
//! module adds what needs a signing key:
//!
//! - [`Chains::anchor_due`] signs a checkpoint of a chain's head every
//!   [`ChainConfig::anchor_every_events`] events or [`ChainConfig::anchor_every`], whichever
//!   comes first (EdDSA, with the signing keys of `trustgate-tokens`; the anchor keeps the
//!   signing key's public JWK sealed with the secrets key, so it stays verifiable after the key
//!   has left the JWKS). Rewriting the chain (recomputing every hash) or cutting its tail no
//!   longer matches an anchor.
//! - [`Chains::apply_retention`] deletes the oldest events of the streamed chain by prefix,
//!   each step under a signed truncation anchor "everything up to S is gone; S had hash H".
//! - [`Chains::verify`] walks the anchors and the records of both chains page by page with
//!   bounded memory and work per call, and reports every problem with its chain, position, id
//!   and a stable code.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use trustgate_core::{Clock, SealingKey};
use trustgate_store_api::audit::{hex, parse_hash};
use trustgate_store_api::{
    AnchorKind, AuditAnchor, AuditChain, AuditStore, Conflict, GENESIS_HASH, StoreError,
    record_hash,
};
use trustgate_tokens::{
    Algorithm, Expectation, JwkSetResolver, KeyError, KeyManager, KeyResolver, VerificationKey,
};

use crate::{AuditKind, Delivery};

/// The `typ` of an anchor's JWS.
pub const ANCHOR_TYP: &str = "audit-anchor+jwt";
/// The `iss` of an anchor's JWS (independent of the configured issuer, which may change).
pub const ANCHOR_ISSUER: &str = "urn:trustgate:audit";
/// The sealing purpose of an anchor's public key.
const KEY_PURPOSE: &str = "audit-anchor-key";
/// Records deleted under one truncation anchor (one transaction).
const RETENTION_STEP: i64 = 20_000;
/// Truncation steps of one retention run.
const RETENTION_MAX_STEPS: u32 = 1_000;
/// Rows read per query while verifying.
const VERIFY_PAGE: u32 = 1_000;
/// Problems reported per call; more are counted.
pub const MAX_PROBLEMS: usize = 100;

/// When anchors are written.
#[derive(Debug, Clone, Copy)]
pub struct ChainConfig {
    /// A checkpoint after this many events of a chain.
    pub anchor_every_events: i64,
    /// A checkpoint after this long, if a chain has grown at all.
    pub anchor_every: time::Duration,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            anchor_every_events: 10_000,
            anchor_every: time::Duration::seconds(60),
        }
    }
}

/// Why an anchor could not be written or a verification could not run.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed.
    #[error("cannot sign an audit anchor: {0}")]
    Keys(#[from] KeyError),
    /// A verification cursor this server did not issue.
    #[error("invalid verification cursor")]
    InvalidCursor,
}

/// The claims of an anchor's JWS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct AnchorClaims {
    iss: String,
    iat: i64,
    chain: String,
    n: i64,
    seq: i64,
    hash: String,
    kind: String,
}

/// Anchoring, retention and verification of the audit chains. Cheap to clone.
#[derive(Clone)]
pub struct Chains {
    store: Arc<dyn AuditStore>,
    keys: KeyManager,
    sealing: SealingKey,
    clock: Arc<dyn Clock>,
    config: ChainConfig,
}

impl std::fmt::Debug for Chains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chains")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The chain a kind's events are appended to.
pub fn chain_of(kind: AuditKind) -> AuditChain {
    match kind.delivery() {
        Delivery::Recorded => AuditChain::Recorded,
        Delivery::Streamed => AuditChain::Streamed,
    }
}

impl Chains {
    /// Anchoring and verification over `store`, signing with `keys`; `sealing` is the secrets
    /// key that seals the anchors' public keys.
    pub fn new(
        store: Arc<dyn AuditStore>,
        keys: KeyManager,
        sealing: SealingKey,
        clock: Arc<dyn Clock>,
        config: ChainConfig,
    ) -> Self {
        Self {
            store,
            keys,
            sealing,
            clock,
            config,
        }
    }

    fn sign(
        &self,
        chain: AuditChain,
        number: i64,
        seq: i64,
        hash: [u8; 32],
        kind: AnchorKind,
    ) -> Result<AuditAnchor, ChainError> {
        let at = self.clock.now();
        let claims = AnchorClaims {
            iss: ANCHOR_ISSUER.to_owned(),
            iat: at.unix_timestamp(),
            chain: chain.as_str().to_owned(),
            n: number,
            seq,
            hash: hex(&hash),
            kind: kind.as_str().to_owned(),
        };
        let signed = self
            .keys
            .sign_with_key(Algorithm::EdDSA, ANCHOR_TYP, &claims)?;
        let jwk =
            serde_json::to_vec(&signed.public_jwk).map_err(|e| KeyError::Claims(e.to_string()))?;
        Ok(AuditAnchor {
            chain,
            number,
            seq,
            hash,
            kind,
            at,
            kid: signed.kid,
            jws: signed.token,
            sealed_key: self.sealing.seal(KEY_PURPOSE, &jwk),
        })
    }

    /// Signs a checkpoint of every chain that has grown by
    /// [`ChainConfig::anchor_every_events`] events, or at all for
    /// [`ChainConfig::anchor_every`], since its last anchor. Another replica anchoring the same
    /// chain at once wins quietly. Returns how many anchors this call wrote.
    pub async fn anchor_due(&self) -> Result<u32, ChainError> {
        let mut written = 0;
        let now = self.clock.now();
        for chain in AuditChain::ALL {
            let head = self.store.audit_head(chain).await?;
            let (last, _) = self.store.last_audit_anchors(chain).await?;
            let (number, seq, at) = last
                .as_ref()
                .map_or((0, 0, None), |a| (a.number, a.seq, Some(a.at)));
            if head.seq <= seq {
                continue;
            }
            let due = head.seq - seq >= self.config.anchor_every_events
                || at.is_none_or(|at| now - at >= self.config.anchor_every);
            if !due {
                continue;
            }
            let anchor = self.sign(
                chain,
                number + 1,
                head.seq,
                head.hash,
                AnchorKind::Checkpoint,
            )?;
            match self.store.append_audit_anchor(&anchor).await {
                Ok(()) => written += 1,
                Err(StoreError::Conflict(Conflict::Duplicate(_))) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(written)
    }

    /// Deletes the events of `chain` older than `keep` as a prefix: every event up to the last
    /// position before the first event that is young enough, in steps of at most 20,000 under a
    /// signed truncation anchor each. Verification then starts after the newest truncation.
    /// Returns how many events were deleted.
    pub async fn apply_retention(
        &self,
        chain: AuditChain,
        keep: time::Duration,
    ) -> Result<u64, ChainError> {
        let cutoff = self.clock.now() - keep;
        let mut deleted = 0;
        for _ in 0..RETENTION_MAX_STEPS {
            let (last, truncation) = self.store.last_audit_anchors(chain).await?;
            let start = truncation.map_or(0, |t| t.seq);
            let target = match self.store.audit_first_seq_since(chain, cutoff).await? {
                Some(first_kept) => first_kept - 1,
                None => self.store.audit_head(chain).await?.seq,
            };
            if target <= start {
                break;
            }
            let upto = target.min(start + RETENTION_STEP);
            let Some(hash) = self
                .store
                .audit_record_at(chain, upto)
                .await?
                .and_then(|r| r.hash)
            else {
                // A position below the head that is not stored: the chain is damaged, and
                // verification says where. Retention does not paper over it.
                tracing::warn!(
                    chain = chain.as_str(),
                    seq = upto,
                    "audit retention stopped: position not stored"
                );
                break;
            };
            let number = last.map_or(0, |a| a.number) + 1;
            let anchor = self.sign(chain, number, upto, hash, AnchorKind::Truncation)?;
            match self.store.truncate_audit(&anchor).await {
                Ok(n) => deleted += n,
                // Another replica anchored or truncated first: look again.
                Err(StoreError::Conflict(Conflict::Duplicate(_))) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(deleted)
    }

    /// Checks an anchor: its signature (by one of our keys, or by the sealed key it carries),
    /// and that its statement is the one stored beside it.
    fn check_anchor(&self, anchor: &AuditAnchor) -> Result<(), Problem> {
        let problem = |code: &'static str, message: String| Problem {
            chain: anchor.chain,
            code,
            seq: Some(anchor.seq),
            id: None,
            anchor: Some(anchor.number),
            message,
        };
        let sealed = self
            .sealing
            .open(KEY_PURPOSE, &anchor.sealed_key)
            .and_then(|jwk| serde_json::from_slice::<Value>(&jwk).ok())
            .and_then(|jwk| JwkSetResolver::from_json(&json!({ "keys": [jwk] })).ok());
        let resolver = AnchorKeys {
            current: self.keys.resolver(),
            sealed,
        };
        let expect = Expectation {
            issuer: ANCHOR_ISSUER,
            audiences: &[],
            typ: Some(ANCHOR_TYP),
            now: self.clock.now(),
            leeway: time::Duration::ZERO,
            require_exp: false,
            check_expiry: false,
        };
        let verified = trustgate_tokens::verify::<AnchorClaims>(&anchor.jws, &resolver, &expect)
            .map_err(|e| {
                problem(
                    "anchor_signature_invalid",
                    format!(
                        "anchor {} does not verify with a known key ({})",
                        anchor.number,
                        e.code()
                    ),
                )
            })?;
        let stated = verified.claims;
        let expected = AnchorClaims {
            iss: ANCHOR_ISSUER.to_owned(),
            iat: stated.iat,
            chain: anchor.chain.as_str().to_owned(),
            n: anchor.number,
            seq: anchor.seq,
            hash: hex(&anchor.hash),
            kind: anchor.kind.as_str().to_owned(),
        };
        if stated != expected || verified.kid != anchor.kid {
            return Err(problem(
                "anchor_statement_mismatch",
                format!(
                    "anchor {} was signed for {} {} at seq {} with hash {}, not what is stored \
                     beside it",
                    anchor.number, stated.chain, stated.kind, stated.seq, stated.hash
                ),
            ));
        }
        Ok(())
    }

    /// Verifies from `cursor` (`None`: from the start) for at most `budget` rows (records,
    /// anchors and unchained events read), and returns what it found and where to continue.
    pub async fn verify(
        &self,
        cursor: Option<&str>,
        budget: u32,
    ) -> Result<VerifyPage, ChainError> {
        let mut state = match cursor {
            Some(c) => VerifyState::decode(c)?,
            None => VerifyState::start(),
        };
        let mut page = VerifyPage::default();
        let mut budget = i64::from(budget.max(1));
        while budget > 0 && !matches!(state.phase, Phase::Done) {
            let used = self.step(&mut state, &mut page, budget).await?;
            budget -= used.max(1);
        }
        page.done = matches!(state.phase, Phase::Done);
        page.cursor = (!page.done).then(|| state.encode());
        Ok(page)
    }

    /// One step of the walk; returns the rows it read.
    async fn step(
        &self,
        state: &mut VerifyState,
        page: &mut VerifyPage,
        budget: i64,
    ) -> Result<i64, ChainError> {
        let limit = u32::try_from(budget.min(i64::from(VERIFY_PAGE))).unwrap_or(VERIFY_PAGE);
        match state.phase.clone() {
            Phase::Begin { chain } => {
                // Verification starts after the newest truncation, if its signature holds.
                let (_, truncation) = self.store.last_audit_anchors(chain).await?;
                let (start_seq, start_hash) = match truncation {
                    Some(t) => match self.check_anchor(&t) {
                        Ok(()) => {
                            page.starts.push(ChainStart {
                                chain,
                                seq: t.seq,
                                hash: hex(&t.hash),
                                truncated_at: Some(t.at),
                            });
                            (t.seq, t.hash)
                        }
                        Err(p) => {
                            page.report(p);
                            (0, GENESIS_HASH)
                        }
                    },
                    None => {
                        page.starts.push(ChainStart {
                            chain,
                            seq: 0,
                            hash: hex(&GENESIS_HASH),
                            truncated_at: None,
                        });
                        (0, GENESIS_HASH)
                    }
                };
                let first = self.store.audit_chain_page(chain, 0, 1).await?;
                if let Some(id) = first.first().map(|r| r.event.id.clone())
                    && state.oldest_chained.as_ref().is_none_or(|o| id < *o)
                {
                    state.oldest_chained = Some(id);
                }
                state.phase = Phase::Anchors {
                    chain,
                    start_seq,
                    start_hash: hex(&start_hash),
                    after: 0,
                    expected: None,
                };
                Ok(3)
            }
            Phase::Anchors {
                chain,
                start_seq,
                start_hash,
                after,
                expected,
            } => {
                let anchors = self.store.audit_anchors(chain, after, limit).await?;
                let mut expected = expected;
                for anchor in &anchors {
                    page.anchors_checked += 1;
                    if let Some(n) = expected
                        && anchor.number != n
                    {
                        page.report(Problem {
                            chain,
                            code: "anchors_missing",
                            seq: None,
                            id: None,
                            anchor: Some(n),
                            message: format!(
                                "anchors {n} to {} of the {} chain are missing",
                                anchor.number - 1,
                                chain.as_str()
                            ),
                        });
                    }
                    expected = Some(anchor.number + 1);
                    if let Err(p) = self.check_anchor(anchor) {
                        page.report(p);
                        continue;
                    }
                    if anchor.seq <= start_seq {
                        continue;
                    }
                    match self.store.audit_record_at(chain, anchor.seq).await? {
                        None => page.report(Problem {
                            chain,
                            code: "anchored_record_missing",
                            seq: Some(anchor.seq),
                            id: None,
                            anchor: Some(anchor.number),
                            message: format!(
                                "anchor {} signed seq {} of the {} chain, which is not stored: \
                                 the chain was cut or the record deleted",
                                anchor.number,
                                anchor.seq,
                                chain.as_str()
                            ),
                        }),
                        Some(record) if record.hash != Some(anchor.hash) => {
                            page.report(Problem {
                                chain,
                                code: "anchor_hash_mismatch",
                                seq: Some(anchor.seq),
                                id: Some(record.event.id),
                                anchor: Some(anchor.number),
                                message: format!(
                                    "anchor {} signed hash {} for seq {}, the chain has another: \
                                     the chain was rewritten",
                                    anchor.number,
                                    hex(&anchor.hash),
                                    anchor.seq
                                ),
                            });
                        }
                        Some(_) => {}
                    }
                }
                let read = i64::try_from(anchors.len()).unwrap_or(i64::MAX);
                state.phase = match anchors.last() {
                    Some(last) if anchors.len() == limit as usize => Phase::Anchors {
                        chain,
                        start_seq,
                        start_hash,
                        after: last.number,
                        expected,
                    },
                    _ => Phase::Records {
                        chain,
                        next_seq: start_seq + 1,
                        prev_hash: start_hash,
                    },
                };
                Ok(read)
            }
            Phase::Records {
                chain,
                next_seq,
                prev_hash,
            } => {
                let records = self
                    .store
                    .audit_chain_page(chain, next_seq - 1, limit)
                    .await?;
                let mut next = next_seq;
                let mut prev = parse_hash(&prev_hash).ok_or(ChainError::InvalidCursor)?;
                for record in &records {
                    page.records_checked += 1;
                    let (Some(seq), Some(stored_prev), Some(hash)) =
                        (record.seq, record.prev_hash, record.hash)
                    else {
                        continue;
                    };
                    let problem = |code, message| Problem {
                        chain,
                        code,
                        seq: Some(seq),
                        id: Some(record.event.id.clone()),
                        anchor: None,
                        message,
                    };
                    let gap = seq > next;
                    if gap {
                        page.report(Problem {
                            chain,
                            code: "records_missing",
                            seq: Some(next),
                            id: None,
                            anchor: None,
                            message: format!(
                                "seq {next} to {} of the {} chain are missing (deleted)",
                                seq - 1,
                                chain.as_str()
                            ),
                        });
                    }
                    if record.event.chain != chain {
                        page.report(problem(
                            "record_wrong_chain",
                            format!("seq {seq} is stored in another chain"),
                        ));
                    }
                    if let Some(kind) = AuditKind::parse(&record.event.kind)
                        && chain_of(kind) != chain
                    {
                        page.report(problem(
                            "record_wrong_chain",
                            format!("a {} event does not belong in this chain", kind.as_str()),
                        ));
                    }
                    if record_hash(chain, seq, &stored_prev, &record.event) != hash {
                        page.report(problem(
                            "record_hash_mismatch",
                            format!(
                                "seq {seq} (id {}) does not match its hash: edited, or moved from \
                                 another position",
                                record.event.id
                            ),
                        ));
                    } else if !gap && stored_prev != prev {
                        page.report(problem(
                            "record_link_broken",
                            format!(
                                "seq {seq} (id {}) does not link to the record before it: a \
                                 record was inserted, replaced or reordered",
                                record.event.id
                            ),
                        ));
                    }
                    prev = hash;
                    next = seq + 1;
                }
                let read = i64::try_from(records.len()).unwrap_or(i64::MAX);
                if records.len() == limit as usize {
                    state.phase = Phase::Records {
                        chain,
                        next_seq: next,
                        prev_hash: hex(&prev),
                    };
                } else {
                    let head = self.store.audit_head(chain).await?;
                    if head.seq != next - 1 || head.hash != prev {
                        page.report(Problem {
                            chain,
                            code: "head_mismatch",
                            seq: Some(head.seq),
                            id: None,
                            anchor: None,
                            message: format!(
                                "the {} chain's head is seq {} but its records end at seq {}: \
                                 records at the end were deleted or added",
                                chain.as_str(),
                                head.seq,
                                next - 1
                            ),
                        });
                    }
                    page.chains.push(ChainSummary {
                        chain,
                        last_seq: next - 1,
                        last_hash: hex(&prev),
                    });
                    state.phase = match chain {
                        AuditChain::Recorded => Phase::Begin {
                            chain: AuditChain::Streamed,
                        },
                        AuditChain::Streamed => Phase::Unchained { after: None },
                    };
                }
                Ok(read)
            }
            Phase::Unchained { after } => {
                let ids = self.store.unchained_audit(after.as_deref(), limit).await?;
                for id in &ids {
                    match &state.oldest_chained {
                        // Written before the chains existed: reported, not verifiable.
                        Some(oldest) if id < oldest => page.unchained_before_chains += 1,
                        None => page.unchained_before_chains += 1,
                        Some(_) => page.report(Problem {
                            chain: AuditChain::Recorded,
                            code: "record_unchained",
                            seq: None,
                            id: Some(id.clone()),
                            anchor: None,
                            message: format!(
                                "event {id} is in no chain but newer than the chains' start: \
                                 inserted"
                            ),
                        }),
                    }
                }
                let read = i64::try_from(ids.len()).unwrap_or(i64::MAX);
                state.phase = match ids.last() {
                    Some(last) if ids.len() == limit as usize => Phase::Unchained {
                        after: Some(last.clone()),
                    },
                    _ => Phase::Done,
                };
                Ok(read)
            }
            Phase::Done => Ok(0),
        }
    }
}

/// Our keys, then the key sealed into the anchor.
struct AnchorKeys {
    current: trustgate_tokens::PublishedKeys,
    sealed: Option<JwkSetResolver>,
}

impl KeyResolver for AnchorKeys {
    fn resolve(&self, kid: &str) -> Option<VerificationKey> {
        self.current
            .resolve(kid)
            .or_else(|| self.sealed.as_ref()?.resolve(kid))
    }
}

/// Something verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The chain.
    #[serde(serialize_with = "chain_name")]
    pub chain: AuditChain,
    /// A stable code: `record_hash_mismatch` (edited or moved), `record_link_broken`
    /// (inserted, replaced or reordered), `records_missing` (deleted), `record_unchained`
    /// (inserted outside the chain), `record_wrong_chain`, `head_mismatch` (the end was cut or
    /// extended), `anchors_missing`, `anchor_signature_invalid`, `anchor_statement_mismatch`,
    /// `anchor_hash_mismatch` (rewritten), `anchored_record_missing` (the tail was cut).
    pub code: &'static str,
    /// The position concerned.
    pub seq: Option<i64>,
    /// The event concerned.
    pub id: Option<String>,
    /// The anchor concerned.
    pub anchor: Option<i64>,
    /// What failed, for people.
    pub message: String,
}

fn chain_name<S: serde::Serializer>(chain: &AuditChain, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(chain.as_str())
}

/// Where a chain's verification starts: its beginning, or after its newest truncation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainStart {
    /// The chain.
    #[serde(serialize_with = "chain_name")]
    pub chain: AuditChain,
    /// The last position deleted by retention (0: none).
    pub seq: i64,
    /// Its hash, the predecessor of the first record kept.
    pub hash: String,
    /// When the truncation was signed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub truncated_at: Option<OffsetDateTime>,
}

/// Where a verified chain ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainSummary {
    /// The chain.
    #[serde(serialize_with = "chain_name")]
    pub chain: AuditChain,
    /// The last position read.
    pub last_seq: i64,
    /// Its hash.
    pub last_hash: String,
}

/// What one call of [`Chains::verify`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyPage {
    /// Problems found (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub more_problems: u64,
    /// Records read.
    pub records_checked: u64,
    /// Anchors read.
    pub anchors_checked: u64,
    /// Events from before the chains existed (not verifiable).
    pub unchained_before_chains: u64,
    /// Chains whose walk started in this call.
    pub starts: Vec<ChainStart>,
    /// Chains whose walk ended in this call.
    pub chains: Vec<ChainSummary>,
    /// Whether the verification is complete.
    pub done: bool,
    /// Where to continue, when not done.
    pub cursor: Option<String>,
}

impl VerifyPage {
    fn report(&mut self, problem: Problem) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.more_problems += 1;
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    Begin {
        #[serde(with = "chain_serde")]
        chain: AuditChain,
    },
    Anchors {
        #[serde(with = "chain_serde")]
        chain: AuditChain,
        start_seq: i64,
        start_hash: String,
        after: i64,
        expected: Option<i64>,
    },
    Records {
        #[serde(with = "chain_serde")]
        chain: AuditChain,
        next_seq: i64,
        prev_hash: String,
    },
    Unchained {
        after: Option<String>,
    },
    Done,
}

mod chain_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use trustgate_store_api::AuditChain;

    pub fn serialize<S: Serializer>(chain: &AuditChain, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(chain.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AuditChain, D::Error> {
        let s = String::deserialize(d)?;
        AuditChain::parse(&s).ok_or_else(|| serde::de::Error::custom("unknown chain"))
    }
}

/// The walk's position, handed to the caller as an opaque cursor.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VerifyState {
    phase: Phase,
    oldest_chained: Option<String>,
}

/// Longest accepted cursor.
const MAX_CURSOR_BYTES: usize = 1024;

impl VerifyState {
    fn start() -> Self {
        Self {
            phase: Phase::Begin {
                chain: AuditChain::Recorded,
            },
            oldest_chained: None,
        }
    }

    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(cursor: &str) -> Result<Self, ChainError> {
        if cursor.len() > MAX_CURSOR_BYTES {
            return Err(ChainError::InvalidCursor);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| ChainError::InvalidCursor)?;
        let state: Self = serde_json::from_slice(&bytes).map_err(|_| ChainError::InvalidCursor)?;
        let valid = match &state.phase {
            Phase::Anchors {
                start_seq,
                start_hash,
                after,
                ..
            } => *start_seq >= 0 && *after >= 0 && parse_hash(start_hash).is_some(),
            Phase::Records {
                next_seq,
                prev_hash,
                ..
            } => *next_seq >= 1 && parse_hash(prev_hash).is_some(),
            _ => true,
        };
        if valid {
            Ok(state)
        } else {
            Err(ChainError::InvalidCursor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let state = VerifyState {
            phase: Phase::Records {
                chain: AuditChain::Streamed,
                next_seq: 5,
                prev_hash: hex(&[3; 32]),
            },
            oldest_chained: Some("01J".into()),
        };
        let decoded = VerifyState::decode(&state.encode()).expect("round trip");
        assert!(matches!(
            decoded.phase,
            Phase::Records {
                chain: AuditChain::Streamed,
                next_seq: 5,
                ..
            }
        ));
        for bad in [
            "!!!".to_owned(),
            URL_SAFE_NO_PAD.encode(b"{}"),
            URL_SAFE_NO_PAD.encode(br#"{"phase":{"phase":"records","chain":"x","next_seq":1,"prev_hash":""},"oldest_chained":null}"#),
            URL_SAFE_NO_PAD.encode(
                serde_json::to_vec(&VerifyState {
                    phase: Phase::Records {
                        chain: AuditChain::Recorded,
                        next_seq: 0,
                        prev_hash: hex(&[0; 32]),
                    },
                    oldest_chained: None,
                })
                .expect("json"),
            ),
            "a".repeat(2000),
        ] {
            assert!(matches!(
                VerifyState::decode(&bad),
                Err(ChainError::InvalidCursor)
            ));
        }
    }
}
