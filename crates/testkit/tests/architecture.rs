//! Tidy checks that keep the architecture honest (in the spirit of rust-analyzer's tidy tests):
//! the crate map in ARCHITECTURE.md is the dependency graph, edge for edge, and the rules that
//! make the map worth having hold (only the SQL crate links a database driver; only the wiring
//! reaches the backends).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit is two levels below the workspace root")
        .to_path_buf()
}

/// Each crate directory under `crates/` with its manifest.
fn manifests() -> BTreeMap<String, toml::Table> {
    let mut out = BTreeMap::new();
    let dir = workspace_root().join("crates");
    for entry in std::fs::read_dir(&dir).expect("read crates/") {
        let path = entry.expect("dir entry").path();
        let manifest = path.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).expect("read Cargo.toml");
        let table: toml::Table = text.parse().expect("Cargo.toml parses");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 directory name")
            .to_owned();
        out.insert(name, table);
    }
    out
}

/// The package name of every crate directory (`core` → `trustgate-core`).
fn package_names(manifests: &BTreeMap<String, toml::Table>) -> BTreeMap<String, String> {
    manifests
        .iter()
        .map(|(dir, m)| {
            let name = m["package"]["name"].as_str().expect("package.name");
            (name.to_owned(), dir.clone())
        })
        .collect()
}

/// The names of the normal (and build) dependencies of a manifest.
fn normal_dependencies(manifest: &toml::Table) -> BTreeSet<String> {
    ["dependencies", "build-dependencies"]
        .iter()
        .filter_map(|section| manifest.get(*section).and_then(|v| v.as_table()))
        .flat_map(|table| table.keys().cloned())
        .collect()
}

/// The workspace edges: crate directory → the crate directories it depends on (normal deps).
fn actual_edges() -> BTreeMap<String, BTreeSet<String>> {
    let manifests = manifests();
    let packages = package_names(&manifests);
    manifests
        .iter()
        .map(|(dir, manifest)| {
            let deps = normal_dependencies(manifest)
                .into_iter()
                .filter_map(|dep| packages.get(&dep).cloned())
                .collect();
            (dir.clone(), deps)
        })
        .collect()
}

/// The crate map table of ARCHITECTURE.md: rows `| `dir` | `dep`, `dep` | ... |` under the
/// "Crate map" heading, until the next heading.
fn documented_edges() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md"))
        .expect("read ARCHITECTURE.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Crate map"))
        .expect("ARCHITECTURE.md has a '## Crate map' section");
    let mut edges = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(name), Some(deps)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let name = name.trim_matches('`').to_owned();
        let deps = deps
            .split(',')
            .map(|d| d.trim().trim_matches('`'))
            .filter(|d| !d.is_empty() && *d != "—")
            .map(str::to_owned)
            .collect();
        edges.insert(name, deps);
    }
    edges
}

#[test]
fn the_crate_map_is_the_dependency_graph() {
    let actual = actual_edges();
    let documented = documented_edges();
    let mut problems = Vec::new();
    for (krate, deps) in &actual {
        match documented.get(krate) {
            None => problems.push(format!("crate `{krate}` is missing from the crate map")),
            Some(doc) if doc != deps => problems.push(format!(
                "`{krate}`: ARCHITECTURE.md says it depends on {doc:?}, Cargo.toml on {deps:?}"
            )),
            Some(_) => {}
        }
    }
    for krate in documented.keys() {
        if !actual.contains_key(krate) {
            problems.push(format!(
                "the crate map lists `{krate}`, which does not exist"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_graph_has_no_cycles_and_points_down() {
    let edges = actual_edges();
    // Kahn's algorithm: every crate must be removable once its dependencies are.
    let mut remaining = edges.clone();
    while !remaining.is_empty() {
        let ready: Vec<String> = remaining
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !remaining.contains_key(d)))
            .map(|(k, _)| k.clone())
            .collect();
        assert!(!ready.is_empty(), "dependency cycle among {remaining:?}");
        for k in ready {
            remaining.remove(&k);
        }
    }
}

#[test]
fn only_the_sql_crate_links_a_database_driver() {
    for (krate, manifest) in manifests() {
        let deps = normal_dependencies(&manifest);
        if krate != "store" {
            assert!(
                !deps.contains("sqlx"),
                "`{krate}` depends on sqlx; SQL belongs in crates/store"
            );
        }
    }
}

#[test]
fn only_the_wiring_reaches_the_backends() {
    // Services take the narrow traits of store-api; the backends are chosen by the binary.
    let wiring: BTreeSet<&str> = ["server", "cli", "bench"].into();
    let edges = actual_edges();
    for (krate, deps) in &edges {
        if deps.contains("store") {
            assert!(
                wiring.contains(krate.as_str()),
                "`{krate}` depends on crates/store; depend on crates/store-api's traits instead"
            );
        }
    }
    // And nothing below the wiring reaches the backends transitively.
    fn reaches(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
        let mut stack = vec![from.to_owned()];
        let mut seen = BTreeSet::new();
        while let Some(k) = stack.pop() {
            if k == to {
                return true;
            }
            if seen.insert(k.clone()) {
                stack.extend(edges.get(&k).into_iter().flatten().cloned());
            }
        }
        false
    }
    for krate in edges.keys() {
        if !wiring.contains(krate.as_str()) && krate != "store" {
            assert!(
                !reaches(&edges, krate, "store"),
                "`{krate}` reaches crates/store"
            );
        }
    }
}

#[test]
fn authentication_and_authorization_never_meet() {
    let edges = actual_edges();
    let authn = edges.get("authn").expect("authn exists");
    let authz = edges.get("authz").expect("authz exists");
    assert!(!authn.contains("authz"), "authn depends on authz");
    assert!(!authz.contains("authn"), "authz depends on authn");
}
