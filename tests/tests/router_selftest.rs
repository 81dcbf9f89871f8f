//! Runs the router's self-test: Lambda runtime API (invoke by name and ARN, function errors,
//! crashes, timeouts, concurrency), proxying and routing by credential scope, the request log's
//! read/write classification, fault injection, and moto's Step Functions interpreter through it.

#[test]
fn router_passes_its_self_test() {
    o11y_tests::run_python_checks("tests/localstack/router/selftest.py", 50);
}
