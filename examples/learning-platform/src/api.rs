//! The platform's JSON API and the one policy that protects it.
//!
//! The handlers hold no authorization logic at all: they run only after the `pep` layer has
//! authenticated the caller and the PDP has allowed the route's action on its resource, and
//! they read the caller from the [`Principal`] extractor. The policy is [`policy`]: one rule
//! per route, the relation asked (the action) and the object built from the path.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::Method;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::json;
use trustgate_pep::{Principal, RouteError, RouteTable, Rule, StepUp};

/// The OAuth scope every API route requires.
pub const SCOPE: &str = "learning";
/// The platform object the settings belong to.
pub const PLATFORM: &str = "platform:learning";
/// How recent the second factor of a settings change must be (the example's "last 10 minutes").
pub const SETTINGS_MAX_AGE_SECS: u64 = 600;
/// trustgate's authentication context class for two factors.
pub const TWO_FACTORS: &str = "2";

/// The route table of the API: what the `pep` layer enforces in-process, and what the gateway
/// route set (`gateway.toml`) repeats in front of the service.
pub fn policy() -> Result<RouteTable, RouteError> {
    RouteTable::new([
        Rule::public(Method::GET, "/api/healthz"),
        Rule::new(
            Method::GET,
            "/api/progress/{student}",
            "can_read",
            "progress:{student}",
        )
        .scopes([SCOPE]),
        Rule::new(
            Method::GET,
            "/api/courses/{course}",
            "can_view",
            "course:{course}",
        )
        .scopes([SCOPE]),
        Rule::new(
            Method::PUT,
            "/api/courses/{course}",
            "can_edit",
            "course:{course}",
        )
        .scopes([SCOPE]),
        Rule::new(Method::GET, "/api/settings", "can_view", PLATFORM).scopes([SCOPE]),
        Rule::new(Method::PUT, "/api/settings", "can_change", PLATFORM)
            .scopes([SCOPE])
            .step_up(StepUp {
                max_age: Some(SETTINGS_MAX_AGE_SECS),
                amr: Vec::new(),
                acr_values: vec![TWO_FACTORS.to_owned()],
            }),
    ])
}

/// A course.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Course {
    /// The id in `course:{id}`.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: String,
}

/// One student's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The student's user id (`progress:{id}`).
    pub student: String,
    /// The student's display name.
    pub name: String,
    /// Lessons completed per course id.
    pub completed: BTreeMap<String, u32>,
}

/// The platform's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Whether new students may enrol.
    pub enrolment_open: bool,
    /// The banner on every page.
    pub banner: String,
}

/// The platform's data, in memory (the example keeps no database of its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalogue {
    /// Courses by id.
    pub courses: BTreeMap<String, Course>,
    /// Progress by student id.
    pub progress: BTreeMap<String, Progress>,
    /// The settings.
    pub settings: Settings,
}

impl Catalogue {
    /// The demo's data (`trustgate demo`) for the seeded users (name → user id): courses Rust
    /// and Go, alice's and bob's progress.
    pub fn demo(users: &BTreeMap<String, String>) -> Catalogue {
        let course = |id: &str, title: &str| {
            (
                id.to_owned(),
                Course {
                    id: id.to_owned(),
                    title: title.to_owned(),
                    description: format!("An introduction to {title}."),
                },
            )
        };
        let progress = ["alice", "bob"]
            .iter()
            .zip([7, 3])
            .filter_map(|(name, lessons)| {
                let id = users.get(*name)?;
                Some((
                    id.clone(),
                    Progress {
                        student: id.clone(),
                        name: (*name).to_owned(),
                        completed: BTreeMap::from([("rust".to_owned(), lessons)]),
                    },
                ))
            })
            .collect();
        Catalogue {
            courses: BTreeMap::from([course("rust", "Rust"), course("go", "Go")]),
            progress,
            settings: Settings {
                enrolment_open: true,
                banner: "Welcome to the learning platform".to_owned(),
            },
        }
    }
}

/// The shared, mutable catalogue.
pub type SharedCatalogue = Arc<RwLock<Catalogue>>;

