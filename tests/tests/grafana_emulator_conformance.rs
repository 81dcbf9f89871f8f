//! Runs the Grafana emulator's conformance checks (routes, required fields, patterns, client
//! token idempotency and 404 shapes against botocore's `grafana` model, with a real boto3 client).

#[test]
fn grafana_emulator_conforms_to_the_botocore_model() {
    o11y_tests::run_python_checks("tests/grafana_emulator/conformance.py", 20);
}
