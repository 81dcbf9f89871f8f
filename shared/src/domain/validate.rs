//! Field validators: the real AWS / Kubernetes rules, checked before any AWS call.
//!
//! Each validator takes the `field` it checks (its JSON path, such as `grafana.roleName`) and
//! returns `Err(Error::validation(field, rule))` on a bad value, where `rule` is one sentence that
//! states the rule and shows the offending value safely: Debug-escaped (quotes, control and
//! invisible characters escaped) and truncated to [`SHOWN_MAX_CHARS`] characters, so that a huge or
//! hostile input is never echoed raw into logs or the Step Functions console.
//!
//! Sources: the botocore service models (IAM, AMP, Grafana, SSM, CloudWatch Logs, EKS), the
//! CloudWatch Logs and SSM naming documentation, and Kubernetes' DNS-1123 label rule. No regex
//! crate: every check is a small hand-written scan.

use crate::domain::error::{Error, Result};

/// How many characters of an offending value an error message shows.
pub const SHOWN_MAX_CHARS: usize = 64;

/// Longest `deploymentName`: `<d>-<region>-grafana` must fit an IAM role name (64) for every region.
pub const DEPLOYMENT_NAME_MAX: usize = 40;

/// Longest SSM prefix we accept: leaves room under SSM's 1,011-character name limit for the
/// parameter names we append.
pub const SSM_PREFIX_MAX_CHARS: usize = 900;

/// Deepest SSM prefix we accept (SSM allows 15 levels including the parameter name).
pub const SSM_PREFIX_MAX_LEVELS: usize = 10;

/// The Grafana authentication providers the API accepts (`AuthenticationProviderTypes`).
pub const AUTHENTICATION_PROVIDERS: &[&str] = &["AWS_SSO", "SAML"];

/// Current public AWS regions (commercial, China and GovCloud partitions).
pub const AWS_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
    "cn-north-1",
    "cn-northwest-1",
    "us-gov-east-1",
    "us-gov-west-1",
];

/// The offending value as shown in a message: `"value"` Debug-escaped, or, when longer than
/// [`SHOWN_MAX_CHARS`] characters, its start followed by `…` and the full length.
pub fn shown(v: &str) -> String {
    let len = v.chars().count();
    if len <= SHOWN_MAX_CHARS {
        format!("{v:?}")
    } else {
        let head: String = v.chars().take(SHOWN_MAX_CHARS).collect();
        format!("{head:?}… ({len} characters)")
    }
}

/// `Error::validation(field, "<rule> (got <shown value>)")`.
fn invalid(field: &str, rule: &str, v: &str) -> Error {
    Error::validation(field, format!("{rule} (got {})", shown(v)))
}

/// True for the IAM name characters `[A-Za-z0-9+=,.@_-]`.
fn is_iam_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '=' | ',' | '.' | '@' | '_' | '-')
}

/// True for characters that are invisible or reorder text (format characters, separators) and
/// so make a name look like something it is not.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// `deploymentName`: 1-40 characters, ASCII letters, digits and `-`, starting with a letter, not
/// ending with `-`, without `--`. Every default name derives from it, so it is kept narrow enough
/// that all of them stay valid.
pub fn deployment_name(field: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= DEPLOYMENT_NAME_MAX
        && v.starts_with(|c: char| c.is_ascii_alphabetic())
        && !v.ends_with('-')
        && !v.contains("--")
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be 1-40 characters of ASCII letters, digits and '-', starting with a letter, not ending with '-' and without '--'",
            v,
        ))
    }
}

/// `region`: one of [`AWS_REGIONS`].
pub fn region(field: &str, v: &str) -> Result<()> {
    if AWS_REGIONS.contains(&v) {
        Ok(())
    } else {
        Err(invalid(field, &format!("is not a known AWS region; expected one of: {}", AWS_REGIONS.join(", ")), v))
    }
}

