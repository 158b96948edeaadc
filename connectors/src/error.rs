//! Source errors, classified so the user knows what to do (fix the network, the credentials,
//! the grants, or the spec), and converted to the stable codes that cross the queue.

use sluice_proto::{ErrorCode, StageError};

/// Why a source could not be planned or read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error("source unreachable: {0}")]
    /// The source could not be reached: network, DNS, a closed port.
    Unreachable(String),
    #[error("the source timed out: {0}")]
    /// The source took longer than its time limit.
    Timeout(String),
    #[error("the source refused the credentials: {0}")]
    /// The source refused the credentials.
    Authentication(String),
    #[error("permission denied: {0}")]
    /// The credentials lack a grant the import needs.
    PermissionDenied(String),
    #[error("missing object: {0}")]
    /// A table, column or database the import names does not exist.
    MissingObject(String),
    #[error("invalid import: {0}")]
    /// The import asks for something the source cannot give (a watermark that is no date-time, ...).
    InvalidSpec(String),
    #[error("the source failed the query: {0}")]
    /// The source failed a statement for another reason.
    Query(String),
    #[error("could not write the chunk's Parquet object: {0}")]
    /// The chunk's Parquet object could not be written.
    Storage(String),
    #[error("{0}")]
    /// The connection's sealed credentials could not be opened.
    Secret(String),
    /// The credentials were sealed with the fleet's key, which this process does not hold.
    #[error("{0}")]
    WrongKey(String),
    /// The SSH tunnel to the source could not be opened.
    #[error("{0}")]
    Tunnel(Box<crate::tunnel::TunnelError>),
}

impl From<crate::tunnel::TunnelError> for SourceError {
    fn from(e: crate::tunnel::TunnelError) -> Self {
        SourceError::Tunnel(Box::new(e))
    }
}

impl SourceError {
    /// The stable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            SourceError::Unreachable(_) => ErrorCode::SourceUnreachable,
            SourceError::Timeout(_) => ErrorCode::SourceTimeout,
            SourceError::Authentication(_) => ErrorCode::Authentication,
            SourceError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            SourceError::MissingObject(_) => ErrorCode::MissingObject,
            SourceError::InvalidSpec(_) => ErrorCode::InvalidSpec,
            SourceError::Query(_) => ErrorCode::SourceQuery,
            SourceError::Storage(_) => ErrorCode::Storage,
            SourceError::Secret(_) => ErrorCode::Internal,
            SourceError::WrongKey(_) => ErrorCode::WrongKey,
            SourceError::Tunnel(e) => e.code(),
        }
    }

    /// Whether retrying may help: the network and the source's load may recover; a missing
    /// table, a bad spec or a refused login will not fix themselves between attempts.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            SourceError::Unreachable(_)
                | SourceError::Timeout(_)
                | SourceError::Query(_)
                | SourceError::Storage(_)
        ) || matches!(self, SourceError::Tunnel(e) if matches!(**e, crate::tunnel::TunnelError::Unreachable(..)))
    }
}

impl From<SourceError> for StageError {
    fn from(e: SourceError) -> Self {
        StageError {
            code: e.code(),
            retryable: e.retryable(),
            message: e.to_string(),
        }
    }
}
