//! Job failures at the cloud edge, split by what a retry can do: permanent failures go straight to the
//! dead-letter queue with their reason; transient ones are retried with backoff.

use imgpipe_core::PipelineError;

/// Why a job did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Failure {
    /// Stable code (`corrupt`, `unsupported`, `over_limit`, `source_missing`, `s3_get`, `s3_put`, …).
    pub kind: String,
    /// What happened and what to do.
    pub message: String,
    /// True when a later attempt can succeed (network, throttling, permissions being fixed).
    pub retryable: bool,
}

impl Failure {
    /// A failure that no retry can fix.
    pub fn permanent(kind: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// A failure worth retrying.
    pub fn transient(kind: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            retryable: true,
        }
    }
}

impl From<&PipelineError> for Failure {
    fn from(e: &PipelineError) -> Self {
        Self {
            kind: e.kind.as_str().into(),
            message: e.message.clone(),
            retryable: !e.kind.is_permanent(),
        }
    }
}