/// `accountId`: exactly 12 ASCII digits.
pub fn account_id(field: &str, v: &str) -> Result<()> {
    if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid(field, "must be an AWS account id: exactly 12 digits", v))
    }
}

/// `cluster.name`: an EKS cluster name, 1-100 characters, `^[0-9A-Za-z][A-Za-z0-9\-_]*$`.
pub fn eks_cluster_name(field: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 100
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be an EKS cluster name: 1-100 characters of ASCII letters, digits, '-' and '_', starting with a letter or digit",
            v,
        ))
    }
}

/// Why `v` is not a valid OIDC issuer URL, or its normalised form.
fn parse_issuer(v: &str) -> std::result::Result<String, &'static str> {
    if v.is_empty() {
        return Err("is empty");
    }
    if !v.is_ascii() {
        return Err("contains non-ASCII characters");
    }
    if v.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err("contains whitespace or control characters");
    }
    let scheme_len = "https://".len();
    let rest = match v.get(..scheme_len) {
        Some(s) if s.eq_ignore_ascii_case("https://") => &v[scheme_len..],
        _ => return Err("does not start with https://"),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('?') {
        return Err("has a query string");
    }
    if rest.contains('#') {
        return Err("has a fragment");
    }
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if host.contains('@') {
        return Err("has user info");
    }
    if host.contains(':') {
        return Err("has a port");
    }
    if host.contains('*') {
        return Err("has a wildcard");
    }
    if host.is_empty() {
        return Err("has no host");
    }
    if host.len() > 253 {
        return Err("has a host longer than 253 characters");
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 {
        return Err("has a host without a domain");
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(
                "has an invalid host: labels must be 1-63 letters, digits or '-', not starting or ending with '-'",
            );
        }
    }
    if !path.is_empty() {
        if !path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'/' | b'-')) {
            return Err("has a path with characters other than letters, digits, '.', '_', '~', '-' and '/'");
        }
        // `path` starts with '/': every segment after it must be a real name.
        if path[1..].split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err("has an empty, '.' or '..' path segment");
        }
    }
    let normalised = format!("https://{}{path}", host.to_ascii_lowercase());
    if normalised.len() > 255 {
        return Err("is longer than 255 characters");
    }
    Ok(normalised)
}

/// `cluster.oidcIssuer`: `https://` + host (+ optional path), ASCII only, host labels of
/// `[A-Za-z0-9-]`, path characters `[A-Za-z0-9._~/-]`, no query, fragment, user info, port,
/// wildcard or whitespace, at most 255 characters (IAM's OIDC provider URL limit).
///
/// Returns the normalised issuer: `https://` + lowercase host + path, no trailing slash.
pub fn oidc_issuer(field: &str, v: &str) -> Result<String> {
    parse_issuer(v).map_err(|why| {
        invalid(
            field,
            &format!(
                "must be an https:// URL with a host and an optional path, without query, fragment, user info, port, wildcard or whitespace, at most 255 ASCII characters; it {why}"
            ),
            v,
        )
    })
}

/// `namespace`: a Kubernetes DNS-1123 label, `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, at most 63
/// characters. It is written into the IRSA trust policy (`system:serviceaccount:<ns>:...`), so it
/// is a trust boundary: wildcards, `:`, `/`, quotes and anything non-ASCII are rejected.
pub fn k8s_namespace(field: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
            v,
        ))
    }
}

/// An IAM role name: 1-64 characters of `[A-Za-z0-9+=,.@_-]`.
pub fn iam_role_name(field: &str, v: &str) -> Result<()> {
    if !v.is_empty() && v.len() <= 64 && v.chars().all(is_iam_name_char) {
        Ok(())
    } else {
        Err(invalid(field, "must be an IAM role name: 1-64 characters of ASCII letters, digits and +=,.@_-", v))
    }
}

