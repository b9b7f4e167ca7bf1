//! The precomputed view of one authorization model that every evaluation runs on.
//!
//! Built once per model version ([`TypeSystem::new`]) and shared read-only (`Send + Sync`)
//! between all requests on that version.
//!
//! Invariants established at build time (so evaluation never has to handle them):
//! - every relation a rewrite names (computed usersets, tuplesets) exists on its type, every type
//!   and userset relation a type restriction names exists, every condition a restriction names is
//!   defined; a model violating one is rejected with [`TypeSystemError`];
//! - relations have dense ids ([`RelId`]) and rewrites refer to relations by id, so evaluation
//!   needs no string formatting and no `type#relation` lookups;
//! - reachability (which user kinds a relation can contain, which relations it can dispatch to)
//!   is computed over the rewrite graph *excluding* the subtracted side of `but not`, because a
//!   subtracted operand can only remove users. Check prunes a branch whose relation cannot
//!   contain the requested user's kind; list-objects and list-users use the same facts to walk
//!   only relevant relations.

use std::collections::HashMap;

use crate::condition::ConditionSet;
use crate::model::{AuthorizationModel, Userset};

/// Dense id of a type within one [`TypeSystem`].
pub(crate) type TypeId = u32;
/// Dense id of a relation (of some type) within one [`TypeSystem`].
pub(crate) type RelId = u32;

/// Why a model cannot be turned into a [`TypeSystem`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeSystemError {
    /// The schema version is not `1.1`.
    #[error("unsupported schema version '{0}', expected '1.1'")]
    UnsupportedSchemaVersion(String),
    /// Two type definitions share a name.
    #[error("duplicate type '{0}'")]
    DuplicateType(String),
    /// A rewrite or restriction names something the model does not define.
    #[error("invalid model: {0}")]
    Invalid(String),
    /// A condition failed to compile.
    #[error("invalid condition: {0}")]
    Condition(String),
}

/// A small fixed-size bit set over dense ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BitSet(Vec<u64>);

impl BitSet {
    fn with_len(n: usize) -> Self {
        BitSet(vec![0; n.div_ceil(64)])
    }

    pub(crate) fn contains(&self, i: u32) -> bool {
        let i = i as usize;
        self.0
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    /// Sets bit `i`; `true` if it was not set before.
    fn insert(&mut self, i: u32) -> bool {
        let i = i as usize;
        match self.0.get_mut(i / 64) {
            Some(w) => {
                let bit = 1u64 << (i % 64);
                let new = *w & bit == 0;
                *w |= bit;
                new
            }
            None => false,
        }
    }

    fn union_with(&mut self, other: &BitSet) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= *b;
        }
    }
}

/// One allowed user kind in a relation's type restrictions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RestrictionKind {
    /// `[user]`: objects of the type.
    Direct,
    /// `[user:*]`: the type's wildcard.
    Wildcard,
    /// `[group#member]`: usersets of this relation (of the restriction's type).
    Userset(RelId),
}

/// One entry of a relation's type restrictions.
#[derive(Debug, Clone)]
pub(crate) struct Restriction {
    pub(crate) type_id: TypeId,
    pub(crate) kind: RestrictionKind,
    /// The condition tuples of this shape carry, if the restriction names one.
    pub(crate) condition: Option<Box<str>>,
}

/// Why a tuple does not fit a relation's type restrictions ([`TypeSystem::fit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Misfit {
    /// No restriction admits the user's type and kind.
    Shape,
    /// Only conditioned restrictions admit the user, and the tuple has no condition.
    ConditionMissing,
    /// The tuple names a condition the model does not define.
    UndefinedCondition,
    /// No restriction of the user's type names the tuple's condition.
    ConditionNotAllowed,
    /// The tuple's context has a parameter its condition does not declare.
    UnknownParameter(String),
}

