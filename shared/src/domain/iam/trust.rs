//! The IRSA trust merge: makes the IRSA role trust `system:serviceaccount:<ns>:observability-*`
//! through the cluster's OIDC provider without losing or widening anything else.
//!
//! IAM ANDs the conditions of one statement and ORs the values of one condition key, so adding
//! a `StringLike sub` to an existing statement that already has a `StringEquals sub` would break
//! the trust it grants. [`merge`] therefore never edits a foreign statement: it appends one
//! statement of its own ([`desired_statement`], identified by a deterministic `Sid`) at the end,
//! unless an existing statement already admits every request our statement would admit
//! (checked conservatively by [`covers`]: when unsure, our statement is added, since adding an
//! `Allow` never removes trust). Existing statements are neither reformatted nor reordered.
//!
//! A statement that carries our `Sid` but other content is replaced in place only when it is
//! provably narrower than ours (an outdated version of it), so that no trust is lost; when it
//! is broader but already admits our grant it is left alone with a warning; otherwise the merge
//! fails with [`Error::Conflict`] rather than guess.
//!
//! [`admits`] evaluates a trust policy the way IAM does for the request shapes we care about
//! (web identity, service principal, AWS principal); the tests use it to prove that a merge only
//! ever adds our grant and that [`remove`] undoes exactly what [`merge`] added.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::domain::error::{Error, Result};
use crate::domain::iam::doc::{
    action_matches, as_list, has_policy_variable, has_wildcard, statement_sid, statements, statements_or_empty,
    wildcard_match,
};
use crate::domain::iam::eval::{all3, any3, condition_holds, EmptyBlock, RequestContext};
use crate::domain::iam::policy::{document_length, TRUST_POLICY_MAX_CHARS};
use crate::domain::input::SERVICE_ACCOUNT_PATTERN;
use crate::domain::names::TRUST_SID_PREFIX;
use crate::domain::validate::shown;

/// The action a web-identity (IRSA) token exchange is evaluated for.
pub const WEB_IDENTITY_ACTION: &str = "sts:AssumeRoleWithWebIdentity";
/// The action a service or AWS principal assumes a role with.
pub const ASSUME_ROLE_ACTION: &str = "sts:AssumeRole";
/// The audience EKS projects into IRSA service-account tokens.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// What the IRSA role must come to trust: web-identity requests from one OIDC provider whose
/// `sub` matches [`IrsaGrant::subject_pattern`] and whose `aud` is [`STS_AUDIENCE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IrsaGrant {
    /// `arn:<partition>:iam::<account>:oidc-provider/<issuer host/path>`.
    pub provider_arn: String,
    /// The issuer URL without `https://` and trailing `/`: the prefix of the condition keys.
    pub issuer_host_path: String,
    /// `system:serviceaccount:<namespace>:observability-*`.
    pub subject_pattern: String,
}

impl IrsaGrant {
    /// The grant for the `observability-*` service accounts of `namespace`
    /// ([`SERVICE_ACCOUNT_PATTERN`]). `issuer_host_path` may also be given as the issuer URL.
    pub fn new(provider_arn: &str, issuer_host_path: &str, namespace: &str) -> Self {
        IrsaGrant {
            provider_arn: provider_arn.to_string(),
            issuer_host_path: crate::domain::names::issuer_host_path(issuer_host_path).to_string(),
            subject_pattern: format!("system:serviceaccount:{namespace}:{SERVICE_ACCOUNT_PATTERN}"),
        }
    }

    /// `<issuer host/path>:sub`.
    pub fn sub_key(&self) -> String {
        format!("{}:sub", self.issuer_host_path)
    }

    /// `<issuer host/path>:aud`.
    pub fn aud_key(&self) -> String {
        format!("{}:aud", self.issuer_host_path)
    }

    /// Fails with [`Error::Internal`] when the provider ARN is not the one of the issuer (the
    /// statement would then never match a token) or a part is empty.
    fn check(&self) -> Result<()> {
        let suffix = format!(":oidc-provider/{}", self.issuer_host_path);
        if self.issuer_host_path.is_empty()
            || !self.provider_arn.ends_with(&suffix)
            || !self.provider_arn.starts_with("arn:")
        {
            return Err(Error::Internal(format!(
                "IRSA grant: provider ARN {} is not the OIDC provider of issuer {}",
                shown(&self.provider_arn),
                shown(&self.issuer_host_path)
            )));
        }
        if self.subject_pattern.is_empty() {
            return Err(Error::Internal("IRSA grant: empty subject pattern".to_string()));
        }
        Ok(())
    }
}

/// The statement [`merge`] adds: `Allow` `sts:AssumeRoleWithWebIdentity` for the provider, with
/// `StringLike <issuer>:sub` = the subject pattern and `StringEquals <issuer>:aud` =
/// `sts.amazonaws.com`.
pub fn desired_statement(grant: &IrsaGrant, sid: &str) -> Value {
    json!({
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Federated": grant.provider_arn},
        "Action": WEB_IDENTITY_ACTION,
        "Condition": {
            "StringLike": {grant.sub_key(): grant.subject_pattern},
            "StringEquals": {grant.aud_key(): STS_AUDIENCE}
        }
    })
}

/// The result of [`merge`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustMerge {
    /// The trust policy to write (equal to the input when `changed` is false).
    pub document: Value,
    /// The statement this call put into the document (appended, or replacing an outdated
    /// version of itself), to be given to [`remove`] later; `None` when nothing was added
    /// (already present from an earlier run, or already covered by an existing statement).
    pub added_statement: Option<Value>,
    /// True when `document` differs from the input and must be written.
    pub changed: bool,
    /// Things the operator should know: a `Deny` that blocks the grant, our `Sid` edited by
    /// someone else, an outdated statement replaced.
    pub warnings: Vec<String>,
}

/// Merges the grant into `existing` with the default trust-policy quota
/// ([`TRUST_POLICY_MAX_CHARS`]); see [`merge_with_quota`].
pub fn merge(existing: &Value, grant: &IrsaGrant, sid: &str) -> Result<TrustMerge> {
    merge_with_quota(existing, grant, sid, TRUST_POLICY_MAX_CHARS)
}

/// What [`merge_with_quota`] does to the statement list.
enum Plan {
    /// Nothing to write.
    Keep,
    /// Append our statement at the end.
    Append,
    /// Replace the statement at this index (an outdated version of ours) with ours.
    Replace(usize),
}

