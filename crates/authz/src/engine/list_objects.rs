//! ListObjects: every object of a type that a user is related to by a relation.
//!
//! # Algorithm: reverse expansion over the index
//! Instead of checking every object of the type, the walk starts at the user and follows the
//! type system's reverse edges upwards, reading the index in reverse (`read_objects`):
//! 1. **start**: every relation that admits the user directly (`[user]`, or `[user:*]` for its
//!    wildcard) yields the objects holding such a tuple; a userset user `group:x#member` starts
//!    at the node `group:x#member` itself;
//! 2. **propagate** from a node `o#r` (meaning "o#r contains the user") along each reverse edge
//!    whose target relation is relevant (the requested relation can dispatch to it):
//!    computed (`t: r` → `o#t`), tuple-to-userset (`t: r from ts` → every `x` with `x#ts@o`),
//!    userset (`t: [type#r]` → every `x` with `x#t@o#r`);
//! 3. a node of the requested relation is a **result**.
//!
//! Every node carries a *sure* flag: it is sure when its derivation went through unions only
//! and every tuple condition on it evaluated to true. Intersections, exclusion bases and
//! conditions that could not be evaluated make it a *candidate*: a candidate result is returned
//! only if a full [`super::check`] of it is true (so every returned object passes Check), and a
//! failing check fails the request (never a silent omission). Subtracted operands are never
//! followed: they cannot add objects.
//!
//! Each node is visited once (twice if it is first reached as a candidate and later as sure),
//! which terminates cycles. A derivation longer than [`super::MAX_RESOLUTION_DEPTH`] dispatches
//! makes the request fail with 2002, as the corresponding check would.
//!
//! # Results
//! [`list_objects_visit`] streams objects in discovery order (deterministic for the same data),
//! each exactly once, and can be stopped early; [`list_objects`] returns them all sorted;
//! [`list_objects_page`] returns a sorted page after a cursor and says whether more exist.
//! Nothing is ever silently truncated.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::ControlFlow;

use serde_json::{Map, Value};

use crate::tuple::{ObjectRef, TupleKey, UserRef};

use super::MAX_RESOLUTION_DEPTH;
use super::check::{Checker, Memo};
use super::condition_eval::tuple_holds;
use super::error::EngineError;
use super::reader::{TupleReader, TupleView};
use super::trace::NoTrace;
use super::typesystem::{EdgeKind, RelId, TypeId, TypeSystem};
use super::validation::{resolve_user, validate_contextual_tuples};

/// A list-objects request.
#[derive(Debug, Clone, Copy)]
pub struct ListObjectsRequest<'a> {
    /// The object type to list.
    pub object_type: &'a str,
    /// The relation the user must have.
    pub relation: &'a str,
    /// `type:id`, `type:*` or `type:id#relation`.
    pub user: &'a str,
    /// Tuples that hold for this request only (at most 100).
    pub contextual_tuples: &'a [TupleKey],
    /// The request context conditions are evaluated with.
    pub context: Option<&'a Map<String, Value>>,
}

/// One sorted page of list-objects results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListObjectsPage {
    /// Objects (`type:id`), sorted, all greater than the cursor.
    pub objects: Vec<String>,
    /// Whether more objects follow the last one of this page.
    pub has_more: bool,
}

