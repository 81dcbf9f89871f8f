//! The in-process mock tier: real step functions against SDK clients whose responses come from
//! `aws-smithy-mocks` rules, no network and no emulator. It covers the branches the emulated
//! stack (moto, the Grafana emulator) cannot produce on demand: several workspaces sharing an
//! alias, workspaces in DELETING / CREATION_FAILED / DELETION_FAILED, a `ConflictException` from
//! `DeleteWorkspace`, a managed policy at the 5-version limit, throttling in the middle of a
//! paginated list, the SSM create/overwrite race and the Advanced tier. It adds a tier; the
//! emulator suites stay the reference for the happy paths.
//!
//! How it works: [`clients`] builds an `o11y_shared::aws::Clients` whose service clients carry
//! a `MockResponseInterceptor` (rules matched in `RuleMode::MatchAny`; a call no rule matches
//! panics, so an unexpected AWS call fails the test) and retries disabled (one attempt, so a
//! throttled call fails at once). Each test asserts what the step returned and which calls it
//! made (`Rule::num_calls`, requests captured by `then_compute_output`), never only what it set
//! up.
//!
//! Modeled errors carry their code in `ErrorMetadata` only when deserialized from the wire; a
//! mocked one gets it from [`meta`], so that `from_sdk` reports it (its code and message) as the wire would.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test fixtures fail the test by panicking, like the #[test] functions they serve"
)]

use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::DateTime;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use o11y_shared::aws::Clients;
use o11y_shared::ctx::{Ctx, PlanLog};
use o11y_shared::input::{self, Action};
use o11y_shared::names;
use o11y_shared::record::{self, keys, ResourceRecord};
use o11y_shared::state::{ChangeKind, DeleteOutput, PreflightOutput, ProvisionState};
use o11y_shared::steps::iam_util::{self, PolicySpec};
use o11y_shared::steps::{amp_workspace, grafana_workspace};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const ACCOUNT: &str = "123456789012";
/// The record of the minimal input's deployment (`ssmPrefix` defaults to `/o11y/<name>`).
const RECORD: &str = "/o11y/dr-prod/provisioner-state";
const POLICY: &str = "dr-prod-observability-write";
const POLICY_ARN: &str = "arn:aws:iam::123456789012:policy/dr-prod-observability-write";

fn input() -> Value {
    json!({"deploymentName":"dr-prod","cluster":{"name":"dr-eks"},"namespace":"dr-core","irsaRoleName":"dr-core-irsa"})
}

fn state() -> ProvisionState {
    ProvisionState {
        preflight: Some(PreflightOutput {
            action: Action::Apply,
            account_id: ACCOUNT.to_string(),
            region: "us-east-1".to_string(),
            partition: "aws".to_string(),
            oidc_issuer: "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE".to_string(),
            oidc_provider_arn: format!(
                "arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"
            ),
            irsa_role_arn: format!("arn:aws:iam::{ACCOUNT}:role/dr-core-irsa"),
            rollback_on_failure: false,
            trust_policy_quota: 2048,
            input: None,
            nothing_recorded: false,
            note: None,
            absent: Vec::new(),
        }),
        ..ProvisionState::new(input())
    }
}

/// A mocked client of `$krate` answering from `$rules`, with retries disabled.
macro_rules! mocked {
    ($krate:ident, $rules:expr) => {
        mock_client!($krate, RuleMode::MatchAny, $rules, |b| b.retry_config(RetryConfig::disabled()))
    };
}

/// Clients whose every service answers only from the given rules (STS and EKS from none).
fn clients(iam: &[&Rule], amp: &[&Rule], grafana: &[&Rule], ssm: &[&Rule]) -> Clients {
    let conf =
        SdkConfig::builder().behavior_version(BehaviorVersion::latest()).region(Region::new("us-east-1")).build();
    let none: &[&Rule] = &[];
    let mut c = Clients::new(&conf);
    c.iam = mocked!(aws_sdk_iam, iam);
    c.amp = mocked!(aws_sdk_amp, amp);
    c.grafana = mocked!(aws_sdk_grafana, grafana);
    c.ssm = mocked!(aws_sdk_ssm, ssm);
    c.sts = mocked!(aws_sdk_sts, none);
    c.eks = mocked!(aws_sdk_eks, none);
    c
}

fn ctx(clients: Clients, plan: bool) -> Ctx {
    let deployment = input::resolve(&input(), Some("us-east-1")).expect("the fixture input is valid");
    Ctx {
        clients,
        deployment,
        plan: plan.then(PlanLog::default),
        execution: None,
        record_cache: Default::default(),
        iam_reads: Default::default(),
    }
}

/// Error metadata with `code`, as the SDK's deserializer would have filled it.
fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(format!("mocked {code}")).build()
}

fn owner_tags() -> [(&'static str, &'static str); 2] {
    [(names::OWNER_TAG, "dr-prod"), (names::MANAGED_BY_TAG, names::MANAGED_BY_VALUE)]
}

/// What a rule saw, in call order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

// SSM: the deployment's record.

fn record_absent() -> Rule {
    use aws_sdk_ssm::operation::get_parameter::GetParameterError;
    use aws_sdk_ssm::types::error::ParameterNotFound;
    mock!(aws_sdk_ssm::Client::get_parameter).match_requests(|r| r.name() == Some(RECORD)).then_error(|| {
        GetParameterError::ParameterNotFound(ParameterNotFound::builder().meta(meta("ParameterNotFound")).build())
    })
}

