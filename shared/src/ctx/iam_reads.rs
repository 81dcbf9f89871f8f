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

/// Entities by key (a role's name, a policy's ARN), `None` for one IAM said does not exist.
#[derive(Debug)]
struct Kept<T>(Mutex<HashMap<String, Option<T>>>);

impl<T: Clone> Kept<T> {
    fn get(&self, key: &str) -> Option<Option<T>> {
        self.0.lock().ok()?.get(key).cloned()
    }

    fn keep(&self, key: &str, value: Option<T>) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key.to_string(), value);
        }
    }

    fn clear(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }
}

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

/// Roles by name and policies by ARN.
#[derive(Debug, Default)]
pub struct IamReads {
    roles: Kept<Role>,
    policies: Kept<Policy>,
}

impl Clone for IamReads {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl IamReads {
    /// Forgets everything read: after a write, or one whose outcome is unknown.
    pub fn forget(&self) {
        self.roles.clear();
        self.policies.clear();
    }
}

/// The role `name` with its tags (`iam:GetRole`, once per invocation); `None` when it does not
/// exist.
pub async fn role(ctx: &Ctx, name: &str) -> Result<Option<Role>> {
    if let Some(known) = ctx.iam_reads.roles.get(name) {
        return Ok(known);
    }
    let role = match ctx.clients.iam.get_role().role_name(name).send().await {
        Ok(out) => out.role().cloned(),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => None,
        Err(e) => return Err(from_sdk("iam:GetRole", e)),
    };
    ctx.iam_reads.roles.keep(name, role.clone());
    Ok(role)
}

/// The managed policy `arn` with its tags (`iam:GetPolicy`, once per invocation); `None` when it
/// does not exist.
pub async fn policy(ctx: &Ctx, arn: &str) -> Result<Option<Policy>> {
    if let Some(known) = ctx.iam_reads.policies.get(arn) {
        return Ok(known);
    }
    let policy = match ctx.clients.iam.get_policy().policy_arn(arn).send().await {
        Ok(out) => out.policy().cloned(),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => None,
        Err(e) => return Err(from_sdk("iam:GetPolicy", e)),
    };
    ctx.iam_reads.policies.keep(arn, policy.clone());
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
