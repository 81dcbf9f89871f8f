//! The `publish` Lambda: JSON tracing, clients built once per cold start, then the library's
//! handler for [`lambdas::Publish`] (see `o11y_shared::lambda`).

use o11y_shared::engine::lambdas;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    o11y_shared::lambda::serve::<lambdas::Publish>().await
}
