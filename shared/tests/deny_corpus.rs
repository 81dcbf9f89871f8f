//! Verification errs toward "fail": a corpus of `Deny` shapes (`tests/fixtures/deny/corpus.json`:
//! absent keys of another issuer, `...IfExists`, `Null`, `ForAllValues:`/`ForAnyValue:`,
//! `NotPrincipal`, `NotAction`, case-insensitive key names, unknown operators) added to a trust
//! policy that otherwise admits our collector. For each, [`verdict`] must say what IAM decides:
//! denied (`Some(false)`), cannot prove (`None`, verify fails too) or admitted (`Some(true)`).

use std::path::Path;

use o11y_shared::trust::{admits, desired_statement, verdict, AssumeRequest, IrsaGrant};
use serde_json::{json, Value};

const ACCOUNT: &str = "111122223333";
const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/5C6D7E8F9A0B1C2D3E4F5A6B7C8D9E0F";
const OTHER_ISSUER: &str = "oidc.eks.eu-west-1.amazonaws.com/id/AAAABBBBCCCCDDDDEEEEFFFF00001111";
const NAMESPACE: &str = "dr-core";

/// The corpus with its placeholders filled in.
#[allow(clippy::panic)]
fn corpus() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deny/corpus.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = text
        .replace("{{PROVIDER}}", &format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"))
        .replace("{{OTHER_PROVIDER}}", &format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{OTHER_ISSUER}"))
        .replace("{{ISSUER_UPPER}}", &ISSUER.to_uppercase())
        .replace("{{OTHER_ISSUER}}", OTHER_ISSUER)
        .replace("{{ISSUER}}", ISSUER)
        .replace("{{NAMESPACE}}", NAMESPACE);
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    doc["cases"].as_array().cloned().unwrap_or_default()
}

fn collector() -> AssumeRequest {
    AssumeRequest::WebIdentity {
        provider_arn: format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"),
        sub: format!("system:serviceaccount:{NAMESPACE}:observability-collector"),
        aud: "sts.amazonaws.com".into(),
    }
}

fn base_policy() -> Value {
    let grant = IrsaGrant::new(&format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"), ISSUER, NAMESPACE);
    json!({ "Version": "2012-10-17", "Statement": [desired_statement(&grant, "O11yProvisionerIrsaTest")] })
}

#[test]
fn the_base_policy_admits_the_collector() {
    assert_eq!(verdict(&base_policy(), &collector()), Some(true));
    assert!(admits(&base_policy(), &collector()));
}

#[test]
fn every_deny_shape_gets_iams_verdict() {
    let cases = corpus();
    assert!(cases.len() >= 20, "the corpus lost cases: {}", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap_or("?");
        let expected = match case["expect"].as_str() {
            Some("denied") => Some(false),
            Some("cannot-prove") => None,
            Some("passes") => Some(true),
            other => {
                wrong.push(format!("{name}: unknown expectation {other:?}"));
                continue;
            }
        };
        let mut doc = base_policy();
        if let Some(statements) = doc["Statement"].as_array_mut() {
            statements.push(case["statement"].clone());
        }
        let got = verdict(&doc, &collector());
        if got != expected {
            wrong.push(format!("{name}: expected {expected:?}, verdict {got:?} ({})", case["why"]));
        }
        // What verify would report as passing must be exactly the admitted cases.
        if (got == Some(true)) != (expected == Some(true)) {
            wrong.push(format!("{name}: verify would report {:?}", got == Some(true)));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_corpus_covers_each_family() {
    let cases = corpus();
    let text = serde_json::to_string(&cases).unwrap_or_default();
    for needle in ["IfExists", "\"Null\"", "ForAllValues:", "ForAnyValue:", "NotPrincipal", "NotAction", OTHER_ISSUER] {
        assert!(text.contains(needle), "the corpus has no {needle} case");
    }
    for expect in ["denied", "cannot-prove", "passes"] {
        assert!(cases.iter().any(|c| c["expect"] == expect), "no {expect} case");
    }
}
