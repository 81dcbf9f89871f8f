//! preflight: the account (STS), the cluster's OIDC issuer (input or `eks:DescribeCluster`), and
//! checks that the IAM OIDC provider and the IRSA role exist. Read-only. On `delete`, a missing
//! cluster, provider or role is not an error: there is then less to clean up. For a
//! CloudFormation Create it also reads whether the deployment's record exists: only a Create of a
//! deployment without one is rolled back when it fails (what it would delete is then all its own).

use crate::aws::quotas;
use crate::aws::sdk::from_sdk;
use crate::aws::ssm;
use crate::ctx::record;
use crate::domain::error::{Error, Result};
use crate::domain::iam::policy;
use crate::domain::input::Action;
use crate::domain::names;
use crate::state::{PreflightOutput, ProvisionState, RequestType};
use crate::steps::Ctx;

/// Runs the preflight checks.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<PreflightOutput> {
    let d = &ctx.deployment;
    let c = &ctx.clients;

    let identity = c.sts.get_caller_identity().send().await.map_err(|e| from_sdk("sts:GetCallerIdentity", e))?;
    let account_id = identity.account().unwrap_or_default().to_string();
    if let Some(expected) = &d.expected_account_id {
        if expected != &account_id {
            return Err(Error::Precondition(format!(
                "accountId: the input expects account {expected} but the credentials are in account {account_id}"
            )));
        }
    }

    let deleting = d.action == Action::Delete;
    let oidc_issuer = match (&d.oidc_issuer, &d.cluster_name) {
        (Some(issuer), None) => issuer.clone(),
        (issuer, Some(cluster)) => {
            let live = match cluster_issuer(ctx, cluster, &account_id).await {
                Ok(live) => live,
                Err(Error::Precondition(_)) if deleting => issuer.clone().unwrap_or_default(),
                Err(e) => return Err(e),
            };
            if let (Some(given), false) = (issuer, live.is_empty()) {
                if names::issuer_host_path(given) != names::issuer_host_path(&live) {
                    return Err(Error::validation(
                        "cluster.oidcIssuer",
                        format!("does not match the issuer of EKS cluster {cluster:?} ({live})"),
                    ));
                }
            }
            live
        }
        (None, None) => {
            return Err(Error::validation("cluster", "one of cluster.name or cluster.oidcIssuer is required"))
        }
    };

    let host_path = names::issuer_host_path(&oidc_issuer);
    let oidc_provider_arn = names::oidc_provider_arn(&d.partition, &account_id, host_path);
    if !oidc_issuer.is_empty() {
        match c.iam.get_open_id_connect_provider().open_id_connect_provider_arn(&oidc_provider_arn).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) && deleting => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception()) => {
                return Err(Error::Precondition(format!(
                    "the IAM OIDC provider for {oidc_issuer} does not exist in account {account_id} ({oidc_provider_arn}): \
                     it must be configured first (for example `eksctl utils associate-iam-oidc-provider --cluster <name> \
                     --approve`){}",
                    target_hint(ctx)
                )))
            }
            Err(e) => return Err(from_sdk("iam:GetOpenIDConnectProvider", e)),
        }
    }

    let irsa_role_arn = match crate::ctx::iam_reads::role(ctx, &d.irsa_role_name).await? {
        Some(role) => role.arn().to_string(),
        None if deleting => String::new(),
        None => {
            return Err(Error::Precondition(format!(
                "irsaRoleName: the IRSA role {:?} does not exist in account {account_id}: create it first (see the EKS IRSA guide){}",
                d.irsa_role_name,
                target_hint(ctx)
            )))
        }
    };

    // The registry: no shared or nested SSM prefix, no name another deployment claims.
    let registered = crate::ctx::registry::check(ctx).await?;
    // Which IAM resources the input names are ours to write: refused before any write.
    let mut absent = Vec::new();
    if !deleting {
        absent = crate::steps::claims::check(ctx, &account_id).await?;
        // The boundary: the IRSA role, and a Grafana role that exists already, must be ours or
        // opted in (removing our grants on delete is checked where it is written).
        crate::steps::opt_in::require(ctx, &d.irsa_role_name).await?;
        crate::steps::opt_in::require(ctx, &d.grafana_role_name).await?;
        // Read-only checks that would otherwise fail a later step after writes.
        crate::steps::grafana_workspace::preflight_version(ctx).await?;
    }

    // One run at a time: taken last, so a run that fails its checks writes nothing (a plan
    // takes none: the lease's writes pass the gate).
    if let Some(execution) = &state.execution {
        crate::ctx::lease::acquire(ctx, execution).await?;
        // What was read before the lease may have changed since: read the record again.
        ctx.record_cache.forget();
    }
    // Read once the lease is held: no other apply or delete writes the record meanwhile, so "no
    // record now" means that every entry recorded from here on is this run's.
    let cfn_create = state.cloud_formation.as_ref().is_some_and(|c| c.request_type == RequestType::Create);
    // An entry of its own means the deployment exists (its record may still be under an older
    // prefix, moved by `register` below): never rolled back.
    let born = d.action == Action::Apply
        && !registered.existed()
        && ssm::get_parameter(&c.ssm, &record::parameter(ctx)).await?.is_none();
    let rollback_on_failure = cfn_create && born;
    let trust_policy_quota = match d.trust_policy_quota {
        Some(q) => q,
        None => quotas::trust_policy_quota(&c.service_quotas).await.unwrap_or(policy::TRUST_POLICY_MAX_CHARS),
    };
    let born_in = state.execution.as_deref().filter(|_| born);
    crate::ctx::registry::register(ctx, registered, born_in).await?;
    Ok(PreflightOutput {
        trust_policy_quota,
        action: d.action,
        account_id,
        region: d.region.clone(),
        partition: d.partition.clone(),
        oidc_issuer,
        oidc_provider_arn,
        irsa_role_arn,
        rollback_on_failure,
        input: None,
        nothing_recorded: false,
        note: None,
        absent,
    })
}

