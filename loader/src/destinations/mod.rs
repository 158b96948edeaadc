//! Delivery to an engagement platform a team already runs, instead of the built-in stores:
//! one [`Api`] per platform builds its documented requests from a chunk's staged rows within
//! its batch limits and reads its per-record errors; [`Sender::send`] sends one request within
//! the destination's rate limit, waiting out `429`s as `Retry-After` says, retrying `5xx`
//! answers with backoff, and following the bulk job a request started until it ends, holding
//! no store connection while it waits. A loader sends one call at a time to each destination.

pub mod braze;
pub mod clevertap;
pub mod deliver;
pub mod klaviyo;
pub mod route;

use crate::staging::StagedRow;
use governor::{DefaultDirectRateLimiter, Quota};
use serde_json::Value;
use sluice_proto::Records;
use std::num::NonZeroU32;
use std::time::Duration;

/// One request to a destination's API: its path under the destination's URL, its JSON body,
/// and the staged row each record of the body came from, in order.
#[derive(Debug, Clone)]
pub struct Request {
    /// The path, as the vendor documents it (`/users/track`).
    pub path: &'static str,
    /// The body.
    pub body: Value,
    /// The row of each record, in the body's order.
    pub rows: Vec<usize>,
}

/// A record the destination refused, or one that cannot be sent: the row and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The staged row.
    pub row: usize,
    /// Why, in the vendor's words when it said.
    pub message: String,
}

/// One platform's ingestion API.
pub trait Api: Send + Sync {
    /// The kind, as specs name it.
    fn kind(&self) -> &'static str;
    /// The requests carrying `rows`, each within the vendor's batch limits, and the rows no
    /// request can carry (no identifier the vendor takes).
    fn requests(
        &self,
        records: &Records,
        rows: &[StagedRow],
        update_only: bool,
    ) -> (Vec<Request>, Vec<RecordError>);
    /// Adds the credentials to a request.
    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder;
    /// The records an accepted request's answer (or its bulk job's error listing) says
    /// were refused.
    fn record_errors(&self, request: &Request, answer: &Value) -> Vec<RecordError>;
    /// The headers carrying credentials, shown masked in a dry run's sample request.
    fn credential_headers(&self) -> &'static [&'static str];
    /// The media type of request bodies.
    fn content_type(&self) -> &'static str {
        "application/json"
    }
    /// The message of a refused request's answer.
    fn error_message(&self, answer: &Value) -> Option<String> {
        answer
            .get("message")
            .or_else(|| answer.get("error"))
            .and_then(Value::as_str)
            .map(String::from)
    }
    /// The bulk job an accepted request started, to be followed until it ends: its URL.
    fn job(&self, _answer: &Value) -> Option<String> {
        None
    }
    /// Where a polled bulk job stands.
    fn job_state(&self, _job: &Value) -> JobState {
        JobState::Done { errors: None }
    }
    /// The next page of a bulk job's error listing.
    fn next_page(&self, _listed: &Value) -> Option<String> {
        None
    }
}

/// Splits rows into those `name` finds the user of, with it, and those it finds none in,
/// refused with `message`.
pub(crate) fn named<'r, T>(
    rows: &'r [StagedRow],
    name: impl Fn(&'r StagedRow) -> Option<T>,
    message: &str,
) -> (Vec<(usize, T)>, Vec<RecordError>) {
    let mut found = Vec::new();
    let mut unnamed = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        match name(row) {
            Some(user) => found.push((i, user)),
            None => unnamed.push(RecordError {
                row: i,
                message: message.to_string(),
            }),
        }
    }
    (found, unnamed)
}

/// Requests to `path` of at most `size` records each, their bodies made by `body`.
pub(crate) fn batched<T>(
    named: &[(usize, T)],
    size: usize,
    path: &'static str,
    body: impl Fn(&[(usize, T)]) -> Value,
) -> Vec<Request> {
    named
        .chunks(size)
        .map(|batch| Request {
            path,
            body: body(batch),
            rows: batch.iter().map(|(i, _)| *i).collect(),
        })
        .collect()
}

/// The record of `sent` an error's echo repeats: the first not matched yet (so two equal
/// records are told apart by order), marked as matched.
pub(crate) fn echoed(
    sent: &[Value],
    matched: &mut [bool],
    is: impl Fn(&Value) -> bool,
) -> Option<usize> {
    let index = (0..sent.len()).find(|&i| !matched[i] && is(&sent[i]))?;
    matched[index] = true;
    Some(index)
}

