//! Relationship tuples: `user` has `relation` to `object`, optionally under a condition.
//!
//! The string forms follow OpenFGA: an object is `type:id`; a user is `type:id`, the wildcard
//! `type:*`, or a userset `type:id#relation`.

pub use trustgate_core::tuple::{RelationshipCondition, TupleKey};

/// An object reference `type:id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectRef<'a> {
    /// The object type.
    pub object_type: &'a str,
    /// The object id.
    pub object_id: &'a str,
}

impl<'a> ObjectRef<'a> {
    /// Splits `type:id` at the first `:`. Both halves must be non-empty.
    pub fn parse(s: &'a str) -> Option<Self> {
        let (object_type, object_id) = s.split_once(':')?;
        if object_type.is_empty() || object_id.is_empty() {
            return None;
        }
        Some(Self {
            object_type,
            object_id,
        })
    }
}

/// The three shapes a tuple's user can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserRef<'a> {
    /// `type:id`.
    Object(ObjectRef<'a>),
    /// `type:*`: every object of the type.
    Wildcard {
        /// The user type.
        user_type: &'a str,
    },
    /// `type:id#relation`: every user related to `type:id` by `relation`.
    Userset {
        /// The userset's object.
        object: ObjectRef<'a>,
        /// The userset's relation.
        relation: &'a str,
    },
}

impl<'a> UserRef<'a> {
    /// Parses a user string; `None` if it has none of the three shapes.
    pub fn parse(s: &'a str) -> Option<Self> {
        if let Some((object, relation)) = s.split_once('#') {
            if relation.is_empty() || relation.contains('#') {
                return None;
            }
            let object = ObjectRef::parse(object)?;
            return Some(UserRef::Userset { object, relation });
        }
        let object = ObjectRef::parse(s)?;
        if object.object_id == "*" {
            Some(UserRef::Wildcard {
                user_type: object.object_type,
            })
        } else {
            Some(UserRef::Object(object))
        }
    }

    /// The user's type (the object type of a userset).
    pub fn user_type(&self) -> &'a str {
        match self {
            UserRef::Object(o) => o.object_type,
            UserRef::Wildcard { user_type } => user_type,
            UserRef::Userset { object, .. } => object.object_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_user_shapes() {
        assert_eq!(
            UserRef::parse("user:anne"),
            Some(UserRef::Object(ObjectRef {
                object_type: "user",
                object_id: "anne"
            }))
        );
        assert_eq!(
            UserRef::parse("user:*"),
            Some(UserRef::Wildcard { user_type: "user" })
        );
        assert!(matches!(
            UserRef::parse("group:eng#member"),
            Some(UserRef::Userset {
                relation: "member",
                ..
            })
        ));
        for bad in ["", "user", ":anne", "user:", "group:eng#", "a:b#c#d"] {
            assert_eq!(UserRef::parse(bad), None, "{bad}");
        }
    }
}
