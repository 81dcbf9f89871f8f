//! The stack's scope: the names the functions' IAM roles may act on, as the template grants them
//! (its `*NamePattern`, `SsmPrefix` and `VendingRoleName` parameters, handed to every function
//! through `O11Y_*` environment variables). A deployment outside it would meet `AccessDenied`
//! half-way through a run; [`Scope::check`] refuses it as a `ValidationError` naming the field and
//! the parameter, before any AWS call.
//!
//! A variable that is not set leaves that name unrestricted (a binary run outside the template).

use crate::domain::error::{Error, Result};
use crate::domain::iam::doc::wildcard_match;
use crate::domain::input::{self, Deployment};
use crate::domain::names::ssm_path_overlap;
use crate::domain::validate::shown;

/// One restriction: the template parameter it comes from and the environment variable that
/// carries it to the functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `GrafanaRoleNamePattern`: `grafana.roleName`.
    GrafanaRoleName,
    /// `WritePolicyNamePattern`: `writePolicyName`.
    WritePolicyName,
    /// `ReadPolicyNamePattern`: `grafana.readPolicyName`.
    ReadPolicyName,
    /// `EksClusterNamePattern`: `cluster.name`.
    EksClusterName,
    /// `SsmPrefix`: `ssmPrefix` must be it or below it.
    SsmPrefix,
    /// `VendingRoleName`: `target.roleName` must be it.
    VendingRoleName,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 6] = [
        Limit::GrafanaRoleName,
        Limit::WritePolicyName,
        Limit::ReadPolicyName,
        Limit::EksClusterName,
        Limit::SsmPrefix,
        Limit::VendingRoleName,
    ];

    /// The environment variable (set in the template's `Globals`).
    pub fn env_var(self) -> &'static str {
        match self {
            Limit::GrafanaRoleName => "O11Y_GRAFANA_ROLE_NAME_PATTERN",
            Limit::WritePolicyName => "O11Y_WRITE_POLICY_NAME_PATTERN",
            Limit::ReadPolicyName => "O11Y_READ_POLICY_NAME_PATTERN",
            Limit::EksClusterName => "O11Y_EKS_CLUSTER_NAME_PATTERN",
            Limit::SsmPrefix => "O11Y_SSM_PREFIX",
            Limit::VendingRoleName => "O11Y_VENDING_ROLE_NAME",
        }
    }

    /// The input field it limits and that field's value in `d` (`None`: not set, nothing to check).
    fn field_of(self, d: &Deployment) -> Option<(&'static str, &str)> {
        match self {
            Limit::GrafanaRoleName => Some(("grafana.roleName", &d.grafana_role_name)),
            Limit::WritePolicyName => Some(("writePolicyName", &d.write_policy_name)),
            Limit::ReadPolicyName => Some(("grafana.readPolicyName", &d.grafana_read_policy_name)),
            Limit::EksClusterName => d.cluster_name.as_deref().map(|n| ("cluster.name", n)),
            Limit::SsmPrefix => Some(("ssmPrefix", &d.ssm_prefix)),
            Limit::VendingRoleName => d.target.as_ref().map(|(_, role)| ("target.roleName", role.as_str())),
        }
    }

    /// Whether the parameter's `value` admits `name`, as the template's IAM resources do.
    fn admits(self, value: &str, name: &str) -> bool {
        match self {
            Limit::SsmPrefix => matches!(ssm_path_overlap(name, value), Some("equals" | "is inside")),
            Limit::VendingRoleName => name == value,
            _ => wildcard_match(value, name),
        }
    }

    /// The rule [`Limit::admits`] applies, for the error message.
    fn rule(self, value: &str) -> String {
        match self {
            Limit::SsmPrefix => format!("must be {value:?} or below it"),
            Limit::VendingRoleName => format!("must be {value:?}"),
            _ => format!("must match {value:?}"),
        }
    }

    /// The template parameter.
    pub fn parameter(self) -> &'static str {
        match self {
            Limit::GrafanaRoleName => "GrafanaRoleNamePattern",
            Limit::WritePolicyName => "WritePolicyNamePattern",
            Limit::ReadPolicyName => "ReadPolicyNamePattern",
            Limit::EksClusterName => "EksClusterNamePattern",
            Limit::SsmPrefix => "SsmPrefix",
            Limit::VendingRoleName => "VendingRoleName",
        }
    }
}

/// The limits in force (`None`: unrestricted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    values: Vec<(Limit, String)>,
}

impl Scope {
    /// The limits set in this process's environment (empty values count as unset).
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The limits `lookup` gives for each [`Limit::env_var`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let values =
            Limit::ALL.iter().filter_map(|l| lookup(l.env_var()).filter(|v| !v.is_empty()).map(|v| (*l, v))).collect();
        Self { values }
    }

    /// The value of `limit`, if set.
    pub fn get(&self, limit: Limit) -> Option<&str> {
        self.values.iter().find(|(l, _)| *l == limit).map(|(_, v)| v.as_str())
    }

