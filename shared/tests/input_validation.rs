//! The input contract end to end through the public API: JSON parsing errors with their paths,
//! every field's validator (good values accepted, tables of bad values rejected with the right
//! `field`), the defaults derived from `deploymentName`, and the namespace trust boundary.

// `allow-panic-in-tests` covers `#[test]` functions only; the shared assertion helpers below fail
// the test the same way.
#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

use o11y_shared::input::{self, Deployment, ProvisionInput};
use o11y_shared::validate;
use o11y_shared::Error;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The minimal input from the issue.
fn minimal() -> Value {
    json!({"deploymentName":"dr-prod","cluster":{"name":"dr-eks"},"namespace":"dr-core","irsaRoleName":"dr-core-irsa"})
}

/// The full example from the issue.
fn full() -> Value {
    json!({
        "deploymentName":"dr-prod","region":"us-east-1",
        "cluster":{"name":"dr-eks","oidcIssuer":"https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"},
        "namespace":"dr-core","irsaRoleName":"dr-core-irsa","amp":{"alias":"dr-prod"},
        "writePolicyName":"dr-prod-us-east-1-observability-write",
        "grafana":{"workspaceName":"dr-prod","roleName":"dr-prod-us-east-1-grafana",
                   "readPolicyName":"dr-prod-us-east-1-grafana-amp-read",
                   "version":"10.4","authenticationProviders":["AWS_SSO"]},
        "logs":{"groupName":"/dr-prod/observability","streamName":"otel-collector"},
        "ssmPrefix":"/o11y/dr-prod"
    })
}

/// `base` with the value at the dotted `path` replaced (intermediate objects created).
fn with(mut base: Value, path: &str, v: Value) -> Value {
    let mut cur = &mut base;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur[*p] = v;
            break;
        }
        if !cur[*p].is_object() {
            cur[*p] = json!({});
        }
        cur = &mut cur[*p];
    }
    base
}

/// `base` without the top-level key `key`.
fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().map(|o| o.remove(key));
    base
}

fn resolve(v: &Value) -> o11y_shared::Result<Deployment> {
    input::resolve(v, Some("us-east-1"))
}

/// The `(field, rule)` of a validation error; fails the test on success or another error kind.
#[track_caller]
fn rejected<T: std::fmt::Debug>(r: o11y_shared::Result<T>, what: &str) -> (String, String) {
    match r {
        Ok(v) => panic!("{what}: expected a ValidationError, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.name(), "ValidationError", "{what}: {e}");
            match e {
                Error::Validation { field, rule } => (field, rule),
                other => panic!("{what}: not a validation error: {other:?}"),
            }
        }
    }
}

/// Asserts a validation error on `field` whose rule is safe to show: bounded length, no raw
/// control or bidi characters, and it names the offending value the way `validate::shown` does.
#[track_caller]
fn assert_rejected<T: std::fmt::Debug>(r: o11y_shared::Result<T>, field: &str, bad: &str) {
    let what = format!("{field} = {bad:?}");
    let (f, rule) = rejected(r, &what);
    assert_eq!(f, field, "{what}: wrong field (rule: {rule})");
    assert_safe_rule(&rule, &what);
    assert!(rule.contains(&format!("(got {})", validate::shown(bad))), "{what}: rule does not show the value: {rule}");
}

