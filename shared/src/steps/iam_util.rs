//! Managed-policy convergence and attachment, shared by write-policy and grafana-role.

use aws_sdk_iam::types::Tag;

use crate::error::{from_sdk, has_code, Error, Result};
use crate::names;
use crate::policy;
use crate::state::PolicyOutput;
use crate::steps::Ctx;

/// IAM keeps at most this many versions of a managed policy.
pub const MAX_POLICY_VERSIONS: usize = 5;

/// IAM tags marking what we create.
pub fn iam_tags(ctx: &Ctx) -> Result<Vec<Tag>> {
    ctx.owner_tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| Error::Internal(e.to_string())))
        .collect()
}

/// Creates the policy, or makes `document` its default version when the live default differs
/// (pruning the oldest non-default version at the 5-version limit).
pub async fn ensure_managed_policy(
    ctx: &Ctx,
    account_id: &str,
    name: &str,
    description: &str,
    document: &serde_json::Value,
) -> Result<PolicyOutput> {
    policy::check_managed_policy_size(name, document)?;
    let iam = &ctx.clients.iam;
    let compact = policy::to_compact(document);
    let mut arn = names::policy_arn(&ctx.deployment.partition, account_id, name);

    let existing = match iam.get_policy().policy_arn(&arn).send().await {
        Ok(out) => out.policy().cloned(),
        Err(e) if has_code(&e, &["NoSuchEntity"]) => None,
        Err(e) => return Err(from_sdk("iam:GetPolicy", e)),
    };
    let existing = match existing {
        Some(p) => Some(p),
        // A policy of that name at another path has another ARN: names are unique per account.
        None => find_local_policy(ctx, name).await?,
    };
    let Some(live) = existing else {
        let out = iam
            .create_policy()
            .policy_name(name)
            .policy_document(&compact)
            .description(description)
            .set_tags(Some(iam_tags(ctx)?))
            .send()
            .await
            .map_err(|e| from_sdk("iam:CreatePolicy", e))?;
        let p = out.policy().ok_or_else(|| Error::Internal("iam:CreatePolicy returned no policy".into()))?;
        tracing::info!(policy = %name, "policy created");
        return Ok(PolicyOutput {
            policy_arn: p.arn().unwrap_or(&arn).to_string(),
            policy_name: name.to_string(),
            default_version_id: p.default_version_id().unwrap_or("v1").to_string(),
            adopted: false,
            created: true,
            version_created: false,
            version_pruned: None,
            attached: false,
        });
    };
    if let Some(a) = live.arn() {
        arn = a.to_string();
    }
    let owned = policy_owned(ctx, &arn).await?;
    let default_version = live.default_version_id().unwrap_or_default().to_string();
    let current = iam
        .get_policy_version()
        .policy_arn(&arn)
        .version_id(&default_version)
        .send()
        .await
        .map_err(|e| from_sdk("iam:GetPolicyVersion", e))?;
    let raw = current.policy_version().and_then(|v| v.document()).unwrap_or_default();
    let mut out = PolicyOutput {
        policy_arn: arn.clone(),
        policy_name: name.to_string(),
        default_version_id: default_version,
        adopted: !owned,
        created: false,
        version_created: false,
        version_pruned: None,
        attached: false,
    };
    if policy::equivalent(&policy::decode_document(raw)?, document) {
        return Ok(out);
    }

    let versions =
        iam.list_policy_versions().policy_arn(&arn).send().await.map_err(|e| from_sdk("iam:ListPolicyVersions", e))?;
    let versions = versions.versions();
    if versions.len() >= MAX_POLICY_VERSIONS {
        let oldest = versions
            .iter()
            .filter(|v| !v.is_default_version())
            .min_by_key(|v| v.create_date().map(|d| (d.secs(), d.subsec_nanos())))
            .and_then(|v| v.version_id())
            .ok_or_else(|| {
                Error::Internal(format!("policy {name} has {} versions and none is deletable", versions.len()))
            })?
            .to_string();
        iam.delete_policy_version()
            .policy_arn(&arn)
            .version_id(&oldest)
            .send()
            .await
            .map_err(|e| from_sdk("iam:DeletePolicyVersion", e))?;
        tracing::info!(policy = %name, version = %oldest, "oldest policy version pruned");
        out.version_pruned = Some(oldest);
    }
    let created = iam
        .create_policy_version()
        .policy_arn(&arn)
        .policy_document(&compact)
        .set_as_default(true)
        .send()
        .await
        .map_err(|e| from_sdk("iam:CreatePolicyVersion", e))?;
    out.default_version_id = created.policy_version().and_then(|v| v.version_id()).unwrap_or_default().to_string();
    out.version_created = true;
    tracing::info!(policy = %name, version = %out.default_version_id, "policy version created as default");
    Ok(out)
}

/// An exact-name lookup among the account's own policies (any path).
async fn find_local_policy(ctx: &Ctx, name: &str) -> Result<Option<aws_sdk_iam::types::Policy>> {
    let mut pages =
        ctx.clients.iam.list_policies().scope(aws_sdk_iam::types::PolicyScopeType::Local).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("iam:ListPolicies", e))?;
        if let Some(p) = page.policies().iter().find(|p| p.policy_name() == Some(name)) {
            return Ok(Some(p.clone()));
        }
    }
    Ok(None)
}

async fn policy_owned(ctx: &Ctx, arn: &str) -> Result<bool> {
    let tags = ctx
        .clients
        .iam
        .list_policy_tags()
        .policy_arn(arn)
        .send()
        .await
        .map_err(|e| from_sdk("iam:ListPolicyTags", e))?;
    Ok(ctx.owns(tags.tags().iter().map(|t| (t.key(), t.value()))))
}

/// Whether a role carries our ownership tag.
pub async fn role_owned(ctx: &Ctx, role_name: &str) -> Result<bool> {
    let tags = ctx
        .clients
        .iam
        .list_role_tags()
        .role_name(role_name)
        .send()
        .await
        .map_err(|e| from_sdk("iam:ListRoleTags", e))?;
    Ok(ctx.owns(tags.tags().iter().map(|t| (t.key(), t.value()))))
}

/// Attaches `policy_arn` to `role_name` unless it already is. Returns true when it attached.
pub async fn ensure_attached(ctx: &Ctx, role_name: &str, policy_arn: &str) -> Result<bool> {
    let iam = &ctx.clients.iam;
    let mut pages = iam.list_attached_role_policies().role_name(role_name).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("iam:ListAttachedRolePolicies", e))?;
        if page.attached_policies().iter().any(|p| p.policy_arn() == Some(policy_arn)) {
            return Ok(false);
        }
    }
    iam.attach_role_policy()
        .role_name(role_name)
        .policy_arn(policy_arn)
        .send()
        .await
        .map_err(|e| from_sdk("iam:AttachRolePolicy", e))?;
    tracing::info!(role = %role_name, policy = %policy_arn, "policy attached");
    Ok(true)
}