/// Merges the grant into `existing` (a decoded trust policy) for an account whose trust-policy
/// length quota is `quota` characters (whitespace not counted).
///
/// Every request the policy admitted is still admitted; the only requests newly admitted are
/// the grant's. Idempotent: merging the result again changes nothing.
///
/// Errors: [`Error::LimitExceeded`] when the new document would be longer than `quota`;
/// [`Error::Conflict`] when a statement with our `Sid` exists that we can neither keep nor safely
/// replace (or several do); [`Error::Internal`] for a malformed document, Sid or grant.
pub fn merge_with_quota(existing: &Value, grant: &IrsaGrant, sid: &str, quota: usize) -> Result<TrustMerge> {
    grant.check()?;
    if sid.is_empty() || !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::Internal(format!("trust statement Sid {} must be non-empty and alphanumeric", shown(sid))));
    }
    let root = existing.as_object().ok_or_else(|| Error::Internal("trust policy is not a JSON object".to_string()))?;
    let statements = statements(existing)
        .ok_or_else(|| Error::Internal("trust policy: Statement is neither an object nor an array".to_string()))?;
    let desired = desired_statement(grant, sid);
    let mut warnings = Vec::new();

    let ours: Vec<usize> =
        statements.iter().enumerate().filter(|(_, s)| statement_sid(s) == Some(sid)).map(|(i, _)| i).collect();
    // Another deployment's statement does not count: its delete removes it, and ours would go
    // with it (each deployment holds its own grant).
    let other_deployments = |s: &Value| statement_sid(s).is_some_and(|x| x != sid && x.starts_with(TRUST_SID_PREFIX));
    let any_covers = |skip: Option<usize>| {
        statements
            .iter()
            .enumerate()
            .any(|(i, s)| Some(i) != skip && !other_deployments(s) && s.as_object().is_some_and(|m| covers(m, grant)))
    };
    let plan = match ours.as_slice() {
        [] if any_covers(None) => Plan::Keep,
        [] => Plan::Append,
        [i] => {
            let i = *i;
            let current = statements.get(i).copied().unwrap_or(&Value::Null);
            let obj = current.as_object();
            if statement_equivalent(current, &desired) {
                Plan::Keep
            } else if obj.is_some_and(|m| narrower(m, grant)) {
                warnings.push(format!(
                    "statement {sid} was an outdated version of ours that trusted a subset of the grant; replaced it in place"
                ));
                Plan::Replace(i)
            } else if obj.is_some_and(|m| covers(m, grant)) || any_covers(Some(i)) {
                warnings.push(format!(
                    "statement {sid} was changed outside o11y-provisioner; left as is because the policy already admits the grant (it will not be removed on teardown)"
                ));
                Plan::Keep
            } else {
                return Err(Error::Conflict(format!(
                    "trust policy already has a statement with Sid {sid} that differs from ours and trusts requests ours would not; \
                     refusing to overwrite it (that would remove trust): remove or rename that statement, then retry"
                )));
            }
        }
        _ => {
            return Err(Error::Conflict(format!(
                "trust policy has {} statements with Sid {sid}; remove the duplicates, then retry",
                ours.len()
            )))
        }
    };

    let (document, added_statement, changed) = match plan {
        Plan::Keep => (existing.clone(), None, false),
        Plan::Append | Plan::Replace(_) => {
            let mut out = root.clone();
            let new_statement = match (plan, root.get("Statement")) {
                (Plan::Replace(i), Some(Value::Array(items))) => {
                    let mut items = items.clone();
                    if let Some(slot) = items.get_mut(i) {
                        *slot = desired.clone();
                    }
                    Value::Array(items)
                }
                (Plan::Replace(_), _) => desired.clone(),
                (_, Some(Value::Array(items))) => {
                    let mut items = items.clone();
                    items.push(desired.clone());
                    Value::Array(items)
                }
                (_, Some(single)) => Value::Array(vec![single.clone(), desired.clone()]),
                (_, None) => Value::Array(vec![desired.clone()]),
            };
            out.insert("Statement".to_string(), new_statement);
            let document = Value::Object(out);
            let current_len = document_length(existing);
            let resulting_len = document_length(&document);
            if resulting_len > quota {
                return Err(Error::LimitExceeded(format!(
                    "IRSA trust policy: adding statement {sid} would make the role's trust policy {resulting_len} characters \
                     (currently {current_len}; whitespace not counted), over the trust-policy length quota of {quota} characters; \
                     remove unused statements from the trust policy or request a higher \"Role trust policy length\" quota in Service Quotas"
                )));
            }
            (document, Some(desired.clone()), true)
        }
    };

    warnings.extend(deny_warnings(&document, grant));
    Ok(TrustMerge { document, added_statement, changed, warnings })
}

/// Removes exactly what [`merge`] added: every statement equivalent to `added_statement` (same
/// `Sid` and content, ignoring formatting, key order and string-versus-array forms). Everything
/// else is kept as is. Idempotent; a `null` or unmatched `added_statement` changes nothing.
///
/// When the merge replaced an outdated version of our statement, that version is not restored
/// (it was ours too). A `Statement` left empty stays an empty array.
pub fn remove(existing: &Value, added_statement: &Value) -> Value {
    if !added_statement.is_object() {
        return existing.clone();
    }
    let Some(root) = existing.as_object() else {
        return existing.clone();
    };
    let new_statement = match root.get("Statement") {
        Some(Value::Array(items)) if items.iter().any(|s| statement_equivalent(s, added_statement)) => {
            Value::Array(items.iter().filter(|s| !statement_equivalent(s, added_statement)).cloned().collect())
        }
        Some(single @ Value::Object(_)) if statement_equivalent(single, added_statement) => Value::Array(Vec::new()),
        _ => return existing.clone(),
    };
    let mut out = root.clone();
    out.insert("Statement".to_string(), new_statement);
    Value::Object(out)
}

/// `doc` without the statements of other deployments (`Sid` [`TRUST_SID_PREFIX`]… other than
/// `own_sid`): each is another deployment's own grant, which its delete removes, so it is not part
/// of the trust a role had of its own.
pub fn without_other_deployments(doc: &Value, own_sid: &str) -> Value {
    let Some(root) = doc.as_object() else {
        return doc.clone();
    };
    let other = |s: &Value| statement_sid(s).is_some_and(|x| x != own_sid && x.starts_with(TRUST_SID_PREFIX));
    let kept = match root.get("Statement") {
        Some(Value::Array(items)) => Value::Array(items.iter().filter(|s| !other(s)).cloned().collect()),
        Some(single) if other(single) => Value::Array(Vec::new()),
        _ => return doc.clone(),
    };
    let mut out = root.clone();
    out.insert("Statement".to_string(), kept);
    Value::Object(out)
}

/// Our statement as it is in `doc` (for a teardown that lost [`TrustMerge::added_statement`]):
/// `Some(desired_statement(grant, sid))` when `doc` holds a statement equivalent to it.
pub fn owned_statement(doc: &Value, grant: &IrsaGrant, sid: &str) -> Option<Value> {
    let desired = desired_statement(grant, sid);
    statements(doc)?.into_iter().any(|s| statement_equivalent(s, &desired)).then_some(desired)
}

