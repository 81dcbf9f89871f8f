//! Reading IAM policy documents, in one place for the trust merge ([`super::trust`]), the
//! permission evaluation ([`super::eval`]), the policy comparison ([`super::policy`]) and the
//! steps: the statement walker (a `Statement` object or array), string-or-array elements, the
//! normalisation of condition values, and the one wildcard matcher (`*` and `?`, case-sensitive;
//! actions case-insensitive, as IAM compares them).

use serde_json::Value;

/// The statements of a policy document: a `Statement` array as its items, a `Statement` object
/// as the only one, no `Statement` as none. `None` when the document is not an object or its
/// `Statement` has another shape (malformed).
pub fn statements(doc: &Value) -> Option<Vec<&Value>> {
    match doc.as_object()?.get("Statement") {
        None => Some(Vec::new()),
        Some(Value::Array(items)) => Some(items.iter().collect()),
        Some(obj @ Value::Object(_)) => Some(vec![obj]),
        Some(_) => None,
    }
}

/// [`statements`], with a malformed document read as having none.
pub fn statements_or_empty(doc: &Value) -> Vec<&Value> {
    statements(doc).unwrap_or_default()
}

/// The statement's `Sid`, when it is a string.
pub fn statement_sid(statement: &Value) -> Option<&str> {
    statement.get("Sid").and_then(Value::as_str)
}

