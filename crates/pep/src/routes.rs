//! The route table: method + path template → what a request must satisfy. A request no rule
//! matches is denied (deny by default).

use std::collections::HashMap;

use http::Method;

/// Why a route table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The template is not `/`-rooted, has an empty segment, or an unclosed or empty `{}`.
    #[error("path template `{0}` is malformed")]
    BadTemplate(String),
    /// The resource names a parameter the path does not have.
    #[error("resource `{resource}` uses `{{{param}}}`, which path `{path}` does not have")]
    UnknownParameter {
        /// The path template.
        path: String,
        /// The resource template.
        resource: String,
        /// The parameter.
        param: String,
    },
    /// Two rules for the same method and template.
    #[error("{method} {path} has two rules")]
    Duplicate {
        /// The method.
        method: Method,
        /// The path template.
        path: String,
    },
    /// A protected rule without an action or resource.
    #[error("{method} {path}: a protected rule needs an action and a resource")]
    Incomplete {
        /// The method.
        method: Method,
        /// The path template.
        path: String,
    },
    /// Required `amr` values without the `acr_values` to challenge with (RFC 9470 §3).
    #[error("{method} {path}: required amr values need acr_values for the step-up challenge")]
    StepUpWithoutAcr {
        /// The method.
        method: Method,
        /// The path template.
        path: String,
    },
}

/// Step-up requirements of a route (RFC 9470).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepUp {
    /// The authentication must be at most this many seconds old (`auth_time`).
    pub max_age: Option<u64>,
    /// Every one of these `amr` values must be present ...
    pub amr: Vec<String>,
    /// ... or the `acr` must be one of these. They are also what the challenge asks for in
    /// `acr_values` (RFC 9470 asks for authentication context classes, not methods; trustgate's
    /// two-factor class is `2`).
    pub acr_values: Vec<String>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    method: Method,
    path: String,
    segments: Vec<Segment>,
    public: bool,
    action: String,
    resource: Vec<Part>,
    resource_template: String,
    scopes: Vec<String>,
    step_up: Option<StepUp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Param(String),
}

impl Rule {
    /// A protected route: `action` is the relation asked of the PDP, `resource` the object,
    /// a template such as `course:{id}` filled from the path's parameters.
    pub fn new(method: Method, path: &str, action: &str, resource: &str) -> Self {
        Rule {
            method,
            path: path.to_owned(),
            segments: Vec::new(),
            public: false,
            action: action.to_owned(),
            resource: Vec::new(),
            resource_template: resource.to_owned(),
            scopes: Vec::new(),
            step_up: None,
        }
    }

    /// A route that needs no authentication and no decision.
    pub fn public(method: Method, path: &str) -> Self {
        let mut rule = Rule::new(method, path, "", "");
        rule.public = true;
        rule
    }

