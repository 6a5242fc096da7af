//! Error kinds shared by every stage. The kind decides the retry policy and the
//! HTTP status; the message says what a user can do about it, with credentials
//! already redacted.

use std::fmt;

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

/// An error from a source, decoder or encoder: a kind and a redacted message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into() }
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