fn record_is(record: Value) -> Rule {
    use aws_sdk_ssm::operation::get_parameter::GetParameterOutput;
    use aws_sdk_ssm::types::Parameter;
    let text = record.to_string();
    mock!(aws_sdk_ssm::Client::get_parameter).match_requests(|r| r.name() == Some(RECORD)).then_output(move || {
        GetParameterOutput::builder().parameter(Parameter::builder().name(RECORD).value(text.clone()).build()).build()
    })
}

/// DescribeParameters (the tier read before an overwrite): the parameter with `tier`, or none.
fn describe_tier(tier: Option<&'static str>) -> Rule {
    use aws_sdk_ssm::operation::describe_parameters::DescribeParametersOutput;
    use aws_sdk_ssm::types::{ParameterMetadata, ParameterTier};
    mock!(aws_sdk_ssm::Client::describe_parameters).then_compute_output(move |r| {
        let name = r.parameter_filters().first().map(|f| f.values()[0].clone()).unwrap_or_default();
        let found = tier.map(|t| ParameterMetadata::builder().name(name).tier(ParameterTier::from(t)).build());
        DescribeParametersOutput::builder().set_parameters(found.map(|p| vec![p])).build()
    })
}

/// Every PutParameter, logged as JSON `{name, value, overwrite, tags, tier}`.
fn put_parameter(log: &Log) -> Rule {
    use aws_sdk_ssm::operation::put_parameter::PutParameterOutput;
    let log = log.clone();
    mock!(aws_sdk_ssm::Client::put_parameter).then_compute_output(move |r| {
        log.push(
            json!({
                "name": r.name(),
                "value": r.value(),
                "overwrite": r.overwrite(),
                "tags": r.tags().iter().map(|t| format!("{}={}", t.key(), t.value())).collect::<Vec<_>>(),
                "tier": r.tier().map(|t| t.as_str()),
            })
            .to_string(),
        );
        PutParameterOutput::builder().version(1).build()
    })
}

fn puts(log: &Log) -> Vec<Value> {
    log.all().iter().map(|s| serde_json::from_str(s).unwrap()).collect()
}

/// The record a logged PutParameter wrote.
fn written_record(put: &Value) -> Value {
    serde_json::from_str(put["value"].as_str().expect("a value")).expect("the record is JSON")
}

// AMP.

fn amp_summary(
    id: &str,
    alias: &str,
    status: aws_sdk_amp::types::WorkspaceStatusCode,
    owned: bool,
) -> aws_sdk_amp::types::WorkspaceSummary {
    use aws_sdk_amp::types::{WorkspaceStatus, WorkspaceSummary};
    let mut b = WorkspaceSummary::builder()
        .workspace_id(id)
        .alias(alias)
        .arn(format!("arn:aws:aps:us-east-1:{ACCOUNT}:workspace/{id}"))
        .status(WorkspaceStatus::builder().status_code(status).build().unwrap())
        .created_at(DateTime::from_secs(1_700_000_000));
    if owned {
        for (k, v) in owner_tags() {
            b = b.tags(k, v);
        }
    }
    b.build().unwrap()
}

fn amp_list(workspaces: Vec<aws_sdk_amp::types::WorkspaceSummary>) -> Rule {
    use aws_sdk_amp::operation::list_workspaces::ListWorkspacesOutput;
    mock!(aws_sdk_amp::Client::list_workspaces)
        .match_requests(|r| r.alias() == Some("dr-prod"))
        .then_output(move || ListWorkspacesOutput::builder().set_workspaces(Some(workspaces.clone())).build().unwrap())
}

fn amp_describe(id: &'static str, status: aws_sdk_amp::types::WorkspaceStatusCode) -> Rule {
    use aws_sdk_amp::operation::describe_workspace::DescribeWorkspaceOutput;
    use aws_sdk_amp::types::{WorkspaceDescription, WorkspaceStatus};
    mock!(aws_sdk_amp::Client::describe_workspace).match_requests(move |r| r.workspace_id() == Some(id)).then_output(
        move || {
            DescribeWorkspaceOutput::builder()
                .workspace(
                    WorkspaceDescription::builder()
                        .workspace_id(id)
                        .alias("dr-prod")
                        .arn(format!("arn:aws:aps:us-east-1:{ACCOUNT}:workspace/{id}"))
                        .status(WorkspaceStatus::builder().status_code(status.clone()).build().unwrap())
                        .prometheus_endpoint(format!("https://aps-workspaces.us-east-1.amazonaws.com/workspaces/{id}/"))
                        .created_at(DateTime::from_secs(1_700_000_000))
                        .build()
                        .unwrap(),
                )
                .build()
        },
    )
}

