//! Evaluating IAM policy documents: the one condition evaluator (tri-state: a condition holds,
//! fails, or depends on something we do not know), used by the trust evaluation
//! ([`super::trust::admits`]) and by the permission-policy evaluation of verify ([`evaluate`],
//! [`RoleDocuments::decide`]), with the statement walker and the wildcard matcher of
//! [`super::doc`].
//!
//! The permission evaluation knows no request context ([`NoContext`]): a statement with
//! conditions is of unknown effect, so an `Allow` with one does not grant and a `Deny` with one
//! applies (conservative both ways).

use serde_json::Value;

use crate::domain::iam::doc::{
    action_matches_with, as_list, condition_values, has_policy_variable, statements_or_empty, wildcard_match_with,
    StarInText,
};

// ---- the condition evaluator ---------------------------------------------------------------------

/// Tri-state AND: any `false` wins, then any unknown (`None`); `Some(true)` for none at all.
pub fn all3(results: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    fold3(results, false)
}

/// Tri-state OR: any `true` wins, then any unknown (`None`); `Some(false)` for none at all.
pub fn any3(results: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    fold3(results, true)
}

/// [`all3`] (`winner` = `false`) and [`any3`] (`winner` = `true`): the first known `winner`
/// decides, else any unknown makes the result unknown, else it is `!winner`.
fn fold3(results: impl IntoIterator<Item = Option<bool>>, winner: bool) -> Option<bool> {
    let mut unknown = false;
    for r in results {
        match r {
            Some(b) if b == winner => return Some(winner),
            None => unknown = true,
            Some(_) => {}
        }
    }
    if unknown {
        None
    } else {
        Some(!winner)
    }
}

/// The request's values of condition keys, as far as an evaluation models them.
pub trait RequestContext {
    /// The request's value of condition key `key` (IAM condition keys are case-insensitive);
    /// `None` when the key is absent or not modelled, which makes a condition on it unknown.
    fn value(&self, key: &str) -> Option<&str>;

    /// True when `key` is known to be absent from the request (not merely unmodelled): IAM then
    /// evaluates a condition on it by its absent-key rules (see [`condition_key_holds`]).
    fn absent(&self, _key: &str) -> bool {
        false
    }
}

/// A request of which no condition key is known: every condition on a key is unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoContext;

impl RequestContext for NoContext {
    fn value(&self, _key: &str) -> Option<&str> {
        None
    }
}

/// How a condition operator with no key at all (`{"StringEquals": {}}`) evaluates: the one
/// place where the trust and the permission evaluations differed, kept so that neither result
/// changes. Every other condition evaluates alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyBlock {
    /// Holds (nothing to fail): the trust evaluation.
    Holds,
    /// Unknown (a non-empty `Condition` element is never taken as unconditional): the permission
    /// evaluation.
    Unknown,
}

/// Evaluates a statement's `Condition` element against `context`: `Some(true)` when every
/// operator holds for every key (IAM ANDs them), `Some(false)` when one fails, `None` when the
/// result depends on something unknown (an unknown operator or key, a policy variable) or the
/// element is malformed. No `Condition` (and an empty one) holds; an operator without keys
/// evaluates as `empty_block` says.
pub fn condition_holds(
    condition: Option<&Value>,
    context: &dyn RequestContext,
    empty_block: EmptyBlock,
) -> Option<bool> {
    match condition {
        None => Some(true),
        Some(Value::Object(operators)) => all3(operators.iter().map(|(op, block)| match block.as_object() {
            Some(block) if block.is_empty() && empty_block == EmptyBlock::Unknown => None,
            Some(block) => all3(block.iter().map(|(key, values)| condition_key_holds(op, key, values, context))),
            None => None,
        })),
        Some(_) => None,
    }
}

/// The condition operators the evaluator knows (without `...IfExists` and set prefixes), with
/// whether each is a negated one (IAM: a negated operator on an absent key holds).
const OPERATORS: &[(&str, bool)] = &[
    ("StringEquals", false),
    ("StringNotEquals", true),
    ("StringEqualsIgnoreCase", false),
    ("StringNotEqualsIgnoreCase", true),
    ("StringLike", false),
    ("StringNotLike", true),
    ("NumericEquals", false),
    ("NumericNotEquals", true),
    ("NumericLessThan", false),
    ("NumericLessThanEquals", false),
    ("NumericGreaterThan", false),
    ("NumericGreaterThanEquals", false),
    ("DateEquals", false),
    ("DateNotEquals", true),
    ("DateLessThan", false),
    ("DateLessThanEquals", false),
    ("DateGreaterThan", false),
    ("DateGreaterThanEquals", false),
    ("Bool", false),
    ("BinaryEquals", false),
    ("IpAddress", false),
    ("NotIpAddress", true),
    ("ArnEquals", false),
    ("ArnNotEquals", true),
    ("ArnLike", false),
    ("ArnNotLike", true),
    ("Null", false),
];

