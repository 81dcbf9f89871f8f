//! The IRSA trust merge against a corpus of real-world trust-policy shapes
//! (`tests/fixtures/trust/*.json`: eksctl, terraform-aws-modules, several clusters, mixed
//! principals, namespace-wide patterns, already patched, Deny statements, near the quota...).
//!
//! For every document and a generated set of requests, the merge must keep every trust, add only
//! our grant, be idempotent, and be exactly undone by `remove`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use o11y_shared::names::trust_statement_sid;
use o11y_shared::policy::{document_length, TRUST_POLICY_MAX_CHARS};
use o11y_shared::trust::{admits, desired_statement, merge, remove, AssumeRequest, IrsaGrant, TrustMerge};
use serde_json::Value;

const ACCOUNT: &str = "111122223333";
const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/5C6D7E8F9A0B1C2D3E4F5A6B7C8D9E0F";
const NAMESPACE: &str = "dr-core";
const DEPLOYMENT: &str = "dr-prod";
const REGION: &str = "us-east-1";
const FOREIGN_PROVIDER: &str =
    "arn:aws:iam::999988887777:oidc-provider/oidc.eks.ap-south-1.amazonaws.com/id/FFFFEEEEDDDDCCCCBBBBAAAA99998888";
const OUR_PREFIX: &str = "system:serviceaccount:dr-core:observability-";

/// What merging a corpus document must produce.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Our statement is appended; no warning.
    Appended,
    /// Already admitted (ours from an earlier run, or covered by an existing statement).
    Unchanged,
    /// Appended, but a Deny blocks the grant: a warning names it.
    AppendedDenyWarning,
    /// The result would exceed the 2,048-character quota.
    QuotaExceeded,
}

/// Every fixture and its expected outcome: a new fixture must be classified here.
const CORPUS: &[(&str, Expect)] = &[
    ("eksctl-single-sa.json", Expect::Appended),
    ("terraform-irsa-module-sub-list.json", Expect::Appended),
    ("two-clusters.json", Expect::Appended),
    ("mixed-service-and-account-principals.json", Expect::Appended),
    ("namespace-wide-stringlike.json", Expect::Unchanged),
    ("namespace-wide-sts-star-no-aud.json", Expect::Unchanged),
    ("stringlike-namespace-prefix.json", Expect::Unchanged),
    ("already-patched-our-sid.json", Expect::Unchanged),
    ("already-patched-runbook-sid.json", Expect::Unchanged),
    ("statement-object.json", Expect::Appended),
    ("action-array-with-tag-session.json", Expect::Appended),
    ("federated-array-no-conditions.json", Expect::Unchanged),
    ("federated-array-other-clusters.json", Expect::Appended),
    ("deny-default-service-account.json", Expect::Appended),
    ("deny-guard-blocks-grant.json", Expect::AppendedDenyWarning),
    ("stringlike-other-namespace.json", Expect::Appended),
    ("stringequals-pattern-literal.json", Expect::Appended),
    ("near-quota.json", Expect::QuotaExceeded),
];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trust")
}

/// A fixture, parsed; a missing or broken fixture fails the test loudly.
#[allow(clippy::panic)]
fn load(name: &str) -> Value {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn our_provider() -> String {
    format!("arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}")
}

fn grant() -> IrsaGrant {
    IrsaGrant::new(&our_provider(), ISSUER, NAMESPACE)
}

fn sid() -> String {
    trust_statement_sid(DEPLOYMENT, REGION)
}

fn collector() -> AssumeRequest {
    AssumeRequest::WebIdentity {
        provider_arn: our_provider(),
        sub: format!("{OUR_PREFIX}collector"),
        aud: "sts.amazonaws.com".to_string(),
    }
}

/// The statements of a document, whether `Statement` is an object or an array.
fn statements_of(doc: &Value) -> Vec<Value> {
    match doc.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(other) => vec![other.clone()],
        None => Vec::new(),
    }
}

