//! The `cfn-handler` Lambda: the CloudFormation custom resource's service token. Starts the
//! state machine for a request and returns at once (see `o11y_shared::cfn`).

use o11y_shared::lambda::Entry;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    o11y_shared::lambda::serve_entry(Entry::CfnHandler).await
}
