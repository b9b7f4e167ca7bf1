//! ListUsers: every user of the requested kinds related to an object by a relation.
//!
//! OpenFGA's semantics, which the conformance suite pins down: a user `u` matching a filter is
//! returned exactly when `Check(object, relation, u)` is true, where `u` ranges over
//! - objects `type:id` (filter `type`),
//! - the wildcard `type:*` (filter `type`) — returned as such, meaning "every object of the
//!   type", when a wildcard tuple grants it,
//! - usersets `type:id#rel` (filter `type#rel`) — including usersets that no tuple names but
//!   that the object's relation contains by rewriting (`folder:x#editor` is in
//!   `doc:1#viewer` when viewer comes from the parent folder's editors).
//!
//! # Algorithm: forward expansion, then final checks where needed
//! The walk starts at `object#relation` and expands nodes `o#r` breadth first: each node whose
//! relation is the filter's userset relation is a candidate itself; its direct tuples yield
//! candidate objects and wildcards of the filter type and expand userset tuples into nodes;
//! computed usersets and tuple-to-usersets expand into nodes. Relations that cannot reach the
//! filter's kind (type-system reachability) are not expanded. Subtracted operands are not
//! expanded (they cannot add users); operands of intersections and exclusion bases, and tuples
//! whose condition cannot be evaluated, produce *candidates* that are returned only if a full
//! check of them is true (and whose failing check fails the request). Candidates derived through
//! unions only, with true conditions, are returned without a check.
//!
//! Nodes are visited once (twice when first reached as a candidate and later as sure), so
//! cycles terminate. A node deeper than [`super::MAX_RESOLUTION_DEPTH`] fails the request with
//! 2002. Results are sorted and deduplicated.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::ControlFlow;

use serde_json::{Map, Value};

use crate::tuple::{ObjectRef, TupleKey, UserRef};

use super::MAX_RESOLUTION_DEPTH;
use super::check::{Checker, Memo};
use super::condition_eval::tuple_holds;
use super::error::EngineError;
use super::reader::{TupleReader, TupleView, UserSelector};
use super::trace::NoTrace;
use super::typesystem::{RelId, Rewrite, TypeId, TypeSystem};
use super::validation::{
    resolve_filter, resolve_object_relation, resolve_user, validate_contextual_tuples,
};

/// A user filter: objects (and the wildcard) of `user_type`, or with `relation` its usersets
/// `user_type:id#relation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFilter<'a> {
    /// The user type.
    pub user_type: &'a str,
    /// The userset relation, if the filter asks for usersets.
    pub relation: Option<&'a str>,
}

impl<'a> UserFilter<'a> {
    /// Parses `type` or `type#relation`.
    pub fn parse(s: &'a str) -> Self {
        match s.split_once('#') {
            Some((t, r)) => UserFilter {
                user_type: t,
                relation: Some(r),
            },
            None => UserFilter {
                user_type: s,
                relation: None,
            },
        }
    }
}

/// A list-users request.
#[derive(Debug, Clone, Copy)]
pub struct ListUsersRequest<'a> {
    /// `type:id`.
    pub object: &'a str,
    /// The relation.
    pub relation: &'a str,
    /// The kinds of users to return (at least one).
    pub user_filters: &'a [UserFilter<'a>],
    /// Tuples that hold for this request only (at most 100).
    pub contextual_tuples: &'a [TupleKey],
    /// The request context conditions are evaluated with.
    pub context: Option<&'a Map<String, Value>>,
}

/// The users found, as strings (`user:anne`, `user:*`, `group:eng#member`), sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListUsersResponse {
    /// The users.
    pub users: Vec<String>,
}

