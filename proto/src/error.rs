//! The error a stage reports across the queue: a stable code, a message, and whether to retry.

use serde::{Deserialize, Serialize};

/// Stable error codes shared by every role; users and alerts key on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The source could not be reached (network, DNS, refused).
    SourceUnreachable,
    /// The source rejected the credentials.
    Authentication,
    /// The source did not answer within the time allowed.
    SourceTimeout,
    /// The credentials lack a privilege on an object.
    PermissionDenied,
    /// A table, view, column or database named by the import does not exist.
    MissingObject,
    /// The source answered with an error while reading.
    SourceQuery,
    /// The object store could not be read or written.
    Storage,
    /// The profile or event store could not be written.
    Store,
    /// A message or object did not have the expected shape.
    InvalidData,
    /// The import's spec cannot be applied as written.
    InvalidSpec,
    /// The SSH bastion a connection goes through could not be reached, or would not forward.
    TunnelUnreachable,
    /// The SSH bastion refused the connection's key.
    TunnelAuthentication,
    /// The SSH bastion presented another host key than the one pinned for the connection.
    TunnelHostKeyChanged,
    /// The SSH bastion's host key has not been pinned by a successful connection test yet.
    TunnelHostKeyUnpinned,
    /// A destination platform refused a whole request (its credentials, its URL): retrying
    /// will not help until the destination is fixed.
    DestinationRefused,
    /// A destination platform could not be reached, kept failing or kept limiting the rate
    /// past the wait allowed.
    DestinationUnavailable,
    /// This process holds another master key than the one the message was sealed with by
    /// the fleet: the message goes back for another worker, and the process says not-ready.
    WrongKey,
    /// Anything else; a bug or an unexpected condition.
    Internal,
}

impl ErrorCode {
    /// The code as it appears in APIs and the control plane.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::SourceUnreachable => "source_unreachable",
            ErrorCode::SourceTimeout => "source_timeout",
            ErrorCode::Authentication => "authentication",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::MissingObject => "missing_object",
            ErrorCode::SourceQuery => "source_query",
            ErrorCode::Storage => "storage",
            ErrorCode::Store => "store",
            ErrorCode::InvalidData => "invalid_data",
            ErrorCode::InvalidSpec => "invalid_spec",
            ErrorCode::TunnelUnreachable => "tunnel_unreachable",
            ErrorCode::TunnelAuthentication => "tunnel_authentication",
            ErrorCode::TunnelHostKeyChanged => "tunnel_host_key_changed",
            ErrorCode::TunnelHostKeyUnpinned => "tunnel_host_key_unpinned",
            ErrorCode::DestinationRefused => "destination_refused",
            ErrorCode::DestinationUnavailable => "destination_unavailable",
            ErrorCode::WrongKey => "wrong_key",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A failed stage call: what went wrong and whether trying again may help.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
#[error("{}: {message}", code.as_str())]
pub struct StageError {
    /// What kind of failure, stable across versions.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Whether trying again may succeed.
    pub retryable: bool,
}

impl StageError {
    /// An error worth retrying (transient network, lock conflicts, a restarting service).
    pub fn retryable(code: ErrorCode, message: impl Into<String>) -> Self {
        StageError {
            code,
            message: message.into(),
            retryable: true,
        }
    }

    /// An error that will not go away by retrying the same message.
    pub fn permanent(code: ErrorCode, message: impl Into<String>) -> Self {
        StageError {
            code,
            message: message.into(),
            retryable: false,
        }
    }
}

/// An error with every cause under it, `outer: cause: root`, for logs: a cause that the outer
/// message already quotes is not repeated.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let said = e.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod chain_tests {
    #[derive(Debug, thiserror::Error)]
    #[error("reading the spec")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("reading the spec: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn every_cause_is_shown_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert_eq!(super::chain(&Outer(io())), "reading the spec: no such file");
        assert_eq!(
            super::chain(&Quoting(io())),
            "reading the spec: no such file"
        );
    }
}
