//! AuthZEN's JSON: requests read member by member from the body (unknown members ignored, each
//! problem named by its member), answers as serde types.
//!
//! Requests are read from a `serde_json` map rather than derived structs so that an item of a
//! batch can be invalid on its own (its answer is `decision: false` with the reason, the batch
//! goes on) and so that every message names the member at fault.

use serde::Serialize;
use serde_json::{Map, Value};
use trustgate_pdp::attributes::{Act, Attributes, Party};

/// Why a request (or a batch item) cannot be read: a missing or malformed member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a request reads a party's `id` (the searched party has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    /// `id` is required.
    Required,
    /// `id` is not read (a search's subject or resource).
    Ignored,
}

fn text<'a>(obj: &'a Map<String, Value>, member: &str, key: &str) -> Result<&'a str, Malformed> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(Malformed(format!("{member}.{key} must not be empty"))),
        None | Some(Value::Null) => Err(Malformed(format!("{member}.{key} is required"))),
        Some(_) => Err(Malformed(format!("{member}.{key} must be a string"))),
    }
}

fn object<'a>(
    value: Option<&'a Value>,
    member: &str,
) -> Result<Option<&'a Map<String, Value>>, Malformed> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(Malformed(format!("{member} must be an object"))),
    }
}

fn required<'a>(
    value: Option<&'a Value>,
    member: &str,
) -> Result<&'a Map<String, Value>, Malformed> {
    object(value, member)?.ok_or_else(|| Malformed(format!("{member} is required")))
}

/// A `subject` or `resource` member.
pub fn party<'a>(value: Option<&'a Value>, member: &str, id: Id) -> Result<Party<'a>, Malformed> {
    let obj = required(value, member)?;
    Ok(Party {
        party_type: text(obj, member, "type")?,
        id: match id {
            Id::Required => Some(text(obj, member, "id")?),
            Id::Ignored => None,
        },
        properties: object(obj.get("properties"), &format!("{member}.properties"))?,
    })
}

/// The `action` member.
pub fn action(value: Option<&Value>) -> Result<Act<'_>, Malformed> {
    let obj = required(value, "action")?;
    Ok(Act {
        name: Some(text(obj, "action", "name")?),
        properties: object(obj.get("properties"), "action.properties")?,
    })
}

/// The optional `context` member.
pub fn context(value: Option<&Value>) -> Result<Option<&Map<String, Value>>, Malformed> {
    object(value, "context")
}

/// A complete evaluation request: subject, action and resource with ids, optional context.
pub fn evaluation<'a>(
    subject: Option<&'a Value>,
    action_value: Option<&'a Value>,
    resource: Option<&'a Value>,
    context_value: Option<&'a Value>,
) -> Result<Attributes<'a>, Malformed> {
    Ok(Attributes {
        subject: party(subject, "subject", Id::Required)?,
        action: action(action_value)?,
        resource: party(resource, "resource", Id::Required)?,
        context: context(context_value)?,
    })
}

/// The engine's user string of a subject: `type:id`. A subject the engine would read as
/// something else (a userset `…#relation`, the wildcard `*`) is refused with the reason.
pub fn user(subject: &Party<'_>) -> Result<String, String> {
    let id = subject.id.unwrap_or_default();
    if subject.party_type.contains('#') || id.contains('#') {
        return Err("a subject type or id with '#' cannot be evaluated".to_owned());
    }
    if id == "*" {
        return Err("the subject id '*' cannot be evaluated".to_owned());
    }
    Ok(format!("{}:{id}", subject.party_type))
}

/// The engine's object string of a resource: `type:id`.
pub fn object_string(resource: &Party<'_>) -> String {
    format!(
        "{}:{}",
        resource.party_type,
        resource.id.unwrap_or_default()
    )
}

/// `page` of a search: `{token?, limit?}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageRequest<'a> {
    /// The previous answer's `next_token` (empty: the first page).
    pub token: Option<&'a str>,
    /// At most this many results (≥ 1).
    pub limit: Option<u64>,
}

/// The optional `page` member.
pub fn page(value: Option<&Value>) -> Result<PageRequest<'_>, Malformed> {
    let Some(obj) = object(value, "page")? else {
        return Ok(PageRequest::default());
    };
    let token = match obj.get("token") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Malformed("page.token must be a string".to_owned())),
    };
    let limit = match obj.get("limit") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n >= 1)
                .ok_or_else(|| Malformed("page.limit must be a positive integer".to_owned()))?,
        ),
    };
    Ok(PageRequest { token, limit })
}

/// `options.evaluations_semantic` of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Semantic {
    /// Every item (the default).
    #[default]
    ExecuteAll,
    /// Up to and including the first denial.
    DenyOnFirstDeny,
    /// Up to and including the first permit.
    PermitOnFirstPermit,
}