/// A string or an array of strings (`Action`, `Resource`, principal values...), as a list;
/// `None` for any other shape (an array with a non-string item included).
pub fn as_list(v: &Value) -> Option<Vec<&str>> {
    match v {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// Condition values as strings: a scalar or an array of scalars, where numbers and booleans are
/// written as JSON writes them (IAM compares `true` and `"true"` alike). `None` for any other
/// shape (`null`, an object, a nested array).
pub fn condition_values(v: &Value) -> Option<Vec<String>> {
    fn one(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match v {
        Value::Array(items) => items.iter().map(one).collect(),
        other => one(other).map(|s| vec![s]),
    }
}

/// True when `s` has a `*` or `?` wildcard.
pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// True when `s` holds a policy variable (`${aws:username}`...), whose value we never know.
pub fn has_policy_variable(s: &str) -> bool {
    s.contains("${")
}

/// What a `*` of the pattern does when the text has a `*` at the same point: the only place the
/// trust evaluator's and the permission evaluator's matchers ever differed. Both are kept so
/// that neither caller's results change; for any text without `*` the two agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StarInText {
    /// The pattern's `*` is a wildcard there as everywhere: it matches any run of characters.
    /// The trust evaluation ([`super::trust`]) and [`wildcard_match`].
    Wildcard,
    /// The pattern's `*` first consumes the text's `*` as one literal character, and that `*` is
    /// then no point to backtrack to: the permission evaluation ([`super::eval::evaluate`], whose
    /// requested resource can be `"*"`). It matches a subset of [`StarInText::Wildcard`]'s: the
    /// pattern `*?` does not match the text `*` (it does with `Wildcard`), `*` and `?` still do.
    LiteralFirst,
}

/// IAM wildcard matching ([`StarInText::Wildcard`]): `*` matches any run of characters (also
/// none), `?` exactly one; everything else literally and case-sensitively (resources, condition
/// values).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    wildcard_match_with(pattern, text, StarInText::Wildcard)
}

/// [`wildcard_match`] with the given treatment of a `*` in the text (see [`StarInText`]).
pub fn wildcard_match_with(pattern: &str, text: &str, star_in_text: StarInText) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // The last pattern `*` taken as a wildcard, and the text position it currently matches up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        // LiteralFirst: a pattern `*` facing a text `*` falls through to the literal arm.
        let literal_first = star_in_text == StarInText::LiteralFirst && t[ti] == '*';
        match p.get(pi) {
            Some('*') if !literal_first => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// IAM action matching: [`wildcard_match`], case-insensitive (`S3:Get*` matches `s3:GetObject`).
pub fn action_matches(pattern: &str, action: &str) -> bool {
    action_matches_with(pattern, action, StarInText::Wildcard)
}

/// [`action_matches`] with the given treatment of a `*` in the action (see [`StarInText`]).
pub fn action_matches_with(pattern: &str, action: &str, star_in_text: StarInText) -> bool {
    wildcard_match_with(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase(), star_in_text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Reference matcher: the definition of `*`/`?` matching, by recursion (slow, obviously right).
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some((c, rest)) => {
                t.split_first().is_some_and(|(tc, trest)| (*c == '?' || c == tc) && reference(rest, trest))
            }
        }
    }

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    const PATTERNS: &[&str] = &[
        "",
        "*",
        "**",
        "?",
        "*?",
        "?*",
        "a*c",
        "a?c",
        "a?c*",
        "**a**",
        "aps:*",
        "APS:remote*",
        "sts:AssumeRole*",
        "sts:AssumeRole",
        "arn:aws:logs:*:*:log-group:g:*",
        "arn:aws:logs:*:*:log-group:g",
        "arn:aws:aps:*:*:workspace/WS-*",
        "system:serviceaccount:*:observability-*",
        "system:serviceaccount:dr-?ore:observ*",
        "é*ü?",
    ];

    const TEXTS: &[&str] = &[
        "",
        "a",
        "ac",
        "abc",
        "abbbc",
        "abcdef",
        "xxaxx",
        "aps:remotewrite",
        "aps:RemoteWrite",
        "sts:AssumeRoleWithWebIdentity",
        "sts:AssumeRole",
        "arn:aws:logs:r:1:log-group:g:log-stream:s",
        "arn:aws:logs:r:1:log-group:g",
        "arn:aws:aps:r:1:workspace/WS-1",
        "arn:aws:aps:r:1:workspace/ws-1",
        "system:serviceaccount:dr-core:observability-x",
        "system:serviceaccount:dr-core:Observability-x",
        "éxüy",
    ];

    #[test]
    fn trust_and_permission_matchers_agree_on_texts_without_a_star() {
        // GIVEN patterns and texts as trust and verification see them WHEN matched both ways
        // THEN both agree with each other and with the definition
        for p in PATTERNS {
            for t in TEXTS {
                let expected = reference(&chars(p), &chars(t));
                assert_eq!(wildcard_match(p, t), expected, "{p:?} ~ {t:?}");
                assert_eq!(wildcard_match_with(p, t, StarInText::LiteralFirst), expected, "{p:?} ~ {t:?}");
                let folded = reference(&chars(&p.to_ascii_lowercase()), &chars(&t.to_ascii_lowercase()));
                assert_eq!(action_matches(p, t), folded, "action {p:?} ~ {t:?}");
                assert_eq!(action_matches_with(p, t, StarInText::LiteralFirst), folded, "action {p:?} ~ {t:?}");
            }
        }
    }

    #[test]
    fn wildcard_matching_follows_the_definition_on_texts_with_stars() {
        // GIVEN a text with `*` in it (a requested resource "*") THEN Wildcard is the definition
        for p in PATTERNS {
            for t in ["*", "a*c", "**", "arn:*"] {
                assert_eq!(wildcard_match(p, t), reference(&chars(p), &chars(t)), "{p:?} ~ {t:?}");
            }
        }
    }

    #[test]
    fn literal_first_differs_only_by_matching_less() {
        // GIVEN the documented edge case THEN the two modes differ, in one direction only
        assert!(wildcard_match("*?", "*"));
        assert!(!wildcard_match_with("*?", "*", StarInText::LiteralFirst));
        assert!(!wildcard_match_with("a*b", "a*xb", StarInText::LiteralFirst));
        assert!(wildcard_match("a*b", "a*xb"));
        for p in ["*", "?", "**", "?*"] {
            assert!(wildcard_match(p, "*") && wildcard_match_with(p, "*", StarInText::LiteralFirst), "{p}");
        }
        for p in PATTERNS {
            for t in ["*", "a*c", "**", "a*xb"] {
                if wildcard_match_with(p, t, StarInText::LiteralFirst) {
                    assert!(wildcard_match(p, t), "{p:?} ~ {t:?}");
                }
            }
        }
    }

    #[test]
    fn values_are_case_sensitive_and_actions_are_not() {
        assert!(!wildcard_match("abc", "ABC"));
        assert!(action_matches("STS:assume*", "sts:AssumeRoleWithWebIdentity"));
        assert!(!action_matches("sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"));
    }

    #[test]
    fn statements_walks_objects_and_arrays() {
        let one = json!({"Effect": "Allow"});
        assert_eq!(statements(&json!({"Statement": one})), Some(vec![&one]));
        assert_eq!(statements(&json!({"Statement": [one, one]})).map(|s| s.len()), Some(2));
        assert_eq!(statements(&json!({"Version": "2012-10-17"})), Some(vec![]));
        assert_eq!(statements(&json!({"Statement": 3})), None);
        assert_eq!(statements(&json!([one])), None);
        assert!(statements_or_empty(&json!({"Statement": "x"})).is_empty());
        assert_eq!(statement_sid(&json!({"Sid": "A"})), Some("A"));
        assert_eq!(statement_sid(&json!({"Sid": 1})), None);
    }

    #[test]
    fn lists_and_condition_values() {
        assert_eq!(as_list(&json!("a")), Some(vec!["a"]));
        assert_eq!(as_list(&json!(["a", "b"])), Some(vec!["a", "b"]));
        assert_eq!(as_list(&json!(["a", 1])), None);
        assert_eq!(as_list(&json!({"a": 1})), None);
        assert_eq!(condition_values(&json!(true)), Some(vec!["true".to_string()]));
        assert_eq!(condition_values(&json!(["a", 1, false])), Some(vec!["a".into(), "1".into(), "false".into()]));
        assert_eq!(condition_values(&json!(null)), None);
        assert_eq!(condition_values(&json!([["a"]])), None);
        assert!(has_wildcard("a?") && has_wildcard("*") && !has_wildcard("a"));
        assert!(has_policy_variable("x/${aws:username}") && !has_policy_variable("$x"));
    }
}
