//! The `finish` Lambda, the last step of every path: releases the deployment's lease and answers
//! CloudFormation when it started the run (see `o11y_shared::engine::finish`).

use o11y_shared::engine::lambdas;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    o11y_shared::lambda::serve::<lambdas::Finish>().await
}
