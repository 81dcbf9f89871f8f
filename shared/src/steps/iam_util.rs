//! Managed-policy convergence, attachment and removal, and role removal, shared by write-policy
//! and grafana-role. Ownership is recorded in the SSM record (and by tags).

use aws_sdk_iam::types::Tag;
use serde_json::{json, Value};

use crate::aws::sdk::from_sdk;
use crate::ctx::iam_reads;
use crate::ctx::record::{self, ResourceRecord};
use crate::ctx::{Change, Ctx};
use crate::domain::error::{Error, Result};
use crate::domain::iam::policy;
use crate::domain::names;
use crate::state::ChangeKind;
use crate::state::{DeleteOutput, PolicyOutput};
use crate::steps::claims;

/// The trust policy of `role_name`; `None` when the role does not exist.
pub async fn trust_of(ctx: &Ctx, role_name: &str) -> Result<Option<Value>> {
    match iam_reads::role(ctx, role_name).await? {
        Some(r) => Ok(Some(policy::decode_document(r.assume_role_policy_document().unwrap_or_default())?)),
        None => Ok(None),
    }
}

/// Replaces the trust policy of `role_name` (`current`) with `doc` through the write gate, which
/// reports the statements added and removed; with `quota`, the new document's length is checked
/// first. Returns whether it was written (a plan writes nothing). A role that is neither ours nor
/// opted in is refused ([`crate::steps::opt_in::require`]), removing our statement included:
/// IAM's conditions in the template do not tell an addition from a removal.
pub async fn write_trust(
    ctx: &Ctx,
    step: &'static str,
    kind: ChangeKind,
    role_name: &str,
    (current, doc): (&Value, &Value),
    quota: Option<usize>,
) -> Result<bool> {
    // The boundary: only a role we created or its owners opted in (checked at write time too).
    crate::steps::opt_in::require(ctx, role_name).await?;
    let (added, removed) = policy::statement_diff(current, doc);
    let change = Change::new(
        step,
        kind,
        format!("trust policy of role {role_name}"),
        json!({ "statementsAdded": added, "statementsRemoved": removed }),
    );
    let written = ctx
        .write(change, || async {
            if let Some(quota) = quota {
                policy::check_trust_policy_size(role_name, doc, quota)?;
            }
            ctx.clients
                .iam
                .update_assume_role_policy()
                .role_name(role_name)
                .policy_document(policy::to_compact(doc))
                .send()
                .await
                .map_err(|e| from_sdk("iam:UpdateAssumeRolePolicy", e))
        })
        .await?;
    Ok(written.is_some())
}

/// IAM keeps at most this many versions of a managed policy.
pub const MAX_POLICY_VERSIONS: usize = 5;

/// IAM tags marking what we create (with the region: [`Ctx::iam_owner_tags`]).
pub fn iam_tags(ctx: &Ctx) -> Result<Vec<Tag>> {
    ctx.iam_owner_tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| Error::Internal(e.to_string())))
        .collect()
}

/// A managed policy to converge.
pub struct PolicySpec<'a> {
    /// Step name, for the plan.
    pub step: &'static str,
    /// Key in the record.
    pub record_key: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub document: &'a Value,
    /// Preflight found no policy by this name ([`crate::state::PreflightOutput::absent`]): it
    /// is created without looking again.
    pub absent: bool,
}

/// A managed policy of a step, by name, and the role it is attached to.
pub struct PolicyRef<'a> {
    /// Step name, for the plan.
    pub step: &'static str,
    /// Key in the record.
    pub record_key: &'a str,
    pub name: &'a str,
    pub role_name: &'a str,
}

