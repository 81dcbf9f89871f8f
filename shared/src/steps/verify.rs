//! verify: apply's check of the data path, once AMP is ACTIVE and before publish. Checks that what was provisioned works, and says what is
//! missing when it does not:
//!
//! 1. `irsa-role-policy`: the IRSA role's policies allow `aps:RemoteWrite` on the AMP workspace,
//!    `logs:CreateLogStream` and `logs:PutLogEvents` on the configured log stream, and
//!    `xray:PutTraceSegments`;
//! 2. `grafana-role-policy`: the Grafana role's policies allow `aps:QueryMetrics` on the workspace;
//! 3. `irsa-trust-collector`: the IRSA trust policy admits
//!    `system:serviceaccount:<namespace>:observability-collector` from the cluster's provider;
//! 4. `irsa-trust-preserved`: it still admits every request it admitted before the first run
//!    (the record's `trust.originalDocument`, evaluated with [`trust::admits`] over the requests
//!    [`original_requests`] derives from that document's principals);
//! 5. `remote-write-probe`: a SigV4-signed remote write of one sample
//!    ([`PROBE_METRIC`]`{deployment, nonce}`) to the workspace, read back with a query (a few
//!    bounded retries), with the function's own credentials.
//!
//! Policies are checked with `iam:SimulatePrincipalPolicy` (which also applies permissions
//! boundaries); when the endpoint cannot simulate (moto answers 500, an access denial, any error
//! of that call), with our own evaluation of the role's documents ([`evaluate`]: attached managed
//! policies' default versions, inline policies, and the permissions boundary). The output says
//! which method was used (`policyMethod`).
//!
//! The result (no nonce, no time, no credential: a converged deployment gives the same value
//! every run) is stored in SSM `<ssmPrefix>/verification`, written only when it changed. A failed
//! check fails the step (`ResourceFailedError`, or `TransientError` when only the probe failed
//! for a transient reason), unless the input says `"verify": "warn"`. Plan does not verify
//! (`status: skipped`): the probe writes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_iam::types::PolicyEvaluationDecisionType;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::aws::remote_write::{self, Sample};
use crate::aws::sdk::from_sdk;
use crate::aws::ssm;
use crate::ctx::iam_reads;
use crate::ctx::record;
use crate::ctx::Ctx;
use crate::domain::error::{Error, Result};
use crate::domain::iam::doc::statements_or_empty;
use crate::domain::iam::policy;
use crate::domain::iam::trust::{self, AssumeRequest, STS_AUDIENCE};
use crate::domain::input::VerifyMode;
use crate::domain::names;
use crate::domain::text::clip;
use crate::state::{require, ProvisionState};
pub use crate::state::{PolicyMethod, VerifyCheck, VerifyOutput, VerifyStatus};
use crate::steps::iam_util;

/// The pure evaluation of the role's documents lives in the core (`domain::iam::eval`); its
/// public items keep their paths here.
pub use crate::domain::iam::eval::{evaluate, Decision, RoleDocuments};

/// SSM leaf of the verification result.
pub const PARAMETER_LEAF: &str = "verification";
/// The probe's metric name.
pub const PROBE_METRIC: &str = "o11y_provisioner_probe";
/// The service account the collector runs as.
pub const COLLECTOR_SERVICE_ACCOUNT: &str = "observability-collector";
/// Pauses between the probe's read-back queries (bounded: about 8 s in all).
const PROBE_QUERY_PAUSES_MS: &[u64] = &[0, 300, 700, 1000, 2000, 4000];
/// `policyMethod` when IAM simulated the policies.
pub const METHOD_SIMULATE: &str = PolicyMethod::Simulate.as_str();
/// `policyMethod` when we evaluated the documents ourselves.
pub const METHOD_EVALUATE: &str = PolicyMethod::Evaluate.as_str();
/// Longest detail kept per check (the SSM value stays small).
const DETAIL_MAX_CHARS: usize = 500;

// ---- own policy evaluation ---------------------------------------------------------------------

/// One required permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The action, such as `aps:RemoteWrite`.
    pub action: String,
    /// The resource ARN it must be allowed on (`*` for actions without resource-level permissions).
    pub resource: String,
}

fn req(action: &str, resource: &str) -> Requirement {
    Requirement { action: action.to_string(), resource: resource.to_string() }
}

async fn managed_policy_document(ctx: &Ctx, arn: &str) -> Result<Value> {
    let iam = &ctx.clients.iam;
    let p = iam_reads::policy(ctx, arn)
        .await?
        .ok_or_else(|| Error::ResourceFailed(format!("policy {arn} is attached but does not exist")))?;
    let version = p.default_version_id().unwrap_or_default().to_string();
    let v = iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id(version)
        .send()
        .await
        .map_err(|e| from_sdk("iam:GetPolicyVersion", e))?;
    policy::decode_document(v.policy_version().and_then(|v| v.document()).unwrap_or("{}"))
}

