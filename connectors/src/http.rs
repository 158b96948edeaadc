//! What the warehouses reached over HTTPS share: one client configuration (timeouts, user
//! agent), transport failures classified as unreachable or timed out, and reading the Arrow
//! IPC streams some of them answer with.

use crate::error::SourceError;
use arrow::record_batch::RecordBatch;
use std::time::Duration;

/// How long one HTTP request may take before the warehouse counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Statements slower than this are stopped, by the warehouse or by us.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// An HTTP client with Sluice's timeouts and user agent.
pub fn client(warehouse: &str) -> Result<reqwest::Client, SourceError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| transport(warehouse, e))
}

/// A request that got no answer: timed out, or the warehouse could not be reached.
pub fn transport(warehouse: &str, e: reqwest::Error) -> SourceError {
    if e.is_timeout() {
        SourceError::Timeout(format!("{warehouse}: {e}"))
    } else {
        SourceError::Unreachable(format!("{warehouse}: {e}"))
    }
}

/// The record batches of an Arrow IPC stream.
pub fn read_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>, SourceError> {
    arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| SourceError::Query(format!("reading an Arrow result: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SourceError::Query(format!("reading an Arrow result: {e}")))
}

/// Waits between polls of a statement that is still running: from 100 ms, doubling to 5 s.
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(100))
    }
}

impl Backoff {
    /// Sleeps for the current wait and doubles the next one.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

/// Sends a request and reads its JSON answer; a refused request is classified by `refused`
/// from its status and body.
pub async fn send_json<T: serde::de::DeserializeOwned>(
    warehouse: &str,
    request: reqwest::RequestBuilder,
    refused: impl FnOnce(u16, &str) -> SourceError,
) -> Result<T, SourceError> {
    let response = request.send().await.map_err(|e| transport(warehouse, e))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| transport(warehouse, e))?;
    if !status.is_success() {
        return Err(refused(status.as_u16(), &body));
    }
    serde_json::from_str(&body)
        .map_err(|e| SourceError::Query(format!("reading {warehouse}'s answer: {e}")))
}
