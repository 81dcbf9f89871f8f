//! SDK errors to engine [`Error`]s: throttling, 5xx and connection failures are
//! `TransientError`, every other service error an `AwsError` with the service's code.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::domain::error::Error;

/// AWS error codes that mean "try again later".
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "InternalServerException",
    "ServiceFailure",
    "ConcurrentModification",
    "ConcurrentModificationException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// Classifies an SDK error from `operation` into an engine [`Error`].
pub fn from_sdk<E, R>(operation: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown").to_string();
            let message = e.message().unwrap_or_default().to_string();
            let status = raw_status(format!("{:?}", service.raw()).as_str());
            if TRANSIENT_CODES.contains(&code.as_str()) || status.is_some_and(|s| s == 429 || s >= 500) {
                Error::Transient { operation: operation.to_string(), message: format!("{code}: {message}") }
            } else {
                Error::Aws { operation: operation.to_string(), code, message }
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::Transient { operation: operation.to_string(), message: error_chain(&err) }
        }
        _ => Error::Aws { operation: operation.to_string(), code: "Unknown".to_string(), message: error_chain(&err) },
    }
}

/// Extracts an HTTP status from the Debug of a raw response (`status: StatusCode(503)`).
fn raw_status(debug: &str) -> Option<u16> {
    let idx = debug.find("StatusCode(")? + "StatusCode(".len();
    debug[idx..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
}

/// The error and its sources, joined: SDK errors hide the useful part in `source()`.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

/// True when `err` is an AWS service error with one of `codes`.
pub fn has_code<E, R>(err: &SdkError<E, R>, codes: &[&str]) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(s) => s.err().code().is_some_and(|c| codes.contains(&c)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_status_parses_debug_output() {
        assert_eq!(raw_status("HttpResponse { status: StatusCode(503), headers"), Some(503));
        assert_eq!(raw_status("nothing"), None);
    }
}
