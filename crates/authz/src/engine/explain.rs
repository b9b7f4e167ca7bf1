//! Explanations: why a check is allowed or denied.
//!
//! [`explain`] runs the check walk of [`super::check`] (the same code that decides, through
//! its [`super::trace`] hooks) and records two things:
//! - the **tree of steps** it took ([`Step`]): relations, operators (`or`, `and`, `but not`,
//!   the direct tuples of `[...]`, `from`), the tuples it read with their conditions and the
//!   values each condition saw. For an allow the tree is pruned to what granted it (the path of
//!   tuples, relations and conditions; `and` and `but not` keep every operand, since each one
//!   is part of the reason). For a deny it keeps every branch tried, each with why it failed: no
//!   tuple, a condition false with its values, excluded by `but not`, a cycle, the depth limit.
//! - the **reason** in short form ([`Reason`]): for an allow the tuples that granted it, top
//!   down; for a deny the causes found (conditions false with their values, exclusions,
//!   cycles, errors), or "no tuple relates the user" when there are none. The audit trail
//!   records this short form for every decision ([`check_with_reason`]), so the audit reason
//!   and `explain` never disagree.
//!
//! Bounds: at most [`MAX_EXPLANATION_STEPS`] steps are recorded (the rest is counted as
//! `truncated`; the decision is unaffected), a condition's values are shortened past
//! [`MAX_EXPLAINED_VALUE_BYTES`] each, and a reason keeps [`MAX_REASON_CAUSES`] causes.

use std::cell::RefCell;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::tuple::ObjectRef;

use super::check::{CheckRequest, Outcome, evaluate};
use super::error::EngineError;
use super::reader::{TupleReader, TupleView};
use super::trace::{Operator, Skip, Trace};
use super::typesystem::{RelId, TypeSystem};

/// The most steps one explanation records.
pub const MAX_EXPLANATION_STEPS: usize = 500;
/// The longest JSON of one condition value an explanation shows in full.
pub const MAX_EXPLAINED_VALUE_BYTES: usize = 512;
/// The most causes of a denial a [`Reason`] lists (the others are counted).
pub const MAX_REASON_CAUSES: usize = 4;

/// A check with its reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The decision, exactly as [`super::check`] gives it.
    pub result: Result<bool, EngineError>,
    /// The reason in short form (also the audit reason).
    pub reason: Reason,
    /// The steps of the walk, from the checked relation down.
    pub tree: Step,
    /// Whether steps were left out of `tree` ([`MAX_EXPLANATION_STEPS`]).
    pub truncated: bool,
}

/// One step of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What was evaluated.
    pub kind: StepKind,
    /// `type:id#relation` for a relation or an operator of its rewrite (for a tuple-to-userset:
    /// its tupleset), `object#relation@user` for a tuple.
    pub target: String,
    /// How it came out.
    pub result: StepResult,
    /// Why, when the result is not explained by the steps below: `no tuple`, `excluded`, a
    /// cycle, the depth limit, an error's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A tuple's condition and what it saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<ConditionStep>,
    /// The steps it took, in evaluation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
}

/// The kinds of [`Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A relation of an object (`document:1#viewer`).
    Relation,
    /// `a or b`.
    Union,
    /// `a and b`.
    Intersection,
    /// `a but not b`: the first operand, then the subtracted one.
    Exclusion,
    /// The directly related users `[...]`: the tuples of the relation itself.
    Direct,
    /// `relation from tupleset`: the tupleset's tuples, each with the relation on its parent.
    TupleToUserset,
    /// One tuple, with its condition and (for a userset or a parent) the nested relation.
    Tuple,
}

/// The result of a [`Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    /// It holds.
    Allowed,
    /// It does not hold.
    Denied,
    /// It could not be decided (which is never an allow).
    Error,
}

/// A tuple's condition as evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionStep {
    /// The condition's name.
    pub name: String,
    /// `met`, `not_met` or `error`.
    pub result: ConditionResult,
    /// The values of its parameters that it saw (tuple context over request context);
    /// parameters it did not get are absent.
    pub values: Map<String, Value>,
}

