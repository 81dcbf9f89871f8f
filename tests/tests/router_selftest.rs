//! Runs the router's self-test: Lambda runtime API (invoke by name and ARN, function errors,
//! crashes, timeouts, concurrency), proxying and routing by credential scope, the request log's
//! read/write classification, fault injection, and moto's Step Functions interpreter through it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::process::Command;

#[test]
fn router_passes_its_self_test() {
    let script = o11y_tests::repo_root().join("tests/localstack/router/selftest.py");
    let out = Command::new(o11y_tests::python()).arg(&script).output().expect("run selftest.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "router self-test failed:\n{stdout}\n{stderr}");
    let summary = stdout.lines().rev().find(|l| l.contains(" passed, ")).unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "{summary}");
    let passed: usize = summary.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(passed >= 50, "too few checks ran: {summary}");
}
