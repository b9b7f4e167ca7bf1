//! The in-memory tuple index of one OpenFGA store: every tuple, indexed forwards
//! (`object#relation → users`) and in reverse (`user + relation + object type → objects`).
//!
//! # Concurrency design
//! The index is a sequence of immutable [`IndexSnapshot`]s. A snapshot is a set of persistent
//! (structurally shared) ordered maps from the `imbl` crate; the current one sits behind an
//! `arc-swap` pointer.
//! - **Readers** call [`TupleIndex::snapshot`] (a lock-free atomic load of an `Arc`) or, for a
//!   short read such as one check, [`TupleIndex::current`] (lock-free and usually without
//!   touching the shared reference count), and then read only that snapshot. They never take a lock, so a 100 ms list-objects can neither block
//!   nor be blocked by anyone, and a check never contends on a global lock.
//! - **The writer** ([`TupleIndex::apply`]) clones the current snapshot (O(1): the maps share
//!   all their nodes), applies a whole changelog batch to the clone (copying only the touched
//!   paths) and publishes it with one atomic store. A reader therefore sees a batch entirely or
//!   not at all. Writers serialize on a mutex that readers never touch.
//! - A snapshot stays alive as long as a reader holds it; nodes no snapshot needs any more are
//!   freed by reference counting.
//!
//! # Layout and memory
//! Every string (types, ids, relations) is interned to a `u32` symbol in the snapshot's symbol
//! table (itself persistent, so it is versioned with the data and needs no lock). A tuple is a
//! key of six symbols (24 bytes) in each of the two maps, plus an optional shared pointer to its
//! condition:
//! - forward key `[object_type, object_id, relation, user_type, user_relation, user_id]` (so
//!   the users of `object#relation` of one type, or of one userset type, are one range), and
//! - reverse key `[user_type, user_id, user_relation, relation, object_type, object_id]`.
//!
//! `user_relation` is the empty string's symbol (0) for plain objects and wildcards; the
//! wildcard's id is the symbol of `*`. A snapshot never removes a symbol (ids stay stable while
//! a batch is applied), so the strings of deleted tuples stay interned: a store whose object ids
//! churn (documents created and deleted) would grow the table without bound. The owner of the
//! index therefore compacts it ([`TupleIndex::compact`], off the async workers): when the table
//! holds more than twice the symbols of the last build plus [`COMPACT_SLACK`], the snapshot is
//! rebuilt from its own tuples with a fresh table (only the strings live tuples use). That costs
//! one pass over the tuples after at least as many new symbols as the last build had, so O(1)
//! amortized per interned string, and bounds the table to about twice what the live tuples need. Readers are not held up: they
//! keep reading the previous snapshot until the compacted one is published.
//!
//! # Changelog
//! The server applies the store's changelog in order: batch `seq` must be exactly
//! `applied_seq() + 1`; a batch at or below `applied_seq()` is ignored (replays are harmless);
//! a gap is an error so the caller can rebuild. Writing a tuple that exists replaces its
//! condition; deleting a missing tuple does nothing (the changelog is authoritative, the Write
//! API has already validated it).
//!
//! The index holds the store's tuples as written, under any model version; the engine filters
//! them by the model it evaluates with.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use imbl::{HashMap as PersistentHashMap, OrdMap, Vector};

use crate::engine::{ReadError, TupleReader, TupleView, UserSelector, Visitor};
use crate::tuple::{ObjectRef, RelationshipCondition, TupleKey, UserRef};

type Sym = u32;
/// The empty string: "no userset relation".
const NO_RELATION: Sym = 0;
type Key = [Sym; 6];
type Value = Option<Arc<RelationshipCondition>>;

/// The interned strings of a snapshot.
#[derive(Clone)]
struct Symbols {
    ids: PersistentHashMap<Arc<str>, Sym>,
    names: Vector<Arc<str>>,
}

impl Symbols {
    fn new() -> Self {
        let mut s = Symbols {
            ids: PersistentHashMap::new(),
            names: Vector::new(),
        };
        s.intern("");
        s
    }

    fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }

    fn name(&self, sym: Sym) -> Option<&str> {
        self.names.get(sym as usize).map(|s| &**s)
    }

    fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as Sym;
        let name: Arc<str> = Arc::from(s);
        self.names.push_back(name.clone());
        self.ids.insert(name, id);
        id
    }
}

