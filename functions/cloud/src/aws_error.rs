//! AWS SDK errors in one readable line: the error code, message, HTTP status and request id of an
//! answer from AWS, or the cause chain of a request that never got one (timeout, DNS, connection).
//! The SDK's own `Display`/`Debug` of a service error nests whole structs (~2 KB for one failed
//! GetObject); operators need the four facts, and the request id is what AWS support asks for.
//! Callers put the service, operation and resource in front: `GetObject s3://b/k: <brief>`.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;

/// Longest cause chain kept for an error without an AWS answer.
const MAX_CHAIN: usize = 400;

/// `NoSuchBucket: The specified bucket does not exist (HTTP 404, request id 4442587FB7D0A2F9)`, or
/// for a request that got no answer, `dispatch failure: io error: … connection refused`.
pub fn brief<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    if let SdkError::ServiceError(service) = e {
        let error = service.err();
        let mut line = format!(
            "{}: {}",
            error.code().unwrap_or("unknown error code"),
            error.message().unwrap_or("(no message)")
        );
        let mut facts = Vec::new();
        if let Some(status) = status {
            facts.push(format!("HTTP {status}"));
        }
        if let Some(id) = e.request_id() {
            facts.push(format!("request id {id}"));
        }
        if !facts.is_empty() {
            line.push_str(&format!(" ({})", facts.join(", ")));
        }
        return line;
    }
    let kind = match e {
        SdkError::ConstructionFailure(_) => "request not built",
        SdkError::TimeoutError(_) => "timed out",
        SdkError::DispatchFailure(_) => "not sent",
        SdkError::ResponseError(_) => "unreadable response",
        _ => "error",
    };
    let mut chain = vec![kind.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if chain.last() != Some(&text) {
            chain.push(text);
        }
        source = cause.source();
    }
    if let Some(status) = status {
        chain.push(format!("HTTP {status}"));
    }
    let mut line = chain.join(": ");
    if line.len() > MAX_CHAIN {
        let cut = (0..=MAX_CHAIN)
            .rev()
            .find(|&i| line.is_char_boundary(i))
            .unwrap_or(0);
        line.truncate(cut);
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::DisplayErrorContext;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::types::error::NoSuchKey;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn not_found() -> SdkError<GetObjectError, HttpResponse> {
        let mut response = HttpResponse::new(StatusCode::try_from(404).unwrap(), SdkBody::from(""));
        response
            .headers_mut()
            .insert("x-amz-request-id", "4442587FB7D0A2F9");
        let error = GetObjectError::NoSuchKey(
            NoSuchKey::builder()
                .message("The specified key does not exist.")
                .meta(
                    ErrorMetadata::builder()
                        .code("NoSuchKey")
                        .message("The specified key does not exist.")
                        .build(),
                )
                .build(),
        );
        SdkError::service_error(error, response)
    }

    #[test]
    fn a_service_error_is_code_message_status_and_request_id() {
        let e = not_found();
        assert_eq!(
            brief(&e),
            "NoSuchKey: The specified key does not exist. (HTTP 404, request id 4442587FB7D0A2F9)"
        );
        // What it replaces: the SDK's nested structs.
        assert!(DisplayErrorContext(&e).to_string().len() > brief(&e).len() * 2);
    }

    #[test]
    fn a_request_without_an_answer_is_its_cause_chain() {
        let e: SdkError<GetObjectError, HttpResponse> = SdkError::timeout_error(
            std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out after 30s"),
        );
        let line = brief(&e);
        assert!(line.starts_with("timed out"), "{line}");
        assert!(line.contains("read timed out after 30s"), "{line}");
        assert!(line.len() <= MAX_CHAIN + 3);
    }
}
