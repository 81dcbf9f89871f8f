//! One idempotent async function per runbook section. Each takes the [`Ctx`] (clients and the
//! validated deployment) and the [`ProvisionState`] so far, and returns its own typed output.

use crate::aws::Clients;
use crate::error::Result;
use crate::input::{self, Deployment};
use crate::state::ProvisionState;

pub mod amp_workspace;
pub mod grafana_role;
pub mod grafana_workspace;
pub mod iam_util;
pub mod irsa_trust;
pub mod preflight;
pub mod publish;
pub mod write_policy;

/// What a step runs with: clients for the deployment's region and the validated deployment.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub clients: Clients,
    pub deployment: Deployment,
}

impl Ctx {
    /// Validates the state's input (a `ValidationError` before any AWS call) and selects the
    /// clients for its region.
    pub fn new(clients: &Clients, state: &ProvisionState) -> Result<Self> {
        let deployment = input::resolve(&state.input, clients.region())?;
        let clients = clients.for_region(&deployment.region);
        Ok(Self { clients, deployment })
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