/// Strings of a string-or-array value.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Principals and claim values seen in a document, to build requests that exercise it.
#[derive(Default)]
struct Seen {
    providers: BTreeSet<String>,
    services: BTreeSet<String>,
    aws: BTreeSet<String>,
    subs: BTreeSet<String>,
    auds: BTreeSet<String>,
}

fn collect(doc: &Value, seen: &mut Seen) {
    for statement in statements_of(doc) {
        for principal_key in ["Principal", "NotPrincipal"] {
            if let Some(p) = statement.get(principal_key).and_then(Value::as_object) {
                seen.providers.extend(p.get("Federated").map(strings).unwrap_or_default());
                seen.services.extend(p.get("Service").map(strings).unwrap_or_default());
                seen.aws.extend(p.get("AWS").map(strings).unwrap_or_default());
            }
        }
        let Some(conditions) = statement.get("Condition").and_then(Value::as_object) else { continue };
        for block in conditions.values().filter_map(Value::as_object) {
            for (key, values) in block {
                let target = if key.ends_with(":sub") {
                    &mut seen.subs
                } else if key.ends_with(":aud") {
                    &mut seen.auds
                } else {
                    continue;
                };
                for v in strings(values) {
                    // The value itself (a pattern taken literally) and instances of the pattern.
                    target.insert(v.replace('*', "x").replace('?', "a"));
                    target.insert(v.replace('*', "").replace('?', "b"));
                    target.insert(v);
                }
            }
        }
    }
}

/// Requests for a document: web identity for every provider seen (plus ours and a foreign one)
/// times interesting subs and auds, plus every service and AWS principal seen and foreign ones.
fn requests_for(doc: &Value) -> Vec<AssumeRequest> {
    let mut seen = Seen::default();
    collect(doc, &mut seen);
    seen.providers.extend([our_provider(), FOREIGN_PROVIDER.to_string()]);
    for name in [
        "observability-collector",
        "observability-agent",
        "observability-",
        "observability-*",
        "observability",
        "observability-collector-extra",
        "Observability-collector",
        "xobservability-a",
        "datarobot-app",
        "datarobot-prediction-server",
        "default",
    ] {
        seen.subs.insert(format!("system:serviceaccount:{NAMESPACE}:{name}"));
    }
    seen.subs.extend(
        [
            "system:serviceaccount:dr-core-evil:observability-x",
            "system:serviceaccount:dr-cor:observability-x",
            "system:serviceaccount:other:observability-collector",
            "system:serviceaccount:monitoring:observability-collector",
            "system:serviceaccount:kube-system:aws-node",
            "system:serviceaccount:dr-core",
            "system:serviceaccount:dr-core:",
            "system:serviceaccount:*",
            "",
            "*",
        ]
        .map(str::to_string),
    );
    seen.auds.extend(
        ["sts.amazonaws.com", "STS.amazonaws.com", "sts.amazonaws.com.evil", "https://kubernetes.default.svc", ""]
            .map(str::to_string),
    );
    seen.services.extend(["ec2.amazonaws.com", "lambda.amazonaws.com", "grafana.amazonaws.com"].map(str::to_string));
    let mut aws = BTreeSet::new();
    for a in seen.aws.iter().chain(&[
        format!("arn:aws:iam::{ACCOUNT}:root"),
        format!("arn:aws:iam::{ACCOUNT}:role/platform-admin"),
        "arn:aws:iam::444455556666:role/github-actions-deployer".to_string(),
        "arn:aws:iam::999988887777:user/mallory".to_string(),
    ]) {
        aws.insert(a.clone());
        // A principal inside an account given as a root ARN or an id.
        let account = a.split(':').nth(4).filter(|s| !s.is_empty()).unwrap_or(a.as_str()).to_string();
        aws.insert(format!("arn:aws:iam::{account}:role/some-role"));
    }

    let mut out = Vec::new();
    for provider in &seen.providers {
        for sub in &seen.subs {
            for aud in &seen.auds {
                out.push(AssumeRequest::WebIdentity {
                    provider_arn: provider.clone(),
                    sub: sub.clone(),
                    aud: aud.clone(),
                });
            }
        }
    }
    out.extend(seen.services.into_iter().map(AssumeRequest::Service));
    out.extend(aws.into_iter().map(AssumeRequest::Aws));
    out
}