/// Reads the role's policy documents.
pub async fn role_documents(ctx: &Ctx, role_name: &str) -> Result<RoleDocuments> {
    let iam = &ctx.clients.iam;
    let mut docs = RoleDocuments::default();
    let mut pages = iam.list_attached_role_policies().role_name(role_name).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("iam:ListAttachedRolePolicies", e))?;
        for p in page.attached_policies() {
            if let Some(arn) = p.policy_arn() {
                docs.identity.push(managed_policy_document(ctx, arn).await?);
            }
        }
    }
    let mut pages = iam.list_role_policies().role_name(role_name).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| from_sdk("iam:ListRolePolicies", e))?;
        for name in page.policy_names() {
            let p = iam
                .get_role_policy()
                .role_name(role_name)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| from_sdk("iam:GetRolePolicy", e))?;
            docs.identity.push(policy::decode_document(p.policy_document())?);
        }
    }
    let role = iam_reads::role(ctx, role_name).await?;
    if let Some(arn) = role.as_ref().and_then(|r| r.permissions_boundary()).and_then(|b| b.permissions_boundary_arn()) {
        docs.boundary = Some(managed_policy_document(ctx, arn).await?);
    }
    Ok(docs)
}

/// Why an `iam:SimulatePrincipalPolicy` call failed, decided from its answer by
/// [`classify_simulate_error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimulateFailure {
    /// The endpoint lacks the API (moto answers a bare HTTP 500 with no AWS error code; also
    /// `NotImplemented`/`InvalidAction`, 404/501, "not implemented"/"not supported"): verify falls
    /// back to its own evaluation and says so (`evaluator`).
    Unavailable(String),
    /// Throttling, a 5xx with an AWS error code, no answer at all: retried with backoff, then the
    /// policy check fails as transient.
    Transient(String),
    /// An access denial or any other error: the policy check fails as "cannot prove".
    CannotProve(String),
}

/// Classifies a failed `iam:SimulatePrincipalPolicy` call by the HTTP `status` (none: no answer),
/// the AWS error `code` and `message`. Only an endpoint that lacks the API is a reason to fall
/// back to our own evaluation; every other error errs toward "fail".
pub fn classify_simulate_error(status: Option<u16>, code: Option<&str>, message: &str) -> SimulateFailure {
    const TRANSIENT: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ServiceFailure",
        "InternalFailure",
        "RequestTimeout",
    ];
    const ABSENT: &[&str] = &["NotImplemented", "InvalidAction", "UnsupportedOperation", "UnknownOperationException"];
    const DENIED: &[&str] = &["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "NotAuthorized"];
    let reason = match status {
        Some(s) => format!("HTTP {s}: {message}"),
        None => message.to_string(),
    };
    let reason = clip(&reason, 200);
    let lower = message.to_ascii_lowercase();
    let code = code.filter(|c| !c.is_empty());
    if code.is_some_and(|c| TRANSIENT.contains(&c)) || matches!(status, Some(429 | 502 | 503 | 504)) {
        return SimulateFailure::Transient(reason);
    }
    if code.is_some_and(|c| DENIED.contains(&c)) || status == Some(403) {
        return SimulateFailure::CannotProve(reason);
    }
    if code.is_some_and(|c| ABSENT.contains(&c))
        || matches!(status, Some(404 | 501))
        || lower.contains("not implemented")
        || lower.contains("not been implemented")
        || lower.contains("not supported")
        || (status == Some(500) && code.is_none())
    {
        return SimulateFailure::Unavailable(reason);
    }
    match status {
        None => SimulateFailure::Transient(reason),
        Some(s) if s >= 500 => SimulateFailure::Transient(reason),
        Some(_) => SimulateFailure::CannotProve(reason),
    }
}

/// Attempts of `iam:SimulatePrincipalPolicy` for one call when it fails transiently.
const SIMULATE_ATTEMPTS: u32 = 4;

