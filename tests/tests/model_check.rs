//! The local stack refuses what AWS refuses: runs `tests/localstack/model_check_conformance.py`
//! (moto, the Grafana emulator and the router with and without `--no-model-check`; at least 30
//! malformed requests across IAM, STS, SSM, AMP, EKS, Step Functions and Grafana, each refused
//! with the code and status the service answers (400 validation, 409 `LimitExceeded` for IAM sizes)
//! and logged as `refused`; valid requests still accepted; with
//! the checks off, moto's acceptance of several of them shown).

#[test]
fn the_router_refuses_requests_that_break_the_service_model() {
    o11y_tests::run_python_checks("tests/localstack/model_check_conformance.py", 40);
}
