//! The audit trail's hash chains and their signed anchors.
//!
//! Every stored event belongs to one of two chains, decided by how it is delivered
//! ([`AuditChain`]): credential and administrative events (kept for ever) and the streamed
//! high-volume kinds (authorization decisions, token issuance; kept for the configured retention).
//! Within a chain each event has a gap-free, strictly increasing position (`seq`, from 1) that
//! the store assigns at append time under its serialisation (SQLite's writer transaction; on
//! PostgreSQL the chain's head row locked `FOR UPDATE`), the hash of its predecessor
//! (`prev_hash`; [`GENESIS_HASH`] for seq 1) and its own hash, [`record_hash`]: SHA-256 over an
//! unambiguous encoding of the chain, the seq, the predecessor's hash and every stored field.
//!
//! An [`AuditAnchor`] is a signed statement "chain C had hash H at seq S": a checkpoint written
//! every N events or T seconds, or the truncation statement written when retention deletes a
//! prefix (everything up to S; verification then starts at S + 1 with predecessor H). Anchors
//! are numbered per chain without gaps. Signing and verifying them is `trustgate-audit`'s job
//! (through `trustgate-tokens`); the store only keeps them.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::accounts::AuditEvent;

/// The predecessor hash of the first event of a chain: 32 zero bytes.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Which chain an event is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditChain {
    /// Credential and administrative events, written before their request succeeds; kept.
    Recorded,
    /// Decisions, issuances and deliveries, written by the batched writer; purged by prefix
    /// after the retention period.
    Streamed,
}

impl AuditChain {
    /// Both chains.
    pub const ALL: [AuditChain; 2] = [AuditChain::Recorded, AuditChain::Streamed];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditChain::Recorded => "recorded",
            AuditChain::Streamed => "streamed",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "recorded" => Some(AuditChain::Recorded),
            "streamed" => Some(AuditChain::Streamed),
            _ => None,
        }
    }
}

/// An event as stored in its chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// The chain position (from 1); `None` for events written before chains existed.
    pub seq: Option<i64>,
    /// The predecessor's hash (`None` before chains existed).
    pub prev_hash: Option<[u8; 32]>,
    /// This record's hash (`None` before chains existed).
    pub hash: Option<[u8; 32]>,
    /// The event.
    pub event: AuditEvent,
}

/// The last position of a chain and its hash (seq 0 and [`GENESIS_HASH`] when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// The last seq assigned.
    pub seq: i64,
    /// Its hash.
    pub hash: [u8; 32],
}

/// What an anchor states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnchorKind {
    /// The chain had this hash at this seq.
    Checkpoint,
    /// Everything up to this seq was deleted by retention; the next event links to this hash.
    Truncation,
}

impl AnchorKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AnchorKind::Checkpoint => "checkpoint",
            AnchorKind::Truncation => "truncation",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "checkpoint" => Some(AnchorKind::Checkpoint),
            "truncation" => Some(AnchorKind::Truncation),
            _ => None,
        }
    }
}

/// A signed statement about a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditAnchor {
    /// The chain.
    pub chain: AuditChain,
    /// Its number among the chain's anchors (from 1, no gaps).
    pub number: i64,
    /// The position it anchors.
    pub seq: i64,
    /// The chain's hash at `seq`.
    pub hash: [u8; 32],
    /// Checkpoint or truncation.
    pub kind: AnchorKind,
    /// When it was signed.
    pub at: OffsetDateTime,
    /// The signing key.
    pub kid: String,
    /// The JWS (compact serialization) over the statement.
    pub jws: String,
    /// The signing key's public JWK, sealed with the secrets key, so the anchor stays
    /// verifiable after the key has been purged from the JWKS.
    pub sealed_key: Vec<u8>,
}

/// Largest accepted anchor JWS or sealed key.
pub const MAX_ANCHOR_BYTES: usize = 16 * 1024;

/// The hash of an event at `seq` of `chain` after `prev_hash`. `event.at` must be the stored
/// instant (UTC, whole microseconds): the store hashes what it writes, the verifier what it
/// reads.
///
/// The encoding is unambiguous: a version tag, then every field in a fixed order, each string
/// length-prefixed (u32, big endian), each optional field a presence byte first, integers big
/// endian, and the detail as canonical JSON ([`canonical_json`]).
pub fn record_hash(
    chain: AuditChain,
    seq: i64,
    prev_hash: &[u8; 32],
    event: &AuditEvent,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"trustgate-audit-v1\0");
    put_str(&mut h, chain.as_str());
    h.update(seq.to_be_bytes());
    h.update(prev_hash);
    put_str(&mut h, &event.id);
    let micros = event.at.unix_timestamp_nanos().div_euclid(1000);
    h.update(micros.to_be_bytes());
    put_str(&mut h, &event.kind);
    put_str(&mut h, &event.outcome);
    for field in [
        &event.actor,
        &event.user_id,
        &event.ip,
        &event.user_agent,
        &event.request_id,
        &event.resource,
    ] {
        match field {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                put_str(&mut h, s);
            }
        }
    }
    let mut detail = String::new();
    canonical_object(&event.detail, &mut detail);
    put_str(&mut h, &detail);
    h.finalize().into()
}

