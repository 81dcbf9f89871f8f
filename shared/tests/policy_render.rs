//! Integration tests of the IAM policy documents (content, comparison, decoding, sizes) and of
//! the Helm values rendering (golden file, runbook shape, YAML quoting).
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite `tests/golden/helm-values.yaml` from the current
//! output (then review the diff).

use o11y_shared::policy::{
    self, check_managed_policy_size, check_trust_policy_size, decode_document, document_length, equivalent,
    grafana_trust_policy, normalize, read_policy, to_compact, write_policy, MANAGED_POLICY_MAX_CHARS,
    TRUST_POLICY_MAX_CHARS,
};
use o11y_shared::render::{helm_values, HelmValues};
use o11y_shared::Error;
use serde_json::{json, Value};

const PARTITION: &str = "aws";
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const LOG_GROUP: &str = "/dr-prod/observability";
const WS_ARN: &str = "arn:aws:aps:us-east-1:123456789012:workspace/ws-12345678-abcd-1234-abcd-123456789012";

fn the_write_policy() -> Value {
    write_policy(PARTITION, REGION, ACCOUNT, LOG_GROUP, WS_ARN)
}

fn the_trust_policy() -> Value {
    grafana_trust_policy(PARTITION, REGION, ACCOUNT)
}

fn statements(doc: &Value) -> Vec<Value> {
    doc["Statement"].as_array().cloned().unwrap_or_default()
}

fn statement(doc: &Value, sid: &str) -> Value {
    statements(doc).into_iter().find(|s| s["Sid"] == sid).unwrap_or(Value::Null)
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Write policy
// ---------------------------------------------------------------------------------------------

#[test]
fn given_deployment_inputs_when_building_write_policy_then_document_is_exact() {
    // GIVEN the deployment's partition, region, account, log group and workspace
    // WHEN the write policy is built
    let doc = the_write_policy();
    // THEN it is exactly the runbook's three statements, logs scoped to the configured group
    let expected = json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowCloudWatchLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                "Resource": [
                    "arn:aws:logs:us-east-1:123456789012:log-group:/dr-prod/observability",
                    "arn:aws:logs:us-east-1:123456789012:log-group:/dr-prod/observability:*"
                ]
            },
            {
                "Sid": "AllowXRayTracing",
                "Effect": "Allow",
                "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                "Resource": "*"
            },
            {
                "Sid": "AllowPrometheusRemoteWrite",
                "Effect": "Allow",
                "Action": ["aps:RemoteWrite"],
                "Resource": WS_ARN
            }
        ]
    });
    assert_eq!(doc, expected);
}

#[test]
fn given_runbook_write_policy_when_compared_then_only_logs_resource_differs() {
    // GIVEN the runbook's write policy with the deployment's values substituted
    let mut runbook = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AllowCloudWatchLogs", "Effect": "Allow",
             "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
             "Resource": "arn:aws:logs:us-east-1:123456789012:log-group:*:log-stream:*"},
            {"Sid": "AllowXRayTracing", "Effect": "Allow",
             "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"},
            {"Sid": "AllowPrometheusRemoteWrite", "Effect": "Allow", "Action": ["aps:RemoteWrite"], "Resource": WS_ARN}
        ]
    });
    // WHEN compared with ours
    // THEN they differ (deliberate deviation) ...
    assert!(!equivalent(&runbook, &the_write_policy()));
    // ... and only by the logs resource
    runbook["Statement"][0]["Resource"] = json!([
        "arn:aws:logs:us-east-1:123456789012:log-group:/dr-prod/observability:*",
        "arn:aws:logs:us-east-1:123456789012:log-group:/dr-prod/observability"
    ]);
    assert!(equivalent(&runbook, &the_write_policy()));
}