/// One condition key of one operator block against `context`, IAM's way. Key names are
/// case-insensitive (the context's job); multiple values are ORed.
///
/// For a key the context knows to be absent ([`RequestContext::absent`]): any `...IfExists` and
/// any `ForAllValues:` holds, any `ForAnyValue:` fails, `Null: true` holds and `Null: false`
/// fails, a negated operator (`StringNotEquals`, `StringNotLike`, `NumericNotEquals`,
/// `DateNotEquals`, `NotIpAddress`, `ArnNotEquals`, `ArnNotLike`, ...) holds, every other known
/// operator fails. For a key the request has: the `String*` operators (case-sensitive values
/// except `...IgnoreCase`, `*`/`?` wildcards for `Like`), `ArnEquals`/`ArnLike` (wildcards) and
/// `Null` (fails for `true`). `None` ("cannot prove") for an operator the evaluator does not
/// know, a key that is neither known nor known absent, a policy variable in a value, a known
/// operator it does not model on a present key, or values of another shape.
pub fn condition_key_holds(op: &str, key: &str, values: &Value, context: &dyn RequestContext) -> Option<bool> {
    let (set, rest) = if let Some(r) = op.strip_prefix("ForAnyValue:") {
        (Some(false), r)
    } else if let Some(r) = op.strip_prefix("ForAllValues:") {
        (Some(true), r)
    } else {
        (None, op)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) if b != "Null" => (b, true),
        _ => (rest, false),
    };
    let &(_, negated) = OPERATORS.iter().find(|(name, _)| *name == base)?;
    let values = condition_values(values)?;
    if values.iter().any(|v| has_policy_variable(v)) {
        return None;
    }
    let Some(actual) = context.value(key) else {
        if !context.absent(key) {
            return None;
        }
        return Some(if base == "Null" {
            // `Null: true` = "the key is absent"; ORed over the values.
            values.iter().any(|v| v.eq_ignore_ascii_case("true"))
        } else if if_exists {
            true
        } else if let Some(for_all) = set {
            for_all
        } else {
            negated
        });
    };
    let any = match base {
        "Null" => values.iter().any(|v| v.eq_ignore_ascii_case("false")),
        "StringEquals" | "StringNotEquals" => values.iter().any(|v| v.as_str() == actual),
        "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" => {
            values.iter().any(|v| v.to_lowercase() == actual.to_lowercase())
        }
        "StringLike" | "StringNotLike" | "ArnEquals" | "ArnNotEquals" | "ArnLike" | "ArnNotLike" => {
            values.iter().any(|v| wildcard_match_with(v, actual, StarInText::Wildcard))
        }
        _ => return None,
    };
    Some(if negated { !any } else { any })
}

// ---- permission policies ---------------------------------------------------------------------------

/// An IAM decision for one action on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An `Allow` applies and no `Deny` does.
    Allowed,
    /// A `Deny` applies.
    ExplicitDeny,
    /// No statement applies: denied by default.
    ImplicitDeny,
}

impl Decision {
    /// IAM's spelling (`allowed`, `explicitDeny`, `implicitDeny`).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::ExplicitDeny => "explicitDeny",
            Decision::ImplicitDeny => "implicitDeny",
        }
    }
}

/// How the permission evaluation treats a `*` in the requested action or resource (the resource
/// `"*"`): taken literally first, as this evaluation always has (see [`StarInText`]).
const PERMISSION_STAR: StarInText = StarInText::LiteralFirst;

/// The permission evaluation's wildcard matching of a `Resource` pattern against a requested
/// resource: the one matcher, with [`StarInText::LiteralFirst`]. Case-sensitive.
pub fn pattern_matches(pattern: &str, value: &str) -> bool {
    wildcard_match_with(pattern, value, PERMISSION_STAR)
}

/// Whether a statement's `Action`/`NotAction` covers `action` (case-insensitive wildcards).
fn action_applies(st: &Value, action: &str) -> bool {
    let hit = |list: Vec<&str>| list.iter().any(|p| action_matches_with(p, action, PERMISSION_STAR));
    match (st.get("Action").and_then(as_list), st.get("NotAction").and_then(as_list)) {
        (Some(a), None) => hit(a),
        (None, Some(na)) => !hit(na),
        _ => false,
    }
}

