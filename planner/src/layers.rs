//! The layers point one way: within each library crate of the workspace, no
//! module reaches (through `crate::…`) a module that reaches back to it. A
//! cycle is a helper living in the wrong room; this test names the arrows that
//! close it. (The `lifeline` binary cannot be reached at all: it is a separate
//! target, and the compiler forbids the library from importing it.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's Rust files under `src` (not the binary's, under `src/bin/`).
fn library_files(src: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p != src.join("bin") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files
}

/// Top-level module → the top-level modules it names as `crate::m`, with one
/// file that does, for each. Comments and `#[cfg(test)]` code are ignored.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let mut graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for p in library_files(src) {
        let rel = p.strip_prefix(src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    graph.entry(top.clone()).or_default().entry(name).or_insert(p.clone());
                }
            }
        }
    }
    graph
}

/// A cycle through `from`, if any, as the modules along it.
fn cycle_from(graph: &BTreeMap<String, BTreeMap<String, PathBuf>>, from: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        at: &str,
        goal: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flat_map(|m| m.keys()) {
            if next == goal {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, goal, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![from.to_string()];
    walk(graph, from, from, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_module_of_a_library_crate_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
    let mut cycles = Vec::new();
    for krate in [
        "planner/src",
        "replicator/src",
        "replicator/service/src",
        "testbeds/src",
    ] {
        let graph = module_graph(&root.join(krate));
        assert!(graph.len() > 3, "{krate}: no modules found");
        for m in graph.keys() {
            if let Some(c) = cycle_from(&graph, m) {
                let arrows: Vec<String> = c
                    .iter()
                    .zip(c.iter().skip(1).chain(std::iter::once(&c[0])))
                    .map(|(a, b)| {
                        format!(
                            "{a} → {b} ({})",
                            graph[a][b].strip_prefix(root).unwrap_or(&graph[a][b]).display()
                        )
                    })
                    .collect();
                cycles.push(format!("{krate}: {}", arrows.join(", ")));
                break;
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles (move the helper that closes each into the lower module):\n{}",
        cycles.join("\n")
    );
}

/// The library's errors are typed: each module returns its own error enum
/// (thiserror). The untyped error crate is the binary's and the tests' alone,
/// so no library file (anything under `src/` but `src/bin/`) names it, even in
/// a comment or a test.
#[test]
fn no_library_file_uses_the_untyped_error_crate() {
    let name = concat!("any", "how");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for p in library_files(&src) {
        let text = std::fs::read_to_string(&p).unwrap();
        for (n, line) in text.lines().enumerate().filter(|(_, l)| l.contains(name)) {
            found.push(format!(
                "{}:{}: {}",
                p.strip_prefix(&src).unwrap().display(),
                n + 1,
                line.trim()
            ));
        }
    }
    assert!(
        found.is_empty(),
        "library code uses {name} (return the module's typed error instead):\n{}",
        found.join("\n")
    );
}