/// Converges the policy `target` names to `document` and attaches it to its role; `absent`:
/// preflight found no policy by that name ([`PolicySpec::absent`]).
pub async fn converge_attached(
    ctx: &Ctx,
    account_id: &str,
    target: &PolicyRef<'_>,
    (description, document): (&str, &Value),
    absent: bool,
) -> Result<PolicyOutput> {
    let spec = PolicySpec {
        step: target.step,
        record_key: target.record_key,
        name: target.name,
        description,
        document,
        absent,
    };
    // The input names another policy than the recorded one: the recorded one is retired once the
    // new one is accepted (recorded in its place), and removed once the new one is attached.
    let retired = record::renamed(&record::load(ctx).await?, target.record_key, target.name);
    let mut out = ensure_managed_policy(ctx, account_id, &spec).await?;
    out.attached = ensure_attached(ctx, target.step, target.record_key, target.role_name, &out.policy_arn).await?;
    let mut report = DeleteOutput::default();
    retire_policies(ctx, target, &retired, &mut report).await?;
    Ok(out)
}

/// Removes `retired` (policies of `target`'s record key the input named before; see
/// [`converge_attached`]), then forgets them. Passed in rather than read back, so that a plan,
/// which writes no record, reports them too. A policy the input names again is never removed.
async fn retire_policies(
    ctx: &Ctx,
    target: &PolicyRef<'_>,
    retired: &[ResourceRecord],
    out: &mut DeleteOutput,
) -> Result<()> {
    let mine: Vec<&ResourceRecord> = retired.iter().filter(|r| names::iam_name(&r.id) != target.name).collect();
    for r in &mine {
        let exists = iam_reads::policy(ctx, &r.id).await?.is_some();
        if exists {
            let role = r.attached_to.clone().unwrap_or_else(|| target.role_name.to_string());
            remove_policy(ctx, target.step, Some(r), r.id.clone(), names::iam_name(&r.id), &role, out).await?;
        }
    }
    if !mine.is_empty() {
        let ids: Vec<&str> = mine.iter().map(|r| r.id.as_str()).collect();
        record::update(ctx, |r| {
            r.retired.retain(|x| !(x.key == target.record_key && ids.contains(&x.resource.id.as_str())))
        })
        .await?;
    }
    Ok(())
}

/// Removes the policy `target` names (see [`delete_managed_policy`]) and reports what it did.
pub async fn delete_attached(ctx: &Ctx, account_id: &str, target: &PolicyRef<'_>) -> Result<DeleteOutput> {
    let mut out = DeleteOutput::default();
    let retired = record::retired_except(&record::load(ctx).await?, target.record_key, target.name);
    retire_policies(ctx, target, &retired, &mut out).await?;
    delete_managed_policy(ctx, target.step, target.record_key, account_id, target.name, target.role_name, &mut out)
        .await?;
    Ok(out)
}