/// One change of a changelog batch.
#[derive(Debug, Clone, PartialEq)]
pub enum TupleChange {
    /// The tuple was written (with its condition, if any).
    Write(TupleKey),
    /// The tuple was deleted (its condition is ignored).
    Delete(TupleKey),
}

/// Why a batch could not be applied. Nothing of the batch is applied then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// The batch does not follow the last applied one.
    #[error("changelog gap: applied up to {applied}, got batch {got}")]
    Gap {
        /// The last applied batch.
        applied: u64,
        /// The batch offered.
        got: u64,
    },
    /// A tuple's object or user string is malformed.
    #[error("malformed tuple '{tuple}': {reason}")]
    Malformed {
        /// The tuple.
        tuple: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Symbols a table may grow by beyond twice its size at the last build before the writer
/// compacts it (so a small index is not rebuilt every few writes).
pub const COMPACT_SLACK: usize = 4096;

/// One immutable version of the index. Implements [`TupleReader`].
#[derive(Clone)]
pub struct IndexSnapshot {
    seq: u64,
    symbols: Symbols,
    forward: OrdMap<Key, Value>,
    reverse: OrdMap<Key, Value>,
    /// Symbols right after the last build (load or compaction): the baseline of the next one.
    built_symbols: usize,
}

impl std::fmt::Debug for IndexSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexSnapshot")
            .field("seq", &self.seq)
            .field("tuples", &self.forward.len())
            .field("symbols", &self.symbols.names.len())
            .finish()
    }
}

/// A tuple's parts, parsed.
struct Parsed<'a> {
    object: ObjectRef<'a>,
    relation: &'a str,
    user: UserRef<'a>,
}

fn parse(tk: &TupleKey) -> Result<Parsed<'_>, IndexError> {
    let malformed = |reason| IndexError::Malformed {
        tuple: format!("{}#{}@{}", tk.object, tk.relation, tk.user),
        reason,
    };
    let object = crate::engine::validate_object(&tk.object)
        .map_err(|_| malformed("invalid 'object' field format"))?;
    if !crate::engine::validate_relation_name(&tk.relation) {
        return Err(malformed("the 'relation' field is malformed"));
    }
    let user = crate::engine::validate_user(&tk.user)
        .map_err(|_| malformed("the 'user' field is malformed"))?;
    Ok(Parsed {
        object,
        relation: &tk.relation,
        user,
    })
}

/// The user's (type, id, relation) strings; the wildcard's id is `*`.
fn user_parts<'a>(user: &UserRef<'a>) -> (&'a str, &'a str, &'a str) {
    match *user {
        UserRef::Object(o) => (o.object_type, o.object_id, ""),
        UserRef::Wildcard { user_type } => (user_type, "*", ""),
        UserRef::Userset { object, relation } => (object.object_type, object.object_id, relation),
    }
}

impl IndexSnapshot {
    fn empty() -> Self {
        IndexSnapshot {
            seq: 0,
            symbols: Symbols::new(),
            forward: OrdMap::new(),
            reverse: OrdMap::new(),
            built_symbols: 1,
        }
    }

    /// Whether the symbol table has outgrown its last build enough to be compacted.
    fn needs_compaction(&self) -> bool {
        self.symbols.names.len() > 2 * self.built_symbols + COMPACT_SLACK
    }

    /// The same tuples with a fresh symbol table holding only the strings they use. Conditions
    /// are shared with `self`, not copied.
    fn compacted(&self) -> IndexSnapshot {
        let mut next = IndexSnapshot::empty();
        next.seq = self.seq;
        // Old symbol → new symbol; `Sym::MAX` for "not interned yet".
        let mut remap: Vec<Sym> = vec![Sym::MAX; self.symbols.names.len()];
        let mut translate = |old: Sym, next: &mut IndexSnapshot| -> Sym {
            // Every symbol of a key was interned in `self.symbols`, so it is in range.
            let slot = &mut remap[old as usize];
            if *slot == Sym::MAX {
                *slot = next
                    .symbols
                    .intern(self.symbols.name(old).unwrap_or_default());
            }
            *slot
        };
        for (key, value) in self.forward.iter() {
            let [ot, oid, rel, ut, urel, uid] = key.map(|old| translate(old, &mut next));
            next.forward
                .insert([ot, oid, rel, ut, urel, uid], value.clone());
            next.reverse
                .insert([ut, uid, urel, rel, ot, oid], value.clone());
        }
        next.built_symbols = next.symbols.names.len();
        next
    }