/// The longest title, description or banner accepted.
const MAX_TEXT: usize = 2000;

/// The API's routes (to be wrapped in the `pep` layer, or served behind the gateway).
pub fn router(catalogue: SharedCatalogue) -> Router {
    Router::new()
        .route("/api/healthz", get(|| async { "ok" }))
        .route("/api/progress/{student}", get(progress))
        .route("/api/courses/{course}", get(course).put(edit_course))
        .route("/api/settings", get(settings).put(change_settings))
        .with_state(catalogue)
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "code": "not_found", "message": format!("no such {what}") })),
    )
        .into_response()
}

fn too_long() -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "code": "too_long", "message": format!("at most {MAX_TEXT} bytes") })),
    )
        .into_response()
}

async fn progress(
    State(catalogue): State<SharedCatalogue>,
    Path(student): Path<String>,
    _caller: Principal,
) -> Response {
    match catalogue.read().progress.get(&student) {
        Some(p) => Json(p.clone()).into_response(),
        None => not_found("student"),
    }
}

async fn course(
    State(catalogue): State<SharedCatalogue>,
    Path(id): Path<String>,
    _caller: Principal,
) -> Response {
    match catalogue.read().courses.get(&id) {
        Some(c) => Json(c.clone()).into_response(),
        None => not_found("course"),
    }
}

/// The editable fields of a course.
#[derive(Debug, Deserialize)]
pub struct CourseEdit {
    /// The new title.
    pub title: String,
    /// The new description.
    #[serde(default)]
    pub description: Option<String>,
}

async fn edit_course(
    State(catalogue): State<SharedCatalogue>,
    Path(id): Path<String>,
    caller: Principal,
    Json(edit): Json<CourseEdit>,
) -> Response {
    if edit.title.len() > MAX_TEXT
        || edit
            .description
            .as_ref()
            .is_some_and(|d| d.len() > MAX_TEXT)
    {
        return too_long();
    }
    let mut data = catalogue.write();
    let Some(course) = data.courses.get_mut(&id) else {
        return not_found("course");
    };
    course.title = edit.title;
    if let Some(description) = edit.description {
        course.description = description;
    }
    tracing::info!(course = %id, by = %caller.subject(), "course edited");
    Json(course.clone()).into_response()
}

async fn settings(State(catalogue): State<SharedCatalogue>, _caller: Principal) -> Response {
    Json(catalogue.read().settings.clone()).into_response()
}

async fn change_settings(
    State(catalogue): State<SharedCatalogue>,
    caller: Principal,
    Json(settings): Json<Settings>,
) -> Response {
    if settings.banner.len() > MAX_TEXT {
        return too_long();
    }
    catalogue.write().settings = settings.clone();
    tracing::info!(by = %caller.subject(), "settings changed");
    Json(settings).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_maps_every_route_to_its_relation_and_object() {
        let table = policy().expect("policy");
        let cases = [
            (Method::GET, "/api/progress/u1", "can_read", "progress:u1"),
            (Method::GET, "/api/courses/rust", "can_view", "course:rust"),
            (Method::PUT, "/api/courses/rust", "can_edit", "course:rust"),
            (Method::GET, "/api/settings", "can_view", PLATFORM),
            (Method::PUT, "/api/settings", "can_change", PLATFORM),
        ];
        for (method, path, action, object) in cases {
            let m = table.find(&method, path).expect(path);
            assert_eq!((m.rule.action(), m.resource.as_str()), (action, object));
            assert_eq!(m.rule.required_scopes(), [SCOPE.to_owned()]);
        }
        let step_up = table
            .find(&Method::PUT, "/api/settings")
            .and_then(|m| m.rule.required_step_up().cloned())
            .expect("settings need a step-up");
        assert_eq!(step_up.max_age, Some(600));
        assert_eq!(step_up.acr_values, ["2"]);
        // Not routed: denied by default; a userset or another type cannot be named by a path.
        assert!(table.find(&Method::DELETE, "/api/courses/rust").is_none());
        assert!(
            table
                .find(&Method::GET, "/api/progress/u1%23learner")
                .is_none()
        );
    }
}
