//! The CloudFormation custom resource: `cfn-handler` turns a request into an execution of the one
//! state machine (`apply` for Create/Update, `delete` for Delete) and returns at once; the state
//! machine answers at its end, success or failure, through the `finish` step.
//!
//! The contract: exactly one response per request, before CloudFormation's one-hour timeout. The
//! `PhysicalResourceId` is `o11y-provisioner:<account>:<region>:<deploymentName>`, so a change of
//! any of the three is a replacement (CloudFormation then deletes the old one). A Create that
//! fails is rolled back first when the deployment had no record before it (the state machine's
//! `Rollback*` states run the delete chain), then answered FAILED with a sentinel id: after a
//! complete rollback (or a failed Create on a deployment that existed before it, which is left
//! as it was) the Delete that follows succeeds without touching anything; after a rollback that
//! failed, the sentinel says so and that Delete runs the real delete from the record. The
//! response body stays under 4,096 bytes.

use std::time::Duration;

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::aws::http;
use crate::aws::sfn;
use crate::aws::Clients;
use crate::domain::error::{Error, Result};
use crate::domain::input::Action;
use crate::domain::scope;
pub use crate::state::{CfnContext, RequestType};
use crate::state::{OutputContract, ProvisionState};

/// Prefix of the id answered for a Create that failed and left nothing of its own behind.
pub const CREATE_FAILED_PREFIX: &str = "o11y-provisioner:create-failed:";
/// Prefix of the id answered for a Create that failed and whose rollback failed too: the
/// record is kept, and the Delete CloudFormation sends next finishes the rollback.
pub const ROLLBACK_INCOMPLETE_PREFIX: &str = "o11y-provisioner:rollback-incomplete:";
/// The longest the original failure and the rollback's failure each take in a reason.
const REASON_PART_CHARS: usize = 1800;
/// CloudFormation's limit on the response body.
pub const MAX_RESPONSE_BYTES: usize = 4096;

/// The response CloudFormation reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CfnResponse {
    pub status: String,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub no_echo: bool,
    pub data: Map<String, Value>,
}

/// The ResourceProperties as an input contract: `ServiceToken` dropped, and the string scalars
/// CloudFormation sends for booleans (`"true"`, `"false"`) and integers turned back into them.
pub fn properties_to_input(props: &Value) -> Result<Value> {
    let Some(obj) = props.as_object() else {
        return Err(Error::validation("(properties)", "ResourceProperties must be an object"));
    };
    let mut input = obj.clone();
    input.remove("ServiceToken");
    for path in [&["retainMetrics"][..], &["grafana", "defaultDatasource"][..]] {
        let (parents, leaf) = path.split_at(path.len() - 1);
        let mut node = Some(&mut input);
        for key in parents {
            node = node.and_then(|n| n.get_mut(*key)).and_then(Value::as_object_mut);
        }
        if let Some(v) = node.and_then(|n| n.get_mut(leaf[0])) {
            let b = v.as_str().and_then(|s| match s.to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            });
            if let Some(b) = b {
                *v = Value::Bool(b);
            }
        }
    }
    // ...and the one integer (`trustPolicyQuota`).
    if let Some(v) = input.get_mut("trustPolicyQuota") {
        if let Some(n) = v.as_str().and_then(|s| s.trim().parse::<u64>().ok()) {
            *v = Value::from(n);
        }
    }
    let input = Value::Object(input);
    Ok(input)
}

/// `(account, region)` from a stack ARN `arn:aws:cloudformation:<region>:<account>:stack/...`.
pub fn stack_account_region(stack_id: &str) -> (String, String) {
    let parts: Vec<&str> = stack_id.split(':').collect();
    (parts.get(4).unwrap_or(&"").to_string(), parts.get(3).unwrap_or(&"").to_string())
}

/// The stable physical id of a deployment.
pub fn physical_id(account: &str, region: &str, deployment: &str) -> String {
    format!("o11y-provisioner:{account}:{region}:{deployment}")
}

/// Reason text of a failure from the state machine's caught error (`Error`, `Cause`): the
/// Lambda error's message, which names the step, after the error name.
pub fn failure_reason(error: &Value) -> String {
    let name = error.get("Error").and_then(Value::as_str).unwrap_or("Error");
    let cause = error.get("Cause").and_then(Value::as_str).unwrap_or_default();
    let message = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|c| c.get("errorMessage").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| cause.to_string());
    format!("{name}: {message}")
}