/// A request to assume the role, for evaluating trust: web identity (provider ARN, claims
/// sub/aud), a service principal, or an AWS principal ARN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssumeRequest {
    /// `sts:AssumeRoleWithWebIdentity` with a token from the OIDC provider `provider_arn`.
    WebIdentity {
        /// `arn:<p>:iam::<account>:oidc-provider/<issuer host/path>`.
        provider_arn: String,
        /// The token's `sub` claim.
        sub: String,
        /// The token's `aud` claim.
        aud: String,
    },
    /// `sts:AssumeRole` by an AWS service principal (`ec2.amazonaws.com`).
    Service(String),
    /// `sts:AssumeRole` by an IAM principal ARN (user, role, account root).
    Aws(String),
}

impl AssumeRequest {
    /// The action IAM evaluates the request for.
    fn action(&self) -> &'static str {
        match self {
            AssumeRequest::WebIdentity { .. } => WEB_IDENTITY_ACTION,
            AssumeRequest::Service(_) | AssumeRequest::Aws(_) => ASSUME_ROLE_ACTION,
        }
    }
}

impl RequestContext for AssumeRequest {
    /// The request's value for condition key `key` (case-insensitive), when we model it:
    /// `<issuer>:sub` and `<issuer>:aud` of a web-identity request's own provider. `None` for
    /// every other key (absent or unknown to us).
    fn value(&self, key: &str) -> Option<&str> {
        let AssumeRequest::WebIdentity { provider_arn, sub, aud } = self else {
            return None;
        };
        let (_, issuer) = provider_arn.split_once(":oidc-provider/")?;
        let (key_issuer, claim) = key.rsplit_once(':')?;
        if !key_issuer.eq_ignore_ascii_case(issuer) {
            return None;
        }
        if claim.eq_ignore_ascii_case("sub") {
            Some(sub)
        } else if claim.eq_ignore_ascii_case("aud") {
            Some(aud)
        } else {
            None
        }
    }

    /// A key of another OIDC issuer (`<host/path>:<claim>`, the prefix naming a host that is not
    /// this request's provider) is absent from the request: IAM puts only the keys of the
    /// provider that issued the token into the context. Any other unmodelled key is unknown.
    fn absent(&self, key: &str) -> bool {
        let Some((key_issuer, _)) = key.rsplit_once(':') else {
            return false;
        };
        if !key_issuer.contains('.') {
            return false; // aws:..., sts:..., a service prefix: not modelled, unknown
        }
        match self {
            AssumeRequest::WebIdentity { provider_arn, .. } => provider_arn
                .split_once(":oidc-provider/")
                .is_some_and(|(_, issuer)| !key_issuer.eq_ignore_ascii_case(issuer)),
            AssumeRequest::Service(_) | AssumeRequest::Aws(_) => true,
        }
    }
}

/// Evaluates a trust policy like IAM would for these request shapes: an explicit `Deny` wins, an
/// `Allow` is needed. `Principal`/`NotPrincipal`; `Action`/`NotAction` (wildcards, case-insensitive)
/// for `sts:AssumeRoleWithWebIdentity` or `sts:AssumeRole`; `StringEquals`/`StringLike`/
/// `StringNotEquals`/`StringNotLike` (and their `IgnoreCase`, `IfExists`, `ForAnyValue:`,
/// `ForAllValues:` forms on keys the request has) with `*` and `?` wildcards, case-sensitive
/// values. An unknown operator or key (or a policy variable) makes a condition unknown: an
/// `Allow` with it does not admit, a `Deny` with it does not match. A malformed document admits
/// nothing.
pub fn admits(doc: &Value, req: &AssumeRequest) -> bool {
    let Some(statements) = statements(doc) else {
        return false;
    };
    let mut allowed = false;
    for statement in statements {
        let Some(m) = statement.as_object() else { continue };
        match m.get("Effect").and_then(Value::as_str) {
            Some("Deny") if statement_matches(m, req) == Some(true) => return false,
            Some("Allow") if statement_matches(m, req) == Some(true) => allowed = true,
            _ => {}
        }
    }
    allowed
}

/// The verdict verification uses, erring toward "fail": `Some(false)` when a `Deny` applies
/// (or nothing admits), `None` ("cannot prove") when a `Deny` may apply (it depends on an operator
/// or key we cannot evaluate) or only an `Allow` we cannot evaluate would admit, `Some(true)` when
/// an `Allow` surely admits and no `Deny` can apply. A malformed document is `Some(false)`.
pub fn verdict(doc: &Value, req: &AssumeRequest) -> Option<bool> {
    let Some(statements) = statements(doc) else {
        return Some(false);
    };
    let (mut allowed, mut maybe_allowed, mut maybe_denied) = (false, false, false);
    for statement in statements {
        let Some(m) = statement.as_object() else { continue };
        let effect = m.get("Effect").and_then(Value::as_str);
        match (effect, statement_matches(m, req)) {
            (Some("Deny"), Some(true)) => return Some(false),
            (Some("Deny"), None) => maybe_denied = true,
            (Some("Allow"), Some(true)) => allowed = true,
            (Some("Allow"), None) => maybe_allowed = true,
            _ => {}
        }
    }
    if maybe_denied || (!allowed && maybe_allowed) {
        None
    } else {
        Some(allowed)
    }
}

/// True when the `Allow` statement `m` admits, conservatively, every request the grant's
/// statement admits: `Federated` lists the provider, `Action` matches
/// `sts:AssumeRoleWithWebIdentity` (`sts:*`, `*`...), no `NotPrincipal`/`NotAction`/`Resource`, and
/// every condition is a `StringEquals`/`StringLike` on the provider's `sub` or `aud` key that holds
/// for the whole subject pattern (`StringLike` with a pattern such as
/// `system:serviceaccount:<ns>:*`) and for `aud` = `sts.amazonaws.com`. Anything else
/// (`ForAnyValue:` forms, other keys or operators, policy variables) does not cover.
pub fn covers(m: &Map<String, Value>, grant: &IrsaGrant) -> bool {
    if m.get("Effect").and_then(Value::as_str) != Some("Allow") {
        return false;
    }
    if ["NotPrincipal", "NotAction", "Resource", "NotResource"].iter().any(|k| m.contains_key(*k)) {
        return false;
    }
    let federated = m.get("Principal").and_then(Value::as_object).and_then(|p| p.get("Federated")).and_then(as_list);
    if !federated.is_some_and(|f| f.iter().any(|v| *v == grant.provider_arn)) {
        return false;
    }
    if !m.get("Action").and_then(as_list).is_some_and(|a| a.iter().any(|v| action_matches(v, WEB_IDENTITY_ACTION))) {
        return false;
    }
    let conditions = match m.get("Condition") {
        None => return true,
        Some(Value::Object(c)) => c,
        Some(_) => return false,
    };
    let (sub_key, aud_key) = (grant.sub_key(), grant.aud_key());
    conditions.iter().all(|(op, block)| {
        let like = match op.as_str() {
            "StringEquals" => false,
            "StringLike" => true,
            _ => return false,
        };
        let Some(block) = block.as_object() else { return false };
        block.iter().all(|(key, values)| {
            let Some(values) = as_list(values) else { return false };
            let mut usable = values.iter().filter(|v| !has_policy_variable(v));
            if key.eq_ignore_ascii_case(&sub_key) {
                if like {
                    usable.any(|v| like_covers(v, &grant.subject_pattern))
                } else {
                    !has_wildcard(&grant.subject_pattern) && usable.any(|v| *v == grant.subject_pattern)
                }
            } else if key.eq_ignore_ascii_case(&aud_key) {
                if like {
                    usable.any(|v| wildcard_match(v, STS_AUDIENCE))
                } else {
                    usable.any(|v| *v == STS_AUDIENCE)
                }
            } else {
                false
            }
        })
    })
}

