//! Engine latency over a ~750k-tuple index, with a baseline measured in the same run.
//!
//! Data (deterministic): 20k users, 2k groups (members and nested groups), 2k folders in a
//! 3-level tree, 200k documents each with a parent folder, an owner, viewers, some group
//! viewers, some public (`user:*`) and some blocked users — about 750k tuples.
//!
//! Benchmarks: a `HashMap` lookup (baseline: the cost of one hash probe), checks that hit
//! directly, through a group, through the folder tree, a miss, an exclusion, and list-objects
//! for one user; the same checks with their short reason (`check_with_reason`: what the PDP
//! runs for every audited decision) and fully explained (`explain`), whose cost against plain
//! `check` is the price of the audit reason. `cargo bench -p trustgate-authz` prints them; ratios against the baseline are
//! what to compare across machines. The index's resident memory per tuple is printed once.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use trustgate_authz::dsl;
use trustgate_authz::engine::{
    CheckRequest, ListObjectsRequest, TypeSystem, check, check_with_reason, explain, list_objects,
};
use trustgate_authz::index::{IndexSnapshot, TupleIndex};
use trustgate_authz::tuple::TupleKey;

const MODEL: &str = "model
  schema 1.1
type user
type group
  relations
    define member: [user, group#member]
type folder
  relations
    define parent: [folder]
    define viewer: [user, group#member] or viewer from parent
type document
  relations
    define parent: [folder]
    define owner: [user]
    define editor: [user] or owner
    define viewer: [user, user:*, group#member] or editor or viewer from parent
    define blocked: [user]
    define can_view: viewer but not blocked
";

const USERS: usize = 20_000;
const GROUPS: usize = 2_000;
const FOLDERS: usize = 2_000;
const DOCUMENTS: usize = 200_000;

/// A tiny deterministic generator (no dependency, same data every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

pub fn tuples() -> Vec<TupleKey> {
    let mut r = Lcg(42);
    let mut v = Vec::with_capacity(1_050_000);
    for g in 0..GROUPS {
        for _ in 0..40 {
            v.push(TupleKey::new(
                format!("group:g{g}"),
                "member",
                format!("user:u{}", r.next(USERS)),
            ));
        }
        if g % 10 == 0 && g > 0 {
            v.push(TupleKey::new(
                format!("group:g{g}"),
                "member",
                format!("group:g{}#member", r.next(g)),
            ));
        }
    }
    for f in 0..FOLDERS {
        if f >= 20 {
            v.push(TupleKey::new(
                format!("folder:f{f}"),
                "parent",
                format!("folder:f{}", f / 20),
            ));
        }
        v.push(TupleKey::new(
            format!("folder:f{f}"),
            "viewer",
            format!("group:g{}#member", r.next(GROUPS)),
        ));
    }
    for d in 0..DOCUMENTS {
        let doc = format!("document:d{d}");
        v.push(TupleKey::new(
            &doc,
            "parent",
            format!("folder:f{}", r.next(FOLDERS)),
        ));
        v.push(TupleKey::new(
            &doc,
            "owner",
            format!("user:u{}", r.next(USERS)),
        ));
        v.push(TupleKey::new(
            &doc,
            "viewer",
            format!("user:u{}", r.next(USERS)),
        ));
        if d % 4 == 0 {
            v.push(TupleKey::new(
                &doc,
                "viewer",
                format!("group:g{}#member", r.next(GROUPS)),
            ));
        }
        if d % 100 == 0 {
            v.push(TupleKey::new(&doc, "viewer", "user:*"));
        }
        if d % 10 == 0 {
            v.push(TupleKey::new(
                &doc,
                "blocked",
                format!("user:u{}", r.next(USERS)),
            ));
        }
    }
    v
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn setup() -> (TypeSystem, std::sync::Arc<IndexSnapshot>) {
    let model = dsl::parse(MODEL).expect("bench model parses");
    let ts = TypeSystem::new(model).expect("bench model builds");
    let data = tuples();
    let before = rss_bytes();
    let index = TupleIndex::with_tuples(1, &data).expect("bench tuples load");
    let after = rss_bytes();
    drop(data);
    if let (Some(b), Some(a)) = (before, after) {
        eprintln!(
            "index: {} tuples, {} symbols, ~{} bytes resident per tuple",
            index.len(),
            index.snapshot().symbol_count(),
            a.saturating_sub(b) / index.len().max(1) as u64
        );
    }
    (ts, index.snapshot())
}

fn bench(c: &mut Criterion) {
    let (ts, snap) = setup();
    let reader = &*snap;

    let mut baseline: HashMap<String, bool> = HashMap::new();
    for i in 0..100_000 {
        baseline.insert(format!("document:d{i}#viewer@user:u{i}"), true);
    }
    c.bench_function("baseline: HashMap<String,_> lookup", |b| {
        b.iter(|| black_box(baseline.get(black_box("document:d777#viewer@user:u777"))))
    });

    // Find real subjects in the data for each path.
    let data = tuples();
    let direct = data
        .iter()
        .find(|t| {
            t.relation == "viewer"
                && t.object.starts_with("document:")
                && t.user.starts_with("user:u")
        })
        .cloned()
        .expect("a direct viewer");
    let req = |object: &'static str, relation: &'static str, user: &'static str| CheckRequest {
        object,
        relation,
        user,
        contextual_tuples: &[],
        context: None,
    };
    let direct_obj: &'static str = Box::leak(direct.object.clone().into_boxed_str());
    let direct_user: &'static str = Box::leak(direct.user.clone().into_boxed_str());

    c.bench_function("check: direct viewer", |b| {
        b.iter(|| {
            check(
                &ts,
                reader,
                black_box(&req(direct_obj, "viewer", direct_user)),
            )
        })
    });
    c.bench_function("check: miss (user with no path)", |b| {
        b.iter(|| {
            check(
                &ts,
                reader,
                black_box(&req(direct_obj, "viewer", "user:nobody")),
            )
        })
    });
    c.bench_function("check: can_view (exclusion, deep union)", |b| {
        b.iter(|| {
            check(
                &ts,
                reader,
                black_box(&req(direct_obj, "can_view", direct_user)),
            )
        })
    });
    c.bench_function("check: viewer through folder tree and groups", |b| {
        b.iter(|| {
            check(
                &ts,
                reader,
                black_box(&req("document:d12345", "viewer", "user:u4242")),
            )
        })
    });
    let cases: [(&str, CheckRequest<'_>); 4] = [
        ("direct viewer", req(direct_obj, "viewer", direct_user)),
        ("miss", req(direct_obj, "viewer", "user:nobody")),
        ("can_view", req(direct_obj, "can_view", direct_user)),
        (
            "folder tree and groups",
            req("document:d12345", "viewer", "user:u4242"),
        ),
    ];
    for (name, r) in &cases {
        c.bench_function(&format!("check_with_reason: {name}"), |b| {
            b.iter(|| check_with_reason(&ts, reader, black_box(r)))
        });
        c.bench_function(&format!("explain: {name}"), |b| {
            b.iter(|| explain(&ts, reader, black_box(r)))
        });
    }
    c.bench_function("list-objects: document#viewer for one user", |b| {
        b.iter(|| {
            list_objects(
                &ts,
                reader,
                black_box(&ListObjectsRequest {
                    object_type: "document",
                    relation: "viewer",
                    user: "user:u4242",
                    contextual_tuples: &[],
                    context: None,
                }),
            )
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
