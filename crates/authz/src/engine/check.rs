//! Check and BatchCheck: is `user` related to `object` by `relation`?
//!
//! Evaluation follows the compiled rewrite of the relation, depth first:
//! - **direct** (`[user, user:*, group#member]`): the exact tuple `object#relation@user` (if the
//!   restrictions admit the user's shape), then the wildcard tuple `object#relation@type:*` (for
//!   an object user whose type's wildcard is admitted), then every userset tuple
//!   `object#relation@group:x#member` of an admitted userset type, each resolved by a nested
//!   check of `group:x#member`;
//! - **computed userset** (`viewer: editor`): a nested check of the other relation;
//! - **tuple-to-userset** (`viewer from parent`): for every `object#parent@folder:x` (plain
//!   objects only) whose type defines `viewer`, a nested check of `folder:x#viewer`;
//! - **union / intersection / exclusion** combine their operands deterministically, in model
//!   order: union is true if any operand is true, else an error if any errored, else false;
//!   intersection is false if any operand is false, else an error if any errored, else true;
//!   exclusion is false if the base is false or the subtracted operand is true, else an error if
//!   either errored, else true.
//!
//! Cycles: every nested check records `object#relation` in a chain of stack frames (the user is
//! the same for the whole check). Revisiting an ancestor yields "false, cycle detected"; as in
//! OpenFGA the cycle flag propagates through false unions, and an exclusion whose subtracted
//! side hit a cycle is false (the set is not well defined, so it grants nothing). The top level
//! turns a cycle into plain `false`.
//!
//! Depth: a nested check at depth [`super::MAX_RESOLUTION_DEPTH`] is an error (2002).
//!
//! Model evolution: every tuple read is filtered by the evaluated model
//! ([`TypeSystem::admits_stored`]): one written under an older model that this one no longer
//! admits (restriction removed, condition added to or removed from its restriction, condition
//! deleted) grants nothing and causes no error, as in OpenFGA.
//!
//! Pruning: a nested check of a relation that can never contain the user's kind (its type, its
//! wildcard or its userset, per the type system's reachability) returns false without reading.
//!
//! A userset user (`group:x#member`) is self-defining: checking `group:x#member` for it is true
//! without reading anything.
//!
//! Nothing is allocated per tuple or per nested check: frames live on the call stack.
//!
//! Memo: after [`MEMO_AFTER`] relations, a walk remembers its definite denials (no cycle met)
//! by `(relation, object id)`, so a relation reached again by another path is answered at once
//! ([`Memo`]); a revisit that is deeper than the depth limit allows is still an error, as it
//! was before the memo.
//!
//! Explanations: the walk calls the hooks of a [`Trace`] at every step (see
//! [`super::trace`] for the order). [`check`] walks with [`NoTrace`], whose empty hooks
//! compile away; [`super::explain`] walks the very same code with recording tracers.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::tuple::{ObjectRef, TupleKey, UserRef};

use super::MAX_RESOLUTION_DEPTH;
use super::condition_eval::tuple_holds;
use super::error::EngineError;
use super::reader::{TupleReader, TupleView, UserSelector};
use super::trace::{NoTrace, Operator, Skip, Trace};
use super::typesystem::{RelId, RestrictionKind, Rewrite, TypeSystem};
use super::validation::{
    ResolvedUser, resolve_object_relation, resolve_user, validate_contextual_tuples,
};

/// One check.
#[derive(Debug, Clone, Copy)]
pub struct CheckRequest<'a> {
    /// `type:id`.
    pub object: &'a str,
    /// The relation.
    pub relation: &'a str,
    /// `type:id`, `type:*` or `type:id#relation`.
    pub user: &'a str,
    /// Tuples that hold for this request only (at most 100), validated like written tuples.
    pub contextual_tuples: &'a [TupleKey],
    /// The request context conditions are evaluated with.
    pub context: Option<&'a Map<String, Value>>,
}

/// Checks one relationship. `Ok(false)` is a definite "no" (including when a cycle was found);
/// every failure to decide is an `Err`.
pub fn check(
    ts: &TypeSystem,
    reader: &dyn TupleReader,
    req: &CheckRequest<'_>,
) -> Result<bool, EngineError> {
    evaluate(ts, reader, req, &NoTrace).and_then(std::convert::identity)
}