/// Where a destination's bulk job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Still running: polled again.
    Running,
    /// Ended; the URL listing its per-record errors, when it had any.
    Done {
        /// The first page of its errors.
        errors: Option<String>,
    },
    /// Ended without importing (cancelled or failed as a whole).
    Failed(String),
}

/// Why a request was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The destination refused the whole request (a 4xx other than 429): retrying the same
    /// request will not help.
    #[error("{kind} refused the request ({status}): {message}")]
    Refused {
        /// The destination's kind.
        kind: &'static str,
        /// The HTTP status.
        status: u16,
        /// The destination's message.
        message: String,
    },
    /// The destination could not be reached or kept failing (5xx, timeouts, 429s past the
    /// wait the stage allows); the chunk is retried.
    #[error("{kind} did not accept the request: {message}")]
    Unavailable {
        /// The destination's kind.
        kind: &'static str,
        /// What happened last.
        message: String,
    },
}

/// How a destination is sent to: its URL, its request rate and how long to keep retrying.
pub struct Sender {
    /// The HTTP client (connection pooling, timeouts).
    pub client: reqwest::Client,
    /// The API's base URL, without a trailing slash.
    pub url: String,
    /// Requests per second this loader may send to the destination.
    pub limiter: DefaultDirectRateLimiter,
    /// Attempts of one request on 5xx answers and network failures.
    pub attempts: u32,
    /// The first backoff; it doubles per attempt.
    pub backoff: Duration,
    /// The longest one `Retry-After` is waited for before the chunk is handed back instead.
    pub max_wait: Duration,
    /// Held by the call being sent, through its retries and waits: a loader sends one call at
    /// a time to a destination, so a `429` pauses every chunk going there, not only its own.
    turn: tokio::sync::Mutex<()>,
}

