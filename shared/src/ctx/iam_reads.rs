//! The IAM roles and managed policies an invocation has read, so that a step asks IAM once per
//! role or policy: preflight's checks, the opt-in boundary, a step's own read and verify's all
//! look at the same few entities. `iam:GetRole` and `iam:GetPolicy` answer with the entity's
//! tags, so no `ListRoleTags` / `ListPolicyTags` is needed besides.
//!
//! What is kept is valid until this invocation's next write through the gate ([`Ctx::write`]
//! forgets everything, whatever the write was); each invocation, and each clone of a context,
//! starts empty, so a later step or a retry reads IAM again.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_iam::types::{Policy, Role, Tag};

use crate::aws::sdk::from_sdk;
use crate::ctx::Ctx;
use crate::domain::error::Result;

/// Roles by name and policies by ARN, `None` for one IAM said does not exist.
#[derive(Debug, Default)]
pub struct IamReads {
    roles: Mutex<HashMap<String, Option<Role>>>,
    policies: Mutex<HashMap<String, Option<Policy>>>,
}

impl Clone for IamReads {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl IamReads {
    /// Forgets everything read: after a write, or one whose outcome is unknown.
    pub fn forget(&self) {
        if let Ok(mut m) = self.roles.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.policies.lock() {
            m.clear();
        }
    }

    fn role(&self, name: &str) -> Option<Option<Role>> {
        self.roles.lock().ok()?.get(name).cloned()
    }

    fn policy(&self, arn: &str) -> Option<Option<Policy>> {
        self.policies.lock().ok()?.get(arn).cloned()
    }

    fn keep_role(&self, name: &str, role: Option<Role>) {
        if let Ok(mut m) = self.roles.lock() {
            m.insert(name.to_string(), role);
        }
    }

    fn keep_policy(&self, arn: &str, policy: Option<Policy>) {
        if let Ok(mut m) = self.policies.lock() {
            m.insert(arn.to_string(), policy);
        }
    }
}

/// The role `name` with its tags (`iam:GetRole`, once per invocation); `None` when it does not
/// exist.
pub async fn role(ctx: &Ctx, name: &str) -> Result<Option<Role>> {
    if let Some(known) = ctx.iam_reads.role(name) {
        return Ok(known);
    }
    let role = match ctx.clients.iam.get_role().role_name(name).send().await {
        Ok(out) => out.role().cloned(),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => None,
        Err(e) => return Err(from_sdk("iam:GetRole", e)),
    };
    ctx.iam_reads.keep_role(name, role.clone());
    Ok(role)
}

/// The managed policy `arn` with its tags (`iam:GetPolicy`, once per invocation); `None` when it
/// does not exist.
pub async fn policy(ctx: &Ctx, arn: &str) -> Result<Option<Policy>> {
    if let Some(known) = ctx.iam_reads.policy(arn) {
        return Ok(known);
    }
    let policy = match ctx.clients.iam.get_policy().policy_arn(arn).send().await {
        Ok(out) => out.policy().cloned(),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => None,
        Err(e) => return Err(from_sdk("iam:GetPolicy", e)),
    };
    ctx.iam_reads.keep_policy(arn, policy.clone());
    Ok(policy)
}

/// The tags of role `name` (empty when it does not exist).
pub async fn role_tags(ctx: &Ctx, name: &str) -> Result<Vec<Tag>> {
    Ok(role(ctx, name).await?.map(|r| r.tags().to_vec()).unwrap_or_default())
}

/// The tags of the managed policy `arn` (empty when it does not exist).
pub async fn policy_tags(ctx: &Ctx, arn: &str) -> Result<Vec<Tag>> {
    Ok(policy(ctx, arn).await?.map(|p| p.tags().to_vec()).unwrap_or_default())
}
