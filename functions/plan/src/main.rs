//! The `plan` Lambda: JSON tracing, clients built once per cold start, then the library's
//! handler for [`Step::Plan`] (see `o11y_shared::lambda`): every step without writing.

use o11y_shared::engine::Step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    o11y_shared::lambda::serve(Step::Plan).await
}