#[track_caller]
fn assert_safe_rule(rule: &str, what: &str) {
    assert!(!rule.is_empty(), "{what}: empty rule");
    assert!(rule.chars().count() <= 1000, "{what}: rule too long ({} chars)", rule.chars().count());
    assert!(
        !rule.chars().any(|c| c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')),
        "{what}: rule holds raw control/invisible characters: {rule:?}"
    );
}

/// Runs `check` on every good value, then asserts every bad value is rejected naming `field`.
#[track_caller]
fn table<T: std::fmt::Debug>(
    field: &str,
    check: impl Fn(&str, &str) -> o11y_shared::Result<T>,
    good: &[&str],
    bad: &[&str],
) {
    for g in good {
        if let Err(e) = check(field, g) {
            panic!("{field}: good value {g:?} rejected: {e}");
        }
    }
    for b in bad {
        assert_rejected(check(field, b), field, b);
    }
}

/// A validator with its output dropped, for tables mixing `Result<()>` and `Result<String>`.
type Check = Box<dyn Fn(&str, &str) -> o11y_shared::Result<()>>;

fn s(n: usize, c: char) -> String {
    std::iter::repeat_n(c, n).collect()
}

// ---------------------------------------------------------------------------------------------
// Defaults and the examples from the issue
// ---------------------------------------------------------------------------------------------

#[test]
fn minimal_input_derives_every_default_from_deployment_name() {
    // GIVEN the minimal input and a function running in us-east-1
    let v = minimal();
    // WHEN it is resolved
    let d = resolve(&v).unwrap();
    // THEN every omitted field is derived from deploymentName "dr-prod"
    let expected = Deployment {
        name: "dr-prod".into(),
        region: "us-east-1".into(),
        partition: "aws".into(),
        expected_account_id: None,
        cluster_name: Some("dr-eks".into()),
        oidc_issuer: None,
        namespace: "dr-core".into(),
        irsa_role_name: "dr-core-irsa".into(),
        amp_alias: "dr-prod".into(),
        write_policy_name: "dr-prod-us-east-1-observability-write".into(),
        grafana_workspace_name: "dr-prod".into(),
        grafana_role_name: "dr-prod-us-east-1-grafana".into(),
        grafana_read_policy_name: "dr-prod-us-east-1-grafana-amp-read".into(),
        grafana_version: "10.4".into(),
        grafana_authentication_providers: vec!["AWS_SSO".into()],
        log_group_name: "/dr-prod/observability".into(),
        log_stream_name: "otel-collector".into(),
        ssm_prefix: "/o11y/dr-prod".into(),
        action: o11y_shared::input::Action::Apply,
        retain_metrics: true,
        retain_metrics_stated: false,
        grafana_admin_users: vec![],
        grafana_admin_groups: vec![],
        grafana_default_datasource: false,
        verify: o11y_shared::input::VerifyMode::Fail,
        target: None,
        record_prefix: None,
        trust_policy_quota: None,
    };
    assert_eq!(d, expected);
}

#[test]
fn full_example_from_the_issue_is_accepted_as_given() {
    // GIVEN the full example, every field spelled out
    let v = full();
    // WHEN it is resolved
    let d = resolve(&v).unwrap();
    // THEN every value is kept as given
    assert_eq!(d.name, "dr-prod");
    assert_eq!(d.region, "us-east-1");
    assert_eq!(d.partition, "aws");
    assert_eq!(d.cluster_name.as_deref(), Some("dr-eks"));
    assert_eq!(d.oidc_issuer.as_deref(), Some("https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"));
    assert_eq!(d.namespace, "dr-core");
    assert_eq!(d.irsa_role_name, "dr-core-irsa");
    assert_eq!(d.amp_alias, "dr-prod");
    assert_eq!(d.write_policy_name, "dr-prod-us-east-1-observability-write");
    assert_eq!(d.grafana_workspace_name, "dr-prod");
    assert_eq!(d.grafana_role_name, "dr-prod-us-east-1-grafana");
    assert_eq!(d.grafana_read_policy_name, "dr-prod-us-east-1-grafana-amp-read");
    assert_eq!(d.grafana_version, "10.4");
    assert_eq!(d.grafana_authentication_providers, vec!["AWS_SSO".to_string()]);
    assert_eq!(d.log_group_name, "/dr-prod/observability");
    assert_eq!(d.log_stream_name, "otel-collector");
    assert_eq!(d.ssm_prefix, "/o11y/dr-prod");
    // AND it equals the minimal input's resolution plus the issuer (the example spells out the defaults)
    let m =
        resolve(&with(minimal(), "cluster.oidcIssuer", json!("https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE")))
            .unwrap();
    assert_eq!(d, m);
}

#[test]
fn parsed_input_round_trips_through_serde() {
    // GIVEN the full example parsed
    let p: ProvisionInput = input::parse_input(&full()).unwrap();
    // WHEN it is serialised again
    let back = serde_json::to_value(&p).unwrap();
    // THEN the JSON is unchanged (camelCase names, nothing added)
    assert_eq!(back, full());
    // AND the method and the free function agree
    assert_eq!(p.resolve(Some("eu-west-1")).unwrap(), input::resolve(&full(), Some("eu-west-1")).unwrap());
}

#[test]
fn longest_deployment_name_still_derives_valid_names() {
    // GIVEN a 40-character deployment name (the maximum)
    let name = format!("a{}", s(39, 'b'));
    let v = with(minimal(), "deploymentName", json!(name));
    // WHEN it is resolved
    let d = resolve(&v).unwrap();
    // THEN every derived name passes its own validator and fits its AWS limit
    assert_eq!(d.grafana_role_name, format!("{name}-us-east-1-grafana"));
    assert!(d.grafana_role_name.len() <= 64);
    validate::iam_role_name("r", &d.grafana_role_name).unwrap();
    validate::iam_policy_name("p", &d.write_policy_name).unwrap();
    validate::iam_policy_name("p", &d.grafana_read_policy_name).unwrap();
    validate::amp_alias("a", &d.amp_alias).unwrap();
    validate::grafana_workspace_name("w", &d.grafana_workspace_name).unwrap();
    validate::log_group_name("g", &d.log_group_name).unwrap();
    assert_eq!(validate::ssm_prefix("s", &d.ssm_prefix).unwrap(), format!("/o11y/{name}"));
}

#[test]
fn explicit_values_override_defaults_and_region_overrides_the_function_region() {
    // GIVEN explicit names and an explicit region, and a function running elsewhere
    let v = with(
        with(with(minimal(), "region", json!("eu-west-1")), "amp.alias", json!("Other alias")),
        "ssmPrefix",
        json!("/x/y/"),
    );
    // WHEN it is resolved with default region us-east-1
    let d = input::resolve(&v, Some("us-east-1")).unwrap();
    // THEN the explicit values win and the prefix is normalised
    assert_eq!(d.region, "eu-west-1");
    assert_eq!(d.amp_alias, "Other alias");
    assert_eq!(d.ssm_prefix, "/x/y");
    assert_eq!(d.grafana_workspace_name, "dr-prod");
}

#[test]
fn region_defaults_to_the_function_region_and_sets_the_partition() {
    // GIVEN no region in the input
    // WHEN the function runs in China, GovCloud or nowhere
    let cn = input::resolve(&minimal(), Some("cn-north-1")).unwrap();
    let gov = input::resolve(&minimal(), Some("us-gov-west-1")).unwrap();
    let none = input::resolve(&minimal(), None);
    let bad_default = input::resolve(&minimal(), Some("mars-1"));
    // THEN the function's region and its partition are used, and a missing/unknown one is an error on `region`
    assert_eq!((cn.region.as_str(), cn.partition.as_str()), ("cn-north-1", "aws-cn"));
    assert_eq!((gov.region.as_str(), gov.partition.as_str()), ("us-gov-west-1", "aws-us-gov"));
    assert_eq!(rejected(none, "no region").0, "region");
    assert_rejected(bad_default, "region", "mars-1");
}

// ---------------------------------------------------------------------------------------------
// Parsing: unknown fields, wrong types, missing fields, nulls, non-objects
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    // GIVEN inputs with an unknown field at each level
    let cases = [
        (with(minimal(), "foo", json!(1)), "foo"),
        (with(minimal(), "grafana.foo", json!("x")), "grafana.foo"),
        (with(minimal(), "cluster.region", json!("us-east-1")), "cluster.region"),
        (with(minimal(), "amp.workspaceId", json!("ws-1")), "amp.workspaceId"),
        (with(minimal(), "logs.retention", json!(7)), "logs.retention"),
        (with(minimal(), "deployment_name", json!("x")), "deployment_name"),
        (with(minimal(), "Namespace", json!("x")), "Namespace"),
    ];
    for (v, field) in cases {
        // WHEN parsed
        let (f, rule) = rejected(input::parse_input(&v), field);
        // THEN the field is the path of the unknown key, and the rule names it and the accepted keys
        assert_eq!(f, field);
        let key = field.rsplit('.').next().unwrap();
        assert!(rule.contains("not a known field"), "{rule}");
        assert!(rule.contains(&format!("{key:?}")), "{rule}");
        assert!(rule.contains("expected"), "{rule}");
        assert!(!rule.contains("ProvisionInput") && !rule.contains("GrafanaInput"), "{rule}");
    }
    // AND the accepted keys are listed for grafana
    let (_, rule) = rejected(input::parse_input(&with(minimal(), "grafana.foo", json!(1))), "grafana.foo");
    assert!(rule.contains("workspaceName") && rule.contains("authenticationProviders"), "{rule}");
}

