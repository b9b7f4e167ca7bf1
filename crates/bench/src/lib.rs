//! Benchmarks of trustgate's relationship PDP.
//!
//! This library is the deterministic generator of a Google-Drive-like dataset that the
//! in-process bench (`benches/pdp.rs`, `cargo bench -p trustgate-bench`) and the HTTP load
//! generator (`trustgate-load`) share:
//!
//! - **users** `user:u{i}`, plus guests `user:g{i}` (only ever granted time-limited access)
//!   and outsiders `user:x{i}` (members of `group:outsiders`, granted nothing);
//! - **groups** in three nested tiers: teams `group:t{i}` with user members, departments
//!   `group:d{i}` whose members are teams (`group:t{i}#member`) and a few users, and orgs
//!   `group:o{i}` whose members are departments;
//! - **folders** `folder:f{i}` in a four-level tree (`parent`), each with an owner, a viewer
//!   group and, for half of them, an editor group;
//! - **documents** `document:d{i}` in a folder, with an owner, a direct viewer, sometimes an
//!   editor, a viewer group, public access (`user:*`) or a guest grant under the CEL condition
//!   `non_expired_grant` (a timestamp plus a duration).
//!
//! Every count scales linearly with the target size while fan-outs and depths (group nesting 3,
//! folder depth 4, members per team, documents per folder) stay the same, so a 10k and a 1M
//! dataset have the same shape and differ only in how much there is.
//!
//! [`Dataset::generate`] also yields representative check queries with their expected answers,
//! known by construction (see [`QueryClass`]), and users for list-objects.

pub mod http1;
pub mod login;
pub mod soak;

use serde_json::{Map, Value, json};
use trustgate_authz::dsl::{self, DslErrors};
use trustgate_authz::model::AuthorizationModel;
use trustgate_authz::tuple::{RelationshipCondition, TupleKey};

/// The authorization model, in the OpenFGA DSL.
pub const MODEL_DSL: &str = "model
  schema 1.1
type user
type group
  relations
    define member: [user, group#member]
type folder
  relations
    define parent: [folder]
    define owner: [user]
    define editor: [user, group#member] or owner or editor from parent
    define viewer: [user, user:*, group#member] or editor or viewer from parent
type document
  relations
    define parent: [folder]
    define owner: [user]
    define editor: [user, group#member] or owner or editor from parent
    define viewer: [user, user:*, group#member, user with non_expired_grant] or editor or viewer from parent
    define can_share: owner or editor
condition non_expired_grant(current_time: timestamp, grant_time: timestamp, grant_duration: duration) {
  current_time < grant_time + grant_duration
}
";

/// The name of the model's condition.
pub const CONDITION: &str = "non_expired_grant";
/// When guest grants were made (stored with each conditional tuple).
pub const GRANT_TIME: &str = "2026-01-01T00:00:00Z";
/// How long guest grants last (Go duration syntax, as OpenFGA).
pub const GRANT_DURATION: &str = "720h";
/// A request time inside every guest grant.
pub const NOW_ACTIVE: &str = "2026-01-15T00:00:00Z";
/// A request time after every guest grant has expired.
pub const NOW_EXPIRED: &str = "2026-03-01T00:00:00Z";

/// The seed of every dataset: the same target size gives the same data on every machine.
pub const SEED: u64 = 0x7472_7573_7467_6174;
/// Queries generated per class (fewer if the dataset has fewer candidates).
pub const QUERIES_PER_CLASS: usize = 64;
/// Users list-objects is measured for.
pub const LIST_OBJECTS_USERS: usize = 16;
/// Outsiders: members of `group:outsiders`, which is granted nothing.
const OUTSIDERS: usize = 32;
/// User members per team.
const TEAM_SIZE: usize = 8;

/// What a check query exercises. Every query asks `document:…#viewer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueryClass {
    /// The user is a direct viewer (one tuple lookup).
    Direct,
    /// The user is in a team inside a department inside an org that views the document.
    Group,
    /// The document sits four folders deep; the root folder's viewer group (nested) contains
    /// the user: `viewer from parent` four times, then the group tiers.
    FolderChain,
    /// The document is public (`user:*`); the user is an outsider.
    Public,
    /// A guest grant under `non_expired_grant`, checked inside its window.
    ConditionHit,
    /// The same kind of grant, checked after it expired (false).
    ConditionExpired,
    /// An outsider on a non-public document: every path is walked and fails (false).
    Miss,
}

impl QueryClass {
    /// All classes, in report order.
    pub const ALL: [QueryClass; 7] = [
        QueryClass::Direct,
        QueryClass::Group,
        QueryClass::FolderChain,
        QueryClass::Public,
        QueryClass::ConditionHit,
        QueryClass::ConditionExpired,
        QueryClass::Miss,
    ];

    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            QueryClass::Direct => "direct",
            QueryClass::Group => "nested group",
            QueryClass::FolderChain => "folder chain",
            QueryClass::Public => "public (user:*)",
            QueryClass::ConditionHit => "condition met",
            QueryClass::ConditionExpired => "condition expired",
            QueryClass::Miss => "miss",
        }
    }
}

/// One check with its expected answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// What it exercises.
    pub class: QueryClass,
    /// `document:…`.
    pub object: String,
    /// Always `viewer`.
    pub relation: String,
    /// `user:…`.
    pub user: String,
    /// The request context (conditional classes only).
    pub context: Option<Map<String, Value>>,
    /// The answer the data implies.
    pub expected: bool,
}

/// How many entities of each kind a dataset has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Regular users.
    pub users: usize,
    /// Teams, departments and orgs.
    pub groups: usize,
    /// Folders.
    pub folders: usize,
    /// Documents.
    pub documents: usize,
    /// Guest users (one per conditional grant).
    pub guests: usize,
    /// Public documents.
    pub public_documents: usize,
}