/// The optional `options` member of a batch.
pub fn semantic(options: Option<&Value>) -> Result<Semantic, Malformed> {
    let Some(obj) = object(options, "options")? else {
        return Ok(Semantic::ExecuteAll);
    };
    match obj.get("evaluations_semantic") {
        None | Some(Value::Null) => Ok(Semantic::ExecuteAll),
        Some(Value::String(s)) => match s.as_str() {
            "execute_all" => Ok(Semantic::ExecuteAll),
            "deny_on_first_deny" => Ok(Semantic::DenyOnFirstDeny),
            "permit_on_first_permit" => Ok(Semantic::PermitOnFirstPermit),
            _ => Err(Malformed(
                "options.evaluations_semantic must be execute_all, deny_on_first_deny or \
                 permit_on_first_permit"
                    .to_owned(),
            )),
        },
        Some(_) => Err(Malformed(
            "options.evaluations_semantic must be a string".to_owned(),
        )),
    }
}

/// `options.explain` (trustgate's extension, on an evaluation or a batch): whether decisions
/// come with their reason (`context.reason_admin.en`) and their steps (`context.explanation`).
pub fn explain(options: Option<&Value>) -> Result<bool, Malformed> {
    let Some(obj) = object(options, "options")? else {
        return Ok(false);
    };
    match obj.get("explain") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Malformed("options.explain must be a boolean".to_owned())),
    }
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Allowed or not.
    pub decision: bool,
    /// Why no decision could be made: `{"error": {"status", "code", "message"}}`; when asked
    /// (`options.explain`), why it was made: `{"reason_admin": {"en": …}, "explanation":
    /// {"steps": …, "truncated": …}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
}

impl Decision {
    /// A decision.
    pub fn of(allowed: bool) -> Self {
        Decision {
            decision: allowed,
            context: None,
        }
    }

    /// Adds the explanation of the decision to its context (AuthZEN's `reason_admin`, a
    /// reason for the PEP's operators, and the steps).
    pub fn explained(mut self, explanation: &trustgate_pdp::Explanation) -> Self {
        let mut context = match self.context.take() {
            Some(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        context.insert(
            "reason_admin".to_owned(),
            serde_json::json!({ "en": explanation.reason.to_string() }),
        );
        context.insert(
            "explanation".to_owned(),
            serde_json::json!({ "steps": explanation.tree, "truncated": explanation.truncated }),
        );
        self.context = Some(Value::Object(context));
        self
    }

    /// `false`, because the request could not be evaluated.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Decision {
            decision: false,
            context: Some(serde_json::json!({
                "error": { "status": status, "code": code, "message": message.into() }
            })),
        }
    }
}

/// The answer of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decisions {
    /// In request order; after a stop rule ended the batch, up to the item that ended it.
    pub evaluations: Vec<Decision>,
}

/// A subject or resource found by a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// Its type.
    #[serde(rename = "type")]
    pub found_type: String,
    /// Its id (`*`: every one of the type).
    pub id: String,
}

impl Found {
    /// From the engine's `type:id`.
    pub fn parse(s: &str) -> Option<Self> {
        let (t, id) = s.split_once(':')?;
        (!id.contains('#')).then(|| Found {
            found_type: t.to_owned(),
            id: id.to_owned(),
        })
    }
}

/// An action found by a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundAction {
    /// The action's name.
    pub name: String,
}

/// `page` of a search answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PageAnswer {
    /// The token of the next page; empty on the last one.
    pub next_token: String,
}

/// A search answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Results<T> {
    /// Results, sorted.
    pub results: Vec<T>,
    /// Paging.
    pub page: PageAnswer,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_read_with_named_errors() {
        let subject = json!({ "type": "user", "id": "alice", "extra": 1 });
        let p = party(Some(&subject), "subject", Id::Required).expect("valid");
        assert_eq!((p.party_type, p.id), ("user", Some("alice")));
        for (value, message) in [
            (json!(null), "subject is required"),
            (json!([]), "subject must be an object"),
            (json!({ "id": "a" }), "subject.type is required"),
            (
                json!({ "type": "", "id": "a" }),
                "subject.type must not be empty",
            ),
            (
                json!({ "type": 1, "id": "a" }),
                "subject.type must be a string",
            ),
            (json!({ "type": "user" }), "subject.id is required"),
            (
                json!({ "type": "user", "id": "a", "properties": 3 }),
                "subject.properties must be an object",
            ),
        ] {
            assert_eq!(
                party(Some(&value), "subject", Id::Required),
                Err(Malformed(message.to_owned())),
                "{value}"
            );
        }
        let search = json!({ "type": "user" });
        assert_eq!(
            party(Some(&search), "subject", Id::Ignored).map(|p| p.id),
            Ok(None)
        );
        assert_eq!(
            action(Some(&json!({}))),
            Err(Malformed("action.name is required".to_owned()))
        );
        assert!(page(Some(&json!({ "limit": 0 }))).is_err());
        assert!(page(Some(&json!({ "limit": 1.5 }))).is_err());
        assert_eq!(
            page(Some(&json!({ "limit": 3, "token": "t" }))),
            Ok(PageRequest {
                token: Some("t"),
                limit: Some(3)
            })
        );
        assert!(semantic(Some(&json!({ "evaluations_semantic": "sometimes" }))).is_err());
    }

    #[test]
    fn subjects_are_never_usersets_or_wildcards() {
        let p = |id| Party {
            party_type: "user",
            id: Some(id),
            properties: None,
        };
        assert_eq!(user(&p("alice")), Ok("user:alice".to_owned()));
        assert!(user(&p("eng#member")).is_err());
        assert!(user(&p("*")).is_err());
    }
}