#[test]
fn hostile_unknown_keys_are_not_echoed_raw() {
    // GIVEN unknown keys that are long or hold control / bidi characters
    let long = s(5000, 'k');
    for (key, parent) in
        [("bad\nkey", "grafana"), ("\u{202E}x", "(input)"), (long.as_str(), "logs"), ("a.b", "cluster")]
    {
        let v = match parent {
            "(input)" => with(minimal(), key, json!(1)),
            p => {
                let mut v = minimal();
                v[p] = json!({ key: 1 });
                v
            }
        };
        // WHEN parsed
        let (f, rule) = rejected(input::parse_input(&v), key);
        // THEN the field stops at the parent and the rule shows the key escaped and clipped
        assert_eq!(f, parent, "{key:?}");
        assert_safe_rule(&rule, key);
        assert!(rule.contains(&validate::shown(key)), "{rule}");
    }
}

#[test]
fn wrong_types_are_rejected_with_their_path() {
    // GIVEN values of the wrong JSON type
    let cases = [
        (with(minimal(), "namespace", json!(5)), "namespace", "a string"),
        (with(minimal(), "cluster", json!("x")), "cluster", "an object"),
        (with(minimal(), "cluster.name", json!(["a"])), "cluster.name", "a string"),
        (with(minimal(), "deploymentName", json!({"a":1})), "deploymentName", "a string"),
        (with(minimal(), "accountId", json!(123456789012_u64)), "accountId", "a string"),
        (with(minimal(), "region", json!(true)), "region", "a string"),
        (with(minimal(), "grafana", json!([])), "grafana", "an object"),
        // serde alone would read a struct from a positional array: it must not
        (with(minimal(), "cluster", json!(["dr-eks", null])), "cluster", "an object"),
        (with(minimal(), "logs", json!(["/g", "s"])), "logs", "an object"),
        (
            with(minimal(), "grafana.authenticationProviders", json!("AWS_SSO")),
            "grafana.authenticationProviders",
            "an array",
        ),
        (
            with(minimal(), "grafana.authenticationProviders", json!(["AWS_SSO", 3])),
            "grafana.authenticationProviders[1]",
            "a string",
        ),
        (with(minimal(), "grafana.version", json!(10.4)), "grafana.version", "a string"),
        (with(minimal(), "logs.streamName", json!(false)), "logs.streamName", "a string"),
        (with(minimal(), "amp", json!("dr-prod")), "amp", "an object"),
    ];
    for (v, field, expected) in cases {
        // WHEN parsed
        let (f, rule) = rejected(input::parse_input(&v), field);
        // THEN the field is the JSON path and the rule says what was expected, without Rust type names
        assert_eq!(f, field, "{rule}");
        assert!(rule.starts_with(&format!("must be {expected} (got ")), "{field}: {rule}");
        assert!(!rule.contains("struct"), "{rule}");
    }
}

#[test]
fn huge_wrong_typed_strings_are_clipped() {
    // GIVEN a huge string with control characters where an object is expected
    let big = format!("{}\u{1b}[31m", s(100_000, 'x'));
    let (f, rule) = rejected(input::parse_input(&with(minimal(), "cluster", json!(big))), "cluster");
    // THEN the rule is short and escaped
    assert_eq!(f, "cluster");
    assert_safe_rule(&rule, "cluster");
    assert!(rule.len() < 300, "{}", rule.len());
}