/// An IAM policy name: 1-128 characters of `[A-Za-z0-9+=,.@_-]`.
pub fn iam_policy_name(field: &str, v: &str) -> Result<()> {
    if !v.is_empty() && v.len() <= 128 && v.chars().all(is_iam_name_char) {
        Ok(())
    } else {
        Err(invalid(field, "must be an IAM policy name: 1-128 characters of ASCII letters, digits and +=,.@_-", v))
    }
}

/// `amp.alias`: 1-100 characters (the AMP model has no pattern), printable: no control or
/// invisible characters, and no leading or trailing whitespace (AMP trims it, which would break
/// our exact-match lookup by alias).
pub fn amp_alias(field: &str, v: &str) -> Result<()> {
    let len = v.chars().count();
    let ok = (1..=100).contains(&len)
        && !v.chars().any(|c| c.is_control() || is_invisible(c))
        && !v.starts_with(char::is_whitespace)
        && !v.ends_with(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be an AMP workspace alias: 1-100 printable characters, without control or invisible characters and without leading or trailing whitespace",
            v,
        ))
    }
}

/// `grafana.workspaceName`: `^[a-zA-Z0-9-._~]{1,255}$`.
pub fn grafana_workspace_name(field: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 255
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if ok {
        Ok(())
    } else {
        Err(invalid(field, "must be a Grafana workspace name: 1-255 characters of ASCII letters, digits and -._~", v))
    }
}

/// `grafana.version`: `^[0-9]+(\.[0-9]+){0,2}$`, at most 32 characters. Whether AWS offers the
/// version is checked later with `ListVersions`.
pub fn grafana_version(field: &str, v: &str) -> Result<()> {
    let parts: Vec<&str> = v.split('.').collect();
    let ok = v.len() <= 32
        && parts.len() <= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be a Grafana version: 1 to 3 dot-separated numbers such as \"10.4\", at most 32 characters",
            v,
        ))
    }
}

/// `grafana.authenticationProviders`: non-empty, each exactly `AWS_SSO` or `SAML`. A bad entry is
/// reported as `<field>[<index>]`.
///
/// Returns the providers, deduplicated, in input order.
pub fn authentication_providers(field: &str, v: &[String]) -> Result<Vec<String>> {
    if v.is_empty() {
        return Err(Error::validation(field, "must list at least one of AWS_SSO, SAML (got an empty list)"));
    }
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for (i, p) in v.iter().enumerate() {
        if !AUTHENTICATION_PROVIDERS.contains(&p.as_str()) {
            return Err(invalid(&format!("{field}[{i}]"), "must be exactly AWS_SSO or SAML", p));
        }
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// `logs.groupName`: a CloudWatch log group name, 1-512 characters of `[A-Za-z0-9._/#-]`, not
/// starting with `aws/` (reserved by AWS; checked case-insensitively to be safe).
pub fn log_group_name(field: &str, v: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.len() <= 512
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'#' | b'-'));
    if !ok {
        return Err(invalid(
            field,
            "must be a CloudWatch log group name: 1-512 characters of ASCII letters, digits and ._/#-",
            v,
        ));
    }
    if v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws/")) {
        return Err(invalid(field, "must not start with \"aws/\": that prefix is reserved by AWS", v));
    }
    Ok(())
}

/// `logs.streamName`: a CloudWatch log stream name, 1-512 characters, without `:`, `*` or
/// control characters.
pub fn log_stream_name(field: &str, v: &str) -> Result<()> {
    let len = v.chars().count();
    let ok = (1..=512).contains(&len) && !v.chars().any(|c| c == ':' || c == '*' || c.is_control() || is_invisible(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be a CloudWatch log stream name: 1-512 characters, without ':', '*' or control characters",
            v,
        ))
    }
}

