//! How the engine reads tuples: the [`TupleReader`] trait and the per-request contextual-tuple
//! overlay.
//!
//! The trait is synchronous and visitor based: a read calls the visitor once per matching tuple
//! with borrowed views ([`TupleView`]) and stops as soon as the visitor returns
//! [`ControlFlow::Break`]. Nothing is allocated per tuple, and the engine can recurse from inside
//! a visitor (a userset tuple is resolved while the read that found it is still open), which is
//! why implementations must not hold locks that a nested read would need: the in-memory index
//! reads from an immutable snapshot and takes no lock at all.
//!
//! Order: an implementation yields tuples in an order that depends only on its data (the index
//! uses key order), so evaluation is deterministic.

use std::ops::ControlFlow;

use crate::tuple::{ObjectRef, RelationshipCondition, TupleKey, UserRef};

/// A borrowed view of one tuple.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TupleView<'a> {
    /// The tuple's object.
    pub object: ObjectRef<'a>,
    /// The tuple's relation.
    pub relation: &'a str,
    /// The tuple's user.
    pub user: UserRef<'a>,
    /// The condition the tuple holds under, if any.
    pub condition: Option<&'a RelationshipCondition>,
}

impl TupleView<'_> {
    /// The OpenFGA string form `object#relation@user`, for messages.
    pub fn to_tuple_string(&self) -> String {
        format!(
            "{}:{}#{}@{}",
            self.object.object_type,
            self.object.object_id,
            self.relation,
            user_string(&self.user)
        )
    }
}

/// The string form of a parsed user.
pub(crate) fn user_string(user: &UserRef<'_>) -> String {
    match user {
        UserRef::Object(o) => format!("{}:{}", o.object_type, o.object_id),
        UserRef::Wildcard { user_type } => format!("{user_type}:*"),
        UserRef::Userset { object, relation } => {
            format!("{}:{}#{}", object.object_type, object.object_id, relation)
        }
    }
}

/// Which users of `object#relation` a forward read yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSelector<'a> {
    /// Every user.
    All,
    /// Users of one type: with `relation: None` the objects `type:id` and the wildcard `type:*`;
    /// with `relation: Some(r)` the usersets `type:id#r`.
    Type {
        /// The user type.
        user_type: &'a str,
        /// The userset relation, or `None` for plain objects and the wildcard.
        relation: Option<&'a str>,
    },
}

impl UserSelector<'_> {
    /// Whether `user` is selected.
    pub fn matches(&self, user: &UserRef<'_>) -> bool {
        match self {
            UserSelector::All => true,
            UserSelector::Type {
                user_type,
                relation,
            } => {
                user.user_type() == *user_type
                    && match (relation, user) {
                        (None, UserRef::Object(_) | UserRef::Wildcard { .. }) => true,
                        (Some(r), UserRef::Userset { relation: ur, .. }) => r == ur,
                        _ => false,
                    }
            }
        }
    }
}

/// A failure of the underlying storage. The in-memory index never fails; a database-backed
/// reader may.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tuple read failed: {0}")]
pub struct ReadError(pub String);

/// The visitor a read calls once per tuple; `Break` stops the read.
pub type Visitor<'v> = dyn FnMut(TupleView<'_>) -> ControlFlow<()> + 'v;

