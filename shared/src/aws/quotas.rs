//! Service Quotas: the account's IAM "Role trust policy length" quota, so that the trust merge
//! checks against the account's real limit rather than the 2,048-character default.

use crate::aws::sdk::from_sdk;

/// Service code of IAM in Service Quotas.
pub const IAM_SERVICE_CODE: &str = "iam";
/// Quota code of "Role trust policy length".
pub const TRUST_POLICY_LENGTH_QUOTA_CODE: &str = "L-C07B4B0D";

/// The account's applied trust-policy length quota, `None` when Service Quotas has no applied
/// value (`NoSuchResourceException`), the call is denied or unsupported, or fails otherwise: a
/// quota we cannot read never fails the run (the caller falls back to the default).
pub async fn trust_policy_quota(client: &aws_sdk_servicequotas::Client) -> Option<usize> {
    let out = client
        .get_service_quota()
        .service_code(IAM_SERVICE_CODE)
        .quota_code(TRUST_POLICY_LENGTH_QUOTA_CODE)
        .send()
        .await;
    match out {
        Ok(out) => out.quota().and_then(|q| q.value()).and_then(quota_chars),
        Err(e) => {
            let err = from_sdk("servicequotas:GetServiceQuota", e);
            tracing::info!(error = %err, "trust policy length quota not readable: using the default");
            None
        }
    }
}

/// A quota value (Service Quotas answers a double) as a character count, when it is a sensible one.
pub fn quota_chars(value: f64) -> Option<usize> {
    (1.0..=1_000_000.0).contains(&value).then_some(value as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_values_are_character_counts() {
        assert_eq!(quota_chars(2048.0), Some(2048));
        assert_eq!(quota_chars(4096.0), Some(4096));
        assert_eq!(quota_chars(0.0), None);
        assert_eq!(quota_chars(f64::NAN), None);
    }
}