#[test]
fn given_any_document_when_listing_resources_then_no_wildcard_except_xray_and_own_streams() {
    // GIVEN all three documents' permission statements
    let docs = [the_write_policy(), read_policy(WS_ARN)];
    let own_streams = format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{LOG_GROUP}:*");
    for doc in &docs {
        for st in statements(doc) {
            for resource in strings(&st["Resource"]) {
                // THEN "*" appears only in X-Ray (no resource-level permissions) and as the
                // configured group's stream suffix
                if st["Sid"] == "AllowXRayTracing" {
                    assert_eq!(resource, "*");
                } else if resource.contains('*') || resource.contains('?') {
                    assert_eq!(resource, own_streams, "unexpected wildcard in {st}");
                }
            }
            assert!(st.get("NotResource").is_none() && st.get("NotAction").is_none());
            assert_eq!(st["Effect"], "Allow");
        }
    }
}

#[test]
fn given_other_partition_when_building_then_every_arn_uses_it() {
    // GIVEN GovCloud WHEN building the documents THEN no ARN says "arn:aws:"
    let w = write_policy(
        "aws-us-gov",
        "us-gov-west-1",
        ACCOUNT,
        "g",
        "arn:aws-us-gov:aps:us-gov-west-1:123456789012:workspace/ws-1",
    );
    let t = grafana_trust_policy("aws-us-gov", "us-gov-west-1", ACCOUNT);
    for doc in [&w, &t] {
        let s = to_compact(doc);
        assert!(!s.contains("arn:aws:"), "{s}");
        assert!(s.contains("arn:aws-us-gov:"), "{s}");
    }
    assert_eq!(
        strings(&statement(&w, "AllowCloudWatchLogs")["Resource"]),
        [
            "arn:aws-us-gov:logs:us-gov-west-1:123456789012:log-group:g",
            "arn:aws-us-gov:logs:us-gov-west-1:123456789012:log-group:g:*"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Read and trust policies
// ---------------------------------------------------------------------------------------------

#[test]
fn given_workspace_when_building_read_policy_then_runbook_actions_on_workspace_only() {
    // GIVEN a workspace ARN WHEN the read policy is built
    let doc = read_policy(WS_ARN);
    // THEN it is the runbook's statement, with our Sid
    assert_eq!(
        doc,
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "AllowPrometheusRead",
                "Effect": "Allow",
                "Action": [
                    "aps:ListWorkspaces", "aps:DescribeWorkspace", "aps:QueryMetrics",
                    "aps:GetLabels", "aps:GetSeries", "aps:GetMetricMetadata"
                ],
                "Resource": [WS_ARN]
            }]
        })
    );
}

#[test]
fn given_account_and_region_when_building_grafana_trust_then_service_and_confused_deputy_conditions() {
    // GIVEN an account and region WHEN the Grafana trust policy is built
    let doc = the_trust_policy();
    // THEN only grafana.amazonaws.com may assume it, for this account's workspaces in the region
    assert_eq!(
        doc,
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"Service": "grafana.amazonaws.com"},
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": "123456789012"},
                    "StringLike": {"aws:SourceArn": "arn:aws:grafana:us-east-1:123456789012:/workspaces/*"}
                }
            }]
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Equivalence
// ---------------------------------------------------------------------------------------------

#[test]
fn given_reordered_and_reformatted_write_policy_when_compared_then_equivalent() {
    // GIVEN the write policy as IAM might hand it back: statements and values reordered,
    // singletons as strings, action case changed, pretty-printed
    let variant = r#"
    {
        "Statement": [
            { "Resource": "arn:aws:aps:us-east-1:123456789012:workspace/ws-12345678-abcd-1234-abcd-123456789012",
              "Action": "APS:remotewrite", "Effect": "Allow", "Sid": "AllowPrometheusRemoteWrite" },
            { "Sid": "AllowXRayTracing", "Effect": "Allow", "Resource": ["*"],
              "Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"] },
            { "Sid": "AllowCloudWatchLogs", "Effect": "Allow",
              "Action": ["logs:DescribeLogStreams", "logs:PutLogEvents", "logs:CreateLogStream", "logs:CreateLogGroup"],
              "Resource": [
                  "arn:aws:logs:us-east-1:123456789012:log-group:/dr-prod/observability:*",
                  "arn:aws:logs:us-east-1:123456789012:log-group:/dr-prod/observability"
              ] }
        ],
        "Version": "2012-10-17"
    }"#;
    let variant = decode_document(variant).unwrap();
    // WHEN compared THEN equivalent, in both directions, with equal canonical forms
    assert!(equivalent(&variant, &the_write_policy()));
    assert!(equivalent(&the_write_policy(), &variant));
    assert_eq!(to_compact(&normalize(&variant)), to_compact(&normalize(&the_write_policy())));
}

