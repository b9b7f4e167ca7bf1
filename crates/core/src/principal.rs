//! Principals: who is calling.
//!
//! Authentication turns a credential into a [`Principal`]; authorization only ever sees the
//! principal's [`subject`](Principal::subject) string (`user:42`, `service:admin`). The principal
//! never carries permissions: tokens and sessions carry trust, they are not the policy.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of party behind a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A human account.
    User,
    /// A machine identity: an API client, a service account, the bootstrap administrator.
    Service,
}

impl PrincipalKind {
    /// The object type used for this kind in relationship tuples.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Service => "service",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// What kind of party this is.
    pub kind: PrincipalKind,
    /// Stable identifier within its kind.
    pub id: String,
    /// Human-readable name, for logs and audit records.
    pub display_name: String,
    /// Authentication methods references (RFC 8176), e.g. `pwd`, `otp`, `hwk`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

impl Principal {
    /// A service principal.
    pub fn service(id: impl Into<String>, display_name: impl Into<String>) -> Self {
        Self {
            kind: PrincipalKind::Service,
            id: id.into(),
            display_name: display_name.into(),
            amr: Vec::new(),
        }
    }

    /// The subject string the policy engine evaluates, `type:id`.
    pub fn subject(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.id)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_type_colon_id() {
        let p = Principal::service("admin", "bootstrap administrator");
        assert_eq!(p.subject(), "service:admin");
        assert_eq!(p.to_string(), "service:admin");
    }
}
