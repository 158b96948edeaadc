//! How an import maps source columns to identities and typed properties; read by the
//! transformer (to normalise rows) and the loader (to write them).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Identities longer than this are rejected (the limit CleverTap documents).
pub const MAX_IDENTITY_LEN: usize = 1024;

/// Identity values that are never accepted, compared case-insensitively after trimming.
pub const RESERVED_IDENTITIES: &[&str] = &["null", "undefined", "none", "test"];

/// The mapping of one import: which column names the profile, and which columns become properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    pub identity: IdentityMapping,
    pub properties: BTreeMap<String, PropertyMapping>,
}

/// Which source column holds the profile's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityMapping {
    /// Column holding the platform's external id.
    pub external_id: String,
}

/// One property: the column it comes from and the type it is stored as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyMapping {
    pub column: String,
    #[serde(rename = "type")]
    pub kind: PropertyType,
    /// Date format for `date` and `datetime` (`yyyy-MM-dd`, `dd/MM/yyyy HH:mm:ss`,
    /// `epoch_seconds`, `epoch_millis`, `iso8601`); ISO-8601 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// IANA timezone of zone-less date-times; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// The types a property can be stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyType {
    String,
    Integer,
    Number,
    Boolean,
    Date,
    Datetime,
    Json,
}

impl PropertyType {
    /// The type's name as written in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyType::String => "string",
            PropertyType::Integer => "integer",
            PropertyType::Number => "number",
            PropertyType::Boolean => "boolean",
            PropertyType::Date => "date",
            PropertyType::Datetime => "datetime",
            PropertyType::Json => "json",
        }
    }
}

impl Mapping {
    /// The source columns the mapping reads (identity first, then properties), without repeats.
    pub fn columns(&self) -> Vec<String> {
        let mut columns = vec![self.identity.external_id.clone()];
        for property in self.properties.values() {
            if !columns.contains(&property.column) {
                columns.push(property.column.clone());
            }
        }
        columns
    }
}

/// Why an identity value cannot be used, or `None` when it can.
pub fn identity_problem(value: &str) -> Option<&'static str> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        Some("identity is empty")
    } else if trimmed.chars().count() > MAX_IDENTITY_LEN {
        Some("identity is longer than 1024 characters")
    } else if RESERVED_IDENTITIES
        .iter()
        .any(|reserved| trimmed.eq_ignore_ascii_case(reserved))
    {
        Some("identity is a reserved value")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_blank_and_long_identities_are_refused() {
        assert_eq!(identity_problem("  "), Some("identity is empty"));
        assert_eq!(
            identity_problem("NULL"),
            Some("identity is a reserved value")
        );
        assert_eq!(
            identity_problem(" undefined "),
            Some("identity is a reserved value")
        );
        assert!(identity_problem(&"x".repeat(1025)).is_some());
        assert_eq!(identity_problem(&"x".repeat(1024)), None);
        assert_eq!(identity_problem("user-1"), None);
    }

    #[test]
    fn columns_are_listed_once_identity_first() {
        let mapping: Mapping = serde_json::from_value(serde_json::json!({
            "identity": {"external_id": "ext"},
            "properties": {
                "a": {"column": "x", "type": "string"},
                "b": {"column": "x", "type": "integer"},
                "c": {"column": "ext", "type": "string"}
            }
        }))
        .unwrap();
        assert_eq!(mapping.columns(), vec!["ext".to_string(), "x".to_string()]);
    }
}
