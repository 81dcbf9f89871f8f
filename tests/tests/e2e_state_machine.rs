//! End to end: the real `statemachine/provision.asl.json` executed by moto's Step Functions
//! interpreter, invoking the real function binaries through the router, against moto and the
//! Grafana emulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use o11y_shared::policy;
use o11y_tests::seed;
use o11y_tests::stack::{start_deployed, FullStack, StackOptions};
use serde_json::{json, Value};

fn minimal() -> Value {
    json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core", "irsaRoleName": "dr-core-irsa"})
}

async fn ssm_map(clients: &o11y_shared::aws::Clients, prefix: &str) -> Vec<(String, String, i64)> {
    let mut v = Vec::new();
    let mut pages = clients.ssm.get_parameters_by_path().path(prefix).recursive(true).into_paginator().send();
    while let Some(page) = pages.next().await {
        for p in page.unwrap().parameters() {
            v.push((p.name().unwrap().to_string(), p.value().unwrap().to_string(), p.version()));
        }
    }
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_create_then_a_second_execution_with_zero_writes() {
    // GIVEN the local stack with a seeded cluster, OIDC provider and IRSA role
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await;
    let seeded = seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;

    // WHEN the state machine runs the minimal input
    let first = stack.execute(&sm, "create-1", &minimal()).await;

    // THEN it succeeds and its output is the output contract, matching the live resources
    assert_eq!(first.status, "SUCCEEDED", "{first:?}");
    let out = first.output.clone().unwrap();
    for key in [
        "deploymentName",
        "accountId",
        "region",
        "irsaRoleArn",
        "ampWorkspaceId",
        "ampWorkspaceArn",
        "prometheusEndpoint",
        "remoteWriteUrl",
        "writePolicyArn",
        "grafanaRoleArn",
        "readPolicyArn",
        "grafanaWorkspaceId",
        "grafanaUrl",
        "helmValuesParameter",
    ] {
        assert!(out[key].as_str().is_some_and(|s| !s.is_empty()), "{key} missing in {out:#}");
    }
    assert_eq!(out["irsaRoleArn"], seeded.irsa_role_arn);
    let ws =
        clients.amp.describe_workspace().workspace_id(out["ampWorkspaceId"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(ws.workspace().unwrap().arn(), out["ampWorkspaceArn"]);
    let g = clients
        .grafana
        .describe_workspace()
        .workspace_id(out["grafanaWorkspaceId"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let g = g.workspace().unwrap();
    assert_eq!(g.status().as_str(), "ACTIVE");
    assert_eq!(g.workspace_role_arn(), out["grafanaRoleArn"].as_str());
    assert_eq!(out["grafanaUrl"], format!("https://{}", g.endpoint()));
    let params = ssm_map(&clients, "/o11y/dr-prod").await;
    assert_eq!(params.len(), 13, "11 outputs, the verification and the record");
    assert_eq!(out["verification"]["status"], "passed", "{:#}", out["verification"]);
    let stored = params.iter().find(|p| p.0 == "/o11y/dr-prod/verification").unwrap();
    assert_eq!(serde_json::from_str::<Value>(&stored.1).unwrap(), out["verification"]);
    for (leaf, key) in [
        ("irsa-role-arn", "irsaRoleArn"),
        ("amp-workspace-id", "ampWorkspaceId"),
        ("amp-workspace-arn", "ampWorkspaceArn"),
        ("prometheus-endpoint", "prometheusEndpoint"),
        ("remote-write-url", "remoteWriteUrl"),
        ("write-policy-arn", "writePolicyArn"),
        ("grafana-role-arn", "grafanaRoleArn"),
        ("read-policy-arn", "readPolicyArn"),
        ("grafana-workspace-id", "grafanaWorkspaceId"),
        ("grafana-url", "grafanaUrl"),
    ] {
        let p = params.iter().find(|p| p.0 == format!("/o11y/dr-prod/{leaf}")).unwrap();
        assert_eq!(p.1, out[key].as_str().unwrap(), "{leaf}");
    }
    let trust = clients.iam.get_role().role_name("dr-core-irsa").send().await.unwrap();
    let trust = policy::decode_document(trust.role().unwrap().assume_role_policy_document().unwrap()).unwrap();
    assert_eq!(trust["Statement"].as_array().unwrap().len(), 2);

    // WHEN it runs again on the converged state
    stack.reset_requests();
    let second = stack.execute(&sm, "create-2", &minimal()).await;

    // THEN same outputs, no AWS write at all, no new resource or policy version
    assert_eq!(second.status, "SUCCEEDED", "{second:?}");
    assert_eq!(second.output, first.output);
    assert_eq!(stack.resource_writes(), Vec::<Value>::new(), "a converged re-run changes no resource");
    let lease: Vec<String> =
        stack.lease_writes().iter().map(|r| r["operation"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(lease.len(), 2, "only the run's own lease is taken and released: {lease:?}");
    assert_eq!(ssm_map(&clients, "/o11y/dr-prod").await, params);
    let versions =
        clients.iam.list_policy_versions().policy_arn(out["writePolicyArn"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(versions.versions().len(), 1);
    assert_eq!(clients.amp.list_workspaces().send().await.unwrap().workspaces().len(), 1);
    assert_eq!(clients.grafana.list_workspaces().send().await.unwrap().workspaces().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_fails_with_validation_error_naming_the_field_and_zero_writes() {
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await;
    seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;
    stack.reset_requests();

    let mut input = minimal();
    input["namespace"] = json!("dr-core:*");
    let out = stack.execute(&sm, "bad-namespace", &input).await;

    assert_eq!(out.status, "FAILED");
    assert_eq!(out.error.as_deref(), Some("ValidationError"));
    let cause = out.cause.unwrap_or_default();
    // plain text, not the Lambda error's JSON: the name, the step, the field and the rule
    assert!(cause.starts_with("ValidationError: preflight: namespace: must be"), "{cause}");
    assert!(serde_json::from_str::<Value>(&cause).is_err(), "the cause is not JSON: {cause}");
    assert_eq!(out.failed_state.as_deref(), Some("Preflight"));
    assert_eq!(stack.aws_writes(), Vec::<Value>::new());
    let invokes = stack.requests().into_iter().filter(|r| r["function"] == "preflight").count();
    assert_eq!(invokes, 1, "ValidationError is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_fault_is_retried_and_the_execution_succeeds() {
    let stack = FullStack::start(&StackOptions::default());
    let clients = stack.clients().await;
    seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;
    // GIVEN every AMP call throttled until the budget of injected faults is spent
    let (status, body) = stack.router_control(
        "POST",
        "/_router/faults",
        r#"{"rate": 1.0, "seed": 7, "kinds": ["throttle"], "services": ["aps"], "max": 4}"#,
    );
    assert!(status < 300, "{status} {body}");

    let out = stack.execute(&sm, "with-faults", &minimal()).await;

    assert_eq!(out.status, "SUCCEEDED", "{out:?}");
    let faults = stack.requests().into_iter().filter(|r| r.get("fault").is_some_and(|f| !f.is_null())).count();
    assert_eq!(faults, 4, "every budgeted fault was injected");
    // the SDK retries 3 attempts itself; the 4th fault reaches the state machine's Retry
    let invokes = stack.requests().into_iter().filter(|r| r["function"] == "amp-workspace").count();
    assert!(invokes >= 2, "the state machine retried the TransientError ({invokes} invocations)");
    assert_eq!(clients.amp.list_workspaces().send().await.unwrap().workspaces().len(), 1, "no duplicate workspace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_slow_to_become_active_is_polled_by_the_wait_loop() {
    // Slower than AMP's wait, Verify and Publish together (Grafana is creating meanwhile: a
    // workspace ready by then is seen by the loop's first poll), also with AWS's timing.
    let stack = FullStack::start(&StackOptions { grafana_active_delay: 15.0, ..StackOptions::default() });
    let clients = stack.clients().await;
    seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;
    stack.reset_requests();

    let out = stack.execute(&sm, "slow-grafana", &minimal()).await;

    assert_eq!(out.status, "SUCCEEDED", "{out:?}");
    let polls = stack.requests().into_iter().filter(|r| r["function"] == "grafana-status").count();
    assert!(polls >= 2, "the wait loop polled {polls} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_for_one_deployment_make_one_set_of_resources() {
    // GIVEN a Grafana workspace slow to become ACTIVE, so that a first run takes a while
    let stack = FullStack::start(&StackOptions { grafana_active_delay: 4.0, ..StackOptions::default() });
    let clients = stack.clients().await;
    seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;
    let sfn = stack.sfn().await;

    // WHEN the console starts the same deployment twice, the second while the first runs
    let first =
        sfn.start_execution().state_machine_arn(&sm).name("first").input(minimal().to_string()).send().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let second = stack.execute(&sm, "second", &minimal()).await;

    // THEN the second fails cleanly, saying another run holds the deployment
    assert_eq!(second.status, "FAILED", "{second:?}");
    assert_eq!(second.error.as_deref(), Some("ConflictError"));
    let cause = second.cause.as_deref().unwrap_or_default();
    assert!(
        cause.starts_with("ConflictError: preflight: ") && cause.contains("another run holds the deployment"),
        "{second:?}"
    );
    // and the first one completes
    let first = stack.wait(first.execution_arn()).await;
    assert_eq!(first.status, "SUCCEEDED", "{first:?}");
    // exactly one set of resources
    assert_eq!(clients.amp.list_workspaces().send().await.unwrap().workspaces().len(), 1);
    assert_eq!(clients.grafana.list_workspaces().send().await.unwrap().workspaces().len(), 1);
    // and the lease is free again: a later run goes through
    assert_eq!(stack.execute(&sm, "third", &minimal()).await.status, "SUCCEEDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_values_are_published_while_grafana_is_still_creating() {
    // GIVEN a Grafana workspace that takes 8 s to become ACTIVE (minutes on AWS)
    let (stack, clients, _, sm) =
        start_deployed(&StackOptions { grafana_active_delay: 8.0, ..StackOptions::default() }).await;
    let sfn = stack.sfn().await;

    // WHEN a create starts
    let started =
        sfn.start_execution().state_machine_arn(&sm).name("early").input(minimal().to_string()).send().await.unwrap();

    // THEN the Helm values are in SSM while the execution runs and Grafana is still CREATING
    let mut early = None;
    for _ in 0..300 {
        if let Ok(p) = clients.ssm.get_parameter().name("/o11y/dr-prod/helm-values").send().await {
            let run = sfn.describe_execution().execution_arn(started.execution_arn()).send().await.unwrap();
            let ws = clients.grafana.list_workspaces().send().await.unwrap();
            let grafana: Vec<String> = ws.workspaces().iter().map(|w| w.status().as_str().to_string()).collect();
            early =
                Some((p.parameter().unwrap().value().unwrap().to_string(), run.status().as_str().to_string(), grafana));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (values, run_status, grafana) = early.expect("helm-values appeared within 30 s");
    assert_eq!(run_status, "RUNNING", "published while the execution ran");
    assert_eq!(grafana, ["CREATING"], "published before Grafana was ACTIVE");
    // the data path was proven before (the verification is published with the values)
    let verification = clients.ssm.get_parameter().name("/o11y/dr-prod/verification").send().await.unwrap();
    let verification: Value = serde_json::from_str(verification.parameter().unwrap().value().unwrap()).unwrap();
    assert_eq!(verification["status"], "passed", "{verification:#}");
    // no datasource yet: Grafana is not ready for it
    assert!(stack.requests().iter().all(|r| r["function"] != "datasource"), "datasource ran before Grafana was ACTIVE");

    // AND the run ends as before: the datasource made, the values unchanged
    let out = stack.wait(started.execution_arn()).await;
    assert_eq!(out.status, "SUCCEEDED", "{out:?}");
    let output = out.output.unwrap();
    assert_eq!(output["verification"]["status"], "passed", "{output:#}");
    assert!(stack.requests().iter().any(|r| r["function"] == "datasource"));
    let after = clients.ssm.get_parameter().name("/o11y/dr-prod/helm-values").send().await.unwrap();
    assert_eq!(after.parameter().unwrap().value().unwrap(), values, "the values published early are the final ones");
    assert_eq!(clients.grafana.list_workspaces().send().await.unwrap().workspaces()[0].status().as_str(), "ACTIVE");
}

/// Per Lambda invocation, the requests logged during it, in order (calls belong to the invoke
/// logged before them: one task at a time; those before the first invoke are left out).
fn requests_per_invocation(requests: &[Value]) -> Vec<(String, Vec<Value>)> {
    let mut sorted = requests.to_vec();
    sorted.sort_by_key(|r| r["seq"].as_u64().unwrap_or(0));
    let mut per: Vec<(String, Vec<Value>)> = Vec::new();
    for r in sorted {
        match r["function"].as_str() {
            Some(f) => per.push((f.to_string(), Vec::new())),
            // before the first invocation: the harness's own (StartExecution...)
            None => {
                if let Some(last) = per.last_mut() {
                    last.1.push(r);
                }
            }
        }
    }
    per
}

/// Per Lambda invocation, how many times the deployment's record was read from SSM.
fn record_reads_per_invocation(requests: &[Value]) -> Vec<(String, usize)> {
    let is_record_read = |r: &Value| {
        r["operation"] == "GetParameter" && r["name"].as_str().is_some_and(|n| n.ends_with("/provisioner-state"))
    };
    let per = requests_per_invocation(requests);
    per.into_iter().map(|(f, rs)| (f, rs.iter().filter(|r| is_record_read(r)).count())).collect()
}

/// Per Lambda invocation, its AWS operations in order (`service:Operation`).
fn operations_per_invocation(requests: &[Value]) -> Vec<(String, Vec<String>)> {
    let op = |r: &Value| format!("{}:{}", r["service"].as_str().unwrap_or("?"), r["operation"].as_str().unwrap_or("?"));
    requests_per_invocation(requests).into_iter().map(|(f, rs)| (f, rs.iter().map(op).collect())).collect()
}

/// A create of `minimal()` on a deployed stack, then its re-run: each run's name and the
/// requests the router logged during it.
async fn create_then_rerun() -> Vec<(&'static str, Vec<Value>)> {
    let (stack, _, _, sm) = start_deployed(&StackOptions::default()).await;
    let mut runs = Vec::new();
    for run in ["create", "rerun"] {
        stack.reset_requests();
        let out = stack.execute(&sm, run, &minimal()).await;
        assert_eq!(out.status, "SUCCEEDED", "{out:?}");
        runs.push((run, stack.requests()));
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_step_asks_iam_or_ssm_what_it_already_knows() {
    for (run, requests) in create_then_rerun().await {
        let per = operations_per_invocation(&requests);
        assert!(per.iter().any(|(f, ops)| f == "irsa-trust" && ops.iter().any(|o| o == "iam:GetRole")), "{per:?}");
        for (f, ops) in &per {
            // GetRole and GetPolicy carry the tags: no separate tag listing.
            let tag_lists: Vec<_> = ops.iter().filter(|o| o.ends_with("Tags")).collect();
            assert!(tag_lists.is_empty(), "{run}: {f} listed tags: {ops:?}");
            // An overwrite keeps its tier without asking for it first (SSM refuses a downgrade;
            // only that refusal makes us read the live tier).
            assert!(!ops.iter().any(|o| o == "ssm:DescribeParameters"), "{run}: {f}: {ops:?}");
            // One GetRole per role an invocation looks at (preflight and verify: the IRSA role
            // and the Grafana role; the others one), read again only after an IAM write.
            let limit = if f == "preflight" || f == "verify" { 2 } else { 1 };
            let mut since_write = 0;
            for o in ops {
                if o == "iam:GetRole" {
                    since_write += 1;
                    assert!(since_write <= limit, "{run}: {f} read a role again without writing: {ops:?}");
                } else if o.starts_with("iam:") && !o.starts_with("iam:Get") && !o.starts_with("iam:List") {
                    since_write = 0;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_reads_the_record_at_most_once() {
    for (run, requests) in create_then_rerun().await {
        let per = record_reads_per_invocation(&requests);
        // The record is written before each change (a crash must not lose ownership), but a
        // step reads it once and keeps what it wrote.
        assert!(per.iter().any(|(_, n)| *n == 1), "{run}: the steps read the record: {per:?}");
        // preflight reads it before it takes the lease (the input's checks) and again after.
        assert!(per.iter().all(|(f, n)| *n <= 1 || (f == "preflight" && *n == 2)), "{run}: {per:?}");
    }
}