/// Lists the users related to `object` by `relation` that match the filters.
pub fn list_users(
    ts: &TypeSystem,
    reader: &dyn TupleReader,
    req: &ListUsersRequest<'_>,
) -> Result<ListUsersResponse, EngineError> {
    let (object, relation) = resolve_object_relation(ts, req.object, req.relation)?;
    if req.user_filters.is_empty() {
        return Err(EngineError::Validation(
            "at least one user filter is required".to_owned(),
        ));
    }
    let mut filters = Vec::with_capacity(req.user_filters.len());
    for f in req.user_filters {
        filters.push(resolve_filter(ts, f.user_type, f.relation)?);
    }
    let contextual = validate_contextual_tuples(ts, req.contextual_tuples)?;
    let overlay = contextual.over(reader);
    let reader: &dyn TupleReader = if contextual.is_empty() {
        reader
    } else {
        &overlay
    };

    let mut all: BTreeMap<String, ()> = BTreeMap::new();
    for (type_id, userset_relation) in filters {
        let mut walk = Walk {
            ts,
            reader,
            context: req.context,
            filter_type: type_id,
            filter_relation: userset_relation,
            visited: HashMap::new(),
            queue: VecDeque::new(),
            candidates: HashMap::new(),
        };
        walk.push(relation, object.object_id, true, 0)?;
        walk.run()?;
        let mut candidates: Vec<(String, bool)> = walk.candidates.into_iter().collect();
        candidates.sort_unstable();
        for (user, sure) in candidates {
            if all.contains_key(&user) {
                continue;
            }
            if !sure {
                let resolved = resolve_user(ts, &user)?;
                let checker = Checker {
                    ts,
                    reader,
                    user: resolved,
                    context: req.context,
                    trace: &NoTrace,
                    memo: Memo::default(),
                };
                if !checker.check_relation(object, relation, None)?.allowed {
                    continue;
                }
            }
            all.insert(user, ());
        }
    }
    Ok(ListUsersResponse {
        users: all.into_keys().collect(),
    })
}

struct Node {
    relation: RelId,
    id: Box<str>,
    sure: bool,
    depth: u32,
}

struct Walk<'a> {
    ts: &'a TypeSystem,
    reader: &'a dyn TupleReader,
    context: Option<&'a Map<String, Value>>,
    filter_type: TypeId,
    filter_relation: Option<RelId>,
    visited: HashMap<(RelId, Box<str>), bool>,
    queue: VecDeque<Node>,
    /// Candidate user → whether it is sure.
    candidates: HashMap<String, bool>,
}

