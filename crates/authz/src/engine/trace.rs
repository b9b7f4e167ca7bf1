//! Observing a check: the hooks the check walk ([`super::check`]) calls at every step, so the
//! one algorithm that decides is also the one that explains.
//!
//! A check runs with [`NoTrace`], whose hooks are empty and inlined away: deciding pays
//! nothing for explaining. [`super::explain`] runs the same walk with tracers that record a
//! short reason (for the audit trail) and the whole tree of steps (for `explain`).
//!
//! The walk calls the hooks in a fixed, well-nested order:
//! - a relation that is evaluated: `mark`, `enter_relation`, then its rewrite, then
//!   `exit_relation` with the mark and the relation's result;
//! - a relation that is answered without evaluating its rewrite (the user is that userset, the
//!   relation can never contain the user's type, a cycle, the depth limit, a denial this walk
//!   already established): `skip_relation`;
//! - an operator of a rewrite (`union`, `intersection`, `but not`, the direct tuples of
//!   `[...]`, a tuple-to-userset): `enter_operator`, its operands, `exit_operator`;
//! - a tuple read for the user: `enter_tuple` with whether the tuple holds (its condition),
//!   then, for a userset or a tupleset tuple that holds, the nested relation, then `exit_tuple`
//!   with the tuple's result;
//! - a `but not` whose subtracted side holds: `excluded`, with the mark taken before the
//!   subtracted side was evaluated.

use serde_json::{Map, Value};

use crate::tuple::ObjectRef;

use super::check::Outcome;
use super::error::EngineError;
use super::reader::TupleView;
use super::typesystem::RelId;

/// The operators of a rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operator {
    /// `a or b`.
    Union,
    /// `a and b`.
    Intersection,
    /// `a but not b`.
    Exclusion,
    /// The directly related users `[...]`: tuples of the relation itself.
    Direct,
    /// `relation from tupleset`: the tupleset's tuples, then the relation on each parent.
    TupleToUserset(RelId),
}

/// Why a relation was answered without evaluating its rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The checked user is this very userset (allowed).
    IsTheUser,
    /// The type system says the relation can never contain the user's type (denied).
    Unreachable,
    /// The relation is already being resolved further up: a cycle (denied).
    Cycle,
    /// The resolution depth limit is reached (an error).
    TooDeep,
    /// This walk already found that the relation does not hold (denied).
    KnownDenied,
}

/// Hooks called by the check walk; see the module documentation for their order.
pub(crate) trait Trace {
    /// A position in what the tracer recorded, to go back to when a subtree's result makes
    /// what it recorded irrelevant.
    type Mark: Copy;

    /// The current position.
    fn mark(&self) -> Self::Mark;
    /// `object#relation` is about to be evaluated.
    fn enter_relation(&self, object: ObjectRef<'_>, relation: RelId);
    /// The relation entered last is evaluated.
    fn exit_relation(&self, mark: Self::Mark, result: &Result<Outcome, EngineError>);
    /// `object#relation` is answered without evaluating it.
    fn skip_relation(&self, object: ObjectRef<'_>, relation: RelId, skip: Skip);
    /// An operator of the rewrite of `object#relation` is about to be evaluated.
    fn enter_operator(&self, op: Operator, object: ObjectRef<'_>, relation: RelId);
    /// The operator entered last is evaluated.
    fn exit_operator(&self, result: &Result<Outcome, EngineError>);
    /// A tuple was read; `holds` is its condition's verdict (true without a condition).
    fn enter_tuple(
        &self,
        tuple: &TupleView<'_>,
        holds: &Result<bool, EngineError>,
        context: Option<&Map<String, Value>>,
    );
    /// The tuple entered last is evaluated (for a userset or a parent: with its nested check).
    fn exit_tuple(&self, tuple: &TupleView<'_>, result: &Result<Outcome, EngineError>);
    /// A `but not` excluded the user: what was recorded since `mark` is what excluded it.
    fn excluded(&self, mark: Self::Mark);
}

/// The tracer of plain checks: records nothing, costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoTrace;

impl Trace for NoTrace {
    type Mark = ();

    #[inline(always)]
    fn mark(&self) {}
    #[inline(always)]
    fn enter_relation(&self, _: ObjectRef<'_>, _: RelId) {}
    #[inline(always)]
    fn exit_relation(&self, _: (), _: &Result<Outcome, EngineError>) {}
    #[inline(always)]
    fn skip_relation(&self, _: ObjectRef<'_>, _: RelId, _: Skip) {}
    #[inline(always)]
    fn enter_operator(&self, _: Operator, _: ObjectRef<'_>, _: RelId) {}
    #[inline(always)]
    fn exit_operator(&self, _: &Result<Outcome, EngineError>) {}
    #[inline(always)]
    fn enter_tuple(
        &self,
        _: &TupleView<'_>,
        _: &Result<bool, EngineError>,
        _: Option<&Map<String, Value>>,
    ) {
    }
    #[inline(always)]
    fn exit_tuple(&self, _: &TupleView<'_>, _: &Result<Outcome, EngineError>) {}
    #[inline(always)]
    fn excluded(&self, _: ()) {}
}

/// Two tracers fed the same walk.
impl<A: Trace, B: Trace> Trace for (A, B) {
    type Mark = (A::Mark, B::Mark);

    fn mark(&self) -> Self::Mark {
        (self.0.mark(), self.1.mark())
    }
    fn enter_relation(&self, object: ObjectRef<'_>, relation: RelId) {
        self.0.enter_relation(object, relation);
        self.1.enter_relation(object, relation);
    }
    fn exit_relation(&self, mark: Self::Mark, result: &Result<Outcome, EngineError>) {
        self.0.exit_relation(mark.0, result);
        self.1.exit_relation(mark.1, result);
    }
    fn skip_relation(&self, object: ObjectRef<'_>, relation: RelId, skip: Skip) {
        self.0.skip_relation(object, relation, skip);
        self.1.skip_relation(object, relation, skip);
    }
    fn enter_operator(&self, op: Operator, object: ObjectRef<'_>, relation: RelId) {
        self.0.enter_operator(op, object, relation);
        self.1.enter_operator(op, object, relation);
    }
    fn exit_operator(&self, result: &Result<Outcome, EngineError>) {
        self.0.exit_operator(result);
        self.1.exit_operator(result);
    }
    fn enter_tuple(
        &self,
        tuple: &TupleView<'_>,
        holds: &Result<bool, EngineError>,
        context: Option<&Map<String, Value>>,
    ) {
        self.0.enter_tuple(tuple, holds, context);
        self.1.enter_tuple(tuple, holds, context);
    }
    fn exit_tuple(&self, tuple: &TupleView<'_>, result: &Result<Outcome, EngineError>) {
        self.0.exit_tuple(tuple, result);
        self.1.exit_tuple(tuple, result);
    }
    fn excluded(&self, mark: Self::Mark) {
        self.0.excluded(mark.0);
        self.1.excluded(mark.1);
    }
}