/// The output contract's short fields, as `Data`.
pub fn data_of(out: &OutputContract) -> Map<String, Value> {
    let mut d = Map::new();
    for (k, v) in [
        ("IrsaRoleArn", &out.irsa_role_arn),
        ("AmpWorkspaceId", &out.amp_workspace_id),
        ("AmpWorkspaceArn", &out.amp_workspace_arn),
        ("PrometheusEndpoint", &out.prometheus_endpoint),
        ("RemoteWriteUrl", &out.remote_write_url),
        ("WritePolicyArn", &out.write_policy_arn),
        ("GrafanaRoleArn", &out.grafana_role_arn),
        ("ReadPolicyArn", &out.read_policy_arn),
        ("GrafanaWorkspaceId", &out.grafana_workspace_id),
        ("GrafanaUrl", &out.grafana_url),
        ("HelmValuesParameter", &out.helm_values_parameter),
    ] {
        d.insert(k.to_string(), Value::String(v.clone()));
    }
    d
}

/// The response body, at most [`MAX_RESPONSE_BYTES`]: the reason is shortened first, then `Data`
/// fields are dropped from the end.
pub fn body(mut resp: CfnResponse) -> Result<Vec<u8>> {
    loop {
        let bytes = serde_json::to_vec(&resp).map_err(|e| Error::Internal(e.to_string()))?;
        if bytes.len() <= MAX_RESPONSE_BYTES {
            return Ok(bytes);
        }
        let over = bytes.len() - MAX_RESPONSE_BYTES;
        if resp.reason.chars().count() > 200 {
            let keep = resp.reason.chars().count().saturating_sub(over + 3).max(200);
            resp.reason = resp.reason.chars().take(keep).collect::<String>() + "...";
        } else if let Some(last) = resp.data.keys().next_back().cloned() {
            resp.data.remove(&last);
        } else {
            return Err(Error::LimitExceeded("the CloudFormation response cannot fit 4,096 bytes".into()));
        }
    }
}

/// The prefix of CloudFormation's response buckets: `cloudformation-custom-resource-response-`
/// followed by the region without dashes (`useast1`, `cnnorth1`, `usgovwest1`).
pub const RESPONSE_BUCKET_PREFIX: &str = "cloudformation-custom-resource-response-";

/// Only CloudFormation's presigned S3 URLs are answered, or, on the local stack, URLs under
/// `O11Y_CFN_RESPONSE_URL_PREFIX`: a console user must not be able to make this function PUT
/// anywhere. Accepted: `https`, a bare lowercase DNS name (RFC 3986 ends the authority at `/`,
/// `?` or `#`; HTTP clients also honour `\\`, `@` userinfo and `:port`, so none of these may hide
/// a foreign host), the bucket `cloudformation-custom-resource-response-<region>` in one of S3's
/// forms (virtual-hosted `<bucket>.s3.amazonaws.com`, `<bucket>.s3.<region>.amazonaws.com`,
/// `<bucket>.s3-<region>.amazonaws.com`, or path-style `s3[.-<region>].amazonaws.com/<bucket>/`,
/// `.com.cn` in China), the region `region` when it is known (the stack's), and a presigned
/// query (`Signature=` or `X-Amz-Signature=`).
pub fn check_response_url(url: &str, region: Option<&str>) -> Result<()> {
    if let Ok(prefix) = std::env::var("O11Y_CFN_RESPONSE_URL_PREFIX") {
        if !prefix.is_empty() && prefix.ends_with('/') && url.starts_with(&prefix) {
            return Ok(());
        }
    }
    let reject = |why: String| Err(Error::validation("ResponseURL", why));
    let Some(rest) = url.strip_prefix("https://") else {
        return reject("is not a CloudFormation response URL (not https)".into());
    };
    if url.contains(['#', '\\']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return reject("is not a CloudFormation response URL (fragment, backslash or whitespace)".into());
    }
    let (host, after_host) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let bare_dns = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !bare_dns {
        return reject(format!("is not a CloudFormation response URL (host {host:?})"));
    }
    let Some(endpoint) = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn")) else {
        return reject(format!("is not a CloudFormation response URL (host {host:?} is not S3's)"));
    };
    // The S3 endpoint part: `s3`, `s3.<region>` or `s3-<region>`; the bucket before it
    // (virtual-hosted) or as the path's first segment (path-style).
    let s3_endpoint =
        |e: &str| e == "s3" || e.strip_prefix("s3.").or_else(|| e.strip_prefix("s3-")).is_some_and(is_region);
    let (bucket, path) = if s3_endpoint(endpoint) {
        let path = after_host.strip_prefix('/').unwrap_or_default();
        let (bucket, rest) = path.split_once('/').unwrap_or((path, ""));
        (bucket, rest)
    } else {
        match endpoint.split_once('.') {
            Some((bucket, e)) if s3_endpoint(e) => (bucket, after_host.strip_prefix('/').unwrap_or_default()),
            _ => return reject(format!("is not a CloudFormation response URL (host {host:?} is not S3's)")),
        }
    };
    let Some(bucket_region) = bucket.strip_prefix(RESPONSE_BUCKET_PREFIX) else {
        return reject(format!("is not a CloudFormation response URL (bucket {bucket:?})"));
    };
    if let Some(region) = region.filter(|r| !r.is_empty()) {
        if bucket_region != region.replace('-', "") {
            return reject(format!("is not the response URL of a stack in {region} (bucket {bucket:?})"));
        }
    }
    let (key, query) = path.split_once('?').unwrap_or((path, ""));
    let signed = query.split('&').any(|kv| kv.starts_with("Signature=") || kv.starts_with("X-Amz-Signature="));
    if key.is_empty() || !signed {
        return reject("is not a CloudFormation response URL (not a presigned object URL)".into());
    }
    Ok(())
}