/// A compiled rewrite rule.
#[derive(Debug, Clone)]
pub(crate) enum Rewrite {
    /// Direct assignment: the relation's own tuples.
    This,
    /// Another relation on the same object.
    Computed(RelId),
    /// `computed from tupleset`.
    TupleToUserset {
        /// The tupleset relation (on the same type).
        tupleset: RelId,
        /// The computed relation's name, for messages and expand.
        computed: Box<str>,
        /// For every parent type the tupleset admits, the computed relation on it, if that
        /// type defines it (parents of other types are skipped, as in OpenFGA).
        parents: Vec<(TypeId, RelId)>,
    },
    /// `a or b`.
    Union(Vec<Rewrite>),
    /// `a and b`.
    Intersection(Vec<Rewrite>),
    /// `base but not subtract`.
    Difference(Box<Rewrite>, Box<Rewrite>),
}

/// Everything known about one relation.
#[derive(Debug, Clone)]
pub(crate) struct RelationInfo {
    pub(crate) type_id: TypeId,
    pub(crate) name: Box<str>,
    pub(crate) rewrite: Rewrite,
    pub(crate) restrictions: Vec<Restriction>,
    /// Some tuple-to-userset on the type uses this relation as its tupleset.
    pub(crate) is_tupleset: bool,
    /// Relations this one can dispatch to (itself included), ignoring subtracted operands.
    pub(crate) reach_relations: BitSet,
    /// Object types whose plain objects this relation can contain.
    pub(crate) reach_objects: BitSet,
    /// Object types whose wildcard this relation can contain.
    pub(crate) reach_wildcards: BitSet,
    /// Userset relations (`group#member`) whose usersets can appear in its tuples.
    pub(crate) reach_usersets: BitSet,
    /// The rewrite involves an intersection or exclusion somewhere.
    pub(crate) has_intersection_or_exclusion: bool,
}

/// One type.
#[derive(Debug, Clone)]
pub(crate) struct TypeInfo {
    pub(crate) name: Box<str>,
    pub(crate) relations: HashMap<Box<str>, RelId>,
    pub(crate) relation_order: Vec<RelId>,
}

/// How a relation's membership propagates to another relation (list-objects walks these edges
/// from the user upwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EdgeKind {
    /// `target: source` on the same object.
    Computed,
    /// `target: source from tupleset`: objects whose `tupleset` names the source object.
    TupleToUserset { tupleset: RelId },
    /// `target: [source_type#source]`: objects with a tuple naming the source userset.
    Userset,
}

/// A reverse edge from a source relation to a relation that includes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReverseEdge {
    pub(crate) target: RelId,
    pub(crate) kind: EdgeKind,
    /// The inclusion goes through unions only (no intersection, no exclusion base): membership
    /// in the source implies membership in the target without a further check.
    pub(crate) sure: bool,
}

/// A relation that admits a user type directly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DirectEdge {
    pub(crate) relation: RelId,
    /// `true` for `[type:*]`, `false` for `[type]`.
    pub(crate) wildcard: bool,
    pub(crate) sure: bool,
}

/// The precomputed type system of one model.
pub struct TypeSystem {
    model: AuthorizationModel,
    conditions: ConditionSet,
    types: Vec<TypeInfo>,
    type_ids: HashMap<Box<str>, TypeId>,
    relations: Vec<RelationInfo>,
    reverse_edges: Vec<Vec<ReverseEdge>>,
    direct_edges: Vec<Vec<DirectEdge>>,
}

impl std::fmt::Debug for TypeSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypeSystem")
            .field("model_id", &self.model.id)
            .field("types", &self.types.len())
            .field("relations", &self.relations.len())
            .finish_non_exhaustive()
    }
}

/// Where a leaf sits in its relation's rewrite.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Reached through unions only.
    Sure,
    /// Under an intersection or the base of an exclusion.
    Unsure,
}