/// Validates `req` and walks it with `trace`: the outer error is an invalid request (nothing
/// was evaluated), the inner result the evaluation's.
pub(crate) fn evaluate<T: Trace>(
    ts: &TypeSystem,
    reader: &dyn TupleReader,
    req: &CheckRequest<'_>,
    trace: &T,
) -> Result<Result<bool, EngineError>, EngineError> {
    let (object, relation) = resolve_object_relation(ts, req.object, req.relation)
        .map_err(EngineError::into_validation)?;
    let user = resolve_user(ts, req.user)
        .map_err(|e| EngineError::Validation(format!("invalid 'user' field: {e}")))?;
    let contextual = validate_contextual_tuples(ts, req.contextual_tuples)?;
    let overlay = contextual.over(reader);
    let reader: &dyn TupleReader = if contextual.is_empty() {
        reader
    } else {
        &overlay
    };
    let checker = Checker {
        ts,
        reader,
        user,
        context: req.context,
        trace,
        memo: Memo::default(),
    };
    Ok(checker
        .check_relation(object, relation, None)
        .map(|o| o.allowed))
}

/// One item of a batch check.
#[derive(Debug, Clone, Copy)]
pub struct BatchCheckItem<'a> {
    /// The caller's id for this item, echoed in its result; unique within the batch.
    pub correlation_id: &'a str,
    /// The check.
    pub request: CheckRequest<'a>,
}

/// The result of one batch item.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchCheckResult {
    /// The item's correlation id.
    pub correlation_id: String,
    /// Its answer or its error; one item's error does not affect the others.
    pub result: Result<bool, EngineError>,
}

/// Checks many relationships against the same snapshot. Fails as a whole only if a correlation
/// id is empty or repeated (`validation_error`); otherwise every item gets its own result, in
/// input order.
pub fn batch_check(
    ts: &TypeSystem,
    reader: &dyn TupleReader,
    items: &[BatchCheckItem<'_>],
) -> Result<Vec<BatchCheckResult>, EngineError> {
    validate_correlation_ids(items)?;
    Ok(items
        .iter()
        .map(|item| BatchCheckResult {
            correlation_id: item.correlation_id.to_owned(),
            result: check(ts, reader, &item.request),
        })
        .collect())
}

/// Refuses a batch whose correlation ids are not all non-empty and distinct
/// (`validation_error`), as [`batch_check`] does before evaluating anything.
pub fn validate_correlation_ids(items: &[BatchCheckItem<'_>]) -> Result<(), EngineError> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        if item.correlation_id.is_empty() {
            return Err(EngineError::Validation(
                "correlation_id must not be empty".to_owned(),
            ));
        }
        if !seen.insert(item.correlation_id) {
            return Err(EngineError::Validation(format!(
                "duplicate correlation_id '{}'",
                item.correlation_id
            )));
        }
    }
    Ok(())
}

/// The result of evaluating one node: allowed, or not allowed possibly because of a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) allowed: bool,
    pub(crate) cycle: bool,
}

const ALLOWED: Outcome = Outcome {
    allowed: true,
    cycle: false,
};
const DENIED: Outcome = Outcome {
    allowed: false,
    cycle: false,
};
const CYCLE: Outcome = Outcome {
    allowed: false,
    cycle: true,
};

/// One nested check on the call stack: `object_id` of the relation's type, `relation`.
pub(crate) struct Frame<'p> {
    relation: RelId,
    object_id: &'p str,
    depth: u32,
    parent: Option<&'p Frame<'p>>,
}

/// Accumulates a union of tuple-derived results: first error wins, any cycle is remembered.
#[derive(Default)]
struct UnionAcc {
    error: Option<EngineError>,
    cycle: bool,
}

impl UnionAcc {
    fn record(&mut self, r: Result<Outcome, EngineError>) -> bool {
        match r {
            Ok(o) if o.allowed => return true,
            Ok(o) => self.cycle |= o.cycle,
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
        }
        false
    }

    fn finish(self) -> Result<Outcome, EngineError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(Outcome {
                allowed: false,
                cycle: self.cycle,
            }),
        }
    }
}