#[test]
fn missing_required_fields_are_named() {
    // GIVEN the minimal input without each required field
    for field in ["deploymentName", "cluster", "namespace", "irsaRoleName"] {
        // WHEN parsed
        let (f, rule) = rejected(input::parse_input(&without(minimal(), field)), field);
        // THEN the missing field itself is named
        assert_eq!(f, field);
        assert_eq!(rule, "is required");
    }
}

#[test]
fn cluster_needs_a_name_or_an_issuer() {
    // GIVEN an empty cluster object
    let v = with(minimal(), "cluster", json!({}));
    // WHEN resolved
    let (f, rule) = rejected(resolve(&v), "cluster");
    // THEN `cluster` is named; with only an issuer it is accepted
    assert_eq!(f, "cluster");
    assert!(rule.contains("cluster.name") && rule.contains("cluster.oidcIssuer"), "{rule}");
    let only_issuer =
        with(minimal(), "cluster", json!({"oidcIssuer":"https://oidc.eks.eu-west-1.amazonaws.com/id/AB12"}));
    let d = resolve(&only_issuer).unwrap();
    assert_eq!(d.cluster_name, None);
    assert_eq!(d.oidc_issuer.as_deref(), Some("https://oidc.eks.eu-west-1.amazonaws.com/id/AB12"));
}

#[test]
fn null_is_absent_for_optional_fields_and_an_error_for_required_ones() {
    // GIVEN every optional field and section set to null
    let mut v = minimal();
    for k in ["region", "accountId", "amp", "writePolicyName", "grafana", "logs", "ssmPrefix"] {
        v[k] = Value::Null;
    }
    v["cluster"]["oidcIssuer"] = Value::Null;
    // WHEN resolved
    let d = resolve(&v).unwrap();
    // THEN they count as absent (the defaults apply)
    assert_eq!(d, resolve(&minimal()).unwrap());
    let d = resolve(&with(minimal(), "grafana", json!({"version": null, "authenticationProviders": null}))).unwrap();
    assert_eq!(d.grafana_version, "10.4");
    assert_eq!(d.grafana_authentication_providers, vec!["AWS_SSO".to_string()]);

    // AND null for a required field is a type error on that field
    for field in ["deploymentName", "cluster", "namespace", "irsaRoleName"] {
        let (f, rule) = rejected(input::parse_input(&with(minimal(), field, Value::Null)), field);
        assert_eq!(f, field);
        assert!(rule.ends_with("(got null)"), "{rule}");
    }
    // AND a null provider is reported at its index
    let v = with(minimal(), "grafana.authenticationProviders", json!(["AWS_SSO", null]));
    assert_eq!(rejected(input::parse_input(&v), "null provider").0, "grafana.authenticationProviders[1]");
}

#[test]
fn non_object_input_is_rejected() {
    // GIVEN JSON values that are not objects
    for (v, kind) in [
        (json!([minimal()]), "an array"),
        (json!("dr-prod"), "a string"),
        (Value::Null, "null"),
        (json!(42), "a number"),
        (json!(true), "a boolean"),
    ] {
        // WHEN parsed or resolved
        let (f, rule) = rejected(input::parse_input(&v), kind);
        // THEN the whole input is named
        assert_eq!(f, "(input)");
        assert_eq!(rule, format!("must be a JSON object (got {kind})"));
        assert_eq!(rejected(resolve(&v), kind).0, "(input)");
    }
    // AND an empty object names the first missing field
    assert_eq!(rejected(input::parse_input(&json!({})), "{}").0, "deploymentName");
}

// ---------------------------------------------------------------------------------------------
// Field validators
// ---------------------------------------------------------------------------------------------

#[test]
fn deployment_name_rule() {
    // GIVEN good and bad deployment names
    let max = format!("d{}", s(39, '9'));
    let too_long = format!("d{}", s(40, '9'));
    let good = ["a", "dr-prod", "DrProd2", "a-b-c", "x1", max.as_str()];
    let bad = [
        "",
        "1dr",
        "-dr",
        "dr-",
        "dr--prod",
        "dr_prod",
        "dr.prod",
        "dr prod",
        "dr/prod",
        "dr:prod",
        "dr*",
        "drödel",
        too_long.as_str(),
        "dr\n",
        " dr",
    ];
    // WHEN validated directly, THEN good pass and bad name the field
    table("deploymentName", validate::deployment_name, &good, &bad);
    // AND the same through resolve
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "deploymentName", json!(b))), "deploymentName", b);
    }
}

#[test]
fn region_rule() {
    // GIVEN every known region and some that are not
    let bad = [
        "",
        "us-east-9",
        "US-EAST-1",
        "us-east-1 ",
        "useast1",
        "aws-global",
        "eusc-de-east-1",
        "us-iso-east-1",
        "eu-west",
    ];
    // WHEN validated, THEN known ones pass and the rest are "not a known AWS region"
    table("region", validate::region, validate::AWS_REGIONS, &bad);
    for r in
        ["us-east-1", "ap-southeast-7", "ap-east-2", "mx-central-1", "ca-west-1", "cn-northwest-1", "us-gov-east-1"]
    {
        assert!(validate::AWS_REGIONS.contains(&r), "{r}");
    }
    assert_eq!(validate::AWS_REGIONS.len(), 38);
    let (_, rule) = rejected(validate::region("region", "us-east-9"), "us-east-9");
    assert!(rule.contains("not a known AWS region"), "{rule}");
    // AND through resolve
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "region", json!(b))), "region", b);
    }
}