/// Streams the objects `user` has `relation` to, each once, in discovery order. The visitor
/// returns `Break` to stop early.
pub fn list_objects_visit(
    ts: &TypeSystem,
    reader: &dyn TupleReader,
    req: &ListObjectsRequest<'_>,
    visit: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> Result<(), EngineError> {
    let type_id = ts
        .type_id(req.object_type)
        .ok_or_else(|| EngineError::TypeNotFound(req.object_type.to_owned()))?;
    let target =
        ts.relation_id(type_id, req.relation)
            .ok_or_else(|| EngineError::RelationNotFound {
                type_name: req.object_type.to_owned(),
                relation: req.relation.to_owned(),
            })?;
    let user = resolve_user(ts, req.user)
        .map_err(|e| EngineError::Validation(format!("invalid 'user' value: {e}")))?;
    let contextual = validate_contextual_tuples(ts, req.contextual_tuples)?;
    let overlay = contextual.over(reader);
    let reader: &dyn TupleReader = if contextual.is_empty() {
        reader
    } else {
        &overlay
    };
    let mut walk = Walk {
        ts,
        reader,
        target,
        checker: Checker {
            ts,
            reader,
            user,
            context: req.context,
            trace: &NoTrace,
            memo: Memo::default(),
        },
        context: req.context,
        visited: HashMap::new(),
        queue: VecDeque::new(),
        emitted: HashSet::new(),
        rejected: HashSet::new(),
        too_deep: false,
    };
    walk.run(visit)
}

/// All objects `user` has `relation` to, sorted.
pub fn list_objects(
    ts: &TypeSystem,
    reader: &dyn TupleReader,
    req: &ListObjectsRequest<'_>,
) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    list_objects_visit(ts, reader, req, &mut |o| {
        out.push(o.to_owned());
        ControlFlow::Continue(())
    })?;
    out.sort_unstable();
    Ok(out)
}

/// The sorted objects greater than `after` (all if `None`), at most `limit` of them, and
/// whether more exist. Paging is stable: the pages of one snapshot concatenate to
/// [`list_objects`].
pub fn list_objects_page(
    ts: &TypeSystem,
    reader: &dyn TupleReader,
    req: &ListObjectsRequest<'_>,
    after: Option<&str>,
    limit: usize,
) -> Result<ListObjectsPage, EngineError> {
    let all = list_objects(ts, reader, req)?;
    let start = match after {
        Some(a) => all.partition_point(|o| o.as_str() <= a),
        None => 0,
    };
    let rest = all.get(start..).unwrap_or(&[]);
    let take = rest.len().min(limit);
    Ok(ListObjectsPage {
        objects: rest.iter().take(take).cloned().collect(),
        has_more: rest.len() > take,
    })
}

/// A queued node: `id` (of the relation's type) is known to contain the user via `relation`.
struct Node {
    relation: RelId,
    id: Box<str>,
    sure: bool,
    depth: u32,
}

struct Walk<'a> {
    ts: &'a TypeSystem,
    reader: &'a dyn TupleReader,
    target: RelId,
    checker: Checker<'a>,
    context: Option<&'a Map<String, Value>>,
    /// Node → whether it was reached as sure.
    visited: HashMap<(RelId, Box<str>), bool>,
    queue: VecDeque<Node>,
    emitted: HashSet<Box<str>>,
    rejected: HashSet<Box<str>>,
    too_deep: bool,
}

