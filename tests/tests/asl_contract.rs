//! Contract between `statemachine/*.asl.json`, `shared/` and `functions/`: every custom
//! `ErrorEquals` name is one the engine defines, `ValidationError` is never retried, every
//! `${<Step>FunctionArn}` placeholder is a function in `functions/` (and every function is used),
//! each task stores its output where the engine expects it, every state is reachable, and every
//! state has a `Comment`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::collections::{BTreeSet, HashMap};

use o11y_shared::engine::Step;
use o11y_shared::error::{CRASH_ERROR_NAMES, ERROR_NAMES};
use o11y_shared::input::Action;
use o11y_shared::lambda::Entry;
use serde_json::Value;

fn asl_files() -> Vec<(String, Value)> {
    let dir = o11y_tests::repo_root().join("statemachine");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".asl.json") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.display().to_string(), serde_json::from_str(&text).unwrap()));
        }
    }
    assert!(!out.is_empty(), "no ASL files in {}", dir.display());
    out
}

fn function_dirs() -> BTreeSet<String> {
    std::fs::read_dir(o11y_tests::repo_root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect()
}

fn pascal(kebab: &str) -> String {
    kebab
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn states(asl: &Value) -> &serde_json::Map<String, Value> {
    asl["States"].as_object().expect("States")
}

fn targets(state: &Value) -> Vec<String> {
    let mut t = Vec::new();
    for key in ["Next", "Default"] {
        if let Some(n) = state.get(key).and_then(Value::as_str) {
            t.push(n.to_string());
        }
    }
    for list in ["Choices", "Catch"] {
        for c in state.get(list).and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = c.get("Next").and_then(Value::as_str) {
                t.push(n.to_string());
            }
        }
    }
    t
}

#[test]
fn error_names_exist_in_shared_and_validation_is_never_retried() {
    for (file, asl) in asl_files() {
        for (name, state) in states(&asl) {
            for (kind, list) in [("Retry", state.get("Retry")), ("Catch", state.get("Catch"))] {
                for rule in list.and_then(Value::as_array).into_iter().flatten() {
                    for e in rule["ErrorEquals"].as_array().expect("ErrorEquals") {
                        let e = e.as_str().unwrap();
                        let builtin =
                            e.starts_with("States.") || e.starts_with("Lambda.") || CRASH_ERROR_NAMES.contains(&e);
                        assert!(builtin || ERROR_NAMES.contains(&e), "{file}: {name}.{kind} matches unknown error {e}");
                        if kind == "Retry" {
                            assert!(e != "ValidationError" && e != "States.ALL", "{file}: {name} retries {e}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn tasks_retry_transient_and_lambda_errors_and_catch_everything() {
    for (file, asl) in asl_files() {
        for (name, state) in states(&asl) {
            if state["Type"] != "Task" {
                continue;
            }
            let retried: Vec<&str> = state["Retry"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r["ErrorEquals"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()))
                .collect();
            for must in [
                "TransientError",
                "IamPropagationError",
                "Lambda.ServiceException",
                "Lambda.AWSLambdaException",
                "Lambda.SdkClientException",
                "Lambda.TooManyRequestsException",
            ] {
                assert!(retried.contains(&must), "{file}: {name} does not retry {must}");
            }
            for crash in CRASH_ERROR_NAMES {
                assert!(retried.contains(crash), "{file}: {name} does not retry a crashed process ({crash})");
            }
            for r in state["Retry"].as_array().unwrap() {
                assert!(r["MaxAttempts"].as_u64().unwrap() <= 10, "{file}: {name} retries unboundedly");
                assert_eq!(r["JitterStrategy"], "FULL", "{file}: {name} retries without jitter");
            }
            let catches_all = state["Catch"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["ErrorEquals"].as_array().unwrap().iter().any(|e| e == "States.ALL"));
            assert!(catches_all, "{file}: {name} has no catch-all");
        }
    }
}

#[test]
fn placeholders_match_functions_and_result_paths_match_the_engine() {
    let functions = function_dirs();
    let mut used = BTreeSet::new();
    for (file, asl) in asl_files() {
        for (name, state) in states(&asl) {
            let Some(resource) = state.get("Resource").and_then(Value::as_str) else { continue };
            let placeholder = resource
                .strip_prefix("${")
                .and_then(|r| r.strip_suffix("FunctionArn}"))
                .unwrap_or_else(|| panic!("{file}: {name} has a literal Resource {resource}"));
            let function = functions.iter().find(|f| pascal(f) == placeholder).unwrap_or_else(|| {
                panic!("{file}: {name} uses ${{{placeholder}FunctionArn}}, not a function in functions/")
            });
            used.insert(function.clone());
            let step =
                Step::from_name(function).unwrap_or_else(|| panic!("functions/{function} is not an engine step"));
            let keys: Vec<String> = [Action::Plan, Action::Apply, Action::Delete]
                .iter()
                .map(|a| format!("$.{}", step.result_key(*a)))
                .collect();
            assert!(
                keys.iter().any(|k| state["ResultPath"] == *k),
                "{file}: {name} stores at {} not {keys:?}",
                state["ResultPath"]
            );
        }
    }
    let entries: BTreeSet<String> = Entry::ALL.iter().map(|e| e.name().to_string()).collect();
    let steps: BTreeSet<String> = Step::ALL.iter().map(|s| s.name().to_string()).collect();
    assert_eq!(used, steps, "every step's function is used by a state machine");
    assert_eq!(
        steps.union(&entries).cloned().collect::<BTreeSet<_>>(),
        functions,
        "one function per step or entry point"
    );
}

#[test]
fn every_state_is_reachable_and_every_target_exists() {
    for (file, asl) in asl_files() {
        let states = states(&asl);
        let start = asl["StartAt"].as_str().unwrap();
        let mut seen = BTreeSet::from([start.to_string()]);
        let mut todo = vec![start.to_string()];
        let edges: HashMap<&String, Vec<String>> = states.iter().map(|(k, v)| (k, targets(v))).collect();
        while let Some(s) = todo.pop() {
            let next = edges.get(&s).unwrap_or_else(|| panic!("{file}: target {s} does not exist"));
            for n in next {
                assert!(states.contains_key(n), "{file}: {s} goes to missing state {n}");
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        let all: BTreeSet<String> = states.keys().cloned().collect();
        assert_eq!(seen, all, "{file}: unreachable states");
        assert!(states.values().any(|s| s["End"] == true), "{file}: no End state");
        let timeout = asl["TimeoutSeconds"].as_u64().expect("a state machine timeout");
        assert!(timeout < 3600, "{file}: must finish before CloudFormation's one-hour timeout");
    }
}

#[test]
fn every_state_says_what_it_does() {
    // The console shows a state's Comment beside it; a bare Choice or Wait tells a reader nothing.
    for (file, asl) in asl_files() {
        for (name, state) in states(&asl) {
            let comment = state["Comment"].as_str().unwrap_or_default().trim();
            assert!(!comment.is_empty(), "{file}: state {name} ({}) has no Comment", state["Type"]);
        }
    }
}
