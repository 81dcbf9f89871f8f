//! The `verify` Lambda: checks the policies, the trust and a remote-write probe, and records the result (see `o11y_shared::steps::verify`).

use o11y_shared::engine::lambdas;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    o11y_shared::lambda::serve::<lambdas::Verify>().await
}
