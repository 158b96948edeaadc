//! Payload expansion: a PAYLOAD column's JSON object becomes properties, without the keys the
//! mapping declares itself, checked for reserved names and the property budget. Pure, so the
//! transformer's functions and the fuzz target call the same code.

use crate::mapping::{property_name_problem, MAX_PROPERTIES};
use crate::Reason;
use serde_json::{Map, Value};

/// A payload's properties: its object without the keys the mapping declares.
pub fn object(text: &str, declared: &[String]) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut map)) => {
            map.retain(|k, _| !declared.iter().any(|d| d == k));
            Ok(map)
        }
        Ok(_) => Err("the payload is not a JSON object".to_string()),
        Err(e) => Err(format!("the payload is not valid JSON: {e}")),
    }
}

/// Expands a payload into properties, or says why the row cannot use it: not a JSON object,
/// a reserved or malformed key, or more keys than `budget` (the properties the mapping leaves
/// room for under [`MAX_PROPERTIES`]).
pub fn expand(
    text: &str,
    declared: &[String],
    budget: usize,
) -> Result<Map<String, Value>, (Reason, String)> {
    let map = object(text, declared).map_err(|message| (Reason::InvalidPayload, message))?;
    if let Some(message) = map.keys().find_map(|k| property_name_problem(k)) {
        return Err((Reason::ReservedProperty, message));
    }
    if map.len() > budget {
        return Err((
            Reason::TooManyProperties,
            format!(
                "the row has {} properties; at most {MAX_PROPERTIES} are allowed",
                map.len() + MAX_PROPERTIES.saturating_sub(budget)
            ),
        ));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_keys_are_dropped_and_the_rest_become_properties() {
        let declared = vec!["plan".to_string()];
        let map = expand(r#"{"plan":"x","tier":2,"tags":["a"]}"#, &declared, 10).unwrap();
        assert_eq!(
            serde_json::Value::Object(map),
            serde_json::json!({"tier": 2, "tags": ["a"]})
        );
    }

    #[test]
    fn problems_carry_their_reason() {
        let reason = |text: &str, budget| expand(text, &[], budget).unwrap_err().0;
        assert_eq!(reason("[1]", 10), Reason::InvalidPayload);
        assert_eq!(reason("{", 10), Reason::InvalidPayload);
        assert_eq!(reason(r#"{"identity":"x"}"#, 10), Reason::ReservedProperty);
        let (why, message) = expand(r#"{"a":1,"b":2}"#, &[], 1).unwrap_err();
        assert_eq!(why, Reason::TooManyProperties);
        assert!(message.contains("251 properties"), "{message}");
    }
}