impl TypeSystem {
    /// Builds the type system of `model`, compiling its conditions.
    pub fn new(model: AuthorizationModel) -> Result<Self, TypeSystemError> {
        if model.schema_version != "1.1" {
            return Err(TypeSystemError::UnsupportedSchemaVersion(
                model.schema_version.clone(),
            ));
        }
        let conditions =
            ConditionSet::compile(&model).map_err(|e| TypeSystemError::Condition(e.to_string()))?;

        // Types and relation ids first, so rewrites can refer forward.
        let mut types = Vec::with_capacity(model.type_definitions.len());
        let mut type_ids = HashMap::new();
        let mut rel_names: Vec<(TypeId, Box<str>)> = Vec::new();
        for td in &model.type_definitions {
            let tid = types.len() as TypeId;
            if type_ids.insert(td.type_name.as_str().into(), tid).is_some() {
                return Err(TypeSystemError::DuplicateType(td.type_name.clone()));
            }
            let mut info = TypeInfo {
                name: td.type_name.as_str().into(),
                relations: HashMap::new(),
                relation_order: Vec::new(),
            };
            for name in td.relations.iter().flat_map(|r| r.keys()) {
                let rid = rel_names.len() as RelId;
                info.relations.insert(name.as_str().into(), rid);
                info.relation_order.push(rid);
                rel_names.push((tid, name.as_str().into()));
            }
            types.push(info);
        }

        let lookup_rel = |tid: TypeId, name: &str| -> Option<RelId> {
            types
                .get(tid as usize)
                .and_then(|t| t.relations.get(name).copied())
        };

        let mut relations = Vec::with_capacity(rel_names.len());
        for (tid, td) in model.type_definitions.iter().enumerate() {
            let tid = tid as TypeId;
            for (name, rewrite) in td.relations.iter().flat_map(|r| r.iter()) {
                let mut restrictions = Vec::new();
                for rr in td.directly_related_user_types(name) {
                    let Some(&rtid) = type_ids.get(rr.type_name.as_str()) else {
                        return Err(TypeSystemError::Invalid(format!(
                            "type restriction '{}' of '{}#{}' names an undefined type",
                            rr.type_name, td.type_name, name
                        )));
                    };
                    let kind = match (&rr.relation, &rr.wildcard) {
                        (Some(rel), None) => {
                            let Some(rid) = lookup_rel(rtid, rel) else {
                                return Err(TypeSystemError::Invalid(format!(
                                    "type restriction '{}#{}' of '{}#{}' names an undefined relation",
                                    rr.type_name, rel, td.type_name, name
                                )));
                            };
                            RestrictionKind::Userset(rid)
                        }
                        (None, Some(_)) => RestrictionKind::Wildcard,
                        (None, None) => RestrictionKind::Direct,
                        (Some(_), Some(_)) => {
                            return Err(TypeSystemError::Invalid(format!(
                                "type restriction of '{}#{}' is both a userset and a wildcard",
                                td.type_name, name
                            )));
                        }
                    };
                    let condition = if rr.condition.is_empty() {
                        None
                    } else if model.conditions.contains_key(&rr.condition) {
                        Some(rr.condition.as_str().into())
                    } else {
                        return Err(TypeSystemError::Invalid(format!(
                            "condition '{}' of '{}#{}' is not defined",
                            rr.condition, td.type_name, name
                        )));
                    };
                    restrictions.push(Restriction {
                        type_id: rtid,
                        kind,
                        condition,
                    });
                }
                let compiled = compile_rewrite(rewrite, tid, &td.type_name, name, &lookup_rel)?;
                relations.push(RelationInfo {
                    type_id: tid,
                    name: name.as_str().into(),
                    rewrite: compiled,
                    restrictions,
                    is_tupleset: false,
                    reach_relations: BitSet::default(),
                    reach_objects: BitSet::default(),
                    reach_wildcards: BitSet::default(),
                    reach_usersets: BitSet::default(),
                    has_intersection_or_exclusion: has_intersection_or_exclusion(rewrite),
                });
            }
        }

        // Tuple-to-userset parents: the plain types the tupleset admits that define the
        // computed relation. Marks tuplesets on the way.
        let mut tuplesets = Vec::new();
        let restrictions_of: Vec<Vec<Restriction>> =
            relations.iter().map(|r| r.restrictions.clone()).collect();
        for rel in relations.iter_mut() {
            fill_parents(
                &mut rel.rewrite,
                &restrictions_of,
                &lookup_rel,
                &mut tuplesets,
            );
        }
        for ts in tuplesets {
            if let Some(r) = relations.get_mut(ts as usize) {
                r.is_tupleset = true;
            }
        }

        let mut ts = TypeSystem {
            model,
            conditions,
            types,
            type_ids,
            relations,
            reverse_edges: Vec::new(),
            direct_edges: Vec::new(),
        };
        ts.compute_reach();
        ts.compute_edges();
        Ok(ts)
    }