/// True when the statement `m` provably admits only requests the grant's statement admits (an
/// outdated version of ours, safe to replace): `Allow`, `Federated` = only the provider, `Action`
/// only `sts:AssumeRoleWithWebIdentity`, and conditions that restrict `sub` within the subject
/// pattern and `aud` to `sts.amazonaws.com`. Further conditions only narrow it.
pub fn narrower(m: &Map<String, Value>, grant: &IrsaGrant) -> bool {
    if m.get("Effect").and_then(Value::as_str) != Some("Allow")
        || m.contains_key("NotPrincipal")
        || m.contains_key("NotAction")
    {
        return false;
    }
    let Some(principal) = m.get("Principal").and_then(Value::as_object) else { return false };
    let federated_only = principal.len() == 1
        && principal
            .get("Federated")
            .and_then(as_list)
            .is_some_and(|f| !f.is_empty() && f.iter().all(|v| *v == grant.provider_arn));
    let action_only = m
        .get("Action")
        .and_then(as_list)
        .is_some_and(|a| !a.is_empty() && a.iter().all(|v| v.eq_ignore_ascii_case(WEB_IDENTITY_ACTION)));
    if !federated_only || !action_only {
        return false;
    }
    let Some(conditions) = m.get("Condition").and_then(Value::as_object) else { return false };
    let (sub_key, aud_key) = (grant.sub_key(), grant.aud_key());
    let restricts = |key: &str, within: &dyn Fn(&str, bool) -> bool| {
        conditions.iter().any(|(op, block)| {
            let like = match op.as_str() {
                "StringEquals" => false,
                "StringLike" => true,
                _ => return false,
            };
            block.as_object().is_some_and(|b| {
                b.iter().any(|(k, values)| {
                    k.eq_ignore_ascii_case(key)
                        && as_list(values).is_some_and(|vs| {
                            !vs.is_empty() && vs.iter().all(|v| !has_policy_variable(v) && within(v, like))
                        })
                })
            })
        })
    };
    let sub_within = |v: &str, like: bool| like_within(v, like, &grant.subject_pattern);
    let aud_within = |v: &str, _like: bool| v == STS_AUDIENCE;
    restricts(&sub_key, &sub_within) && restricts(&aud_key, &aud_within)
}

/// Warnings for each `Deny` statement of `doc` that blocks (or, with conditions we cannot
/// evaluate, may block) sample requests of the grant.
fn deny_warnings(doc: &Value, grant: &IrsaGrant) -> Vec<String> {
    let samples: Vec<AssumeRequest> = ["collector", "x"]
        .iter()
        .map(|name| AssumeRequest::WebIdentity {
            provider_arn: grant.provider_arn.clone(),
            sub: grant.subject_pattern.replace('*', name).replace('?', "x"),
            aud: STS_AUDIENCE.to_string(),
        })
        .collect();
    let mut warnings = Vec::new();
    for (i, statement) in statements_or_empty(doc).into_iter().enumerate() {
        let Some(m) = statement.as_object() else { continue };
        if m.get("Effect").and_then(Value::as_str) != Some("Deny") {
            continue;
        }
        let results: Vec<Option<bool>> = samples.iter().map(|r| statement_matches(m, r)).collect();
        let name = match statement_sid(statement) {
            Some(s) if !s.is_empty() => format!("Deny statement {}", shown(s)),
            _ => format!("Deny statement #{}", i + 1),
        };
        if results.contains(&Some(true)) {
            warnings.push(format!(
                "{name} blocks web-identity requests from {} for {}: the grant is in place but will not work until that Deny is changed",
                grant.provider_arn, grant.subject_pattern
            ));
        } else if results.contains(&None) {
            warnings.push(format!(
                "{name} may block web-identity requests from {} for {} (it has conditions that could not be evaluated)",
                grant.provider_arn, grant.subject_pattern
            ));
        }
    }
    if warnings.is_empty() && samples.iter().any(|r| !admits(doc, r)) {
        warnings.push(format!(
            "the trust policy does not admit web-identity requests from {} for {}",
            grant.provider_arn, grant.subject_pattern
        ));
    }
    warnings
}

/// Canonical form of a statement for [`statement_equivalent`]: every string becomes a
/// one-element set and every array a sorted, deduplicated set, recursively.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), canonical(v))).collect()),
        Value::Array(items) => {
            let mut items: Vec<Value> = items
                .iter()
                .map(|item| match item {
                    Value::Object(_) => canonical(item),
                    other => other.clone(),
                })
                .collect();
            items.sort_by_key(Value::to_string);
            items.dedup();
            Value::Array(items)
        }
        Value::String(_) => Value::Array(vec![v.clone()]),
        other => other.clone(),
    }
}

/// True when two statements are the same up to formatting, key order, a string versus a
/// one-element array, and value order or duplicates.
fn statement_equivalent(a: &Value, b: &Value) -> bool {
    canonical(a) == canonical(b)
}

/// Whether statement `m` applies to `req` (principal, action and conditions); `None` when that
/// depends on something we cannot evaluate or the statement is malformed.
fn statement_matches(m: &Map<String, Value>, req: &AssumeRequest) -> Option<bool> {
    let principal = match (m.get("Principal"), m.get("NotPrincipal")) {
        (Some(p), None) => principal_matches(p, req),
        (None, Some(np)) => principal_matches(np, req).map(|b| !b),
        _ => None,
    };
    let action = match (m.get("Action"), m.get("NotAction")) {
        (Some(a), None) => as_list(a).map(|a| a.iter().any(|v| action_matches(v, req.action()))),
        (None, Some(na)) => as_list(na).map(|a| !a.iter().any(|v| action_matches(v, req.action()))),
        _ => None,
    };
    let condition = condition_holds(m.get("Condition"), req, EmptyBlock::Holds);
    all3([principal, action, condition])
}