/// For a cross-account run: where the run looked, since the cluster, provider and role must be
/// in the target account, not the one the state machine runs in.
fn target_hint(ctx: &Ctx) -> String {
    match &ctx.deployment.target {
        Some((account, role)) => format!(
            " (the target account {account}, through role {role}: its cluster, IAM OIDC provider and IRSA role must \
             exist there)"
        ),
        None => String::new(),
    }
}

/// A delete by name of a deployment nothing records ([`crate::ctx::Preflighted::NothingRecorded`]):
/// the account (and the `accountId` guard) read with `clients`, nothing else; no lease, no
/// write. The state machine then ends the run successfully with `note`.
pub async fn nothing_recorded(
    clients: &crate::aws::Clients,
    input: &serde_json::Value,
    region: &str,
    note: String,
) -> Result<PreflightOutput> {
    let identity = clients.sts.get_caller_identity().send().await.map_err(|e| from_sdk("sts:GetCallerIdentity", e))?;
    let account_id = identity.account().unwrap_or_default().to_string();
    if let Some(expected) = input.get("accountId").and_then(serde_json::Value::as_str) {
        crate::domain::validate::account_id("accountId", expected)?;
        if expected != account_id {
            return Err(Error::Precondition(format!(
                "accountId: the input expects account {expected} but the credentials are in account {account_id}"
            )));
        }
    }
    Ok(PreflightOutput {
        action: Action::Delete,
        note: Some(format!("{note} (account {account_id})")),
        account_id,
        region: region.to_string(),
        partition: names::partition(region).to_string(),
        oidc_issuer: String::new(),
        oidc_provider_arn: String::new(),
        irsa_role_arn: String::new(),
        rollback_on_failure: false,
        trust_policy_quota: policy::TRUST_POLICY_MAX_CHARS,
        input: None,
        nothing_recorded: true,
        absent: Vec::new(),
    })
}

async fn cluster_issuer(ctx: &Ctx, cluster: &str, account_id: &str) -> Result<String> {
    let out = match ctx.clients.eks.describe_cluster().name(cluster).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
            return Err(Error::Precondition(format!(
                "cluster.name: EKS cluster {cluster:?} not found in account {account_id}, region {}{}",
                ctx.deployment.region,
                target_hint(ctx)
            )))
        }
        Err(e) => return Err(from_sdk("eks:DescribeCluster", e)),
    };
    out.cluster()
        .and_then(|c| c.identity())
        .and_then(|i| i.oidc())
        .and_then(|o| o.issuer())
        .map(|s| s.trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Precondition(format!("EKS cluster {cluster:?} has no OIDC issuer")))
}