#[test]
fn given_trust_policy_variants_when_compared_then_equivalent() {
    // GIVEN the trust policy with Statement as an object, Action/principal/condition values as
    // arrays, duplicated values, and a differently-cased condition key name
    let variant = json!({
        "Version": "2012-10-17",
        "Statement": {
            "Condition": {
                "StringLike": {"aws:SourceArn": ["arn:aws:grafana:us-east-1:123456789012:/workspaces/*"]},
                "StringEquals": {"AWS:SourceAccount": ["123456789012", "123456789012"]}
            },
            "Principal": {"Service": ["grafana.amazonaws.com"]},
            "Action": ["STS:AssumeRole"],
            "Effect": "Allow"
        }
    });
    // WHEN compared THEN equivalent
    assert!(equivalent(&variant, &the_trust_policy()));
}

#[test]
fn given_real_differences_when_compared_then_not_equivalent() {
    let base = the_write_policy();
    let trust = the_trust_policy();
    let mut cases: Vec<(&str, Value, Value)> = Vec::new();

    let mut extra_action = base.clone();
    extra_action["Statement"][2]["Action"] = json!(["aps:RemoteWrite", "aps:QueryMetrics"]);
    cases.push(("extra action", extra_action, base.clone()));

    let mut other_resource = base.clone();
    other_resource["Statement"][2]["Resource"] = json!("arn:aws:aps:us-east-1:123456789012:workspace/ws-other");
    cases.push(("different resource", other_resource, base.clone()));

    let mut resource_case = base.clone();
    resource_case["Statement"][0]["Resource"][0] =
        json!("arn:aws:logs:us-east-1:123456789012:log-group:/DR-PROD/observability");
    cases.push(("resource case (ARNs are case-sensitive)", resource_case, base.clone()));

    let mut missing_statement = base.clone();
    if let Some(a) = missing_statement["Statement"].as_array_mut() {
        a.pop();
    }
    cases.push(("missing statement", missing_statement, base.clone()));

    let mut deny = base.clone();
    deny["Statement"][1]["Effect"] = json!("Deny");
    cases.push(("effect", deny, base.clone()));

    let mut sid = base.clone();
    sid["Statement"][1]["Sid"] = json!("XRay");
    cases.push(("sid", sid, base.clone()));

    let mut version = base.clone();
    version["Version"] = json!("2008-10-17");
    cases.push(("version", version, base.clone()));

    let mut not_action = base.clone();
    if let Some(st) = not_action["Statement"][2].as_object_mut() {
        let a = st.remove("Action").unwrap_or(Value::Null);
        st.insert("NotAction".into(), a);
    }
    cases.push(("Action vs NotAction", not_action, base.clone()));

    let mut other_account = trust.clone();
    other_account["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"] = json!("210987654321");
    cases.push(("different condition value", other_account, trust.clone()));

    let mut extra_value = trust.clone();
    extra_value["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"] =
        json!(["123456789012", "210987654321"]);
    cases.push(("extra condition value (ORed)", extra_value, trust.clone()));

    let mut operator = trust.clone();
    if let Some(c) = operator["Statement"][0]["Condition"].as_object_mut() {
        let like = c.remove("StringLike").unwrap_or(Value::Null);
        c.insert(
            "StringEquals".into(),
            json!({"aws:SourceAccount": "123456789012", "aws:SourceArn": like["aws:SourceArn"]}),
        );
    }
    cases.push(("different condition operator", operator, trust.clone()));

    let mut no_condition = trust.clone();
    if let Some(st) = no_condition["Statement"][0].as_object_mut() {
        st.remove("Condition");
    }
    cases.push(("condition removed", no_condition, trust.clone()));

    let mut principal = trust.clone();
    principal["Statement"][0]["Principal"] = json!({"Service": ["grafana.amazonaws.com", "ec2.amazonaws.com"]});
    cases.push(("extra principal", principal, trust.clone()));

    for (what, a, b) in cases {
        assert!(!equivalent(&a, &b), "{what}: should not be equivalent");
        assert!(!equivalent(&b, &a), "{what}: should not be equivalent (reversed)");
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// The Grafana trust policy as the runbook submits it (pretty-printed by the heredoc), as
/// `GetRole` returns it in AWS: RFC 3986 percent-encoded, only `A-Za-z0-9-_.~` left as is.
const AWS_ENCODED_TRUST: &str = "%7B%0A%20%20%22Version%22%3A%20%222012-10-17%22%2C%0A%20%20%22Statement%22%3A%20%5B%0A%20%20%20%20%7B%0A%20%20%20%20%20%20%22Effect%22%3A%20%22Allow%22%2C%0A%20%20%20%20%20%20%22Action%22%3A%20%22sts%3AAssumeRole%22%2C%0A%20%20%20%20%20%20%22Principal%22%3A%20%7B%0A%20%20%20%20%20%20%20%20%22Service%22%3A%20%22grafana.amazonaws.com%22%0A%20%20%20%20%20%20%7D%2C%0A%20%20%20%20%20%20%22Condition%22%3A%20%7B%0A%20%20%20%20%20%20%20%20%22StringEquals%22%3A%20%7B%0A%20%20%20%20%20%20%20%20%20%20%22aws%3ASourceAccount%22%3A%20%22123456789012%22%0A%20%20%20%20%20%20%20%20%7D%2C%0A%20%20%20%20%20%20%20%20%22StringLike%22%3A%20%7B%0A%20%20%20%20%20%20%20%20%20%20%22aws%3ASourceArn%22%3A%20%22arn%3Aaws%3Agrafana%3Aus-east-1%3A123456789012%3A%2Fworkspaces%2F%2A%22%0A%20%20%20%20%20%20%20%20%7D%0A%20%20%20%20%20%20%7D%0A%20%20%20%20%7D%0A%20%20%5D%0A%7D";

#[test]
fn given_aws_url_encoded_trust_policy_when_decoded_then_equals_our_document() {
    // GIVEN GetRole's AssumeRolePolicyDocument from AWS WHEN decoded
    let doc = decode_document(AWS_ENCODED_TRUST).unwrap();
    // THEN it is exactly the document we built (not only equivalent)
    assert_eq!(doc, the_trust_policy());
}

#[test]
fn given_moto_plain_json_when_decoded_then_parsed_as_is() {
    // GIVEN moto's plain JSON (with a '%' and a '+' that must not be decoded)
    let raw = r#"{"Version":"2012-10-17","Statement":[{"Sid":"a+b%20c","Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
    // WHEN decoded THEN taken verbatim
    let doc = decode_document(raw).unwrap();
    assert_eq!(doc["Statement"][0]["Sid"], "a+b%20c");
}

#[test]
fn given_compact_write_policy_encoded_like_get_policy_version_when_decoded_then_round_trips() {
    // GIVEN the compact write policy percent-encoded the way IAM does
    const RFC3986_RESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(&to_compact(&the_write_policy()), RFC3986_RESERVED).to_string();
    assert!(encoded.starts_with("%7B%22Statement%22%3A%5B") && encoded.contains("%2A"));
    // WHEN decoded THEN the same document
    assert_eq!(decode_document(&encoded).unwrap(), the_write_policy());
}

#[test]
fn given_encoded_plus_sign_when_decoded_then_it_stays_a_plus() {
    // GIVEN a '+' in a value: RFC 3986 encodes it as %2B, and a raw '+' is a literal plus
    let doc = decode_document("%7B%22Sid%22%3A%22a%2Bb%22%2C%22Id%22%3A%22c+d%22%7D").unwrap();
    // THEN neither becomes a space
    assert_eq!(doc, json!({"Sid": "a+b", "Id": "c+d"}));
}

#[test]
fn given_undecodable_document_when_decoded_then_internal_error_with_clear_message() {
    for raw in ["", "%7B%22Version", "<Policy/>", "%C3%28", "\"just a string\""] {
        let err = decode_document(raw).unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{raw}: {err:?}");
        assert!(err.to_string().contains("policy document"), "{raw}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

#[test]
fn given_documents_when_measuring_then_whitespace_is_not_counted() {
    // GIVEN a pretty-printed and a compact serialization of the same document
    let pretty = serde_json::to_string_pretty(&the_write_policy()).unwrap();
    let compact = to_compact(&the_write_policy());
    // THEN both measure the same: the compact string has no whitespace in our documents
    assert_eq!(document_length(&decode_document(&pretty).unwrap()), compact.chars().count());
    assert!(!compact.chars().any(char::is_whitespace));
    // and the trust policy: its compact form, character for character
    let trust = r#"{"Statement":[{"Action":"sts:AssumeRole","Condition":{"StringEquals":{"aws:SourceAccount":"123456789012"},"StringLike":{"aws:SourceArn":"arn:aws:grafana:us-east-1:123456789012:/workspaces/*"}},"Effect":"Allow","Principal":{"Service":"grafana.amazonaws.com"}}],"Version":"2012-10-17"}"#;
    assert_eq!(to_compact(&the_trust_policy()), trust);
    assert_eq!(document_length(&the_trust_policy()), trust.len());
}

#[test]
fn given_our_documents_when_checked_then_within_quotas_even_with_longest_log_group() {
    // GIVEN the longest log group name CloudWatch allows (512 characters)
    let longest = format!("/{}", "a".repeat(511));
    let doc = write_policy(PARTITION, REGION, ACCOUNT, &longest, WS_ARN);
    // THEN the write, read and trust policies fit their quotas
    assert!(document_length(&doc) < MANAGED_POLICY_MAX_CHARS);
    check_managed_policy_size("write", &doc).unwrap();
    check_managed_policy_size("read", &read_policy(WS_ARN)).unwrap();
    check_trust_policy_size("grafana", &the_trust_policy(), TRUST_POLICY_MAX_CHARS).unwrap();
}

/// `{"Sid":"xxx..."}`: 10 characters plus `n`.
fn doc_of_length(total: usize) -> Value {
    json!({"Sid": "x".repeat(total - 10)})
}

#[test]
fn given_documents_at_the_quota_boundaries_when_checked_then_exactly_over_fails() {
    assert_eq!(document_length(&doc_of_length(MANAGED_POLICY_MAX_CHARS)), 6144);
    check_managed_policy_size("p", &doc_of_length(6144)).unwrap();
    let err = check_managed_policy_size("dr-core-write", &doc_of_length(6145)).unwrap_err();
    assert_eq!(err.name(), "LimitExceededError");
    let msg = err.to_string();
    assert!(msg.contains("dr-core-write") && msg.contains("6145") && msg.contains("6,144"), "{msg}");

    check_trust_policy_size("r", &doc_of_length(TRUST_POLICY_MAX_CHARS), TRUST_POLICY_MAX_CHARS).unwrap();
    let err = check_trust_policy_size("dr-grafana", &doc_of_length(2049), TRUST_POLICY_MAX_CHARS).unwrap_err();
    assert_eq!(err.name(), "LimitExceededError");
    let msg = err.to_string();
    assert!(msg.contains("dr-grafana") && msg.contains("2049") && msg.contains("2,048"), "{msg}");
}

#[test]
fn given_multibyte_characters_when_measuring_then_characters_not_bytes_are_counted() {
    let doc = json!({"Sid": "é".repeat(2000)});
    assert_eq!(document_length(&doc), 2010);
    check_trust_policy_size("r", &doc, policy::TRUST_POLICY_MAX_CHARS).unwrap();
    assert_eq!(policy::TRUST_POLICY_MAX_CHARS, 2048);
}

// ---------------------------------------------------------------------------------------------
// Helm values
// ---------------------------------------------------------------------------------------------

/// The runbook's "Full chart configuration" block, placeholders as written there.
const RUNBOOK_TEMPLATE: &str = "global:
  observability:
    auth:
      aws:
        enabled: true
        roleArn: <IRSA_ROLE_ARN>
        region: <AWS_REGION>

    exporters:
      awscloudwatchlogs:
        region: <AWS_REGION>
        log_group_name: <LOG_GROUP_NAME>
        log_stream_name: <LOG_STREAM_NAME>
      prometheusremotewrite:
        endpoint: <PROMETHEUS_REMOTE_WRITE_URL>
        auth:
          authenticator: sigv4auth
      awsxray:
        region: <AWS_REGION>

    signals:
      logs:
        exporters: [awscloudwatchlogs]
      metrics:
        exporters: [prometheusremotewrite]
      traces:
        exporters: [awsxray]
";

fn golden_values() -> HelmValues {
    HelmValues {
        irsa_role_arn: "arn:aws:iam::123456789012:role/dr-core-irsa".into(),
        region: "us-east-1".into(),
        log_group_name: "/dr-prod/observability".into(),
        log_stream_name: "otel-collector".into(),
        remote_write_url: "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-12345678-abcd-1234-abcd-123456789012/api/v1/remote_write".into(),
    }
}

fn substitute(template: &str, v: &HelmValues) -> String {
    template
        .replace("<IRSA_ROLE_ARN>", &v.irsa_role_arn)
        .replace("<AWS_REGION>", &v.region)
        .replace("<LOG_GROUP_NAME>", &v.log_group_name)
        .replace("<LOG_STREAM_NAME>", &v.log_stream_name)
        .replace("<PROMETHEUS_REMOTE_WRITE_URL>", &v.remote_write_url)
}

/// Key paths (`global.observability.auth.aws.enabled`, ...) and raw values of a block-mapping
/// YAML document, by indentation; an error for anything that is not `key:` or `key: value`.
fn key_paths(yaml: &str) -> Result<Vec<(String, String)>, String> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut out = Vec::new();
    for line in yaml.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        let (key, value) = rest.split_once(':').ok_or_else(|| format!("not a mapping line: {line:?}"))?;
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("unexpected key {key:?} in {line:?}"));
        }
        if !(value.is_empty() || value.starts_with(' ')) {
            return Err(format!("bad separator in {line:?}"));
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_string()));
        let path = stack.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>().join(".");
        out.push((path, value.trim_start().to_string()));
    }
    Ok(out)
}

