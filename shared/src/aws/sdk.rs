//! SDK errors to engine [`Error`]s: throttling, 5xx and connection failures are
//! `TransientError`, every other service error an `AwsError` with the service's code.
//! Callers match the errors an operation models with the SDK's typed helpers
//! (`e.as_service_error().is_some_and(|s| s.is_no_such_entity_exception())`), not by code string.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
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
pub fn from_sdk<E>(operation: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown").to_string();
            let message = e.message().unwrap_or_default().to_string();
            let status = service.raw().status().as_u16();
            if TRANSIENT_CODES.contains(&code.as_str()) || status == 429 || status >= 500 {
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

#[cfg(test)]
mod tests {
    use aws_sdk_ssm::operation::get_parameter::GetParameterError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    /// A service error with `code` in a response of HTTP `status`, as the SDK hands it over.
    fn service_error(code: &str, status: u16) -> SdkError<GetParameterError, HttpResponse> {
        let err = GetParameterError::generic(ErrorMetadata::builder().code(code).message("m").build());
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(err, raw)
    }

    #[test]
    fn transient_by_http_status_of_the_raw_response() {
        for status in [429, 500, 503] {
            let e = from_sdk("ssm:GetParameter", service_error("SomethingElse", status));
            assert!(matches!(e, Error::Transient { .. }), "{status}: {e:?}");
        }
    }

    #[test]
    fn transient_by_code_and_otherwise_the_service_code() {
        let e = from_sdk("ssm:GetParameter", service_error("ThrottlingException", 400));
        assert!(matches!(e, Error::Transient { .. }), "{e:?}");
        match from_sdk("ssm:GetParameter", service_error("ParameterNotFound", 400)) {
            Error::Aws { operation, code, message } => {
                assert_eq!(
                    (operation.as_str(), code.as_str(), message.as_str()),
                    ("ssm:GetParameter", "ParameterNotFound", "m")
                );
            }
            other => panic!("not an AWS error: {other:?}"),
        }
    }
}
