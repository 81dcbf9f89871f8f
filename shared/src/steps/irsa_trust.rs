//! irsa-trust: makes the IRSA role trust `system:serviceaccount:<ns>:observability-*` through the
//! cluster's OIDC provider, keeping every principal it trusted before (see [`crate::trust`]).

use crate::error::{from_sdk, Result};
use crate::names;
use crate::policy;
use crate::state::{require, IrsaTrustOutput, ProvisionState};
use crate::steps::Ctx;
use crate::trust::{self, IrsaGrant};

/// Merges our statement into the IRSA role's trust policy; writes only when it changes.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<IrsaTrustOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let d = &ctx.deployment;
    let iam = &ctx.clients.iam;

    let role = iam.get_role().role_name(&d.irsa_role_name).send().await.map_err(|e| from_sdk("iam:GetRole", e))?;
    let raw = role.role().and_then(|r| r.assume_role_policy_document()).unwrap_or_default();
    let current = policy::decode_document(raw)?;

    let grant = IrsaGrant::new(&pre.oidc_provider_arn, names::issuer_host_path(&pre.oidc_issuer), &d.namespace);
    let sid = names::trust_statement_sid(&d.name);
    let merged = trust::merge(&current, &grant, &sid)?;
    if merged.changed {
        iam.update_assume_role_policy()
            .role_name(&d.irsa_role_name)
            .policy_document(policy::to_compact(&merged.document))
            .send()
            .await
            .map_err(|e| from_sdk("iam:UpdateAssumeRolePolicy", e))?;
        tracing::info!(role = %d.irsa_role_name, sid = %sid, "trust policy updated");
    }
    for w in &merged.warnings {
        tracing::warn!(role = %d.irsa_role_name, warning = %w, "trust policy");
    }
    Ok(IrsaTrustOutput {
        role_arn: pre.irsa_role_arn.clone(),
        changed: merged.changed,
        // On a re-run nothing is added, but the statement we own is still recorded.
        added_statement: merged.added_statement.or_else(|| trust::owned_statement(&merged.document, &grant, &sid)),
        warnings: merged.warnings,
    })
}
