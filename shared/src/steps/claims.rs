//! claims: whether the IAM resources the input names (the write policy, the Grafana role and its
//! read policy; IAM is global) are this deployment's to create, converge or adopt, checked by
//! `preflight` before any write, so that a refused run writes nothing. The steps that write them
//! repeat the checks at their own write time (a second line: something may change in between).
//!
//! Refused with `ConflictError`, naming the field, the resource and both ways out:
//! - a resource whose ownership tags name another deployment, or this deployment in another
//!   region (the region tag, [`names::REGION_TAG`]; a resource of ours without it, created before
//!   it existed, counts as this region's);
//! - a policy that is not ours and allows more than ours ([`policy::actions_beyond`]): someone
//!   else's, whose document is never replaced;
//! - a role at the default `grafana.roleName` that is not ours and whose trust does not admit
//!   Grafana: an unrelated role that merely has our name (a role the input names explicitly is
//!   adopted, its trust kept).

use serde_json::Value;

use crate::aws::sdk::from_sdk;
use crate::ctx::iam_reads;
use crate::ctx::record::{self, keys, Record};
use crate::ctx::Ctx;
use crate::domain::error::{Error, Result};
use crate::domain::iam::doc::{as_list, statements_or_empty};
use crate::domain::iam::policy;
use crate::domain::names::{self, TaggedOwner};
use crate::steps::iam_util;

/// The input field that names the resource recorded under `record_key`.
pub fn input_field(record_key: &str) -> &'static str {
    match record_key {
        keys::READ_POLICY => "grafana.readPolicyName",
        keys::GRAFANA_ROLE => "grafana.roleName",
        _ => "writePolicyName",
    }
}

/// The default name of the field recorded under `record_key`, for this deployment and region.
fn default_name(ctx: &Ctx, record_key: &str) -> String {
    let d = &ctx.deployment;
    match record_key {
        keys::READ_POLICY => names::default_read_policy_name(&d.name, &d.region),
        keys::GRAFANA_ROLE => names::default_grafana_role_name(&d.name, &d.region),
        _ => names::default_write_policy_name(&d.name, &d.region),
    }
}

/// Checks every IAM claim of the input (see the module documentation). Read-only. Returns the
/// record keys whose names are free (no such policy or role).
pub async fn check(ctx: &Ctx, account_id: &str) -> Result<Vec<String>> {
    let d = &ctx.deployment;
    let rec = record::load(ctx).await?;
    // Only the actions are compared: the workspace is not known yet, any ARN will do.
    let workspace = format!("arn:{}:aps:{}:{account_id}:workspace/*", d.partition, d.region);
    let write = policy::write_policy(&d.partition, &d.region, account_id, &d.log_group_name, &workspace);
    let mut absent = Vec::new();
    if !check_policy(ctx, &rec, account_id, keys::WRITE_POLICY, &d.write_policy_name, &write).await? {
        absent.push(keys::WRITE_POLICY.to_string());
    }
    if !check_role(ctx, &rec, keys::GRAFANA_ROLE, &d.grafana_role_name).await? {
        absent.push(keys::GRAFANA_ROLE.to_string());
    }
    let read = policy::read_policy(&workspace);
    if !check_policy(ctx, &rec, account_id, keys::READ_POLICY, &d.grafana_read_policy_name, &read).await? {
        absent.push(keys::READ_POLICY.to_string());
    }
    Ok(absent)
}

/// The owner a policy's tags name.
pub async fn policy_owner(ctx: &Ctx, arn: &str) -> Result<Option<TaggedOwner>> {
    let tags = iam_reads::policy_tags(ctx, arn).await?;
    Ok(TaggedOwner::from_tags(tags.iter().map(|t| (t.key(), t.value()))))
}

/// The owner a role's tags name.
pub async fn role_owner(ctx: &Ctx, role_name: &str) -> Result<Option<TaggedOwner>> {
    let tags = iam_reads::role_tags(ctx, role_name).await?;
    Ok(TaggedOwner::from_tags(tags.iter().map(|t| (t.key(), t.value()))))
}

/// `ConflictError` when `owner` (the tags of the `kind` named `name`, recorded under
/// `record_key`) is another deployment, or this one in another region.
pub fn refuse_other_owner(
    ctx: &Ctx,
    record_key: &str,
    kind: &str,
    name: &str,
    owner: Option<&TaggedOwner>,
) -> Result<()> {
    let d = &ctx.deployment;
    let Some(owner) = owner.filter(|o| !o.is(&d.name, &d.region)) else {
        return Ok(());
    };
    let field = input_field(record_key);
    let default = default_name(ctx, record_key);
    let other_region = owner.deployment == d.name;
    let ours = format!("deployment {} in region {}", d.name, d.region);
    let first_way = if other_region || name != default {
        format!("give {field} another name (its default, {default}, is this deployment's in this region alone)")
    } else {
        format!("give {field} another name")
    };
    Err(Error::Conflict(format!(
        "{field}: the {kind} {name} belongs to {} (its ownership tags say so), and this run is {ours}; refusing to \
         write it: {first_way}, or delete {} first (action \"delete\" with its own input{})",
        owner.describe(),
        owner.describe(),
        owner.region.as_deref().map(|r| format!(", region {r}")).unwrap_or_default(),
    )))
}

