//! ARNs, ownership tags, deterministic client tokens, and the default IAM names and trust
//! statement `Sid` of a deployment: both derive from its name **and** its region, so that the
//! same `deploymentName` in two regions of one account owns distinct IAM resources and holds its
//! own trust statement.

use sha2::{Digest, Sha256};

/// Tag key marking what o11y-provisioner created; its value is the deployment name.
pub const OWNER_TAG: &str = "o11y-provisioner:deployment";
/// Tag key with a fixed value, so that our resources can be listed.
pub const MANAGED_BY_TAG: &str = "o11y-provisioner:managed-by";
/// Value of [`MANAGED_BY_TAG`].
pub const MANAGED_BY_VALUE: &str = "o11y-provisioner";
/// Tag key on the IAM resources we create (IAM is global): the region of the deployment that
/// created it. IAM resources of ours without it (created before it existed) count as the region's
/// that looks at them.
pub const REGION_TAG: &str = "o11y-provisioner:region";

/// Tag key by which a role's owners opt it in: only a role tagged [`OPT_IN_TAG`] =
/// [`OPT_IN_VALUE`] (or one this deployment created) is given trust or attachments by us.
pub const OPT_IN_TAG: &str = "o11y-provisioner:irsa";
/// Value of [`OPT_IN_TAG`] that opts a role in (exactly this; any other value does not).
pub const OPT_IN_VALUE: &str = "true";
/// The IAM path of service-linked roles: never edited, whatever their tags say.
pub const SERVICE_LINKED_PATH: &str = "/aws-service-role/";

/// Who a resource's tags say created it: a deployment, in a region when the tags name one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedOwner {
    /// The value of [`OWNER_TAG`].
    pub deployment: String,
    /// The value of [`REGION_TAG`]; `None` on resources tagged before it existed.
    pub region: Option<String>,
}

impl TaggedOwner {
    /// The owner that `tags` name, if any ([`OWNER_TAG`], with [`REGION_TAG`] when present).
    pub fn from_tags<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let (mut deployment, mut region) = (None, None);
        for (k, v) in tags {
            if k == OWNER_TAG {
                deployment = Some(v.to_string());
            } else if k == REGION_TAG {
                region = Some(v.to_string());
            }
        }
        deployment.map(|deployment| Self { deployment, region })
    }

    /// True when this owner is `deployment` in `region` (no region tag: any region's).
    pub fn is(&self, deployment: &str, region: &str) -> bool {
        self.deployment == deployment && self.region.as_deref().is_none_or(|r| r == region)
    }

    /// "deployment dr-prod in region us-east-1" (or without the region when untagged).
    pub fn describe(&self) -> String {
        match &self.region {
            Some(r) => format!("deployment {} in region {r}", self.deployment),
            None => format!("deployment {}", self.deployment),
        }
    }
}

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

/// The `Sid` of the IRSA trust statement we add for a deployment in a region (IAM Sids are
/// alphanumeric). The role is in one account, so the account needs no part in it.
pub fn trust_statement_sid(deployment: &str, region: &str) -> String {
    sid_of(&format!("o11y-provisioner/irsa/{deployment}/{region}"))
}

/// The `Sid` earlier versions gave a deployment's statement, from its name only (the same in
/// every region). A statement recorded with it is replaced by [`trust_statement_sid`]'s on the
/// next apply; nothing looks for this Sid in a live policy.
pub fn legacy_trust_statement_sid(deployment: &str) -> String {
    sid_of(&format!("o11y-provisioner/irsa/{deployment}"))
}

fn sid_of(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{TRUST_SID_PREFIX}{hex}")
}

/// Default `writePolicyName`: `<d>-<region>-observability-write`.
pub fn default_write_policy_name(deployment: &str, region: &str) -> String {
    format!("{deployment}-{region}-observability-write")
}

/// Default `grafana.roleName`: `<d>-<region>-grafana` (at most 40 + 1 + 14 + 8 = 63 characters
/// for the longest deployment and region names, under IAM's 64).
pub fn default_grafana_role_name(deployment: &str, region: &str) -> String {
    format!("{deployment}-{region}-grafana")
}

/// Default `grafana.readPolicyName`: `<d>-<region>-grafana-amp-read`.
pub fn default_read_policy_name(deployment: &str, region: &str) -> String {
    format!("{deployment}-{region}-grafana-amp-read")
}