/// A generated dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The size asked for; `tuples.len()` is within a few percent of it.
    pub target: usize,
    /// Entity counts.
    pub shape: Shape,
    /// Every tuple, without duplicates.
    pub tuples: Vec<TupleKey>,
    /// Check queries with expected answers, grouped by class in [`QueryClass::ALL`] order.
    pub queries: Vec<Query>,
    /// Regular users (team members) to list `document#viewer` objects for.
    pub list_users: Vec<String>,
}

/// SplitMix64: tiny, fast, and the same on every platform.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `percent / 100`.
    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// `k` distinct values in `0..n` (all of them if `n <= k`).
    fn distinct(&mut self, k: usize, n: usize) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::with_capacity(k);
        if n <= k {
            out.extend(0..n);
            return out;
        }
        while out.len() < k {
            let v = self.below(n);
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }
}

/// A group of any tier, as an index into teams, departments or orgs.
#[derive(Debug, Clone, Copy)]
enum GroupRef {
    Team(usize),
    Dept(usize),
    Org(usize),
}

impl GroupRef {
    fn userset(self) -> String {
        match self {
            GroupRef::Team(i) => format!("group:t{i}#member"),
            GroupRef::Dept(i) => format!("group:d{i}#member"),
            GroupRef::Org(i) => format!("group:o{i}#member"),
        }
    }
}

struct Groups {
    team_users: Vec<Vec<usize>>,
    dept_teams: Vec<Vec<usize>>,
    org_depts: Vec<Vec<usize>>,
}

impl Groups {
    fn count(&self) -> usize {
        self.team_users.len() + self.dept_teams.len() + self.org_depts.len()
    }

    fn pick(&self, rng: &mut Rng) -> GroupRef {
        let i = rng.below(self.count());
        let (t, d) = (self.team_users.len(), self.dept_teams.len());
        if i < t {
            GroupRef::Team(i)
        } else if i < t + d {
            GroupRef::Dept(i - t)
        } else {
            GroupRef::Org(i - t - d)
        }
    }

    /// A user who is a member of `g` through its team tiers (as deep as the group goes).
    fn member_of(&self, g: GroupRef, rng: &mut Rng) -> Option<usize> {
        let team = match g {
            GroupRef::Team(t) => t,
            GroupRef::Dept(d) => *pick_from(self.dept_teams.get(d)?, rng)?,
            GroupRef::Org(o) => {
                let d = *pick_from(self.org_depts.get(o)?, rng)?;
                *pick_from(self.dept_teams.get(d)?, rng)?
            }
        };
        pick_from(self.team_users.get(team)?, rng).copied()
    }
}

