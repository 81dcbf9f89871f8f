//! Each function runs under its own role of the template (`tests/localstack/authz.py`, applied by
//! the router): the role is created in moto from `infra/template.yaml`, the function gets the
//! credentials of an `sts:AssumeRole` of it, and every request it signs is authorized against the
//! role's policies as IAM would (actions, resources, conditions). A template missing one
//! permission fails the run at the step that needs it, with AccessDenied.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use o11y_tests::seed;
use o11y_tests::stack::{start_deployed, FullStack, StackOptions};
use serde_json::{json, Value};

fn minimal() -> Value {
    json!({"deploymentName": "dr-prod", "cluster": {"name": "dr-eks"}, "namespace": "dr-core", "irsaRoleName": "dr-core-irsa"})
}

/// The function requests of the router's log (signed AWS calls made by a function process).
fn principals(stack: &FullStack) -> Vec<(String, String, String)> {
    stack
        .requests()
        .iter()
        .filter_map(|e| {
            let p = e["principal"].as_str()?;
            Some((p.to_string(), e["operation"].as_str().unwrap_or_default().to_string(), e["denied"].to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_calls_aws_as_its_own_template_role_and_the_run_converges() {
    // GIVEN the local stack, whose router runs each function under its template role
    let (stack, clients, _, sm) = start_deployed(&StackOptions::authorized()).await;
    stack.reset_requests();

    // WHEN a fresh deployment is applied
    let out = stack.execute(&sm, "authz-create", &minimal()).await;

    // THEN it succeeds with no request denied
    assert_eq!(out.status, "SUCCEEDED", "{out:?}");
    let calls = principals(&stack);
    let denied: Vec<_> = calls.iter().filter(|c| c.2 != "null").collect();
    assert!(denied.is_empty(), "denied: {denied:?}");
    // AND the AWS calls were made by assumed template roles, one role per function
    let roles: std::collections::BTreeSet<String> =
        calls.iter().map(|c| c.0.split('/').nth(1).unwrap_or_default().to_string()).collect();
    for role in ["o11y-local-PreflightRole", "o11y-local-AmpWorkspaceRole", "o11y-local-GrafanaWorkspaceRole"] {
        assert!(roles.contains(role), "{role} made no call: {roles:?}");
    }
    assert!(calls.iter().all(|c| c.0.starts_with("arn:aws:sts::")), "{calls:?}");
    // AND the roles exist in moto with the template's inline policies
    let role = clients.iam.get_role().role_name("o11y-local-AmpWorkspaceRole").send().await.unwrap();
    assert!(role.role().is_some());
    let inline = clients.iam.list_role_policies().role_name("o11y-local-AmpWorkspaceRole").send().await.unwrap();
    assert_eq!(inline.policy_names(), ["step"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_removed_from_one_role_fails_that_step_with_access_denied() {
    // GIVEN a copy of the template whose amp-workspace role lacks aps:CreateWorkspace
    let template = std::fs::read_to_string(o11y_tests::repo_root().join("infra/template.yaml")).unwrap();
    let needle = "                Action: aps:CreateWorkspace\n";
    assert_eq!(template.matches(needle).count(), 1, "the template grants aps:CreateWorkspace once");
    let dir = std::env::temp_dir().join(format!("o11y-authz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("template.yaml");
    std::fs::write(&copy, template.replace(needle, "                Action: aps:ListWorkspaces\n")).unwrap();
    let stack = FullStack::start(&StackOptions { template: Some(copy), ..StackOptions::default() });
    let clients = stack.clients().await;
    seed::seed(&clients, "dr-eks", "dr-core-irsa", "dr-core").await;
    let sm = stack.deploy().await;

    // WHEN a fresh deployment is applied
    let out = stack.execute(&sm, "authz-missing", &minimal()).await;

    // THEN it fails at the AMP workspace step, with AccessDenied naming the action
    assert_eq!(out.status, "FAILED", "{out:?}");
    let cause = out.cause.clone().unwrap_or_default();
    assert!(cause.contains("AccessDenied"), "{cause}");
    assert!(cause.contains("aps:CreateWorkspace"), "{cause}");
    assert!(out.failed_state.as_deref().is_some_and(|s| s.contains("Amp")), "{out:?}");
    // AND the router refused exactly that call, made by that function's role
    let denied: Vec<_> = principals(&stack).into_iter().filter(|c| c.2 != "null").collect();
    assert!(!denied.is_empty());
    assert!(
        denied.iter().all(|c| c.0.contains("/o11y-local-AmpWorkspaceRole/") && c.1.contains("workspaces")),
        "{denied:?}"
    );
    // AND no AMP workspace exists
    let ws = clients.amp.list_workspaces().send().await.unwrap();
    assert!(ws.workspaces().is_empty(), "{:?}", ws.workspaces());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_the_templates_patterns_are_refused_before_any_aws_write() {
    // GIVEN the stack under the template's default parameters (WritePolicyNamePattern
    // *-observability-write, GrafanaRoleNamePattern *-grafana, SsmPrefix /o11y, ...), handed to
    // the functions in their environment as the template sets it
    let (stack, _, _, sm) = start_deployed(&StackOptions::authorized()).await;
    for (field, value, parameter) in [
        ("writePolicyName", json!("team-x-write"), "WritePolicyNamePattern"),
        ("grafana", json!({"roleName": "dr-prod-grafana-2"}), "GrafanaRoleNamePattern"),
        ("grafana", json!({"readPolicyName": "dr-prod-read"}), "ReadPolicyNamePattern"),
        ("ssmPrefix", json!("/platform/dr-prod"), "SsmPrefix"),
        (
            "target",
            json!({"accountId": "210987654321", "roleName": "OrganizationAccountAccessRole"}),
            "VendingRoleName",
        ),
    ] {
        stack.reset_requests();
        let mut input = minimal();
        input[field] = value;
        // WHEN a run names it
        let out = stack.execute(&sm, &format!("scope-{parameter}"), &input).await;
        // THEN it fails as a ValidationError naming the parameter, and nothing was written
        assert_eq!(out.status, "FAILED", "{out:?}");
        assert_eq!(out.error.as_deref(), Some("ValidationError"), "{out:?}");
        let cause = out.cause.clone().unwrap_or_default();
        assert!(cause.contains(field) && cause.contains(parameter), "{cause}");
        assert_eq!(stack.aws_writes(), Vec::<Value>::new(), "{parameter}");
        // AND no function call was denied: the refusal came first
        assert!(principals(&stack).iter().all(|c| c.2 == "null"), "{parameter}: {:?}", principals(&stack));
    }
    // AND the default names, inside every pattern, converge
    let out = stack.execute(&sm, "scope-defaults", &minimal()).await;
    assert_eq!(out.status, "SUCCEEDED", "{out:?}");
}