/// `ConflictError` for a policy found by name that is not ours and allows `beyond` more than ours.
pub fn foreign_policy_error(record_key: &str, name: &str, beyond: &[String]) -> Error {
    let field = input_field(record_key);
    Error::Conflict(format!(
        "{field}: the policy {name} exists, was not created by this deployment, and allows {} beyond what this \
         policy grants; refusing to replace its document: give {field} another name, or remove that policy first",
        beyond.join(", "),
    ))
}

/// True when the record names the resource `id` under `record_key` as created by us.
fn recorded_owned(rec: &Record, record_key: &str, id: &str) -> bool {
    rec.resource(record_key).is_some_and(|r| r.owned && r.id == id)
}

async fn check_policy(
    ctx: &Ctx,
    rec: &Record,
    account_id: &str,
    record_key: &str,
    name: &str,
    ours: &Value,
) -> Result<bool> {
    let d = &ctx.deployment;
    let Some(live) = iam_util::find_policy(ctx, account_id, name).await? else {
        return Ok(false);
    };
    let arn = live.arn().unwrap_or_default().to_string();
    let owner = policy_owner(ctx, &arn).await?;
    refuse_other_owner(ctx, record_key, "policy", name, owner.as_ref())?;
    if recorded_owned(rec, record_key, &arn) || owner.is_some_and(|o| o.is(&d.name, &d.region)) {
        return Ok(true);
    }
    let version = live.default_version_id().unwrap_or_default();
    let current = ctx
        .clients
        .iam
        .get_policy_version()
        .policy_arn(&arn)
        .version_id(version)
        .send()
        .await
        .map_err(|e| from_sdk("iam:GetPolicyVersion", e))?;
    let doc = policy::decode_document(current.policy_version().and_then(|v| v.document()).unwrap_or_default())?;
    let beyond = policy::actions_beyond(&doc, ours);
    if beyond.is_empty() {
        Ok(true)
    } else {
        Err(foreign_policy_error(record_key, name, &beyond))
    }
}

async fn check_role(ctx: &Ctx, rec: &Record, record_key: &str, name: &str) -> Result<bool> {
    let d = &ctx.deployment;
    let Some(role) = iam_reads::role(ctx, name).await? else { return Ok(false) };
    let owner = role_owner(ctx, name).await?;
    refuse_other_owner(ctx, record_key, "role", name, owner.as_ref())?;
    // Ours, or adopted by an earlier run (the record names this very role), or named by the input.
    let known = rec.resource(record_key).is_some_and(|r| r.id == role.arn());
    if known || owner.is_some_and(|o| o.is(&d.name, &d.region)) || name != default_name(ctx, record_key) {
        return Ok(true);
    }
    let trust = policy::decode_document(role.assume_role_policy_document().unwrap_or_default())?;
    if trusts_grafana(&trust) {
        return Ok(true);
    }
    let field = input_field(record_key);
    Err(Error::Conflict(format!(
        "{field}: the role {name} exists, was not created by this deployment, and its trust does not admit \
         grafana.amazonaws.com, so it is not a Grafana role of the runbook's; refusing to adopt it under the default \
         name: give {field} another name, or name this role in {field} explicitly to adopt it (its trust is kept, ours \
         is added)"
    )))
}

/// True when a statement of `trust` allows the service principal `grafana.amazonaws.com`.
fn trusts_grafana(trust: &Value) -> bool {
    statements_or_empty(trust).into_iter().any(|s| {
        s.get("Effect").and_then(Value::as_str) == Some("Allow")
            && s.get("Principal")
                .and_then(|p| p.get("Service"))
                .and_then(as_list)
                .is_some_and(|services| services.contains(&"grafana.amazonaws.com"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grafana_trust_is_recognised() {
        assert!(trusts_grafana(&policy::grafana_trust_policy("aws", "us-east-1", "123456789012")));
        let ec2 = json!({"Statement": {"Effect": "Allow", "Principal": {"Service": ["ec2.amazonaws.com"]},
                                       "Action": "sts:AssumeRole"}});
        assert!(!trusts_grafana(&ec2));
        let deny = json!({"Statement": [{"Effect": "Deny", "Principal": {"Service": "grafana.amazonaws.com"},
                                         "Action": "sts:AssumeRole"}]});
        assert!(!trusts_grafana(&deny));
    }

    #[test]
    fn fields_of_record_keys() {
        assert_eq!(input_field(keys::WRITE_POLICY), "writePolicyName");
        assert_eq!(input_field(keys::READ_POLICY), "grafana.readPolicyName");
        assert_eq!(input_field(keys::GRAFANA_ROLE), "grafana.roleName");
    }
}
