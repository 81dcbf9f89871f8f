//! The Step Functions console: `statemachine/input.schema.json` is generated from the Rust input
//! types and must be current (`UPDATE_SCHEMA=1 cargo test` rewrites it); every example in
//! `statemachine/examples/` is a valid input that resolves, and is valid against the schema.
//! README's input-contract example is `examples/full.json`, and it succeeds on the local stack.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use o11y_shared::input::{self, Action};
use o11y_tests::stack::{start_deployed, StackOptions};
use serde_json::Value;

/// The first JSON block of README's "## Input contract" section.
fn readme_input_example() -> Value {
    let readme = std::fs::read_to_string(o11y_tests::repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find("## Input contract").expect("an input contract section")..];
    let block = section.split("```json\n").nth(1).and_then(|b| b.split("```").next()).expect("a JSON block");
    serde_json::from_str(block).unwrap_or_else(|e| panic!("README's input example is not JSON: {e}"))
}

fn example(name: &str) -> Value {
    let path = o11y_tests::repo_root().join(format!("statemachine/examples/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readmes_input_example_is_the_full_example_and_it_runs_as_written() {
    // README's example, as a reader would paste it into the console
    let pasted = readme_input_example();
    assert_eq!(pasted, example("full"), "README's input contract example differs from examples/full.json");
    // on the sample cluster (dr-eks, its OIDC provider, dr-core-irsa: what seed-demo creates)
    let (stack, _clients, _seeded, sm) = start_deployed(&StackOptions::creating_one_second()).await;
    let run = stack.execute(&sm, "readme", &pasted).await;
    assert_eq!(run.status, "SUCCEEDED", "{run:?}");
    let out = run.output.unwrap();
    assert_eq!(
        out["writePolicyArn"].as_str().unwrap_or_default().rsplit('/').next(),
        Some("dr-prod-observability-write")
    );
    assert_eq!(out["verification"]["status"], "passed", "{out:#}");
}

#[test]
fn the_checked_in_schema_is_generated_from_the_input_types() {
    let path = o11y_tests::repo_root().join("statemachine/input.schema.json");
    let generated = o11y_shared::schema::input_schema();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is stale: run `UPDATE_SCHEMA=1 cargo test -p o11y-tests --test console_inputs`",
        path.display()
    );
    let schema: Value = serde_json::from_str(&on_disk).unwrap();
    let strings =
        |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect() };
    assert_eq!(strings(&schema["required"]), ["deploymentName"]);
    // apply and plan need the rest; a delete may name only the deployment (completed from its record)
    assert_eq!(schema["if"]["properties"]["action"]["const"], "delete");
    assert_eq!(strings(&schema["else"]["required"]), ["cluster", "namespace", "irsaRoleName"]);
    assert_eq!(schema["additionalProperties"], false, "unknown fields are rejected");
}

#[test]
fn every_example_is_a_valid_input_and_valid_against_the_schema() {
    let dir = o11y_tests::repo_root().join("statemachine/examples");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if name == "delete" {
            // by name alone: completed from the record when run (tests/tests/lifecycle.rs)
            assert!(o11y_shared::ctx::recall::is_partial_delete(&value), "{value}");
            names.push(name);
            continue;
        }
        let d = input::resolve(&value, Some("us-east-1")).unwrap_or_else(|e| panic!("{name}: {e}"));
        match name.as_str() {
            "plan" => assert_eq!(d.action, Action::Plan),
            "cross-account" => assert!(d.target.is_some()),
            "saml" => assert_eq!(d.grafana_authentication_providers, vec!["SAML".to_string()]),
            _ => {}
        }
        names.push(name);
    }
    names.sort();
    assert_eq!(names, ["cross-account", "delete", "full", "minimal", "plan", "saml"]);
    // and against the schema, with a real JSON Schema validator (jsonschema, from the venv)
    let script = r#"
import json, sys, glob, jsonschema
schema = json.load(open(sys.argv[1]))
for f in sorted(glob.glob(sys.argv[2] + "/*.json")):
    jsonschema.validate(json.load(open(f)), schema)
full = {"deploymentName": "x", "cluster": {"name": "c"}, "namespace": "n", "irsaRoleName": "r"}
for bad, why in [(dict(full, nope=1), "unknown field"), ({"deploymentName": "x"}, "apply without cluster"),
                 ({"deploymentName": "x", "action": "plan"}, "plan without cluster")]:
    try:
        jsonschema.validate(bad, schema); print(why + " accepted"); sys.exit(1)
    except jsonschema.ValidationError:
        pass
jsonschema.validate({"deploymentName": "x", "action": "delete"}, schema)
print("ok")
"#;
    let out = std::process::Command::new(o11y_tests::python())
        .args(["-c", script])
        .arg(o11y_tests::repo_root().join("statemachine/input.schema.json"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