/// A region name (`us-east-1`, `cn-north-1`, `us-gov-west-1`): lowercase words and a number.
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.last().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
}

/// Where `cfn-handler` records, per execution it starts, the digest of the CloudFormation
/// request it hands over (`<path>/<execution name>`): proof that an execution's
/// `cloudFormation` block is CloudFormation's, not a console user's.
pub const REQUESTS_PATH: &str = "/o11y-provisioner/cfn-requests";

fn request_marker(execution: &str) -> String {
    crate::aws::ssm::parameter_name(REQUESTS_PATH, execution)
}

/// SHA-256 of the request context as the execution carries it.
fn context_digest(ctx: &CfnContext) -> Result<String> {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_string(ctx).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect())
}

/// Proves that `cfn` is the request `cfn-handler` started `execution` for: its marker exists
/// (in this function's account and region, where only `cfn-handler` may write it) and holds the
/// request's digest. Otherwise a `ValidationError` naming `cloudFormation`: a console input that
/// carries a `cloudFormation` block is refused before any write, and nobody is answered.
pub async fn check_provenance(clients: &Clients, execution: Option<&str>, cfn: &CfnContext) -> Result<()> {
    let refuse = || {
        Err(Error::validation(
            "cloudFormation",
            "is set only by cfn-handler for a CloudFormation request (this execution was not started by it): \
             remove it from the input",
        ))
    };
    let Some(execution) = execution.filter(|e| !e.is_empty()) else { return refuse() };
    match crate::aws::ssm::get_parameter(&clients.ssm, &request_marker(execution)).await? {
        Some(digest) if digest == context_digest(cfn)? => Ok(()),
        _ => refuse(),
    }
}

/// Records the marker [`check_provenance`] reads, before `execution` starts.
async fn mark_request(clients: &Clients, execution: &str, cfn: &CfnContext) -> Result<()> {
    clients
        .ssm
        .put_parameter()
        .name(request_marker(execution))
        .value(context_digest(cfn)?)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .description("o11y-provisioner: the CloudFormation request this execution answers")
        .send()
        .await
        .map_err(|e| crate::aws::sdk::from_sdk("ssm:PutParameter", e))?;
    Ok(())
}

/// Deletes the marker once the request is answered (gone already is fine; a failure is logged:
/// the answer is what matters).
async fn forget_request(clients: &Clients, execution: &str) {
    if let Err(e) = clients.ssm.delete_parameter().name(request_marker(execution)).send().await {
        if !e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) {
            tracing::warn!(execution = %execution, error = %crate::aws::sdk::from_sdk("ssm:DeleteParameter", e), "the request marker was not deleted");
        }
    }
}

/// PUTs the response (no content type, as CloudFormation expects).
pub async fn respond(clients: &Clients, ctx: &CfnContext, resp: CfnResponse) -> Result<usize> {
    check_response_url(&ctx.response_url, Some(&stack_account_region(&ctx.stack_id).1))?;
    let status = resp.status.clone();
    let bytes = body(resp)?;
    let len = bytes.len();
    let out = clients.http.send("PUT", &ctx.response_url, &[], bytes, Duration::from_secs(30)).await?;
    if !(200..300).contains(&out.status) {
        return Err(Error::Transient {
            operation: format!("PUT {}", http::redact(&ctx.response_url)),
            message: format!("HTTP {}", out.status),
        });
    }
    tracing::info!(status = %status, request_id = %ctx.request_id, bytes = len, "CloudFormation answered");
    Ok(len)
}

fn response(ctx: &CfnContext, ok: bool, reason: String, data: Map<String, Value>) -> CfnResponse {
    CfnResponse {
        status: if ok { "SUCCESS" } else { "FAILED" }.to_string(),
        reason,
        physical_resource_id: if ok {
            ctx.physical_resource_id.clone()
        } else {
            ctx.failure_physical_resource_id.clone()
        },
        stack_id: ctx.stack_id.clone(),
        request_id: ctx.request_id.clone(),
        logical_resource_id: ctx.logical_resource_id.clone(),
        no_echo: false,
        data,
    }
}

fn clip(text: String) -> String {
    if text.chars().count() <= REASON_PART_CHARS {
        return text;
    }
    text.chars().take(REASON_PART_CHARS - 3).collect::<String>() + "..."
}

/// Whether the failed run was rolled back (preflight said so: a CloudFormation Create of a
/// deployment without a record).
fn rolled_back(state: &ProvisionState) -> bool {
    state.preflight.as_ref().is_some_and(|p| p.rollback_on_failure)
}