fn amp_create(log: &Log) -> Rule {
    use aws_sdk_amp::operation::create_workspace::CreateWorkspaceOutput;
    use aws_sdk_amp::types::{WorkspaceStatus, WorkspaceStatusCode};
    let log = log.clone();
    mock!(aws_sdk_amp::Client::create_workspace).then_compute_output(move |r| {
        let mut tags: Vec<String> = r.tags().into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
        tags.sort();
        log.push(json!({"alias": r.alias(), "clientToken": r.client_token(), "tags": tags}).to_string());
        CreateWorkspaceOutput::builder()
            .workspace_id("ws-new")
            .arn(format!("arn:aws:aps:us-east-1:{ACCOUNT}:workspace/ws-new"))
            .status(WorkspaceStatus::builder().status_code(WorkspaceStatusCode::Creating).build().unwrap())
            .build()
            .unwrap()
    })
}

// Grafana.

fn grafana_describe(id: &'static str, status: aws_sdk_grafana::types::WorkspaceStatus) -> Rule {
    use aws_sdk_grafana::operation::describe_workspace::DescribeWorkspaceOutput;
    use aws_sdk_grafana::types::WorkspaceDescription;
    mock!(aws_sdk_grafana::Client::describe_workspace)
        .match_requests(move |r| r.workspace_id() == Some(id))
        .then_output(move || {
            let mut ws = WorkspaceDescription::builder()
                .id(id)
                .name("dr-prod")
                .status(status.clone())
                .endpoint(format!("{id}.grafana-workspace.us-east-1.amazonaws.com"))
                .grafana_version("10.4")
                .set_data_sources(Some(vec![]))
                .created(DateTime::from_secs(1_700_000_000))
                .modified(DateTime::from_secs(1_700_000_000));
            for (k, v) in owner_tags() {
                ws = ws.tags(k, v);
            }
            DescribeWorkspaceOutput::builder().workspace(ws.build().unwrap()).build()
        })
}

fn grafana_not_found() -> aws_sdk_grafana::types::error::ResourceNotFoundException {
    aws_sdk_grafana::types::error::ResourceNotFoundException::builder()
        .message("Workspace not found")
        .resource_id("g-123")
        .resource_type("WORKSPACE")
        .meta(meta("ResourceNotFoundException"))
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. AMP: the alias is not unique
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn amp_alias_shared_by_two_live_workspaces_is_a_conflict_and_nothing_is_created() {
    use aws_sdk_amp::types::WorkspaceStatusCode as S;
    let list = amp_list(vec![
        amp_summary("ws-a", "dr-prod", S::Active, false),
        amp_summary("ws-b", "dr-prod", S::Active, true),
        // AWS filters `alias` as a prefix: this one is another alias.
        amp_summary("ws-c", "dr-prod-staging", S::Active, true),
        // Being deleted: not a candidate.
        amp_summary("ws-d", "dr-prod", S::Deleting, true),
    ]);
    let created = Log::default();
    let create = amp_create(&created);
    let put_log = Log::default();
    let (get, put) = (record_absent(), put_parameter(&put_log));
    let ctx = ctx(clients(&[], &[&list, &create], &[], &[&get, &put]), false);

    let err = amp_workspace::run(&ctx, &state()).await.expect_err("two workspaces share the alias");

    assert_eq!(err.name(), "ConflictError", "{err}");
    let msg = err.to_string();
    assert!(msg.contains("2 AMP workspaces"), "{msg}");
    assert!(msg.contains("ws-a") && msg.contains("ws-b"), "names both ids: {msg}");
    assert!(!msg.contains("ws-c") && !msg.contains("ws-d"), "only exact, live aliases: {msg}");
    assert_eq!(list.num_calls(), 1);
    assert_eq!(create.num_calls(), 0, "no CreateWorkspace on a conflict");
    assert_eq!(put.num_calls(), 0, "the record is not touched on a conflict");
}

// ---------------------------------------------------------------------------------------------
// 2. Deleting-status paths
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn amp_workspace_being_deleted_is_ignored_and_a_new_one_is_created_and_recorded() {
    use aws_sdk_amp::types::WorkspaceStatusCode as S;
    // Only a DELETING workspace holds the alias; DescribeWorkspace answers for the new one only
    // (describing ws-old would match no rule and fail the test).
    let list = amp_list(vec![amp_summary("ws-old", "dr-prod", S::Deleting, true)]);
    let created = Log::default();
    let create = amp_create(&created);
    let describe = amp_describe("ws-new", S::Creating);
    let put_log = Log::default();
    let (get, put) = (record_absent(), put_parameter(&put_log));
    let ctx = ctx(clients(&[], &[&list, &create, &describe], &[], &[&get, &put]), false);

    let out = amp_workspace::run(&ctx, &state()).await.expect("a new workspace");

    assert_eq!(out.workspace_id, "ws-new");
    assert!(out.created && !out.adopted, "{out:?}");
    assert_eq!(out.status, "CREATING");
    assert_eq!(
        out.remote_write_url,
        "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-new/api/v1/remote_write"
    );
    assert_eq!(create.num_calls(), 1);
    let req: Value = serde_json::from_str(&created.all()[0]).unwrap();
    assert_eq!(req["alias"], "dr-prod");
    assert!(!req["clientToken"].as_str().unwrap_or_default().is_empty(), "idempotent create: {req}");
    assert_eq!(
        req["tags"],
        json!(["o11y-provisioner:deployment=dr-prod", "o11y-provisioner:managed-by=o11y-provisioner"])
    );
    // The record now names the new workspace as ours (first write: created with tags), not yet
    // published (a delete before publish removes it: it holds no metrics).
    let puts = puts(&put_log);
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0]["overwrite"], Value::Null);
    assert_eq!(puts[0]["tags"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        written_record(&puts[0])["resources"][keys::AMP_WORKSPACE],
        json!({"id": "ws-new", "owned": true, "attachedByUs": false, "unpublished": true})
    );
}