/// The only requests a merge may newly admit.
fn is_our_grant(req: &AssumeRequest) -> bool {
    matches!(req, AssumeRequest::WebIdentity { provider_arn, sub, aud }
        if *provider_arn == our_provider() && aud == "sts.amazonaws.com" && sub.starts_with(OUR_PREFIX))
}

fn has_deny(doc: &Value) -> bool {
    statements_of(doc).iter().any(|s| s.get("Effect").and_then(Value::as_str) == Some("Deny"))
}

#[test]
fn every_fixture_is_classified() {
    // GIVEN the fixture directory WHEN listed THEN every file is in CORPUS and vice versa
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CORPUS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    // THEN every fixture is a valid-size trust policy with at least one statement
    for (name, _) in CORPUS {
        let doc = load(name);
        assert!(document_length(&doc) <= TRUST_POLICY_MAX_CHARS, "{name} is over the quota already");
        assert!(!statements_of(&doc).is_empty(), "{name}");
    }
}

#[test]
fn already_patched_fixture_carries_our_sid() {
    // GIVEN the already-patched fixture WHEN compared with what we would add THEN it holds it exactly
    let doc = load("already-patched-our-sid.json");
    assert!(
        statements_of(&doc).contains(&desired_statement(&grant(), &sid())),
        "regenerate the fixture: Sid or statement changed"
    );
}

#[test]
fn merge_keeps_all_trust_and_adds_only_our_grant() {
    for (name, expect) in CORPUS.iter().copied().filter(|(_, e)| *e != Expect::QuotaExceeded) {
        // GIVEN a corpus document and requests exercising every principal in it
        let original = load(name);
        let requests = requests_for(&original);
        assert!(requests.len() > 100, "{name}: too few requests");

        // WHEN merged
        let m: TrustMerge = merge(&original, &grant(), &sid()).unwrap_or_else(|e| panic!("{name}: {e}"));

        // THEN the outcome is the expected one
        match expect {
            Expect::Unchanged => {
                assert!(!m.changed, "{name}: should be unchanged");
                assert_eq!(m.document, original, "{name}");
                assert_eq!(m.added_statement, None, "{name}");
            }
            Expect::Appended | Expect::AppendedDenyWarning => {
                assert!(m.changed, "{name}: should change");
                assert_eq!(m.added_statement, Some(desired_statement(&grant(), &sid())), "{name}");
                // THEN existing statements are untouched and in order, ours last
                let before = statements_of(&original);
                let after = statements_of(&m.document);
                assert_eq!(after.len(), before.len() + 1, "{name}");
                assert_eq!(after[..before.len()], before[..], "{name}: existing statements changed");
                assert_eq!(after.last(), m.added_statement.as_ref(), "{name}");
                // THEN everything outside Statement is untouched
                let strip = |d: &Value| {
                    let mut d = d.clone();
                    d.as_object_mut().unwrap().remove("Statement");
                    d
                };
                assert_eq!(strip(&m.document), strip(&original), "{name}");
            }
            Expect::QuotaExceeded => unreachable!(),
        }
        if expect == Expect::AppendedDenyWarning {
            assert!(m.warnings.iter().any(|w| w.contains("Deny")), "{name}: {:?}", m.warnings);
        } else {
            assert!(m.warnings.is_empty(), "{name}: {:?}", m.warnings);
        }

        for req in &requests {
            let before = admits(&original, req);
            let after = admits(&m.document, req);
            // THEN (1) everything admitted before is admitted after
            assert!(!before || after, "{name}: merge removed trust for {req:?}");
            // THEN (2) anything newly admitted is our grant
            assert!(before || !after || is_our_grant(req), "{name}: merge newly trusts {req:?}");
        }

        // THEN (3) the collector is admitted, unless a Deny blocks it and a warning says so
        if !admits(&m.document, &collector()) {
            assert!(has_deny(&m.document), "{name}: collector not admitted and no Deny");
            assert!(m.warnings.iter().any(|w| w.contains("Deny") && w.contains("blocks")), "{name}: {:?}", m.warnings);
        } else {
            assert_ne!(expect, Expect::AppendedDenyWarning, "{name}: the Deny fixture should block the collector");
        }

        // WHEN merged again THEN (4) nothing changes
        let again = merge(&m.document, &grant(), &sid()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!again.changed, "{name}: second merge changed");
        assert_eq!(again.document, m.document, "{name}: second merge changed the document");
        assert_eq!(again.added_statement, None, "{name}");

        // WHEN what was added is removed THEN (5) exactly the original trust remains, idempotently
        let added = m.added_statement.clone().unwrap_or(Value::Null);
        let removed = remove(&m.document, &added);
        for req in &requests {
            assert_eq!(admits(&removed, req), admits(&original, req), "{name}: remove changed trust for {req:?}");
        }
        assert_eq!(remove(&removed, &added), removed, "{name}: remove is not idempotent");
        match original.get("Statement") {
            Some(Value::Array(_)) => assert_eq!(removed, original, "{name}"),
            Some(single) => assert_eq!(removed["Statement"], Value::Array(vec![single.clone()]), "{name}"),
            None => {}
        }

        // THEN the result survives the step state's JSON round trip
        let round: TrustMerge = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(round, m, "{name}");
    }
}

