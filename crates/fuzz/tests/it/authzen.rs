//! AuthZEN requests: the members an evaluation reads (`server::authzen::wire`) and the engine
//! strings they map to. Beyond "no panic": a subject that maps to a user at all maps to one
//! plain `type:id` — never a userset (`…#relation`) or the wildcard — so an AuthZEN caller can
//! only ever ask about the party it names.

use bolero::{TypeGenerator, check};
use serde_json::Value;
use trustgate_authz::engine::validate_user;
use trustgate_authz::tuple::UserRef;
use trustgate_server::authzen::wire;

use crate::support::{SMOKE_ITERATIONS, pick};

/// Bodies are capped by `http.body_limit_bytes` before they are read; this is plenty for the
/// shapes that matter.
const MAX_BODY: usize = 4096;

/// Reads one evaluation request the way the evaluation endpoint does.
fn read(body: &Value) {
    let Some(obj) = body.as_object() else {
        return;
    };
    let Ok(request) = wire::evaluation(
        obj.get("subject"),
        obj.get("action"),
        obj.get("resource"),
        obj.get("context"),
    ) else {
        return;
    };
    let _ = wire::object_string(&request.resource);
    if let Ok(user) = wire::user(&request.subject)
        && let Ok(parsed) = validate_user(&user)
    {
        assert!(
            matches!(parsed, UserRef::Object(_)),
            "{user:?} became {parsed:?}"
        );
        assert_eq!(
            user,
            format!(
                "{}:{}",
                request.subject.party_type,
                request.subject.id.unwrap_or_default()
            )
        );
    }
    let _ = wire::page(obj.get("page"));
    let _ = wire::semantic(obj.get("options"));
}

#[test]
fn bytes() {
    check!()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(MAX_BODY)
        .for_each(|input: &[u8]| {
            if let Ok(body) = serde_json::from_slice::<Value>(input) {
                read(&body);
            }
        });
}

#[derive(Debug, TypeGenerator)]
struct Request {
    subject_type: Vec<u8>,
    subject_id: Vec<u8>,
    action: Vec<u8>,
    resource_type: Vec<u8>,
    resource_id: Vec<u8>,
    shape: u8,
}

const PIECES: &[&str] = &[
    "user", "doc", "group", ":", "#", "*", "member", "viewer", "alice", "1", " ", "@", "é", "",
    "#member", "\u{0}", "/", "{id}", "GET",
];

#[test]
fn structured() {
    check!()
        .with_type::<Request>()
        .with_iterations(SMOKE_ITERATIONS)
        .for_each(|r| {
            let text =
                |parts: &[u8]| -> String { parts.iter().map(|i| pick(PIECES, *i)).collect() };
            let mut body = serde_json::json!({
                "subject": { "type": text(&r.subject_type), "id": text(&r.subject_id) },
                "action": { "name": text(&r.action) },
                "resource": { "type": text(&r.resource_type), "id": text(&r.resource_id) },
            });
            // Some members of the wrong shape, or missing.
            match r.shape % 6 {
                0 => body["subject"]["properties"] = serde_json::json!([1]),
                1 => body["context"] = serde_json::json!("ctx"),
                2 => body["action"] = serde_json::json!(null),
                3 => body["subject"]["id"] = serde_json::json!(7),
                4 => body["page"] = serde_json::json!({ "limit": -1, "token": 3 }),
                _ => {}
            }
            read(&body);
        });
}