    /// The model this type system was built from.
    pub fn model(&self) -> &AuthorizationModel {
        &self.model
    }

    /// The model's compiled conditions.
    pub fn conditions(&self) -> &ConditionSet {
        &self.conditions
    }

    /// Whether the model defines `type_name`.
    pub fn has_type(&self, type_name: &str) -> bool {
        self.type_ids.contains_key(type_name)
    }

    /// Whether `type_name` defines `relation`.
    pub fn has_relation(&self, type_name: &str, relation: &str) -> bool {
        self.type_id(type_name)
            .and_then(|t| self.relation_id(t, relation))
            .is_some()
    }

    /// Whether `type_name#relation` is the tupleset of some tuple-to-userset rewrite.
    pub fn is_tupleset_relation(&self, type_name: &str, relation: &str) -> bool {
        self.type_id(type_name)
            .and_then(|t| self.relation_id(t, relation))
            .is_some_and(|r| self.rel(r).is_tupleset)
    }

    /// Whether `type_name#relation`'s rewrite involves an intersection or exclusion (so a
    /// list-objects candidate found through it needs a final check).
    pub fn involves_intersection_or_exclusion(&self, type_name: &str, relation: &str) -> bool {
        self.type_id(type_name)
            .and_then(|t| self.relation_id(t, relation))
            .is_some_and(|r| self.rel(r).has_intersection_or_exclusion)
    }

    /// The types whose objects (or wildcard, for `wildcard: true`) `type_name#relation` can ever
    /// contain, in model order. Empty for an unknown relation.
    pub fn reachable_user_types(
        &self,
        type_name: &str,
        relation: &str,
        wildcard: bool,
    ) -> Vec<&str> {
        let Some(r) = self
            .type_id(type_name)
            .and_then(|t| self.relation_id(t, relation))
        else {
            return Vec::new();
        };
        let set = if wildcard {
            &self.rel(r).reach_wildcards
        } else {
            &self.rel(r).reach_objects
        };
        self.types
            .iter()
            .enumerate()
            .filter(|(i, _)| set.contains(*i as u32))
            .map(|(_, t)| &*t.name)
            .collect()
    }

    pub(crate) fn type_id(&self, name: &str) -> Option<TypeId> {
        self.type_ids.get(name).copied()
    }

    pub(crate) fn type_name(&self, id: TypeId) -> &str {
        self.types.get(id as usize).map_or("", |t| &*t.name)
    }

    pub(crate) fn relation_id(&self, type_id: TypeId, name: &str) -> Option<RelId> {
        self.types
            .get(type_id as usize)
            .and_then(|t| t.relations.get(name).copied())
    }

    /// The relation with id `id`. Ids come only from this type system, so the fallback (an
    /// empty relation that grants nothing) is unreachable; it exists so that no lookup can
    /// panic.
    pub(crate) fn rel(&self, id: RelId) -> &RelationInfo {
        static NONE: std::sync::LazyLock<RelationInfo> =
            std::sync::LazyLock::new(|| RelationInfo {
                type_id: TypeId::MAX,
                name: "".into(),
                rewrite: Rewrite::Union(Vec::new()),
                restrictions: Vec::new(),
                is_tupleset: false,
                reach_relations: BitSet::default(),
                reach_objects: BitSet::default(),
                reach_wildcards: BitSet::default(),
                reach_usersets: BitSet::default(),
                has_intersection_or_exclusion: false,
            });
        self.relations.get(id as usize).unwrap_or(&NONE)
    }

    pub(crate) fn reverse_edges(&self, id: RelId) -> &[ReverseEdge] {
        self.reverse_edges
            .get(id as usize)
            .map_or(&[], |v| v.as_slice())
    }

    pub(crate) fn direct_edges(&self, user_type: TypeId) -> &[DirectEdge] {
        self.direct_edges
            .get(user_type as usize)
            .map_or(&[], |v| v.as_slice())
    }