/// `iam:SimulatePrincipalPolicy` for `actions` on one `resource`, one attempt (the SDK's own
/// retries are off: [`simulate`] retries by [`classify_simulate_error`]).
async fn simulate_once(
    ctx: &Ctx,
    role_arn: &str,
    actions: &[&str],
    resource: &str,
) -> std::result::Result<Vec<Decision>, SimulateFailure> {
    use aws_sdk_iam::error::ProvideErrorMetadata;
    let no_retries =
        aws_sdk_iam::config::Builder::default().retry_config(aws_sdk_iam::config::retry::RetryConfig::disabled());
    let out = ctx
        .clients
        .iam
        .simulate_principal_policy()
        .policy_source_arn(role_arn)
        .set_action_names(Some(actions.iter().map(|a| a.to_string()).collect()))
        .resource_arns(resource)
        .customize()
        .config_override(no_retries)
        .send()
        .await
        .map_err(|e| {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let code = e.code().map(str::to_string);
            let err = from_sdk("iam:SimulatePrincipalPolicy", e).to_string();
            classify_simulate_error(status, code.as_deref(), err.trim_end_matches([':', ' ']))
        })?;
    actions
        .iter()
        .map(|a| {
            let r = out.evaluation_results().iter().find(|r| r.eval_action_name().eq_ignore_ascii_case(a)).ok_or_else(
                || SimulateFailure::CannotProve(format!("iam:SimulatePrincipalPolicy returned no result for {a}")),
            )?;
            Ok(match r.eval_decision() {
                PolicyEvaluationDecisionType::Allowed => Decision::Allowed,
                PolicyEvaluationDecisionType::ExplicitDeny => Decision::ExplicitDeny,
                _ => Decision::ImplicitDeny,
            })
        })
        .collect()
}

