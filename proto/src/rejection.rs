//! Row-level rejections: the stable reason codes users filter and count by, and the record of
//! one rejected row that stages write to a chunk's rejection object for the coordinator.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Offending values in the error stream are cut to this many characters.
pub const MAX_VALUE_CHARS: usize = 256;

/// Why a row was rejected, as a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No identity column holds a value.
    MissingIdentity,
    /// An identity longer than the stores take.
    IdentityTooLong,
    /// `null`, `undefined`, `none`, `test`, empty or blank.
    ReservedIdentity,
    /// An identity that cannot be used as given (half an alias, a profile_id that is no number).
    InvalidIdentity,
    /// An email address that is not one.
    InvalidEmail,
    /// A phone number that is not one.
    InvalidPhone,
    /// A value that does not parse as its declared type or format.
    InvalidValue,
    /// The payload column is not a JSON object.
    InvalidPayload,
    /// The row's mapped values are over 1 MB.
    RowTooLarge,
    /// More than 250 properties in one row.
    TooManyProperties,
    /// A property name that belongs to the store.
    ReservedProperty,
    /// A value whose type differs from the one the workspace's schema registry holds.
    TypeConflict,
    /// An event without a name.
    MissingEventName,
    /// An event without a time (events are never stamped with the import's time).
    MissingEventTime,
    /// An event time that does not parse in the declared format.
    InvalidEventTime,
    /// An event older than the workspace's retention window.
    OutsideRetention,
    /// An event whose dedup key column is empty.
    MissingDedupKey,
    /// A purchase without a product id.
    InvalidProduct,
    /// A currency that is not an ISO-4217 code.
    InvalidCurrency,
    /// A price that is not a non-negative decimal.
    InvalidPrice,
    /// An items value that is not an array of valid items.
    InvalidItems,
    /// An event whose identity names no profile, with `unknown_identity: reject`.
    UnknownIdentity,
    /// A row whose unique identities name two different profiles. The row is still applied,
    /// to the profile its first identity in precedence names; this records the conflict.
    IdentityConflict,
    /// A source row without a watermark (NULL, or infinite), which no run's range can hold.
    MissingWatermark,
    /// A source row without a key, which no keyset can place.
    MissingKey,
    /// A subscription status column holds a value that reads as no status.
    InvalidSubscriptionStatus,
    /// A row subscribes a channel whose address (email, phone) neither it nor its profile
    /// has.
    MissingChannelAddress,
    /// The destination platform refused the record (its message says why), or the record
    /// names no user by an identifier the platform takes.
    DestinationRefused,
}

impl Reason {
    /// Every code, for documentation and tests.
    pub const ALL: [Reason; 28] = [
        Reason::MissingIdentity,
        Reason::IdentityTooLong,
        Reason::ReservedIdentity,
        Reason::InvalidIdentity,
        Reason::InvalidEmail,
        Reason::InvalidPhone,
        Reason::InvalidValue,
        Reason::InvalidPayload,
        Reason::RowTooLarge,
        Reason::TooManyProperties,
        Reason::ReservedProperty,
        Reason::TypeConflict,
        Reason::MissingEventName,
        Reason::MissingEventTime,
        Reason::InvalidEventTime,
        Reason::OutsideRetention,
        Reason::MissingDedupKey,
        Reason::InvalidProduct,
        Reason::InvalidCurrency,
        Reason::InvalidPrice,
        Reason::InvalidItems,
        Reason::UnknownIdentity,
        Reason::IdentityConflict,
        Reason::MissingWatermark,
        Reason::MissingKey,
        Reason::InvalidSubscriptionStatus,
        Reason::MissingChannelAddress,
        Reason::DestinationRefused,
    ];