/// The verdict of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionResult {
    /// True.
    Met,
    /// False.
    NotMet,
    /// Not evaluable (a missing parameter, a wrong type, a runtime error).
    Error,
}

/// Why a check came out as it did, in short form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reason {
    allowed: bool,
    /// The tuples that granted an allow, from the checked object down.
    grants: Vec<Grant>,
    /// What made a denial (or an error), in evaluation order.
    causes: Vec<Cause>,
    /// Causes beyond [`MAX_REASON_CAUSES`].
    omitted: usize,
}

#[derive(Debug, Clone, PartialEq)]
struct Grant {
    tuple: String,
    condition: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Cause {
    ConditionFalse {
        condition: String,
        tuple: String,
        values: Map<String, Value>,
    },
    Error(String),
    Excluded(Vec<Grant>),
    Cycle(String),
    TooDeep(String),
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tuple)?;
        if let Some(c) = &self.condition {
            write!(f, " [{c}]")?;
        }
        Ok(())
    }
}

fn write_grants(f: &mut fmt::Formatter<'_>, grants: &[Grant]) -> fmt::Result {
    for (i, g) in grants.iter().enumerate() {
        if i > 0 {
            f.write_str(" > ")?;
        }
        write!(f, "{g}")?;
    }
    Ok(())
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::ConditionFalse {
                condition,
                tuple,
                values,
            } => write!(
                f,
                "condition {condition} false on {tuple} with {}",
                Value::Object(values.clone())
            ),
            Cause::Error(message) => write!(f, "error: {message}"),
            Cause::Excluded(by) => {
                f.write_str("excluded by ")?;
                write_grants(f, by)
            }
            Cause::Cycle(at) => write!(f, "cycle through {at}"),
            Cause::TooDeep(at) => write!(f, "depth limit reached at {at}"),
        }
    }
}

/// `allowed: <tuples that granted it, top down>` or `denied: <causes>`.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allowed {
            if self.grants.is_empty() {
                return f.write_str("allowed: the user is the checked userset itself");
            }
            f.write_str("allowed: ")?;
            return write_grants(f, &self.grants);
        }
        if self.causes.is_empty() {
            return f.write_str("denied: no tuple relates the user");
        }
        f.write_str("denied: ")?;
        for (i, cause) in self.causes.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{cause}")?;
        }
        if self.omitted > 0 {
            write!(f, "; and {} more", self.omitted)?;
        }
        Ok(())
    }
}

/// Checks one relationship and records why: the decision is exactly [`super::check`]'s. The
/// reason of an invalid request (the outer error) is empty.
pub fn check_with_reason(
    ts: &TypeSystem,
    reader: &dyn TupleReader,
    req: &CheckRequest<'_>,
) -> (Result<bool, EngineError>, Reason) {
    let trace = ReasonTrace::new(ts);
    match evaluate(ts, reader, req, &trace) {
        Ok(result) => {
            let reason = trace.finish(&result);
            (result, reason)
        }
        Err(invalid) => (Err(invalid), Reason::default()),
    }
}

/// Checks one relationship and explains it (see the module documentation). An invalid request
/// is an error, as for [`super::check`]; an evaluation error is in
/// [`Explanation::result`], with the steps that led to it.
pub fn explain(
    ts: &TypeSystem,
    reader: &dyn TupleReader,
    req: &CheckRequest<'_>,
) -> Result<Explanation, EngineError> {
    let trace = (ReasonTrace::new(ts), TreeTrace::new(ts));
    let result = evaluate(ts, reader, req, &trace)?;
    let (reason, tree) = trace;
    let reason = reason.finish(&result);
    let (root, truncated) = tree.finish();
    let mut tree = root.unwrap_or_else(|| Step {
        kind: StepKind::Relation,
        target: format!("{}#{}", req.object, req.relation),
        result: step_result(&result.clone().map(|allowed| Outcome {
            allowed,
            cycle: false,
        })),
        note: None,
        condition: None,
        steps: Vec::new(),
    });
    prune(&mut tree);
    Ok(Explanation {
        result,
        reason,
        tree,
        truncated,
    })
}