#[tokio::test]
async fn amp_workspace_in_creation_failed_is_recorded_then_reported_as_failed() {
    use aws_sdk_amp::types::WorkspaceStatusCode as S;
    let list = amp_list(vec![amp_summary("ws-x", "dr-prod", S::CreationFailed, true)]);
    let create = amp_create(&Log::default());
    let describe = amp_describe("ws-x", S::CreationFailed);
    let put_log = Log::default();
    let (get, put) = (record_absent(), put_parameter(&put_log));
    let ctx = ctx(clients(&[], &[&list, &create, &describe], &[], &[&get, &put]), false);

    let err = amp_workspace::run(&ctx, &state()).await.expect_err("CREATION_FAILED never becomes ACTIVE");

    assert_eq!(err.name(), "ResourceFailedError", "{err}");
    assert!(err.to_string().contains("ws-x") && err.to_string().contains("CREATION_FAILED"), "{err}");
    assert_eq!(create.num_calls(), 0);
    // Recorded as ours first, so that a delete can still remove it.
    let puts = puts(&put_log);
    assert_eq!(puts.len(), 1);
    assert_eq!(written_record(&puts[0])["resources"][keys::AMP_WORKSPACE]["id"], "ws-x");
    assert_eq!(written_record(&puts[0])["resources"][keys::AMP_WORKSPACE]["owned"], true);
}

#[tokio::test]
async fn grafana_delete_answered_conflict_is_already_deleting_and_keeps_the_record() {
    use aws_sdk_grafana::operation::delete_workspace::DeleteWorkspaceError;
    use aws_sdk_grafana::types::error::ConflictException;
    use aws_sdk_grafana::types::WorkspaceStatus;
    let get = record_is(json!({"resources": {"grafanaWorkspace": {"id": "g-123", "owned": true}}}));
    let put_log = Log::default();
    let put = put_parameter(&put_log);
    let delete = mock!(aws_sdk_grafana::Client::delete_workspace)
        .match_requests(|r| r.workspace_id() == Some("g-123"))
        .then_error(|| {
            DeleteWorkspaceError::ConflictException(
                ConflictException::builder()
                    .message("Workspace is being deleted")
                    .resource_id("g-123")
                    .resource_type("WORKSPACE")
                    .meta(meta("ConflictException"))
                    .build()
                    .unwrap(),
            )
        });
    let describe = grafana_describe("g-123", WorkspaceStatus::Deleting);
    let ctx = ctx(clients(&[], &[], &[&delete, &describe], &[&get, &put]), false);

    let out = grafana_workspace::delete(&ctx, &state()).await.expect("a re-run waits for the deletion");

    assert_eq!(delete.num_calls(), 1);
    assert_eq!(describe.num_calls(), 1);
    assert_eq!(out.status.as_deref(), Some("DELETING"));
    assert_eq!(out.id.as_deref(), Some("g-123"));
    assert_eq!(out.deleted, vec!["g-123".to_string()]);
    assert!(out.retained.is_empty());
    assert_eq!(put.num_calls(), 0, "still DELETING: the record keeps the workspace");
}

#[tokio::test]
async fn grafana_delete_status_once_gone_forgets_the_workspace_only() {
    use aws_sdk_grafana::operation::describe_workspace::DescribeWorkspaceError;
    let get = record_is(json!({"resources": {
        "grafanaWorkspace": {"id": "g-123", "owned": true},
        "ampWorkspace": {"id": "ws-1", "owned": true},
    }}));
    let put_log = Log::default();
    let put = put_parameter(&put_log);
    let describe = mock!(aws_sdk_grafana::Client::describe_workspace)
        .then_error(|| DescribeWorkspaceError::ResourceNotFoundException(grafana_not_found()));
    let tier = describe_tier(None);
    let ctx = ctx(clients(&[], &[], &[&describe], &[&get, &put, &tier]), false);

    let out = grafana_workspace::delete_status(&ctx, "g-123", DeleteOutput::default()).await.expect("gone");

    assert_eq!(out.status.as_deref(), Some(grafana_workspace::DELETED));
    let puts = puts(&put_log);
    assert_eq!(puts.len(), 1, "{puts:?}");
    // The record exists: an overwrite, which SSM refuses together with tags.
    assert_eq!(puts[0]["overwrite"], true);
    assert_eq!(puts[0]["tags"], json!([]));
    let resources = &written_record(&puts[0])["resources"];
    assert!(resources.get(keys::GRAFANA_WORKSPACE).is_none(), "{resources}");
    assert_eq!(resources[keys::AMP_WORKSPACE]["id"], "ws-1");
}

#[tokio::test]
async fn grafana_delete_status_deletion_failed_is_a_resource_failure() {
    use aws_sdk_grafana::types::WorkspaceStatus;
    let put_log = Log::default();
    let (get, put) = (record_absent(), put_parameter(&put_log));
    let describe = grafana_describe("g-123", WorkspaceStatus::DeletionFailed);
    let ctx = ctx(clients(&[], &[], &[&describe], &[&get, &put]), false);

    let err = grafana_workspace::delete_status(&ctx, "g-123", DeleteOutput::default()).await.expect_err("failed");

    assert_eq!(err.name(), "ResourceFailedError", "{err}");
    assert!(err.to_string().contains("g-123"), "{err}");
    assert_eq!(put.num_calls(), 0);
}

