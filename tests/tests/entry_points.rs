//! The three ways in, end to end on the local stack: the CloudFormation custom resource (Create,
//! Update in place and with replacement, Delete, failed Create then Delete, malformed properties,
//! the timeout answer), with `ResponseURL` a presigned URL of a moto S3 bucket; and account
//! vending (a Control Tower event and a plain hook request, each into another account; a repeated
//! event starts nothing new).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use o11y_shared::aws::Clients;
use o11y_tests::cfn::{self, invoke, presign_put, request, response, response_puts, STACK_ID};
use o11y_tests::stack::{purpose, start_deployed, FullStack, StackOptions};
use o11y_tests::{http, seed};
use serde_json::{json, Value};

/// Waits for the execution `name` to end: its status, and its error with the cause.
async fn wait_execution(stack: &FullStack, name: &str) -> (String, Option<String>) {
    let d = cfn::wait_execution(stack, name, 600).await;
    let error = d.error().map(|e| format!("{e}: {}", d.cause().unwrap_or_default()));
    (d.status().as_str().to_string(), error)
}

/// Properties as CloudFormation sends them: every scalar a string, plus the ServiceToken.
fn props(deployment: &str, extra: Value) -> Value {
    let mut p = cfn::props(deployment, json!({"retainMetrics": "false"}));
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

/// AWS writes other than the PUTs of CloudFormation responses.
fn writes_besides_responses(stack: &FullStack) -> Vec<Value> {
    stack.aws_writes().into_iter().filter(|r| purpose(r) != "cfn-response").collect()
}

async fn setup() -> (FullStack, Clients) {
    let (stack, clients, _, _) = start_deployed(&StackOptions::default()).await;
    cfn::create_bucket(&stack);
    (stack, clients)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resource_create_update_replace_and_delete_answer_exactly_once() {
    let (stack, clients) = setup().await;
    let id = "o11y-provisioner:123456789012:us-east-1:dr-prod";

    // Create: started, then answered SUCCESS by the state machine with the contract's short fields
    let create = request(&stack, "Create", "create", props("dr-prod", json!({})), None, None);
    let out = invoke(&stack, "cfn-handler", &create);
    assert_eq!(out["outcome"], "started", "{out}");
    assert_eq!(wait_execution(&stack, out["executionName"].as_str().unwrap()).await.0, "SUCCEEDED");
    let (body, len) = response(&stack, "create").expect("a response");
    assert!(len <= 4096, "{len}");
    assert_eq!(body["Status"], "SUCCESS", "{body:#}");
    assert_eq!(body["PhysicalResourceId"], id);
    assert_eq!(body["StackId"], STACK_ID);
    assert_eq!(body["RequestId"], "req-create");
    assert_eq!(body["LogicalResourceId"], "Observability");
    assert_eq!(body["Data"]["HelmValuesParameter"], "/o11y/dr-prod/helm-values");
    let ws = body["Data"]["GrafanaWorkspaceId"].as_str().unwrap();
    assert!(clients.grafana.describe_workspace().workspace_id(ws).send().await.is_ok());

    // a redelivered Create starts nothing new and CloudFormation still gets one answer
    let again = invoke(&stack, "cfn-handler", &create);
    assert_eq!(again["outcome"], "already-started", "{again}");
    assert_eq!(response_puts(&stack, "create"), 1, "exactly one response");

    // Update in place: same id
    let upd = request(
        &stack,
        "Update",
        "update",
        props("dr-prod", json!({"logs": {"streamName": "s2"}})),
        Some(id),
        Some(props("dr-prod", json!({}))),
    );
    let out = invoke(&stack, "cfn-handler", &upd);
    assert_eq!(wait_execution(&stack, out["executionName"].as_str().unwrap()).await.0, "SUCCEEDED");
    let (body, _) = response(&stack, "update").unwrap();
    assert_eq!((body["Status"].as_str(), body["PhysicalResourceId"].as_str()), (Some("SUCCESS"), Some(id)));

    // Update with a new deploymentName: a replacement, so a new id
    let repl =
        request(&stack, "Update", "replace", props("dr-prod2", json!({})), Some(id), Some(props("dr-prod", json!({}))));
    let out = invoke(&stack, "cfn-handler", &repl);
    assert_eq!(wait_execution(&stack, out["executionName"].as_str().unwrap()).await.0, "SUCCEEDED");
    let (body, _) = response(&stack, "replace").unwrap();
    assert_eq!(body["PhysicalResourceId"], "o11y-provisioner:123456789012:us-east-1:dr-prod2");

    // CloudFormation then deletes the old one (its old properties): SUCCESS with the old id
    let del = request(&stack, "Delete", "delete-old", props("dr-prod", json!({})), Some(id), None);
    let out = invoke(&stack, "cfn-handler", &del);
    assert_eq!(wait_execution(&stack, out["executionName"].as_str().unwrap()).await.0, "SUCCEEDED");
    let (body, len) = response(&stack, "delete-old").unwrap();
    assert_eq!((body["Status"].as_str(), body["PhysicalResourceId"].as_str()), (Some("SUCCESS"), Some(id)));
    assert!(len <= 4096);
    assert!(
        clients.iam.get_role().role_name("dr-prod-us-east-1-grafana").send().await.is_err(),
        "the old deployment is gone"
    );
    assert!(clients.iam.get_role().role_name("dr-prod2-us-east-1-grafana").send().await.is_ok(), "the new one stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_or_malformed_creates_answer_failed_and_the_following_delete_touches_nothing() {
    let (stack, clients) = setup().await;

    // malformed properties: answered FAILED by cfn-handler itself, with the field, zero AWS writes
    stack.reset_requests();
    let bad = request(&stack, "Create", "bad", props("dr-prod", json!({"namespace": "dr-core:*"})), None, None);
    let out = invoke(&stack, "cfn-handler", &bad);
    assert_eq!(out["outcome"], "answered", "{out}");
    let (body, _) = response(&stack, "bad").unwrap();
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"].as_str().unwrap().contains("namespace"), "{body:#}");
    let sentinel = body["PhysicalResourceId"].as_str().unwrap().to_string();
    assert!(sentinel.starts_with("o11y-provisioner:create-failed:"), "{sentinel}");
    let writes = writes_besides_responses(&stack);
    assert_eq!(writes, Vec::<Value>::new(), "zero AWS writes for malformed properties");

    // the Delete that follows the failed Create succeeds without touching anything
    stack.reset_requests();
    let del = request(
        &stack,
        "Delete",
        "bad-delete",
        props("dr-prod", json!({"namespace": "dr-core:*"})),
        Some(&sentinel),
        None,
    );
    let out = invoke(&stack, "cfn-handler", &del);
    assert_eq!(out["outcome"], "answered");
    assert_eq!(response(&stack, "bad-delete").unwrap().0["Status"], "SUCCESS");
    let writes = writes_besides_responses(&stack);
    assert_eq!(writes, Vec::<Value>::new());

    // a Create that fails inside the workflow (preflight: the version is not offered): FAILED,
    // sentinel id, the step and the error named
    let failing =
        request(&stack, "Create", "fails", props("dr-prod", json!({"grafana": {"version": "7.0"}})), None, None);
    let out = invoke(&stack, "cfn-handler", &failing);
    let (status, error) = wait_execution(&stack, out["executionName"].as_str().unwrap()).await;
    assert_eq!(status, "FAILED");
    assert!(error.as_deref().unwrap_or_default().starts_with("ValidationError:"), "{error:?}");
    let (body, len) = response(&stack, "fails").unwrap();
    assert_eq!(body["Status"], "FAILED");
    assert!(body["PhysicalResourceId"].as_str().unwrap().starts_with("o11y-provisioner:create-failed:"));
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.contains("preflight") && reason.contains("ValidationError") && reason.contains("grafana.version"),
        "{reason}"
    );
    assert!(len <= 4096);
    assert_eq!(response_puts(&stack, "fails"), 1);

    let _ = clients;
}

/// Emulator requests for `operation`, with their status and error code.
fn emulator_requests(stack: &FullStack, operation: &str) -> Vec<Value> {
    let v = stack.grafana_emulator_control(&format!("/_emulator/requests?operation={operation}"));
    v["requests"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_stopped_by_hand_is_answered_releases_its_lease_and_the_following_delete_rolls_it_back() {
    let (stack, clients) = setup().await;
    // Grafana workspaces stay CREATING long enough to stop the run while one is
    let (status, body) =
        http("POST", stack.grafana.port, "/_emulator/config", Some(r#"{"activeDelaySeconds": 8}"#)).unwrap();
    assert_eq!(status, 200, "{body}");
    let create = request(&stack, "Create", "stopped", props("dr-prod", json!({})), None, None);
    let out = invoke(&stack, "cfn-handler", &create);
    let name = out["executionName"].as_str().unwrap().to_string();
    let mut creating = None;
    for _ in 0..300 {
        let ws = clients.grafana.list_workspaces().send().await.unwrap();
        if let Some(w) = ws.workspaces().iter().find(|w| w.status().as_str() == "CREATING") {
            creating = Some(w.id().to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ws_id = creating.expect("the run created a Grafana workspace");
    let sfn = stack.sfn().await;
    let arn = format!("arn:aws:states:us-east-1:{}:execution:o11y-provisioner:{name}", o11y_tests::ACCOUNT_ID);
    sfn.stop_execution().execution_arn(&arn).send().await.unwrap();
    let d = cfn::wait_execution(&stack, &name, 600).await;
    assert_eq!(d.status().as_str(), "ABORTED");
    assert!(response(&stack, "stopped").is_none(), "finish never ran");

    // EventBridge's status-change event, as the rule delivers it: CloudFormation is answered
    let event = json!({"detail-type": "Step Functions Execution Status Change", "source": "aws.states",
        "detail": {"status": "ABORTED", "name": name, "executionArn": arn, "input": d.input().unwrap_or_default()}});
    let out = invoke(&stack, "cfn-handler", &event);
    assert_eq!(out["outcome"], "answered", "{out}");
    let (body, _) = response(&stack, "stopped").unwrap();
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"].as_str().unwrap().contains("ABORTED"), "{body:#}");
    assert_eq!(response_puts(&stack, "stopped"), 1);
    // AND, the deployment being born in that execution, the answer's id makes the Delete that
    // follows roll it back (a failed Create's own sentinel would make it touch nothing)
    let rollback_id = body["PhysicalResourceId"].as_str().unwrap().to_string();
    assert!(rollback_id.starts_with(o11y_shared::cfn::ROLLBACK_INCOMPLETE_PREFIX), "{body:#}");
    // a redelivered event answers nobody again (the request's proof is gone)
    let out = invoke(&stack, "cfn-handler", &event);
    assert_ne!(out["outcome"], "answered", "{out}");
    assert_eq!(response_puts(&stack, "stopped"), 1);

    // the lease is released: CloudFormation's Delete runs at once (no ConflictError), waits for
    // the workspace that is still CREATING, and deletes it
    let delete = request(&stack, "Delete", "rollback", props("dr-prod", json!({})), Some(&rollback_id), None);
    let out = invoke(&stack, "cfn-handler", &delete);
    let deleting = out["executionName"].as_str().unwrap_or_else(|| panic!("the Delete runs: {out}")).to_string();
    let d = cfn::wait_execution(&stack, &deleting, 600).await;
    assert_eq!(d.status().as_str(), "SUCCEEDED", "{:?} {:?}", d.error(), d.cause());
    let (body, _) = response(&stack, "rollback").unwrap();
    assert_eq!(body["Status"], "SUCCESS", "{body:#}");
    // AND nothing of the deployment is left: no role, policy, workspace or parameter
    assert!(clients.amp.list_workspaces().send().await.unwrap().workspaces().is_empty());
    let ssm = clients.ssm.get_parameters_by_path().path("/o11y").recursive(true).send().await.unwrap();
    assert!(ssm.parameters().is_empty(), "{:?}", ssm.parameters());
    let policies = clients.iam.list_policies().scope(aws_sdk_iam::types::PolicyScopeType::Local).send().await.unwrap();
    assert!(policies.policies().iter().all(|p| !p.policy_name().unwrap_or_default().starts_with("dr-prod")));
    let roles = clients.iam.list_roles().send().await.unwrap();
    assert!(roles.roles().iter().all(|r| !r.role_name().starts_with("dr-prod")), "{:?}", roles.roles());
    let deletes = emulator_requests(&stack, "DeleteWorkspace");
    assert!(
        deletes.iter().any(|r| r["errorCode"] == "ConflictException"),
        "the delete met the workspace while it was CREATING: {deletes:?}"
    );
    assert!(deletes.iter().any(|r| r["errorCode"].is_null() && r["status"] == 202), "{deletes:?}");
    let gone = clients.grafana.describe_workspace().workspace_id(&ws_id).send().await;
    assert!(gone.is_err(), "the workspace is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_input_with_a_cloudformation_block_answers_nobody_and_writes_nothing() {
    let (stack, _clients) = setup().await;
    let ctx = json!({"requestType": "Create", "responseUrl": presign_put(&stack, "forged"), "stackId": STACK_ID,
        "requestId": "req-forged", "logicalResourceId": "Observability",
        "physicalResourceId": "o11y-provisioner:123456789012:us-east-1:dr-prod",
        "failurePhysicalResourceId": "o11y-provisioner:create-failed:req-forged"});
    let input = json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core",
        "irsaRoleName": "dr-core-irsa"});
    let sm = o11y_tests::sfn::local_state_machine_arn();
    stack.reset_requests();
    let outcome = stack.execute(&sm, "forged", &json!({"input": input, "cloudFormation": ctx})).await;
    assert_eq!(outcome.status, "FAILED");
    assert_eq!(outcome.error.as_deref(), Some("ValidationError"), "{:?}", outcome.cause);
    assert!(outcome.cause.as_deref().unwrap_or_default().contains("cloudFormation"), "{:?}", outcome.cause);
    assert!(response(&stack, "forged").is_none(), "nobody answered");
    assert_eq!(writes_besides_responses(&stack), Vec::<Value>::new(), "zero AWS writes");

    // nor does a forged status-change event for an execution cfn-handler never started
    let event = json!({"detail-type": "Step Functions Execution Status Change", "source": "aws.states",
        "detail": {"status": "TIMED_OUT", "name": "cfn-x", "input": json!({"input": {}, "cloudFormation": ctx}).to_string()}});
    let out = invoke(&stack, "cfn-handler", &event);
    assert_ne!(out["outcome"], "answered", "{out}");
    assert!(response(&stack, "forged").is_none(), "nobody answered");
}

async fn clients_in(stack: &FullStack, account: &str) -> Clients {
    seed::vended_account(&stack.clients().await, o11y_tests::ACCOUNT_ID, account).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vending_provisions_new_accounts_once_per_event() {
    let stack = FullStack::start(&StackOptions::default());
    let hub = stack.clients().await;
    stack.deploy().await;
    // the organisation's defaults, in the hub account
    let defaults = json!({"cluster": {"name": "{accountName}-eks"}, "namespace": "obs", "irsaRoleName": "obs-irsa"});
    seed::vending_defaults(&hub, &defaults).await;

    // GIVEN a new account vended by Control Tower, with its cluster
    let b = "210987654321";
    let in_b = clients_in(&stack, b).await;
    seed::seed(&in_b, "team-b-eks", "obs-irsa", "obs").await;
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(
            o11y_tests::repo_root().join("tests/fixtures/control-tower-create-managed-account.json"),
        )
        .unwrap(),
    )
    .unwrap();

    // WHEN the event arrives THEN the account is provisioned, its outputs in that account
    let out = invoke(&stack, "vending-hook", &event);
    assert_eq!(out["outcome"], "started", "{out}");
    let (status, error) = wait_execution(&stack, out["executionName"].as_str().unwrap()).await;
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    let p = in_b.ssm.get_parameter().name("/o11y/o11y-210987654321/grafana-url").send().await.unwrap();
    assert!(p.parameter().unwrap().value().unwrap().starts_with("https://g-"));
    assert!(
        hub.ssm.get_parameter().name("/o11y/o11y-210987654321/grafana-url").send().await.is_err(),
        "not in the hub"
    );
    let role = in_b.iam.get_role().role_name("o11y-210987654321-us-east-1-grafana").send().await.unwrap();
    assert!(role.role().unwrap().arn().contains(b));

    // WHEN the same event is delivered again THEN nothing new starts
    let again = invoke(&stack, "vending-hook", &event);
    assert_eq!(again["outcome"], "already-started", "{again}");
    assert_eq!(again["executionName"], out["executionName"]);

    // a failed Control Tower event is ignored
    let mut failed = event.clone();
    failed["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["state"] = json!("FAILED");
    failed["id"] = json!("another-id");
    assert_eq!(invoke(&stack, "vending-hook", &failed)["outcome"], "ignored");

    // GIVEN a plain hook request for a third account WHEN sent THEN provisioned there
    let c = "345678901234";
    let in_c = clients_in(&stack, c).await;
    seed::seed(&in_c, "c-eks", "obs-irsa", "team-c").await;
    let plain = json!({"accountId": c, "region": "us-east-1", "accountName": "c", "namespace": "team-c",
                       "deploymentName": "team-c"});
    let out = invoke(&stack, "vending-hook", &plain);
    assert_eq!(out["outcome"], "started", "{out}");
    assert_eq!(wait_execution(&stack, out["executionName"].as_str().unwrap()).await.0, "SUCCEEDED");
    assert!(in_c.ssm.get_parameter().name("/o11y/team-c/helm-values").send().await.is_ok());
    assert_eq!(invoke(&stack, "vending-hook", &plain)["outcome"], "already-started");

    // a request that is not valid starts nothing: the function fails naming the field
    let (status, body) = http(
        "POST",
        stack.router.port,
        "/2015-03-31/functions/vending-hook/invocations",
        Some(&json!({"accountId": "12"}).to_string()),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("ValidationError") && body.contains("accountId"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudformation_is_answered_even_when_the_lease_cannot_be_released() {
    let (stack, _clients) = setup().await;
    // GIVEN SSM refuses every listing (the lease's, the registry's) for good
    let faults = json!({"rate": 1.0, "seed": 7, "kinds": ["denied"], "services": ["ssm"],
                        "operations": ["GetParametersByPath"]});
    let (status, body) = http("POST", stack.router.port, "/_router/faults", Some(&faults.to_string())).unwrap();
    assert_eq!(status, 200, "{body}");
    // WHEN a Create runs: it fails, and so does Finish's release of the lease
    let create = request(&stack, "Create", "no-release", props("dr-prod", json!({})), None, None);
    let out = invoke(&stack, "cfn-handler", &create);
    assert_eq!(out["outcome"], "started", "{out}");
    let (status, error) = wait_execution(&stack, out["executionName"].as_str().unwrap()).await;
    let _ = http("DELETE", stack.router.port, "/_router/faults", None);
    assert_eq!(status, "FAILED", "{error:?}");
    // THEN CloudFormation got its one answer regardless (no hour-long hang)
    let (body, _) = response(&stack, "no-release").expect("CloudFormation answered");
    assert_eq!(body["Status"], "FAILED", "{body:#}");
    assert_eq!(response_puts(&stack, "no-release"), 1);
}