impl Walk<'_> {
    /// Whether expanding `relation` can ever produce a user of the filter's kind.
    fn relevant(&self, relation: RelId) -> bool {
        let info = self.ts.rel(relation);
        match self.filter_relation {
            None => {
                info.reach_objects.contains(self.filter_type)
                    || info.reach_wildcards.contains(self.filter_type)
            }
            Some(k) => info.reach_usersets.contains(k) || info.reach_relations.contains(k),
        }
    }

    fn push(
        &mut self,
        relation: RelId,
        id: &str,
        sure: bool,
        depth: u32,
    ) -> Result<(), EngineError> {
        if !self.relevant(relation) {
            return Ok(());
        }
        if depth >= MAX_RESOLUTION_DEPTH {
            return Err(EngineError::ResolutionTooComplex);
        }
        match self.visited.entry((relation, id.into())) {
            Entry::Occupied(mut e) => {
                if *e.get() || !sure {
                    return Ok(());
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
        Ok(())
    }

    fn candidate(&mut self, user: String, sure: bool) {
        let slot = self.candidates.entry(user).or_insert(sure);
        *slot |= sure;
    }

    fn run(&mut self) -> Result<(), EngineError> {
        let ts = self.ts;
        while let Some(node) = self.queue.pop_front() {
            let info = ts.rel(node.relation);
            let object = ObjectRef {
                object_type: ts.type_name(info.type_id),
                object_id: &node.id,
            };
            if self.filter_relation == Some(node.relation) {
                self.candidate(
                    format!("{}:{}#{}", object.object_type, object.object_id, info.name),
                    node.sure,
                );
            }
            self.expand(&info.rewrite, object, node.relation, node.sure, node.depth)?;
        }
        Ok(())
    }

    fn expand(
        &mut self,
        rewrite: &Rewrite,
        object: ObjectRef<'_>,
        relation: RelId,
        sure: bool,
        depth: u32,
    ) -> Result<(), EngineError> {
        let ts = self.ts;
        match rewrite {
            Rewrite::This => self.direct(object, relation, sure, depth),
            Rewrite::Computed(k) => self.push(*k, object.object_id, sure, depth + 1),
            Rewrite::TupleToUserset {
                tupleset, parents, ..
            } => {
                let name = &*ts.rel(*tupleset).name;
                for &(parent_type, parent_relation) in parents {
                    if !self.relevant(parent_relation) {
                        continue;
                    }
                    let mut found: Vec<(Box<str>, bool)> = Vec::new();
                    let selector = UserSelector::Type {
                        user_type: ts.type_name(parent_type),
                        relation: None,
                    };
                    let context = self.context;
                    self.reader
                        .read_users(object, name, selector, &mut |t: TupleView<'_>| {
                            if let UserRef::Object(p) = t.user
                                && ts.admits_stored(*tupleset, parent_type, &t.user, t.condition)
                            {
                                match tuple_holds(ts, &t, context) {
                                    Ok(true) => found.push((p.object_id.into(), sure)),
                                    Ok(false) => {}
                                    Err(_) => found.push((p.object_id.into(), false)),
                                }
                            }
                            ControlFlow::Continue(())
                        })
                        .map_err(|e| EngineError::Read(e.0))?;
                    for (id, s) in found {
                        self.push(parent_relation, &id, s, depth + 1)?;
                    }
                }
                Ok(())
            }
            Rewrite::Union(children) => {
                for c in children {
                    self.expand(c, object, relation, sure, depth)?;
                }
                Ok(())
            }
            Rewrite::Intersection(children) => {
                for c in children {
                    self.expand(c, object, relation, false, depth)?;
                }
                Ok(())
            }
            Rewrite::Difference(base, _) => self.expand(base, object, relation, false, depth),
        }
    }

    fn direct(
        &mut self,
        object: ObjectRef<'_>,
        relation: RelId,
        sure: bool,
        depth: u32,
    ) -> Result<(), EngineError> {
        let ts = self.ts;
        let name = &*ts.rel(relation).name;
        let filter_type_name = ts.type_name(self.filter_type);
        let filter_relation = self.filter_relation;
        let context = self.context;
        let mut users: Vec<(String, bool)> = Vec::new();
        let mut nodes: Vec<(RelId, Box<str>, bool)> = Vec::new();
        self.reader
            .read_users(object, name, UserSelector::All, &mut |t: TupleView<'_>| {
                if !ts.admits_stored_view(relation, &t) {
                    return ControlFlow::Continue(());
                }
                let s = match tuple_holds(ts, &t, context) {
                    Ok(true) => sure,
                    Ok(false) => return ControlFlow::Continue(()),
                    Err(_) => false,
                };
                match t.user {
                    UserRef::Object(o) => {
                        if filter_relation.is_none() && o.object_type == filter_type_name {
                            users.push((format!("{}:{}", o.object_type, o.object_id), s));
                        }
                    }
                    UserRef::Wildcard { user_type } => {
                        if filter_relation.is_none() && user_type == filter_type_name {
                            users.push((format!("{user_type}:*"), s));
                        }
                    }
                    UserRef::Userset {
                        object: uo,
                        relation: ur,
                    } => {
                        if let Some(k) = ts
                            .type_id(uo.object_type)
                            .and_then(|tid| ts.relation_id(tid, ur))
                        {
                            nodes.push((k, uo.object_id.into(), s));
                        }
                    }
                }
                ControlFlow::Continue(())
            })
            .map_err(|e| EngineError::Read(e.0))?;
        for (u, s) in users {
            self.candidate(u, s);
        }
        for (k, id, s) in nodes {
            self.push(k, &id, s, depth + 1)?;
        }
        Ok(())
    }
}
