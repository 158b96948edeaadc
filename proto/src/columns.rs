//! Column names of the chunk objects stages hand each other: what the extractor writes and the
//! transformer reads, and the normalized rows the transformer writes and the loader reads.

/// Extracted chunk: the source row's key.
pub const SOURCE_KEY: &str = "__sluice_key";
/// Extracted chunk: the source row's watermark (always a UTC timestamp).
pub const SOURCE_WATERMARK: &str = "__sluice_watermark";

/// The source row's key, as text.
pub const KEY: &str = "__key";
/// The source row's watermark (UTC, microseconds).
pub const UPDATED_AT: &str = "__updated_at";
/// The row's external id, trimmed.
pub const EXTERNAL_ID: &str = "__external_id";
/// Source column a rejected row failed on.
pub const REJECT_COLUMN: &str = "__reject_column";
/// The failing value, truncated.
pub const REJECT_VALUE: &str = "__reject_value";
/// Why the row was rejected.
pub const REJECT_REASON: &str = "__reject_reason";

/// Values in rejection reports are cut to this many characters.
pub const MAX_VALUE_CHARS: i64 = 200;

/// The column holding a property's normalized value.
pub fn property(name: &str) -> String {
    format!("prop:{name}")
}