/// Read access to one store's tuples, as of one consistent point in time.
pub trait TupleReader {
    /// Visits the tuple `object#relation@user` (exactly that user string), if stored.
    fn read_tuple(
        &self,
        object: ObjectRef<'_>,
        relation: &str,
        user: UserRef<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError>;

    /// Visits the tuples of `object#relation` whose user `selector` selects (forward read).
    fn read_users(
        &self,
        object: ObjectRef<'_>,
        relation: &str,
        selector: UserSelector<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError>;

    /// Visits the tuples `T:id#relation@user` for every object of type `object_type` (reverse
    /// read, the list-objects direction). `user` matches exactly: `user:*` finds only wildcard
    /// tuples, `user:anne` only tuples naming anne.
    fn read_objects(
        &self,
        object_type: &str,
        relation: &str,
        user: UserRef<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError>;
}

impl<R: TupleReader + ?Sized> TupleReader for &R {
    fn read_tuple(
        &self,
        object: ObjectRef<'_>,
        relation: &str,
        user: UserRef<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        (**self).read_tuple(object, relation, user, visit)
    }

    fn read_users(
        &self,
        object: ObjectRef<'_>,
        relation: &str,
        selector: UserSelector<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        (**self).read_users(object, relation, selector, visit)
    }

    fn read_objects(
        &self,
        object_type: &str,
        relation: &str,
        user: UserRef<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        (**self).read_objects(object_type, relation, user, visit)
    }
}

impl<R: TupleReader + ?Sized> TupleReader for std::sync::Arc<R> {
    fn read_tuple(
        &self,
        object: ObjectRef<'_>,
        relation: &str,
        user: UserRef<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        (**self).read_tuple(object, relation, user, visit)
    }

    fn read_users(
        &self,
        object: ObjectRef<'_>,
        relation: &str,
        selector: UserSelector<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        (**self).read_users(object, relation, selector, visit)
    }

    fn read_objects(
        &self,
        object_type: &str,
        relation: &str,
        user: UserRef<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        (**self).read_objects(object_type, relation, user, visit)
    }
}

/// A request's contextual tuples, parsed once, overlaying a base reader for that request.
///
/// Build it with [`super::validate_contextual_tuples`], which also validates every tuple against
/// the model exactly like a written tuple. Contextual tuples are visited before the base
/// reader's; duplicates are harmless because every evaluation treats its inputs as sets.
#[derive(Debug, Clone, Default)]
pub struct ContextualTuples<'a> {
    pub(crate) tuples: Vec<TupleView<'a>>,
}

impl<'a> ContextualTuples<'a> {
    /// No contextual tuples.
    pub fn empty() -> Self {
        Self { tuples: Vec::new() }
    }

    /// Parses tuples without validating them against a model (they must still be well formed).
    /// Returns `None` if one is malformed. Prefer [`super::validate_contextual_tuples`].
    pub fn parse_unvalidated(tuples: &'a [TupleKey]) -> Option<Self> {
        let mut out = Vec::with_capacity(tuples.len());
        for t in tuples {
            out.push(TupleView {
                object: super::validation::parse_object(&t.object).ok()?,
                relation: t.relation.as_str(),
                user: super::validation::parse_user(&t.user).ok()?,
                condition: t.condition.as_ref(),
            });
        }
        Some(Self { tuples: out })
    }

    /// The number of contextual tuples.
    pub fn len(&self) -> usize {
        self.tuples.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tuples.is_empty()
    }

    /// This overlay on top of `base`.
    pub fn over<'r>(&'r self, base: &'r dyn TupleReader) -> Overlay<'r> {
        Overlay {
            base,
            extra: &self.tuples,
        }
    }
}

/// A base reader plus a request's contextual tuples.
#[derive(Clone, Copy)]
pub struct Overlay<'r> {
    base: &'r dyn TupleReader,
    extra: &'r [TupleView<'r>],
}

impl std::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("contextual_tuples", &self.extra.len())
            .finish_non_exhaustive()
    }
}

impl Overlay<'_> {
    /// Visits the contextual tuples matching `pred`; `true` if the visitor stopped the read.
    fn visit_extra(&self, pred: impl Fn(&TupleView<'_>) -> bool, visit: &mut Visitor<'_>) -> bool {
        for t in self.extra {
            if pred(t) && visit(*t).is_break() {
                return true;
            }
        }
        false
    }
}

impl TupleReader for Overlay<'_> {
    fn read_tuple(
        &self,
        object: ObjectRef<'_>,
        relation: &str,
        user: UserRef<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        if self.visit_extra(
            |t| t.object == object && t.relation == relation && t.user == user,
            visit,
        ) {
            return Ok(());
        }
        self.base.read_tuple(object, relation, user, visit)
    }

    fn read_users(
        &self,
        object: ObjectRef<'_>,
        relation: &str,
        selector: UserSelector<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        if self.visit_extra(
            |t| t.object == object && t.relation == relation && selector.matches(&t.user),
            visit,
        ) {
            return Ok(());
        }
        self.base.read_users(object, relation, selector, visit)
    }

    fn read_objects(
        &self,
        object_type: &str,
        relation: &str,
        user: UserRef<'_>,
        visit: &mut Visitor<'_>,
    ) -> Result<(), ReadError> {
        if self.visit_extra(
            |t| t.object.object_type == object_type && t.relation == relation && t.user == user,
            visit,
        ) {
            return Ok(());
        }
        self.base.read_objects(object_type, relation, user, visit)
    }
}