impl Sender {
    /// A sender to `url` at `per_second` requests per second.
    pub fn new(url: &str, per_second: NonZeroU32) -> Self {
        Sender {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            url: url.trim_end_matches('/').to_string(),
            limiter: DefaultDirectRateLimiter::direct(Quota::per_second(per_second)),
            attempts: 5,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(120),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Sends one request until the destination accepts it, and follows the bulk job it
    /// started, if any, until the job ends; the records refused.
    pub async fn send(
        &self,
        api: &dyn Api,
        request: &Request,
    ) -> Result<Vec<RecordError>, DeliveryError> {
        let answer = self
            .exchange(
                api,
                reqwest::Method::POST,
                request.path,
                Some(&request.body),
            )
            .await?;
        let mut refused = api.record_errors(request, &answer);
        if let Some(job) = api.job(&answer) {
            refused.extend(self.follow(api, request, &job).await?);
        }
        Ok(refused)
    }

    /// Polls a bulk job until it ends; the records its error listing names.
    async fn follow(
        &self,
        api: &dyn Api,
        request: &Request,
        job: &str,
    ) -> Result<Vec<RecordError>, DeliveryError> {
        let mut pause = Duration::from_millis(200);
        let mut waited = Duration::ZERO;
        loop {
            let state = self.exchange(api, reqwest::Method::GET, job, None).await?;
            match api.job_state(&state) {
                JobState::Running => {
                    if waited > self.max_wait * 5 {
                        return Err(DeliveryError::Unavailable {
                            kind: api.kind(),
                            message: format!("the bulk job {job} did not end within {:?}", waited),
                        });
                    }
                    tokio::time::sleep(pause).await;
                    waited += pause;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                JobState::Failed(message) => {
                    return Err(DeliveryError::Unavailable {
                        kind: api.kind(),
                        message: format!("the bulk job {job} failed: {message}"),
                    })
                }
                JobState::Done { errors: None } => return Ok(Vec::new()),
                JobState::Done {
                    errors: Some(mut page),
                } => {
                    let mut refused = Vec::new();
                    loop {
                        let listed = self
                            .exchange(api, reqwest::Method::GET, &page, None)
                            .await?;
                        refused.extend(api.record_errors(request, &listed));
                        match api.next_page(&listed) {
                            Some(next) => page = next,
                            None => return Ok(refused),
                        }
                    }
                }
            }
        }
    }

    /// One call, repeated until the destination answers it: `429`s waited out as the answer
    /// says, network failures and `5xx` retried with backoff, any other `4xx` refused.
    async fn exchange(
        &self,
        api: &dyn Api,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, DeliveryError> {
        let kind = api.kind();
        // Bulk-job links may be absolute.
        let url = match path.starts_with("http://") || path.starts_with("https://") {
            true => path.to_string(),
            false => format!("{}{path}", self.url),
        };
        let _turn = self.turn.lock().await;
        let mut attempt = 0;
        let mut waited = Duration::ZERO;
        loop {
            self.limiter.until_ready().await;
            let mut call = api.authorize(self.client.request(method.clone(), &url));
            if let Some(body) = body {
                call = call
                    .header(reqwest::header::CONTENT_TYPE, api.content_type())
                    .body(body.to_string());
            }
            let answer = match call.send().await {
                Ok(answer) => answer,
                Err(e) => {
                    attempt += 1;
                    if attempt >= self.attempts {
                        return Err(DeliveryError::Unavailable {
                            kind,
                            message: e.to_string(),
                        });
                    }
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                    continue;
                }
            };
            let status = answer.status();
            if status.as_u16() == 429 {
                let wait = retry_after(answer.headers()).unwrap_or(self.backoff);
                waited += wait;
                if waited > self.max_wait {
                    return Err(DeliveryError::Unavailable {
                        kind,
                        message: format!("rate limited for over {:?}", self.max_wait),
                    });
                }
                tracing::debug!(
                    destination = kind,
                    wait_ms = wait.as_millis() as u64,
                    "rate limited; waiting"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let text = answer.text().await.unwrap_or_default();
            if status.is_server_error() {
                attempt += 1;
                if attempt >= self.attempts {
                    return Err(DeliveryError::Unavailable {
                        kind,
                        message: format!("{status}: {}", snippet(&text)),
                    });
                }
                tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                continue;
            }
            let answered: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if !status.is_success() {
                return Err(DeliveryError::Refused {
                    kind,
                    status: status.as_u16(),
                    message: api
                        .error_message(&answered)
                        .unwrap_or_else(|| snippet(&text)),
                });
            }
            return Ok(answered);
        }
    }
}

/// At most 300 characters of an answer, for messages.
fn snippet(text: &str) -> String {
    text.chars().take(300).collect()
}

/// How long a `429` asks to wait: `Retry-After` in seconds or as an HTTP date, else the
/// vendors' reset headers (`X-RateLimit-Reset`, seconds since the epoch).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(value) = text("retry-after") {
        if let Ok(seconds) = value.trim().parse::<f64>() {
            return Some(Duration::from_secs_f64(seconds.max(0.0)));
        }
        if let Ok(at) = chrono::DateTime::parse_from_rfc2822(value.trim()) {
            let wait = at.to_utc() - chrono::Utc::now();
            return Some(wait.to_std().unwrap_or_default());
        }
    }
    let reset = text("x-ratelimit-reset")?.trim().parse::<i64>().ok()?;
    let wait = reset - chrono::Utc::now().timestamp();
    Some(Duration::from_secs(wait.max(0) as u64))
}

/// A staged row for the platforms' tests: a user with a `tier` property and one event.
#[cfg(test)]
pub(crate) fn test_row(external_id: Option<&str>, email: Option<&str>) -> StagedRow {
    use chrono::TimeZone;
    let mut props = crate::props::Props::default();
    props.push("tier".into(), None, "gold");
    let at = |s| chrono::Utc.timestamp_opt(s, 0).single();
    StagedRow {
        key: "1".into(),
        updated_at: at(1_700_000_000).unwrap_or_default(),
        external_id: external_id.map(String::from),
        email: email.map(String::from),
        props,
        event_name: Some("Viewed".into()),
        event_time: at(1_700_000_100),
        dedup_key: Some("k1".into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn a_429_waits_as_retry_after_or_the_reset_header_says() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        let mut headers = HeaderMap::new();
        let reset = (chrono::Utc::now().timestamp() + 5).to_string();
        headers.insert("x-ratelimit-reset", HeaderValue::from_str(&reset).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait <= Duration::from_secs(5) && wait >= Duration::from_secs(3),
            "{wait:?}"
        );
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