#[tokio::test]
async fn grafana_delete_without_record_ignores_a_namesake_being_deleted() {
    use aws_sdk_grafana::operation::list_workspaces::ListWorkspacesOutput;
    use aws_sdk_grafana::types::{WorkspaceStatus, WorkspaceSummary};
    let summary = |id: &str, name: &str, status: WorkspaceStatus| {
        WorkspaceSummary::builder()
            .id(id)
            .name(name)
            .status(status)
            .endpoint(format!("{id}.grafana-workspace.us-east-1.amazonaws.com"))
            .grafana_version("10.4")
            .created(DateTime::from_secs(1_700_000_000))
            .modified(DateTime::from_secs(1_700_000_000))
            .build()
            .unwrap()
    };
    let name = input::resolve(&input(), Some("us-east-1")).unwrap().grafana_workspace_name;
    let workspaces = vec![
        summary("g-old", &name, WorkspaceStatus::Deleting),
        summary("g-other", "someone-else", WorkspaceStatus::Active),
    ];
    let list = mock!(aws_sdk_grafana::Client::list_workspaces)
        .then_output(move || ListWorkspacesOutput::builder().set_workspaces(Some(workspaces.clone())).build().unwrap());
    // No DescribeWorkspace or DeleteWorkspace rule: either call would fail the test.
    let put_log = Log::default();
    let (get, put) = (record_absent(), put_parameter(&put_log));
    let ctx = ctx(clients(&[], &[], &[&list], &[&get, &put]), false);

    let out = grafana_workspace::delete(&ctx, &state()).await.expect("nothing of ours to delete");

    assert_eq!(list.num_calls(), 1);
    assert_eq!(out.status.as_deref(), Some(grafana_workspace::DELETED));
    assert!(out.deleted.is_empty() && out.retained.is_empty(), "{out:?}");
    assert_eq!(put.num_calls(), 0);
}

// ---------------------------------------------------------------------------------------------
// 3. The 5-version limit of a managed policy
// ---------------------------------------------------------------------------------------------

/// The document we want: remote write only.
fn desired_policy() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "AmpRemoteWrite", "Effect": "Allow", "Action": ["aps:RemoteWrite"],
        "Resource": format!("arn:aws:aps:us-east-1:{ACCOUNT}:workspace/ws-1"),
    }]})
}

/// The live default (v2): one more action.
fn live_policy() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "AmpRemoteWrite", "Effect": "Allow", "Action": ["aps:RemoteWrite", "aps:QueryMetrics"],
        "Resource": format!("arn:aws:aps:us-east-1:{ACCOUNT}:workspace/ws-1"),
    }]})
}

/// IAM mocks of an owned policy whose default is v2 and that has `versions`
/// (`(id, day of creation)`): the writes logged in order into `writes`.
struct PolicyMocks {
    rules: Vec<Rule>,
    delete: Rule,
    create: Rule,
}

fn policy_mocks(versions: &[(&'static str, u32)], writes: &Log) -> PolicyMocks {
    use aws_sdk_iam::operation::create_policy_version::CreatePolicyVersionOutput;
    use aws_sdk_iam::operation::delete_policy_version::DeletePolicyVersionOutput;
    use aws_sdk_iam::operation::get_policy::GetPolicyOutput;
    use aws_sdk_iam::operation::get_policy_version::GetPolicyVersionOutput;
    use aws_sdk_iam::operation::list_policy_versions::ListPolicyVersionsOutput;
    use aws_sdk_iam::types::{Policy, PolicyVersion, Tag};

    // GetPolicy answers with the policy's tags (no ListPolicyTags: a call to it finds no rule).
    let get_policy = mock!(aws_sdk_iam::Client::get_policy)
        .match_requests(|r| r.policy_arn() == Some(POLICY_ARN))
        .then_output(|| {
            let tags: Vec<Tag> =
                owner_tags().iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build().unwrap()).collect();
            GetPolicyOutput::builder()
                .policy(
                    Policy::builder()
                        .arn(POLICY_ARN)
                        .policy_name(POLICY)
                        .default_version_id("v2")
                        .set_tags(Some(tags))
                        .build(),
                )
                .build()
        });
    // IAM returns the document URL-encoded.
    let encoded = utf8_percent_encode(&live_policy().to_string(), NON_ALPHANUMERIC).to_string();
    let get_version = mock!(aws_sdk_iam::Client::get_policy_version)
        .match_requests(|r| r.policy_arn() == Some(POLICY_ARN) && r.version_id() == Some("v2"))
        .then_output(move || {
            GetPolicyVersionOutput::builder()
                .policy_version(
                    PolicyVersion::builder()
                        .version_id("v2")
                        .is_default_version(true)
                        .document(encoded.clone())
                        .build(),
                )
                .build()
        });
    let listed: Vec<PolicyVersion> = versions
        .iter()
        .map(|(id, day)| {
            PolicyVersion::builder()
                .version_id(*id)
                .is_default_version(*id == "v2")
                .create_date(DateTime::from_secs(1_600_000_000 + i64::from(*day) * 86_400))
                .build()
        })
        .collect();
    let list_versions = mock!(aws_sdk_iam::Client::list_policy_versions)
        .then_output(move || ListPolicyVersionsOutput::builder().set_versions(Some(listed.clone())).build());
    let log = writes.clone();
    let delete = mock!(aws_sdk_iam::Client::delete_policy_version).then_compute_output(move |r| {
        log.push(format!("DeletePolicyVersion {}", r.version_id().unwrap_or_default()));
        DeletePolicyVersionOutput::builder().build()
    });
    let log = writes.clone();
    let create = mock!(aws_sdk_iam::Client::create_policy_version).then_compute_output(move |r| {
        log.push(format!(
            "CreatePolicyVersion default={:?} {}",
            r.set_as_default(),
            r.policy_document().unwrap_or_default()
        ));
        CreatePolicyVersionOutput::builder()
            .policy_version(PolicyVersion::builder().version_id("v7").is_default_version(true).build())
            .build()
    });
    PolicyMocks { rules: vec![get_policy, get_version, list_versions], delete, create }
}

fn policy_spec(document: &Value) -> PolicySpec<'_> {
    PolicySpec {
        step: "write-policy",
        record_key: keys::WRITE_POLICY,
        name: POLICY,
        description: "remote write",
        document,
        absent: false,
    }
}

