//! publish: every ARN, id, URL and the rendered Helm values as SSM String parameters under the
//! deployment's prefix, written only when their value changed. Returns the output contract.

use serde_json::json;

use crate::aws::ssm;
pub use crate::aws::ssm::{parameter_name, tier_for, ADVANCED_MAX_BYTES, STANDARD_MAX_BYTES};
use crate::ctx::{record, registry, Change, Ctx};
use crate::domain::error::{Error, Result};
use crate::domain::render::{self, HelmValues};
use crate::state::ChangeKind;
use crate::state::{require, DeleteOutput, OutputContract, ProvisionState};
use crate::steps::amp_workspace;

const STEP: &str = "publish";

/// The output contract assembled from the earlier steps' outputs.
pub fn contract(ctx: &Ctx, state: &ProvisionState) -> Result<OutputContract> {
    let pre = require(&state.preflight, "preflight")?;
    let amp = require(&state.amp_workspace, "amp-workspace")?;
    let wp = require(&state.write_policy, "write-policy")?;
    let role = require(&state.grafana_role, "grafana-role")?;
    let ws = require(&state.grafana_workspace, "grafana-workspace")?;
    let mut adopted = Vec::new();
    for (name, flag) in [
        ("ampWorkspace", amp.adopted),
        ("writePolicy", wp.adopted),
        ("grafanaRole", role.adopted),
        ("readPolicy", role.read_policy.adopted),
        ("grafanaWorkspace", ws.adopted),
    ] {
        if flag {
            adopted.push(name.to_string());
        }
    }
    Ok(OutputContract {
        not_applied: ws.not_applied.clone(),
        deployment_name: ctx.deployment.name.clone(),
        account_id: pre.account_id.clone(),
        region: pre.region.clone(),
        irsa_role_arn: pre.irsa_role_arn.clone(),
        amp_workspace_id: amp.workspace_id.clone(),
        amp_workspace_arn: amp.arn.clone(),
        prometheus_endpoint: amp.prometheus_endpoint.clone(),
        remote_write_url: amp.remote_write_url.clone(),
        write_policy_arn: wp.policy_arn.clone(),
        grafana_role_arn: role.role_arn.clone(),
        read_policy_arn: role.read_policy.policy_arn.clone(),
        grafana_workspace_id: ws.workspace_id.clone(),
        grafana_url: ws.url.clone(),
        helm_values_parameter: parameter_name(&ctx.deployment.ssm_prefix, "helm-values"),
        adopted,
        retained: Vec::new(),
        verification: state.verification.clone(),
    })
}

/// The parameters to publish, `(leaf name, value)`, in a fixed order.
pub fn parameters(ctx: &Ctx, out: &OutputContract) -> Vec<(&'static str, String)> {
    let helm = render::helm_values(&HelmValues {
        irsa_role_arn: out.irsa_role_arn.clone(),
        region: out.region.clone(),
        log_group_name: ctx.deployment.log_group_name.clone(),
        log_stream_name: ctx.deployment.log_stream_name.clone(),
        remote_write_url: out.remote_write_url.clone(),
    });
    vec![
        ("irsa-role-arn", out.irsa_role_arn.clone()),
        ("amp-workspace-id", out.amp_workspace_id.clone()),
        ("amp-workspace-arn", out.amp_workspace_arn.clone()),
        ("prometheus-endpoint", out.prometheus_endpoint.clone()),
        ("remote-write-url", out.remote_write_url.clone()),
        ("write-policy-arn", out.write_policy_arn.clone()),
        ("grafana-role-arn", out.grafana_role_arn.clone()),
        ("read-policy-arn", out.read_policy_arn.clone()),
        ("grafana-workspace-id", out.grafana_workspace_id.clone()),
        ("grafana-url", out.grafana_url.clone()),
        ("helm-values", helm),
    ]
}

