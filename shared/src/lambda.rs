//! What every Lambda binary runs: JSON tracing, the handler over one [`Step`], and the mapping of
//! engine errors to Lambda's `Diagnostic`, whose `errorType` is the stable error name that the
//! state machine's `Retry`/`Catch` match.

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;

use crate::aws::Clients;
use crate::domain::error::Error;
use crate::engine::{Step, StepLambda};
use crate::state::ProvisionState;

/// JSON logs on stdout (CloudWatch), level from `RUST_LOG` or `AWS_LAMBDA_LOG_LEVEL`, default info.
pub fn init_tracing() {
    let level = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_ascii_lowercase()))
        .unwrap_or_else(|_| "info".to_string());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_current_span(false)
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .try_init();
}

/// The Lambda error for an engine error: `errorType` = [`Error::name`], message prefixed with
/// the step so that a failed execution says where it failed.
pub fn diagnostic(step: Step, err: &Error) -> Diagnostic {
    Diagnostic { error_type: err.name().to_string(), error_message: format!("{}: {err}", step.name()) }
}

/// Reads the state the state machine passes in.
pub fn parse_state(payload: Value) -> Result<ProvisionState, Error> {
    if !payload.get("input").is_some_and(Value::is_object) {
        return Err(Error::validation("input", "the execution input must be a JSON object (the input contract)"));
    }
    serde_json::from_value(payload)
        .map_err(|e| Error::Internal(format!("the state passed between steps is malformed: {e}")))
}

/// The handler of the Lambda for step `S`: runs the step over the state and returns its output.
pub async fn handler<S: StepLambda>(clients: &Clients, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let result = match parse_state(event.payload) {
        // Boxed: a step's future (preflight's above all) nests deep enough that computing the
        // layout of `main`'s future overflows rustc's query depth limit in a clean build.
        Ok(state) => Box::pin(S::run(clients, &state)).await,
        Err(e) => Err(e),
    };
    result.map_err(|e| {
        tracing::error!(step = S::STEP.name(), error = e.name(), message = %e, "step failed");
        diagnostic(S::STEP, &e)
    })
}

/// Builds the clients once per cold start and serves step `S` on the Lambda runtime API. A step's
/// `main` is `serve::<lambdas::X>()`: its binary links step `X`'s code only (see [`StepLambda`]).
pub async fn serve<S: StepLambda>() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let clients = Clients::from_env().await;
    lambda_runtime::run(lambda_runtime::service_fn(|event| handler::<S>(&clients, event))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_carries_the_stable_name_and_the_step() {
        let d = diagnostic(Step::IrsaTrust, &Error::validation("namespace", "must be a label"));
        assert_eq!(d.error_type, "ValidationError");
        assert_eq!(d.error_message, "irsa-trust: namespace: must be a label");
    }

    #[test]
    fn a_state_without_input_is_a_validation_error() {
        let e = parse_state(serde_json::json!({"deploymentName": "x"})).unwrap_err();
        assert_eq!(e.name(), "ValidationError");
        assert!(parse_state(serde_json::json!({"input": {"deploymentName": "x"}})).is_ok());
    }
}

/// The entry points: Lambdas that start executions rather than run a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The CloudFormation custom resource (and the timeout answer).
    CfnHandler,
    /// Account vending: Control Tower events and the plain hook.
    VendingHook,
}

impl Entry {
    /// Both entry points.
    pub const ALL: [Entry; 2] = [Entry::CfnHandler, Entry::VendingHook];

    /// The function's name.
    pub fn name(self) -> &'static str {
        match self {
            Entry::CfnHandler => "cfn-handler",
            Entry::VendingHook => "vending-hook",
        }
    }
}

/// The handler of an entry point: `state_machine_arn` is the one state machine it starts.
pub async fn entry_handler(
    entry: Entry,
    clients: &Clients,
    state_machine_arn: &str,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    // Boxed for the reason given in `handler`.
    let result = match entry {
        Entry::CfnHandler => Box::pin(crate::cfn::handle(clients, state_machine_arn, event.payload)).await,
        Entry::VendingHook => Box::pin(crate::vending::handle(clients, state_machine_arn, event.payload)).await,
    };
    result.map_err(|e| {
        tracing::error!(entry = entry.name(), error = e.name(), message = %e, "entry point failed");
        Diagnostic { error_type: e.name().to_string(), error_message: format!("{}: {e}", entry.name()) }
    })
}

/// Serves an entry point; the state machine's ARN comes from `O11Y_STATE_MACHINE_ARN`.
pub async fn serve_entry(entry: Entry) -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let clients = Clients::from_env().await;
    let arn = std::env::var("O11Y_STATE_MACHINE_ARN").unwrap_or_default();
    if arn.is_empty() {
        tracing::error!(entry = entry.name(), "O11Y_STATE_MACHINE_ARN is not set");
    }
    lambda_runtime::run(lambda_runtime::service_fn(|event| entry_handler(entry, &clients, &arn, event))).await
}