/// Whether a statement's `Resource`/`NotResource` covers `resource` (case-sensitive wildcards).
/// A pattern with a policy variable (`${...}`) counts as matching for a `Deny` and as not
/// matching for an `Allow` (conservative both ways).
fn resource_applies(st: &Value, resource: &str, deny: bool) -> bool {
    let hit = |list: Vec<&str>, on_variable: bool| {
        list.iter().any(|p| if has_policy_variable(p) { on_variable } else { pattern_matches(p, resource) })
    };
    match (st.get("Resource").and_then(as_list), st.get("NotResource").and_then(as_list)) {
        (Some(r), None) => hit(r, deny),
        (None, Some(nr)) => !hit(nr, !deny),
        _ => false,
    }
}

/// Evaluates identity-policy `documents` for `action` on `resource` the way IAM does, with
/// conservative conditions: an explicit `Deny` wins, then an `Allow` is needed. `Action` /
/// `NotAction` with wildcards (case-insensitive), `Resource` / `NotResource` with wildcards. An
/// `Allow` with a `Condition` does not grant (we cannot know the request context); a `Deny` with a
/// `Condition` applies.
pub fn evaluate(documents: &[Value], action: &str, resource: &str) -> Decision {
    let mut allowed = false;
    for doc in documents {
        for st in statements_or_empty(doc) {
            let deny = match st.get("Effect").and_then(Value::as_str) {
                Some("Deny") => true,
                Some("Allow") => false,
                _ => continue,
            };
            if !action_applies(st, action) || !resource_applies(st, resource, deny) {
                continue;
            }
            // Without a request context a condition holds (none, or empty) or is unknown.
            let condition = condition_holds(st.get("Condition"), &NoContext, EmptyBlock::Unknown);
            if deny && condition != Some(false) {
                return Decision::ExplicitDeny;
            }
            if !deny && condition == Some(true) {
                allowed = true;
            }
        }
    }
    if allowed {
        Decision::Allowed
    } else {
        Decision::ImplicitDeny
    }
}

/// A role's documents for [`evaluate`]: the identity policies (attached managed policies'
/// default versions and inline policies) and the permissions boundary's, if any.
#[derive(Debug, Clone, Default)]
pub struct RoleDocuments {
    /// The identity-based policies: attached managed policies' default versions, inline policies.
    pub identity: Vec<Value>,
    /// The permissions boundary's document, when the role has one.
    pub boundary: Option<Value>,
}