/// Whether a `Principal` element names the requester.
fn principal_matches(p: &Value, req: &AssumeRequest) -> Option<bool> {
    let m = match p {
        Value::String(s) if s == "*" => return Some(true),
        Value::Object(m) => m,
        _ => return None,
    };
    any3(m.iter().map(|(kind, values)| {
        let values = as_list(values)?;
        let hit = match (kind.as_str(), req) {
            ("AWS", _) if values.contains(&"*") => true,
            ("AWS", AssumeRequest::Aws(arn)) => values.iter().any(|v| aws_principal_matches(v, arn)),
            ("Service", AssumeRequest::Service(s)) => values.iter().any(|v| *v == "*" || v == s),
            ("Federated", AssumeRequest::WebIdentity { provider_arn, .. }) => {
                values.iter().any(|v| *v == "*" || v == provider_arn)
            }
            ("AWS" | "Service" | "Federated" | "CanonicalUser", _) => false,
            _ => return None,
        };
        Some(hit)
    }))
}

/// An `AWS` principal value against a requester ARN: the same ARN, or the requester's account
/// given as a 12-digit id or `arn:<p>:iam::<account>:root`.
fn aws_principal_matches(value: &str, arn: &str) -> bool {
    if value == arn {
        return true;
    }
    let account_of = |a: &str| a.split(':').nth(4).map(str::to_string);
    let value_account = if value.len() == 12 && value.chars().all(|c| c.is_ascii_digit()) {
        Some(value.to_string())
    } else if value.starts_with("arn:") && value.ends_with(":root") && value.split(':').nth(5) == Some("root") {
        account_of(value)
    } else {
        None
    };
    value_account.is_some_and(|acct| !acct.is_empty() && account_of(arn).as_deref() == Some(acct.as_str()))
}

/// Sufficient test that every string matched by `ours` is matched by the `StringLike` value
/// `theirs`. For `ours` = literal `A` + `*`: `theirs` ends with `*` and, without it, matches some
/// prefix of `A`. For a literal `ours`: `theirs` matches it. Otherwise: equality.
fn like_covers(theirs: &str, ours: &str) -> bool {
    if has_policy_variable(theirs) {
        return false;
    }
    if !has_wildcard(ours) {
        return wildcard_match(theirs, ours);
    }
    if theirs == ours {
        return true;
    }
    match (ours.strip_suffix('*'), theirs.strip_suffix('*')) {
        (Some(prefix), Some(head)) if !has_wildcard(prefix) => {
            prefix.char_indices().map(|(i, _)| i).chain([prefix.len()]).any(|end| wildcard_match(head, &prefix[..end]))
        }
        _ => false,
    }
}

