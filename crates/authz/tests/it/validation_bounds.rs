//! Validation does polynomial work on any model (hardening finding 1): a "diamond" of unions
//! (each relation the union of the next two), which a search along paths explores 2^depth
//! times, and a chain of thousands of computed relations, which a search copying its visited
//! set at every step turns into quadratic memory and a deep recursion. Each must validate in a
//! bounded time on a separate thread; the bound is three orders of magnitude above what the
//! polynomial algorithm needs, so it only fails on a return of the exponential search.

use std::fmt::Write as _;
use std::time::Duration;

use trustgate_authz::dsl;
use trustgate_authz::engine::TypeSystem;
use trustgate_authz::validate::validate_json_model;

/// Validates `dsl` on its own thread; the error messages, or a panic if it takes over `bound`.
fn validate_within(source: String, bound: Duration) -> Vec<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            // The DSL parser validates what it parses; the JSON path validates on its own.
            let messages: Vec<String> = match dsl::parse(&source) {
                Ok(model) => match validate_json_model(&model) {
                    Ok(()) => Vec::new(),
                    Err(errors) => errors.errors.iter().map(|e| e.message.clone()).collect(),
                },
                Err(errors) => errors.errors.iter().map(|e| e.message.clone()).collect(),
            };
            let _ = tx.send(messages);
        })
        .expect("thread");
    rx.recv_timeout(bound)
        .unwrap_or_else(|_| panic!("validation did not finish within {bound:?}"))
}

fn diamond(depth: usize, base: bool) -> String {
    let mut s = String::from("model\n  schema 1.1\ntype user\ntype doc\n  relations\n");
    for i in 0..depth {
        let _ = writeln!(s, "    define r{i}: r{} or r{}", i + 1, i + 2);
    }
    let leaf = if base { "[user]" } else { "r0" };
    let _ = writeln!(s, "    define r{depth}: {leaf}");
    let _ = writeln!(s, "    define r{}: {leaf}", depth + 1);
    s
}

#[test]
fn a_diamond_of_unions_validates_in_polynomial_time() {
    let bound = Duration::from_secs(20);
    assert!(validate_within(diamond(40, true), bound).is_empty());
    // Without a base every relation is impossible, and the bottom loops back to the top.
    let messages = validate_within(diamond(40, false), bound);
    assert_eq!(messages.len(), 42, "{messages:?}");
    assert!(
        messages.iter().all(|m| m.contains("(potential loop)")),
        "{messages:?}"
    );
}

#[test]
fn a_long_chain_of_computed_relations_validates_without_exhausting_memory_or_stack() {
    let n = 5000;
    let mut s = String::from("model\n  schema 1.1\ntype user\ntype doc\n  relations\n");
    for i in 0..n {
        let _ = writeln!(s, "    define r{i}: r{}", i + 1);
    }
    let _ = writeln!(s, "    define r{n}: [user]");
    assert!(validate_within(s.clone(), Duration::from_secs(20)).is_empty());
    // The same chain with no base: every relation is impossible, none loops.
    let open = s.replace(
        &format!("define r{n}: [user]"),
        &format!("define r{n}: [doc#r{n}]"),
    );
    let messages = validate_within(open, Duration::from_secs(20));
    assert_eq!(messages.len(), n + 1);
    assert!(
        messages.iter().all(|m| m.contains("(no entrypoint)")),
        "{:?}",
        &messages[..3]
    );
}

/// Building the type system (reachability over the rewrite graph) is linear in the edges times
/// the set width: a chain of thousands of relations that all also point back at the first (one
/// big strongly connected component with a wide fan-in) once took minutes with a search per
/// relation; it must build in a bounded time on its own thread.
#[test]
fn the_type_system_of_a_long_chain_with_a_wide_fan_in_builds_in_polynomial_time() {
    let n = 10_000;
    let mut s = String::from("model\n  schema 1.1\ntype user\ntype doc\n  relations\n");
    for i in 0..n {
        let _ = writeln!(s, "    define r{i}: [user, doc#r0] or r{} or r0", i + 1);
    }
    let _ = writeln!(s, "    define r{n}: [user]");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let built = dsl::parse(&s)
            .map_err(|e| e.to_string())
            .and_then(|m| TypeSystem::new(m).map_err(|e| e.to_string()))
            .map(|_| ());
        let _ = tx.send(built);
    });
    // About 2 s in a debug build; the search per relation took over 100 s.
    let bound = Duration::from_secs(20);
    let built = rx
        .recv_timeout(bound)
        .unwrap_or_else(|_| panic!("the type system did not build within {bound:?}"));
    assert_eq!(built, Ok(()));
}