/// Why `v` is not a valid SSM prefix, or its normalised form.
fn parse_ssm_prefix(v: &str) -> std::result::Result<&str, &'static str> {
    let Some(body) = v.strip_prefix('/') else {
        return Err("does not start with '/'");
    };
    // One trailing '/' is tolerated and removed.
    let body = body.strip_suffix('/').unwrap_or(body);
    if body.is_empty() {
        return Err("has no segment");
    }
    if body.len() + 1 > SSM_PREFIX_MAX_CHARS {
        return Err("is longer than 900 characters");
    }
    let segments: Vec<&str> = body.split('/').collect();
    if segments.len() > SSM_PREFIX_MAX_LEVELS {
        return Err("has more than 10 levels");
    }
    for s in &segments {
        if s.is_empty() {
            return Err("has an empty segment ('//')");
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
            return Err("has a segment with characters other than ASCII letters, digits and _.-");
        }
        if s.bytes().all(|b| b == b'.') {
            return Err("has a '.' or '..' segment");
        }
    }
    let first = segments.first().map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Err("starts with \"aws\" or \"ssm\", which SSM reserves");
    }
    Ok(&v[..body.len() + 1])
}

/// `ssmPrefix`: an SSM parameter path prefix: starts with `/`, segments of `[A-Za-z0-9_.-]` (none
/// empty), the first not beginning with `aws` or `ssm` (any case), at most 10 levels and 900
/// characters. One trailing `/` is tolerated.
///
/// Returns the normalised prefix (leading `/`, no trailing `/`).
pub fn ssm_prefix(field: &str, v: &str) -> Result<String> {
    parse_ssm_prefix(v).map(str::to_string).map_err(|why| {
        invalid(
            field,
            &format!(
                "must be an SSM parameter path such as \"/o11y/dr-prod\": '/'-separated segments of ASCII letters, digits and _.-, at most 10 levels and 900 characters, not starting with aws or ssm; it {why}"
            ),
            v,
        )
    })
}

/// IAM Identity Center user or group id: the Identity Store format, either a 10-hex-digit
/// directory prefix and a UUID (`1234567890-1a2b3c4d-...`) or a bare UUID; at most 47 characters.
pub fn sso_principal_id(field: &str, v: &str) -> Result<()> {
    let is_uuid = |s: &str| {
        let parts: Vec<&str> = s.split('-').collect();
        parts.len() == 5
            && [8, 4, 4, 4, 12]
                .iter()
                .zip(&parts)
                .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
    };
    let ok = v.len() <= 47
        && (is_uuid(v)
            || v.split_once('-').is_some_and(|(dir, rest)| {
                dir.len() == 10 && dir.chars().all(|c| c.is_ascii_hexdigit()) && is_uuid(rest)
            }));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be an IAM Identity Center user or group id (a UUID, optionally prefixed by a 10-hex-digit directory id)",
            v,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(e: Error) -> String {
        match e {
            Error::Validation { rule, .. } => rule,
            other => format!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn shown_escapes_and_truncates() {
        assert_eq!(shown("dr-core:*"), "\"dr-core:*\"");
        assert_eq!(shown("a\nb\u{202E}"), "\"a\\nb\\u{202e}\"");
        let long = "x".repeat(1000);
        let s = shown(&long);
        assert!(s.len() < 100, "{s}");
        assert!(s.ends_with("… (1000 characters)"), "{s}");
    }

    #[test]
    fn message_states_rule_and_value() {
        let r = rule(k8s_namespace("namespace", "dr-core:*").unwrap_err());
        assert_eq!(
            r,
            "must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters (got \"dr-core:*\")"
        );
    }

    #[test]
    fn issuer_normalisation() {
        assert_eq!(oidc_issuer("f", "HTTPS://OIDC.example.com/id/AB/").unwrap(), "https://oidc.example.com/id/AB");
        assert_eq!(oidc_issuer("f", "https://oidc.example.com").unwrap(), "https://oidc.example.com");
    }

    #[test]
    fn ssm_prefix_normalisation() {
        assert_eq!(ssm_prefix("f", "/o11y/dr-prod/").unwrap(), "/o11y/dr-prod");
        assert!(ssm_prefix("f", "/o11y/dr-prod//").is_err());
        assert!(ssm_prefix("f", "/").is_err());
    }
}
