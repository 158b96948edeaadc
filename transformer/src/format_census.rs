//! A dry run's date-format census: each date property's text values counted under its
//! declared pattern and under the same pattern with year, month and day in other orders, so
//! the run can say which pattern reads the values the declared one rejects.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Schema;
use sluice_proto::format_hint::{FormatCensus, FormatTally};
use sluice_proto::Mapping;
use std::collections::BTreeMap;

/// One property's census and where its text is in a classified batch.
pub(crate) struct Counted {
    property: String,
    column: usize,
    census: FormatCensus,
}

/// A census for every date property declared with a pattern, over batches of `schema`.
pub(crate) fn censuses(mapping: &Mapping, schema: &Schema) -> Vec<Counted> {
    mapping
        .properties
        .iter()
        .filter_map(|(name, property)| {
            let column = schema
                .index_of(&crate::mapping::raw(&property.column))
                .ok()?;
            let census = FormatCensus::of_property(property, mapping.timezone.as_deref())?;
            Some(Counted {
                property: name.clone(),
                column,
                census,
            })
        })
        .collect()
}

/// Counts a batch's values.
pub(crate) fn observe(censuses: &mut [Counted], batch: &RecordBatch) {
    for counted in censuses {
        let Some(texts) = batch.column(counted.column).as_string_opt::<i32>() else {
            continue;
        };
        for value in texts.iter().flatten() {
            counted.census.observe(value);
        }
    }
}

/// The counts, by property.
pub(crate) fn finish(censuses: Vec<Counted>) -> BTreeMap<String, FormatTally> {
    censuses
        .into_iter()
        .map(|c| (c.property, c.census.finish()))
        .collect()
}
