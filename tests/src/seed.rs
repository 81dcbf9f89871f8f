//! Seeds the local stack with what a user has before running the workflow: an EKS cluster, its
//! IAM OIDC provider, and an IRSA role whose trust (eksctl's shape) admits one service account.

use o11y_shared::aws::Clients;
use serde_json::{json, Value};

/// What was seeded.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub cluster_name: String,
    pub oidc_issuer: String,
    pub oidc_provider_arn: String,
    pub irsa_role_name: String,
    pub irsa_role_arn: String,
    pub original_trust: Value,
}

/// eksctl's IRSA trust shape for one service account.
pub fn eksctl_trust(provider_arn: &str, issuer_host_path: &str, namespace: &str, sa: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{issuer_host_path}:sub"): format!("system:serviceaccount:{namespace}:{sa}"),
                format!("{issuer_host_path}:aud"): "sts.amazonaws.com"
            }}
        }]
    })
}

/// Creates the cluster (moto assigns its OIDC issuer), the OIDC provider and the IRSA role.
pub async fn seed(clients: &Clients, cluster_name: &str, irsa_role_name: &str, namespace: &str) -> Seeded {
    let cluster = clients
        .eks
        .create_cluster()
        .name(cluster_name)
        .role_arn(format!("arn:aws:iam::{}:role/eks-cluster", crate::ACCOUNT_ID))
        .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().subnet_ids("subnet-1").build())
        .send()
        .await
        .expect("create cluster");
    let issuer = cluster
        .cluster()
        .and_then(|c| c.identity())
        .and_then(|i| i.oidc())
        .and_then(|o| o.issuer())
        .expect("moto gives the cluster an OIDC issuer")
        .to_string();
    seed_with_issuer(clients, cluster_name, &issuer, irsa_role_name, namespace).await
}

/// Creates the IAM OIDC provider for `issuer` (audience `sts.amazonaws.com`); returns its ARN.
pub async fn oidc_provider(clients: &Clients, issuer: &str) -> String {
    let provider = clients
        .iam
        .create_open_id_connect_provider()
        .url(issuer)
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
        .expect("create OIDC provider");
    provider.open_id_connect_provider_arn().expect("provider arn").to_string()
}

/// The tag by which a role's owners opt it in (`o11y-provisioner:irsa` = `true`).
pub fn opt_in_tag() -> aws_sdk_iam::types::Tag {
    aws_sdk_iam::types::Tag::builder()
        .key(o11y_shared::names::OPT_IN_TAG)
        .value(o11y_shared::names::OPT_IN_VALUE)
        .build()
        .expect("a tag")
}

/// Creates the OIDC provider for `issuer` and the IRSA role, opted in (no EKS cluster).
pub async fn seed_with_issuer(
    clients: &Clients,
    cluster_name: &str,
    issuer: &str,
    irsa_role_name: &str,
    namespace: &str,
) -> Seeded {
    let provider_arn = oidc_provider(clients, issuer).await;
    let host_path = issuer.trim_start_matches("https://").trim_end_matches('/');
    let trust = eksctl_trust(&provider_arn, host_path, namespace, "app");
    let role = clients
        .iam
        .create_role()
        .role_name(irsa_role_name)
        .assume_role_policy_document(trust.to_string())
        // The cluster's owners opt the role in (README's quick start does the same).
        .tags(opt_in_tag())
        .send()
        .await
        .expect("create IRSA role");
    Seeded {
        cluster_name: cluster_name.to_string(),
        oidc_issuer: issuer.to_string(),
        oidc_provider_arn: provider_arn,
        irsa_role_name: irsa_role_name.to_string(),
        irsa_role_arn: role.role().map(|r| r.arn().to_string()).unwrap_or_default(),
        original_trust: trust,
    }
}

/// Writes the organisation's vending defaults (`/o11y/vending-defaults`, the parameter
/// `vending-hook` reads on the local stack) in the hub account.
pub async fn vending_defaults(hub: &Clients, defaults: &Value) {
    hub.ssm
        .put_parameter()
        .name("/o11y/vending-defaults")
        .value(defaults.to_string())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .expect("put the vending defaults");
}

/// A vended account as Control Tower leaves it: the role `AWSControlTowerExecution`, trusted by
/// the hub (management) account `hub_account` and granted everything (Control Tower attaches
/// `AdministratorAccess`; moto does not load AWS managed policies, so it is inline here). Returns
/// the harness's clients in `account`.
pub async fn vended_account(hub: &Clients, hub_account: &str, account: &str) -> Clients {
    let role = o11y_shared::domain::input::DEFAULT_TARGET_ROLE;
    // The harness's own calls are not authorized: it assumes the role before creating it.
    let target = hub.assume(&format!("arn:aws:iam::{account}:role/{role}"), "test-seed").await.expect("assume");
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{hub_account}:root")}, "Action": "sts:AssumeRole"}]});
    target.iam.create_role().role_name(role).assume_role_policy_document(trust.to_string()).send().await.expect("role");
    let admin = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    target
        .iam
        .put_role_policy()
        .role_name(role)
        .policy_name("AdministratorAccess")
        .policy_document(admin.to_string())
        .send()
        .await
        .expect("admin policy");
    target
}
