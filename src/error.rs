//! Error kinds shared by every stage. The kind decides the retry policy (and,
//! in the API alone, the HTTP status); the message says what a user can do
//! about it, with credentials already redacted; the cause, when there is one,
//! is the library error underneath (never one that could carry a credential).

use std::fmt;
use std::sync::Arc;

/// What went wrong, as far as retrying and answering clients are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The camera rejected our credentials (RTSP 401/403).
    Auth,
    /// The camera answered but has no such stream (RTSP 404, missing file).
    NotFound,
    /// No connection could be made (refused, unreachable, DNS).
    Unreachable,
    /// The peer spoke, but not a protocol we understand (garbage, bad SDP, framing).
    Protocol,
    /// The camera stopped answering within the allowed time.
    Timeout,
    /// The stream uses a codec or feature camhub does not handle.
    Unsupported,
    /// The stream ended (the camera hung up or the server died).
    EndOfStream,
    /// A local failure (decoder, encoder, thread spawn).
    Internal,
}

impl ErrorKind {
    /// Failures that will not fix themselves quickly: retried slowly, never hot-looped.
    pub fn is_persistent(self) -> bool {
        matches!(self, ErrorKind::Auth | ErrorKind::NotFound | ErrorKind::Unsupported)
    }
}

/// An error from a source, decoder or encoder: a kind, a redacted message and
/// the cause underneath, if any (`std::error::Error::source`).
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), cause: None }
    }

    /// Keeps `cause` as this error's source. Only for causes whose text carries
    /// no credential (callers pass URLs without user info to their libraries).
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }
}

/// Two errors are the same when they say the same; causes are detail.
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for Error {}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::Auth => "authentication failed",
            ErrorKind::NotFound => "not found",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::EndOfStream => "end of stream",
            ErrorKind::Internal => "internal error",
        };
        write!(f, "{what}: {}", self.message)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_keeps_its_kind_its_words_and_its_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by peer");
        let e = Error::new(ErrorKind::Unreachable, "cannot reach the camera").caused_by(io);
        assert_eq!(e.to_string(), "unreachable: cannot reach the camera");
        let cause = std::error::Error::source(&e).expect("a cause");
        assert_eq!(cause.to_string(), "refused by peer");
        assert_eq!(e, Error::new(ErrorKind::Unreachable, "cannot reach the camera"), "causes are detail");
        assert!(std::error::Error::source(&Error::new(ErrorKind::Internal, "x")).is_none());
    }
}
