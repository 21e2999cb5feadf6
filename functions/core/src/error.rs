//! Errors of the pure pipeline, sorted by who is at fault.
//!
//! Every error of the core is about the *input* or the *configuration*: the core does no I/O, so
//! nothing here is worth retrying. [`ErrorKind::is_permanent`] says so explicitly, and the cloud edge
//! adds its own transient kinds (network, throttling) on top.

use std::fmt;

/// What went wrong, as a stable machine-readable code (written into metadata JSON and DLQ attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The source has no bytes at all.
    Empty,
    /// The bytes are not an image format imgpipe reads (text, HTML, SVG, HEIC, lossless JPEG, …).
    Unsupported,
    /// The bytes claim to be a supported format but are truncated or corrupt.
    Corrupt,
    /// The source is larger than a configured limit (bytes, pixels, width or height).
    OverLimit,
    /// A preset or option is invalid (caught at start-up, never per image in a healthy deploy).
    Config,
    /// A bug or an unexpected failure inside an encoder; report it.
    Internal,
}

impl ErrorKind {
    /// True when retrying the same input cannot succeed (all core errors are permanent).
    pub fn is_permanent(self) -> bool {
        true
    }

    /// The code as written in metadata JSON and DLQ message attributes.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Empty => "empty",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::OverLimit => "over_limit",
            ErrorKind::Config => "config",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of the pipeline: a kind plus a sentence that tells a user what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct PipelineError {
    /// Machine-readable class of the error.
    pub kind: ErrorKind,
    /// Human-readable explanation, including the offending value and the limit where relevant.
    pub message: String,
}

impl PipelineError {
    /// Builds an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The source is not a readable image of a supported format.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// The source is truncated or corrupt.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// The source exceeds a limit.
    pub fn over_limit(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::OverLimit, message)
    }

    /// A configuration (preset) error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// An internal failure (encoder refused valid pixels, …).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

/// Result alias for the core.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