/// Five versions, listed out of date order; the default (v2) is the oldest by date, so the
/// version to prune is v3: the oldest *non-default* one.
const FIVE_VERSIONS: &[(&str, u32)] = &[("v5", 5), ("v2", 2), ("v6", 6), ("v3", 3), ("v4", 4)];

#[tokio::test]
async fn policy_at_five_versions_prunes_the_oldest_non_default_then_creates_the_default() {
    let writes = Log::default();
    let m = policy_mocks(FIVE_VERSIONS, &writes);
    let put_log = Log::default();
    let (get, put) = (record_absent(), put_parameter(&put_log));
    let iam: Vec<&Rule> = m.rules.iter().chain([&m.delete, &m.create]).collect();
    let ctx = ctx(clients(&iam, &[], &[], &[&get, &put]), false);
    let doc = desired_policy();

    let out = iam_util::ensure_managed_policy(&ctx, ACCOUNT, &policy_spec(&doc)).await.expect("converged");

    assert_eq!(out.version_pruned.as_deref(), Some("v3"));
    assert!(out.version_created && !out.created && !out.adopted, "{out:?}");
    assert_eq!(out.default_version_id, "v7");
    let writes = writes.all();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0], "DeletePolicyVersion v3", "prune first: IAM refuses a sixth version");
    let sent = writes[1].strip_prefix("CreatePolicyVersion default=Some(true) ").expect("set as default");
    assert_eq!(serde_json::from_str::<Value>(sent).unwrap(), doc);
    // Ownership recorded before the write.
    let puts = puts(&put_log);
    assert_eq!(puts.len(), 1);
    assert_eq!(
        written_record(&puts[0])["resources"][keys::WRITE_POLICY],
        json!({"id": POLICY_ARN, "owned": true, "attachedByUs": false})
    );
}

#[tokio::test]
async fn policy_at_five_versions_in_plan_reports_the_version_to_prune_and_writes_nothing() {
    let writes = Log::default();
    let m = policy_mocks(FIVE_VERSIONS, &writes);
    let put_log = Log::default();
    let (get, put) = (record_absent(), put_parameter(&put_log));
    let iam: Vec<&Rule> = m.rules.iter().chain([&m.delete, &m.create]).collect();
    let ctx = ctx(clients(&iam, &[], &[], &[&get, &put]), true);
    let doc = desired_policy();

    let out = iam_util::ensure_managed_policy(&ctx, ACCOUNT, &policy_spec(&doc)).await.expect("planned");

    assert_eq!(m.delete.num_calls(), 0);
    assert_eq!(m.create.num_calls(), 0);
    assert_eq!(put.num_calls(), 0, "plan never writes the record");
    assert_eq!(out.version_pruned.as_deref(), Some("v3"));
    assert_eq!(out.default_version_id, "v2", "the live default until apply");
    let changes = ctx.plan.as_ref().unwrap().changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    let c = &changes[0];
    assert_eq!((c.step.as_str(), c.action), ("write-policy", ChangeKind::Update));
    assert_eq!(c.resource, format!("policy {POLICY}"));
    assert_eq!(c.details["versionToPrune"], "v3");
    assert_eq!(c.details["versions"], 5);
    assert_eq!(c.details["versionLimit"], 5);
    assert_eq!(c.details["statementsRemoved"].as_array().map(Vec::len), Some(1), "{}", c.details);
    assert_eq!(c.details["statementsAdded"].as_array().map(Vec::len), Some(1), "{}", c.details);
}

