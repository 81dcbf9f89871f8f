//! Runs the Grafana emulator's conformance checks (routes, required fields, patterns, client
//! token idempotency and 404 shapes against botocore's `grafana` model, with a real boto3 client).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::process::Command;

#[test]
fn grafana_emulator_conforms_to_the_botocore_model() {
    let script = o11y_tests::repo_root().join("tests/grafana_emulator/conformance.py");
    let out = Command::new(o11y_tests::python()).arg(&script).output().expect("run conformance.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "conformance failed:\n{stdout}\n{stderr}");
    let summary = stdout.lines().rev().find(|l| l.contains(" passed, ")).unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "{summary}");
    let passed: usize = summary.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(passed >= 20, "too few checks ran: {summary}");
}