#[test]
fn account_id_rule() {
    let good = ["123456789012", "000000000000"];
    let bad = [
        "",
        "12345678901",
        "1234567890123",
        "12345678901a",
        " 123456789012",
        "123456789012\n",
        "１２３４５６７８９０１２",
        "1234-5678-9012",
    ];
    table("accountId", validate::account_id, &good, &bad);
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "accountId", json!(b))), "accountId", b);
    }
    let d = resolve(&with(minimal(), "accountId", json!("123456789012"))).unwrap();
    assert_eq!(d.expected_account_id.as_deref(), Some("123456789012"));
}

#[test]
fn eks_cluster_name_rule() {
    let max = format!("c{}", s(99, '_'));
    let too_long = s(101, 'c');
    let good = ["dr-eks", "0cluster", "A_b-C", "c", max.as_str()];
    let bad = ["", "-eks", "_eks", "dr.eks", "dr eks", "dr/eks", "dr:eks", "dr*", "drék", too_long.as_str(), "dr\t"];
    table("cluster.name", validate::eks_cluster_name, &good, &bad);
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "cluster.name", json!(b))), "cluster.name", b);
    }
}

#[test]
fn oidc_issuer_rule_and_normalisation() {
    // GIVEN good issuers, THEN each is normalised (lowercase scheme and host, no trailing slash)
    for (given, normalised) in [
        ("https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE", "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"),
        ("https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE/", "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"),
        ("HTTPS://OIDC.EKS.us-east-1.amazonaws.com/id/AbC123", "https://oidc.eks.us-east-1.amazonaws.com/id/AbC123"),
        ("https://oidc.eks.cn-north-1.amazonaws.com.cn/id/X", "https://oidc.eks.cn-north-1.amazonaws.com.cn/id/X"),
        ("https://token.example.com", "https://token.example.com"),
        ("https://token.example.com/", "https://token.example.com"),
        ("https://a.example.com/p/a.b_c~d-e", "https://a.example.com/p/a.b_c~d-e"),
    ] {
        assert_eq!(validate::oidc_issuer("cluster.oidcIssuer", given).unwrap(), normalised, "{given}");
        let d = resolve(&with(minimal(), "cluster.oidcIssuer", json!(given))).unwrap();
        assert_eq!(d.oidc_issuer.as_deref(), Some(normalised));
    }
    // AND bad issuers are rejected
    let long_path = format!("https://oidc.example.com/{}", s(240, 'a'));
    let long_label = format!("https://{}.example.com", s(64, 'a'));
    let bad = [
        "",
        "http://oidc.eks.us-east-1.amazonaws.com/id/X",
        "oidc.eks.us-east-1.amazonaws.com/id/X",
        "ftp://oidc.example.com",
        "https://",
        "https:///id/X",
        "https://oidc.example.com/id/X?x=1",
        "https://oidc.example.com/id/X#frag",
        "https://user@oidc.example.com/id/X",
        "https://user:pw@oidc.example.com",
        "https://oidc.example.com:443/id/X",
        "https://*.example.com",
        "https://oidc.example.com/id/*",
        "https://oidc example.com",
        "https://oidc.example.com/id/ X",
        " https://oidc.example.com",
        "https://oidc.example.com/id/X\n",
        "https://oidc.ekś.example.com",
        "https://oidc.example.com/ïd",
        "https://-oidc.example.com",
        "https://oidc-.example.com",
        "https://oidc..example.com",
        "https://oidc_x.example.com",
        "https://localhost",
        "https://oidc.example.com/id//X",
        "https://oidc.example.com/id/../X",
        "https://oidc.example.com/id/X//",
        "https://oidc.example.com/id/a%20b",
        "https://oidc.example.com/id/\"X",
        long_path.as_str(),
        long_label.as_str(),
    ];
    table("cluster.oidcIssuer", validate::oidc_issuer, &[], &bad);
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "cluster.oidcIssuer", json!(b))), "cluster.oidcIssuer", b);
    }
    // AND the rule says what is wrong
    for (bad, why) in [
        ("http://oidc.example.com", "does not start with https://"),
        ("https://oidc.example.com/?a=1", "has a query string"),
        ("https://oidc.example.com/#x", "has a fragment"),
        ("https://u@oidc.example.com", "has user info"),
        ("https://oidc.example.com:8443", "has a port"),
        ("https://*.example.com", "has a wildcard"),
        ("https://oidc.example.com/a//b", "empty, '.' or '..' path segment"),
        ("https://oidc.éxample.com", "non-ASCII"),
    ] {
        let (_, rule) = rejected(validate::oidc_issuer("cluster.oidcIssuer", bad), bad);
        assert!(rule.contains(why), "{bad}: {rule}");
    }
    // AND exactly 255 characters is the limit
    let at_limit = format!("https://oidc.example.com/{}", s(255 - "https://oidc.example.com/".len(), 'a'));
    assert_eq!(at_limit.len(), 255);
    validate::oidc_issuer("cluster.oidcIssuer", &at_limit).unwrap();
    let over = format!("{at_limit}a");
    assert_rejected(validate::oidc_issuer("cluster.oidcIssuer", &over), "cluster.oidcIssuer", &over);
}

