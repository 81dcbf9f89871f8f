//! write-policy: the runbook's write policy (CloudWatch Logs, X-Ray, `aps:RemoteWrite` on the
//! workspace), converged and attached to the IRSA role once; on delete, removed when ours.

use crate::ctx::record::keys;
use crate::domain::error::Result;
use crate::domain::iam::policy;
use crate::state::{require, DeleteOutput, PolicyOutput, ProvisionState};
use crate::steps::iam_util::{self, PolicyRef};
use crate::steps::Ctx;

/// Description set on the policy (the runbook's).
pub const DESCRIPTION: &str = "Policy for writing to CloudWatch, X-Ray, and Prometheus.";
const STEP: &str = "write-policy";

/// Converges the write policy and attaches it to the IRSA role.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<PolicyOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let amp = require(&state.amp_workspace, "amp-workspace")?;
    let d = &ctx.deployment;
    let doc = policy::write_policy(&d.partition, &d.region, &pre.account_id, &d.log_group_name, &amp.arn);
    let absent = pre.found_absent(keys::WRITE_POLICY);
    iam_util::converge_attached(ctx, &pre.account_id, &target(ctx), (DESCRIPTION, &doc), absent).await
}

/// Detaches and deletes the write policy when we created it; an adopted one keeps everything
/// but the attachment we made.
pub async fn delete(ctx: &Ctx, state: &ProvisionState) -> Result<DeleteOutput> {
    let pre = require(&state.preflight, "preflight")?;
    iam_util::delete_attached(ctx, &pre.account_id, &target(ctx)).await
}

/// The write policy and the IRSA role it is attached to.
fn target(ctx: &Ctx) -> PolicyRef<'_> {
    let d = &ctx.deployment;
    PolicyRef { step: STEP, record_key: keys::WRITE_POLICY, name: &d.write_policy_name, role_name: &d.irsa_role_name }
}