/// Creates the policy, or makes `document` its default version when the live default differs
/// (pruning the oldest non-default version at the 5-version limit). Records ownership.
pub async fn ensure_managed_policy(ctx: &Ctx, account_id: &str, spec: &PolicySpec<'_>) -> Result<PolicyOutput> {
    policy::check_managed_policy_size(spec.name, spec.document)?;
    let iam = &ctx.clients.iam;
    let compact = policy::to_compact(spec.document);
    let before = record::load(ctx).await?;
    let found = if spec.absent { None } else { find_policy(ctx, account_id, spec.name).await? };
    let Some(live) = found else {
        let arn = names::policy_arn(&ctx.deployment.partition, account_id, spec.name);
        let change = Change::new(
            spec.step,
            ChangeKind::Create,
            format!("policy {}", spec.name),
            json!({ "document": spec.document }),
        );
        let mut out = PolicyOutput {
            policy_arn: arn,
            policy_name: spec.name.to_string(),
            default_version_id: "v1".to_string(),
            adopted: false,
            created: true,
            version_created: false,
            version_pruned: None,
            attached: false,
        };
        let tags = iam_tags(ctx)?;
        let created = ctx
            .write(change, || async {
                Ok(iam
                    .create_policy()
                    .policy_name(spec.name)
                    .policy_document(&compact)
                    .description(spec.description)
                    .set_tags(Some(tags))
                    .send()
                    .await)
            })
            .await?;
        let created = match created {
            Some(Ok(created)) => created,
            None => return Ok(out),
            // Taken since preflight looked (or by this step's own earlier attempt): look as usual.
            Some(Err(e))
                if spec.absent && e.as_service_error().is_some_and(|s| s.is_entity_already_exists_exception()) =>
            {
                return Box::pin(ensure_managed_policy(ctx, account_id, &PolicySpec { absent: false, ..*spec })).await
            }
            Some(Err(e)) => return Err(from_sdk("iam:CreatePolicy", e)),
        };
        let p = created.policy().ok_or_else(|| Error::Internal("iam:CreatePolicy returned no policy".into()))?;
        out.policy_arn = p.arn().unwrap_or(&out.policy_arn).to_string();
        out.default_version_id = p.default_version_id().unwrap_or("v1").to_string();
        tracing::info!(policy = %spec.name, "policy created");
        record_policy(ctx, spec.record_key, &out.policy_arn, true).await?;
        return Ok(out);
    };
    let arn = live.arn().unwrap_or_default().to_string();
    // Preflight refused this already; checked again at write time.
    let owner = claims::policy_owner(ctx, &arn).await?;
    claims::refuse_other_owner(ctx, spec.record_key, "policy", spec.name, owner.as_ref())?;
    let owned = record::known(&before, spec.record_key, &arn).is_some_and(|r| r.owned)
        || owner.is_some_and(|o| o.is(&ctx.deployment.name, &ctx.deployment.region));
    let default_version = live.default_version_id().unwrap_or_default().to_string();
    let current = iam
        .get_policy_version()
        .policy_arn(&arn)
        .version_id(&default_version)
        .send()
        .await
        .map_err(|e| from_sdk("iam:GetPolicyVersion", e))?;
    let live_doc = policy::decode_document(current.policy_version().and_then(|v| v.document()).unwrap_or_default())?;
    let mut out = PolicyOutput {
        policy_arn: arn.clone(),
        policy_name: spec.name.to_string(),
        default_version_id: default_version,
        adopted: !owned,
        created: false,
        version_created: false,
        version_pruned: None,
        attached: false,
    };
    let equivalent = policy::equivalent(&live_doc, spec.document);
    // Never replace the document of someone else's policy: one found by name is converged only
    // when it is recognisably a version of ours or the runbook's.
    let beyond = if owned || equivalent { Vec::new() } else { policy::actions_beyond(&live_doc, spec.document) };
    if !beyond.is_empty() {
        return Err(claims::foreign_policy_error(spec.record_key, spec.name, &beyond));
    }
    // Accepted: recorded only now, so that a refused policy never takes the place of ours.
    record_policy(ctx, spec.record_key, &arn, owned).await?;
    if equivalent {
        return Ok(out);
    }

    let versions = policy_versions(ctx, &arn).await?;
    let prune = if versions.len() >= MAX_POLICY_VERSIONS {
        Some(
            versions
                .iter()
                .filter(|v| !v.is_default_version())
                .min_by_key(|v| v.create_date().map(|d| (d.secs(), d.subsec_nanos())))
                .and_then(|v| v.version_id())
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "policy {} has {} versions and none is deletable",
                        spec.name,
                        versions.len()
                    ))
                })?
                .to_string(),
        )
    } else {
        None
    };
    let (added, removed) = policy::statement_diff(&live_doc, spec.document);
    let change = Change::new(
        spec.step,
        ChangeKind::Update,
        format!("policy {}", spec.name),
        json!({
            "statementsAdded": added,
            "statementsRemoved": removed,
            "versions": versions.len(),
            "versionLimit": MAX_POLICY_VERSIONS,
            "versionToPrune": prune,
        }),
    );
    out.version_created = true;
    out.version_pruned = prune.clone();
    let created = ctx
        .write(change, || async {
            if let Some(oldest) = &prune {
                iam.delete_policy_version()
                    .policy_arn(&arn)
                    .version_id(oldest)
                    .send()
                    .await
                    .map_err(|e| from_sdk("iam:DeletePolicyVersion", e))?;
                tracing::info!(policy = %spec.name, version = %oldest, "oldest policy version pruned");
            }
            iam.create_policy_version()
                .policy_arn(&arn)
                .policy_document(&compact)
                .set_as_default(true)
                .send()
                .await
                .map_err(|e| from_sdk("iam:CreatePolicyVersion", e))
        })
        .await?;
    let Some(created) = created else { return Ok(out) };
    out.default_version_id = created.policy_version().and_then(|v| v.version_id()).unwrap_or_default().to_string();
    tracing::info!(policy = %spec.name, version = %out.default_version_id, "policy version created as default");
    Ok(out)
}