/// Sufficient test that every string matched by the condition value `theirs` (a `StringLike`
/// pattern when `like`, else a literal) is matched by `ours`.
fn like_within(theirs: &str, like: bool, ours: &str) -> bool {
    if !like || !has_wildcard(theirs) {
        return wildcard_match(ours, theirs);
    }
    match ours.strip_suffix('*') {
        Some(prefix) if !has_wildcard(prefix) => theirs.starts_with(prefix),
        _ => theirs == ours,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "oidc.eks.us-east-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF";
    const PROVIDER: &str =
        "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF";
    const SID: &str = "O11yProvisionerIrsaTest";

    fn grant() -> IrsaGrant {
        IrsaGrant::new(PROVIDER, ISSUER, "dr-core")
    }

    fn web(sub: &str, aud: &str) -> AssumeRequest {
        AssumeRequest::WebIdentity { provider_arn: PROVIDER.to_string(), sub: sub.to_string(), aud: aud.to_string() }
    }

    fn sa(name: &str) -> AssumeRequest {
        web(&format!("system:serviceaccount:dr-core:{name}"), STS_AUDIENCE)
    }

    fn doc(statements: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": statements})
    }

    fn oidc_statement(condition: Value) -> Value {
        json!({"Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition})
    }

    fn covers_v(statement: &Value) -> bool {
        covers(statement.as_object().unwrap(), &grant())
    }

    // ---- wildcard matching -------------------------------------------------------------

    #[test]
    fn wildcard_star_and_question_mark() {
        // GIVEN StringLike patterns WHEN matched THEN * is any run (also empty), ? exactly one char
        assert!(wildcard_match("a*c", "ac"));
        assert!(wildcard_match("a*c", "abbbc"));
        assert!(!wildcard_match("a*c", "abbbd"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(!wildcard_match("a?c", "abbc"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("**a**", "xxaxx"));
        assert!(!wildcard_match("", "a"));
        assert!(wildcard_match(
            "system:serviceaccount:*:observability-*",
            "system:serviceaccount:dr-core:observability-x"
        ));
    }

    #[test]
    fn wildcard_is_case_sensitive() {
        // GIVEN a pattern WHEN the text differs only in case THEN no match
        assert!(!wildcard_match(
            "system:serviceaccount:dr-core:observability-*",
            "system:serviceaccount:dr-core:Observability-x"
        ));
        assert!(!wildcard_match("abc", "ABC"));
    }

    // ---- admits --------------------------------------------------------------------------

    #[test]
    fn admits_stringlike_pattern_with_wildcards() {
        // GIVEN our desired statement alone WHEN evaluating subs THEN only the pattern with the right aud
        let d = doc(json!([desired_statement(&grant(), SID)]));
        assert!(admits(&d, &sa("observability-collector")));
        assert!(admits(&d, &sa("observability-")));
        assert!(!admits(&d, &sa("Observability-collector")));
        assert!(!admits(&d, &sa("observability")));
        assert!(!admits(&d, &web("system:serviceaccount:dr-core-evil:observability-x", STS_AUDIENCE)));
        assert!(!admits(&d, &web("system:serviceaccount:dr-core:observability-x", "sts.amazonaws.com.evil")));
        assert!(!admits(&d, &web("system:serviceaccount:dr-core:observability-x", "STS.amazonaws.com")));
        let other_provider = AssumeRequest::WebIdentity {
            provider_arn: "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/OTHER"
                .to_string(),
            sub: "system:serviceaccount:dr-core:observability-x".to_string(),
            aud: STS_AUDIENCE.to_string(),
        };
        assert!(!admits(&d, &other_provider));
        assert!(!admits(&d, &AssumeRequest::Service("ec2.amazonaws.com".to_string())));
    }

    #[test]
    fn admits_question_mark_in_condition() {
        // GIVEN StringLike with ? WHEN the sub has one char there THEN admitted, zero or two THEN not
        let d = doc(json!([oidc_statement(
            json!({"StringLike": {format!("{ISSUER}:sub"): "system:serviceaccount:dr-core:app-?"}})
        )]));
        assert!(admits(&d, &sa("app-1")));
        assert!(!admits(&d, &sa("app-")));
        assert!(!admits(&d, &sa("app-12")));
    }

    #[test]
    fn admits_ands_keys_and_ors_values() {
        // GIVEN StringEquals sub [a, b] AND aud WHEN either sub with the right aud THEN admitted
        let d = doc(json!([oidc_statement(json!({"StringEquals": {
            format!("{ISSUER}:sub"): ["system:serviceaccount:dr-core:a", "system:serviceaccount:dr-core:b"],
            format!("{ISSUER}:aud"): "sts.amazonaws.com"
        }}))]));
        assert!(admits(&d, &sa("a")));
        assert!(admits(&d, &sa("b")));
        assert!(!admits(&d, &sa("c")));
        // THEN a matching sub with the wrong aud is refused (keys are ANDed)
        assert!(!admits(&d, &web("system:serviceaccount:dr-core:a", "other")));
    }

    #[test]
    fn admits_ands_operator_blocks() {
        // GIVEN StringEquals sub AND StringLike sub (the runbook's naive edit) WHEN a pattern SA asks THEN refused
        let d = doc(json!([oidc_statement(json!({
            "StringEquals": {format!("{ISSUER}:sub"): "system:serviceaccount:dr-core:app"},
            "StringLike": {format!("{ISSUER}:sub"): "system:serviceaccount:dr-core:observability-*"}
        }))]));
        assert!(!admits(&d, &sa("app")));
        assert!(!admits(&d, &sa("observability-collector")));
    }

    #[test]
    fn condition_keys_are_case_insensitive_values_are_not() {
        // GIVEN a condition key in another case WHEN evaluated THEN the key still applies
        let d = doc(json!([oidc_statement(
            json!({"StringEquals": {format!("{}:SUB", ISSUER.to_uppercase()): "system:serviceaccount:dr-core:app"}})
        )]));
        assert!(admits(&d, &sa("app")));
        assert!(!admits(&d, &sa("APP")));
        // GIVEN StringEqualsIgnoreCase THEN values compare case-insensitively
        let d = doc(json!([oidc_statement(
            json!({"StringEqualsIgnoreCase": {format!("{ISSUER}:sub"): "SYSTEM:serviceaccount:dr-core:app"}})
        )]));
        assert!(admits(&d, &sa("app")));
    }

    #[test]
    fn deny_wins_over_allow() {
        // GIVEN an Allow for the namespace and a Deny for one SA WHEN that SA asks THEN refused
        let d = doc(json!([
            oidc_statement(json!({"StringLike": {format!("{ISSUER}:sub"): "system:serviceaccount:dr-core:*"}})),
            {"Effect": "Deny", "Principal": {"Federated": PROVIDER}, "Action": "sts:*",
             "Condition": {"StringEquals": {format!("{ISSUER}:sub"): "system:serviceaccount:dr-core:default"}}}
        ]));
        assert!(admits(&d, &sa("app")));
        assert!(!admits(&d, &sa("default")));
    }

    #[test]
    fn negated_operators() {
        // GIVEN a Deny with StringNotLike WHEN the sub is outside the allowed pattern THEN refused
        let d = doc(json!([
            oidc_statement(json!({"StringLike": {format!("{ISSUER}:sub"): "system:serviceaccount:*"}})),
            {"Effect": "Deny", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity",
             "Condition": {"StringNotLike": {format!("{ISSUER}:sub"): ["system:serviceaccount:dr-core:app-*"]}}}
        ]));
        assert!(admits(&d, &sa("app-1")));
        assert!(!admits(&d, &sa("observability-collector")));
        // GIVEN StringNotEquals on aud in an Allow THEN other auds pass, sts does not
        let d =
            doc(json!([oidc_statement(json!({"StringNotEquals": {format!("{ISSUER}:aud"): "sts.amazonaws.com"}}))]));
        assert!(!admits(&d, &sa("x")));
        assert!(admits(&d, &web("system:serviceaccount:dr-core:x", "other")));
    }

    #[test]
    fn unknown_operator_or_key_does_not_admit_and_does_not_deny() {
        // GIVEN an Allow with an unknown key WHEN evaluated THEN not admitted
        let allow_unknown_key = oidc_statement(json!({"StringEquals": {"aws:SourceAccount": "111122223333"}}));
        assert!(!admits(&doc(json!([allow_unknown_key])), &sa("x")));
        let allow_unknown_op = oidc_statement(json!({"DateGreaterThan": {format!("{ISSUER}:sub"): "x"}}));
        assert!(!admits(&doc(json!([allow_unknown_op])), &sa("x")));
        let allow_variable = oidc_statement(json!({"StringLike": {format!("{ISSUER}:sub"): "${aws:username}"}}));
        assert!(!admits(&doc(json!([allow_variable])), &sa("x")));
        // GIVEN a Deny with an unknown operator WHEN evaluated THEN it does not block
        let d = doc(json!([
            oidc_statement(json!({"StringLike": {format!("{ISSUER}:sub"): "*"}})),
            {"Effect": "Deny", "Principal": "*", "Action": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}
        ]));
        assert!(admits(&d, &sa("x")));
    }

    #[test]
    fn principals_actions_and_not_forms() {
        let d = doc(json!([
            {"Effect": "Allow", "Principal": {"Service": ["ec2.amazonaws.com"], "AWS": "arn:aws:iam::111122223333:root"}, "Action": "STS:assumerole"}
        ]));
        // GIVEN a service and an account root WHEN asked THEN service and any principal of the account pass
        assert!(admits(&d, &AssumeRequest::Service("ec2.amazonaws.com".to_string())));
        assert!(admits(&d, &AssumeRequest::Aws("arn:aws:iam::111122223333:role/ci".to_string())));
        assert!(!admits(&d, &AssumeRequest::Aws("arn:aws:iam::444455556666:role/ci".to_string())));
        assert!(!admits(&d, &AssumeRequest::Service("lambda.amazonaws.com".to_string())));
        // THEN a web identity is refused (action sts:AssumeRole only, principal not Federated)
        assert!(!admits(&d, &sa("x")));
        // GIVEN an account id principal THEN it is that account's root
        let d = doc(json!({"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "sts:AssumeRole"}));
        assert!(admits(&d, &AssumeRequest::Aws("arn:aws:iam::111122223333:user/alice".to_string())));
        // GIVEN NotAction / NotPrincipal
        let d = doc(json!([
            {"Effect": "Allow", "Principal": {"Federated": PROVIDER}, "NotAction": "sts:AssumeRole"},
            {"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:role/admin"}, "Action": "sts:AssumeRole"}
        ]));
        assert!(admits(&d, &sa("anything")));
        assert!(!admits(&d, &AssumeRequest::Aws("arn:aws:iam::111122223333:role/admin".to_string())));
        // GIVEN a malformed document THEN nothing is admitted
        assert!(!admits(&json!({"Statement": "x"}), &sa("x")));
        assert!(!admits(&json!([]), &sa("x")));
    }

    // ---- coverage rules ----------------------------------------------------------------------

    #[test]
    fn namespace_wide_stringlike_covers() {
        // GIVEN StringLike sub ns:* with aud, or without aud THEN covers
        assert!(covers_v(&oidc_statement(json!({
            "StringLike": {format!("{ISSUER}:sub"): "system:serviceaccount:dr-core:*"},
            "StringEquals": {format!("{ISSUER}:aud"): "sts.amazonaws.com"}
        }))));
        assert!(covers_v(&oidc_statement(
            json!({"StringLike": {format!("{ISSUER}:sub"): ["x", "system:serviceaccount:dr-core:*"]}})
        )));
        assert!(covers_v(&oidc_statement(
            json!({"StringLike": {format!("{ISSUER}:sub"): "system:serviceaccount:*:observability-*"}})
        )));
        assert!(covers_v(&oidc_statement(
            json!({"StringLike": {format!("{ISSUER}:sub"): "system:serviceaccount:dr-?ore:observ*"}})
        )));
        assert!(covers_v(&oidc_statement(json!({"StringLike": {format!("{ISSUER}:aud"): "sts.*"}}))));
        // GIVEN no condition at all THEN covers (any sub of that provider)
        assert!(covers_v(
            &json!({"Effect": "Allow", "Principal": {"Federated": [PROVIDER, "x"]}, "Action": ["sts:*"]})
        ));
        assert!(covers_v(&json!({"Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "*"})));
    }

    #[test]
    fn narrower_or_different_statements_do_not_cover() {
        let sub = format!("{ISSUER}:sub");
        // StringEquals sub cannot cover a pattern
        assert!(!covers_v(&oidc_statement(
            json!({"StringEquals": {&sub: "system:serviceaccount:dr-core:observability-*"}})
        )));
        // a narrower pattern, another namespace, a prefix trick
        assert!(!covers_v(&oidc_statement(
            json!({"StringLike": {&sub: "system:serviceaccount:dr-core:observability-c*"}})
        )));
        assert!(!covers_v(&oidc_statement(json!({"StringLike": {&sub: "system:serviceaccount:monitoring:*"}}))));
        assert!(!covers_v(&oidc_statement(
            json!({"StringLike": {&sub: "system:serviceaccount:dr-core:observability-"}})
        )));
        // ForAnyValue, other keys, other aud, policy variables
        assert!(!covers_v(&oidc_statement(
            json!({"ForAnyValue:StringLike": {&sub: "system:serviceaccount:dr-core:*"}})
        )));
        assert!(!covers_v(&oidc_statement(
            json!({"StringLike": {&sub: "*"}, "StringEquals": {"aws:SourceAccount": "1"}})
        )));
        assert!(!covers_v(&oidc_statement(
            json!({"StringLike": {&sub: "*"}, "StringEquals": {format!("{ISSUER}:aud"): "other"}})
        )));
        assert!(!covers_v(&oidc_statement(json!({"StringLike": {&sub: "${aws:username}*"}}))));
        // another provider, wrong action, Deny, NotAction
        assert!(!covers_v(
            &json!({"Effect": "Allow", "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/x"}, "Action": "*"})
        ));
        assert!(!covers_v(
            &json!({"Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRole"})
        ));
        assert!(!covers_v(&json!({"Effect": "Deny", "Principal": {"Federated": PROVIDER}, "Action": "*"})));
        assert!(!covers_v(
            &json!({"Effect": "Allow", "Principal": {"Federated": PROVIDER}, "NotAction": "sts:AssumeRole"})
        ));
    }

    #[test]
    fn exact_copy_with_another_sid_covers_and_merge_adds_nothing() {
        let mut copy = desired_statement(&grant(), "RunbookObservability");
        assert!(covers_v(&copy));
        copy["Action"] = json!(["sts:AssumeRoleWithWebIdentity"]);
        let d = doc(json!([copy]));
        let m = merge(&d, &grant(), SID).unwrap();
        assert!(!m.changed && m.added_statement.is_none() && m.document == d);
    }

    #[test]
    fn another_deployments_statement_does_not_cover_each_holds_its_own() {
        // GIVEN the trust holding another deployment's statement for the same namespace
        let theirs = desired_statement(&grant(), "O11yProvisionerIrsaOther");
        let d = doc(json!([theirs.clone()]));
        // WHEN we merge THEN ours is appended beside it
        let m = merge(&d, &grant(), SID).unwrap();
        assert!(m.changed, "{m:?}");
        assert_eq!(m.added_statement, Some(desired_statement(&grant(), SID)));
        // AND when the other deployment removes its statement THEN ours still admits the grant
        let after = remove(&m.document, &theirs);
        assert!(admits(&after, &sa("observability-collector")));
        // AND a runbook statement (not a deployment's) still covers: nothing is added
        let runbook = desired_statement(&grant(), "RunbookObservability");
        assert!(!merge(&doc(json!([runbook])), &grant(), SID).unwrap().changed);
    }

    // ---- merge ---------------------------------------------------------------------------

    #[test]
    fn merge_appends_once_and_records_it() {
        // GIVEN an eksctl-style policy WHEN merged THEN ours is appended, the rest untouched
        let existing = doc(json!([oidc_statement(json!({"StringEquals": {
            format!("{ISSUER}:sub"): "system:serviceaccount:dr-core:app", format!("{ISSUER}:aud"): "sts.amazonaws.com"}}))]));
        let m = merge(&existing, &grant(), SID).unwrap();
        assert!(m.changed);
        assert_eq!(m.added_statement, Some(desired_statement(&grant(), SID)));
        assert_eq!(m.document["Statement"][0], existing["Statement"][0]);
        assert_eq!(m.document["Statement"][1], desired_statement(&grant(), SID));
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        // WHEN merged again THEN nothing changes
        let again = merge(&m.document, &grant(), SID).unwrap();
        assert!(!again.changed && again.document == m.document && again.added_statement.is_none());
        // WHEN removed THEN the original comes back, twice
        let removed = remove(&m.document, &desired_statement(&grant(), SID));
        assert_eq!(removed, existing);
        assert_eq!(remove(&removed, &desired_statement(&grant(), SID)), existing);
        assert_eq!(remove(&existing, &Value::Null), existing);
        assert_eq!(owned_statement(&m.document, &grant(), SID), Some(desired_statement(&grant(), SID)));
        assert_eq!(owned_statement(&existing, &grant(), SID), None);
    }

    #[test]
    fn merge_turns_statement_object_into_array() {
        let single = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}});
        let m = merge(&single, &grant(), SID).unwrap();
        assert_eq!(m.document["Statement"].as_array().map(Vec::len), Some(2));
        assert_eq!(m.document["Statement"][0], single["Statement"]);
        // GIVEN no Statement at all THEN ours becomes the only one
        let m = merge(&json!({"Version": "2012-10-17"}), &grant(), SID).unwrap();
        assert_eq!(m.document["Statement"], json!([desired_statement(&grant(), SID)]));
    }

    #[test]
    fn ours_in_another_form_is_recognised() {
        // GIVEN our statement as IAM might hand it back (arrays, other key order) THEN no change
        let mut ours = desired_statement(&grant(), SID);
        ours["Action"] = json!(["sts:AssumeRoleWithWebIdentity", "sts:AssumeRoleWithWebIdentity"]);
        ours["Principal"]["Federated"] = json!([PROVIDER]);
        let d = doc(json!([ours]));
        let m = merge(&d, &grant(), SID).unwrap();
        assert!(!m.changed && m.document == d);
        // THEN remove still finds it
        assert_eq!(remove(&d, &desired_statement(&grant(), SID)), doc(json!([])));
    }

    #[test]
    fn outdated_narrower_statement_with_our_sid_is_replaced_in_place() {
        // GIVEN our Sid on a narrower statement (one SA only), between two others
        let mut outdated = oidc_statement(json!({
            "StringEquals": {format!("{ISSUER}:sub"): "system:serviceaccount:dr-core:observability-collector", format!("{ISSUER}:aud"): "sts.amazonaws.com"}
        }));
        outdated["Sid"] = json!(SID);
        let first =
            json!({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"});
        let last = json!({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "sts:AssumeRole"});
        let d = doc(json!([first, outdated, last]));
        let m = merge(&d, &grant(), SID).unwrap();
        // THEN it is replaced at the same position and recorded
        assert!(m.changed);
        assert_eq!(m.document["Statement"], json!([first, desired_statement(&grant(), SID), last]));
        assert_eq!(m.added_statement, Some(desired_statement(&grant(), SID)));
        assert!(m.warnings.iter().any(|w| w.contains("outdated")));
        assert!(admits(&m.document, &sa("observability-collector")));
    }

    #[test]
    fn broader_tampered_statement_with_our_sid_is_kept() {
        // GIVEN our Sid edited to trust the whole namespace THEN kept (replacing would remove trust), warned
        let mut tampered =
            oidc_statement(json!({"StringLike": {format!("{ISSUER}:sub"): "system:serviceaccount:dr-core:*"}}));
        tampered["Sid"] = json!(SID);
        let d = doc(json!([tampered]));
        let m = merge(&d, &grant(), SID).unwrap();
        assert!(!m.changed && m.document == d && m.added_statement.is_none());
        assert!(m.warnings.iter().any(|w| w.contains("changed outside")));
    }

    #[test]
    fn conflicting_statement_with_our_sid_is_an_error() {
        // GIVEN our Sid on a statement for another namespace THEN Conflict (neither keep nor replace is safe)
        let mut other = oidc_statement(
            json!({"StringLike": {format!("{ISSUER}:sub"): "system:serviceaccount:monitoring:observability-*"}}),
        );
        other["Sid"] = json!(SID);
        let err = merge(&doc(json!([other.clone()])), &grant(), SID).unwrap_err();
        assert_eq!(err.name(), "ConflictError");
        assert!(err.to_string().contains(SID));
        // GIVEN two statements with our Sid THEN Conflict
        let ours = desired_statement(&grant(), SID);
        let err = merge(&doc(json!([ours.clone(), ours])), &grant(), SID).unwrap_err();
        assert_eq!(err.name(), "ConflictError");
    }

    #[test]
    fn deny_blocking_the_grant_is_reported() {
        let d = doc(
            json!([{"Sid": "DenyOutsideApps", "Effect": "Deny", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringNotLike": {format!("{ISSUER}:sub"): "system:serviceaccount:dr-core:app-*"}}}]),
        );
        let m = merge(&d, &grant(), SID).unwrap();
        assert!(m.changed);
        assert!(m.warnings.iter().any(|w| w.contains("DenyOutsideApps") && w.contains("blocks")), "{:?}", m.warnings);
        // GIVEN a Deny with conditions we cannot evaluate THEN "may block"
        let d = doc(
            json!([{"Effect": "Deny", "Principal": "*", "Action": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]),
        );
        let m = merge(&d, &grant(), SID).unwrap();
        assert!(m.warnings.iter().any(|w| w.contains("may block")), "{:?}", m.warnings);
    }

    #[test]
    fn quota_is_enforced_with_lengths_in_the_message() {
        // GIVEN a quota just under the merged length WHEN merging THEN LimitExceeded naming both lengths and the quota
        let existing = doc(
            json!([{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]),
        );
        let merged = merge(&existing, &grant(), SID).unwrap().document;
        let (before, after) = (document_length(&existing), document_length(&merged));
        let err = merge_with_quota(&existing, &grant(), SID, after - 1).unwrap_err();
        assert_eq!(err.name(), "LimitExceededError");
        let msg = err.to_string();
        assert!(
            msg.contains(&before.to_string())
                && msg.contains(&after.to_string())
                && msg.contains(&(after - 1).to_string()),
            "{msg}"
        );
        // THEN exactly at the quota it passes, and an unchanged document never fails
        assert!(merge_with_quota(&existing, &grant(), SID, after).is_ok());
        assert!(!merge_with_quota(&merged, &grant(), SID, 10).unwrap().changed);
    }

    #[test]
    fn bad_inputs_are_internal_errors() {
        let d = doc(json!([]));
        assert_eq!(merge(&d, &grant(), "bad-sid").unwrap_err().name(), "InternalError");
        assert_eq!(merge(&json!("x"), &grant(), SID).unwrap_err().name(), "InternalError");
        assert_eq!(merge(&json!({"Statement": 3}), &grant(), SID).unwrap_err().name(), "InternalError");
        let mismatched = IrsaGrant::new("arn:aws:iam::1:oidc-provider/other", ISSUER, "dr-core");
        assert_eq!(merge(&d, &mismatched, SID).unwrap_err().name(), "InternalError");
    }

    #[test]
    fn grant_new_builds_the_pattern() {
        let g = IrsaGrant::new(PROVIDER, &format!("https://{ISSUER}/"), "dr-core");
        assert_eq!(g.issuer_host_path, ISSUER);
        assert_eq!(g.subject_pattern, "system:serviceaccount:dr-core:observability-*");
        assert_eq!(g.sub_key(), format!("{ISSUER}:sub"));
    }

    #[test]
    fn other_deployments_statements_are_not_the_roles_own() {
        let own = crate::domain::names::trust_statement_sid("a", "us-east-1");
        let other = crate::domain::names::trust_statement_sid("a", "us-west-2");
        let doc = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Theirs", "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"},
            {"Sid": other, "Effect": "Allow", "Principal": {"Service": "x.amazonaws.com"}, "Action": "sts:AssumeRole"},
            {"Sid": own, "Effect": "Allow", "Principal": {"Service": "y.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]});
        let kept = without_other_deployments(&doc, &own);
        let sids: Vec<&str> = kept["Statement"].as_array().unwrap().iter().filter_map(|s| s["Sid"].as_str()).collect();
        assert_eq!(sids, vec!["Theirs", own.as_str()]);
        let single = json!({"Statement": {"Sid": other, "Effect": "Allow"}});
        assert_eq!(without_other_deployments(&single, &own)["Statement"], json!([]));
    }
}
