//! The shape of the code, checked: the modules of streams-core import only from their own
//! layer or below (so the dataflow reads bottom to top: records and errors, the log,
//! processors, topology, tasks, the runtime, then the HTTP server), and no source file of the
//! three library crates grows past 700 lines.

use std::path::{Path, PathBuf};

/// streams-core's top-level modules by layer, bottom first. A module may use modules of its
/// own layer and of the layers below it.
const LAYERS: &[&[&str]] = &[
    &["ids", "record", "partitioner", "throttle"],
    &["error"],
    &["handler", "serdes", "log"],
    &["processor"],
    &["topology"],
    &["task"],
    &["runtime", "driver"],
    &["http"],
];

const MAX_LINES: usize = 700;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src` belongs to (`log` for `src/log/kafka/read.rs`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("a file under src");
    let first = rel.components().next().expect("a path");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

/// The top-level modules a file names as `crate::<module>`.
fn crate_uses(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            // `crate::{a, b}` names several.
            let names: Vec<&str> = match after.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap_or_default())
                    .collect(),
                None => vec![after
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or_default()],
            };
            out.extend(
                names
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .map(|s| (n + 1, s.to_string())),
            );
            rest = after;
        }
    }
    out
}

#[test]
fn streams_core_imports_only_from_its_own_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" {
            continue; // the crate root re-exports every layer
        }
        let own = layer_of(&module)
            .unwrap_or_else(|| panic!("module `{module}` is in no layer: add it to LAYERS"));
        let text = std::fs::read_to_string(file).expect("a source file");
        for (line, used) in crate_uses(&text) {
            let Some(layer) = layer_of(&used) else {
                continue; // an item of the crate root, such as a re-export
            };
            if layer > own {
                wrong.push(format!(
                    "{}:{line}: `{module}` uses `{used}`, a layer above it",
                    file.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_library_source_file_is_over_700_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    let mut long = Vec::new();
    for krate in ["streams-core", "streams-dsl", "state-store"] {
        let mut files = Vec::new();
        sources(&root.join(krate).join("src"), &mut files);
        for file in files {
            let lines = std::fs::read_to_string(&file)
                .expect("a source file")
                .lines()
                .count();
            if lines > MAX_LINES {
                long.push(format!("{}: {lines} lines", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these by what they hold:\n{}",
        long.join("\n")
    );
}