/// Every version of a managed policy.
async fn policy_versions(ctx: &Ctx, arn: &str) -> Result<Vec<aws_sdk_iam::types::PolicyVersion>> {
    ctx.clients
        .iam
        .list_policy_versions()
        .policy_arn(arn)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| from_sdk("iam:ListPolicyVersions", e))
}

async fn record_policy(ctx: &Ctx, key: &str, arn: &str, owned: bool) -> Result<()> {
    record::update(ctx, |r| {
        let same = record::known(r, key, arn);
        let attached_by_us = same.as_ref().is_some_and(|e| e.attached_by_us);
        let attached_to = same.and_then(|e| e.attached_to);
        let entry = ResourceRecord { id: arn.to_string(), owned, attached_by_us, attached_to, ..Default::default() };
        record::accept(r, key, entry);
    })
    .await
    .map(|_| ())
}

/// The policy named `name` in this account: by its ARN at path `/`, else by an exact-name lookup
/// among the account's own policies (a policy at another path has another ARN; names are unique).
pub async fn find_policy(ctx: &Ctx, account_id: &str, name: &str) -> Result<Option<aws_sdk_iam::types::Policy>> {
    let arn = names::policy_arn(&ctx.deployment.partition, account_id, name);
    if let Some(p) = iam_reads::policy(ctx, &arn).await? {
        return Ok(Some(p));
    }
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
    let tags = iam_reads::policy_tags(ctx, arn).await?;
    Ok(ctx.owns(tags.iter().map(|t| (t.key(), t.value()))))
}

/// Whether a role carries our ownership tag.
pub async fn role_owned(ctx: &Ctx, role_name: &str) -> Result<bool> {
    let tags = iam_reads::role_tags(ctx, role_name).await?;
    Ok(ctx.owns(tags.iter().map(|t| (t.key(), t.value()))))
}

/// Managed policies attached to a role (empty when the role does not exist).
async fn attached_policies(ctx: &Ctx, role_name: &str) -> Result<Vec<String>> {
    let mut arns = Vec::new();
    let mut pages = ctx.clients.iam.list_attached_role_policies().role_name(role_name).into_paginator().send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => arns.extend(page.attached_policies().iter().filter_map(|p| p.policy_arn().map(str::to_string))),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => return Ok(Vec::new()),
            Err(e) => return Err(from_sdk("iam:ListAttachedRolePolicies", e)),
        }
    }
    Ok(arns)
}

/// Attaches `policy_arn` to `role_name` unless it already is; records that we attached it.
/// Returns true when it attached. A role that is neither ours nor opted in is refused
/// ([`crate::steps::opt_in::require`]).
pub async fn ensure_attached(
    ctx: &Ctx,
    step: &'static str,
    record_key: &str,
    role_name: &str,
    policy_arn: &str,
) -> Result<bool> {
    let attached = if attached_policies(ctx, role_name).await?.iter().any(|a| a == policy_arn) {
        false
    } else {
        crate::steps::opt_in::require(ctx, role_name).await?;
        let change =
            Change::new(step, ChangeKind::Update, format!("role {role_name}"), json!({ "attachPolicy": policy_arn }));
        // The record says "attached by us" before the attachment exists, so that a crash in
        // between still lets delete detach it.
        ctx.write(change, || async {
            record::update(ctx, |r| {
                if let Some(e) = r.resources.get_mut(record_key) {
                    e.attached_by_us = true;
                    if e.attached_to.is_none() {
                        e.attached_to = Some(role_name.to_string());
                    }
                }
            })
            .await?;
            ctx.clients
                .iam
                .attach_role_policy()
                .role_name(role_name)
                .policy_arn(policy_arn)
                .send()
                .await
                .map_err(|e| from_sdk("iam:AttachRolePolicy", e))?;
            tracing::info!(role = %role_name, policy = %policy_arn, "policy attached");
            Ok(())
        })
        .await?;
        true
    };
    // The role the input named before (the record says we attached it there): detached now
    // that the new one has it.
    let rec = record::load(ctx).await?;
    let previous = rec
        .resource(record_key)
        .filter(|e| e.id == policy_arn && e.attached_by_us)
        .and_then(|e| e.attached_to.clone())
        .filter(|old| old != role_name);
    if let Some(old) = previous {
        if attached_policies(ctx, &old).await?.iter().any(|a| a == policy_arn) {
            detach(ctx, step, &old, policy_arn).await?;
        }
        record::update(ctx, |r| {
            if let Some(e) = r.resources.get_mut(record_key) {
                e.attached_to = Some(role_name.to_string());
            }
        })
        .await?;
    }
    Ok(attached)
}

