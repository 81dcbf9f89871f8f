//! Starting executions idempotently: the execution name is derived from what started it (a
//! CloudFormation request, an EventBridge event id, a vending payload), so a redelivery finds the
//! execution already there and starts nothing new.

use sha2::{Digest, Sha256};

use crate::aws::sdk::from_sdk;
use crate::aws::Clients;
use crate::domain::error::Result;

/// `<prefix>-<hash of parts>`: at most 80 characters of `[A-Za-z0-9-]`, as Step Functions allows.
pub fn execution_name(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let hex: String = h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// Starts the execution; `Ok(false)` when an execution of that name already exists (redelivery).
pub async fn start(clients: &Clients, state_machine_arn: &str, name: &str, input: &serde_json::Value) -> Result<bool> {
    let sfn = aws_sdk_sfn::Client::new(clients.sdk_config());
    match sfn.start_execution().state_machine_arn(state_machine_arn).name(name).input(input.to_string()).send().await {
        Ok(_) => {
            tracing::info!(execution = %name, "execution started");
            Ok(true)
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_execution_already_exists()) => {
            tracing::info!(execution = %name, "execution already started: nothing new");
            Ok(false)
        }
        Err(e) => Err(from_sdk("states:StartExecution", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_valid_and_distinct() {
        let a = execution_name("cfn", &["stack", "Res", "req-1", "Create"]);
        assert_eq!(a, execution_name("cfn", &["stack", "Res", "req-1", "Create"]));
        assert_ne!(a, execution_name("cfn", &["stack", "Res", "req-2", "Create"]));
        assert_ne!(execution_name("x", &["ab", "c"]), execution_name("x", &["a", "bc"]));
        assert!(a.len() <= 80 && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