    /// Whether a tuple `object_type#relation@user` fits the relation's type restrictions
    /// (ignoring conditions). Evaluation filters stored tuples with [`Self::admits_stored`].
    pub(crate) fn admits_shape(
        &self,
        rel: RelId,
        user_type: TypeId,
        user: &crate::tuple::UserRef<'_>,
    ) -> bool {
        self.rel(rel)
            .restrictions
            .iter()
            .any(|r| self.restriction_fits(r, user_type, user))
    }

    fn restriction_fits(
        &self,
        r: &Restriction,
        user_type: TypeId,
        user: &crate::tuple::UserRef<'_>,
    ) -> bool {
        use crate::tuple::UserRef;
        r.type_id == user_type
            && match (&r.kind, user) {
                (RestrictionKind::Direct, UserRef::Object(_)) => true,
                (RestrictionKind::Wildcard, UserRef::Wildcard { .. }) => true,
                (RestrictionKind::Userset(k), UserRef::Userset { relation, .. }) => {
                    &*self.rel(*k).name == *relation
                }
                _ => false,
            }
    }

    /// How a tuple of `rel` with this user (of type `user_type`) and condition fits the
    /// relation's type restrictions, in OpenFGA's order of checks: its shape, then its
    /// condition (a tuple without one needs an unconditioned restriction of its shape; a tuple
    /// with one names a condition the model defines and a restriction of the user's type names,
    /// and its stored context only that condition's parameters).
    ///
    /// The one rule for both directions: a write that does not fit is refused
    /// ([`super::validate_tuple_for_write`]), and a stored tuple that the evaluated model no
    /// longer admits is ignored by every evaluation ([`Self::admits_stored`]).
    pub(crate) fn fit(
        &self,
        rel: RelId,
        user_type: TypeId,
        user: &crate::tuple::UserRef<'_>,
        condition: Option<&crate::tuple::RelationshipCondition>,
    ) -> Result<(), Misfit> {
        let restrictions = &self.rel(rel).restrictions;
        match condition {
            None => {
                let mut shape = false;
                for r in restrictions {
                    if self.restriction_fits(r, user_type, user) {
                        if r.condition.is_none() {
                            return Ok(());
                        }
                        shape = true;
                    }
                }
                Err(if shape {
                    Misfit::ConditionMissing
                } else {
                    Misfit::Shape
                })
            }
            Some(cond) => {
                if !self.admits_shape(rel, user_type, user) {
                    return Err(Misfit::Shape);
                }
                let Some(def) = self.model.conditions.get(&cond.name) else {
                    return Err(Misfit::UndefinedCondition);
                };
                if !restrictions
                    .iter()
                    .any(|r| r.type_id == user_type && r.condition.as_deref() == Some(&cond.name))
                {
                    return Err(Misfit::ConditionNotAllowed);
                }
                if let Some(key) = cond
                    .context
                    .as_ref()
                    .and_then(|ctx| ctx.keys().find(|k| !def.parameters.contains_key(*k)))
                {
                    return Err(Misfit::UnknownParameter(key.clone()));
                }
                Ok(())
            }
        }
    }

    /// Whether a stored tuple of `rel` counts under this model (OpenFGA's read-time
    /// validation): a tuple written under an older model whose restriction was removed, that
    /// now needs a condition, or whose condition was deleted or is no longer allowed for its
    /// type grants nothing and causes no error.
    pub(crate) fn admits_stored(
        &self,
        rel: RelId,
        user_type: TypeId,
        user: &crate::tuple::UserRef<'_>,
        condition: Option<&crate::tuple::RelationshipCondition>,
    ) -> bool {
        self.fit(rel, user_type, user, condition).is_ok()
    }

    /// [`Self::admits_stored`] for a tuple whose user type id is not known yet.
    pub(crate) fn admits_stored_view(&self, rel: RelId, t: &super::TupleView<'_>) -> bool {
        self.type_id(t.user.user_type())
            .is_some_and(|ut| self.admits_stored(rel, ut, &t.user, t.condition))
    }

