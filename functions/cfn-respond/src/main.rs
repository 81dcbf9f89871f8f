//! The `cfn-respond` Lambda: answers CloudFormation at the end of an execution it started, success
//! or failure (see `o11y_shared::cfn`).

use o11y_shared::engine::Step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    o11y_shared::lambda::serve(Step::CfnRespond).await
}