#[tokio::test]
async fn policy_below_the_limit_creates_a_version_without_pruning() {
    let writes = Log::default();
    let m = policy_mocks(&[("v2", 2), ("v3", 3), ("v4", 4), ("v5", 5)], &writes);
    let put_log = Log::default();
    let (get, put) = (record_absent(), put_parameter(&put_log));
    let iam: Vec<&Rule> = m.rules.iter().chain([&m.delete, &m.create]).collect();
    let ctx = ctx(clients(&iam, &[], &[], &[&get, &put]), false);
    let doc = desired_policy();

    let out = iam_util::ensure_managed_policy(&ctx, ACCOUNT, &policy_spec(&doc)).await.expect("converged");

    assert_eq!(out.version_pruned, None);
    assert_eq!(m.delete.num_calls(), 0);
    assert_eq!(m.create.num_calls(), 1);
    assert_eq!(out.default_version_id, "v7");
}

// ---------------------------------------------------------------------------------------------
// 4. Throttling in a list call
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn iam_list_policies_throttled_is_a_transient_error() {
    use aws_sdk_iam::operation::get_policy::GetPolicyError;
    use aws_sdk_iam::types::error::NoSuchEntityException;
    // Not at path `/`: the step falls back to listing the account's policies.
    let get_policy = mock!(aws_sdk_iam::Client::get_policy).then_error(|| {
        GetPolicyError::NoSuchEntityException(NoSuchEntityException::builder().meta(meta("NoSuchEntity")).build())
    });
    // IAM's own wire answer (awsQuery XML, HTTP 400), through the SDK's real deserializer.
    let list = mock!(aws_sdk_iam::Client::list_policies).then_http_response(|| {
        HttpResponse::new(
            StatusCode::try_from(400).unwrap(),
            SdkBody::from(
                "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type>\
                 <Code>Throttling</Code><Message>Rate exceeded</Message></Error>\
                 <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>",
            ),
        )
    });
    let create = mock!(aws_sdk_iam::Client::create_policy)
        .then_output(|| aws_sdk_iam::operation::create_policy::CreatePolicyOutput::builder().build());
    let put_log = Log::default();
    let (get, put) = (record_absent(), put_parameter(&put_log));
    let ctx = ctx(clients(&[&get_policy, &list, &create], &[], &[], &[&get, &put]), false);
    let doc = desired_policy();

    let err = iam_util::ensure_managed_policy(&ctx, ACCOUNT, &policy_spec(&doc)).await.expect_err("throttled");

    assert_eq!(err.name(), "TransientError", "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().starts_with("iam:ListPolicies: Throttling"), "{err}");
    assert_eq!(list.num_calls(), 1, "one attempt: retries are the state machine's");
    assert_eq!(create.num_calls(), 0, "a throttled lookup must not look like an absent policy");
    assert_eq!(put.num_calls(), 0);
}

/// A ListWorkspaces whose first page names another alias and points to a second page, which
/// answers `status` with `body`.
fn amp_list_second_page_fails(status: u16, body: &str) -> Rule {
    use aws_sdk_amp::operation::list_workspaces::ListWorkspacesOutput;
    use aws_sdk_amp::types::WorkspaceStatusCode as S;
    mock!(aws_sdk_amp::Client::list_workspaces)
        .sequence()
        .output(|| {
            ListWorkspacesOutput::builder()
                .workspaces(amp_summary("ws-c", "dr-prod-staging", S::Active, false))
                .next_token("page-2")
                .build()
                .unwrap()
        })
        .http_status(status, Some(body.to_string()))
        .build()
}

#[tokio::test]
async fn amp_list_workspaces_429_on_the_second_page_is_a_transient_error() {
    // No error code in the body: only the HTTP status says "throttled".
    let list = amp_list_second_page_fails(429, r#"{"message":"Rate exceeded"}"#);
    let create = amp_create(&Log::default());
    let put_log = Log::default();
    let (get, put) = (record_absent(), put_parameter(&put_log));
    let ctx = ctx(clients(&[], &[&list, &create], &[], &[&get, &put]), false);

    let err = amp_workspace::run(&ctx, &state()).await.expect_err("throttled");

    assert_eq!(err.name(), "TransientError", "{err}");
    assert!(err.to_string().starts_with("aps:ListWorkspaces:"), "{err}");
    assert_eq!(list.num_calls(), 2, "the paginator followed the token, once each");
    assert_eq!(create.num_calls(), 0, "an incomplete listing must not lead to a create");
}

#[tokio::test]
async fn amp_list_workspaces_access_denied_is_not_transient() {
    // The control for the test above: a 4xx that is not throttling stays an AwsError.
    let list = amp_list_second_page_fails(
        403,
        r#"{"__type":"AccessDeniedException","message":"User is not authorized to perform aps:ListWorkspaces"}"#,
    );
    let create = amp_create(&Log::default());
    let (get, put) = (record_absent(), put_parameter(&Log::default()));
    let ctx = ctx(clients(&[], &[&list, &create], &[], &[&get, &put]), false);

    let err = amp_workspace::run(&ctx, &state()).await.expect_err("denied");

    assert_eq!(err.name(), "AwsError", "{err}");
    assert_eq!(err.aws_code(), Some("AccessDeniedException"));
    assert!(!err.is_retryable());
    assert_eq!(create.num_calls(), 0);
}

// ---------------------------------------------------------------------------------------------
// 5. SSM: the create/overwrite race and the tiers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn record_created_meanwhile_by_another_run_is_overwritten_without_tags() {
    use aws_sdk_ssm::operation::put_parameter::{PutParameterError, PutParameterOutput};
    use aws_sdk_ssm::types::error::ParameterAlreadyExists;
    // We read no record, so we create one (with tags, no overwrite)...
    let create = mock!(aws_sdk_ssm::Client::put_parameter)
        .match_requests(|r| r.overwrite() != Some(true) && r.tags().len() == 2)
        .then_error(|| {
            PutParameterError::ParameterAlreadyExists(
                ParameterAlreadyExists::builder().meta(meta("ParameterAlreadyExists")).build(),
            )
        });
    // ...and, since another run created it meanwhile, overwrite it: without tags, which SSM
    // refuses together with overwrite (a tagged overwrite would match no rule).
    let values = Log::default();
    let log = values.clone();
    let overwrite = mock!(aws_sdk_ssm::Client::put_parameter)
        .match_requests(|r| r.overwrite() == Some(true) && r.tags().is_empty())
        .then_compute_output(move |r| {
            log.push(r.value().unwrap_or_default());
            PutParameterOutput::builder().version(2).build()
        });
    let (get, tier) = (record_absent(), describe_tier(None));
    let ctx = ctx(clients(&[], &[], &[], &[&get, &create, &overwrite, &tier]), false);
    let entry = ResourceRecord { id: "ws-1".to_string(), owned: true, ..ResourceRecord::default() };

    let after = record::update(&ctx, |r| {
        r.resources.insert(keys::AMP_WORKSPACE.to_string(), entry.clone());
    })
    .await
    .expect("the race resolves to an overwrite");

    assert_eq!(create.num_calls(), 1);
    assert_eq!(overwrite.num_calls(), 1);
    assert_eq!(after.resource(keys::AMP_WORKSPACE), Some(&entry));
    let written: Value = serde_json::from_str(&values.all()[0]).unwrap();
    assert_eq!(written["resources"][keys::AMP_WORKSPACE]["id"], "ws-1");
}

#[tokio::test]
async fn ssm_values_over_4096_bytes_go_to_the_advanced_tier_and_over_8192_are_refused() {
    let put_log = Log::default();
    let (put, tier) = (put_parameter(&put_log), describe_tier(None));
    let c = clients(&[], &[], &[], &[&put, &tier]);
    let tags = vec![(names::OWNER_TAG.to_string(), "dr-prod".to_string())];
    let write = |n: usize| {
        let ssm = c.ssm.clone();
        let tags = tags.clone();
        async move {
            o11y_shared::aws::ssm::put_parameter(&ssm, "/o11y/dr-prod/helm-values", &"x".repeat(n), true, &tags, "d")
                .await
        }
    };

    write(4096).await.expect("standard");
    write(4097).await.expect("advanced");
    let err = write(8193).await.expect_err("over every tier");

    let tiers: Vec<Value> = puts(&put_log).iter().map(|p| p["tier"].clone()).collect();
    assert_eq!(tiers, vec![json!("Standard"), json!("Advanced")]);
    assert_eq!(err.name(), "LimitExceededError", "{err}");
    assert_eq!(put.num_calls(), 2, "a value over 8192 bytes is refused before any call");
}

#[tokio::test]
async fn an_overwrite_that_fits_standard_keeps_an_advanced_parameter_advanced() {
    // SSM's own answer to a Standard overwrite of an Advanced parameter (awsJson, HTTP 400).
    let refused = mock!(aws_sdk_ssm::Client::put_parameter)
        .match_requests(|r| r.tier().map(|t| t.as_str()) == Some("Standard"))
        .then_http_response(|| {
            HttpResponse::new(
                StatusCode::try_from(400).unwrap(),
                SdkBody::from(
                    "{\"__type\":\"ValidationException\",\"message\":\"This parameter uses the advanced-parameter \
                     tier. You can't downgrade a parameter from the advanced-parameter tier to the \
                     standard-parameter tier.\"}",
                ),
            )
        });
    let put_log = Log::default();
    let (put, advanced) = (put_parameter(&put_log), describe_tier(Some("Advanced")));
    let c = clients(&[], &[], &[], &[&refused, &put, &advanced]);

    o11y_shared::aws::ssm::put_parameter(&c.ssm, "/o11y/dr-prod/helm-values", "small", true, &[], "d")
        .await
        .expect("overwritten");

    // The overwrite asks for Standard first (no tier read before it), is refused, reads the tier
    // once, and writes Advanced.
    assert_eq!(refused.num_calls(), 1);
    assert_eq!(advanced.num_calls(), 1);
    let tiers: Vec<Value> = puts(&put_log).iter().map(|p| p["tier"].clone()).collect();
    assert_eq!(tiers, vec![json!("Advanced")], "SSM refuses Advanced -> Standard");
}

#[tokio::test]
async fn an_overwrite_of_a_standard_parameter_reads_no_tier() {
    let put_log = Log::default();
    let (put, standard) = (put_parameter(&put_log), describe_tier(Some("Standard")));
    let c = clients(&[], &[], &[], &[&put, &standard]);

    o11y_shared::aws::ssm::put_parameter(&c.ssm, "/o11y/dr-prod/helm-values", "small", true, &[], "d")
        .await
        .expect("overwritten");

    assert_eq!(standard.num_calls(), 0);
    let tiers: Vec<Value> = puts(&put_log).iter().map(|p| p["tier"].clone()).collect();
    assert_eq!(tiers, vec![json!("Standard")]);
}
