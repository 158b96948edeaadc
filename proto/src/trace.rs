//! Links each process's spans into the run's one trace: the span handling a consumed message
//! takes the message's `traceparent` as its parent, and a message published from a span
//! carries that span's context. With no OpenTelemetry layer installed nothing is exported, and
//! the trace id is still carried from message to message.

use crate::headers::TraceContext;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use std::str::FromStr;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes the publisher's span, named by `remote`, the parent of `span`; call it before the
/// span is first entered.
pub fn adopt(span: &tracing::Span, remote: &TraceContext) {
    let (Ok(trace_id), Ok(span_id)) = (
        TraceId::from_hex(&remote.trace_id),
        SpanId::from_hex(&remote.span_id),
    ) else {
        return;
    };
    let state = remote
        .state
        .as_deref()
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    let parent = SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, true, state);
    // Without the layer (telemetry off) there is nothing to link.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

/// The context a message published from `span` carries: the span's own ids when it is
/// traced, otherwise a new span id in `inherited`'s trace. Records both ids on the span, so
/// log lines show them.
pub fn own(span: &tracing::Span, inherited: &TraceContext) -> TraceContext {
    let context = span.context();
    let traced = context.span().span_context().clone();
    let own = if traced.is_valid() {
        TraceContext {
            trace_id: traced.trace_id().to_string(),
            span_id: traced.span_id().to_string(),
            state: inherited.state.clone(),
        }
    } else {
        inherited.child()
    };
    span.record("trace_id", own.trace_id.as_str());
    span.record("span_id", own.span_id.as_str());
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_layer_the_trace_id_is_kept_and_the_span_id_is_new() {
        let inherited = TraceContext::new_trace();
        let span = tracing::info_span!(
            "stage",
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty
        );
        adopt(&span, &inherited);
        let own = own(&span, &inherited);
        assert_eq!(own.trace_id, inherited.trace_id);
        assert_ne!(own.span_id, inherited.span_id);
    }
}
