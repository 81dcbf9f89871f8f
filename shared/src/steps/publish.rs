//! publish: every ARN, id, URL and the rendered Helm values as SSM String parameters under the
//! deployment's prefix, written only when their value changed. Returns the output contract.

use std::collections::HashMap;

use aws_sdk_ssm::types::{ParameterTier, ParameterType, Tag};

use serde_json::json;

use crate::error::{from_sdk, has_code, Error, Result};
use crate::render::{self, HelmValues};
use crate::state::{require, DeleteOutput, OutputContract, ProvisionState};
use crate::steps::Ctx;

/// Standard-tier value limit (bytes).
pub const STANDARD_MAX_BYTES: usize = 4096;
/// Advanced-tier value limit (bytes).
pub const ADVANCED_MAX_BYTES: usize = 8192;
/// `GetParameters` takes at most this many names.
const GET_BATCH: usize = 10;

/// The tier a value needs, or `LimitExceededError` when even Advanced is too small.
pub fn tier_for(name: &str, value: &str) -> Result<ParameterTier> {
    match value.len() {
        n if n <= STANDARD_MAX_BYTES => Ok(ParameterTier::Standard),
        n if n <= ADVANCED_MAX_BYTES => Ok(ParameterTier::Advanced),
        n => Err(Error::LimitExceeded(format!(
            "SSM parameter {name}: value is {n} bytes, over the {ADVANCED_MAX_BYTES}-byte Advanced-tier limit"
        ))),
    }
}

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
        verification: None,
    })
}

/// `<prefix>/<leaf>`.
pub fn parameter_name(prefix: &str, leaf: &str) -> String {
    format!("{}/{leaf}", prefix.trim_end_matches('/'))
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
        let name = parameter_name(prefix, leaf);
        if value.is_empty() {
            return Err(Error::Internal(format!("SSM parameter {name} would be empty")));
        }
        tier_for(&name, value)?;
        planned.push((name, value));
    }
    let names: Vec<String> = planned.iter().map(|(n, _)| n.clone()).collect();
    let live = current_values(ctx, &names).await?;
    let (mut created, mut updated) = (Vec::new(), Vec::new());
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
        if !ctx.dry_run() {
            put_parameter(ctx, &name, value, exists).await?;
        }
    }
    if !created.is_empty() {
        ctx.planned("publish", "create", "SSM parameters", json!({ "parameters": created }));
    }
    if !updated.is_empty() {
        ctx.planned("publish", "update", "SSM parameters", json!({ "parameters": updated }));
    }
    Ok(out)
}

/// Writes one String parameter: created with our tags, or overwritten (SSM refuses tags together
/// with overwrite). `exists` is a hint; a parameter created meanwhile is overwritten.
pub async fn put_parameter(ctx: &Ctx, name: &str, value: &str, exists: bool) -> Result<()> {
    let tier = tier_for(name, value)?;
    let ssm = &ctx.clients.ssm;
    if !exists {
        let tags = ctx
            .owner_tags()
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| Error::Internal(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let created = ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(ParameterType::String)
            .tier(tier.clone())
            .description(format!("o11y-provisioner output for deployment {}", ctx.deployment.name))
            .set_tags(Some(tags))
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::info!(parameter = %name, "SSM parameter created");
                return Ok(());
            }
            Err(e) if has_code(&e, &["ParameterAlreadyExists"]) => {}
            Err(e) => return Err(from_sdk("ssm:PutParameter", e)),
        }
    }
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::String)
        .tier(tier)
        .overwrite(true)
        .send()
        .await
        .map_err(|e| from_sdk("ssm:PutParameter", e))?;
    tracing::info!(parameter = %name, "SSM parameter updated");
    Ok(())
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
    let mut names: Vec<String> = LEAVES.iter().map(|l| parameter_name(prefix, l)).collect();
    names.push(crate::record::parameter(ctx));
    let live = current_values(ctx, &names).await?;
    let mut out = DeleteOutput::default();
    for batch in names.iter().filter(|n| live.contains_key(*n)).collect::<Vec<_>>().chunks(GET_BATCH) {
        let batch: Vec<String> = batch.iter().map(|n| n.to_string()).collect();
        if ctx.dry_run() {
            ctx.planned("publish", "delete", "SSM parameters", json!({ "parameters": batch }));
        } else {
            ctx.clients
                .ssm
                .delete_parameters()
                .set_names(Some(batch.clone()))
                .send()
                .await
                .map_err(|e| from_sdk("ssm:DeleteParameters", e))?;
        }
        out.deleted.extend(batch);
    }
    Ok(out)
}

/// Current values of the parameters that exist.
async fn current_values(ctx: &Ctx, names: &[String]) -> Result<HashMap<String, String>> {
    let mut values = HashMap::new();
    for batch in names.chunks(GET_BATCH) {
        let out = ctx
            .clients
            .ssm
            .get_parameters()
            .set_names(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| from_sdk("ssm:GetParameters", e))?;
        for p in out.parameters() {
            if let (Some(n), Some(v)) = (p.name(), p.value()) {
                values.insert(n.to_string(), v.to_string());
            }
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_ssm_limits() {
        assert_eq!(tier_for("p", &"x".repeat(4096)).unwrap(), ParameterTier::Standard);
        assert_eq!(tier_for("p", &"x".repeat(4097)).unwrap(), ParameterTier::Advanced);
        assert_eq!(tier_for("p", &"x".repeat(8192)).unwrap(), ParameterTier::Advanced);
        let err = tier_for("/o11y/x/helm-values", &"x".repeat(8193)).unwrap_err();
        assert_eq!(err.name(), "LimitExceededError");
        assert!(err.to_string().contains("/o11y/x/helm-values"));
    }

    #[test]
    fn parameter_names_join_cleanly() {
        assert_eq!(parameter_name("/o11y/dr-prod", "helm-values"), "/o11y/dr-prod/helm-values");
        assert_eq!(parameter_name("/o11y/dr-prod/", "x"), "/o11y/dr-prod/x");
    }
}