/// Publishes the parameters and returns the output contract.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<OutputContract> {
    let out = contract(ctx, state)?;
    let params = parameters(ctx, &out);
    let prefix = &ctx.deployment.ssm_prefix;
    // Check every limit before the first write, so that a bad value writes nothing.
    let mut planned = Vec::new();
    for (leaf, value) in &params {
        let name = ssm::parameter_name(prefix, leaf);
        if value.is_empty() {
            return Err(Error::Internal(format!("SSM parameter {name} would be empty")));
        }
        ssm::tier_for(&name, value)?;
        planned.push((name, value));
    }
    let names: Vec<String> = planned.iter().map(|(n, _)| n.clone()).collect();
    let live = ssm::current_values(&ctx.clients.ssm, &names).await?;
    let (mut created, mut updated, mut writes) = (Vec::new(), Vec::new(), Vec::new());
    for (name, value) in planned {
        let exists = match live.get(&name) {
            Some(v) if v == value => continue,
            Some(_) => {
                updated.push(name.clone());
                true
            }
            None => {
                created.push(name.clone());
                false
            }
        };
        writes.push((name, value, exists));
    }
    // Reported as two changes (created, updated), written one parameter at a time.
    if !created.is_empty() {
        ctx.report(Change::new(STEP, ChangeKind::Create, "SSM parameters", json!({ "parameters": created })));
    }
    if !updated.is_empty() {
        let mut details = json!({ "parameters": updated });
        // The Helm values: which keys change, old and new (what the cluster's pipeline will roll out).
        let helm = ssm::parameter_name(prefix, "helm-values");
        if let (Some(old), Some((_, new))) = (live.get(&helm), params.iter().find(|(leaf, _)| *leaf == "helm-values")) {
            if old != new {
                details["helmValues"] = match render::changed_keys(old, new) {
                    Some(keys) => json!(keys
                        .into_iter()
                        .map(|(key, old, new)| json!({"key": key, "old": old, "new": new}))
                        .collect::<Vec<_>>()),
                    None => json!("replaced whole: the live value is not in the shape publish writes"),
                };
            }
        }
        ctx.report(Change::new(STEP, ChangeKind::Update, "SSM parameters", details));
    }
    let (tags, description) = (ctx.owner_tags(), record::description(ctx));
    for (name, value, exists) in writes {
        ctx.write_unreported(|| ssm::put_parameter(&ctx.clients.ssm, &name, value, exists, &tags, &description))
            .await?;
    }
    // The remote-write URL is out: from now on the AMP workspace may hold the cluster's metrics.
    record::update(ctx, |r| {
        if let Some(e) = r.resources.get_mut(record::keys::AMP_WORKSPACE) {
            e.unpublished = false;
        }
    })
    .await?;
    // The new AMP workspace is in use (the Helm values point at it): our previous ones go.
    let mut out = out;
    let amp = require(&state.amp_workspace, "amp-workspace")?;
    out.retained =
        amp_workspace::retire_workspaces(ctx, STEP, &out.account_id, &amp.retired_workspaces, &mut Vec::new()).await?;
    // An `ssmPrefix` change: ours under the old prefix go once the new ones are in place.
    registry::retire_prefixes(ctx, STEP, LEAVES).await?;
    Ok(out)
}

/// The leaves `publish` writes, plus those of later steps (`verification`).
pub const LEAVES: &[&str] = &[
    "irsa-role-arn",
    "amp-workspace-id",
    "amp-workspace-arn",
    "prometheus-endpoint",
    "remote-write-url",
    "write-policy-arn",
    "grafana-role-arn",
    "read-policy-arn",
    "grafana-workspace-id",
    "grafana-url",
    "helm-values",
    "verification",
];

/// Deletes our parameters, the record last (the other delete steps need it). Parameters under
/// the prefix that we did not write are left alone.
pub async fn delete(ctx: &Ctx) -> Result<DeleteOutput> {
    let prefix = &ctx.deployment.ssm_prefix;
    let mut names: Vec<String> = LEAVES.iter().map(|l| ssm::parameter_name(prefix, l)).collect();
    names.push(record::parameter(ctx));
    let live = ssm::current_values(&ctx.clients.ssm, &names).await?;
    let mut out = DeleteOutput::default();
    ctx.record_cache.forget();
    for batch in names.iter().filter(|n| live.contains_key(*n)).collect::<Vec<_>>().chunks(ssm::GET_BATCH) {
        let batch: Vec<String> = batch.iter().map(|n| n.to_string()).collect();
        let change = Change::new(STEP, ChangeKind::Delete, "SSM parameters", json!({ "parameters": batch }));
        ctx.write(change, || ssm::delete_parameters(&ctx.clients.ssm, batch.clone())).await?;
        out.deleted.extend(batch);
    }
    // Ours under earlier prefixes not cleaned up yet, then the registry entry.
    out.deleted.extend(registry::unregister(ctx, STEP, LEAVES).await?);
    Ok(out)
}