fn put_str(h: &mut Sha256, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    h.update(len.to_be_bytes());
    h.update(s.as_bytes());
}

/// `value` as canonical JSON: object members sorted by key (bytewise), no whitespace, strings
/// escaped as serde_json escapes them, and numbers by value, so that a detail reads back to the
/// same text from SQLite's TEXT and PostgreSQL's JSONB (which reorders keys and may rewrite
/// `1e16` as `10000000000000000`): integers (and integral floats in the 64-bit range) as
/// integers, other floats in serde_json's shortest form.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    canonical(value, &mut out);
    out
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&value.to_string()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(64) {
                    // In range and integral: the conversion is exact.
                    #[allow(clippy::cast_possible_truncation)]
                    out.push_str(&(f as i128).to_string());
                } else {
                    out.push_str(&value.to_string());
                }
            }
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => canonical_object(map, out),
    }
}

fn canonical_object(map: &Map<String, Value>, out: &mut String) {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push('{');
    for (i, (key, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(key.clone()).to_string());
        out.push(':');
        canonical(value, out);
    }
    out.push('}');
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Parses 64 hexadecimal digits into a hash.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let digit = |c: u8| char::from(c).to_digit(16);
        let (hi, lo) = (digit(pair[0])?, digit(pair[1])?);
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            id: "01J00000000000000000000000".into(),
            at: OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time"),
            chain: AuditChain::Recorded,
            kind: "login".into(),
            outcome: "success".into(),
            actor: Some("user:1".into()),
            user_id: Some("1".into()),
            ip: None,
            user_agent: None,
            request_id: Some("r".into()),
            resource: None,
            detail: Map::new(),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_normalizes_numbers() {
        let a = json!({"b": 1, "a": [1.0, 1e16, 0.5, "x\"y"], "c": {"z": null, "y": true}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":[1,10000000000000000,0.5,"x\"y"],"b":1,"c":{"y":true,"z":null}}"#
        );
        let reparsed: Value = serde_json::from_str(
            r#"{"c":{"y":true,"z":null},"b":1,"a":[1,10000000000000000,0.5,"x\"y"]}"#,
        )
        .expect("json");
        assert_eq!(canonical_json(&a), canonical_json(&reparsed));
    }

    #[test]
    fn every_field_and_position_changes_the_hash() {
        let e = event();
        let base = record_hash(AuditChain::Recorded, 1, &GENESIS_HASH, &e);
        assert_ne!(
            base,
            record_hash(AuditChain::Streamed, 1, &GENESIS_HASH, &e)
        );
        assert_ne!(
            base,
            record_hash(AuditChain::Recorded, 2, &GENESIS_HASH, &e)
        );
        assert_ne!(base, record_hash(AuditChain::Recorded, 1, &[1; 32], &e));
        type Change = Box<dyn Fn(&mut AuditEvent)>;
        let changes: Vec<Change> = vec![
            Box::new(|e| e.id.push('x')),
            Box::new(|e| e.at += time::Duration::microseconds(1)),
            Box::new(|e| e.kind = "logout".into()),
            Box::new(|e| e.outcome = "failure".into()),
            Box::new(|e| e.actor = None),
            Box::new(|e| e.user_id = Some("2".into())),
            Box::new(|e| e.ip = Some(String::new())),
            Box::new(|e| e.user_agent = Some("ua".into())),
            Box::new(|e| e.request_id = None),
            Box::new(|e| e.resource = Some("document:1".into())),
            Box::new(|e| {
                e.detail.insert("k".into(), json!(1));
            }),
        ];
        for change in changes {
            let mut changed = e.clone();
            change(&mut changed);
            assert_ne!(
                base,
                record_hash(AuditChain::Recorded, 1, &GENESIS_HASH, &changed)
            );
        }
        // Moving text between adjacent fields is not the same record either.
        let mut a = e.clone();
        a.actor = Some("ab".into());
        a.user_id = Some("c".into());
        let mut b = e;
        b.actor = Some("a".into());
        b.user_id = Some("bc".into());
        assert_ne!(
            record_hash(AuditChain::Recorded, 1, &GENESIS_HASH, &a),
            record_hash(AuditChain::Recorded, 1, &GENESIS_HASH, &b)
        );
    }

    #[test]
    fn hashes_print_and_parse() {
        let h = record_hash(AuditChain::Recorded, 1, &GENESIS_HASH, &event());
        assert_eq!(parse_hash(&hex(&h)), Some(h));
        assert_eq!(parse_hash("zz"), None);
        assert_eq!(parse_hash(&"g".repeat(64)), None);
        assert_eq!(AuditChain::parse("streamed"), Some(AuditChain::Streamed));
        assert_eq!(
            AnchorKind::parse("truncation"),
            Some(AnchorKind::Truncation)
        );
        assert_eq!(AnchorKind::parse("x"), None);
    }
}
