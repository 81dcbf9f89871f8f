//! The account-vending hook: Control Tower lifecycle events (`CreateManagedAccount`,
//! `UpdateManagedAccount`, only when SUCCEEDED) and a plain JSON request
//! (`{"accountId": ..., "region": ..., <input overrides>}`, for Account Factory for Terraform and
//! home-grown vending). The request is merged over the organisation's defaults, one JSON object
//! in the SSM parameter named by `O11Y_VENDING_DEFAULTS_PARAMETER` (default
//! `/o11y/vending-defaults`): a partial input contract whose strings may use `{accountId}` and
//! `{accountName}`. The execution provisions the new account through `target` (the role in
//! `target.roleName`, default `AWSControlTowerExecution`), and is named after the event, so a
//! second delivery of the same event starts nothing new.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::aws::sdk::from_sdk;
use crate::aws::sfn;
use crate::aws::Clients;
use crate::domain::error::{Error, Result};
use crate::domain::scope;

/// Default name of the organisation-defaults parameter.
pub const DEFAULTS_PARAMETER: &str = "/o11y/vending-defaults";

/// A vending request, whatever its source.
#[derive(Debug, Clone, PartialEq)]
pub struct VendingRequest {
    pub account_id: String,
    pub account_name: String,
    pub region: Option<String>,
    pub overrides: Map<String, Value>,
    /// What makes a delivery the same one again (event id, or the payload).
    pub dedupe: String,
}

/// What the hook did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VendingOutcome {
    /// `started`, `already-started` or `ignored`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn ignored(reason: String) -> VendingOutcome {
    tracing::info!(reason = %reason, "vending event ignored");
    VendingOutcome { outcome: "ignored".into(), account_id: None, execution_name: None, reason: Some(reason) }
}

/// Reads an event: `Ok(None)` for a Control Tower event that is not a success.
pub fn parse(event: &Value) -> Result<std::result::Result<VendingRequest, String>> {
    if event.get("source").and_then(Value::as_str) == Some("aws.controltower") {
        let detail = &event["detail"];
        let name = detail["eventName"].as_str().unwrap_or_default();
        let status = match name {
            "CreateManagedAccount" => &detail["serviceEventDetails"]["createManagedAccountStatus"],
            "UpdateManagedAccount" => &detail["serviceEventDetails"]["updateManagedAccountStatus"],
            other => return Ok(Err(format!("Control Tower event {other:?} is not an account lifecycle event"))),
        };
        let state = status["state"].as_str().unwrap_or_default();
        if state != "SUCCEEDED" {
            return Ok(Err(format!("{name} is {state:?}, not SUCCEEDED")));
        }
        let account_id = status["account"]["accountId"].as_str().unwrap_or_default().to_string();
        crate::domain::validate::account_id("detail.serviceEventDetails.*.account.accountId", &account_id)?;
        return Ok(Ok(VendingRequest {
            account_name: status["account"]["accountName"].as_str().unwrap_or_default().to_string(),
            account_id,
            region: None,
            overrides: Map::new(),
            dedupe: event["id"].as_str().map(str::to_string).unwrap_or_else(|| event.to_string()),
        }));
    }
    let Some(obj) = event.as_object() else {
        return Err(Error::validation("(event)", "must be a Control Tower event or a JSON object with accountId"));
    };
    let account_id = match obj.get("accountId") {
        Some(Value::String(a)) => a.clone(),
        Some(_) => return Err(Error::validation("accountId", "must be a string of 12 digits")),
        None => return Err(Error::validation("accountId", "is required")),
    };
    crate::domain::validate::account_id("accountId", &account_id)?;
    let mut overrides = obj.clone();
    overrides.remove("accountId");
    let region = match overrides.remove("region") {
        Some(Value::String(r)) => Some(r),
        Some(_) => return Err(Error::validation("region", "must be a string")),
        None => None,
    };
    let account_name = match overrides.remove("accountName") {
        Some(Value::String(n)) => n,
        _ => String::new(),
    };
    let dedupe = match overrides.remove("requestId") {
        Some(Value::String(id)) => id,
        _ => event.to_string(),
    };
    Ok(Ok(VendingRequest { account_id, account_name, region, overrides, dedupe }))
}

/// `base` with `over` merged in (objects recursively; anything else replaced).
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn fill(v: &mut Value, account_id: &str, account_name: &str) {
    match v {
        Value::String(s) => *s = s.replace("{accountId}", account_id).replace("{accountName}", account_name),
        Value::Array(a) => a.iter_mut().for_each(|x| fill(x, account_id, account_name)),
        Value::Object(o) => o.values_mut().for_each(|x| fill(x, account_id, account_name)),
        _ => {}
    }
}

