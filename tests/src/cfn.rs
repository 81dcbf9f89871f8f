//! CloudFormation custom resource requests on the local stack, as CloudFormation sends them to
//! `cfn-handler`: `ResponseURL` a presigned PUT into the moto S3 bucket [`BUCKET`], where the
//! answer is read back.

use std::time::Duration;

use serde_json::{json, Value};

use crate::stack::FullStack;
use crate::{http, ACCOUNT_ID};

/// The bucket CloudFormation's presigned response URLs point into.
pub const BUCKET: &str = "cfn-responses";
/// The stack every request comes from.
pub const STACK_ID: &str =
    "arn:aws:cloudformation:us-east-1:123456789012:stack/cluster/1a2b3c4d-0000-1111-2222-333344445555";
/// The `ServiceToken` of the custom resource (the `cfn-handler` function).
pub const SERVICE_TOKEN: &str = "arn:aws:lambda:us-east-1:123456789012:function:cfn-handler";

/// Runs the Python `body` with `s3` a boto3 S3 client of the stack (and `sys` imported).
pub fn s3_script(stack: &FullStack, body: &str) -> std::process::Output {
    let script = format!(
        "import boto3,sys\ns3=boto3.client('s3',endpoint_url='{}',region_name='us-east-1',aws_access_key_id='testing',\
         aws_secret_access_key='testing')\n{body}",
        stack.endpoint()
    );
    std::process::Command::new(crate::python()).args(["-c", &script]).output().expect("run python")
}

/// Creates [`BUCKET`] on the stack.
pub fn create_bucket(stack: &FullStack) {
    let out = s3_script(stack, &format!("s3.create_bucket(Bucket='{BUCKET}')"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A presigned PUT URL for `key` in [`BUCKET`] (the request's `ResponseURL`).
pub fn presign_put(stack: &FullStack, key: &str) -> String {
    let out = s3_script(
        stack,
        &format!("print(s3.generate_presigned_url('put_object',Params={{'Bucket':'{BUCKET}','Key':'{key}'}},ExpiresIn=3600))"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 URL").trim().to_string()
}

/// The response CloudFormation would read at `key` and its size in bytes, or `None` when nothing
/// was answered there (a signed GetObject: moto needs the signature to know the request is for S3).
pub fn response(stack: &FullStack, key: &str) -> Option<(Value, usize)> {
    let out = s3_script(
        stack,
        &format!(
            "try:\n  sys.stdout.buffer.write(s3.get_object(Bucket='{BUCKET}',Key='{key}')['Body'].read())\n\
             except s3.exceptions.NoSuchKey:\n  sys.exit(3)"
        ),
    );
    if out.status.code() == Some(3) {
        return None;
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some((serde_json::from_slice(&out.stdout).expect("response JSON"), out.stdout.len()))
}

/// The response at `key`, which must be there.
pub fn response_body(stack: &FullStack, key: &str) -> Value {
    response(stack, key).unwrap_or_else(|| panic!("no response {key}")).0
}

/// How many PUTs of a response to `key` the router saw.
pub fn response_puts(stack: &FullStack, key: &str) -> usize {
    stack
        .requests()
        .iter()
        .filter(|r| r["method"] == "PUT" && r["path"].as_str().is_some_and(|p| p.contains(&format!("/{BUCKET}/{key}"))))
        .count()
}

/// A custom resource request of type `kind` (`Create`, `Update`, `Delete`) answered at `key`
/// (`RequestId` `req-<key>`), with the `PhysicalResourceId` and `OldResourceProperties` given.
pub fn request(
    stack: &FullStack,
    kind: &str,
    key: &str,
    props: Value,
    physical: Option<&str>,
    old: Option<Value>,
) -> Value {
    let mut r = json!({
        "RequestType": kind,
        "ServiceToken": SERVICE_TOKEN,
        "ResponseURL": presign_put(stack, key),
        "StackId": STACK_ID,
        "RequestId": format!("req-{key}"),
        "LogicalResourceId": "Observability",
        "ResourceType": "Custom::O11yProvisioner",
        "ResourceProperties": props,
    });
    if let Some(p) = physical {
        r["PhysicalResourceId"] = json!(p);
    }
    if let Some(o) = old {
        r["OldResourceProperties"] = o;
    }
    r
}

/// Properties as CloudFormation sends them (scalars as strings, the `ServiceToken`): the sample
/// deployment `deployment` (cluster `dr-eks`, namespace `dr-core`, IRSA role `dr-core-irsa`), with
/// the fields of `extra` set over it.
pub fn props(deployment: &str, extra: Value) -> Value {
    let mut p = json!({"ServiceToken": SERVICE_TOKEN, "deploymentName": deployment, "cluster": {"name": "dr-eks"},
        "namespace": "dr-core", "irsaRoleName": "dr-core-irsa"});
    for (k, v) in extra.as_object().expect("extra properties are an object") {
        p[k] = v.clone();
    }
    p
}

/// Invokes `function` through the router's Lambda API with `event`; returns its (JSON) result.
pub fn invoke(stack: &FullStack, function: &str, event: &Value) -> Value {
    let (status, body) = http(
        "POST",
        stack.router.port,
        &format!("/2015-03-31/functions/{function}/invocations"),
        Some(&event.to_string()),
    )
    .expect("invoke");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("invocation result JSON")
}

/// Waits (up to `polls` times 200 ms) for the execution `name` of the state machine to end;
/// returns its description.
pub async fn wait_execution(
    stack: &FullStack,
    name: &str,
    polls: usize,
) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
    let sfn = stack.sfn().await;
    let arn = format!("arn:aws:states:us-east-1:{ACCOUNT_ID}:execution:o11y-provisioner:{name}");
    for _ in 0..polls {
        let d = sfn.describe_execution().execution_arn(&arn).send().await.expect("describe execution");
        if d.status().as_str() != "RUNNING" {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{name} still running");
}
