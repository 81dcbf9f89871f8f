//! One idempotent async function per runbook section. Each takes the [`Ctx`] (clients, the
//! validated deployment, and the plan log when planning) and the [`ProvisionState`] so far, and
//! returns its own typed output. Every AWS write goes through [`Ctx::dry_run`]: when planning, the
//! write is recorded as a [`PlannedChange`] instead of made, so `plan` is exactly `apply` without
//! its writes.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aws::Clients;
use crate::error::Result;
use crate::input::{self, Action, Deployment};
use crate::state::ProvisionState;

pub mod amp_workspace;
pub mod datasource;
pub mod grafana_role;
pub mod grafana_workspace;
pub mod iam_util;
pub mod irsa_trust;
pub mod preflight;
pub mod publish;
pub mod verify;
pub mod write_policy;

/// What apply would change, as reported by `plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    /// The step (kebab-case).
    pub step: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    /// What is changed (a role, a policy, a workspace alias...).
    pub resource: String,
    /// The difference: statements added/removed, settings that differ...
    pub details: Value,
}

/// Changes collected while planning.
#[derive(Debug, Clone, Default)]
pub struct PlanLog(Arc<Mutex<Vec<PlannedChange>>>);

impl PlanLog {
    /// Everything recorded so far.
    pub fn changes(&self) -> Vec<PlannedChange> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// What a step runs with: clients for the deployment's region and the validated deployment.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub clients: Clients,
    pub deployment: Deployment,
    /// Set when planning: writes are recorded here instead of made.
    pub plan: Option<PlanLog>,
}

impl Ctx {
    /// Validates the state's input (a `ValidationError` before any AWS call) and selects the
    /// clients for its region.
    /// With a `target`, every client acts in the target account through `sts:AssumeRole` (the
    /// session named after the execution), built for this invocation only.
    pub async fn new(clients: &Clients, state: &ProvisionState) -> Result<Self> {
        let deployment = input::resolve(&state.input, clients.region())?;
        let mut clients = clients.for_region(&deployment.region);
        if let Some((account, role)) = &deployment.target {
            let role_arn = crate::names::role_arn(&deployment.partition, account, role);
            clients = clients.assume(&role_arn, &session_name(state.execution.as_deref(), &deployment.name)).await?;
        }
        let plan = (deployment.action == Action::Plan).then(PlanLog::default);
        Ok(Self { clients, deployment, plan })
    }

    /// True when planning: the caller must not write, and records what it would write with
    /// [`Ctx::planned`].
    pub fn dry_run(&self) -> bool {
        self.plan.is_some()
    }

    /// Records a change apply would make (only while planning).
    pub fn planned(&self, step: &str, action: &str, resource: impl Into<String>, details: Value) {
        if let Some(log) = &self.plan {
            if let Ok(mut v) = log.0.lock() {
                v.push(PlannedChange { step: step.into(), action: action.into(), resource: resource.into(), details });
            }
        }
    }

    /// The ownership tags we put on what we create.
    pub fn owner_tags(&self) -> Vec<(String, String)> {
        vec![
            (crate::names::OWNER_TAG.to_string(), self.deployment.name.clone()),
            (crate::names::MANAGED_BY_TAG.to_string(), crate::names::MANAGED_BY_VALUE.to_string()),
        ]
    }

    /// True when `tags` say this deployment created the resource.
    pub fn owns<'a>(&self, mut tags: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
        tags.any(|(k, v)| k == crate::names::OWNER_TAG && v == self.deployment.name)
    }
}

/// The STS session name: `o11y-` and the execution name (or the deployment), cut to the
/// 64 characters of `[\w+=,.@-]` STS allows.
pub fn session_name(execution: Option<&str>, deployment: &str) -> String {
    let raw = format!("o11y-{}", execution.unwrap_or(deployment));
    raw.chars().filter(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(*c)).take(64).collect()
}

/// A placeholder for a value that exists only after apply (plan on a fresh deployment).
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";
