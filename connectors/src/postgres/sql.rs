//! SQL text for the PostgreSQL source: identifier quoting (the one place user identifiers
//! enter SQL) and the keyset predicates over `(watermark, key)`.

use crate::source::{KeyKind, SourceShape};
use sluice_proto::SourceRelation;

/// Quotes an identifier, doubling embedded quotes; a dotted name (`schema.table`) is quoted
/// part by part.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A qualified name such as `public.users`, quoted part by part.
pub fn quote_qualified(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// The FROM item for a source: a quoted table, or the query as a subquery.
pub fn relation(relation: &SourceRelation) -> String {
    match relation {
        SourceRelation::Table(table) => quote_qualified(table),
        SourceRelation::Query(query) => {
            format!("({}) AS sluice_source", query.trim().trim_end_matches(';'))
        }
    }
}

/// What a row needs to lie in any range: a key, and (on PostgreSQL, whose timestamps can be
/// infinite) a finite watermark. A row comparison on `(watermark, key)` alone lets a NULL key
/// through wherever the watermark decides, and `-infinity` sorts before every bound.
pub fn readable(shape: &SourceShape, infinite_timestamps: bool) -> String {
    let key = quote_ident(&shape.spec.key_column);
    match infinite_timestamps {
        true => format!(
            "{key} IS NOT NULL AND {} > '-infinity'::{}",
            quote_ident(&shape.spec.watermark_column),
            shape.watermark_type
        ),
        false => format!("{key} IS NOT NULL"),
    }
}

/// Rows without a usable watermark: NULL, or infinite where timestamps can be.
pub fn without_watermark(shape: &SourceShape, infinite_timestamps: bool) -> String {
    let wm = quote_ident(&shape.spec.watermark_column);
    match infinite_timestamps {
        true => format!(
            "{wm} IS NULL OR {wm} IN ('infinity'::{t}, '-infinity'::{t})",
            t = shape.watermark_type
        ),
        false => format!("{wm} IS NULL"),
    }
}

/// The `(watermark, key)` row expression.
pub fn keyset(shape: &SourceShape) -> String {
    format!(
        "({}, {})",
        quote_ident(&shape.spec.watermark_column),
        quote_ident(&shape.spec.key_column)
    )
}

/// A bound as parameters `$n` (watermark, bound as timestamptz) and `$n+1` (key), cast to the
/// columns' own types so the comparison can use the source's index.
pub fn bound_params(shape: &SourceShape, first: usize) -> String {
    let key = match &shape.key {
        KeyKind::Int => format!("${}::int8", first + 1),
        KeyKind::Text { type_name } => format!("${}::text::{}", first + 1, type_name),
    };
    format!("(${first}::timestamptz::{}, {key})", shape.watermark_type)
}

/// The key as selected for a bound: `int8` or text.
pub fn key_select(shape: &SourceShape) -> String {
    match shape.key {
        KeyKind::Int => format!("{}::int8", quote_ident(&shape.spec.key_column)),
        KeyKind::Text { .. } => format!("{}::text", quote_ident(&shape.spec.key_column)),
    }
}

/// The watermark as selected for a bound: always `timestamptz` (UTC session).
pub fn watermark_select(shape: &SourceShape) -> String {
    format!("{}::timestamptz", quote_ident(&shape.spec.watermark_column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_escaped() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_qualified("public.users"), "\"public\".\"users\"");
        assert_eq!(
            relation(&SourceRelation::Query("SELECT 1;".into())),
            "(SELECT 1) AS sluice_source"
        );
    }
}