#[test]
fn namespace_is_a_dns1123_label_and_a_trust_boundary() {
    // GIVEN values that would widen the IRSA trust (`system:serviceaccount:<ns>:observability-*`)
    let too_long = s(64, 'a');
    let trust_widening = [
        "*",
        "dr-core:*",
        "dr-core*",
        "dr-core/x",
        "dr-core\"",
        "{\"a\":1}",
        "DR-CORE",
        "dr_core",
        "-dr",
        "dr-",
        too_long.as_str(),
        "",
        "dr-cоre",         // Cyrillic 'о'
        "dr\u{2010}core",  // Unicode hyphen
        "ｄｒ-core",       // fullwidth letters
        "dr-core\u{200B}", // zero-width space
        "dr-core ",
        "dr-core\n",
        " dr-core",
        "dr.core",
        "dr-core:observability-x",
        "system:serviceaccount:*",
        "?",
        "dr-core\\",
        "dr-core\u{0}",
    ];
    let max = s(63, 'a');
    let good = ["dr-core", "a", "0", "a-0", "0a", "kube-system", "a1-b2-c3", max.as_str()];
    // WHEN validated, THEN good labels pass and each widening value is rejected naming `namespace`
    table("namespace", validate::k8s_namespace, &good, &trust_widening);
    // AND resolve refuses them before any AWS call
    for b in trust_widening {
        assert_rejected(resolve(&with(minimal(), "namespace", json!(b))), "namespace", b);
    }
    // AND the message is the documented one
    let (_, rule) = rejected(validate::k8s_namespace("namespace", "dr-core:*"), "dr-core:*");
    assert_eq!(
        rule,
        "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters (got \"dr-core:*\")"
    );
}

#[test]
fn iam_role_name_rule() {
    let max = s(64, 'r');
    let too_long = s(65, 'r');
    let good = ["dr-core-irsa", "A+=,.@_-z", "r", "0", max.as_str()];
    let bad = ["", too_long.as_str(), "a b", "a/b", "a:b", "a*", "rôle", "a\"b", "a\nb", "a#b", "a%b"];
    table("irsaRoleName", validate::iam_role_name, &good, &bad);
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "irsaRoleName", json!(b))), "irsaRoleName", b);
        assert_rejected(resolve(&with(minimal(), "grafana.roleName", json!(b))), "grafana.roleName", b);
    }
}

#[test]
fn iam_policy_name_rule() {
    let max = s(128, 'p');
    let too_long = s(129, 'p');
    let good = ["dr-prod-observability-write", "A+=,.@_-z", "p", max.as_str()];
    let bad = ["", too_long.as_str(), "a b", "a/b", "a:b", "a*", "pölicy", "a\tb"];
    table("writePolicyName", validate::iam_policy_name, &good, &bad);
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "writePolicyName", json!(b))), "writePolicyName", b);
        assert_rejected(resolve(&with(minimal(), "grafana.readPolicyName", json!(b))), "grafana.readPolicyName", b);
    }
}

#[test]
fn grafana_role_and_policy_must_not_collide_with_the_irsa_ones() {
    // GIVEN a Grafana role equal to the IRSA role, exactly or up to case (IAM names are case-insensitive)
    for role in ["dr-core-irsa", "DR-Core-IRSA"] {
        let v = with(minimal(), "grafana.roleName", json!(role));
        // THEN grafana.roleName is rejected
        let (f, rule) = rejected(resolve(&v), role);
        assert_eq!(f, "grafana.roleName");
        assert!(rule.contains("irsaRoleName"), "{rule}");
    }
    // AND a read policy equal to the write policy is rejected
    for p in ["dr-prod-us-east-1-observability-write", "DR-PROD-US-EAST-1-OBSERVABILITY-WRITE"] {
        let v = with(minimal(), "grafana.readPolicyName", json!(p));
        let (f, rule) = rejected(resolve(&v), p);
        assert_eq!(f, "grafana.readPolicyName");
        assert!(rule.contains("writePolicyName"), "{rule}");
    }
}

#[test]
fn amp_alias_rule() {
    let max = s(100, 'é');
    let too_long = s(101, 'a');
    let good = ["dr-prod", "DR prod (east)", "é-ñ 日本", "a", "a:b/c*?", max.as_str()];
    let bad = [
        "",
        too_long.as_str(),
        " dr",
        "dr ",
        "\tdr",
        "a\tb",
        "a\nb",
        "a\u{0}",
        "\u{202E}dr",
        "a\u{200B}b",
        "\u{7f}",
        "a\u{FEFF}",
    ];
    table("amp.alias", validate::amp_alias, &good, &bad);
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "amp.alias", json!(b))), "amp.alias", b);
    }
}

#[test]
fn grafana_workspace_name_rule() {
    let max = s(255, 'w');
    let too_long = s(256, 'w');
    let good = ["dr-prod", "a.b_c~d-E9", "w", max.as_str()];
    let bad = ["", too_long.as_str(), "dr prod", "dr/prod", "dr:prod", "drö", "dr*", "dr+prod", "dr\n"];
    table("grafana.workspaceName", validate::grafana_workspace_name, &good, &bad);
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "grafana.workspaceName", json!(b))), "grafana.workspaceName", b);
    }
}

