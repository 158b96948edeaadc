//! Message headers: W3C trace context (`traceparent`, `tracestate`) linking every stage of a
//! run into one trace, the attempt counter that bounds retries, and the publish time that
//! measures how long a message waited in its queue.

use lapin::types::{AMQPValue, FieldTable, LongString};
use rand::RngCore;

/// Header carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// Header carrying vendor trace state, passed along unchanged.
pub const TRACESTATE: &str = "tracestate";
/// Header carrying when the message was published, in milliseconds since the Unix epoch.
pub const PUBLISHED_AT: &str = "x-sluice-published-at";
/// Header carrying how many times this message has been tried (1 on first delivery).
pub const ATTEMPT: &str = "x-sluice-attempt";
/// Header carrying the last error of a dead-lettered message.
pub const LAST_ERROR: &str = "x-sluice-error";

/// A W3C trace context: the run's trace id, the span that published the message, and the
/// `tracestate` it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace the message belongs to (32 hex digits).
    pub trace_id: String,
    /// The span that published it (16 hex digits).
    pub span_id: String,
    /// The W3C `tracestate`, when one was set.
    pub state: Option<String>,
}

impl TraceContext {
    /// A new trace, as started for each run.
    pub fn new_trace() -> Self {
        TraceContext {
            trace_id: random_hex(16),
            span_id: random_hex(8),
            state: None,
        }
    }

    /// A context in the same trace with a new span id, for a message published from this one.
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id.clone(),
            span_id: random_hex(8),
            state: self.state.clone(),
        }
    }

    /// The `traceparent` header value.
    pub fn to_traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }

    /// Parses a `traceparent` value; `None` if it is not a valid version-00 context.
    pub fn parse(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.split('-').collect();
        let valid = |s: &str, len: usize| {
            s.len() == len
                && s.chars().all(|c| c.is_ascii_hexdigit())
                && s.chars().any(|c| c != '0')
        };
        match parts.as_slice() {
            ["00", trace, span, _flags] if valid(trace, 32) && valid(span, 16) => {
                Some(TraceContext {
                    trace_id: trace.to_string(),
                    span_id: span.to_string(),
                    state: None,
                })
            }
            _ => None,
        }
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Builds the header table for a message.
pub fn build(trace: &TraceContext, attempt: u32, last_error: Option<&str>) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        TRACEPARENT.into(),
        AMQPValue::LongString(LongString::from(trace.to_traceparent())),
    );
    if let Some(state) = &trace.state {
        headers.insert(
            TRACESTATE.into(),
            AMQPValue::LongString(LongString::from(state.clone())),
        );
    }
    headers.insert(ATTEMPT.into(), AMQPValue::LongLongInt(attempt as i64));
    headers.insert(
        PUBLISHED_AT.into(),
        AMQPValue::LongLongInt(chrono::Utc::now().timestamp_millis()),
    );
    if let Some(error) = last_error {
        headers.insert(
            LAST_ERROR.into(),
            AMQPValue::LongString(LongString::from(error.to_string())),
        );
    }
    headers
}

/// A text header's value.
fn text_of<'a>(headers: Option<&'a FieldTable>, name: &str) -> Option<&'a str> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Reads the trace context from headers, starting a new trace when there is none.
pub fn trace_of(headers: Option<&FieldTable>) -> TraceContext {
    match text_of(headers, TRACEPARENT).and_then(TraceContext::parse) {
        Some(mut trace) => {
            trace.state = text_of(headers, TRACESTATE)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            trace
        }
        None => TraceContext::new_trace(),
    }
}

/// How long ago the message was published, when it says.
pub fn waited(headers: Option<&FieldTable>) -> Option<std::time::Duration> {
    let published = match headers?.inner().get(PUBLISHED_AT)? {
        AMQPValue::LongLongInt(ms) => *ms,
        _ => return None,
    };
    let ms = chrono::Utc::now()
        .timestamp_millis()
        .saturating_sub(published);
    Some(std::time::Duration::from_millis(ms.max(0) as u64))
}

/// Reads the attempt counter from headers (1 when absent).
pub fn attempt_of(headers: Option<&FieldTable>) -> u32 {
    let value = headers.and_then(|h| h.inner().get(ATTEMPT));
    let attempt = match value {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => *n as i64,
        Some(AMQPValue::LongUInt(n)) => *n as i64,
        Some(AMQPValue::ShortInt(n)) => *n as i64,
        _ => 1,
    };
    attempt.clamp(1, u32::MAX as i64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_share_the_trace() {
        let trace = TraceContext::new_trace();
        let parsed = TraceContext::parse(&trace.to_traceparent()).unwrap();
        assert_eq!(parsed, trace);
        let child = trace.child();
        assert_eq!(child.trace_id, trace.trace_id);
        assert_ne!(child.span_id, trace.span_id);
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        assert!(TraceContext::parse("00-abc-def-01").is_none());
        assert!(
            TraceContext::parse(&format!("00-{}-{}-01", "0".repeat(32), "1".repeat(16))).is_none()
        );
    }

    #[test]
    fn headers_carry_trace_and_attempt() {
        let trace = TraceContext::new_trace();
        let headers = build(&trace, 3, None);
        assert_eq!(trace_of(Some(&headers)), trace);
        assert_eq!(attempt_of(Some(&headers)), 3);
        assert_eq!(attempt_of(None), 1);
        assert!(waited(Some(&headers)).unwrap() < std::time::Duration::from_secs(60));
    }

    #[test]
    fn trace_state_travels_with_the_trace() {
        let mut trace = TraceContext::new_trace();
        trace.state = Some("vendor=abc,other=1".to_string());
        let read = trace_of(Some(&build(&trace.child(), 1, None)));
        assert_eq!(read.trace_id, trace.trace_id);
        assert_eq!(read.state.as_deref(), Some("vendor=abc,other=1"));
    }
}