/// Keeps, under every allowed step, only what granted it.
fn prune(step: &mut Step) {
    if step.result == StepResult::Allowed
        && !matches!(
            step.kind,
            StepKind::Intersection | StepKind::Exclusion | StepKind::Tuple
        )
    {
        step.steps.retain(|s| s.result == StepResult::Allowed);
    }
    step.steps.iter_mut().for_each(prune);
}

impl Step {
    /// The tree as indented text, one step per line (for terminals and logs).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_text(&mut out, 0);
        out
    }

    fn write_text(&self, out: &mut String, depth: usize) {
        use std::fmt::Write as _;
        let result = match self.result {
            StepResult::Allowed => "allowed",
            StepResult::Denied => "denied ",
            StepResult::Error => "error  ",
        };
        let kind = match self.kind {
            StepKind::Relation => "relation",
            StepKind::Union => "or",
            StepKind::Intersection => "and",
            StepKind::Exclusion => "but not",
            StepKind::Direct => "direct",
            StepKind::TupleToUserset => "from",
            StepKind::Tuple => "tuple",
        };
        let _ = write!(
            out,
            "{:indent$}{result} {kind} {}",
            "",
            self.target,
            indent = depth * 2
        );
        if let Some(c) = &self.condition {
            let verdict = match c.result {
                ConditionResult::Met => "met",
                ConditionResult::NotMet => "not met",
                ConditionResult::Error => "error",
            };
            let _ = write!(
                out,
                " (condition {} {verdict} with {})",
                c.name,
                Value::Object(c.values.clone())
            );
        }
        if let Some(note) = &self.note {
            let _ = write!(out, ": {note}");
        }
        out.push('\n');
        for s in &self.steps {
            s.write_text(out, depth + 1);
        }
    }
}

fn step_result(result: &Result<Outcome, EngineError>) -> StepResult {
    match result {
        Ok(o) if o.allowed => StepResult::Allowed,
        Ok(_) => StepResult::Denied,
        Err(_) => StepResult::Error,
    }
}

fn relation_target(ts: &TypeSystem, object: ObjectRef<'_>, relation: RelId) -> String {
    format!(
        "{}:{}#{}",
        object.object_type,
        object.object_id,
        ts.rel(relation).name
    )
}

/// A condition's values, each shortened past [`MAX_EXPLAINED_VALUE_BYTES`] of JSON.
fn explained_values(
    ts: &TypeSystem,
    tuple: &TupleView<'_>,
    context: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let Some(condition) = tuple.condition else {
        return Map::new();
    };
    let mut values =
        ts.conditions()
            .arguments(&condition.name, condition.context.as_ref(), context);
    for value in values.values_mut() {
        let json = value.to_string();
        if json.len() > MAX_EXPLAINED_VALUE_BYTES {
            let mut end = MAX_EXPLAINED_VALUE_BYTES;
            while !json.is_char_boundary(end) {
                end -= 1;
            }
            *value = Value::from(format!("{}… ({} bytes)", &json[..end], json.len()));
        }
    }
    values
}

/// Records the short [`Reason`]: the tuples of the granting path, and the causes of a denial.
/// What a subtree recorded is dropped when its result makes it irrelevant: the grants of a
/// subtree that did not hold, the causes under one that did.
pub(crate) struct ReasonTrace<'a> {
    ts: &'a TypeSystem,
    state: RefCell<Reason>,
}

impl<'a> ReasonTrace<'a> {
    fn new(ts: &'a TypeSystem) -> Self {
        Self {
            ts,
            state: RefCell::new(Reason::default()),
        }
    }

    fn cause(&self, cause: Cause) {
        let mut s = self.state.borrow_mut();
        if s.causes.len() < MAX_REASON_CAUSES {
            s.causes.push(cause);
        } else {
            s.omitted += 1;
        }
    }

