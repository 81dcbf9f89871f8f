//! Step dispatch (one entry per Lambda) and the in-process runner that chains the steps the way
//! the state machine does, waiting for ACTIVE with growing intervals and a bounded total.

use std::time::Duration;

use serde_json::Value;

use crate::aws::Clients;
use crate::error::{Error, Result};
use crate::poll::{PollPolicy, Resource};
use crate::state::{require, Poll, ProvisionState};
use crate::steps::{self, Ctx};

/// Every step, in execution order, plus the two status checks of the wait loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Preflight,
    IrsaTrust,
    AmpWorkspace,
    AmpStatus,
    WritePolicy,
    GrafanaRole,
    GrafanaWorkspace,
    GrafanaStatus,
    Publish,
}

impl Step {
    /// All steps.
    pub const ALL: [Step; 9] = [
        Step::Preflight,
        Step::IrsaTrust,
        Step::AmpWorkspace,
        Step::AmpStatus,
        Step::WritePolicy,
        Step::GrafanaRole,
        Step::GrafanaWorkspace,
        Step::GrafanaStatus,
        Step::Publish,
    ];

    /// kebab-case name: the function's package and binary name.
    pub fn name(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::IrsaTrust => "irsa-trust",
            Step::AmpWorkspace => "amp-workspace",
            Step::AmpStatus => "amp-status",
            Step::WritePolicy => "write-policy",
            Step::GrafanaRole => "grafana-role",
            Step::GrafanaWorkspace => "grafana-workspace",
            Step::GrafanaStatus => "grafana-status",
            Step::Publish => "publish",
        }
    }

    /// The state key the step's output is stored under (the ASL `ResultPath`, without `$.`).
    pub fn result_key(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::IrsaTrust => "irsaTrust",
            Step::AmpWorkspace | Step::AmpStatus => "ampWorkspace",
            Step::WritePolicy => "writePolicy",
            Step::GrafanaRole => "grafanaRole",
            Step::GrafanaWorkspace | Step::GrafanaStatus => "grafanaWorkspace",
            Step::Publish => "output",
        }
    }

    /// Looks a step up by its kebab-case name.
    pub fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Internal(format!("serialising a step output: {e}")))
}

/// Runs one step over `state` and returns its output as JSON (what the Lambda returns).
pub async fn run_step(step: Step, clients: &Clients, state: &ProvisionState) -> Result<Value> {
    let ctx = Ctx::new(clients, state)?;
    match step {
        Step::Preflight => to_json(&steps::preflight::run(&ctx, state).await?),
        Step::IrsaTrust => to_json(&steps::irsa_trust::run(&ctx, state).await?),
        Step::AmpWorkspace => {
            let mut out = steps::amp_workspace::run(&ctx, state).await?;
            out.poll = next_poll(Resource::Amp, None, &out.workspace_id, &out.status)?;
            to_json(&out)
        }
        Step::AmpStatus => {
            let prev = require(&state.amp_workspace, "amp-workspace")?;
            let mut now = steps::amp_workspace::describe(&ctx, &prev.workspace_id).await?;
            now.adopted = prev.adopted;
            now.created = prev.created;
            if steps::amp_workspace::FAILED_STATUSES.contains(&now.status.as_str()) {
                return Err(Error::ResourceFailed(format!("AMP workspace {} is {}", now.workspace_id, now.status)));
            }
            now.poll = next_poll(Resource::Amp, prev.poll, &now.workspace_id, &now.status)?;
            to_json(&now)
        }
        Step::WritePolicy => to_json(&steps::write_policy::run(&ctx, state).await?),
        Step::GrafanaRole => to_json(&steps::grafana_role::run(&ctx, state).await?),
        Step::GrafanaWorkspace => {
            let mut out = steps::grafana_workspace::run(&ctx, state).await?;
            out.poll = next_poll(Resource::Grafana, None, &out.workspace_id, &out.status)?;
            to_json(&out)
        }
        Step::GrafanaStatus => {
            let pre = require(&state.preflight, "preflight")?;
            let prev = require(&state.grafana_workspace, "grafana-workspace")?;
            let mut now = steps::grafana_workspace::describe(&ctx, &pre.account_id, &prev.workspace_id).await?;
            now.created = prev.created;
            now.updated = prev.updated;
            if steps::grafana_workspace::FAILED_STATUSES.contains(&now.status.as_str()) {
                return Err(Error::ResourceFailed(format!("Grafana workspace {} is {}", now.workspace_id, now.status)));
            }
            now.poll = next_poll(Resource::Grafana, prev.poll, &now.workspace_id, &now.status)?;
            to_json(&now)
        }
        Step::Publish => to_json(&steps::publish::run(&ctx, state).await?),
    }
}