/// The text of a failed run, in plain words: the error name and the failing step's message
/// first, then, when the run was rolled back (a CloudFormation Create of a deployment without a
/// record), how the rollback went. It is CloudFormation's `Reason` and the execution's `Cause`.
pub fn failure_text(state: &ProvisionState, error: &Value) -> String {
    let original = clip(failure_reason(error));
    if !rolled_back(state) {
        return original;
    }
    match &state.rollback_error {
        None => {
            let kept: Vec<String> = state
                .deleted
                .iter()
                .flat_map(|d| {
                    [
                        &d.datasource,
                        &d.grafana_workspace,
                        &d.grafana_role,
                        &d.write_policy,
                        &d.amp_workspace,
                        &d.irsa_trust,
                        &d.outputs,
                    ]
                })
                .flatten()
                .flat_map(|o| o.retained.clone())
                .collect();
            let kept = if kept.is_empty() { String::new() } else { format!("; kept: {}", kept.join(", ")) };
            format!("{original} (rolled back: what this Create made was deleted{kept})")
        }
        Some(rollback) => format!(
            "{original} (the rollback failed too: {}; what is left is recorded, and deleting the stack, or a \
             delete run from the console, removes it)",
            clip(failure_reason(rollback))
        ),
    }
}

/// The FAILED answer of a failed run, with [`failure_text`] as its reason. A rollback that failed
/// answers with [`ROLLBACK_INCOMPLETE_PREFIX`], so that the following Delete finishes it.
pub fn failure_response(ctx: &CfnContext, state: &ProvisionState, error: &Value) -> CfnResponse {
    let mut resp = response(ctx, false, failure_text(state, error), Map::new());
    if rolled_back(state) && state.rollback_error.is_some() {
        resp.physical_resource_id = format!("{ROLLBACK_INCOMPLETE_PREFIX}{}", ctx.request_id);
    }
    resp
}

/// Answers from the state (its error, or its output).
pub async fn respond_from_state(clients: &Clients, state: &ProvisionState) -> Result<Value> {
    let Some(ctx) = &state.cloud_formation else {
        return Ok(json!({ "responded": false }));
    };
    check_provenance(clients, state.execution.as_deref(), ctx).await?;
    let execution = state.execution.clone().unwrap_or_default();
    let resp = match &state.error {
        Some(err) => failure_response(ctx, state, err),
        None => {
            let data = state.output.as_ref().map(data_of).unwrap_or_default();
            response(ctx, true, format!("o11y-provisioner execution {execution} succeeded"), data)
        }
    };
    let status = resp.status.clone();
    let bytes = respond(clients, ctx, resp).await?;
    forget_request(clients, &execution).await;
    Ok(json!({ "responded": true, "status": status, "bytes": bytes }))
}

/// What `cfn-handler` did with a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerOutcome {
    /// `started`, `already-started`, `answered` (responded directly), `released` (a console run that
    /// ended `TIMED_OUT` or `ABORTED`: its lease released) or `ignored`.
    pub outcome: String,
    pub physical_resource_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_name: Option<String>,
}

