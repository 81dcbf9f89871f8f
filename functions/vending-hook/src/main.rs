//! The `vending-hook` Lambda: Control Tower lifecycle events and the plain vending request start
//! a provisioning of the new account (see `o11y_shared::vending`).

use o11y_shared::lambda::Entry;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    o11y_shared::lambda::serve_entry(Entry::VendingHook).await
}