/// [`simulate_once`], retried with backoff (200 ms, 400 ms, 800 ms) while it fails transiently.
async fn simulate(
    ctx: &Ctx,
    role_arn: &str,
    actions: &[&str],
    resource: &str,
) -> std::result::Result<Vec<Decision>, SimulateFailure> {
    let mut attempt = 1;
    loop {
        match simulate_once(ctx, role_arn, actions, resource).await {
            Err(SimulateFailure::Transient(reason)) if attempt < SIMULATE_ATTEMPTS => {
                tracing::info!(attempt, reason = %reason, "iam:SimulatePrincipalPolicy failed transiently: retrying");
                tokio::time::sleep(Duration::from_millis(200 << (attempt - 1))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A policy check's outcome: the decisions, or why they could not be had (`transient`: it may go
/// away by itself).
enum Checked {
    Decided(Vec<Decision>),
    Failed { reason: String, transient: bool },
}

/// How policies are checked in this run: simulation until the endpoint turns out to lack it,
/// then our evaluation.
struct PolicyChecker {
    simulate: bool,
    note: Option<String>,
}

impl PolicyChecker {
    async fn check(&mut self, ctx: &Ctx, role_name: &str, role_arn: &str, reqs: &[Requirement]) -> Result<Checked> {
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for r in reqs {
            match groups.iter_mut().find(|(res, _)| *res == r.resource) {
                Some((_, acts)) => acts.push(&r.action),
                None => groups.push((&r.resource, vec![&r.action])),
            }
        }
        if self.simulate {
            let mut decided = Vec::new();
            for (resource, actions) in &groups {
                match simulate(ctx, role_arn, actions, resource).await {
                    Ok(d) => decided.extend(
                        actions.iter().map(|a| a.to_string()).zip(d).map(|(a, d)| (a, resource.to_string(), d)),
                    ),
                    Err(SimulateFailure::Unavailable(reason)) => {
                        tracing::info!(reason = %reason, "iam:SimulatePrincipalPolicy unavailable: evaluating the policies ourselves");
                        self.simulate = false;
                        self.note = Some(format!("iam:SimulatePrincipalPolicy unavailable ({reason})"));
                        break;
                    }
                    Err(SimulateFailure::Transient(reason)) => {
                        return Ok(Checked::Failed {
                            reason: format!(
                                "iam:SimulatePrincipalPolicy failed {SIMULATE_ATTEMPTS} times ({reason}): cannot prove \
                                 role {role_name}'s permissions"
                            ),
                            transient: true,
                        })
                    }
                    Err(SimulateFailure::CannotProve(reason)) => {
                        return Ok(Checked::Failed {
                            reason: format!(
                                "iam:SimulatePrincipalPolicy failed ({reason}): cannot prove role {role_name}'s permissions"
                            ),
                            transient: false,
                        })
                    }
                }
            }
            if self.simulate {
                return Ok(Checked::Decided(
                    reqs.iter()
                        .map(|r| {
                            decided
                                .iter()
                                .find(|(a, res, _)| *a == r.action && *res == r.resource)
                                .map(|(_, _, d)| *d)
                                .unwrap_or(Decision::ImplicitDeny)
                        })
                        .collect(),
                ));
            }
        }
        let docs = role_documents(ctx, role_name).await?;
        Ok(Checked::Decided(reqs.iter().map(|r| docs.decide(&r.action, &r.resource)).collect()))
    }
}

fn policy_check(name: &str, role_name: &str, reqs: &[Requirement], checked: &Checked, hint: &str) -> VerifyCheck {
    let decisions = match checked {
        Checked::Decided(d) => d,
        Checked::Failed { reason, transient } => {
            return VerifyCheck {
                name: name.to_string(),
                passed: false,
                detail: clip(reason, DETAIL_MAX_CHARS),
                transient: *transient,
            }
        }
    };
    // Denied actions grouped by resource and decision, in the order required.
    let mut groups: Vec<(&str, Decision, Vec<&str>)> = Vec::new();
    for (r, d) in reqs.iter().zip(decisions).filter(|(_, d)| **d != Decision::Allowed) {
        match groups.iter_mut().find(|(res, dec, _)| *res == r.resource && dec == d) {
            Some((_, _, actions)) => actions.push(&r.action),
            None => groups.push((&r.resource, *d, vec![&r.action])),
        }
    }
    let detail = if groups.is_empty() {
        format!("role {role_name} is allowed {}", reqs.iter().map(|r| r.action.as_str()).collect::<Vec<_>>().join(", "))
    } else {
        let denied: Vec<String> =
            groups.iter().map(|(res, d, acts)| format!("{} on {res} ({})", acts.join(", "), d.as_str())).collect();
        format!("role {role_name} is not allowed {}; {hint}", denied.join("; "))
    };
    VerifyCheck {
        name: name.to_string(),
        passed: groups.is_empty(),
        detail: clip(&detail, DETAIL_MAX_CHARS),
        transient: false,
    }
}

// ---- trust ---------------------------------------------------------------------------------------

/// The request of the collector's service account.
pub fn collector_request(provider_arn: &str, namespace: &str) -> AssumeRequest {
    AssumeRequest::WebIdentity {
        provider_arn: provider_arn.to_string(),
        sub: format!("system:serviceaccount:{namespace}:{COLLECTOR_SERVICE_ACCOUNT}"),
        aud: STS_AUDIENCE.to_string(),
    }
}

/// Requests to evaluate a trust policy on, derived from `original`'s principals: every
/// `Federated` provider (and `provider_arn`) with every service-account subject the documents
/// name (wildcards filled in) and a few samples in `namespace`, with `aud` = each audience they
/// name and `sts.amazonaws.com`; every `Service` and every `AWS` principal.
pub fn original_requests(original: &Value, provider_arn: &str, namespace: &str) -> Vec<AssumeRequest> {
    use std::collections::BTreeSet;
    let mut providers = BTreeSet::from([provider_arn.to_string()]);
    let mut services = BTreeSet::new();
    let mut aws = BTreeSet::new();
    let mut subs = BTreeSet::new();
    let mut auds = BTreeSet::from([STS_AUDIENCE.to_string()]);
    fn walk(v: &Value, key: &str, f: &mut dyn FnMut(&str, &str)) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, x)| walk(x, k, f)),
            Value::Array(a) => a.iter().for_each(|x| walk(x, key, f)),
            Value::String(s) => f(key, s),
            _ => {}
        }
    }
    walk(original, "", &mut |k, s| match k {
        "Federated" => {
            providers.insert(s.to_string());
        }
        "Service" => {
            services.insert(s.to_string());
        }
        "AWS" => {
            aws.insert(s.to_string());
        }
        _ if k.to_ascii_lowercase().ends_with(":aud") && !s.contains('*') && !s.contains('?') => {
            auds.insert(s.to_string());
        }
        _ if s.starts_with("system:serviceaccount:") => {
            subs.insert(s.replace(['*', '?'], "x"));
        }
        _ => {}
    });
    for sa in [COLLECTOR_SERVICE_ACCOUNT, "default", "app"] {
        subs.insert(format!("system:serviceaccount:{namespace}:{sa}"));
    }
    let mut out = Vec::new();
    for p in &providers {
        for sub in &subs {
            for aud in &auds {
                out.push(AssumeRequest::WebIdentity { provider_arn: p.clone(), sub: sub.clone(), aud: aud.clone() });
            }
        }
    }
    out.extend(services.into_iter().map(AssumeRequest::Service));
    out.extend(aws.into_iter().map(AssumeRequest::Aws));
    out
}

fn describe_request(r: &AssumeRequest) -> String {
    match r {
        AssumeRequest::WebIdentity { provider_arn, sub, aud } => format!("{sub} via {provider_arn} (aud {aud})"),
        AssumeRequest::Service(s) => format!("service {s}"),
        AssumeRequest::Aws(a) => format!("AWS principal {a}"),
    }
}

/// The requests `original` admits that `current` does not.
pub fn lost_requests(original: &Value, current: &Value, provider_arn: &str, namespace: &str) -> Vec<AssumeRequest> {
    original_requests(original, provider_arn, namespace)
        .into_iter()
        .filter(|r| trust::admits(original, r) && !trust::admits(current, r))
        .collect()
}

// ---- probe ---------------------------------------------------------------------------------------

/// A value unique to this run for the probe's `nonce` label.
fn nonce(deployment: &str) -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let digest = Sha256::digest(format!("{deployment}/{t}/{}", std::process::id()).as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn probe_failure(detail: String, transient: bool) -> VerifyCheck {
    VerifyCheck { name: "remote-write-probe".into(), passed: false, detail: clip(&detail, DETAIL_MAX_CHARS), transient }
}

/// Remote-writes one probe sample and reads it back.
async fn probe(ctx: &Ctx, prometheus_endpoint: &str, remote_write_url: &str) -> VerifyCheck {
    let d = &ctx.deployment;
    let base = remote_write::data_plane_base_for(&ctx.clients, prometheus_endpoint);
    let nonce = nonce(&d.name);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|t| t.as_millis() as i64).unwrap_or_default();
    let sample = Sample {
        labels: vec![
            ("__name__".into(), PROBE_METRIC.into()),
            ("deployment".into(), d.name.clone()),
            ("nonce".into(), nonce.clone()),
        ],
        value: 1.0,
        timestamp_ms: now_ms,
    };
    match remote_write::remote_write(&ctx.clients, &d.region, &base, &[sample]).await {
        Ok(r) if (200..300).contains(&r.status) => {}
        Ok(r) => {
            return probe_failure(
                format!(
                    "remote write to {remote_write_url} answered HTTP {}: {}",
                    r.status,
                    clip(r.text().trim(), 200)
                ),
                r.status == 429 || r.status >= 500,
            )
        }
        Err(e) => return probe_failure(format!("remote write to {remote_write_url} failed: {e}"), e.is_retryable()),
    }
    let promql = format!("{PROBE_METRIC}{{deployment=\"{}\",nonce=\"{nonce}\"}}", d.name);
    let mut last = String::new();
    let mut transient = false;
    for pause in PROBE_QUERY_PAUSES_MS {
        if *pause > 0 {
            tokio::time::sleep(Duration::from_millis(*pause)).await;
        }
        match remote_write::query(&ctx.clients, &d.region, &base, &promql).await {
            Ok(r) if r.status == 200 => {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                let found = v["data"]["result"].as_array().is_some_and(|a| !a.is_empty());
                if found {
                    return VerifyCheck {
                        name: "remote-write-probe".into(),
                        passed: true,
                        detail: format!(
                            "wrote one {PROBE_METRIC} sample to {remote_write_url} and read it back with a query"
                        ),
                        transient: false,
                    };
                }
                last = "the sample was written (accepted) but a query did not return it".to_string();
                transient = true;
            }
            Ok(r) => {
                last = format!("query answered HTTP {}: {}", r.status, clip(r.text().trim(), 200));
                transient = r.status == 429 || r.status >= 500;
                if !transient {
                    break;
                }
            }
            Err(e) => {
                last = format!("query failed: {e}");
                transient = e.is_retryable();
            }
        }
    }
    probe_failure(format!("{last} (workspace {prometheus_endpoint})"), transient)
}

// ---- the step ------------------------------------------------------------------------------------

/// The document with its Deny statements removed: tells "blocked by a Deny" from "not allowed".
fn without_denies(doc: &Value) -> Value {
    let mut out = doc.clone();
    let kept: Vec<Value> = statements_or_empty(doc)
        .into_iter()
        .filter(|s| s.get("Effect").and_then(Value::as_str) != Some("Deny"))
        .cloned()
        .collect();
    if let Some(obj) = out.as_object_mut() {
        obj.insert("Statement".into(), Value::Array(kept));
    }
    out
}

/// Runs every check, stores the result in SSM, and fails unless all passed or the mode is `warn`.
pub async fn run(ctx: &Ctx, state: &ProvisionState) -> Result<VerifyOutput> {
    let d = &ctx.deployment;
    let parameter = ssm::parameter_name(&d.ssm_prefix, PARAMETER_LEAF);
    let out = VerifyOutput {
        status: VerifyStatus::Skipped,
        mode: d.verify,
        policy_method: PolicyMethod::None,
        policy_method_note: None,
        evaluator: String::new(),
        checks: Vec::new(),
        failures: Vec::new(),
        parameter: parameter.clone(),
    };
    // The probe writes a sample: plan skips the checks.
    let skipped = out.clone();
    ctx.write_or_preview(|| check(ctx, state, parameter, out), || async { Ok(skipped) }).await
}

/// The checks of [`run`], in order, then the result stored and judged.
async fn check(ctx: &Ctx, state: &ProvisionState, parameter: String, mut out: VerifyOutput) -> Result<VerifyOutput> {
    let d = &ctx.deployment;
    let pre = require(&state.preflight, "preflight")?;
    let amp = require(&state.amp_workspace, "amp-workspace")?;
    let grafana_role = require(&state.grafana_role, "grafana-role")?;

    // 1-2. Policies.
    let [_, streams] = policy::log_group_arns(&d.partition, &d.region, &pre.account_id, &d.log_group_name);
    let stream_arn = format!("{}:log-stream:{}", streams.trim_end_matches(":*"), d.log_stream_name);
    let irsa_reqs = vec![
        req("aps:RemoteWrite", &amp.arn),
        req("logs:CreateLogStream", &stream_arn),
        req("logs:PutLogEvents", &stream_arn),
        req("xray:PutTraceSegments", "*"),
    ];
    let grafana_reqs = vec![req("aps:QueryMetrics", &amp.arn)];
    let mut checker = PolicyChecker { simulate: true, note: None };
    let irsa_decisions = checker.check(ctx, &d.irsa_role_name, &pre.irsa_role_arn, &irsa_reqs).await?;
    let grafana_decisions = checker.check(ctx, &grafana_role.role_name, &grafana_role.role_arn, &grafana_reqs).await?;
    out.policy_method = if checker.simulate { PolicyMethod::Simulate } else { PolicyMethod::Evaluate };
    out.evaluator = match &checker.note {
        Some(note) => format!("local ({note})"),
        None => "iam:SimulatePrincipalPolicy".to_string(),
    };
    out.policy_method_note = checker.note;
    out.checks.push(policy_check(
        "irsa-role-policy",
        &d.irsa_role_name,
        &irsa_reqs,
        &irsa_decisions,
        &format!("attach the write policy {} to it (run apply again)", d.write_policy_name),
    ));
    out.checks.push(policy_check(
        "grafana-role-policy",
        &grafana_role.role_name,
        &grafana_reqs,
        &grafana_decisions,
        &format!("attach the read policy {} to it (run apply again)", d.grafana_read_policy_name),
    ));

    // 3-4. Trust.
    // A role that is gone admits nothing: the check fails.
    let current = iam_util::trust_of(ctx, &d.irsa_role_name).await?.unwrap_or_else(|| serde_json::json!({}));
    let collector = collector_request(&pre.oidc_provider_arn, &d.namespace);
    let verdict = trust::verdict(&current, &collector);
    let admitted = verdict == Some(true);
    out.checks.push(VerifyCheck {
        name: "irsa-trust-collector".into(),
        passed: admitted,
        detail: if admitted {
            format!("role {} trusts {}", d.irsa_role_name, describe_request(&collector))
        } else if verdict.is_none() {
            format!(
                "cannot prove that the trust policy of role {} admits {}: a statement in it has a condition \
                 (operator or key) the evaluator cannot decide, so a Deny may apply (erring toward fail)",
                d.irsa_role_name,
                describe_request(&collector)
            )
        } else if trust::admits(&without_denies(&current), &collector) {
            format!(
                "the trust policy of role {} does not admit {}: a Deny statement in it blocks the namespace's \
                 observability service accounts (remove or narrow that Deny)",
                d.irsa_role_name,
                describe_request(&collector)
            )
        } else {
            format!(
                "the trust policy of role {} does not admit {}: the trust statement for namespace {} is missing (run apply again)",
                d.irsa_role_name,
                describe_request(&collector),
                d.namespace
            )
        },
        transient: false,
    });
    let rec = record::load(ctx).await?;
    let preserved = match rec.trust.as_ref().map(|t| &t.original_document) {
        None => VerifyCheck {
            name: "irsa-trust-preserved".into(),
            passed: true,
            detail: "no trust policy before the first run is recorded: nothing to compare".into(),
            transient: false,
        },
        Some(original) => {
            // Another deployment's statement there (same role, another name or region) is its own
            // grant: its delete takes it away, which this deployment never relied on.
            let original = trust::without_other_deployments(original, &names::trust_statement_sid(&d.name, &d.region));
            let lost = lost_requests(&original, &current, &pre.oidc_provider_arn, &d.namespace);
            let mut detail = if lost.is_empty() {
                format!("role {} still admits every principal it admitted before the first run", d.irsa_role_name)
            } else {
                let shown: Vec<String> = lost.iter().take(3).map(describe_request).collect();
                format!(
                    "the trust policy of role {} no longer admits {} request(s) it admitted before the first run: {}{}",
                    d.irsa_role_name,
                    lost.len(),
                    shown.join("; "),
                    if lost.len() > 3 { "; ..." } else { "" }
                )
            };
            detail = clip(&detail, DETAIL_MAX_CHARS);
            VerifyCheck { name: "irsa-trust-preserved".into(), passed: lost.is_empty(), detail, transient: false }
        }
    };
    out.checks.push(preserved);

    // 5. Probe.
    out.checks.push(probe(ctx, &amp.prometheus_endpoint, &amp.remote_write_url).await);

    out.failures = out.checks.iter().filter(|c| !c.passed).map(|c| format!("{}: {}", c.name, c.detail)).collect();
    out.status = if out.failures.is_empty() { VerifyStatus::Passed } else { VerifyStatus::Failed };
    store(ctx, &parameter, &out).await?;
    if out.failures.is_empty() {
        tracing::info!(method = %out.policy_method.as_str(), "verification passed");
        return Ok(out);
    }
    tracing::warn!(failures = ?out.failures, mode = ?out.mode, "verification failed");
    if d.verify == VerifyMode::Warn {
        return Ok(out);
    }
    let message = format!("verification failed: {}", out.failures.join("; "));
    if out.checks.iter().filter(|c| !c.passed).all(|c| c.transient) {
        return Err(Error::Transient { operation: "verify".to_string(), message });
    }
    Err(Error::ResourceFailed(message))
}

/// Writes the result to SSM when it differs from the stored one.
async fn store(ctx: &Ctx, parameter: &str, out: &VerifyOutput) -> Result<()> {
    let value = serde_json::to_string(out).map_err(|e| Error::Internal(format!("verification JSON: {e}")))?;
    let current = ssm::get_parameter(&ctx.clients.ssm, parameter).await?;
    if current.as_deref() == Some(value.as_str()) {
        return Ok(());
    }
    let (tags, description) = (ctx.owner_tags(), record::description(ctx));
    ctx.write_unreported(|| {
        ssm::put_parameter(&ctx.clients.ssm, parameter, &value, current.is_some(), &tags, &description)
    })
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_endpoint_without_the_api_falls_back_to_our_evaluation() {
        use SimulateFailure::*;
        let c = classify_simulate_error;
        // moto: a bare 500 without an AWS error code; services answering "not implemented"
        assert!(matches!(c(Some(500), None, "Internal Server Error"), Unavailable(_)));
        assert!(matches!(c(Some(400), Some("InvalidAction"), "x"), Unavailable(_)));
        assert!(matches!(c(Some(501), None, "x"), Unavailable(_)));
        // throttling and 5xx with a code: retried, then a transient failure
        assert!(matches!(c(Some(400), Some("Throttling"), "Rate exceeded"), Transient(_)));
        assert!(matches!(c(Some(503), Some("ServiceUnavailable"), "x"), Transient(_)));
        assert!(matches!(c(Some(500), Some("ServiceFailure"), "x"), Transient(_)));
        assert!(matches!(c(None, None, "dispatch failure"), Transient(_)));
        // a denial or anything else: cannot prove, never a fallback
        assert!(matches!(c(Some(403), Some("AccessDenied"), "not authorized"), CannotProve(_)));
        assert!(matches!(c(Some(400), Some("InvalidInput"), "x"), CannotProve(_)));
        assert!(matches!(c(Some(400), Some("NoSuchEntity"), "x"), CannotProve(_)));
    }
    use crate::domain::iam::eval::pattern_matches as wildcard_match;
    use serde_json::json;

    const WS: &str = "arn:aws:aps:us-east-1:123456789012:workspace/ws-1";

    #[test]
    fn wildcards_match_like_iam() {
        assert!(wildcard_match("aps:*", "aps:remotewrite"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a?c*", "abcdef"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("arn:aws:logs:*:*:log-group:g:*", "arn:aws:logs:r:1:log-group:g:log-stream:s"));
        assert!(!wildcard_match("arn:aws:logs:*:*:log-group:g", "arn:aws:logs:r:1:log-group:g:log-stream:s"));
    }

    #[test]
    fn the_write_policy_grants_what_verify_requires() {
        let doc = policy::write_policy("aws", "us-east-1", "123456789012", "/dr/obs", WS);
        let stream = "arn:aws:logs:us-east-1:123456789012:log-group:/dr/obs:log-stream:otel-collector";
        for (a, r) in [
            ("aps:RemoteWrite", WS),
            ("logs:CreateLogStream", stream),
            ("logs:PutLogEvents", stream),
            ("xray:PutTraceSegments", "*"),
        ] {
            assert_eq!(evaluate(std::slice::from_ref(&doc), a, r), Decision::Allowed, "{a} {r}");
        }
        assert_eq!(evaluate(std::slice::from_ref(&doc), "aps:QueryMetrics", WS), Decision::ImplicitDeny);
        let read = policy::read_policy(WS);
        assert_eq!(evaluate(&[read], "aps:QueryMetrics", WS), Decision::Allowed);
    }

    #[test]
    fn actions_are_case_insensitive_and_resources_are_not() {
        let doc = json!({"Statement": {"Effect": "Allow", "Action": "APS:remote*", "Resource": "arn:aws:aps:*:*:workspace/WS-*"}});
        assert_eq!(
            evaluate(std::slice::from_ref(&doc), "aps:RemoteWrite", "arn:aws:aps:r:1:workspace/WS-1"),
            Decision::Allowed
        );
        assert_eq!(evaluate(&[doc], "aps:RemoteWrite", "arn:aws:aps:r:1:workspace/ws-1"), Decision::ImplicitDeny);
    }

    #[test]
    fn deny_wins_and_not_forms_invert() {
        let allow = json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
        let deny = json!({"Statement": [{"Effect": "Deny", "NotAction": "logs:*", "NotResource": "arn:aws:aps:*:*:workspace/ok"}]});
        let docs = [allow, deny];
        assert_eq!(evaluate(&docs, "aps:RemoteWrite", WS), Decision::ExplicitDeny);
        assert_eq!(evaluate(&docs, "aps:RemoteWrite", "arn:aws:aps:r:1:workspace/ok"), Decision::Allowed);
        assert_eq!(evaluate(&docs, "logs:PutLogEvents", WS), Decision::Allowed);
    }

    #[test]
    fn conditions_are_conservative_both_ways() {
        let cond = json!({"StringEquals": {"aws:RequestedRegion": "us-east-1"}});
        let allow_if =
            json!({"Statement": [{"Effect": "Allow", "Action": "aps:*", "Resource": "*", "Condition": cond}]});
        assert_eq!(evaluate(&[allow_if], "aps:RemoteWrite", WS), Decision::ImplicitDeny);
        let allow = json!({"Statement": [{"Effect": "Allow", "Action": "aps:*", "Resource": "*"}]});
        let deny_if =
            json!({"Statement": [{"Effect": "Deny", "Action": "aps:RemoteWrite", "Resource": "*", "Condition": cond}]});
        assert_eq!(evaluate(&[allow, deny_if], "aps:RemoteWrite", WS), Decision::ExplicitDeny);
    }

    #[test]
    fn policy_variables_never_grant_and_always_deny() {
        let allow = json!({"Statement": [{"Effect": "Allow", "Action": "aps:*", "Resource": "arn:aws:aps:*:*:workspace/${aws:username}"}]});
        assert_eq!(evaluate(&[allow], "aps:RemoteWrite", WS), Decision::ImplicitDeny);
        let all = json!({"Statement": [{"Effect": "Allow", "Action": "aps:*", "Resource": "*"}]});
        let deny = json!({"Statement": [{"Effect": "Deny", "Action": "aps:*", "Resource": "arn:aws:aps:*:*:workspace/${aws:username}"}]});
        assert_eq!(evaluate(&[all, deny], "aps:RemoteWrite", WS), Decision::ExplicitDeny);
    }

    #[test]
    fn a_boundary_must_allow_too() {
        let docs = RoleDocuments {
            identity: vec![json!({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})],
            boundary: Some(json!({"Statement": [{"Effect": "Allow", "Action": "logs:*", "Resource": "*"}]})),
        };
        assert_eq!(docs.decide("logs:PutLogEvents", "x"), Decision::Allowed);
        assert_eq!(docs.decide("aps:RemoteWrite", WS), Decision::ImplicitDeny);
    }

    #[test]
    fn trust_requests_come_from_the_original_principals() {
        let provider = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/X";
        let original = o11y_trust(provider);
        let reqs = original_requests(&original, provider, "dr-core");
        assert!(reqs.contains(&AssumeRequest::Service("ec2.amazonaws.com".into())));
        assert!(reqs.contains(&AssumeRequest::WebIdentity {
            provider_arn: provider.into(),
            sub: "system:serviceaccount:dr-core:app".into(),
            aud: STS_AUDIENCE.into()
        }));
        assert!(lost_requests(&original, &original, provider, "dr-core").is_empty());
        let mut narrowed = original.clone();
        narrowed["Statement"].as_array_mut().unwrap().remove(1);
        let lost = lost_requests(&original, &narrowed, provider, "dr-core");
        assert_eq!(lost, vec![AssumeRequest::Service("ec2.amazonaws.com".into())]);
        assert!(!trust::admits(&original, &collector_request(provider, "dr-core")));
    }

    fn o11y_trust(provider: &str) -> Value {
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity",
             "Condition": {"StringEquals": {"oidc.eks.us-east-1.amazonaws.com/id/X:sub": "system:serviceaccount:dr-core:app",
                                            "oidc.eks.us-east-1.amazonaws.com/id/X:aud": "sts.amazonaws.com"}}},
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]})
    }

    #[test]
    fn the_result_has_no_volatile_fields() {
        let out = VerifyOutput {
            status: VerifyStatus::Passed,
            mode: VerifyMode::Fail,
            policy_method: PolicyMethod::Evaluate,
            policy_method_note: None,
            evaluator: String::new(),
            checks: vec![VerifyCheck { name: "x".into(), passed: true, detail: "d".into(), transient: true }],
            failures: vec![],
            parameter: "/o11y/d/verification".into(),
        };
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(v["checks"][0], json!({"name": "x", "passed": true, "detail": "d"}));
        assert_eq!(v["policyMethod"], METHOD_EVALUATE);
    }
}
