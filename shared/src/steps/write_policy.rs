//! write-policy: the runbook's write policy (CloudWatch Logs, X-Ray, `aps:RemoteWrite` on the
//! workspace), converged and attached to the IRSA role once.

use crate::error::Result;
use crate::policy;
use crate::state::{require, PolicyOutput, ProvisionState};
use crate::steps::{iam_util, Ctx};

/// Description set on the policy (the runbook's).
pub const DESCRIPTION: &str = "Policy for writing to CloudWatch, X-Ray, and Prometheus.";

/// Converges the write policy and attaches it to the IRSA role.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<PolicyOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let amp = require(&state.amp_workspace, "amp-workspace")?;
    let d = &ctx.deployment;
    let doc = policy::write_policy(&d.partition, &d.region, &pre.account_id, &d.log_group_name, &amp.arn);
    let mut out =
        iam_util::ensure_managed_policy(ctx, &pre.account_id, &d.write_policy_name, DESCRIPTION, &doc).await?;
    out.attached = iam_util::ensure_attached(ctx, &d.irsa_role_name, &out.policy_arn).await?;
    Ok(out)
}