    /// The changelog batch this snapshot includes.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The number of tuples.
    pub fn len(&self) -> usize {
        self.forward.len()
    }

    /// Whether there are no tuples.
    pub fn is_empty(&self) -> bool {
        self.forward.is_empty()
    }

    /// The number of interned strings (for memory diagnostics).
    pub fn symbol_count(&self) -> usize {
        self.symbols.names.len()
    }

    /// Every tuple, in forward key order (for export and diagnostics; allocates per tuple).
    pub fn tuples(&self) -> impl Iterator<Item = TupleKey> + '_ {
        self.forward.iter().filter_map(|(k, v)| {
            let name = |s| self.symbols.name(s);
            let user = match (name(k[4])?, name(k[5])?) {
                ("", id) => format!("{}:{}", name(k[3])?, id),
                (rel, id) => format!("{}:{}#{}", name(k[3])?, id, rel),
            };
            Some(TupleKey {
                object: format!("{}:{}", name(k[0])?, name(k[1])?),
                relation: name(k[2])?.to_owned(),
                user,
                condition: v.as_ref().map(|c| (**c).clone()),
            })
        })
    }

    fn apply_change(&mut self, change: &TupleChange) -> Result<(), IndexError> {
        match change {
            TupleChange::Write(tk) => self.write(tk),
            TupleChange::Delete(tk) => self.delete(tk),
        }
    }

    fn write(&mut self, tk: &TupleKey) -> Result<(), IndexError> {
        let p = parse(tk)?;
        let (ut, uid, urel) = user_parts(&p.user);
        let s = &mut self.symbols;
        let ot = s.intern(p.object.object_type);
        let oid = s.intern(p.object.object_id);
        let rel = s.intern(p.relation);
        let ut = s.intern(ut);
        let uid = s.intern(uid);
        let urel = s.intern(urel);
        // One shared allocation per conditioned tuple, referenced from both maps.
        let value: Value = tk.condition.clone().map(Arc::new);
        self.forward
            .insert([ot, oid, rel, ut, urel, uid], value.clone());
        self.reverse.insert([ut, uid, urel, rel, ot, oid], value);
        Ok(())
    }

    fn delete(&mut self, tk: &TupleKey) -> Result<(), IndexError> {
        let p = parse(tk)?;
        let (ut, uid, urel) = user_parts(&p.user);
        let s = &self.symbols;
        // A string that was never interned cannot be part of a stored tuple.
        if let (Some(ot), Some(oid), Some(rel), Some(ut), Some(uid), Some(urel)) = (
            s.get(p.object.object_type),
            s.get(p.object.object_id),
            s.get(p.relation),
            s.get(ut),
            s.get(uid),
            s.get(urel),
        ) {
            self.forward.remove(&[ot, oid, rel, ut, urel, uid]);
            self.reverse.remove(&[ut, uid, urel, rel, ot, oid]);
        }
        Ok(())
    }

    /// The user a forward key names, borrowing the interned strings.
    fn user_of<'s>(&'s self, ut: &'s str, key: &Key) -> Option<UserRef<'s>> {
        let urel = self.symbols.name(key[4])?;
        let uid = self.symbols.name(key[5])?;
        Some(if key[4] == NO_RELATION {
            if uid == "*" {
                UserRef::Wildcard { user_type: ut }
            } else {
                UserRef::Object(ObjectRef {
                    object_type: ut,
                    object_id: uid,
                })
            }
        } else {
            UserRef::Userset {
                object: ObjectRef {
                    object_type: ut,
                    object_id: uid,
                },
                relation: urel,
            }
        })
    }
}

impl TupleReader for IndexSnapshot {
    fn read_tuple(
        &self,
        object: ObjectRef<'_>,
        relation: &str,
        user: UserRef<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        let s = &self.symbols;
        let (ut, uid, urel) = user_parts(&user);
        let key = match (
            s.get(object.object_type),
            s.get(object.object_id),
            s.get(relation),
            s.get(ut),
            s.get(urel),
            s.get(uid),
        ) {
            (Some(a), Some(b), Some(c), Some(d), Some(e), Some(f)) => [a, b, c, d, e, f],
            _ => return Ok(()),
        };
        if let Some(value) = self.forward.get(&key) {
            let _ = visit(TupleView {
                object,
                relation,
                user,
                condition: value.as_deref(),
            });
        }
        Ok(())
    }