    /// Scopes the credential must carry (all of them).
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// A step-up requirement.
    pub fn step_up(mut self, step_up: StepUp) -> Self {
        self.step_up = Some(step_up);
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path template.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the route is public.
    pub fn is_public(&self) -> bool {
        self.public
    }

    /// The relation asked of the PDP.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The required scopes.
    pub fn required_scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The step-up requirement.
    pub fn required_step_up(&self) -> Option<&StepUp> {
        self.step_up.as_ref()
    }

    fn compile(mut self) -> Result<Self, RouteError> {
        let bad = || RouteError::BadTemplate(self.path.clone());
        let rest = self.path.strip_prefix('/').ok_or_else(bad)?;
        let mut segments = Vec::new();
        if !rest.is_empty() {
            for seg in rest.split('/') {
                if seg.is_empty() {
                    return Err(bad());
                }
                match seg.strip_prefix('{') {
                    Some(inner) => {
                        let name = inner.strip_suffix('}').ok_or_else(bad)?;
                        if name.is_empty() || name.contains(['{', '}']) {
                            return Err(bad());
                        }
                        segments.push(Segment::Param(name.to_owned()));
                    }
                    None if seg.contains(['{', '}']) => return Err(bad()),
                    None => segments.push(Segment::Literal(seg.to_owned())),
                }
            }
        }
        self.segments = segments;
        if self.public {
            return Ok(self);
        }
        if self.action.is_empty() || self.resource_template.is_empty() {
            return Err(RouteError::Incomplete {
                method: self.method.clone(),
                path: self.path.clone(),
            });
        }
        if let Some(step_up) = &self.step_up
            && !step_up.amr.is_empty()
            && step_up.acr_values.is_empty()
        {
            return Err(RouteError::StepUpWithoutAcr {
                method: self.method.clone(),
                path: self.path.clone(),
            });
        }
        let mut parts = Vec::new();
        let mut rest = self.resource_template.as_str();
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| RouteError::BadTemplate(self.resource_template.clone()))?;
            let name = &after[..close];
            if !self
                .segments
                .iter()
                .any(|s| matches!(s, Segment::Param(p) if p == name))
            {
                return Err(RouteError::UnknownParameter {
                    path: self.path.clone(),
                    resource: self.resource_template.clone(),
                    param: name.to_owned(),
                });
            }
            parts.push(Part::Param(name.to_owned()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(RouteError::BadTemplate(self.resource_template.clone()));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        self.resource = parts;
        Ok(self)
    }

    /// The segments with parameter names left out: two rules of one shape match the same paths.
    fn shape(&self) -> Vec<Option<&str>> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(lit) => Some(lit.as_str()),
                Segment::Param(_) => None,
            })
            .collect()
    }

    /// The parameters when `path` matches, with the number of literal segments (specificity).
    fn matches<'p>(&self, path: &'p [&'p str]) -> Option<(usize, HashMap<&str, &'p str>)> {
        if path.len() != self.segments.len() {
            return None;
        }
        let mut params = HashMap::new();
        let mut literals = 0;
        for (segment, value) in self.segments.iter().zip(path) {
            match segment {
                Segment::Literal(lit) if lit == value => literals += 1,
                Segment::Literal(_) => return None,
                Segment::Param(name) if valid_param(value) => {
                    params.insert(name.as_str(), *value);
                }
                Segment::Param(_) => return None,
            }
        }
        Some((literals, params))
    }

    fn resource(&self, params: &HashMap<&str, &str>) -> String {
        self.resource
            .iter()
            .map(|part| match part {
                Part::Literal(lit) => lit.as_str(),
                Part::Param(name) => params.get(name.as_str()).copied().unwrap_or_default(),
            })
            .collect()
    }
}

/// A path parameter may become part of an object id only when it is plainly an id: ASCII
/// letters, digits and `-._~@+`, at most 256 bytes. Anything else (percent-encoded bytes,
/// `:`, `#`, `*`) matches no rule, so it can never name another object or a userset.
fn valid_param(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~@+".contains(&b))
}

/// The rule a request matched, with its resource built.
#[derive(Debug, Clone)]
pub struct Matched<'a> {
    /// The rule.
    pub rule: &'a Rule,
    /// The resource (empty for a public route).
    pub resource: String,
}

/// Every rule of a service. Built once; matching is a scan of the rules of the method.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    rules: Vec<Rule>,
}

impl RouteTable {
    /// Compiles `rules`, refusing malformed templates, unknown parameters and duplicates.
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Result<Self, RouteError> {
        let mut out: Vec<Rule> = Vec::new();
        for rule in rules {
            let rule = rule.compile()?;
            if out
                .iter()
                .any(|r| r.method == rule.method && r.shape() == rule.shape())
            {
                return Err(RouteError::Duplicate {
                    method: rule.method,
                    path: rule.path,
                });
            }
            out.push(rule);
        }
        Ok(RouteTable { rules: out })
    }