#[test]
fn grafana_version_rule() {
    let max = s(32, '1');
    let too_long = s(33, '1');
    let good = ["10", "10.4", "9.4.7", "0", max.as_str()];
    let bad = [
        "",
        "v10",
        "10.",
        ".4",
        "10..4",
        "1.2.3.4",
        "10.4-beta",
        " 10.4",
        "10.4 ",
        "latest",
        "１０",
        too_long.as_str(),
        "10,4",
    ];
    table("grafana.version", validate::grafana_version, &good, &bad);
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "grafana.version", json!(b))), "grafana.version", b);
    }
}

#[test]
fn authentication_providers_rule() {
    let f = "grafana.authenticationProviders";
    let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // GIVEN good lists, THEN they come back deduplicated in input order
    for (given, expected) in [
        (v(&["AWS_SSO"]), v(&["AWS_SSO"])),
        (v(&["SAML"]), v(&["SAML"])),
        (v(&["AWS_SSO", "SAML"]), v(&["AWS_SSO", "SAML"])),
        (v(&["SAML", "AWS_SSO", "SAML", "AWS_SSO"]), v(&["SAML", "AWS_SSO"])),
    ] {
        assert_eq!(validate::authentication_providers(f, &given).unwrap(), expected);
        let d = resolve(&with(minimal(), f, json!(given))).unwrap();
        assert_eq!(d.grafana_authentication_providers, expected);
    }
    // AND an empty list names the list
    let (field, _) = rejected(validate::authentication_providers(f, &[]), "[]");
    assert_eq!(field, f);
    assert_eq!(rejected(resolve(&with(minimal(), f, json!([]))), "[]").0, f);
    // AND a bad entry names its index
    for (given, index, bad) in [
        (v(&["aws_sso"]), 0, "aws_sso"),
        (v(&["AWS_SSO", "saml"]), 1, "saml"),
        (v(&["AWS_SSO", " SAML"]), 1, " SAML"),
        (v(&["SAML", "SAML", "OIDC"]), 2, "OIDC"),
        (v(&[""]), 0, ""),
        (v(&["AWS_SSO\n"]), 0, "AWS_SSO\n"),
    ] {
        let field = format!("{f}[{index}]");
        assert_rejected(validate::authentication_providers(f, &given), &field, bad);
        assert_rejected(resolve(&with(minimal(), f, json!(given))), &field, bad);
    }
}

#[test]
fn log_group_name_rule() {
    let max = s(512, 'g');
    let too_long = s(513, 'g');
    let good = ["/dr-prod/observability", "g", "A.b_c/d#e-f", "/aws/eks/dr-prod", "awsx/y", max.as_str()];
    let bad = ["", too_long.as_str(), "aws/x", "AWS/x", "Aws/", "a b", "a:b", "a*", "grüße", "a\n", "a,b", "a+b"];
    table("logs.groupName", validate::log_group_name, &good, &bad);
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "logs.groupName", json!(b))), "logs.groupName", b);
    }
}

#[test]
fn log_stream_name_rule() {
    let max = s(512, 'ß');
    let too_long = s(513, 's');
    let good = ["otel-collector", "a b", "é/ü#1", "s", max.as_str()];
    let bad = ["", too_long.as_str(), "a:b", "a*", "a\nb", "a\u{0}", "\u{1b}[31m"];
    table("logs.streamName", validate::log_stream_name, &good, &bad);
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "logs.streamName", json!(b))), "logs.streamName", b);
    }
}

