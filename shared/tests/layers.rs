//! The layering of `shared/src`: every module's `crate::` paths point at its own layer or one
//! below it (`lib.rs` says which layers there are). Read from the source text, so a new module
//! must be given a layer here before this passes.

// The helpers below fail the test by panicking on an unreadable tree.
#![allow(clippy::expect_used, reason = "test helpers fail the test")]

use std::path::{Path, PathBuf};

/// Layers from the bottom up: (layer, the top-level modules of `crate::` that belong to it).
const LAYERS: &[(&str, &[&str])] = &[
    ("domain", &["domain"]),
    ("aws", &["aws"]),
    ("state", &["state"]),
    ("ctx", &["ctx"]),
    ("steps", &["steps"]),
    ("entry", &["engine", "lambda", "cfn", "vending"]),
];

fn layer_of_module(top: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&top))
}

/// The layer of a source file, by its path under `src/`.
fn layer_of_file(rel: &Path) -> Option<usize> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    layer_of_module(first.trim_end_matches(".rs"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<top>` named in a file, outside its `#[cfg(test)]` module, with line numbers.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let top: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            out.push((n + 1, top));
            rest = after;
        }
    }
    out
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 20, "shared/src has {} files: has the layout changed?", files.len());
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        if rel == Path::new("lib.rs") {
            continue;
        }
        let Some(own) = layer_of_file(rel) else {
            problems.push(format!("{}: in no layer (add it to LAYERS)", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read");
        for (line, top) in crate_paths(&text) {
            checked += 1;
            match layer_of_module(&top) {
                Some(l) if l <= own => {}
                Some(l) => problems.push(format!(
                    "{}:{line}: crate::{top} is layer {} above {}",
                    rel.display(),
                    LAYERS[l].0,
                    LAYERS[own].0
                )),
                // The crate root's re-exports (`crate::Error`, `crate::input`) hide the layer.
                None => problems.push(format!("{}:{line}: crate::{top} is not a layer's module", rel.display())),
            }
        }
    }
    assert!(checked > 50, "only {checked} crate:: paths found: has the convention changed?");
    assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_catches_an_upward_import() {
    let paths = crate_paths("use crate::steps::Ctx;\nuse crate::domain::error::Result; // crate::engine\n");
    assert_eq!(paths, vec![(1, "steps".to_string()), (2, "domain".to_string())]);
    let own = layer_of_file(Path::new("ctx/record.rs")).expect("ctx is a layer");
    assert!(layer_of_module("steps").expect("steps") > own);
    assert!(layer_of_module("domain").expect("domain") < own);
}

/// No step decides for itself whether it is planning: writes go through the context's gate.
#[test]
fn no_step_tests_the_plan_mode_itself() {
    let steps = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/steps");
    let mut files = Vec::new();
    rust_files(&steps, &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for needle in ["dry_run", "is_plan()", ".plan.is_some()", ".plan.is_none()", "Action::Plan"] {
            assert!(!text.contains(needle), "{} tests the plan mode ({needle})", file.display());
        }
    }
}
