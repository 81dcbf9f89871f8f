//! grafana-role: the role Managed Grafana assumes (trusted by `grafana.amazonaws.com` with the
//! `aws:SourceAccount` / `aws:SourceArn` confused-deputy conditions) and its read policy on the
//! workspace, attached.

use serde_json::{json, Value};

use crate::aws::sdk::from_sdk;
use crate::ctx::record::{self, keys, ResourceRecord};
use crate::ctx::{Change, Ctx};
use crate::domain::error::{Error, Result};
use crate::domain::iam::doc::statements_or_empty;
use crate::domain::iam::policy;
use crate::domain::names;
use crate::state::ChangeKind;
use crate::state::{require, DeleteOutput, GrafanaRoleOutput, ProvisionState};
use crate::steps::claims;
use crate::steps::iam_util::{self, PolicyRef};

const STEP: &str = "grafana-role";

/// Description of the role (the runbook's).
pub const ROLE_DESCRIPTION: &str =
    "IAM role for Amazon Managed Grafana to read metrics from Amazon Managed Prometheus.";
/// Description of the read policy (the runbook's).
pub const READ_POLICY_DESCRIPTION: &str = "IAM policy for reading Prometheus workspace";

/// Converges the Grafana role, its trust policy and its read policy.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<GrafanaRoleOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let amp = require(&state.amp_workspace, "amp-workspace")?;
    let d = &ctx.deployment;
    let iam = &ctx.clients.iam;
    let desired = policy::grafana_trust_policy(&d.partition, &d.region, &pre.account_id);
    policy::check_trust_policy_size(&d.grafana_role_name, &desired, pre.trust_policy_quota)?;

    // The input names another role than the recorded one: the recorded one is retired (written
    // ahead), and removed once the workspace uses this one.
    let retired = record::retire_renamed(ctx, keys::GRAFANA_ROLE, &d.grafana_role_name).await?;
    let retired_roles = role_names(&retired, &d.grafana_role_name);

    let live = match iam.get_role().role_name(&d.grafana_role_name).send().await {
        Ok(out) => out.role().cloned(),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => None,
        Err(e) => return Err(from_sdk("iam:GetRole", e)),
    };
    let (role_arn, adopted, created, trust_updated) = match live {
        None => {
            let change = Change::new(
                STEP,
                ChangeKind::Create,
                format!("role {}", d.grafana_role_name),
                json!({ "trustPolicy": desired }),
            );
            let tags = iam_util::iam_tags(ctx)?;
            let created = ctx
                .write(change, || async {
                    iam.create_role()
                        .role_name(&d.grafana_role_name)
                        .assume_role_policy_document(policy::to_compact(&desired))
                        .description(ROLE_DESCRIPTION)
                        .set_tags(Some(tags))
                        .send()
                        .await
                        .map_err(|e| from_sdk("iam:CreateRole", e))
                })
                .await?;
            match created {
                None => (names::role_arn(&d.partition, &pre.account_id, &d.grafana_role_name), false, true, false),
                Some(out) => {
                    let arn = out.role().map(|r| r.arn().to_string()).unwrap_or_default();
                    tracing::info!(role = %d.grafana_role_name, "Grafana role created");
                    record_role(ctx, &arn, true).await?;
                    (arn, false, true, false)
                }
            }
        }
        Some(role) => {
            // Ours only when the record names this very role (a renamed `grafana.roleName` may
            // point at someone else's role) or its tags say so.
            let recorded =
                record::load(ctx).await?.resource(keys::GRAFANA_ROLE).is_some_and(|r| r.owned && r.id == role.arn());
            // Preflight refused another deployment's (or region's) role already; checked again here.
            let owner = claims::role_owner(ctx, &d.grafana_role_name).await?;
            claims::refuse_other_owner(ctx, keys::GRAFANA_ROLE, "role", &d.grafana_role_name, owner.as_ref())?;
            let owned = recorded || owner.is_some_and(|o| o.is(&d.name, &d.region));
            record_role(ctx, role.arn(), owned).await?;
            let current = policy::decode_document(role.assume_role_policy_document().unwrap_or_default())?;
            let target = converge_trust(&current, &desired, owned);
            let updated = match target {
                Some(doc) => {
                    let (added, removed) = policy::statement_diff(&current, &doc);
                    let change = Change::new(
                        STEP,
                        ChangeKind::Update,
                        format!("trust policy of role {}", d.grafana_role_name),
                        json!({ "statementsAdded": added, "statementsRemoved": removed }),
                    );
                    let written = ctx
                        .write(change, || async {
                            policy::check_trust_policy_size(&d.grafana_role_name, &doc, pre.trust_policy_quota)?;
                            iam.update_assume_role_policy()
                                .role_name(&d.grafana_role_name)
                                .policy_document(policy::to_compact(&doc))
                                .send()
                                .await
                                .map_err(|e| from_sdk("iam:UpdateAssumeRolePolicy", e))
                        })
                        .await?;
                    if written.is_some() {
                        tracing::info!(role = %d.grafana_role_name, owned, "Grafana role trust converged");
                    }
                    true
                }
                None => false,
            };
            (role.arn().to_string(), !owned, false, updated)
        }
    };

    let doc = policy::read_policy(&amp.arn);
    let read_policy =
        iam_util::converge_attached(ctx, &pre.account_id, &read_policy(ctx), READ_POLICY_DESCRIPTION, &doc).await?;
    Ok(GrafanaRoleOutput {
        role_arn,
        role_name: d.grafana_role_name.clone(),
        adopted,
        created,
        trust_updated,
        read_policy,
        retired_roles,
    })
}

