//! Helm values rendering: the runbook's "Full chart configuration" block for the
//! `datarobot-prime` chart, with the placeholders replaced by the provisioned values.
//!
//! The output has exactly the runbook's keys, nesting, key order and blank lines. Values are
//! emitted as plain YAML scalars when that is unambiguous (ARNs, regions, URLs, log group
//! paths such as `/dr-prod/observability`), and double-quoted with escapes otherwise, so that
//! no value can change the document's structure or be read as a bool, null or number.

/// The values substituted into the runbook's chart configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HelmValues {
    /// `<IRSA_ROLE_ARN>`: the IRSA role the collectors' service accounts assume.
    pub irsa_role_arn: String,
    /// `<AWS_REGION>`: the region of the deployment (auth, CloudWatch Logs and X-Ray).
    pub region: String,
    /// `<LOG_GROUP_NAME>`: the CloudWatch Logs group.
    pub log_group_name: String,
    /// `<LOG_STREAM_NAME>`: the CloudWatch Logs stream.
    pub log_stream_name: String,
    /// `<PROMETHEUS_REMOTE_WRITE_URL>`: the workspace's `prometheusEndpoint` + `api/v1/remote_write`.
    pub remote_write_url: String,
}

/// Renders the chart values (ends with a newline).
pub fn helm_values(v: &HelmValues) -> String {
    let role = yaml_scalar(&v.irsa_role_arn);
    let region = yaml_scalar(&v.region);
    let group = yaml_scalar(&v.log_group_name);
    let stream = yaml_scalar(&v.log_stream_name);
    let url = yaml_scalar(&v.remote_write_url);
    format!(
        "global:
  observability:
    auth:
      aws:
        enabled: true
        roleArn: {role}
        region: {region}

    exporters:
      awscloudwatchlogs:
        region: {region}
        log_group_name: {group}
        log_stream_name: {stream}
      prometheusremotewrite:
        endpoint: {url}
        auth:
          authenticator: sigv4auth
      awsxray:
        region: {region}

    signals:
      logs:
        exporters: [awscloudwatchlogs]
      metrics:
        exporters: [prometheusremotewrite]
      traces:
        exporters: [awsxray]
"
    )
}

/// The `(key path, value)` pairs of a block-mapping document as [`helm_values`] writes it
/// (two-space indents, `key: value` lines, `key:` opening a mapping): `global.observability.
/// auth.aws.roleArn` and its scalar as written. `None` when the text is not of that shape (edited
/// by hand into something else): it can then only be compared whole.
pub fn flatten(doc: &str) -> Option<Vec<(String, String)>> {
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut out = Vec::new();
    for line in doc.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        if indent % 2 != 0 {
            return None;
        }
        let (key, value) = line.trim_start().split_once(':')?;
        if key.is_empty() || key.contains(' ') {
            return None;
        }
        while path.last().is_some_and(|(i, _)| *i >= indent) {
            path.pop();
        }
        let full = path.iter().map(|(_, k)| k.as_str()).chain([key]).collect::<Vec<_>>().join(".");
        match value.trim() {
            "" => path.push((indent, key.to_string())),
            v => out.push((full, v.to_string())),
        }
    }
    Some(out)
}

/// A key whose value differs: `(key path, old value, new value)`, `None` where absent.
pub type ChangedKey = (String, Option<String>, Option<String>);

/// The keys whose values differ between two renderings, `(key, old, new)` (`None`: absent on
/// that side), in `new`'s order and then the keys only `old` has; `None` when either is not of
/// [`flatten`]'s shape.
pub fn changed_keys(old: &str, new: &str) -> Option<Vec<ChangedKey>> {
    let (old, new) = (flatten(old)?, flatten(new)?);
    let find = |pairs: &[(String, String)], k: &str| pairs.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let mut out: Vec<_> = new
        .iter()
        .filter_map(|(k, v)| {
            let was = find(&old, k);
            (was.as_deref() != Some(v)).then(|| (k.clone(), was, Some(v.clone())))
        })
        .collect();
    out.extend(old.iter().filter(|(k, _)| find(&new, k).is_none()).map(|(k, v)| (k.clone(), Some(v.clone()), None)));
    Some(out)
}

/// A YAML scalar for `s` in block-mapping value position: `s` itself when it is a safe plain
/// scalar (see [`is_safe_plain`]), otherwise a double-quoted string.
pub fn yaml_scalar(s: &str) -> String {
    if is_safe_plain(s) {
        s.to_string()
    } else {
        double_quoted(s)
    }
}

/// Words that YAML 1.1 or 1.2 resolves to a bool or null when plain (compared
/// case-insensitively, which is stricter than YAML needs).
const RESERVED_WORDS: &[&str] = &["y", "n", "yes", "no", "true", "false", "on", "off", "null"];

/// True when `s` can be written as a plain scalar and read back as the same string by YAML 1.1
/// and 1.2 parsers. Deliberately conservative (quoting is always correct):
/// - non-empty, printable ASCII only (no control characters, tabs or non-ASCII);
/// - starts with an ASCII letter, `/` or `_`: this rules out every indicator
///   (`-?:,[]{}#&*!|>'"%@` and the backtick), `~` (null), `.inf`/`.nan`, and anything that
///   could be a number (digits, `+`, `-`, `.`) including YAML 1.1 sexagesimals and octals;
/// - no trailing space; no `": "` (mapping), no `" #"` (comment), no trailing `:`;
/// - no flow indicators `,[]{}`, quotes, backslash or backtick anywhere (legal in a plain
///   scalar, but quoting them is clearer and costs nothing);
/// - not a bool/null word (`yes`, `No`, `on`, `null`, ...).
pub fn is_safe_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if !s.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return false;
    }
    if s.ends_with(' ') || s.ends_with(':') || s.contains(": ") || s.contains(" #") {
        return false;
    }
    if s.contains([',', '[', ']', '{', '}', '"', '\'', '\\', '`']) {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    !RESERVED_WORDS.contains(&lower.as_str())
}

