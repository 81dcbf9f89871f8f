//! Drives the real state machine on the local stack: creates or updates it from the ASL file with
//! the function ARNs substituted, starts an execution and waits for its end.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use serde_json::Value;

/// The local state machine's name.
pub const STATE_MACHINE_NAME: &str = "o11y-provisioner";

/// The ARN the local state machine gets (moto derives it from the name).
pub fn local_state_machine_arn() -> String {
    format!("arn:aws:states:{}:{}:stateMachine:{STATE_MACHINE_NAME}", crate::REGION, crate::ACCOUNT_ID)
}

/// Replaces each `${<Step>FunctionArn}` with the local function's ARN.
pub fn substitute(definition: &str, region: &str, account: &str) -> String {
    let mut out = String::with_capacity(definition.len());
    let mut rest = definition;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("FunctionArn}") {
            Some(end) if after[..end].chars().all(|c| c.is_ascii_alphanumeric()) => {
                let name = kebab(&after[..end]);
                out.push_str(&format!("arn:aws:lambda:{region}:{account}:function:{name}"));
                rest = &after[end + "FunctionArn}".len()..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn kebab(pascal: &str) -> String {
    let mut out = String::new();
    for (i, c) in pascal.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// How an execution ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub execution_arn: String,
    pub status: String,
    /// The output JSON on success.
    pub output: Option<Value>,
    /// The error name on failure.
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The last task state entered before the failure.
    pub failed_state: Option<String>,
    /// State transitions (entered events) of the execution.
    pub transitions: usize,
}

/// Creates or updates the state machine from `asl_path`; returns its ARN.
pub async fn deploy(
    client: &aws_sdk_sfn::Client,
    asl_path: &Path,
    region: &str,
    account: &str,
) -> Result<String, String> {
    let text = std::fs::read_to_string(asl_path).map_err(|e| format!("{}: {e}", asl_path.display()))?;
    let definition = substitute(&text, region, account);
    let role = format!("arn:aws:iam::{account}:role/o11y-provisioner-states");
    let mut pages = client.list_state_machines().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("ListStateMachines: {e:?}"))?;
        if let Some(sm) = page.state_machines().iter().find(|s| s.name() == STATE_MACHINE_NAME) {
            client
                .update_state_machine()
                .state_machine_arn(sm.state_machine_arn())
                .definition(&definition)
                .send()
                .await
                .map_err(|e| format!("UpdateStateMachine: {e:?}"))?;
            return Ok(sm.state_machine_arn().to_string());
        }
    }
    let out = client
        .create_state_machine()
        .name(STATE_MACHINE_NAME)
        .definition(&definition)
        .role_arn(role)
        .send()
        .await
        .map_err(|e| format!("CreateStateMachine: {e:?}"))?;
    Ok(out.state_machine_arn().to_string())
}

/// Starts an execution named `name` with `input` and waits (up to `timeout`) for its end.
pub async fn execute(
    client: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    name: &str,
    input: &Value,
    timeout: Duration,
) -> Result<Outcome, String> {
    let started = client
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(name)
        .input(input.to_string())
        .send()
        .await
        .map_err(|e| format!("StartExecution: {e:?}"))?;
    wait(client, started.execution_arn(), timeout).await
}

/// Waits (up to `timeout`) for the end of the execution `arn`, started elsewhere.
pub async fn wait(client: &aws_sdk_sfn::Client, arn: &str, timeout: Duration) -> Result<Outcome, String> {
    let arn = arn.to_string();
    let deadline = Instant::now() + timeout;
    loop {
        let d = client
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .map_err(|e| format!("DescribeExecution: {e:?}"))?;
        if d.status() != &ExecutionStatus::Running {
            let (failed_state, transitions) = history(client, &arn).await?;
            return Ok(Outcome {
                execution_arn: arn,
                status: d.status().as_str().to_string(),
                output: d.output().and_then(|o| serde_json::from_str(o).ok()),
                error: d.error().map(str::to_string),
                cause: d.cause().map(str::to_string),
                failed_state,
                transitions,
            });
        }
        if Instant::now() > deadline {
            return Err(format!("execution {arn} still RUNNING after {}s", timeout.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn history(client: &aws_sdk_sfn::Client, arn: &str) -> Result<(Option<String>, usize), String> {
    let mut last_task = None;
    let mut transitions = 0;
    let mut pages = client.get_execution_history().execution_arn(arn).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| format!("GetExecutionHistory: {e:?}"))?;
        for ev in page.events() {
            if let Some(d) = ev.state_entered_event_details() {
                transitions += 1;
                // `Finish` runs on every path: the failing state is the task before it.
                if ev.r#type() == &HistoryEventType::TaskStateEntered && d.name() != "Finish" {
                    last_task = Some(d.name().to_string());
                }
            }
        }
    }
    Ok((last_task, transitions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_local_function_arns() {
        let s = substitute(r#"{"a":"${GrafanaWorkspaceFunctionArn}","b":"${Other}"}"#, "us-east-1", "1");
        assert_eq!(s, r#"{"a":"arn:aws:lambda:us-east-1:1:function:grafana-workspace","b":"${Other}"}"#);
    }
}
