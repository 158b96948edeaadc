//! The checks each fuzz target runs on one input. They live here, not in the targets, so the
//! corpus replay test (`tests/corpus.rs`) runs exactly what the fuzzer runs: every seed and
//! every input that once failed stays a regression test in the ordinary suite.
//!
//! A check panics when the code under test breaks a promise: a panic inside it, or a result
//! that contradicts what it accepted.
// Outside tests a failure is an error with its cause, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sluice_proto::dateformat::DateFormat;
use sluice_proto::mapping::property_name_problem;

/// The spec parser: any text is either a spec that validates, or an error naming a field and
/// a reason; never a panic. Connection URLs are taken as they are: their checks belong to the
/// connectors, which this crate does not build.
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match sluice_spec::parse_with(text, |_| None, sluice_spec::any_connection) {
        Ok(spec) => assert_eq!(
            sluice_spec::validate(&spec, sluice_spec::any_connection),
            Ok(()),
            "a parsed spec fails its own validation"
        ),
        Err(e) => assert!(
            !e.field.is_empty() && !e.reason.is_empty(),
            "an error without a field or a reason: {e:?}"
        ),
    }
}

/// Date formats: the input is a format, a newline, then a value. A format that parses never
/// panics on any value, and a date-time it reads is one it can be written back as: ISO-8601
/// output read again gives the same instant.
pub fn date_format(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (format, value) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(parsed) = DateFormat::parse(Some(format)) else {
        return;
    };
    for tz in [Tz::UTC, Tz::America__New_York, Tz::Asia__Kolkata] {
        if let Some(t) = parsed.parse_datetime(value, tz) {
            let written = t.to_rfc3339();
            let read: Option<DateTime<Utc>> = DateFormat::Iso8601.parse_datetime(&written, tz);
            assert_eq!(read, Some(t), "{written:?} read back differently");
        }
        let _ = parsed.parse_date(value, tz);
    }
}

/// Payload expansion: the input is the declared keys (comma-separated), a newline, then the
/// payload. An expansion never holds a declared key, a reserved or malformed name, or more
/// properties than the budget; a refusal always has a message.
pub fn payload(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (declared, payload) = text.split_once('\n').unwrap_or(("", text));
    let declared: Vec<String> = declared
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    let budget = 250usize.saturating_sub(declared.len());
    match sluice_proto::payload::expand(payload, &declared, budget) {
        Ok(map) => {
            assert!(
                map.len() <= budget,
                "{} properties over a budget of {budget}",
                map.len()
            );
            for key in map.keys() {
                assert!(!declared.contains(key), "declared key {key:?} kept");
                assert_eq!(
                    property_name_problem(key),
                    None,
                    "reserved key {key:?} kept"
                );
            }
        }
        Err((_, message)) => assert!(!message.is_empty(), "a refusal without a message"),
    }
}