    fn finish(self, result: &Result<bool, EngineError>) -> Reason {
        let mut reason = self.state.into_inner();
        reason.allowed = matches!(result, Ok(true));
        if reason.allowed {
            reason.causes.clear();
            reason.omitted = 0;
            // Recorded as each tuple finished: the deepest first.
            reason.grants.reverse();
        } else {
            reason.grants.clear();
        }
        reason
    }
}

impl Trace for ReasonTrace<'_> {
    /// Grants, causes, omitted causes.
    type Mark = (usize, usize, usize);

    fn mark(&self) -> Self::Mark {
        let s = self.state.borrow();
        (s.grants.len(), s.causes.len(), s.omitted)
    }

    fn enter_relation(&self, _: ObjectRef<'_>, _: RelId) {}

    fn exit_relation(&self, mark: Self::Mark, result: &Result<Outcome, EngineError>) {
        let mut s = self.state.borrow_mut();
        if matches!(result, Ok(o) if o.allowed) {
            s.causes.truncate(mark.1);
            s.omitted = mark.2;
        } else {
            s.grants.truncate(mark.0);
        }
    }

    fn skip_relation(&self, object: ObjectRef<'_>, relation: RelId, skip: Skip) {
        match skip {
            Skip::Cycle => self.cause(Cause::Cycle(relation_target(self.ts, object, relation))),
            Skip::TooDeep => {
                self.cause(Cause::TooDeep(relation_target(self.ts, object, relation)));
            }
            Skip::IsTheUser | Skip::Unreachable | Skip::KnownDenied => {}
        }
    }

    fn enter_operator(&self, _: Operator, _: ObjectRef<'_>, _: RelId) {}

    fn exit_operator(&self, _: &Result<Outcome, EngineError>) {}

    fn enter_tuple(
        &self,
        tuple: &TupleView<'_>,
        holds: &Result<bool, EngineError>,
        context: Option<&Map<String, Value>>,
    ) {
        match (holds, tuple.condition) {
            (Ok(false), Some(condition)) => self.cause(Cause::ConditionFalse {
                condition: condition.name.clone(),
                tuple: tuple.to_tuple_string(),
                values: explained_values(self.ts, tuple, context),
            }),
            (Err(e), _) => self.cause(Cause::Error(e.to_string())),
            _ => {}
        }
    }

    fn exit_tuple(&self, tuple: &TupleView<'_>, result: &Result<Outcome, EngineError>) {
        if matches!(result, Ok(o) if o.allowed) {
            self.state.borrow_mut().grants.push(Grant {
                tuple: tuple.to_tuple_string(),
                condition: tuple.condition.map(|c| c.name.clone()),
            });
        }
    }

    fn excluded(&self, mark: Self::Mark) {
        let mut by = self.state.borrow_mut().grants.split_off(mark.0);
        by.reverse();
        self.cause(Cause::Excluded(by));
    }
}

/// Records the tree of [`Step`]s, up to [`MAX_EXPLANATION_STEPS`].
pub(crate) struct TreeTrace<'a> {
    ts: &'a TypeSystem,
    state: RefCell<Tree>,
}

#[derive(Default)]
struct Tree {
    /// The steps entered and not yet exited, outermost first.
    open: Vec<Step>,
    root: Option<Step>,
    recorded: usize,
    /// Steps entered beyond the limit and not yet exited (not recorded).
    hidden: usize,
    truncated: bool,
}

impl<'a> TreeTrace<'a> {
    fn new(ts: &'a TypeSystem) -> Self {
        Self {
            ts,
            state: RefCell::new(Tree::default()),
        }
    }

    fn enter(&self, kind: StepKind, target: String, condition: Option<ConditionStep>) {
        let mut t = self.state.borrow_mut();
        if t.hidden > 0 || t.recorded >= MAX_EXPLANATION_STEPS {
            t.hidden += 1;
            t.truncated = true;
            return;
        }
        t.recorded += 1;
        t.open.push(Step {
            kind,
            target,
            result: StepResult::Denied,
            note: None,
            condition,
            steps: Vec::new(),
        });
    }