/// Handles a custom resource request: starts the execution, or answers directly when there is
/// nothing to run (Delete after a failed Create), the properties are invalid, or the execution
/// cannot be started.
pub async fn handle_request(
    clients: &Clients,
    state_machine_arn: &str,
    req: CloudFormationCustomResourceRequest,
) -> Result<HandlerOutcome> {
    let (request_type, common, props, previous) = match req {
        CloudFormationCustomResourceRequest::Create(r) => (
            RequestType::Create,
            (r.response_url, r.stack_id, r.request_id, r.logical_resource_id),
            r.resource_properties,
            None,
        ),
        CloudFormationCustomResourceRequest::Update(r) => (
            RequestType::Update,
            (r.response_url, r.stack_id, r.request_id, r.logical_resource_id),
            r.resource_properties,
            Some(r.physical_resource_id),
        ),
        CloudFormationCustomResourceRequest::Delete(r) => (
            RequestType::Delete,
            (r.response_url, r.stack_id, r.request_id, r.logical_resource_id),
            r.resource_properties,
            Some(r.physical_resource_id),
        ),
        _ => return Err(Error::validation("RequestType", "must be Create, Update or Delete")),
    };
    let (response_url, stack_id, request_id, logical_resource_id) = common;
    let failure_id = previous.clone().unwrap_or_else(|| format!("{CREATE_FAILED_PREFIX}{request_id}"));
    let mut ctx = CfnContext {
        request_type,
        response_url,
        stack_id: stack_id.clone(),
        request_id: request_id.clone(),
        logical_resource_id: logical_resource_id.clone(),
        physical_resource_id: failure_id.clone(),
        failure_physical_resource_id: failure_id.clone(),
    };
    let answer = |ctx: CfnContext, ok: bool, reason: String| async move {
        let id = if ok { ctx.physical_resource_id.clone() } else { ctx.failure_physical_resource_id.clone() };
        respond(clients, &ctx, response(&ctx, ok, reason, Map::new())).await?;
        Ok(HandlerOutcome { outcome: "answered".into(), physical_resource_id: id, execution_name: None })
    };
    check_response_url(&ctx.response_url, Some(&stack_account_region(&stack_id).1))?;

    // The Delete that follows a failed Create: nothing of its own was left, nothing to touch (a
    // rollback that did not finish answered ROLLBACK_INCOMPLETE_PREFIX instead: that Delete runs).
    if request_type == RequestType::Delete && failure_id.starts_with(CREATE_FAILED_PREFIX) {
        return answer(ctx, true, "nothing to delete: the create had failed".into()).await;
    }
    let action = if request_type == RequestType::Delete { Action::Delete } else { Action::Apply };
    let (stack_account, stack_region) = stack_account_region(&stack_id);
    let mut input = match properties_to_input(&props) {
        Ok(i) => i,
        Err(e) => return answer(ctx, false, format!("{}: {e}", e.name())).await,
    };
    if let Some(obj) = input.as_object_mut() {
        obj.insert("action".into(), json!(action.as_str()));
        // Finishing a rollback: the AMP workspace the failed Create made goes too, unless the
        // properties say to retain it (the rollback's own rule).
        if failure_id.starts_with(ROLLBACK_INCOMPLETE_PREFIX) && !obj.contains_key("retainMetrics") {
            obj.insert("retainMetrics".into(), json!(false));
        }
    }
    let deployment = match scope::resolve(&input, Some(&stack_region)) {
        Ok(d) => d,
        Err(e) => return answer(ctx, false, format!("{}: {e}", e.name())).await,
    };
    let account = deployment.target.as_ref().map(|(a, _)| a.clone()).unwrap_or(stack_account);
    ctx.physical_resource_id = physical_id(&account, &deployment.region, &deployment.name);
    if request_type == RequestType::Delete {
        ctx.physical_resource_id = failure_id.clone();
        // A replaced resource's Delete names the old id: its properties describe the old one.
    }
    let name = sfn::execution_name("cfn", &[&stack_id, &logical_resource_id, &request_id, request_type.as_str()]);
    let exec_input = json!({ "input": input, "cloudFormation": ctx });
    if let Err(e) = mark_request(clients, &name, &ctx).await {
        return answer(ctx, false, format!("the workflow could not be started: {e}")).await;
    }
    match sfn::start(clients, state_machine_arn, &name, &exec_input).await {
        Ok(started) => Ok(HandlerOutcome {
            outcome: if started { "started" } else { "already-started" }.into(),
            physical_resource_id: ctx.physical_resource_id.clone(),
            execution_name: Some(name),
        }),
        Err(e) => answer(ctx, false, format!("the workflow could not be started: {e}")).await,
    }
}

/// The FAILED answer of an execution that ended `status` (`TIMED_OUT`, `ABORTED`) before its own
/// answer. A Create whose deployment was born in that execution (`born_here`) answers with
/// [`ROLLBACK_INCOMPLETE_PREFIX`], so that CloudFormation's following Delete deletes what it made,
/// as a native resource's rollback would; any other answers the request's failure id, and the
/// Delete that follows touches nothing.
pub fn interrupted_response(ctx: &CfnContext, execution: &str, status: &str, born_here: bool) -> CfnResponse {
    let rollback = born_here && ctx.request_type == RequestType::Create;
    let reason = if rollback {
        format!(
            "the o11y-provisioner execution {execution} ended {status}; what this Create made is deleted by the \
             Delete that follows"
        )
    } else {
        format!("the o11y-provisioner execution {execution} ended {status}")
    };
    let mut resp = response(ctx, false, reason, Map::new());
    if rollback {
        resp.physical_resource_id = format!("{ROLLBACK_INCOMPLETE_PREFIX}{}", ctx.request_id);
    }
    resp
}

