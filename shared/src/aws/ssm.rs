//! SSM Parameter Store: parameter names under a prefix, the tier a value needs, and the reads
//! and writes every layer above shares (the published values, the record, the lease).

use std::collections::HashMap;

use aws_sdk_ssm::types::{ParameterStringFilter, ParameterTier, ParameterType, Tag};

use crate::aws::sdk::from_sdk;
use crate::domain::error::{Error, Result};

/// Standard-tier value limit (bytes).
pub const STANDARD_MAX_BYTES: usize = 4096;
/// Advanced-tier value limit (bytes).
pub const ADVANCED_MAX_BYTES: usize = 8192;
/// `GetParameters` takes at most this many names.
pub const GET_BATCH: usize = 10;

/// The tier a value needs, or `LimitExceededError` when even Advanced is too small.
pub fn tier_for(name: &str, value: &str) -> Result<ParameterTier> {
    match value.len() {
        n if n <= STANDARD_MAX_BYTES => Ok(ParameterTier::Standard),
        n if n <= ADVANCED_MAX_BYTES => Ok(ParameterTier::Advanced),
        n => Err(Error::LimitExceeded(format!(
            "SSM parameter {name}: value is {n} bytes, over the {ADVANCED_MAX_BYTES}-byte Advanced-tier limit"
        ))),
    }
}

/// `<prefix>/<leaf>`.
pub fn parameter_name(prefix: &str, leaf: &str) -> String {
    format!("{}/{leaf}", prefix.trim_end_matches('/'))
}

/// One parameter's value, `None` when it does not exist.
pub async fn get_parameter(ssm: &aws_sdk_ssm::Client, name: &str) -> Result<Option<String>> {
    match ssm.get_parameter().name(name).send().await {
        Ok(out) => Ok(Some(out.parameter().and_then(|p| p.value()).unwrap_or_default().to_string())),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(None),
        Err(e) => Err(from_sdk("ssm:GetParameter", e)),
    }
}

/// Current values of the parameters that exist.
pub async fn current_values(ssm: &aws_sdk_ssm::Client, names: &[String]) -> Result<HashMap<String, String>> {
    let mut values = HashMap::new();
    for batch in names.chunks(GET_BATCH) {
        let out = ssm
            .get_parameters()
            .set_names(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| from_sdk("ssm:GetParameters", e))?;
        for p in out.parameters() {
            if let (Some(n), Some(v)) = (p.name(), p.value()) {
                values.insert(n.to_string(), v.to_string());
            }
        }
    }
    Ok(values)
}

/// Writes one String parameter: created with `tags` and `description`, or overwritten (SSM
/// refuses tags together with overwrite). `exists` is a hint; a parameter created meanwhile is
/// overwritten.
pub async fn put_parameter(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
    value: &str,
    exists: bool,
    tags: &[(String, String)],
    description: &str,
) -> Result<()> {
    let tier = tier_for(name, value)?;
    if !exists {
        let tags = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| Error::Internal(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let created = ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(ParameterType::String)
            .tier(tier.clone())
            .description(description)
            .set_tags(Some(tags))
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::info!(parameter = %name, "SSM parameter created");
                return Ok(());
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_already_exists()) => {}
            Err(e) => return Err(from_sdk("ssm:PutParameter", e)),
        }
    }
    let overwrite = |tier: ParameterTier| {
        ssm.put_parameter().name(name).value(value).r#type(ParameterType::String).tier(tier).overwrite(true).send()
    };
    match overwrite(tier.clone()).await {
        Ok(_) => {}
        // SSM refuses to turn an Advanced parameter back into a Standard one: once Advanced, a
        // parameter stays Advanced even when its new value would fit Standard. Its tier is read
        // only then (`DescribeParameters`), not before every overwrite.
        Err(e)
            if tier == ParameterTier::Standard
                && e.raw_response().is_some_and(|r| r.status().as_u16() == 400)
                && live_tier(ssm, name).await? == Some(ParameterTier::Advanced) =>
        {
            overwrite(ParameterTier::Advanced).await.map_err(|e| from_sdk("ssm:PutParameter", e))?;
        }
        Err(e) => return Err(from_sdk("ssm:PutParameter", e)),
    }
    tracing::info!(parameter = %name, "SSM parameter updated");
    Ok(())
}

/// The tier of the parameter `name` (`DescribeParameters`: `GetParameter` does not say), `None`
/// when it does not exist.
pub async fn live_tier(ssm: &aws_sdk_ssm::Client, name: &str) -> Result<Option<ParameterTier>> {
    let filter = ParameterStringFilter::builder()
        .key("Name")
        .option("Equals")
        .values(name)
        .build()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let out = ssm
        .describe_parameters()
        .parameter_filters(filter)
        .send()
        .await
        .map_err(|e| from_sdk("ssm:DescribeParameters", e))?;
    Ok(out.parameters().iter().find(|p| p.name() == Some(name)).and_then(|p| p.tier().cloned()))
}

/// Deletes parameters (at most [`GET_BATCH`] names a call).
pub async fn delete_parameters(ssm: &aws_sdk_ssm::Client, names: Vec<String>) -> Result<()> {
    ssm.delete_parameters().set_names(Some(names)).send().await.map_err(|e| from_sdk("ssm:DeleteParameters", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_ssm_limits() {
        assert_eq!(tier_for("p", &"x".repeat(4096)).unwrap(), ParameterTier::Standard);
        assert_eq!(tier_for("p", &"x".repeat(4097)).unwrap(), ParameterTier::Advanced);
        assert_eq!(tier_for("p", &"x".repeat(8192)).unwrap(), ParameterTier::Advanced);
        let err = tier_for("/o11y/x/helm-values", &"x".repeat(8193)).unwrap_err();
        assert_eq!(err.name(), "LimitExceededError");
        assert!(err.to_string().contains("/o11y/x/helm-values"));
    }

    #[test]
    fn parameter_names_join_cleanly() {
        assert_eq!(parameter_name("/o11y/dr-prod", "helm-values"), "/o11y/dr-prod/helm-values");
        assert_eq!(parameter_name("/o11y/dr-prod/", "x"), "/o11y/dr-prod/x");
    }
}