fn pick_from<'a, T>(v: &'a [T], rng: &mut Rng) -> Option<&'a T> {
    if v.is_empty() {
        None
    } else {
        v.get(rng.below(v.len()))
    }
}

struct Folder {
    parent: Option<usize>,
    level: u8,
    viewer: GroupRef,
}

struct Document {
    folder: usize,
    viewer: usize,
    group: Option<GroupRef>,
    public: bool,
    guest: Option<usize>,
}

fn t(object: String, relation: &str, user: String) -> TupleKey {
    TupleKey::new(object, relation, user)
}

/// The context stored with a guest grant.
pub fn grant_context() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("grant_time".into(), json!(GRANT_TIME));
    m.insert("grant_duration".into(), json!(GRANT_DURATION));
    m
}

/// A request context with `current_time`.
pub fn request_context(now: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("current_time".into(), json!(now));
    m
}

impl Dataset {
    /// The dataset of about `target_tuples` tuples (at least a few hundred).
    pub fn generate(target_tuples: usize) -> Dataset {
        let n = target_tuples.max(1_000);
        let mut rng = Rng(SEED);
        let mut tuples: Vec<TupleKey> = Vec::with_capacity(n + n / 8);

        // Entity counts: linear in n, calibrated so the tuple count lands near n.
        let users = n / 20;
        let teams = (n / 200).max(9);
        let depts = (teams / 3).max(3);
        let orgs = (depts / 3).max(1);
        let folders = (n * 3 / 100).max(15);
        let documents = n * 232 / 1000;

        // Groups: every team in one department, every department in one org.
        let mut groups = Groups {
            team_users: Vec::with_capacity(teams),
            dept_teams: vec![Vec::new(); depts],
            org_depts: vec![Vec::new(); orgs],
        };
        for i in 0..teams {
            let members = rng.distinct(TEAM_SIZE, users);
            for &u in &members {
                tuples.push(t(format!("group:t{i}"), "member", format!("user:u{u}")));
            }
            groups.team_users.push(members);
            let d = i % depts;
            groups.dept_teams[d].push(i);
            tuples.push(t(
                format!("group:d{d}"),
                "member",
                format!("group:t{i}#member"),
            ));
        }
        for d in 0..depts {
            for u in rng.distinct(2, users) {
                tuples.push(t(format!("group:d{d}"), "member", format!("user:u{u}")));
            }
            let o = d % orgs;
            groups.org_depts[o].push(d);
            tuples.push(t(
                format!("group:o{o}"),
                "member",
                format!("group:d{d}#member"),
            ));
        }
        for x in 0..OUTSIDERS {
            tuples.push(t("group:outsiders".into(), "member", format!("user:x{x}")));
        }

        // Folders: levels 0..=3 of sizes 1:2:4:8, each parent one level up.
        let root_count = (folders / 15).max(1);
        let level_start = [0, root_count, 3 * root_count, 7 * root_count, folders];
        let mut folder_info: Vec<Folder> = Vec::with_capacity(folders);
        for f in 0..folders {
            let level = level_start[1..].iter().take_while(|&&s| s <= f).count() as u8;
            let parent = (level > 0).then(|| {
                let (lo, hi) = (level_start[level as usize - 1], level_start[level as usize]);
                lo + rng.below(hi - lo)
            });
            let object = format!("folder:f{f}");
            if let Some(p) = parent {
                tuples.push(t(object.clone(), "parent", format!("folder:f{p}")));
            }
            tuples.push(t(
                object.clone(),
                "owner",
                format!("user:u{}", rng.below(users)),
            ));
            let viewer = groups.pick(&mut rng);
            tuples.push(t(object.clone(), "viewer", viewer.userset()));
            if rng.chance(50) {
                tuples.push(t(object, "editor", groups.pick(&mut rng).userset()));
            }
            folder_info.push(Folder {
                parent,
                level,
                viewer,
            });
        }

        // Documents.
        let mut doc_info: Vec<Document> = Vec::with_capacity(documents);
        let mut guests = 0;
        let mut public_documents = 0;
        for d in 0..documents {
            let object = format!("document:d{d}");
            let folder = rng.below(folders);
            tuples.push(t(object.clone(), "parent", format!("folder:f{folder}")));
            let owner = rng.below(users);
            tuples.push(t(object.clone(), "owner", format!("user:u{owner}")));
            let mut viewer = rng.below(users);
            if viewer == owner {
                viewer = (viewer + 1) % users;
            }
            tuples.push(t(object.clone(), "viewer", format!("user:u{viewer}")));
            if rng.chance(30) {
                let editor = rng.below(users);
                tuples.push(t(object.clone(), "editor", format!("user:u{editor}")));
            }
            let group = rng.chance(25).then(|| groups.pick(&mut rng));
            if let Some(g) = group {
                tuples.push(t(object.clone(), "viewer", g.userset()));
            }
            let public = d.is_multiple_of(500);
            if public {
                public_documents += 1;
                tuples.push(t(object.clone(), "viewer", "user:*".into()));
            }
            let guest = (d % 10 == 5).then(|| {
                guests += 1;
                guests - 1
            });
            if let Some(g) = guest {
                let mut tk = t(object, "viewer", format!("user:g{g}"));
                tk.condition = Some(RelationshipCondition {
                    name: CONDITION.into(),
                    context: Some(grant_context()),
                });
                tuples.push(tk);
            }
            doc_info.push(Document {
                folder,
                viewer,
                group,
                public,
                guest,
            });
        }

        let queries = make_queries(&mut rng, &groups, &folder_info, &doc_info);
        let list_users = (0..LIST_OBJECTS_USERS)
            .filter_map(|_| {
                let team = pick_from(&groups.team_users, &mut rng)?;
                pick_from(team, &mut rng).map(|u| format!("user:u{u}"))
            })
            .collect();

        Dataset {
            target: target_tuples,
            shape: Shape {
                users,
                groups: groups.count() + 1,
                folders,
                documents,
                guests,
                public_documents,
            },
            tuples,
            queries,
            list_users,
        }
    }