impl Walk<'_> {
    fn relevant(&self, relation: RelId) -> bool {
        self.ts.rel(self.target).reach_relations.contains(relation)
    }

    /// Queues a node unless it was already reached at least as surely.
    fn push(&mut self, relation: RelId, id: &str, sure: bool, depth: u32) {
        if depth >= MAX_RESOLUTION_DEPTH {
            self.too_deep = true;
            return;
        }
        match self.visited.entry((relation, id.into())) {
            Entry::Occupied(mut e) => {
                if *e.get() || !sure {
                    return;
                }
                e.insert(true);
            }
            Entry::Vacant(e) => {
                e.insert(sure);
            }
        }
        self.queue.push_back(Node {
            relation,
            id: id.into(),
            sure,
            depth,
        });
    }

    /// Reads the objects of `object_type#relation@user` and queues them as nodes of
    /// `node_relation`; a tuple whose condition is false is skipped, one whose condition cannot
    /// be evaluated yields a candidate (its final check reports the error if it matters).
    ///
    /// `read_relation` is the relation of the tuples read (the tupleset for a
    /// tuple-to-userset edge, else `node_relation` itself) and `user_type` the user's type id:
    /// tuples the model no longer admits are skipped.
    fn read_and_push(
        &mut self,
        node_relation: RelId,
        read_relation: RelId,
        user: UserRef<'_>,
        user_type: TypeId,
        sure: bool,
        depth: u32,
    ) -> Result<(), EngineError> {
        let read = self.ts.rel(read_relation);
        let object_type = self.ts.type_name(read.type_id);
        let mut found: Vec<(Box<str>, bool)> = Vec::new();
        let (ts, context) = (self.ts, self.context);
        self.reader
            .read_objects(object_type, &read.name, user, &mut |t: TupleView<'_>| {
                if !ts.admits_stored(read_relation, user_type, &t.user, t.condition) {
                    return ControlFlow::Continue(());
                }
                match tuple_holds(ts, &t, context) {
                    Ok(true) => found.push((t.object.object_id.into(), sure)),
                    Ok(false) => {}
                    Err(_) => found.push((t.object.object_id.into(), false)),
                }
                ControlFlow::Continue(())
            })
            .map_err(|e| EngineError::Read(e.0))?;
        for (id, s) in found {
            self.push(node_relation, &id, s, depth);
        }
        Ok(())
    }

    fn run(&mut self, visit: &mut dyn FnMut(&str) -> ControlFlow<()>) -> Result<(), EngineError> {
        let user = self.checker.user;
        match user.user {
            UserRef::Userset { object, .. } => {
                if let Some(k) = user.userset_relation {
                    self.push(k, object.object_id, true, 0);
                }
            }
            UserRef::Object(_) | UserRef::Wildcard { .. } => {
                let is_object = matches!(user.user, UserRef::Object(_));
                let wildcard = UserRef::Wildcard {
                    user_type: user.user.user_type(),
                };
                let ts = self.ts;
                for edge in ts.direct_edges(user.type_id) {
                    if !self.relevant(edge.relation) {
                        continue;
                    }
                    let (rel, ut) = (edge.relation, user.type_id);
                    if edge.wildcard {
                        self.read_and_push(rel, rel, wildcard, ut, edge.sure, 0)?;
                    } else if is_object {
                        self.read_and_push(rel, rel, user.user, ut, edge.sure, 0)?;
                    }
                }
            }
        }

        let ts = self.ts;
        let target_type = ts.type_name(ts.rel(self.target).type_id);
        while let Some(node) = self.queue.pop_front() {
            if node.relation == self.target
                && self
                    .emit(target_type, &node.id, node.sure, visit)?
                    .is_break()
            {
                return Ok(());
            }
            let source = ts.rel(node.relation);
            let source_type = ts.type_name(source.type_id);
            for edge in ts.reverse_edges(node.relation) {
                if !self.relevant(edge.target) {
                    continue;
                }
                let sure = node.sure && edge.sure;
                let depth = node.depth + 1;
                match edge.kind {
                    EdgeKind::Computed => self.push(edge.target, &node.id, sure, depth),
                    EdgeKind::TupleToUserset { tupleset } => {
                        let parent = UserRef::Object(ObjectRef {
                            object_type: source_type,
                            object_id: &node.id,
                        });
                        let ut = source.type_id;
                        self.read_and_push(edge.target, tupleset, parent, ut, sure, depth)?;
                    }
                    EdgeKind::Userset => {
                        let userset = UserRef::Userset {
                            object: ObjectRef {
                                object_type: source_type,
                                object_id: &node.id,
                            },
                            relation: &source.name,
                        };
                        let (rel, ut) = (edge.target, source.type_id);
                        self.read_and_push(rel, rel, userset, ut, sure, depth)?;
                    }
                }
            }
        }
        if self.too_deep {
            return Err(EngineError::ResolutionTooComplex);
        }
        Ok(())
    }

    /// Emits a result once; a candidate only if its check is true.
    fn emit(
        &mut self,
        object_type: &str,
        id: &str,
        sure: bool,
        visit: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, EngineError> {
        if self.emitted.contains(id) || self.rejected.contains(id) {
            return Ok(ControlFlow::Continue(()));
        }
        let object = ObjectRef {
            object_type,
            object_id: id,
        };
        if !sure
            && !self
                .checker
                .check_relation(object, self.target, None)?
                .allowed
        {
            self.rejected.insert(id.into());
            return Ok(ControlFlow::Continue(()));
        }
        self.emitted.insert(id.into());
        Ok(visit(&format!("{object_type}:{id}")))
    }
}