#[test]
fn ssm_prefix_rule_and_normalisation() {
    // GIVEN good prefixes, THEN each is normalised without its trailing slash
    let ten = "/1/2/3/4/5/6/7/8/9/10";
    let long_ok = format!("/{}", s(899, 'p'));
    for (given, normalised) in [
        ("/o11y/dr-prod", "/o11y/dr-prod"),
        ("/o11y/dr-prod/", "/o11y/dr-prod"),
        ("/a", "/a"),
        ("/A_b.c-d/e", "/A_b.c-d/e"),
        ("/my-aws/ssm", "/my-aws/ssm"),
        ("/o11y/aws", "/o11y/aws"),
        (ten, ten),
        (long_ok.as_str(), long_ok.as_str()),
    ] {
        assert_eq!(validate::ssm_prefix("ssmPrefix", given).unwrap(), normalised, "{given}");
        assert_eq!(resolve(&with(minimal(), "ssmPrefix", json!(given))).unwrap().ssm_prefix, normalised);
    }
    // AND bad ones are rejected
    let eleven = format!("{ten}/11");
    let too_long = format!("/{}", s(900, 'p'));
    let bad = [
        "",
        "/",
        "//",
        "o11y/dr-prod",
        "//o11y",
        "/o11y//dr-prod",
        "/o11y/dr-prod//",
        "/aws/x",
        "/AWS/x",
        "/awsome",
        "/ssm",
        "/SsmX/y",
        "/o11y/dr prod",
        "/o11y/dr:prod",
        "/o11y/*",
        "/o11y/..",
        "/o11y/./x",
        "/o11y/é",
        "/o11y\n",
        " /o11y",
        eleven.as_str(),
        too_long.as_str(),
    ];
    table("ssmPrefix", validate::ssm_prefix, &[], &bad);
    for (bad, why) in [
        ("o11y", "does not start with '/'"),
        ("/o11y//x", "empty segment"),
        ("/o11y/..", "'.' or '..' segment"),
        ("/Ssm-params/x", "reserves"),
        (eleven.as_str(), "more than 10 levels"),
        (too_long.as_str(), "longer than 900"),
    ] {
        let (_, rule) = rejected(validate::ssm_prefix("ssmPrefix", bad), bad);
        assert!(rule.contains(why), "{bad}: {rule}");
    }
    for b in bad {
        assert_rejected(resolve(&with(minimal(), "ssmPrefix", json!(b))), "ssmPrefix", b);
    }
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

#[test]
fn messages_never_echo_huge_or_raw_values() {
    // GIVEN a 100k-character value full of escape sequences and bidi overrides
    let hostile = format!("{}\u{1b}[2J\u{202E}\r\n", s(100_000, 'x'));
    let checks: [(&str, Check); 7] = [
        ("namespace", Box::new(validate::k8s_namespace)),
        ("deploymentName", Box::new(validate::deployment_name)),
        ("amp.alias", Box::new(validate::amp_alias)),
        ("logs.streamName", Box::new(validate::log_stream_name)),
        ("region", Box::new(validate::region)),
        ("cluster.oidcIssuer", Box::new(|f, v| validate::oidc_issuer(f, v).map(|_| ()))),
        ("ssmPrefix", Box::new(|f, v| validate::ssm_prefix(f, v).map(|_| ()))),
    ];
    for (field, check) in checks {
        // WHEN validated
        let (f, rule) = rejected(check(field, &hostile), field);
        // THEN the message is bounded, escaped, and says how long the value was
        assert_eq!(f, field);
        assert_safe_rule(&rule, field);
        assert!(rule.contains("(100007 characters)"), "{field}: {rule}");
    }
    // AND a short value is shown whole, Debug-escaped
    assert_eq!(validate::shown("a\"b\n"), "\"a\\\"b\\n\"");
}

#[test]
fn validation_errors_display_field_then_rule_and_are_not_retryable() {
    // GIVEN a bad namespace through resolve
    let e = resolve(&with(minimal(), "namespace", json!("dr-core:*"))).unwrap_err();
    // THEN the Display is "<field>: <rule>", the name is stable and it is not retryable
    assert_eq!(e.name(), "ValidationError");
    assert!(e.to_string().starts_with("namespace: must be a DNS-1123 label"), "{e}");
    assert!(!e.is_retryable());
}

#[test]
fn action_and_retain_metrics_default_and_validate() {
    // GIVEN the minimal input WHEN resolved THEN apply, retaining metrics
    let d = resolve(&minimal()).unwrap();
    assert_eq!(d.action, o11y_shared::input::Action::Apply);
    assert!(d.retain_metrics);
    // GIVEN plan / delete with retainMetrics false THEN accepted as given
    let d = resolve(&with(with(minimal(), "action", json!("delete")), "retainMetrics", json!(false))).unwrap();
    assert_eq!(d.action, o11y_shared::input::Action::Delete);
    assert!(!d.retain_metrics);
    assert_eq!(resolve(&with(minimal(), "action", json!("plan"))).unwrap().action, o11y_shared::input::Action::Plan);
    // GIVEN an unknown action or a non-boolean retainMetrics THEN a ValidationError naming the field
    for (field, value) in [("action", json!("destroy")), ("action", json!(1)), ("retainMetrics", json!("no"))] {
        let err = resolve(&with(minimal(), field, value.clone())).unwrap_err();
        assert!(matches!(&err, Error::Validation { field: f, .. } if f == field), "{field}={value}: {err}");
    }
}

#[test]
fn admins_verify_and_target_are_validated() {
    // GIVEN well-formed admins, verify and target THEN accepted with the default role
    let ok = with(
        with(
            with(
                minimal(),
                "grafana",
                json!({"admins": {"users": ["9067729b3d-94f1a8a0-5b2e-4a3c-9e0e-8d7c6b5a4f3e"], "groups": ["94f1a8a0-5b2e-4a3c-9e0e-8d7c6b5a4f3e"]}}),
            ),
            "verify",
            json!("warn"),
        ),
        "target",
        json!({"accountId": "210987654321"}),
    );
    let d = resolve(&ok).unwrap();
    assert_eq!(d.grafana_admin_users.len(), 1);
    assert_eq!(d.verify, o11y_shared::input::VerifyMode::Warn);
    assert_eq!(d.target, Some(("210987654321".to_string(), "AWSControlTowerExecution".to_string())));
    // GIVEN bad values THEN a ValidationError naming the field
    for (input, field) in [
        (with(minimal(), "grafana", json!({"admins": {"users": ["alice"]}})), "grafana.admins.users[0]"),
        (with(minimal(), "grafana", json!({"admins": {"groups": ["*"]}})), "grafana.admins.groups[0]"),
        (with(minimal(), "verify", json!("maybe")), "verify"),
        (with(minimal(), "target", json!({"accountId": "12345"})), "target.accountId"),
        (with(minimal(), "target", json!({"accountId": "210987654321", "roleName": "bad/role"})), "target.roleName"),
        (with(minimal(), "target", json!({"accountId": "210987654321", "extra": 1})), "target.extra"),
    ] {
        let err = resolve(&input).unwrap_err();
        assert!(matches!(&err, Error::Validation { field: f, .. } if f == field), "{field}: {err}");
    }
}