    /// Every rule, in the order given.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// The rule for `method` and `path` (the most literal segments win; `HEAD` falls back to
    /// `GET`'s rule), or `None`: denied.
    pub fn find(&self, method: &Method, path: &str) -> Option<Matched<'_>> {
        let found = self.find_exact(method, path);
        if found.is_none() && method == Method::HEAD {
            return self.find_exact(&Method::GET, path);
        }
        found
    }

    fn find_exact(&self, method: &Method, path: &str) -> Option<Matched<'_>> {
        let rest = path.strip_prefix('/')?;
        let segments: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut best: Option<(usize, &Rule, HashMap<&str, &str>)> = None;
        for rule in self.rules.iter().filter(|r| r.method == method) {
            if let Some((literals, params)) = rule.matches(&segments)
                && best.as_ref().is_none_or(|(b, _, _)| literals > *b)
            {
                best = Some((literals, rule, params));
            }
        }
        best.map(|(_, rule, params)| Matched {
            rule,
            resource: rule.resource(&params),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::new([
            Rule::new(
                Method::GET,
                "/courses/{id}/progress",
                "viewer",
                "course:{id}",
            )
            .scopes(["progress:read"]),
            Rule::new(Method::GET, "/courses/{id}", "viewer", "course:{id}"),
            Rule::new(Method::GET, "/courses/mine", "member", "platform:main"),
            Rule::new(
                Method::PUT,
                "/orgs/{org}/courses/{id}",
                "editor",
                "course:{org}-{id}",
            ),
            Rule::public(Method::GET, "/"),
        ])
        .expect("valid")
    }

    #[test]
    fn unknown_routes_methods_and_odd_parameters_match_nothing() {
        let t = table();
        assert!(t.find(&Method::GET, "/nothing").is_none());
        assert!(t.find(&Method::DELETE, "/courses/7").is_none());
        assert!(t.find(&Method::GET, "/courses/7/").is_none());
        assert!(t.find(&Method::GET, "courses/7").is_none());
        assert!(t.find(&Method::GET, "/courses/a%2Fb").is_none());
        assert!(t.find(&Method::GET, "/courses/a:b").is_none());
        assert!(t.find(&Method::GET, "/courses/a#b").is_none());
        assert!(t.find(&Method::GET, "/courses/*").is_none());
        assert!(
            t.find(&Method::GET, &format!("/courses/{}", "a".repeat(257)))
                .is_none()
        );
    }

    #[test]
    fn resources_are_built_from_parameters_and_literals_win() {
        let t = table();
        let m = t.find(&Method::GET, "/courses/42/progress").expect("match");
        assert_eq!(m.resource, "course:42");
        assert_eq!(m.rule.action(), "viewer");
        assert_eq!(m.rule.required_scopes(), ["progress:read".to_owned()]);
        let m = t.find(&Method::GET, "/courses/mine").expect("match");
        assert_eq!(m.resource, "platform:main");
        let m = t.find(&Method::PUT, "/orgs/o1/courses/c2").expect("match");
        assert_eq!(m.resource, "course:o1-c2");
        let m = t
            .find(&Method::HEAD, "/courses/9")
            .expect("HEAD uses GET's rule");
        assert_eq!(m.resource, "course:9");
        assert!(t.find(&Method::GET, "/").expect("root").rule.is_public());
    }

    #[test]
    fn malformed_tables_are_refused() {
        let err = |rule: Rule| RouteTable::new([rule]).expect_err("refused");
        assert!(matches!(
            err(Rule::new(Method::GET, "/a/{id}", "r", "doc:{other}")),
            RouteError::UnknownParameter { .. }
        ));
        assert!(matches!(
            err(Rule::new(Method::GET, "a", "r", "doc:x")),
            RouteError::BadTemplate(_)
        ));
        assert!(matches!(
            err(Rule::new(Method::GET, "/a//b", "r", "doc:x")),
            RouteError::BadTemplate(_)
        ));
        assert!(matches!(
            err(Rule::new(Method::GET, "/a/{}", "r", "doc:x")),
            RouteError::BadTemplate(_)
        ));
        assert!(matches!(
            err(Rule::new(Method::GET, "/a/{id}", "r", "doc:{id")),
            RouteError::BadTemplate(_)
        ));
        assert!(matches!(
            err(Rule::new(Method::GET, "/a", "", "doc:x")),
            RouteError::Incomplete { .. }
        ));
        assert!(matches!(
            err(Rule::new(Method::GET, "/a", "r", "doc:x").step_up(StepUp {
                amr: vec!["otp".into()],
                ..StepUp::default()
            })),
            RouteError::StepUpWithoutAcr { .. }
        ));
        let dup = RouteTable::new([
            Rule::new(Method::GET, "/a/{x}", "r", "doc:{x}"),
            Rule::new(Method::GET, "/a/{y}", "r", "doc:{y}"),
        ]);
        assert!(matches!(dup, Err(RouteError::Duplicate { .. })));
    }
}