/// The execution input for a request: defaults, then the request's overrides, then the target.
pub fn build_input(defaults: &Value, req: &VendingRequest) -> Value {
    let mut input = if defaults.is_object() { defaults.clone() } else { json!({}) };
    merge(&mut input, &Value::Object(req.overrides.clone()));
    fill(&mut input, &req.account_id, &req.account_name);
    let role = input["target"]["roleName"].as_str().map(str::to_string);
    input["target"] = json!({ "accountId": req.account_id });
    if let Some(role) = role {
        input["target"]["roleName"] = json!(role);
    }
    if let Some(r) = &req.region {
        input["region"] = json!(r);
    }
    if input.get("deploymentName").is_none() {
        input["deploymentName"] = json!(format!("o11y-{}", req.account_id));
    }
    input
}

async fn defaults(clients: &Clients) -> Result<Value> {
    let name = std::env::var("O11Y_VENDING_DEFAULTS_PARAMETER").unwrap_or_else(|_| DEFAULTS_PARAMETER.to_string());
    match clients.ssm.get_parameter().name(&name).send().await {
        Ok(out) => {
            let text = out.parameter().and_then(|p| p.value()).unwrap_or("{}");
            serde_json::from_str(text).map_err(|e| Error::validation(name, format!("must hold a JSON object: {e}")))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(json!({})),
        Err(e) => Err(from_sdk("ssm:GetParameter", e)),
    }
}

/// Handles one event or request.
pub async fn handle(clients: &Clients, state_machine_arn: &str, event: Value) -> Result<Value> {
    let req = match parse(&event)? {
        Ok(r) => r,
        Err(reason) => return serde_json::to_value(ignored(reason)).map_err(|e| Error::Internal(e.to_string())),
    };
    let input = build_input(&defaults(clients).await?, &req);
    // Validate here: a bad request fails now, with the field named, and starts nothing.
    scope::resolve(&input, clients.region())?;
    let name = sfn::execution_name("vend", &[&req.account_id, &req.dedupe]);
    let started = sfn::start(clients, state_machine_arn, &name, &input).await?;
    let out = VendingOutcome {
        outcome: if started { "started" } else { "already-started" }.into(),
        account_id: Some(req.account_id),
        execution_name: Some(name),
        reason: None,
    };
    serde_json::to_value(out).map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct_event(state: &str) -> Value {
        json!({"id": "e-1", "source": "aws.controltower", "detail-type": "AWS Service Event via CloudTrail",
               "detail": {"eventName": "CreateManagedAccount", "serviceEventDetails": {"createManagedAccountStatus": {
                   "account": {"accountName": "team-a", "accountId": "210987654321"},
                   "organizationalUnit": {"organizationalUnitName": "Workloads", "organizationalUnitId": "ou-1"},
                   "state": state, "message": "AWS Control Tower successfully created an enrolled account."}}}})
    }

    #[test]
    fn control_tower_success_becomes_a_request_and_others_are_ignored() {
        let req = parse(&ct_event("SUCCEEDED")).unwrap().unwrap();
        assert_eq!(req.account_id, "210987654321");
        assert_eq!(req.account_name, "team-a");
        assert_eq!(req.dedupe, "e-1");
        assert!(parse(&ct_event("FAILED")).unwrap().is_err());
    }

    #[test]
    fn defaults_then_overrides_then_target() {
        let defaults = json!({"cluster": {"name": "{accountName}-eks"}, "namespace": "obs", "irsaRoleName": "irsa",
                              "target": {"roleName": "OrgRole"}});
        let req = parse(&json!({"accountId": "210987654321", "region": "eu-west-1", "accountName": "b",
                                "namespace": "team-b"}))
        .unwrap()
        .unwrap();
        let input = build_input(&defaults, &req);
        assert_eq!(input["cluster"]["name"], "b-eks");
        assert_eq!(input["namespace"], "team-b");
        assert_eq!(input["region"], "eu-west-1");
        assert_eq!(input["target"], json!({"accountId": "210987654321", "roleName": "OrgRole"}));
        assert_eq!(input["deploymentName"], "o11y-210987654321");
    }

    #[test]
    fn a_plain_request_needs_a_12_digit_account() {
        for bad in [json!({}), json!({"accountId": 12}), json!({"accountId": "123"}), json!([1])] {
            assert_eq!(parse(&bad).unwrap_err().name(), "ValidationError", "{bad}");
        }
    }
}