/// Handles Step Functions' "Execution Status Change" event for an execution that ended without
/// reaching its own answer (TIMED_OUT, ABORTED): answers FAILED if CloudFormation started it.
pub async fn handle_status_change(clients: &Clients, event: &Value) -> Result<HandlerOutcome> {
    let detail = &event["detail"];
    let status = detail["status"].as_str().unwrap_or_default();
    let name = detail["name"].as_str().map(str::to_string);
    let input: Value = detail["input"].as_str().and_then(|s| serde_json::from_str(s).ok()).unwrap_or(Value::Null);
    let ctx: Option<CfnContext> = serde_json::from_value(input["cloudFormation"].clone()).ok();
    if !matches!(status, "TIMED_OUT" | "ABORTED") {
        return Ok(HandlerOutcome {
            outcome: "ignored".into(),
            physical_resource_id: String::new(),
            execution_name: None,
        });
    }
    // The lease this execution holds (holder = the execution's name, as `preflight` took it),
    // console runs included: `Finish` never ran. Its error is returned after the answer.
    let run_input = if ctx.is_some() { input["input"].clone() } else { input.clone() };
    // Whether the deployment was born in this execution (its registry entry says so): then a
    // Create's rollback may delete everything there is. Read for a CloudFormation Create only.
    let create = ctx.as_ref().is_some_and(|c| c.request_type == RequestType::Create);
    let mut born_here = false;
    let released = match &name {
        Some(execution) if run_input.is_object() => {
            let mut state = ProvisionState::new(run_input);
            state.execution = Some(execution.clone());
            match crate::ctx::Ctx::new(clients, &state).await {
                Ok(c) if c.deployment.action != Action::Plan => {
                    if create {
                        born_here = match crate::ctx::registry::own(&c).await {
                            Ok(entry) => entry.and_then(|e| e.born_in).as_deref() == Some(execution.as_str()),
                            Err(e) => {
                                tracing::warn!(error = %e, "the registry entry could not be read: no rollback");
                                false
                            }
                        };
                    }
                    crate::ctx::lease::release(&c, execution).await.map(|_| ())
                }
                Ok(_) => Ok(()),
                // An input that does not validate never got past preflight: it took no lease.
                Err(e) if e.name() == "ValidationError" => Ok(()),
                Err(e) => Err(e),
            }
        }
        _ => Ok(()),
    };
    // Answered only when cfn-handler started the execution for this very request.
    let ctx = match ctx {
        Some(ctx) => match check_provenance(clients, name.as_deref(), &ctx).await {
            Ok(()) => Some(ctx),
            Err(e) => {
                tracing::warn!(error = %e, "the ended execution's cloudFormation block is not cfn-handler's: nobody is answered");
                None
            }
        },
        None => None,
    };
    let out = match ctx {
        Some(ctx) => {
            let resp = interrupted_response(&ctx, name.as_deref().unwrap_or_default(), status, born_here);
            let physical_resource_id = resp.physical_resource_id.clone();
            respond(clients, &ctx, resp).await?;
            forget_request(clients, name.as_deref().unwrap_or_default()).await;
            HandlerOutcome { outcome: "answered".into(), physical_resource_id, execution_name: name }
        }
        None => {
            HandlerOutcome { outcome: "released".into(), physical_resource_id: String::new(), execution_name: name }
        }
    };
    released?;
    Ok(out)
}

