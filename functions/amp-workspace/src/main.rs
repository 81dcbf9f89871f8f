//! The `amp-workspace` Lambda: JSON tracing, clients built once per cold start, then the library's
//! handler for [`Step::AmpWorkspace`] (see `o11y_shared::lambda`).

use o11y_shared::engine::Step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    o11y_shared::lambda::serve(Step::AmpWorkspace).await
}