#[test]
fn removing_from_an_untouched_document_changes_nothing() {
    for (name, _) in CORPUS {
        // GIVEN an original corpus document WHEN removing our statement (never added) THEN unchanged
        let original = load(name);
        let desired = desired_statement(&grant(), &sid());
        let removed = remove(&original, &desired);
        if *name == "already-patched-our-sid.json" {
            // (a document holding exactly our statement loses just that statement)
            assert_eq!(statements_of(&removed).len(), statements_of(&original).len() - 1);
        } else {
            assert_eq!(removed, original, "{name}");
        }
    }
}

#[test]
fn merge_over_the_trust_policy_quota_fails_with_the_lengths() {
    // GIVEN a policy near the 2,048-character quota (a terraform module role with many service accounts)
    let original = load("near-quota.json");
    let current = document_length(&original);
    assert!(current <= TRUST_POLICY_MAX_CHARS);
    let mut appended = original.clone();
    appended["Statement"].as_array_mut().unwrap().push(desired_statement(&grant(), &sid()));
    let resulting = document_length(&appended);
    assert!(resulting > TRUST_POLICY_MAX_CHARS);

    // WHEN merged
    let err = merge(&original, &grant(), &sid()).unwrap_err();

    // THEN LimitExceeded names the current and resulting lengths and the quota
    assert_eq!(err.name(), "LimitExceededError");
    let msg = err.to_string();
    for needle in [current.to_string(), resulting.to_string(), TRUST_POLICY_MAX_CHARS.to_string(), sid()] {
        assert!(msg.contains(&needle), "{needle} missing from: {msg}");
    }
    assert!(msg.contains("quota"), "{msg}");
}

#[test]
fn whitespace_does_not_count_towards_the_quota() {
    // GIVEN the near-quota fixture pretty-printed on disk (well over 2,048 bytes with indentation)
    let raw = std::fs::read_to_string(fixtures_dir().join("near-quota.json")).unwrap();
    assert!(raw.len() > TRUST_POLICY_MAX_CHARS);
    // WHEN its length is counted THEN it is under the quota (whitespace excluded)
    assert!(document_length(&load("near-quota.json")) <= TRUST_POLICY_MAX_CHARS);
}