/// A YAML double-quoted scalar with JSON-style escapes (`\"`, `\\`, `\n`, `\t`, `\r`, `\b`,
/// `\f`, `\uXXXX`), all of which YAML accepts. Besides ASCII controls, DEL, the YAML 1.1 line
/// breaks U+0085, U+2028, U+2029 and the non-characters U+FEFF, U+FFFE, U+FFFF are escaped;
/// other non-ASCII characters are kept as UTF-8.
pub fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20
                || matches!(
                    c,
                    '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_for_real_values() {
        for s in [
            "arn:aws:iam::123456789012:role/dr-core-irsa",
            "us-east-1",
            "/dr-prod/observability",
            "otel-collector",
            "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write",
            "a#b",
        ] {
            assert_eq!(yaml_scalar(s), s);
        }
    }

    #[test]
    fn quoted_for_tricky_values() {
        let cases = [
            ("", r#""""#),
            ("yes", r#""yes""#),
            ("NULL", r#""NULL""#),
            ("~", r#""~""#),
            ("123", r#""123""#),
            ("0x1F", r#""0x1F""#),
            ("1:20", r#""1:20""#),
            (".inf", r#"".inf""#),
            ("-x", r#""-x""#),
            (": x", r#"": x""#),
            ("a: b", r#""a: b""#),
            ("a:", r#""a:""#),
            ("#x", r##""#x""##),
            ("a #b", r##""a #b""##),
            (" lead", r#"" lead""#),
            ("trail ", r#""trail ""#),
            ("a,b", r#""a,b""#),
            ("say \"hi\"", r#""say \"hi\"""#),
            ("'q'", r#""'q'""#),
            ("back\\slash\n", r#""back\\slash\n""#),
            ("tab\there", r#""tab\there""#),
            ("ünï", "\"ünï\""),
            ("x\u{2028}y\u{7}", r#""x\u2028y\u0007""#),
            ("*alias", r#""*alias""#),
            ("&anchor", r#""&anchor""#),
            ("!tag", r#""!tag""#),
            ("%dir", r#""%dir""#),
            ("@x", r#""@x""#),
            ("`x", r#""`x""#),
            ("|", r#""|""#),
            (">", r#"">""#),
        ];
        for (input, expected) in cases {
            assert_eq!(yaml_scalar(input), expected, "{input:?}");
        }
    }

    #[test]
    fn output_ends_with_newline_and_substitutes_region_thrice() {
        let out = helm_values(&HelmValues {
            irsa_role_arn: "arn:aws:iam::1:role/r".into(),
            region: "eu-west-1".into(),
            log_group_name: "g".into(),
            log_stream_name: "s".into(),
            remote_write_url: "https://h/api/v1/remote_write".into(),
        });
        assert!(out.ends_with("[awsxray]\n"));
        assert_eq!(out.matches("region: eu-west-1\n").count(), 3);
    }

    #[test]
    fn changed_keys_name_the_paths_of_the_values_that_differ() {
        let v = |group: &str, url: &str| HelmValues {
            irsa_role_arn: "arn:aws:iam::123456789012:role/r".into(),
            region: "us-east-1".into(),
            log_group_name: group.into(),
            log_stream_name: "otel-collector".into(),
            remote_write_url: url.into(),
        };
        let old = helm_values(&v("/a/observability", "https://x/ws-1/api/v1/remote_write"));
        let new = helm_values(&v("/b/observability", "https://x/ws-2/api/v1/remote_write"));
        let flat = flatten(&new).unwrap();
        assert!(
            flat.contains(&("global.observability.auth.aws.roleArn".into(), "arn:aws:iam::123456789012:role/r".into()))
        );
        assert!(flat.contains(&("global.observability.signals.traces.exporters".into(), "[awsxray]".into())));
        assert_eq!(
            changed_keys(&old, &new).unwrap(),
            vec![
                (
                    "global.observability.exporters.awscloudwatchlogs.log_group_name".to_string(),
                    Some("/a/observability".to_string()),
                    Some("/b/observability".to_string())
                ),
                (
                    "global.observability.exporters.prometheusremotewrite.endpoint".to_string(),
                    Some("https://x/ws-1/api/v1/remote_write".to_string()),
                    Some("https://x/ws-2/api/v1/remote_write".to_string())
                ),
            ]
        );
        assert_eq!(changed_keys(&new, &new).unwrap(), vec![]);
        // edited by hand into another shape: compared whole
        assert_eq!(changed_keys("not yaml of ours", &new), None);
        let dropped = new.replace("\n          authenticator: sigv4auth\n", "\n");
        assert_eq!(
            changed_keys(&new, &dropped).unwrap(),
            vec![(
                "global.observability.exporters.prometheusremotewrite.auth.authenticator".to_string(),
                Some("sigv4auth".to_string()),
                None
            )]
        );
    }
}
