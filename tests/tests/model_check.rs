//! The local stack refuses what AWS refuses: runs `tests/localstack/model_check_conformance.py`
//! (moto, the Grafana emulator and the router with and without `--no-model-check`; at least 30
//! malformed requests across IAM, STS, SSM, AMP, EKS, Step Functions and Grafana, each refused 400
//! with the service's validation code and logged as `refused`; valid requests still accepted; with
//! the checks off, moto's acceptance of several of them shown).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::process::Command;

#[test]
fn the_router_refuses_requests_that_break_the_service_model() {
    let script = o11y_tests::repo_root().join("tests/localstack/model_check_conformance.py");
    let out = Command::new(o11y_tests::python()).arg(&script).output().expect("run model_check_conformance.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "model check conformance failed:\n{stdout}\n{stderr}");
    let summary = stdout.lines().rev().find(|l| l.contains(" passed, ")).unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "{summary}");
    let passed: usize = summary.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(passed >= 40, "too few checks ran: {summary}");
}