    fn compute_reach(&mut self) {
        let n_rel = self.relations.len();
        let n_types = self.types.len();
        // Local facts and dispatch edges of each relation.
        let mut local_objects = vec![BitSet::with_len(n_types); n_rel];
        let mut local_wildcards = vec![BitSet::with_len(n_types); n_rel];
        let mut local_usersets = vec![BitSet::with_len(n_rel); n_rel];
        let mut dispatch: Vec<Vec<RelId>> = vec![Vec::new(); n_rel];
        for (i, rel) in self.relations.iter().enumerate() {
            let mut has_this = false;
            collect_dispatch(&rel.rewrite, &mut dispatch[i], &mut has_this);
            if has_this {
                for r in &rel.restrictions {
                    match r.kind {
                        RestrictionKind::Direct => {
                            local_objects[i].insert(r.type_id);
                        }
                        RestrictionKind::Wildcard => {
                            local_wildcards[i].insert(r.type_id);
                        }
                        RestrictionKind::Userset(k) => {
                            local_usersets[i].insert(k);
                            dispatch[i].push(k);
                        }
                    }
                }
            }
        }
        // A relation reaches what its strongly connected component reaches. Components come
        // out of `strongly_connected` after every component they reach, so one pass unions each
        // component's own facts with its successors' finished sets: linear in the edges times
        // the set width, where a search per relation was cubic on a long chain.
        let components = strongly_connected(&dispatch);
        let mut component_of = vec![usize::MAX; n_rel];
        let mut reach: Vec<Reach> = Vec::with_capacity(components.len());
        for (c, members) in components.iter().enumerate() {
            for &m in members {
                component_of[m] = c;
            }
            let mut own = Reach {
                relations: BitSet::with_len(n_rel),
                objects: BitSet::with_len(n_types),
                wildcards: BitSet::with_len(n_types),
                usersets: BitSet::with_len(n_rel),
            };
            for &m in members {
                own.relations.insert(m as RelId);
                own.objects.union_with(&local_objects[m]);
                own.wildcards.union_with(&local_wildcards[m]);
                own.usersets.union_with(&local_usersets[m]);
                for &next in &dispatch[m] {
                    let nc = component_of[next as usize];
                    if nc != c
                        && let Some(done) = reach.get(nc)
                    {
                        own.relations.union_with(&done.relations);
                        own.objects.union_with(&done.objects);
                        own.wildcards.union_with(&done.wildcards);
                        own.usersets.union_with(&done.usersets);
                    }
                }
            }
            reach.push(own);
        }
        for (i, rel) in self.relations.iter_mut().enumerate() {
            if let Some(r) = component_of.get(i).and_then(|&c| reach.get(c)) {
                rel.reach_relations = r.relations.clone();
                rel.reach_objects = r.objects.clone();
                rel.reach_wildcards = r.wildcards.clone();
                rel.reach_usersets = r.usersets.clone();
            }
        }
    }

    fn compute_edges(&mut self) {
        let mut reverse: Vec<Vec<ReverseEdge>> = vec![Vec::new(); self.relations.len()];
        let mut direct: Vec<Vec<DirectEdge>> = vec![Vec::new(); self.types.len()];
        for (target, rel) in self.relations.iter().enumerate() {
            let target = target as RelId;
            let mut leaves = Vec::new();
            collect_leaves(&rel.rewrite, Position::Sure, &mut leaves);
            for (leaf, pos) in leaves {
                let sure = pos == Position::Sure;
                match leaf {
                    Rewrite::This => {
                        for r in &rel.restrictions {
                            match r.kind {
                                RestrictionKind::Direct | RestrictionKind::Wildcard => {
                                    if let Some(v) = direct.get_mut(r.type_id as usize) {
                                        v.push(DirectEdge {
                                            relation: target,
                                            wildcard: r.kind == RestrictionKind::Wildcard,
                                            sure,
                                        });
                                    }
                                }
                                RestrictionKind::Userset(k) => {
                                    if let Some(v) = reverse.get_mut(k as usize) {
                                        v.push(ReverseEdge {
                                            target,
                                            kind: EdgeKind::Userset,
                                            sure,
                                        });
                                    }
                                }
                            }
                        }
                    }
                    Rewrite::Computed(k) => {
                        if let Some(v) = reverse.get_mut(*k as usize) {
                            v.push(ReverseEdge {
                                target,
                                kind: EdgeKind::Computed,
                                sure,
                            });
                        }
                    }
                    Rewrite::TupleToUserset {
                        tupleset, parents, ..
                    } => {
                        for &(_, prel) in parents {
                            if let Some(v) = reverse.get_mut(prel as usize) {
                                v.push(ReverseEdge {
                                    target,
                                    kind: EdgeKind::TupleToUserset {
                                        tupleset: *tupleset,
                                    },
                                    sure,
                                });
                            }
                        }
                    }
                    Rewrite::Union(_) | Rewrite::Intersection(_) | Rewrite::Difference(..) => {}
                }
            }
        }
        // Identical edges can arise (the same relation named twice in one rewrite); keep one,
        // preferring the sure one, so walks do not repeat reads.
        for edges in &mut reverse {
            dedup_edges(
                edges,
                |a, b| a.target == b.target && a.kind == b.kind,
                |e| &mut e.sure,
            );
        }
        for edges in &mut direct {
            dedup_edges(
                edges,
                |a, b| a.relation == b.relation && a.wildcard == b.wildcard,
                |e| &mut e.sure,
            );
        }
        self.reverse_edges = reverse;
        self.direct_edges = direct;
    }
}