/// `None` once ACTIVE; otherwise when to look again.
fn next_poll(resource: Resource, prev: Option<Poll>, id: &str, status: &str) -> Result<Option<Poll>> {
    if status == "ACTIVE" {
        return Ok(None);
    }
    PollPolicy::from_env(resource).next(prev, id, status).map(Some)
}

/// Stores a step's output in the state, as the state machine's `ResultPath` does.
pub fn apply_output(state: &mut ProvisionState, step: Step, output: Value) -> Result<()> {
    let mut doc = to_json(state)?;
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(step.result_key().to_string(), output);
    }
    *state = serde_json::from_value(doc).map_err(|e| Error::Internal(format!("step {} output: {e}", step.name())))?;
    Ok(())
}

/// How long to wait for workspaces to become ACTIVE.
#[derive(Debug, Clone, Copy)]
pub struct WaitPolicy {
    pub first_interval: Duration,
    pub max_interval: Duration,
    pub max_total: Duration,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        Self {
            first_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(60),
            max_total: Duration::from_secs(40 * 60),
        }
    }
}

async fn wait_active(step: Step, clients: &Clients, state: &mut ProvisionState, wait: &WaitPolicy) -> Result<()> {
    let status = |s: &ProvisionState| match step {
        Step::AmpStatus => s.amp_workspace.as_ref().map(|w| w.status.clone()),
        _ => s.grafana_workspace.as_ref().map(|w| w.status.clone()),
    };
    let mut interval = wait.first_interval;
    let mut waited = Duration::ZERO;
    while status(state).as_deref() != Some("ACTIVE") {
        if waited >= wait.max_total {
            return Err(Error::ResourceFailed(format!(
                "{} did not become ACTIVE within {}s (status {:?})",
                step.name(),
                wait.max_total.as_secs(),
                status(state)
            )));
        }
        tokio::time::sleep(interval).await;
        waited += interval;
        interval = (interval * 2).min(wait.max_interval);
        let out = run_step(step, clients, state).await?;
        apply_output(state, step, out)?;
    }
    Ok(())
}

/// Runs the whole workflow in-process (same steps, same order as the state machine).
pub async fn provision(clients: &Clients, input: Value, wait: &WaitPolicy) -> Result<ProvisionState> {
    let mut state = ProvisionState::new(input);
    for step in [Step::Preflight, Step::IrsaTrust, Step::AmpWorkspace] {
        let out = run_step(step, clients, &state).await?;
        apply_output(&mut state, step, out)?;
    }
    wait_active(Step::AmpStatus, clients, &mut state, wait).await?;
    for step in [Step::WritePolicy, Step::GrafanaRole, Step::GrafanaWorkspace] {
        let out = run_step(step, clients, &state).await?;
        apply_output(&mut state, step, out)?;
    }
    wait_active(Step::GrafanaStatus, clients, &mut state, wait).await?;
    let out = run_step(Step::Publish, clients, &state).await?;
    apply_output(&mut state, Step::Publish, out)?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_round_trip() {
        for s in Step::ALL {
            assert_eq!(Step::from_name(s.name()), Some(s));
        }
        assert_eq!(Step::from_name("nope"), None);
    }
}
