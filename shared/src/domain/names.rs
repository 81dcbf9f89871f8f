//! ARNs, ownership tags and deterministic client tokens.

use sha2::{Digest, Sha256};

/// Tag key marking what o11y-provisioner created; its value is the deployment name.
pub const OWNER_TAG: &str = "o11y-provisioner:deployment";
/// Tag key with a fixed value, so that our resources can be listed.
pub const MANAGED_BY_TAG: &str = "o11y-provisioner:managed-by";
/// Value of [`MANAGED_BY_TAG`].
pub const MANAGED_BY_VALUE: &str = "o11y-provisioner";

/// The AWS partition of a region.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `arn:<p>:iam::<account>:role/<name>` (roles created at path `/`).
pub fn role_arn(partition: &str, account: &str, name: &str) -> String {
    format!("arn:{partition}:iam::{account}:role/{name}")
}

/// `arn:<p>:iam::<account>:policy/<name>` (policies created at path `/`).
pub fn policy_arn(partition: &str, account: &str, name: &str) -> String {
    format!("arn:{partition}:iam::{account}:policy/{name}")
}

/// `arn:<p>:iam::<account>:oidc-provider/<issuer host and path>`.
pub fn oidc_provider_arn(partition: &str, account: &str, issuer_host_path: &str) -> String {
    format!("arn:{partition}:iam::{account}:oidc-provider/{issuer_host_path}")
}

/// The issuer URL without its scheme: the form IAM uses in provider ARNs and condition keys.
pub fn issuer_host_path(issuer: &str) -> &str {
    issuer.strip_prefix("https://").unwrap_or(issuer).trim_end_matches('/')
}

/// A deterministic idempotency token (`[!-~]{1,64}`) for creating `kind` for `scope` (the
/// deployment and its run: `ctx::token_scope`) in an account and region: a retried Lambda sends
/// the same token, so AWS returns the same resource.
pub fn client_token(kind: &str, account: &str, region: &str, scope: &str) -> String {
    let digest = Sha256::digest(format!("o11y-provisioner/{kind}/{account}/{region}/{scope}").as_bytes());
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("o11y-{hex}")
}

/// The name in an IAM ARN (`arn:<p>:iam::<account>:<role|policy>/<path/>name`).
pub fn iam_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// How every deployment's own trust statement `Sid` starts ([`trust_statement_sid`]).
pub const TRUST_SID_PREFIX: &str = "O11yProvisionerIrsa";

/// The `Sid` of the IRSA trust statement we add for a deployment (IAM Sids are alphanumeric).
pub fn trust_statement_sid(deployment: &str) -> String {
    let digest = Sha256::digest(format!("o11y-provisioner/irsa/{deployment}").as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{TRUST_SID_PREFIX}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_token_is_stable_and_valid() {
        let a = client_token("amp", "123456789012", "us-east-1", "dr-prod");
        assert_eq!(a, client_token("amp", "123456789012", "us-east-1", "dr-prod"));
        assert_ne!(a, client_token("amp", "123456789012", "us-east-2", "dr-prod"));
        assert_ne!(a, client_token("grafana", "123456789012", "us-east-1", "dr-prod"));
        assert!(a.len() <= 64 && a.chars().all(|c| ('!'..='~').contains(&c)));
    }

    #[test]
    fn sid_is_alphanumeric() {
        let s = trust_statement_sid("dr-prod");
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
        assert_ne!(s, trust_statement_sid("drprod"));
    }

    #[test]
    fn partitions_and_arns() {
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition("eu-west-1"), "aws");
        assert_eq!(
            issuer_host_path("https://oidc.eks.us-east-1.amazonaws.com/id/AB/"),
            "oidc.eks.us-east-1.amazonaws.com/id/AB"
        );
        assert_eq!(
            oidc_provider_arn("aws", "1", "oidc.eks.us-east-1.amazonaws.com/id/AB"),
            "arn:aws:iam::1:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/AB"
        );
    }
}