#[test]
fn given_golden_inputs_when_rendering_then_output_matches_golden_file() {
    let golden_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/helm-values.yaml");
    let out = helm_values(&golden_values());
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&golden_path, &out).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).unwrap();
    assert_eq!(
        out,
        golden,
        "rendered values differ from {}; rerun with UPDATE_GOLDEN=1 to accept",
        golden_path.display()
    );
}

#[test]
fn given_plain_safe_values_when_rendering_then_output_is_the_runbook_block_with_values_substituted() {
    // GIVEN values that are all safe plain scalars
    let v = golden_values();
    // THEN the output is byte for byte the runbook's block with the placeholders replaced
    assert_eq!(helm_values(&v), substitute(RUNBOOK_TEMPLATE, &v));
}

#[test]
fn given_any_values_when_rendering_then_key_paths_and_order_match_the_runbook() {
    let template_paths: Vec<String> = key_paths(RUNBOOK_TEMPLATE).unwrap().into_iter().map(|(p, _)| p).collect();
    assert_eq!(template_paths.len(), 25);
    assert_eq!(template_paths[0], "global");
    assert_eq!(template_paths[4], "global.observability.auth.aws.enabled");
    let tricky = HelmValues {
        irsa_role_arn: "x\nevil: true".into(),
        region: "yes".into(),
        log_group_name: "#comment".into(),
        log_stream_name: "a: b".into(),
        remote_write_url: " {x}".into(),
    };
    for v in [golden_values(), tricky] {
        let rendered: Vec<String> = key_paths(&helm_values(&v)).unwrap().into_iter().map(|(p, _)| p).collect();
        assert_eq!(rendered, template_paths, "for {v:?}");
    }
}