/// The `cfn-handler` entry: a custom resource request, or a Step Functions status-change event.
pub async fn handle(clients: &Clients, state_machine_arn: &str, event: Value) -> Result<Value> {
    let out = if event.get("detail-type").and_then(Value::as_str) == Some("Step Functions Execution Status Change") {
        handle_status_change(clients, &event).await?
    } else {
        let req: CloudFormationCustomResourceRequest = serde_json::from_value(event).map_err(|e| {
            Error::validation("(request)", format!("not a CloudFormation custom resource request: {e}"))
        })?;
        handle_request(clients, state_machine_arn, req).await?
    };
    serde_json::to_value(out).map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CfnContext {
        CfnContext {
            request_type: RequestType::Create,
            response_url: "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?sig".into(),
            stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/s/guid".into(),
            request_id: "r".into(),
            logical_resource_id: "Observability".into(),
            physical_resource_id: physical_id("123456789012", "us-east-1", "dr-prod"),
            failure_physical_resource_id: format!("{CREATE_FAILED_PREFIX}r"),
        }
    }

    #[test]
    fn properties_arrive_as_strings_and_become_the_input() {
        let props = json!({"ServiceToken": "arn:aws:lambda:...", "deploymentName": "dr-prod", "retainMetrics": "false",
                           "grafana": {"defaultDatasource": "True", "version": "10.4"}});
        let input = properties_to_input(&props).unwrap();
        assert_eq!(input["retainMetrics"], json!(false));
        let quota = properties_to_input(&json!({"deploymentName": "d", "trustPolicyQuota": "4096"})).unwrap();
        assert_eq!(quota["trustPolicyQuota"], json!(4096));
        assert_eq!(input["grafana"]["defaultDatasource"], json!(true));
        assert_eq!(input["grafana"]["version"], json!("10.4"));
        assert!(input.get("ServiceToken").is_none());
    }

    #[test]
    fn body_fits_4096_bytes_by_shortening_the_reason_first() {
        let mut data = Map::new();
        data.insert("GrafanaUrl".into(), json!("https://g-1.grafana-workspace.us-east-1.amazonaws.com"));
        let resp = response(&ctx(), false, "x".repeat(10_000), data);
        let b = body(resp).unwrap();
        assert!(b.len() <= MAX_RESPONSE_BYTES, "{}", b.len());
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["Status"], "FAILED");
        assert_eq!(v["PhysicalResourceId"], format!("{CREATE_FAILED_PREFIX}r"));
        assert_eq!(v["Data"]["GrafanaUrl"], "https://g-1.grafana-workspace.us-east-1.amazonaws.com");
    }

    fn failed_state(rollback: bool, rollback_error: Option<Value>) -> ProvisionState {
        let mut st = ProvisionState::new(json!({}));
        st.preflight = Some(crate::state::PreflightOutput {
            action: Action::Apply,
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            partition: "aws".into(),
            oidc_issuer: String::new(),
            oidc_provider_arn: String::new(),
            irsa_role_arn: String::new(),
            rollback_on_failure: rollback,
            trust_policy_quota: 2048,
            input: None,
            nothing_recorded: false,
            note: None,
            absent: Vec::new(),
        });
        let kept = crate::state::DeleteOutput { retained: vec!["ws-1: adopted".into()], ..Default::default() };
        st.deleted = Some(crate::state::DeletedState { amp_workspace: Some(kept), ..Default::default() });
        st.rollback_error = rollback_error;
        st
    }

    #[test]
    fn a_failed_create_answers_the_original_failure_and_how_the_rollback_went() {
        let err = json!({"Error": "AwsError", "Cause": "{\"errorMessage\":\"datasource: 1 of 1 grants failed\"}"});
        // not rolled back (the deployment existed before the Create): the failure alone, the sentinel
        let r = failure_response(&ctx(), &failed_state(false, None), &err);
        assert_eq!(r.reason, "AwsError: datasource: 1 of 1 grants failed");
        assert_eq!(r.physical_resource_id, format!("{CREATE_FAILED_PREFIX}r"));
        // rolled back: the failure first, then what was kept
        let r = failure_response(&ctx(), &failed_state(true, None), &err);
        assert!(r.reason.starts_with("AwsError: datasource: 1 of 1 grants failed (rolled back"), "{}", r.reason);
        assert!(r.reason.contains("kept: ws-1: adopted"), "{}", r.reason);
        assert_eq!(r.physical_resource_id, format!("{CREATE_FAILED_PREFIX}r"));
        // the rollback failed: both causes, and the id that makes the following Delete run
        let rb = json!({"Error": "AwsError", "Cause": "{\"errorMessage\":\"grafana-role: AccessDenied\"}"});
        let r = failure_response(
            &ctx(),
            &failed_state(true, Some(rb)),
            &json!({"Error": "AwsError", "Cause": "x".repeat(5000)}),
        );
        assert!(r.reason.contains("the rollback failed too: AwsError: grafana-role: AccessDenied"), "{}", r.reason);
        assert_eq!(r.physical_resource_id, format!("{ROLLBACK_INCOMPLETE_PREFIX}r"));
        assert!(!r.physical_resource_id.starts_with(CREATE_FAILED_PREFIX));
        assert!(body(r).unwrap().len() <= MAX_RESPONSE_BYTES);
    }

    #[test]
    fn an_interrupted_create_rolls_back_only_a_deployment_born_in_its_execution() {
        let create = ctx();
        assert_eq!(create.request_type, RequestType::Create);
        let r = interrupted_response(&create, "cfn-1", "TIMED_OUT", true);
        assert_eq!(r.status, "FAILED");
        assert_eq!(r.physical_resource_id, format!("{ROLLBACK_INCOMPLETE_PREFIX}r"));
        assert!(r.reason.contains("ended TIMED_OUT") && r.reason.contains("deleted by the Delete"), "{}", r.reason);
        // a deployment that existed before (born elsewhere): the following Delete touches nothing
        let r = interrupted_response(&create, "cfn-1", "ABORTED", false);
        assert_eq!(r.physical_resource_id, format!("{CREATE_FAILED_PREFIX}r"));
        assert!(!r.reason.contains("deleted"), "{}", r.reason);
        // an Update keeps its resource: its id, never a rollback id
        let update = CfnContext {
            request_type: RequestType::Update,
            physical_resource_id: "o11y-provisioner:1:us-east-1:d".into(),
            failure_physical_resource_id: "o11y-provisioner:1:us-east-1:d".into(),
            ..ctx()
        };
        let r = interrupted_response(&update, "cfn-2", "TIMED_OUT", true);
        assert_eq!(r.physical_resource_id, "o11y-provisioner:1:us-east-1:d");
    }

    #[test]
    fn failure_reason_names_the_error_and_the_step() {
        let err = json!({"Error": "ValidationError", "Cause": "{\"errorType\":\"ValidationError\",\"errorMessage\":\"preflight: namespace: bad\"}"});
        assert_eq!(failure_reason(&err), "ValidationError: preflight: namespace: bad");
    }

    const SIGNED: &str = "arn%3Aaws%3Acloudformation%3Aus-east-1%3A123456789012%3Astack/s/g%7CObs%7Creq?\
        X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261202T000000Z&X-Amz-Expires=7200&X-Amz-Signature=abc";

    #[test]
    fn cloudformations_response_bucket_is_answered_in_each_s3_url_form() {
        let bucket = "cloudformation-custom-resource-response-useast1";
        for url in [
            format!("https://{bucket}.s3.amazonaws.com/{SIGNED}"),
            format!("https://{bucket}.s3.us-east-1.amazonaws.com/{SIGNED}"),
            format!("https://{bucket}.s3-us-east-1.amazonaws.com/{SIGNED}"),
            format!("https://s3.amazonaws.com/{bucket}/{SIGNED}"),
            format!("https://s3.us-east-1.amazonaws.com/{bucket}/{SIGNED}"),
            format!("https://s3-us-east-1.amazonaws.com/{bucket}/{SIGNED}"),
            // SigV2 presigned, as older stacks get
            format!("https://{bucket}.s3.amazonaws.com/key?AWSAccessKeyId=AKIA&Expires=1&Signature=x%3D"),
        ] {
            assert!(check_response_url(&url, Some("us-east-1")).is_ok(), "{url} was refused");
            assert!(check_response_url(&url, None).is_ok(), "{url} was refused");
        }
        let cn =
            format!("https://cloudformation-custom-resource-response-cnnorth1.s3.cn-north-1.amazonaws.com.cn/{SIGNED}");
        assert!(check_response_url(&cn, Some("cn-north-1")).is_ok());
    }

    #[test]
    fn any_other_url_is_refused() {
        let bucket = "cloudformation-custom-resource-response-useast1";
        for url in [
            // another bucket, another region's bucket, any AWS host that is not S3
            format!("https://attacker-bucket.s3.amazonaws.com/{SIGNED}"),
            format!("https://s3.amazonaws.com/attacker-bucket/{SIGNED}"),
            format!("https://ec2-54-1-2-3.compute-1.amazonaws.com/{SIGNED}"),
            format!("https://{bucket}.execute-api.us-east-1.amazonaws.com/{SIGNED}"),
            format!("https://abc.lambda-url.us-east-1.on.aws/{SIGNED}"),
            format!("https://{bucket}.s3.evil-1.amazonaws.com.evil.com/{SIGNED}"),
            // not presigned, no object, not https
            format!("https://{bucket}.s3.amazonaws.com/key"),
            format!("https://{bucket}.s3.amazonaws.com/?X-Amz-Signature=abc"),
            format!("http://{bucket}.s3.amazonaws.com/{SIGNED}"),
            "https://evil.example.com/a".to_string(),
            "https://x.amazonaws.com.evil.com/a".to_string(),
            // a foreign host disguised as an AWS one: fragment, userinfo, port, backslash, case, space
            format!("https://127.0.0.1:8443#{bucket}.s3.amazonaws.com/{SIGNED}"),
            format!("https://evil.example.com#{bucket}.s3.amazonaws.com/{SIGNED}"),
            format!("https://evil.example.com@{bucket}.s3.amazonaws.com/{SIGNED}"),
            format!("https://{bucket}.s3.amazonaws.com@evil.example.com/{SIGNED}"),
            format!("https://evil.example.com\\{bucket}.s3.amazonaws.com/{SIGNED}"),
            format!("https://{bucket}.s3.amazonaws.com:8443/{SIGNED}"),
            format!("https://{}.S3.AMAZONAWS.COM/{SIGNED}", bucket.to_uppercase()),
            format!("https://{bucket}.s3.amazonaws.com /{SIGNED}"),
            "https://.amazonaws.com/r".to_string(),
            "https://x..amazonaws.com/r".to_string(),
        ] {
            assert!(check_response_url(&url, None).is_err(), "{url} was accepted");
        }
        // the bucket of another region than the stack's
        let url = format!("https://{bucket}.s3.amazonaws.com/{SIGNED}");
        assert!(check_response_url(&url, Some("eu-west-1")).is_err());
        let url = format!("https://cloudformation-custom-resource-response-euwest1.s3.amazonaws.com/{SIGNED}");
        assert!(check_response_url(&url, Some("us-east-1")).is_err());
    }

    #[test]
    fn the_request_digest_binds_every_field_of_the_context() {
        let base = context_digest(&ctx()).unwrap();
        assert_eq!(base, context_digest(&ctx()).unwrap());
        assert_eq!(base.len(), 64);
        let mut other = ctx();
        other.response_url.push('x');
        assert_ne!(base, context_digest(&other).unwrap());
        let mut other = ctx();
        other.failure_physical_resource_id.push('x');
        assert_ne!(base, context_digest(&other).unwrap());
    }

    #[test]
    fn stack_arn_gives_account_and_region() {
        assert_eq!(
            stack_account_region("arn:aws:cloudformation:eu-west-1:210987654321:stack/s/g"),
            ("210987654321".to_string(), "eu-west-1".to_string())
        );
    }
}
