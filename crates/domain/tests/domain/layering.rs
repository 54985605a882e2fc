//! The domain's modules import each other in one direction only: a loop of
//! `use` between its files would let a resource and the driver over it, or
//! the job store and the events it writes, grow into one tangle again.
//!
//! Read from the source, the way a reviewer reads it: every `crate::` and
//! `super::` path in a file's code (not its comments) names the file of the
//! longest module prefix it goes through; the crate root (`lib.rs`, the
//! shared types) is left out, as it declares every module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module path of every source file but the root: `jobs::lease` for
/// `src/jobs/lease.rs`, `jobs` for `src/jobs/mod.rs`.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = relative
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] {
                continue;
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// The paths a file names: `crate::a::b`, `super::c`, and each name of a
/// `crate::{a, b::c}` group, as absolute module paths.
fn named_paths(text: &str, module: &str) -> Vec<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let mut paths = Vec::new();
    for (prefix, base) in [("crate::", String::new()), ("super::", parent.to_owned())] {
        for (at, _) in text.match_indices(prefix) {
            // `$crate::` in a macro is the crate too, `foo_crate::` is not.
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &text[at + prefix.len()..];
            let join = |tail: &str| {
                if base.is_empty() {
                    tail.to_owned()
                } else {
                    format!("{base}::{tail}")
                }
            };
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for name in group.split(',') {
                    let name = name.trim();
                    if !name.is_empty() {
                        paths.push(join(name));
                    }
                }
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                paths.push(join(rest[..end].trim_end_matches(':')));
            }
        }
    }
    paths
}

/// The module of `path`: its longest prefix that is a module file.
fn module_of<'a>(path: &str, modules: &'a BTreeMap<String, PathBuf>) -> Option<&'a str> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find_map(|prefix| modules.get_key_value(&prefix).map(|(k, _)| k.as_str()))
}

fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(src);
    let mut graph = BTreeMap::new();
    for (module, path) in &modules {
        let text = std::fs::read_to_string(path).expect("readable source file");
        // Comments name other modules (doc links) without depending on them.
        let text: String = text
            .lines()
            .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
            .collect::<Vec<_>>()
            .join("\n");
        let edges: BTreeSet<String> = named_paths(&text, module)
            .iter()
            .filter_map(|p| module_of(p, &modules))
            // A parent module names its children to declare and re-export
            // them; a child naming its parent is what counts.
            .filter(|target| *target != module && !target.starts_with(&format!("{module}::")))
            .map(str::to_owned)
            .collect();
        graph.insert(module.clone(), edges);
    }
    graph
}

/// A loop of the graph, as the modules along it, if there is one.
fn find_loop(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_modules_import_each_other_in_one_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    // The reading must see the layering it guards, or it guards nothing.
    assert!(graph["import"].contains("products"), "{graph:#?}");
    assert!(graph["products"].contains("canonical"), "{graph:#?}");
    assert!(graph["jobs::lease"].contains("webhooks"), "{graph:#?}");
    assert!(graph["webhooks"].contains("jobs::model"), "{graph:#?}");
    if let Some(cycle) = find_loop(&graph) {
        panic!(
            "the modules import each other in a loop: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn a_loop_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("import", &["products"][..]),
        ("products", &["canonical"]),
        ("canonical", &["import"]),
        ("jobs", &[]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
    .collect();
    let cycle = find_loop(&graph).expect("a loop");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4, "{cycle:?}");
}

#[test]
fn paths_are_read_as_modules() {
    let text = "use crate::{ConflictMode, ledger};\nuse super::model::{Job};\n\
                let x = crate::webhooks::enqueue(); $crate::named::Named";
    let paths = named_paths(text, "jobs::lease");
    assert_eq!(
        paths,
        vec![
            "ConflictMode",
            "ledger",
            "webhooks::enqueue",
            "named::Named",
            "jobs::model"
        ]
    );
}