/// Reads a rendered scalar back: plain as is, double-quoted with YAML/JSON escapes.
fn read_scalar(raw: &str) -> Result<String, String> {
    let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return Ok(raw.to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if c == '"' {
                return Err(format!("unescaped quote in {raw}"));
            }
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16).map_err(|e| format!("bad \\u{hex} in {raw}: {e}"))?;
                out.push(char::from_u32(code).ok_or_else(|| format!("bad code point {code:#x} in {raw}"))?);
            }
            other => return Err(format!("unknown escape {other:?} in {raw}")),
        }
    }
    Ok(out)
}

#[test]
fn given_tricky_values_when_rendering_then_they_are_quoted_and_read_back_unchanged() {
    let cases: &[(&str, &str)] = &[
        ("yes", "\"yes\""),
        ("No", "\"No\""),
        ("on", "\"on\""),
        ("null", "\"null\""),
        ("~", "\"~\""),
        ("true", "\"true\""),
        ("12345", "\"12345\""),
        ("1e3", "\"1e3\""),
        ("0o17", "\"0o17\""),
        ("-1", "\"-1\""),
        (": x", "\": x\""),
        ("a: b", "\"a: b\""),
        ("ends:", "\"ends:\""),
        ("#x", "\"#x\""),
        ("a #x", "\"a #x\""),
        (" leading", "\" leading\""),
        ("trailing ", "\"trailing \""),
        ("", "\"\""),
        ("- item", "\"- item\""),
        ("[a]", "\"[a]\""),
        ("{a: 1}", "\"{a: 1}\""),
        ("*ref", "\"*ref\""),
        ("&anchor", "\"&anchor\""),
        ("!!str", "\"!!str\""),
        ("|", "\"|\""),
        (">-", "\">-\""),
        ("'single'", "\"'single'\""),
        ("\"double\"", "\"\\\"double\\\"\""),
        ("back\\slash", "\"back\\\\slash\""),
        ("two\nlines", "\"two\\nlines\""),
        ("tab\tin", "\"tab\\tin\""),
        ("bell\u{7}", "\"bell\\u0007\""),
        ("日本語ログ", "\"日本語ログ\""),
        ("x\u{2028}y", "\"x\\u2028y\""),
        ("x\u{85}y", "\"x\\u0085y\""),
    ];
    for (value, expected) in cases {
        let v = HelmValues { log_stream_name: (*value).to_string(), ..golden_values() };
        let out = helm_values(&v);
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with("log_stream_name:"))
            .unwrap_or_else(|| panic!("no log_stream_name line for {value:?}"));
        let raw = line.trim_start().trim_start_matches("log_stream_name: ");
        assert_eq!(raw, *expected, "rendering of {value:?}");
        assert_eq!(read_scalar(raw).unwrap(), *value, "round trip of {value:?}");
        assert_eq!(out.lines().count(), RUNBOOK_TEMPLATE.lines().count(), "line count for {value:?}");
    }
}

#[test]
fn given_values_when_rendering_then_output_ends_with_single_newline_and_has_no_tabs() {
    let out = helm_values(&golden_values());
    assert!(out.ends_with("]\n") && !out.ends_with("\n\n"));
    assert!(!out.contains('\t'));
    assert!(out.lines().all(|l| !l.ends_with(' ')));
}

#[test]
fn given_helm_values_when_serialized_then_field_names_are_stable() {
    let v = serde_json::to_value(golden_values()).unwrap();
    let keys: Vec<&String> = v.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["irsa_role_arn", "log_group_name", "log_stream_name", "region", "remote_write_url"]);
    let back: HelmValues = serde_json::from_value(v).unwrap();
    assert_eq!(back, golden_values());
}
