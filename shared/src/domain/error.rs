//! The one place where error names are defined. Step Functions matches these names in
//! `Retry`/`Catch` (`ErrorEquals`), so they are part of the public contract: never rename one.

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the engine surfaces. [`Error::name`] is the stable name Step Functions sees.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: names the field and the rule it broke. Never retried; no AWS write happened.
    #[error("{field}: {rule}")]
    Validation { field: String, rule: String },
    /// The account is not ready for us (OIDC provider or IRSA role missing, cluster not found).
    #[error("{0}")]
    Precondition(String),
    /// Ambiguous or conflicting state we must not guess about (several workspaces with one alias...).
    #[error("{0}")]
    Conflict(String),
    /// A real AWS limit would be exceeded (trust-policy length, policy size, SSM value size).
    #[error("{0}")]
    LimitExceeded(String),
    /// Throttling, 5xx, timeouts, connection failures: safe to retry with backoff.
    #[error("{operation}: {message}")]
    Transient { operation: String, message: String },
    /// A just-created IAM role is not yet usable by a service (eventual consistency): retry a few times.
    #[error("{0}")]
    IamPropagation(String),
    /// A resource reached a terminal bad status (CREATION_FAILED, FAILED, ...).
    #[error("{0}")]
    ResourceFailed(String),
    /// Any other AWS error (access denied, ...), with the service's error code.
    #[error("{operation}: {code}: {message}")]
    Aws { operation: String, code: String, message: String },
    /// A bug or a broken contract between steps (a step ran without the output it needs).
    #[error("{0}")]
    Internal(String),
}

/// Every error name the engine can produce, as matched by the state machine.
pub const ERROR_NAMES: &[&str] = &[
    "ValidationError",
    "PreconditionError",
    "ConflictError",
    "LimitExceededError",
    "TransientError",
    "IamPropagationError",
    "ResourceFailedError",
    "AwsError",
    "InternalError",
];

/// What Step Functions reports when a function process dies mid-invocation (killed, out of
/// memory, a crash outside the handler): not our names, AWS Lambda's. Every step is idempotent,
/// so the state machine retries them a couple of times rather than failing the run.
pub const CRASH_ERROR_NAMES: &[&str] = &["Runtime.ExitError", "Lambda.Unknown"];

impl Error {
    /// The stable error name (one of [`ERROR_NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Error::Validation { .. } => "ValidationError",
            Error::Precondition(_) => "PreconditionError",
            Error::Conflict(_) => "ConflictError",
            Error::LimitExceeded(_) => "LimitExceededError",
            Error::Transient { .. } => "TransientError",
            Error::IamPropagation(_) => "IamPropagationError",
            Error::ResourceFailed(_) => "ResourceFailedError",
            Error::Aws { .. } => "AwsError",
            Error::Internal(_) => "InternalError",
        }
    }

    /// A validation error for `field` breaking `rule`.
    pub fn validation(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Error::Validation { field: field.into(), rule: rule.into() }
    }

    /// True when retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Transient { .. } | Error::IamPropagation(_))
    }

    /// The AWS error code, when this is an AWS service error.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => Some(code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_listed_name() {
        let all = [
            Error::validation("f", "r"),
            Error::Precondition(String::new()),
            Error::Conflict(String::new()),
            Error::LimitExceeded(String::new()),
            Error::Transient { operation: String::new(), message: String::new() },
            Error::IamPropagation(String::new()),
            Error::ResourceFailed(String::new()),
            Error::Aws { operation: String::new(), code: String::new(), message: String::new() },
            Error::Internal(String::new()),
        ];
        let names: Vec<_> = all.iter().map(Error::name).collect();
        assert_eq!(names, ERROR_NAMES);
    }

    #[test]
    fn validation_message_names_field_and_rule() {
        let e = Error::validation("namespace", "must be a DNS-1123 label");
        assert_eq!(e.to_string(), "namespace: must be a DNS-1123 label");
        assert!(!e.is_retryable());
    }
}