/// The evaluation state of one check (or of the final checks of a list request).
pub(crate) struct Checker<'a, T: Trace = NoTrace> {
    pub(crate) ts: &'a TypeSystem,
    pub(crate) reader: &'a dyn TupleReader,
    pub(crate) user: ResolvedUser<'a>,
    pub(crate) context: Option<&'a Map<String, Value>>,
    /// Observes the walk ([`NoTrace`] outside of explanations).
    pub(crate) trace: &'a T,
    /// Denials already established for this user in this walk.
    pub(crate) memo: Memo,
}

/// How many relations a walk evaluates before it remembers denials: short walks never
/// allocate for it.
const MEMO_AFTER: u32 = 16;

/// The denials a walk has established, so a relation reached again by another path (a folder
/// under two parents, a group in several groups) is not walked again. Only definite denials
/// are kept — an allow ends the walk up to the next `and` or `but not` anyway, and a denial
/// that met a cycle depends on the path that reached it, so it is not kept. Valid for one user,
/// one snapshot, one context: one walk.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    evaluated: Cell<u32>,
    denied: RefCell<HashMap<RelId, HashSet<Box<str>>>>,
}

impl Memo {
    fn knows_denied(&self, relation: RelId, object_id: &str) -> bool {
        self.evaluated.get() > MEMO_AFTER
            && self
                .denied
                .borrow()
                .get(&relation)
                .is_some_and(|ids| ids.contains(object_id))
    }

    fn note(&self, relation: RelId, object_id: &str, result: &Result<Outcome, EngineError>) {
        let evaluated = self.evaluated.get().saturating_add(1);
        self.evaluated.set(evaluated);
        if evaluated > MEMO_AFTER
            && let Ok(o) = result
            && !o.allowed
            && !o.cycle
        {
            self.denied
                .borrow_mut()
                .entry(relation)
                .or_default()
                .insert(object_id.into());
        }
    }
}

