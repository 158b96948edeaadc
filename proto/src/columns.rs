//! Column names of the chunk objects stages hand each other: what the extractor writes and the
//! transformer reads, and the normalized rows the transformer writes and the loader reads.

/// Extracted chunk: the source row's key.
pub const SOURCE_KEY: &str = "__sluice_key";
/// Extracted chunk: the source row's watermark (always a UTC timestamp).
pub const SOURCE_WATERMARK: &str = "__sluice_watermark";

/// Extracted chunk, optional: the first value of the row its Arrow column cannot hold (an
/// infinite timestamp), as `column REASON_SEPARATOR value`; NULL when every value fits. The
/// transformer rejects such rows with `invalid_value`.
pub const SOURCE_UNREPRESENTABLE: &str = "__sluice_unrepresentable";

/// The source row's key, as text.
pub const KEY: &str = "__key";
/// The source row's watermark (UTC, microseconds).
pub const UPDATED_AT: &str = "__updated_at";
/// The row's payload: a JSON object of the properties it adds.
pub const PAYLOAD: &str = "__payload";
/// An event's name.
pub const EVENT_NAME: &str = "__event_name";
/// An event's time (UTC, microseconds).
pub const EVENT_TIME: &str = "__event_time";
/// An event's dedup key, when the import maps one.
pub const DEDUP_KEY: &str = "__dedup_key";
/// A purchase's product id.
pub const PRODUCT_ID: &str = "__product_id";
/// A purchase's ISO-4217 currency.
pub const CURRENCY: &str = "__currency";
/// A purchase's price, a canonical decimal as text.
pub const PRICE: &str = "__price";
/// A purchase's items, a JSON array as text.
pub const ITEMS: &str = "__items";
/// When the person gave or withdrew the row's consent (UTC, microseconds).
pub const CONSENTED_AT: &str = "__consented_at";
/// Source column a rejected row failed on.
pub const REJECT_COLUMN: &str = "__reject_column";
/// The failing value, truncated.
pub const REJECT_VALUE: &str = "__reject_value";
/// Why the row was rejected: its reason code, `REASON_SEPARATOR`, and the message.
pub const REJECT_REASON: &str = "__reject_reason";
/// Separates the code from the message in `REJECT_REASON`.
pub const REASON_SEPARATOR: char = '\u{1f}';

/// The column holding a normalized identity field.
pub fn identity(field: crate::mapping::IdentityField) -> String {
    format!("id:{}", field.as_str())
}

/// The column holding a property's normalized value.
pub fn property(name: &str) -> String {
    format!("prop:{name}")
}

/// The column holding a subscription topic's normalized status.
pub fn subscription(topic: &str) -> String {
    format!("sub:{topic}")
}