/// What one strongly connected component of relations can reach.
struct Reach {
    relations: BitSet,
    objects: BitSet,
    wildcards: BitSet,
    usersets: BitSet,
}

/// The strongly connected components of a graph given as adjacency lists, each emitted after
/// every component it reaches (Tarjan's algorithm, iterative so a chain of thousands of
/// relations cannot overflow the stack). Every node is in exactly one component.
fn strongly_connected(edges: &[Vec<RelId>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut t = Tarjan {
        index: vec![Tarjan::UNVISITED; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        calls: Vec::new(),
        next_index: 0,
    };
    let mut out = Vec::new();
    for root in 0..n {
        if t.index[root] != Tarjan::UNVISITED {
            continue;
        }
        t.visit(root);
        while let Some(frame) = t.calls.last_mut() {
            let v = frame.0;
            if let Some(&w) = edges[v].get(frame.1) {
                frame.1 += 1;
                let w = w as usize;
                if w >= n {
                    continue;
                }
                if t.index[w] == Tarjan::UNVISITED {
                    t.visit(w);
                } else if t.on_stack[w] {
                    t.low[v] = t.low[v].min(t.index[w]);
                }
                continue;
            }
            t.calls.pop();
            if let Some(&(parent, _)) = t.calls.last() {
                t.low[parent] = t.low[parent].min(t.low[v]);
            }
            if t.low[v] == t.index[v] {
                let mut component = Vec::new();
                while let Some(w) = t.stack.pop() {
                    t.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}

/// The state of [`strongly_connected`].
struct Tarjan {
    index: Vec<usize>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    /// The depth-first search's own stack: (node, position in its edge list).
    calls: Vec<(usize, usize)>,
    next_index: usize,
}

impl Tarjan {
    const UNVISITED: usize = usize::MAX;

    fn visit(&mut self, v: usize) {
        self.index[v] = self.next_index;
        self.low[v] = self.next_index;
        self.next_index += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        self.calls.push((v, 0));
    }
}

fn dedup_edges<E>(
    edges: &mut Vec<E>,
    same: impl Fn(&E, &E) -> bool,
    sure: impl Fn(&mut E) -> &mut bool,
) {
    let mut out: Vec<E> = Vec::with_capacity(edges.len());
    for mut e in edges.drain(..) {
        if let Some(existing) = out.iter_mut().find(|x| same(x, &e)) {
            let s = *sure(&mut e);
            let slot = sure(existing);
            *slot = *slot || s;
        } else {
            out.push(e);
        }
    }
    *edges = out;
}

fn compile_rewrite(
    rewrite: &Userset,
    tid: TypeId,
    type_name: &str,
    relation: &str,
    lookup: &dyn Fn(TypeId, &str) -> Option<RelId>,
) -> Result<Rewrite, TypeSystemError> {
    let undefined = |what: &str| {
        TypeSystemError::Invalid(format!(
            "'{type_name}#{relation}' refers to undefined relation '{type_name}#{what}'"
        ))
    };
    Ok(match rewrite {
        Userset::This(_) => Rewrite::This,
        Userset::ComputedUserset(or) => {
            Rewrite::Computed(lookup(tid, &or.relation).ok_or_else(|| undefined(&or.relation))?)
        }
        Userset::TupleToUserset(ttu) => Rewrite::TupleToUserset {
            tupleset: lookup(tid, &ttu.tupleset.relation)
                .ok_or_else(|| undefined(&ttu.tupleset.relation))?,
            computed: ttu.computed_userset.relation.as_str().into(),
            parents: Vec::new(),
        },
        Userset::Union(u) => Rewrite::Union(
            u.child
                .iter()
                .map(|c| compile_rewrite(c, tid, type_name, relation, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Userset::Intersection(u) => Rewrite::Intersection(
            u.child
                .iter()
                .map(|c| compile_rewrite(c, tid, type_name, relation, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Userset::Difference(d) => Rewrite::Difference(
            Box::new(compile_rewrite(&d.base, tid, type_name, relation, lookup)?),
            Box::new(compile_rewrite(
                &d.subtract,
                tid,
                type_name,
                relation,
                lookup,
            )?),
        ),
    })
}

fn has_intersection_or_exclusion(rewrite: &Userset) -> bool {
    match rewrite {
        Userset::Intersection(_) | Userset::Difference(_) => true,
        Userset::Union(u) => u.child.iter().any(has_intersection_or_exclusion),
        _ => false,
    }
}

fn fill_parents(
    rewrite: &mut Rewrite,
    restrictions: &[Vec<Restriction>],
    lookup: &dyn Fn(TypeId, &str) -> Option<RelId>,
    tuplesets: &mut Vec<RelId>,
) {
    match rewrite {
        Rewrite::TupleToUserset {
            tupleset,
            computed,
            parents,
        } => {
            tuplesets.push(*tupleset);
            for r in restrictions.get(*tupleset as usize).into_iter().flatten() {
                if r.kind == RestrictionKind::Direct
                    && !parents.iter().any(|(t, _)| *t == r.type_id)
                    && let Some(prel) = lookup(r.type_id, computed)
                {
                    parents.push((r.type_id, prel));
                }
            }
        }
        Rewrite::Union(children) | Rewrite::Intersection(children) => {
            for c in children {
                fill_parents(c, restrictions, lookup, tuplesets);
            }
        }
        Rewrite::Difference(base, subtract) => {
            fill_parents(base, restrictions, lookup, tuplesets);
            fill_parents(subtract, restrictions, lookup, tuplesets);
        }
        Rewrite::This | Rewrite::Computed(_) => {}
    }
}

/// The relations a rewrite dispatches to (ignoring subtracted operands), and whether it reads
/// its own tuples.
fn collect_dispatch(rewrite: &Rewrite, out: &mut Vec<RelId>, has_this: &mut bool) {
    match rewrite {
        Rewrite::This => *has_this = true,
        Rewrite::Computed(k) => out.push(*k),
        Rewrite::TupleToUserset { parents, .. } => out.extend(parents.iter().map(|(_, r)| *r)),
        Rewrite::Union(c) | Rewrite::Intersection(c) => {
            for x in c {
                collect_dispatch(x, out, has_this);
            }
        }
        Rewrite::Difference(base, _) => collect_dispatch(base, out, has_this),
    }
}

/// The leaves of a rewrite that can grant membership, with their position.
fn collect_leaves<'r>(rewrite: &'r Rewrite, pos: Position, out: &mut Vec<(&'r Rewrite, Position)>) {
    match rewrite {
        Rewrite::Union(c) => {
            for x in c {
                collect_leaves(x, pos, out);
            }
        }
        Rewrite::Intersection(c) => {
            for x in c {
                collect_leaves(x, Position::Unsure, out);
            }
        }
        Rewrite::Difference(base, _) => collect_leaves(base, Position::Unsure, out),
        leaf => out.push((leaf, pos)),
    }
}