    /// `Ok` when the functions' roles may act on every name of `d`; else a `ValidationError`
    /// naming the field, the value and the template parameter.
    pub fn check(&self, d: &Deployment) -> Result<()> {
        for (limit, value) in &self.values {
            let Some((field, name)) = limit.field_of(d) else { continue };
            if limit.admits(value, name) {
                continue;
            }
            return Err(Error::validation(
                field,
                format!(
                    "{}, this stack's {} parameter: its functions' IAM roles may act on nothing else (got {})",
                    limit.rule(value),
                    limit.parameter(),
                    shown(name)
                ),
            ));
        }
        Ok(())
    }
}

/// [`input::resolve`], then [`Scope::check`] against this process's scope: what every entry to the
/// workflow validates an input with.
pub fn resolve(value: &serde_json::Value, default_region: Option<&str>) -> Result<Deployment> {
    let d = input::resolve(value, default_region)?;
    Scope::from_env().check(&d)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(extra: serde_json::Value) -> Deployment {
        let mut v = json!({"deploymentName": "dr-prod", "region": "us-east-1", "cluster": {"name": "core"},
                           "namespace": "obs", "irsaRoleName": "core-irsa"});
        for (k, x) in extra.as_object().into_iter().flatten() {
            v[k] = x.clone();
        }
        input::resolve(&v, None).expect("valid input")
    }

    fn template_defaults() -> Scope {
        Scope::from_lookup(|name| {
            let v = match name {
                "O11Y_GRAFANA_ROLE_NAME_PATTERN" => "*-grafana",
                "O11Y_WRITE_POLICY_NAME_PATTERN" => "*-observability-write",
                "O11Y_READ_POLICY_NAME_PATTERN" => "*-grafana-amp-read",
                "O11Y_EKS_CLUSTER_NAME_PATTERN" => "*",
                "O11Y_SSM_PREFIX" => "/o11y",
                "O11Y_VENDING_ROLE_NAME" => "AWSControlTowerExecution",
                _ => return None,
            };
            Some(v.to_string())
        })
    }

    fn refused(scope: &Scope, d: &Deployment) -> (String, String) {
        match scope.check(d) {
            Err(Error::Validation { field, rule }) => (field, rule),
            other => panic!("expected a ValidationError, got {other:?}"),
        }
    }

    #[test]
    fn the_default_names_are_inside_the_template_defaults() {
        assert!(template_defaults().check(&deployment(json!({}))).is_ok());
        let target = deployment(json!({"target": {"accountId": "222233334444"}}));
        assert!(template_defaults().check(&target).is_ok());
    }

    #[test]
    fn a_name_outside_its_pattern_names_the_field_and_the_parameter() {
        let scope = template_defaults();
        for (input, field, param) in [
            (json!({"writePolicyName": "team-x-write"}), "writePolicyName", "WritePolicyNamePattern"),
            (json!({"grafana": {"roleName": "dr-prod-grafana-2"}}), "grafana.roleName", "GrafanaRoleNamePattern"),
            (json!({"grafana": {"readPolicyName": "dr-read"}}), "grafana.readPolicyName", "ReadPolicyNamePattern"),
            (json!({"ssmPrefix": "/o11yx/dr"}), "ssmPrefix", "SsmPrefix"),
            (
                json!({"target": {"accountId": "222233334444", "roleName": "Admin"}}),
                "target.roleName",
                "VendingRoleName",
            ),
        ] {
            let (f, rule) = refused(&scope, &deployment(input));
            assert_eq!(f, field);
            assert!(rule.contains(param), "{rule}");
        }
    }

    #[test]
    fn ssm_prefix_is_the_root_or_below_it() {
        let scope = Scope::from_lookup(|n| (n == "O11Y_SSM_PREFIX").then(|| "/o11y/".to_string()));
        assert!(scope.check(&deployment(json!({"ssmPrefix": "/o11y"}))).is_ok());
        assert!(scope.check(&deployment(json!({"ssmPrefix": "/o11y/a/b"}))).is_ok());
        assert!(scope.check(&deployment(json!({"ssmPrefix": "/o11y-other"}))).is_err());
    }

    #[test]
    fn patterns_match_like_iam_resources_and_unset_means_unrestricted() {
        let scope = Scope::from_lookup(|n| (n == "O11Y_EKS_CLUSTER_NAME_PATTERN").then(|| "prod-?".to_string()));
        assert!(scope.check(&deployment(json!({"cluster": {"name": "prod-1"}}))).is_ok());
        assert!(scope.check(&deployment(json!({"cluster": {"name": "Prod-1"}}))).is_err(), "case-sensitive");
        assert!(scope.check(&deployment(json!({"cluster": {"name": "prod-12"}}))).is_err());
        let unset = Scope::from_lookup(|_| Some(String::new()));
        assert_eq!(unset, Scope::default());
        assert!(unset.check(&deployment(json!({"writePolicyName": "anything"}))).is_ok());
    }
}