    fn exit(&self, result: StepResult, note: Option<String>) {
        let mut t = self.state.borrow_mut();
        if t.hidden > 0 {
            t.hidden -= 1;
            return;
        }
        let Some(mut step) = t.open.pop() else {
            return;
        };
        step.result = result;
        // An error is noted where it arose, not again on every step above it.
        if step.note.is_none() && (result != StepResult::Error || step.steps.is_empty()) {
            step.note = note;
        }
        match t.open.last_mut() {
            Some(parent) => parent.steps.push(step),
            None => t.root = Some(step),
        }
    }

    fn exit_with(&self, result: &Result<Outcome, EngineError>) {
        let note = match result {
            Err(e) => Some(e.to_string()),
            Ok(_) => None,
        };
        self.exit(step_result(result), note);
    }

    fn finish(self) -> (Option<Step>, bool) {
        let t = self.state.into_inner();
        (t.root, t.truncated)
    }
}

impl Trace for TreeTrace<'_> {
    type Mark = ();

    fn mark(&self) {}

    fn enter_relation(&self, object: ObjectRef<'_>, relation: RelId) {
        self.enter(
            StepKind::Relation,
            relation_target(self.ts, object, relation),
            None,
        );
    }

    fn exit_relation(&self, _: (), result: &Result<Outcome, EngineError>) {
        self.exit_with(result);
    }

    fn skip_relation(&self, object: ObjectRef<'_>, relation: RelId, skip: Skip) {
        self.enter(
            StepKind::Relation,
            relation_target(self.ts, object, relation),
            None,
        );
        let (result, note) = match skip {
            Skip::IsTheUser => (StepResult::Allowed, "the user is this userset"),
            Skip::Unreachable => (
                StepResult::Denied,
                "the model relates no user of this type by it",
            ),
            Skip::Cycle => (StepResult::Denied, "cycle: already being resolved"),
            Skip::TooDeep => (StepResult::Error, "resolution depth limit reached"),
            Skip::KnownDenied => (StepResult::Denied, "already found denied above"),
        };
        self.exit(result, Some(note.to_owned()));
    }

    fn enter_operator(&self, op: Operator, object: ObjectRef<'_>, relation: RelId) {
        let (kind, relation) = match op {
            Operator::Union => (StepKind::Union, relation),
            Operator::Intersection => (StepKind::Intersection, relation),
            Operator::Exclusion => (StepKind::Exclusion, relation),
            Operator::Direct => (StepKind::Direct, relation),
            Operator::TupleToUserset(tupleset) => (StepKind::TupleToUserset, tupleset),
        };
        self.enter(kind, relation_target(self.ts, object, relation), None);
    }

    fn exit_operator(&self, result: &Result<Outcome, EngineError>) {
        let found_nothing = {
            let t = self.state.borrow();
            t.hidden == 0
                && t.open.last().is_some_and(|s| {
                    s.steps.is_empty()
                        && matches!(s.kind, StepKind::Direct | StepKind::TupleToUserset)
                })
        };
        if found_nothing && matches!(result, Ok(o) if !o.allowed) {
            self.exit(StepResult::Denied, Some("no tuple".to_owned()));
        } else {
            self.exit_with(result);
        }
    }

    fn enter_tuple(
        &self,
        tuple: &TupleView<'_>,
        holds: &Result<bool, EngineError>,
        context: Option<&Map<String, Value>>,
    ) {
        let condition = tuple.condition.map(|c| ConditionStep {
            name: c.name.clone(),
            result: match holds {
                Ok(true) => ConditionResult::Met,
                Ok(false) => ConditionResult::NotMet,
                Err(_) => ConditionResult::Error,
            },
            values: explained_values(self.ts, tuple, context),
        });
        self.enter(StepKind::Tuple, tuple.to_tuple_string(), condition);
    }

    fn exit_tuple(&self, _: &TupleView<'_>, result: &Result<Outcome, EngineError>) {
        self.exit_with(result);
    }

    fn excluded(&self, _: ()) {
        let mut t = self.state.borrow_mut();
        if t.hidden == 0
            && let Some(step) = t.open.last_mut()
        {
            step.note = Some("excluded: the subtracted operand holds".to_owned());
        }
    }
}