    fn read_users(
        &self,
        object: ObjectRef<'_>,
        relation: &str,
        selector: UserSelector<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        let s = &self.symbols;
        let (Some(ot), Some(oid), Some(rel)) = (
            s.get(object.object_type),
            s.get(object.object_id),
            s.get(relation),
        ) else {
            return Ok(());
        };
        let (lo, hi) = match selector {
            UserSelector::All => (
                [ot, oid, rel, 0, 0, 0],
                [ot, oid, rel, Sym::MAX, Sym::MAX, Sym::MAX],
            ),
            UserSelector::Type {
                user_type,
                relation: user_relation,
            } => {
                let Some(ut) = s.get(user_type) else {
                    return Ok(());
                };
                let urel = match user_relation {
                    None => NO_RELATION,
                    Some(r) => match s.get(r) {
                        Some(x) => x,
                        None => return Ok(()),
                    },
                };
                (
                    [ot, oid, rel, ut, urel, 0],
                    [ot, oid, rel, ut, urel, Sym::MAX],
                )
            }
        };
        for (key, value) in self.forward.range(lo..=hi) {
            let Some(ut) = s.name(key[3]) else { continue };
            let Some(user) = self.user_of(ut, key) else {
                continue;
            };
            let view = TupleView {
                object,
                relation,
                user,
                condition: value.as_deref(),
            };
            if let ControlFlow::Break(()) = visit(view) {
                break;
            }
        }
        Ok(())
    }

    fn read_objects(
        &self,
        object_type: &str,
        relation: &str,
        user: UserRef<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        let s = &self.symbols;
        let (ut, uid, urel) = user_parts(&user);
        let (Some(ut), Some(uid), Some(urel), Some(rel), Some(ot)) = (
            s.get(ut),
            s.get(uid),
            s.get(urel),
            s.get(relation),
            s.get(object_type),
        ) else {
            return Ok(());
        };
        let lo = [ut, uid, urel, rel, ot, 0];
        let hi = [ut, uid, urel, rel, ot, Sym::MAX];
        for (key, value) in self.reverse.range(lo..=hi) {
            let Some(oid) = s.name(key[5]) else { continue };
            let view = TupleView {
                object: ObjectRef {
                    object_type,
                    object_id: oid,
                },
                relation,
                user,
                condition: value.as_deref(),
            };
            if let ControlFlow::Break(()) = visit(view) {
                break;
            }
        }
        Ok(())
    }
}

/// A short-lived borrow of the current snapshot; see [`TupleIndex::current`].
pub struct SnapshotGuard(arc_swap::Guard<Arc<IndexSnapshot>>);

impl std::ops::Deref for SnapshotGuard {
    type Target = IndexSnapshot;

    fn deref(&self) -> &IndexSnapshot {
        &self.0
    }
}

impl std::fmt::Debug for SnapshotGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// The live index of one store: the current snapshot plus the writer's lock.
pub struct TupleIndex {
    current: ArcSwap<IndexSnapshot>,
    writer: Mutex<()>,
}

impl std::fmt::Debug for TupleIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TupleIndex")
            .field("snapshot", &*self.current.load())
            .finish()
    }
}

impl Default for TupleIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl TupleIndex {
    /// An empty index at changelog position 0.
    pub fn new() -> Self {
        TupleIndex {
            current: ArcSwap::from_pointee(IndexSnapshot::empty()),
            writer: Mutex::new(()),
        }
    }