/// How `a` relates to `b` as SSM paths (whole segments): `Some("equals" | "contains" | "is
/// inside")`, `None` when they are disjoint.
pub fn ssm_path_overlap(a: &str, b: &str) -> Option<&'static str> {
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    if a == b {
        Some("equals")
    } else if b.starts_with(&format!("{a}/")) {
        Some("contains")
    } else if a.starts_with(&format!("{b}/")) {
        Some("is inside")
    } else {
        None
    }
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
    fn sid_is_alphanumeric_and_distinct_per_deployment_and_region() {
        let s = trust_statement_sid("dr-prod", "us-east-1");
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
        assert!(s.len() <= 100, "{s}");
        assert_ne!(s, trust_statement_sid("drprod", "us-east-1"));
        assert_ne!(s, trust_statement_sid("dr-prod", "us-east-2"));
        assert_ne!(s, legacy_trust_statement_sid("dr-prod"));
        assert!(legacy_trust_statement_sid("dr-prod").starts_with(TRUST_SID_PREFIX));
        let mut all: Vec<String> =
            crate::domain::validate::AWS_REGIONS.iter().map(|r| trust_statement_sid("dr-prod", r)).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), crate::domain::validate::AWS_REGIONS.len(), "one Sid per region");
    }

    #[test]
    fn default_iam_names_fit_for_the_longest_deployment_and_region_names() {
        use crate::domain::validate::{iam_policy_name, iam_role_name, AWS_REGIONS, DEPLOYMENT_NAME_MAX};
        let d = format!("a{}", "b".repeat(DEPLOYMENT_NAME_MAX - 1));
        assert_eq!(d.len(), 40);
        let longest = AWS_REGIONS.iter().map(|r| r.len()).max().unwrap_or_default();
        assert!(longest >= 14, "ap-southeast-1 and the like");
        for region in AWS_REGIONS {
            let role = default_grafana_role_name(&d, region);
            assert!(role.len() <= 64, "{role}: {} characters", role.len());
            iam_role_name("grafana.roleName", &role).expect("a valid role name");
            for policy in [default_write_policy_name(&d, region), default_read_policy_name(&d, region)] {
                assert!(policy.len() <= 128, "{policy}");
                iam_policy_name("writePolicyName", &policy).expect("a valid policy name");
            }
        }
        // the template's name patterns (`*-grafana`, `*-observability-write`, `*-grafana-amp-read`)
        assert!(default_grafana_role_name("dr-prod", "us-east-1").ends_with("-grafana"));
        assert!(default_write_policy_name("dr-prod", "us-east-1").ends_with("-observability-write"));
        assert!(default_read_policy_name("dr-prod", "us-east-1").ends_with("-grafana-amp-read"));
        // two regions of one deployment never share a name
        assert_ne!(
            default_grafana_role_name("dr-prod", "us-east-1"),
            default_grafana_role_name("dr-prod", "us-west-2")
        );
    }

    #[test]
    fn every_region_resolves_the_longest_deployment_name() {
        let d = format!("a{}", "b".repeat(crate::domain::validate::DEPLOYMENT_NAME_MAX - 1));
        for region in crate::domain::validate::AWS_REGIONS {
            let input = serde_json::json!({"deploymentName": d, "region": region, "cluster": {"name": "c"},
                                           "namespace": "ns", "irsaRoleName": "irsa"});
            let resolved = crate::domain::input::resolve(&input, None).expect("resolves");
            assert_eq!(resolved.grafana_role_name, format!("{d}-{region}-grafana"));
            assert_eq!(resolved.write_policy_name, format!("{d}-{region}-observability-write"));
            assert_eq!(resolved.grafana_read_policy_name, format!("{d}-{region}-grafana-amp-read"));
        }
    }

    #[test]
    fn tagged_owner_counts_untagged_regions_as_any() {
        let old = TaggedOwner::from_tags([(OWNER_TAG, "dr-prod"), (MANAGED_BY_TAG, MANAGED_BY_VALUE)]).unwrap();
        assert!(old.is("dr-prod", "us-east-1") && old.is("dr-prod", "eu-west-1"));
        assert!(!old.is("dr-prod-2", "us-east-1"));
        let new = TaggedOwner::from_tags([(REGION_TAG, "us-east-1"), (OWNER_TAG, "dr-prod")]).unwrap();
        assert!(new.is("dr-prod", "us-east-1") && !new.is("dr-prod", "us-west-2"));
        assert_eq!(new.describe(), "deployment dr-prod in region us-east-1");
        assert!(TaggedOwner::from_tags([("team", "x")]).is_none());
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