impl RoleDocuments {
    /// The decision with the boundary applied (a boundary must allow too).
    pub fn decide(&self, action: &str, resource: &str) -> Decision {
        let d = evaluate(&self.identity, action, resource);
        match (&self.boundary, d) {
            (Some(b), Decision::Allowed) => match evaluate(std::slice::from_ref(b), action, resource) {
                Decision::Allowed => Decision::Allowed,
                other => other,
            },
            _ => d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::iam::doc::{action_matches, wildcard_match};
    use crate::domain::iam::trust::{admits, AssumeRequest, WEB_IDENTITY_ACTION};
    use serde_json::json;

    /// A context that knows one key.
    struct One(&'static str, &'static str);

    impl RequestContext for One {
        fn value(&self, key: &str) -> Option<&str> {
            key.eq_ignore_ascii_case(self.0).then_some(self.1)
        }
    }

    const PATTERNS: &[&str] = &[
        "*",
        "sts:*",
        "STS:assume*",
        "sts:AssumeRole",
        "sts:AssumeRole?ithWebIdentity",
        "sts:AssumeRoleWithWebIdentity",
        "sts:AssumeRoleWith*Identity",
        "iam:*",
        "?",
        "",
    ];

    #[test]
    fn trust_and_permission_evaluations_agree_on_actions() {
        // GIVEN one Allow statement with an action pattern WHEN evaluated as a trust policy and as a
        // permission policy THEN both admit exactly when the one matcher matches
        let provider = "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/X";
        let req = AssumeRequest::WebIdentity {
            provider_arn: provider.to_string(),
            sub: "system:serviceaccount:ns:app".to_string(),
            aud: "sts.amazonaws.com".to_string(),
        };
        for p in PATTERNS {
            let trust = json!({"Statement": {"Effect": "Allow", "Principal": {"Federated": provider}, "Action": p}});
            let permission = json!({"Statement": {"Effect": "Allow", "Action": p, "Resource": "*"}});
            let expected = action_matches(p, WEB_IDENTITY_ACTION);
            assert_eq!(admits(&trust, &req), expected, "{p}");
            let allowed = evaluate(&[permission], WEB_IDENTITY_ACTION, "arn:aws:iam::1:role/r") == Decision::Allowed;
            assert_eq!(allowed, expected, "{p}");
        }
    }

    #[test]
    fn trust_and_permission_evaluations_agree_on_resource_and_value_patterns() {
        // GIVEN the same pattern as a Resource and as a StringLike condition value THEN the
        // permission evaluation and the condition evaluator match the same texts
        let texts = ["arn:aws:aps:r:1:workspace/ws-1", "arn:aws:aps:r:1:workspace/WS-1", "ac", "abc", ""];
        for p in ["arn:aws:aps:*:*:workspace/ws-?", "arn:aws:aps:*", "a*c", "a?c", "*", "?*", ""] {
            for t in texts {
                let permission = json!({"Statement": {"Effect": "Allow", "Action": "aps:*", "Resource": p}});
                let allowed = evaluate(&[permission], "aps:QueryMetrics", t) == Decision::Allowed;
                let condition =
                    condition_key_holds("StringLike", "k", &json!(p), &One("k", t)).expect("known key and operator");
                assert_eq!(allowed, wildcard_match(p, t), "resource {p:?} ~ {t:?}");
                assert_eq!(condition, wildcard_match(p, t), "value {p:?} ~ {t:?}");
            }
        }
    }

    #[test]
    fn condition_evaluator_is_tri_state() {
        let ctx = One("Issuer:Sub", "system:serviceaccount:ns:app");
        let cond = |c: Value| condition_holds(Some(&c), &ctx, EmptyBlock::Holds);
        assert_eq!(condition_holds(None, &ctx, EmptyBlock::Holds), Some(true));
        assert_eq!(cond(json!({})), Some(true));
        assert_eq!(cond(json!({"StringLike": {"issuer:sub": "system:serviceaccount:ns:*"}})), Some(true));
        assert_eq!(cond(json!({"StringEquals": {"issuer:sub": ["x", "system:serviceaccount:ns:app"]}})), Some(true));
        assert_eq!(cond(json!({"StringNotLike": {"issuer:sub": "system:*"}})), Some(false));
        assert_eq!(cond(json!({"StringEqualsIgnoreCase": {"issuer:sub": "SYSTEM:serviceaccount:NS:app"}})), Some(true));
        // unknown key, operator, policy variable, malformed: unknown
        assert_eq!(cond(json!({"StringEquals": {"issuer:aud": "x"}})), None);
        assert_eq!(cond(json!({"Bool": {"issuer:sub": "true"}})), None);
        assert_eq!(cond(json!({"StringLike": {"issuer:sub": "${aws:username}"}})), None);
        assert_eq!(cond(json!({"StringLike": "x"})), None);
        assert_eq!(cond(json!([])), None);
        // a false operator wins over an unknown one
        assert_eq!(cond(json!({"Bool": {"a": "true"}, "StringEquals": {"issuer:sub": "other"}})), Some(false));
        assert_eq!(all3([]), Some(true));
        assert_eq!(any3([]), Some(false));
        assert_eq!(all3([Some(true), None, Some(false)]), Some(false));
        assert_eq!(all3([Some(true), None]), None);
        assert_eq!(any3([Some(false), None, Some(true)]), Some(true));
        assert_eq!(any3([Some(false), None]), None);
        assert_eq!(any3([Some(false)]), Some(false));
    }

    #[test]
    fn empty_operator_blocks_are_the_only_difference() {
        // GIVEN an operator without keys THEN trust takes it as holding, permissions as unknown
        let empty = json!({"StringEquals": {}});
        assert_eq!(condition_holds(Some(&empty), &NoContext, EmptyBlock::Holds), Some(true));
        assert_eq!(condition_holds(Some(&empty), &NoContext, EmptyBlock::Unknown), None);
        // THEN everything else evaluates alike in both modes
        for c in [json!({}), json!({"StringEquals": {"k": "v"}}), json!({"Bool": {"k": "v"}}), json!("x"), json!(null)]
        {
            assert_eq!(
                condition_holds(Some(&c), &NoContext, EmptyBlock::Holds),
                condition_holds(Some(&c), &NoContext, EmptyBlock::Unknown),
                "{c}"
            );
        }
        // THEN a permission Allow with such a block does not grant, as before the merge
        let allow = json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": empty}});
        assert_eq!(evaluate(&[allow], "aps:QueryMetrics", "*"), Decision::ImplicitDeny);
        let allow = json!({"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {}}});
        assert_eq!(evaluate(&[allow], "aps:QueryMetrics", "*"), Decision::Allowed);
    }

    #[test]
    fn the_requested_resource_star_keeps_its_historical_matching() {
        // GIVEN the resource "*" (actions without resource-level permissions) THEN `*` and `?`
        // patterns match it, `*?` does not (StarInText::LiteralFirst)
        for (pattern, expected) in [("*", true), ("?", true), ("**", true), ("*?", false), ("arn:*", false)] {
            let doc = json!({"Statement": {"Effect": "Allow", "Action": "xray:*", "Resource": pattern}});
            let allowed = evaluate(&[doc], "xray:PutTraceSegments", "*") == Decision::Allowed;
            assert_eq!(allowed, expected, "{pattern}");
        }
    }
}