    /// The model, parsed from [`MODEL_DSL`].
    pub fn model() -> Result<AuthorizationModel, DslErrors> {
        dsl::parse(MODEL_DSL)
    }

    /// The queries of one class.
    pub fn queries_of(&self, class: QueryClass) -> impl Iterator<Item = &Query> {
        self.queries.iter().filter(move |q| q.class == class)
    }
}

fn make_queries(
    rng: &mut Rng,
    groups: &Groups,
    folders: &[Folder],
    docs: &[Document],
) -> Vec<Query> {
    let mut out = Vec::new();
    let query = |class, d: usize, user: String, context: Option<&str>, expected| Query {
        class,
        object: format!("document:d{d}"),
        relation: "viewer".into(),
        user,
        context: context.map(request_context),
        expected,
    };
    for class in QueryClass::ALL {
        // The documents a query of this class can be asked about.
        let candidates: Vec<usize> = (0..docs.len())
            .filter(|&d| {
                let Some(doc) = docs.get(d) else { return false };
                match class {
                    QueryClass::Public => doc.public,
                    _ if doc.public => false,
                    QueryClass::Group => doc.group.is_some(),
                    QueryClass::FolderChain => {
                        folders.get(doc.folder).is_some_and(|f| f.level == 3)
                    }
                    QueryClass::ConditionHit | QueryClass::ConditionExpired => doc.guest.is_some(),
                    QueryClass::Direct | QueryClass::Miss => true,
                }
            })
            .collect();
        let mut found = 0;
        for _ in 0..QUERIES_PER_CLASS * 4 {
            if found == QUERIES_PER_CLASS {
                break;
            }
            let Some(&d) = pick_from(&candidates, rng) else {
                break;
            };
            let Some(doc) = docs.get(d) else { continue };
            let q = match class {
                QueryClass::Direct => {
                    Some(query(class, d, format!("user:u{}", doc.viewer), None, true))
                }
                QueryClass::Group => doc.group.and_then(|g| {
                    let u = groups.member_of(g, rng)?;
                    Some(query(class, d, format!("user:u{u}"), None, true))
                }),
                QueryClass::FolderChain => {
                    let mut f = folders.get(doc.folder);
                    while let Some(p) = f.and_then(|f| f.parent) {
                        f = folders.get(p);
                    }
                    f.and_then(|root| {
                        let u = groups.member_of(root.viewer, rng)?;
                        Some(query(class, d, format!("user:u{u}"), None, true))
                    })
                }
                QueryClass::Public | QueryClass::Miss => Some(query(
                    class,
                    d,
                    format!("user:x{}", rng.below(OUTSIDERS)),
                    None,
                    class == QueryClass::Public,
                )),
                QueryClass::ConditionHit | QueryClass::ConditionExpired => doc.guest.map(|g| {
                    let hit = class == QueryClass::ConditionHit;
                    let now = if hit { NOW_ACTIVE } else { NOW_EXPIRED };
                    query(class, d, format!("user:g{g}"), Some(now), hit)
                }),
            };
            if let Some(q) = q {
                out.push(q);
                found += 1;
            }
        }
    }
    out
}