    /// The code as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingIdentity => "missing_identity",
            Reason::IdentityTooLong => "identity_too_long",
            Reason::ReservedIdentity => "reserved_identity",
            Reason::InvalidIdentity => "invalid_identity",
            Reason::InvalidEmail => "invalid_email",
            Reason::InvalidPhone => "invalid_phone",
            Reason::InvalidValue => "invalid_value",
            Reason::InvalidPayload => "invalid_payload",
            Reason::RowTooLarge => "row_too_large",
            Reason::TooManyProperties => "too_many_properties",
            Reason::ReservedProperty => "reserved_property",
            Reason::TypeConflict => "type_conflict",
            Reason::MissingEventName => "missing_event_name",
            Reason::MissingEventTime => "missing_event_time",
            Reason::InvalidEventTime => "invalid_event_time",
            Reason::OutsideRetention => "outside_retention",
            Reason::MissingDedupKey => "missing_dedup_key",
            Reason::InvalidProduct => "invalid_product",
            Reason::InvalidCurrency => "invalid_currency",
            Reason::InvalidPrice => "invalid_price",
            Reason::InvalidItems => "invalid_items",
            Reason::UnknownIdentity => "unknown_identity",
            Reason::IdentityConflict => "identity_conflict",
            Reason::MissingWatermark => "missing_watermark",
            Reason::MissingKey => "missing_key",
            Reason::InvalidSubscriptionStatus => "invalid_subscription_status",
            Reason::MissingChannelAddress => "missing_channel_address",
            Reason::DestinationRefused => "destination_refused",
        }
    }

    /// Whether the cause can go away without the source row changing (a profile import
    /// creates the identity, an operator changes the schema registry, the profile gains the
    /// channel's address), so that reading the row again later may load it.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Reason::TypeConflict | Reason::UnknownIdentity | Reason::MissingChannelAddress
        )
    }

    /// The codes [`Reason::retryable`] holds for, as stored.
    pub fn retryable_codes() -> Vec<&'static str> {
        Reason::ALL
            .into_iter()
            .filter(|r| r.retryable())
            .map(Reason::as_str)
            .collect()
    }

    /// Reads a code as stored.
    pub fn parse(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == code)
    }
}

/// One rejected row: where it came from, what was wrong, and its mapped values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowRejection {
    /// The source row's key.
    pub row_key: String,
    /// The source column (or property) at fault.
    pub column: String,
    /// The offending value, cut to `MAX_VALUE_CHARS`.
    pub value: Option<String>,
    /// Why the row was rejected.
    pub reason: Reason,
    /// What was wrong, naming the column and value.
    pub message: String,
    /// The row's mapped columns as text, by column name.
    pub row: BTreeMap<String, Option<String>>,
}

/// Cuts a value to `MAX_VALUE_CHARS` characters.
pub fn truncate(value: &str) -> String {
    value.chars().take(MAX_VALUE_CHARS).collect()
}

/// A row's properties (a JSON object as text) as the error stream's row values, each cut to
/// `MAX_VALUE_CHARS`; anything but an object gives no values.
pub fn row_values(props: &str) -> BTreeMap<String, Option<String>> {
    object_values(serde_json::from_str(props).unwrap_or_default())
}

/// A row's properties as the error stream's row values, each cut to `MAX_VALUE_CHARS`.
pub fn object_values(
    props: serde_json::Map<String, serde_json::Value>,
) -> BTreeMap<String, Option<String>> {
    props
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, Some(truncate(&text)))
        })
        .collect()
}

/// Rejections encoded as JSON lines, the format of rejection objects.
pub fn to_json_lines(rows: &[RowRejection]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        serde_json::to_writer(&mut out, row).expect("rejections serialize");
        out.push(b'\n');
    }
    out
}

/// Reads a rejection object written by `to_json_lines`.
pub fn from_json_lines(bytes: &[u8]) -> Result<Vec<RowRejection>, serde_json::Error> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(serde_json::from_slice)
        .collect()
}

/// Counts rejections by reason code.
pub fn count_by_reason<'a>(reasons: impl IntoIterator<Item = &'a Reason>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for reason in reasons {
        *counts.entry(reason.as_str().to_string()).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_lines_decode() {
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        let row = RowRejection {
            row_key: "7".into(),
            column: "email".into(),
            value: Some(truncate(&"x".repeat(300))),
            reason: Reason::InvalidEmail,
            message: "bad".into(),
            row: BTreeMap::from([("email".to_string(), Some("x".to_string()))]),
        };
        assert_eq!(row.value.as_ref().unwrap().len(), 256);
        let back = from_json_lines(&to_json_lines(&[row.clone(), row.clone()])).unwrap();
        assert_eq!(back, vec![row.clone(), row]);
    }
}