/// Removes a managed policy we created (detached everywhere, all versions deleted), or, for an
/// adopted one, only the attachment to `role_name` that we made. Idempotent.
pub async fn delete_managed_policy(
    ctx: &Ctx,
    step: &'static str,
    record_key: &str,
    account_id: &str,
    name: &str,
    role_name: &str,
    out: &mut DeleteOutput,
) -> Result<()> {
    let rec = record::load(ctx).await?;
    // A retired entry of the name the input names again counts as its entry.
    let recorded = rec
        .resource(record_key)
        .cloned()
        .or_else(|| rec.retired_of(record_key).into_iter().find(|x| names::iam_name(&x.id) == name));
    let live = match &recorded {
        Some(r) => iam_reads::policy(ctx, &r.id).await?,
        None => find_policy(ctx, account_id, name).await?,
    };
    let Some(live) = live else {
        forget(ctx, record_key).await?;
        return Ok(());
    };
    let arn = live.arn().unwrap_or_default().to_string();
    remove_policy(ctx, step, recorded.as_ref(), arn, name, role_name, out).await?;
    record::update(ctx, |r| {
        r.resources.remove(record_key);
        r.retired.retain(|x| !(x.key == record_key && names::iam_name(&x.resource.id) == name));
    })
    .await
    .map(|_| ())
}

/// Removes the policy `arn` when ours (detached everywhere, every version deleted), or, when
/// adopted, only the attachment we made. `recorded` is its entry in the record.
async fn remove_policy(
    ctx: &Ctx,
    step: &'static str,
    recorded: Option<&ResourceRecord>,
    arn: String,
    name: &str,
    role_name: &str,
    out: &mut DeleteOutput,
) -> Result<()> {
    let iam = &ctx.clients.iam;
    let owned = recorded.is_some_and(|r| r.owned) || policy_owned(ctx, &arn).await?;
    if !owned {
        let attached_role = recorded.and_then(|r| r.attached_to.clone()).unwrap_or_else(|| role_name.to_string());
        if recorded.is_some_and(|r| r.attached_by_us)
            && attached_policies(ctx, &attached_role).await?.iter().any(|a| a == &arn)
        {
            detach(ctx, step, &attached_role, &arn).await?;
            out.deleted.push(format!("attachment of {arn} to {attached_role}"));
        }
        out.retained.push(format!("{arn}: adopted"));
        return Ok(());
    }
    let change = Change::new(step, ChangeKind::Delete, format!("policy {name}"), json!({ "policyArn": arn }));
    ctx.write(change, || async {
        // All pages first: detaching while paging would move the later pages.
        let (mut roles, mut users, mut groups) = (Vec::new(), Vec::new(), Vec::new());
        let mut pages = iam.list_entities_for_policy().policy_arn(&arn).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk("iam:ListEntitiesForPolicy", e))?;
            roles.extend(page.policy_roles().iter().filter_map(|r| r.role_name().map(str::to_string)));
            users.extend(page.policy_users().iter().filter_map(|u| u.user_name().map(str::to_string)));
            groups.extend(page.policy_groups().iter().filter_map(|g| g.group_name().map(str::to_string)));
        }
        for role in &roles {
            detach(ctx, step, role, &arn).await?;
        }
        for user in &users {
            iam.detach_user_policy()
                .user_name(user)
                .policy_arn(&arn)
                .send()
                .await
                .map_err(|e| from_sdk("iam:DetachUserPolicy", e))?;
        }
        for group in &groups {
            iam.detach_group_policy()
                .group_name(group)
                .policy_arn(&arn)
                .send()
                .await
                .map_err(|e| from_sdk("iam:DetachGroupPolicy", e))?;
        }
        let versions = policy_versions(ctx, &arn).await?;
        for v in versions.iter().filter(|v| !v.is_default_version()) {
            if let Some(id) = v.version_id() {
                iam.delete_policy_version()
                    .policy_arn(&arn)
                    .version_id(id)
                    .send()
                    .await
                    .map_err(|e| from_sdk("iam:DeletePolicyVersion", e))?;
            }
        }
        match iam.delete_policy().policy_arn(&arn).send().await {
            Ok(_) => tracing::info!(policy = %arn, "policy deleted"),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => {}
            Err(e) => return Err(from_sdk("iam:DeletePolicy", e)),
        }
        Ok(())
    })
    .await?;
    out.deleted.push(arn);
    Ok(())
}