    /// An index loaded with `tuples` (a store's contents as of changelog batch `seq`).
    pub fn with_tuples<'t>(
        seq: u64,
        tuples: impl IntoIterator<Item = &'t TupleKey>,
    ) -> Result<Self, IndexError> {
        Ok(TupleIndex {
            current: ArcSwap::from_pointee(Self::build(seq, tuples)?),
            writer: Mutex::new(()),
        })
    }

    fn build<'t>(
        seq: u64,
        tuples: impl IntoIterator<Item = &'t TupleKey>,
    ) -> Result<IndexSnapshot, IndexError> {
        let mut snap = IndexSnapshot::empty();
        for tk in tuples {
            snap.write(tk)?;
        }
        snap.seq = seq;
        snap.built_symbols = snap.symbols.names.len();
        Ok(snap)
    }

    /// Replaces the contents with `tuples` (a store's contents as of changelog batch `seq`), as
    /// a fresh load would, if `seq` is ahead of the applied batch: how an index far behind (after
    /// a bulk import) catches up in one pass, where [`Self::apply`] copies the snapshot once per
    /// batch. One pass over the tuples: call it off the async workers. Builds without the
    /// writer's lock; returns whether it published (`false` if the index reached `seq`
    /// meanwhile).
    pub fn replace<'t>(
        &self,
        seq: u64,
        tuples: impl IntoIterator<Item = &'t TupleKey>,
    ) -> Result<bool, IndexError> {
        let fresh = Self::build(seq, tuples)?;
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if self.current.load().seq >= seq {
            return Ok(false);
        }
        self.current.store(Arc::new(fresh));
        Ok(true)
    }

    /// The current snapshot: a lock-free load. Read it for as long as needed; writers are not
    /// held up by it.
    pub fn snapshot(&self) -> Arc<IndexSnapshot> {
        self.current.load_full()
    }

    /// The current snapshot for a short read (a check): also lock-free, and cheaper than
    /// [`TupleIndex::snapshot`] under many concurrent readers because it usually avoids touching
    /// the shared reference count (arc-swap's debt slots). Hold it for one request at most; use
    /// [`TupleIndex::snapshot`] for long reads such as list-objects.
    pub fn current(&self) -> SnapshotGuard {
        SnapshotGuard(self.current.load())
    }

    /// The last changelog batch applied.
    pub fn applied_seq(&self) -> u64 {
        self.current.load().seq
    }

    /// The number of tuples in the current snapshot.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    /// Whether the current snapshot has no tuples.
    pub fn is_empty(&self) -> bool {
        self.current.load().is_empty()
    }

    /// Applies changelog batch `seq` atomically. `Ok(true)` if applied, `Ok(false)` if it was
    /// already applied (replay), `Err` on a gap or a malformed tuple (then nothing changes).
    pub fn apply(&self, seq: u64, changes: &[TupleChange]) -> Result<bool, IndexError> {
        // The mutex guards no data, only the read-modify-publish sequence, so a poisoned lock
        // (a panicking writer) leaves nothing inconsistent and can be taken over.
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        if seq <= current.seq {
            return Ok(false);
        }
        if seq != current.seq + 1 {
            return Err(IndexError::Gap {
                applied: current.seq,
                got: seq,
            });
        }
        let mut next = (*current).clone();
        for change in changes {
            next.apply_change(change)?;
        }
        next.seq = seq;
        self.current.store(Arc::new(next));
        Ok(true)
    }

    /// Applies changelog batches of one change each, `(seq, change)` in seq order, publishing
    /// one snapshot at the end: what catching up over many batches costs once instead of a
    /// snapshot copy per batch. Batches already applied are skipped (replay); the others must
    /// follow the applied one without a gap. On an error nothing changes. Returns the applied
    /// seq afterwards.
    pub fn apply_each(&self, changes: &[(u64, TupleChange)]) -> Result<u64, IndexError> {
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        let mut next: Option<IndexSnapshot> = None;
        let mut seq = current.seq;
        for (batch, change) in changes {
            if *batch <= seq {
                continue;
            }
            if *batch != seq + 1 {
                return Err(IndexError::Gap {
                    applied: seq,
                    got: *batch,
                });
            }
            next.get_or_insert_with(|| (*current).clone())
                .apply_change(change)?;
            seq = *batch;
        }
        if let Some(mut next) = next {
            next.seq = seq;
            self.current.store(Arc::new(next));
        }
        Ok(seq)
    }

    /// Whether deletes have left the symbol table mostly dead: then [`Self::compact`] is due.
    pub fn needs_compaction(&self) -> bool {
        self.current.load().needs_compaction()
    }

    /// Rebuilds the current snapshot with a fresh symbol table if [`Self::needs_compaction`].
    /// One pass over the tuples: call it off the async workers. The rebuild runs without the
    /// writer's lock, so [`Self::apply`] is never held up; if a batch was applied meanwhile the
    /// result is dropped (a later call compacts). Returns whether it published a compacted
    /// snapshot.
    pub fn compact(&self) -> bool {
        let snapshot = self.current.load_full();
        if !snapshot.needs_compaction() {
            return false;
        }
        let compacted = snapshot.compacted();
        let _guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if self.current.load().seq != snapshot.seq {
            return false;
        }
        self.current.store(Arc::new(compacted));
        true
    }
}
