//! The `datasource` Lambda: upserts the SigV4 Prometheus datasource in the Grafana workspace (a short-lived token, deleted after use) and grants the admins (see `o11y_shared::steps::datasource`).

use o11y_shared::engine::lambdas;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    o11y_shared::lambda::serve::<lambdas::Datasource>().await
}