async fn detach(ctx: &Ctx, step: &'static str, role_name: &str, arn: &str) -> Result<()> {
    let change = Change::new(step, ChangeKind::Update, format!("role {role_name}"), json!({ "detachPolicy": arn }));
    ctx.write(change, || async {
        match ctx.clients.iam.detach_role_policy().role_name(role_name).policy_arn(arn).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => Ok(()),
            Err(e) => Err(from_sdk("iam:DetachRolePolicy", e)),
        }
    })
    .await
    .map(|_| ())
}

/// Reports `arn` deleted and forgets the record's entry.
async fn deleted(ctx: &Ctx, key: &str, arn: String, out: &mut DeleteOutput) -> Result<()> {
    out.deleted.push(arn);
    forget(ctx, key).await
}

async fn forget(ctx: &Ctx, key: &str) -> Result<()> {
    record::update(ctx, |r| {
        r.resources.remove(key);
    })
    .await
    .map(|_| ())
}

/// Deletes a role we created (its managed policies detached, inline policies deleted first); an
/// adopted role is kept. Idempotent.
pub async fn delete_role(
    ctx: &Ctx,
    step: &'static str,
    record_key: &str,
    role_name: &str,
    out: &mut DeleteOutput,
) -> Result<()> {
    let iam = &ctx.clients.iam;
    let arn = match iam_reads::role(ctx, role_name).await? {
        Some(r) => r.arn().to_string(),
        None => return forget(ctx, record_key).await,
    };
    let rec = record::load(ctx).await?;
    // The record's entry counts only for the role it names (ids compared), not for any role that
    // the input names now.
    let owned = rec.resource(record_key).is_some_and(|r| r.owned && r.id == arn) || role_owned(ctx, role_name).await?;
    if !owned {
        out.retained.push(format!("{arn}: adopted"));
        return Ok(());
    }
    let change = Change::new(step, ChangeKind::Delete, format!("role {role_name}"), json!({ "roleArn": arn }));
    ctx.write(change, || async {
        for policy_arn in attached_policies(ctx, role_name).await? {
            detach(ctx, step, role_name, &policy_arn).await?;
        }
        let inline = iam
            .list_role_policies()
            .role_name(role_name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| from_sdk("iam:ListRolePolicies", e))?;
        for name in &inline {
            iam.delete_role_policy()
                .role_name(role_name)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| from_sdk("iam:DeleteRolePolicy", e))?;
        }
        match iam.delete_role().role_name(role_name).send().await {
            Ok(_) => tracing::info!(role = %role_name, "role deleted"),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => {}
            Err(e) => return Err(from_sdk("iam:DeleteRole", e)),
        }
        Ok(())
    })
    .await?;
    deleted(ctx, record_key, arn, out).await
}
