//! The engagement platforms' stand-in (`tests/destinations/platforms_stand_in.py`) as tests
//! read it: what it holds, and whether every 429 it answered was waited out.

use super::stand_in::StandIn;
use serde_json::Value;

/// The stand-in's script.
pub const SCRIPT: &str = "tests/destinations/platforms_stand_in.py";

/// Starts the stand-in with `args`.
pub fn start(args: &[&str]) -> StandIn {
    StandIn::start(SCRIPT, args)
}

/// What the stand-in holds: requests, the largest batch, users, events, deletes, 429 gaps.
pub async fn held(port: u16) -> Value {
    reqwest::get(format!("http://127.0.0.1:{port}/_stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The stand-in throttled and failed requests, and every 429 was followed by a wait at least
/// as long as its Retry-After asked.
pub fn assert_waits_honoured(held: &Value) {
    assert!(
        held["throttled"].as_u64().unwrap() > 0,
        "the stand-in throttled"
    );
    assert!(
        held["failed"].as_u64().unwrap() > 0,
        "the stand-in failed requests"
    );
    for gap in held["gaps"].as_array().unwrap() {
        assert!(
            gap["waited"].as_f64().unwrap() >= gap["asked"].as_f64().unwrap(),
            "a 429's Retry-After was honoured: {gap}"
        );
    }
}