async fn record_role(ctx: &Ctx, arn: &str, owned: bool) -> Result<()> {
    let entry = ResourceRecord { id: arn.to_string(), owned, ..ResourceRecord::default() };
    record::update(ctx, |r| {
        r.resources.insert(keys::GRAFANA_ROLE.to_string(), entry);
    })
    .await
    .map(|_| ())
}

/// The names of the `retired` roles, but `current`'s.
fn role_names(retired: &[ResourceRecord], current: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in retired.iter().map(|r| names::iam_name(&r.id)).filter(|n| *n != current) {
        if !out.iter().any(|x| x == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// Removes the retired Grafana roles (`names`): each only when ours (its tags say so), its
/// policies detached first; then forgets them in the record.
pub async fn retire_roles(ctx: &Ctx, step: &'static str, names: &[String], out: &mut DeleteOutput) -> Result<()> {
    for name in names.iter().filter(|n| *n != &ctx.deployment.grafana_role_name) {
        iam_util::delete_role(ctx, step, RETIRED_KEY, name, out).await?;
    }
    if !names.is_empty() {
        record::update(ctx, |r| {
            r.retired.retain(|x| {
                !(x.key == keys::GRAFANA_ROLE && names.iter().any(|n| n == names::iam_name(&x.resource.id)))
            })
        })
        .await?;
    }
    Ok(())
}

/// A record key no resource uses: `delete_role` judges a retired role by its tags alone.
const RETIRED_KEY: &str = "retiredGrafanaRole";

/// Removes the read policy (when ours) and the role (when ours), in that order.
pub async fn delete(ctx: &Ctx, state: &ProvisionState) -> Result<DeleteOutput> {
    let pre = require(&state.preflight, "preflight")?;
    let d = &ctx.deployment;
    let mut out = iam_util::delete_attached(ctx, &pre.account_id, &read_policy(ctx)).await?;
    let retired = role_names(&record::load(ctx).await?.retired_of(keys::GRAFANA_ROLE), &d.grafana_role_name);
    retire_roles(ctx, STEP, &retired, &mut out).await?;
    iam_util::delete_role(ctx, STEP, keys::GRAFANA_ROLE, &d.grafana_role_name, &mut out).await?;
    Ok(out)
}

/// The read policy and the Grafana role it is attached to.
fn read_policy(ctx: &Ctx) -> PolicyRef<'_> {
    let d = &ctx.deployment;
    PolicyRef {
        step: STEP,
        record_key: keys::READ_POLICY,
        name: &d.grafana_read_policy_name,
        role_name: &d.grafana_role_name,
    }
}

/// The trust document to write, or `None` when the live one is fine. A role we own is set to the
/// desired document; an adopted role keeps its statements and gains ours only when missing.
pub fn converge_trust(current: &Value, desired: &Value, owned: bool) -> Option<Value> {
    if policy::equivalent(current, desired) {
        return None;
    }
    if owned {
        return Some(desired.clone());
    }
    let ours: Vec<Value> = statements_or_empty(desired).into_iter().cloned().collect();
    let mut theirs: Vec<Value> = statements_or_empty(current).into_iter().cloned().collect();
    let missing: Vec<Value> =
        ours.into_iter().filter(|s| !theirs.iter().any(|t| policy::equivalent(&single(t), &single(s)))).collect();
    if missing.is_empty() {
        return None;
    }
    theirs.extend(missing);
    let mut doc = current.clone();
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("Statement".into(), Value::Array(theirs));
        obj.entry("Version").or_insert_with(|| Value::String("2012-10-17".into()));
    }
    Some(doc)
}

fn single(statement: &Value) -> Value {
    serde_json::json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// Maps a Grafana error caused by a role IAM has not propagated yet.
pub fn is_propagation_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("role") && (m.contains("assume") || m.contains("not authorized") || m.contains("invalid"))
}

/// `Error::IamPropagation` for a role created moments ago.
pub fn propagation_error(role: &str, message: &str) -> Error {
    Error::IamPropagation(format!("the Grafana role {role} is not usable yet (IAM propagation): {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired() -> Value {
        policy::grafana_trust_policy("aws", "us-east-1", "123456789012")
    }

    #[test]
    fn owned_role_is_reset_to_desired() {
        let drifted = json!({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]});
        assert_eq!(converge_trust(&drifted, &desired(), true), Some(desired()));
    }

    #[test]
    fn adopted_role_keeps_its_statements_and_gains_ours() {
        let theirs = json!({"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}});
        let out = converge_trust(&theirs, &desired(), false).expect("must change");
        let st = out["Statement"].as_array().expect("array");
        assert_eq!(st.len(), 2);
        assert_eq!(st[0]["Principal"]["Service"], "ec2.amazonaws.com");
        assert!(converge_trust(&out, &desired(), false).is_none(), "second run changes nothing");
    }

    #[test]
    fn equal_document_is_left_alone() {
        assert!(converge_trust(&desired(), &desired(), true).is_none());
        assert!(converge_trust(&desired(), &desired(), false).is_none());
    }
}