impl<T: Trace> Checker<'_, T> {
    /// Whether `relation` can contain the user at all (type-system reachability).
    fn may_contain(&self, relation: RelId) -> bool {
        let info = self.ts.rel(relation);
        match self.user.user {
            UserRef::Object(_) => {
                info.reach_objects.contains(self.user.type_id)
                    || info.reach_wildcards.contains(self.user.type_id)
            }
            UserRef::Wildcard { .. } => info.reach_wildcards.contains(self.user.type_id),
            UserRef::Userset { .. } => self.user.userset_relation.is_some_and(|k| {
                info.reach_usersets.contains(k) || info.reach_relations.contains(k)
            }),
        }
    }

    /// Checks `object#relation` for the user.
    pub(crate) fn check_relation<'p>(
        &self,
        object: ObjectRef<'p>,
        relation: RelId,
        parent: Option<&'p Frame<'p>>,
    ) -> Result<Outcome, EngineError> {
        if let UserRef::Userset { object: uo, .. } = self.user.user
            && self.user.userset_relation == Some(relation)
            && uo == object
        {
            self.trace.skip_relation(object, relation, Skip::IsTheUser);
            return Ok(ALLOWED);
        }
        if !self.may_contain(relation) {
            self.trace
                .skip_relation(object, relation, Skip::Unreachable);
            return Ok(DENIED);
        }
        let depth = parent.map_or(0, |p| p.depth + 1);
        if depth >= MAX_RESOLUTION_DEPTH {
            self.trace.skip_relation(object, relation, Skip::TooDeep);
            return Err(EngineError::ResolutionTooComplex);
        }
        let mut ancestor = parent;
        while let Some(f) = ancestor {
            if f.relation == relation && f.object_id == object.object_id {
                self.trace.skip_relation(object, relation, Skip::Cycle);
                return Ok(CYCLE);
            }
            ancestor = f.parent;
        }
        if self.memo.knows_denied(relation, object.object_id) {
            self.trace
                .skip_relation(object, relation, Skip::KnownDenied);
            return Ok(DENIED);
        }
        let frame = Frame {
            relation,
            object_id: object.object_id,
            depth,
            parent,
        };
        let mark = self.trace.mark();
        self.trace.enter_relation(object, relation);
        let result = self.eval(&self.ts.rel(relation).rewrite, object, relation, &frame);
        self.trace.exit_relation(mark, &result);
        self.memo.note(relation, object.object_id, &result);
        result
    }

    fn eval(
        &self,
        rewrite: &Rewrite,
        object: ObjectRef<'_>,
        relation: RelId,
        frame: &Frame<'_>,
    ) -> Result<Outcome, EngineError> {
        let op = match rewrite {
            Rewrite::Computed(other) => return self.check_relation(object, *other, Some(frame)),
            Rewrite::This => Operator::Direct,
            Rewrite::TupleToUserset { tupleset, .. } => Operator::TupleToUserset(*tupleset),
            Rewrite::Union(_) => Operator::Union,
            Rewrite::Intersection(_) => Operator::Intersection,
            Rewrite::Difference(..) => Operator::Exclusion,
        };
        self.trace.enter_operator(op, object, relation);
        let result = match rewrite {
            Rewrite::Computed(other) => self.check_relation(object, *other, Some(frame)),
            Rewrite::This => self.direct(object, relation, frame),
            Rewrite::TupleToUserset {
                tupleset, parents, ..
            } => self.tuple_to_userset(object, *tupleset, parents, frame),
            Rewrite::Union(children) => self.union(children, object, relation, frame),
            Rewrite::Intersection(children) => self.intersection(children, object, relation, frame),
            Rewrite::Difference(base, subtract) => {
                self.difference(base, subtract, object, relation, frame)
            }
        };
        self.trace.exit_operator(&result);
        result
    }

    fn union(
        &self,
        children: &[Rewrite],
        object: ObjectRef<'_>,
        relation: RelId,
        frame: &Frame<'_>,
    ) -> Result<Outcome, EngineError> {
        let mut acc = UnionAcc::default();
        for child in children {
            if acc.record(self.eval(child, object, relation, frame)) {
                return Ok(ALLOWED);
            }
        }
        acc.finish()
    }

    fn intersection(
        &self,
        children: &[Rewrite],
        object: ObjectRef<'_>,
        relation: RelId,
        frame: &Frame<'_>,
    ) -> Result<Outcome, EngineError> {
        let mut error = None;
        for child in children {
            match self.eval(child, object, relation, frame) {
                Ok(o) if !o.allowed => return Ok(o),
                Ok(_) => {}
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(ALLOWED),
        }
    }

    fn difference(
        &self,
        base: &Rewrite,
        subtract: &Rewrite,
        object: ObjectRef<'_>,
        relation: RelId,
        frame: &Frame<'_>,
    ) -> Result<Outcome, EngineError> {
        let base = self.eval(base, object, relation, frame);
        if let Ok(o) = base
            && !o.allowed
        {
            return Ok(o);
        }
        let mark = self.trace.mark();
        let subtract = self.eval(subtract, object, relation, frame);
        match subtract {
            Ok(o) if o.allowed => {
                self.trace.excluded(mark);
                return Ok(DENIED);
            }
            Ok(o) if o.cycle => return Ok(CYCLE),
            _ => {}
        }
        base?;
        subtract?;
        Ok(ALLOWED)
    }

    /// Evaluates one tuple found for the user: its condition, then (for a userset) the nested
    /// check of the userset.
    fn direct(
        &self,
        object: ObjectRef<'_>,
        relation: RelId,
        frame: &Frame<'_>,
    ) -> Result<Outcome, EngineError> {
        let info = self.ts.rel(relation);
        let name = &*info.name;
        let mut acc = UnionAcc::default();
        let mut found = false;
        let user = self.user.user;

        // The exact tuple, and for an object user the wildcard of its type.
        let wildcard = match user {
            UserRef::Object(o) => Some(UserRef::Wildcard {
                user_type: o.object_type,
            }),
            _ => None,
        };
        let user_type = self.user.type_id;
        for candidate in std::iter::once(user).chain(wildcard) {
            if !self.ts.admits_shape(relation, user_type, &candidate) {
                continue;
            }
            self.reader
                .read_tuple(object, name, candidate, &mut |t: TupleView<'_>| {
                    if !self
                        .ts
                        .admits_stored(relation, user_type, &t.user, t.condition)
                    {
                        return std::ops::ControlFlow::Continue(());
                    }
                    let holds = tuple_holds(self.ts, &t, self.context);
                    self.trace.enter_tuple(&t, &holds, self.context);
                    let result = holds.map(|h| Outcome {
                        allowed: h,
                        cycle: false,
                    });
                    self.trace.exit_tuple(&t, &result);
                    if acc.record(result) {
                        found = true;
                        return std::ops::ControlFlow::Break(());
                    }
                    std::ops::ControlFlow::Continue(())
                })
                .map_err(|e| EngineError::Read(e.0))?;
            if found {
                return Ok(ALLOWED);
            }
        }

        // Userset tuples, one admitted userset type at a time.
        for (i, r) in info.restrictions.iter().enumerate() {
            let RestrictionKind::Userset(k) = r.kind else {
                continue;
            };
            // The same userset type may be listed twice (with and without a condition).
            if info.restrictions[..i]
                .iter()
                .any(|p| p.kind == RestrictionKind::Userset(k))
            {
                continue;
            }
            if !self.may_contain(k) {
                continue;
            }
            let selector = UserSelector::Type {
                user_type: self.ts.type_name(r.type_id),
                relation: Some(&*self.ts.rel(k).name),
            };
            self.reader
                .read_users(object, name, selector, &mut |t: TupleView<'_>| {
                    let UserRef::Userset { object: uo, .. } = t.user else {
                        return std::ops::ControlFlow::Continue(());
                    };
                    if !self
                        .ts
                        .admits_stored(relation, r.type_id, &t.user, t.condition)
                    {
                        return std::ops::ControlFlow::Continue(());
                    }
                    let holds = tuple_holds(self.ts, &t, self.context);
                    self.trace.enter_tuple(&t, &holds, self.context);
                    let result = match holds {
                        Ok(true) => self.check_relation(uo, k, Some(frame)),
                        Ok(false) => Ok(DENIED),
                        Err(e) => Err(e),
                    };
                    self.trace.exit_tuple(&t, &result);
                    if acc.record(result) {
                        found = true;
                        return std::ops::ControlFlow::Break(());
                    }
                    std::ops::ControlFlow::Continue(())
                })
                .map_err(|e| EngineError::Read(e.0))?;
            if found {
                return Ok(ALLOWED);
            }
        }
        acc.finish()
    }

    fn tuple_to_userset(
        &self,
        object: ObjectRef<'_>,
        tupleset: RelId,
        parents: &[(u32, RelId)],
        frame: &Frame<'_>,
    ) -> Result<Outcome, EngineError> {
        let tupleset_name = &*self.ts.rel(tupleset).name;
        let mut acc = UnionAcc::default();
        let mut found = false;
        for &(parent_type, parent_relation) in parents {
            if !self.may_contain(parent_relation) {
                continue;
            }
            let selector = UserSelector::Type {
                user_type: self.ts.type_name(parent_type),
                relation: None,
            };
            self.reader
                .read_users(object, tupleset_name, selector, &mut |t: TupleView<'_>| {
                    // Wildcards are never parents.
                    let UserRef::Object(parent) = t.user else {
                        return std::ops::ControlFlow::Continue(());
                    };
                    if !self
                        .ts
                        .admits_stored(tupleset, parent_type, &t.user, t.condition)
                    {
                        return std::ops::ControlFlow::Continue(());
                    }
                    let holds = tuple_holds(self.ts, &t, self.context);
                    self.trace.enter_tuple(&t, &holds, self.context);
                    let result = match holds {
                        Ok(true) => self.check_relation(parent, parent_relation, Some(frame)),
                        Ok(false) => Ok(DENIED),
                        Err(e) => Err(e),
                    };
                    self.trace.exit_tuple(&t, &result);
                    if acc.record(result) {
                        found = true;
                        return std::ops::ControlFlow::Break(());
                    }
                    std::ops::ControlFlow::Continue(())
                })
                .map_err(|e| EngineError::Read(e.0))?;
            if found {
                return Ok(ALLOWED);
            }
        }
        acc.finish()
    }
}