/// Order statistics of a set of latency samples.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stats {
    /// Number of samples.
    pub count: usize,
    /// Median, nanoseconds.
    pub p50_ns: f64,
    /// 99th percentile, nanoseconds.
    pub p99_ns: f64,
    /// Mean, nanoseconds.
    pub mean_ns: f64,
    /// Maximum, nanoseconds.
    pub max_ns: f64,
}

impl Stats {
    /// Statistics of `samples` (nanoseconds; sorted in place).
    pub fn of(samples: &mut [u64]) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).copied().unwrap_or(0) as f64
        };
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Stats {
            count: samples.len(),
            p50_ns: at(0.50),
            p99_ns: at(0.99),
            mean_ns: sum as f64 / samples.len() as f64,
            max_ns: at(1.0),
        }
    }
}

/// A duration in nanoseconds, printed with a fitting unit.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else {
        format!("{:.2} s", ns / 1_000_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use trustgate_authz::engine::{CheckRequest, TypeSystem, check, validate_tuple_for_write};
    use trustgate_authz::index::TupleIndex;

    use super::*;

    #[test]
    fn generation_is_deterministic() {
        let a = Dataset::generate(10_000);
        let b = Dataset::generate(10_000);
        assert_eq!(a.tuples, b.tuples);
        assert_eq!(a.queries, b.queries);
        assert_eq!(a.list_users, b.list_users);
    }

    #[test]
    fn sizes_land_near_the_target_with_the_same_shape() {
        for target in [10_000, 100_000] {
            let ds = Dataset::generate(target);
            let n = ds.tuples.len();
            assert!(
                n.abs_diff(target) * 100 <= target * 5,
                "{target}: {n} tuples"
            );
            let keys: HashSet<_> = ds
                .tuples
                .iter()
                .map(|t| (&t.object, &t.relation, &t.user))
                .collect();
            assert_eq!(keys.len(), n, "no duplicate tuples");
            // Same ratios at every size.
            let s = ds.shape;
            assert_eq!(s.users * 20, target);
            assert_eq!(s.documents, target * 232 / 1000);
            assert_eq!(s.guests, s.documents / 10);
            assert!(ds.tuples.iter().any(|t| t.user == "user:*"));
            for class in QueryClass::ALL {
                assert_eq!(
                    ds.queries_of(class).count(),
                    QUERIES_PER_CLASS,
                    "{target}: {class:?}"
                );
            }
            assert_eq!(ds.list_users.len(), LIST_OBJECTS_USERS);
        }
    }

    #[test]
    fn tuples_fit_the_model_and_queries_give_their_expected_answers() {
        let ds = Dataset::generate(10_000);
        let ts = TypeSystem::new(Dataset::model().expect("model parses")).expect("model builds");
        for tk in &ds.tuples {
            validate_tuple_for_write(&ts, tk).expect("tuple fits the model");
        }
        let index = TupleIndex::with_tuples(1, &ds.tuples).expect("index loads");
        let snapshot = index.current();
        for q in &ds.queries {
            let got = check(
                &ts,
                &*snapshot,
                &CheckRequest {
                    object: &q.object,
                    relation: &q.relation,
                    user: &q.user,
                    contextual_tuples: &[],
                    context: q.context.as_ref(),
                },
            );
            assert_eq!(got, Ok(q.expected), "{q:?}");
        }
    }

    #[test]
    fn stats_pick_order_statistics() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let s = Stats::of(&mut v);
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ns, 51.0);
        assert_eq!(s.p99_ns, 99.0);
        assert_eq!(s.max_ns, 100.0);
        assert_eq!(fmt_ns(1_500.0), "1.50 µs");
    }
}
