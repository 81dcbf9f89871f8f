//! opt-in: the security boundary on roles. We give trust (`iam:UpdateAssumeRolePolicy`) or
//! attachments (`iam:AttachRolePolicy`) only to a role that this deployment created (its
//! ownership tags say so and the record does not say otherwise) or that its owners opted in with
//! the tag `o11y-provisioner:irsa` = `true`. A service-linked role is never edited. Checked by
//! `preflight` before any write, and again at every write of a role's trust or attachments
//! ([`crate::steps::iam_util::write_trust`], [`crate::steps::iam_util::ensure_attached`]); the
//! template's IAM conditions and, in a target account, the session policy
//! ([`crate::domain::iam::policy::target_session_policy`]) say the same.

use crate::ctx::iam_reads;
use crate::ctx::record;
use crate::ctx::Ctx;
use crate::domain::error::{Error, Result};
use crate::domain::names::{OPT_IN_TAG, OPT_IN_VALUE, SERVICE_LINKED_PATH};

/// Where a role stands with respect to the boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// The role does not exist (nothing to guard: a write fails on its own).
    Missing,
    /// Created by this deployment: its tags say so and the record does not say it was adopted.
    Owned,
    /// Tagged `o11y-provisioner:irsa` = `true` by its owners.
    OptedIn,
    /// Neither: never edited.
    NotOptedIn,
    /// A service-linked role (`/aws-service-role/`): never edited.
    ServiceLinked,
}

/// The standing of role `role_name`.
pub async fn standing(ctx: &Ctx, role_name: &str) -> Result<Standing> {
    let Some(role) = iam_reads::role(ctx, role_name).await? else { return Ok(Standing::Missing) };
    if role.path().starts_with(SERVICE_LINKED_PATH) {
        return Ok(Standing::ServiceLinked);
    }
    let tags: Vec<(&str, &str)> = role.tags().iter().map(|t| (t.key(), t.value())).collect();
    if ctx.owns(tags.iter().copied()) {
        // The record, where it knows this role, must agree that we created it.
        let rec = record::load(ctx).await?;
        let adopted = rec
            .resources
            .values()
            .chain(rec.retired.iter().map(|r| &r.resource))
            .any(|r| r.id == role.arn() && !r.owned);
        if !adopted {
            return Ok(Standing::Owned);
        }
    }
    if tags.iter().any(|(k, v)| *k == OPT_IN_TAG && *v == OPT_IN_VALUE) {
        return Ok(Standing::OptedIn);
    }
    Ok(Standing::NotOptedIn)
}

/// The input field that names `role_name`, for messages.
fn field_of(ctx: &Ctx, role_name: &str) -> &'static str {
    let d = &ctx.deployment;
    if role_name == d.irsa_role_name {
        "irsaRoleName"
    } else if role_name == d.grafana_role_name {
        "grafana.roleName"
    } else {
        "a role an earlier input named"
    }
}

/// `Ok` when role `role_name` may be given trust or attachments by us (see the module
/// documentation); otherwise a `PreconditionError` naming the field, the tag and the one command
/// that adds it. A missing role passes (the write that follows fails on its own).
pub async fn require(ctx: &Ctx, role_name: &str) -> Result<()> {
    let field = field_of(ctx, role_name);
    match standing(ctx, role_name).await? {
        Standing::Missing | Standing::Owned | Standing::OptedIn => Ok(()),
        Standing::ServiceLinked => Err(Error::Precondition(format!(
            "{field}: the role {role_name} is a service-linked role ({SERVICE_LINKED_PATH}): o11y-provisioner never \
             changes its trust or attachments; name the IRSA role of your cluster's collectors instead"
        ))),
        Standing::NotOptedIn => Err(Error::Precondition(format!(
            "{field}: the role {role_name} is not opted in: o11y-provisioner changes the trust or attachments of a \
             role it did not create only when the role carries the tag {OPT_IN_TAG} = {OPT_IN_VALUE}; nothing was \
             changed. If this role is meant for the observability collectors, its owners add the tag with: aws iam \
             tag-role --role-name {role_name} --tags Key={OPT_IN_TAG},Value={OPT_IN_VALUE}"
        ))),
    }
}
