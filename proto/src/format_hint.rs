//! Date-format advice for dry runs and previews: when a declared pattern rejects values that
//! the same pattern with its year, month and day in another order reads, every one of them,
//! the run says which pattern that is. A value the declared format reads is never read again
//! under another: the hint is advice, the declared format stays the rule.

use crate::dateformat::{parse_timezone, DateFormat};
use crate::{PropertyMapping, PropertyType};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The other orders of a pattern's year, month and day (`dd/MM/yyyy` gives `MM/dd/yyyy`,
/// `yyyy/MM/dd`, ...), everything else kept, and `iso8601`. Empty for a pattern without
/// exactly one year, one numeric month and one day, and for the named formats.
pub fn alternatives(declared: &str) -> Vec<String> {
    if !matches!(
        DateFormat::parse(Some(declared)),
        Ok(DateFormat::Pattern { .. })
    ) {
        return Vec::new();
    }
    let runs = runs(declared);
    let slots: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| is_date_part(r))
        .map(|(i, _)| i)
        .collect();
    let parts: Vec<&str> = slots.iter().map(|&i| runs[i].as_str()).collect();
    let mut letters: Vec<char> = parts.iter().filter_map(|p| p.chars().next()).collect();
    letters.sort_unstable();
    if letters != ['M', 'd', 'y'] {
        return Vec::new();
    }
    let mut out = Vec::new();
    for order in PERMUTATIONS {
        let mut candidate = runs.clone();
        for (slot, &from) in slots.iter().zip(order.iter()) {
            candidate[*slot] = parts[from].to_string();
        }
        let text: String = candidate.concat();
        if text != declared && DateFormat::parse(Some(&text)).is_ok() && !out.contains(&text) {
            out.push(text);
        }
    }
    out.push("iso8601".to_string());
    out
}

const PERMUTATIONS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

/// A year (`yyyy`, `yy`), a numeric month (`MM`, `M`) or a day (`dd`, `d`).
fn is_date_part(run: &str) -> bool {
    let first = run.chars().next().unwrap_or(' ');
    let len = run.chars().count();
    match first {
        'y' => len == 2 || len == 4,
        'M' | 'd' => len <= 2,
        _ => false,
    }
}

/// A pattern cut into runs of one letter, quoted literals and other characters.
fn runs(pattern: &str) -> Vec<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let len = if c == '\'' {
            chars[i + 1..]
                .iter()
                .position(|&d| d == '\'')
                .map_or(chars.len() - i, |end| end + 2)
        } else {
            chars[i..].iter().take_while(|&&d| d == c).count()
        };
        out.push(chars[i..i + len].iter().collect());
        i += len;
    }
    out
}

/// How one date property's values fared under its declared format and under each
/// alternative, over a chunk or a whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatTally {
    /// The source column.
    pub column: String,
    /// The declared format.
    pub declared: String,
    /// Non-empty values seen.
    pub values: u64,
    /// Values the declared format reads.
    pub fit: u64,
    /// Values each alternative reads.
    pub alternatives: BTreeMap<String, u64>,
}

/// Counts values for one property: its declared format and the alternatives, parsed as
/// dates or as date-times the way the transformer parses them.
pub struct FormatCensus {
    tally: FormatTally,
    declared: DateFormat,
    candidates: Vec<(String, DateFormat)>,
    date_only: bool,
    timezone: Tz,
}

impl FormatCensus {
    /// A census of `column` read in `declared`; `None` when the format has no alternatives.
    pub fn new(column: &str, declared: &str, date_only: bool, timezone: Tz) -> Option<Self> {
        let format = DateFormat::parse(Some(declared)).ok()?;
        let candidates: Vec<(String, DateFormat)> = alternatives(declared)
            .into_iter()
            .filter_map(|text| Some((text.clone(), DateFormat::parse(Some(&text)).ok()?)))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(FormatCensus {
            tally: FormatTally {
                column: column.to_string(),
                declared: declared.to_string(),
                ..FormatTally::default()
            },
            declared: format,
            candidates,
            date_only,
            timezone,
        })
    }

    /// A census of a date or datetime property declared with a pattern, read in its own
    /// timezone or else `default_timezone` (the mapping's); `None` for any other property.
    pub fn of_property(property: &PropertyMapping, default_timezone: Option<&str>) -> Option<Self> {
        let date_only = match property.kind {
            PropertyType::Date => true,
            PropertyType::Datetime => false,
            _ => return None,
        };
        let timezone = parse_timezone(property.timezone.as_deref().or(default_timezone)).ok()?;
        Self::new(
            &property.column,
            property.format.as_deref()?,
            date_only,
            timezone,
        )
    }

    fn reads(&self, format: &DateFormat, value: &str) -> bool {
        if self.date_only {
            format.parse_date(value, self.timezone).is_some()
        } else {
            format.parse_datetime(value, self.timezone).is_some()
        }
    }

    /// Counts one source value; NULLs and blanks are not values.
    pub fn observe(&mut self, value: &str) {
        if value.trim().is_empty() {
            return;
        }
        self.tally.values += 1;
        if self.reads(&self.declared, value) {
            self.tally.fit += 1;
        }
        for (text, format) in &self.candidates {
            if self.reads(format, value) {
                *self.tally.alternatives.entry(text.clone()).or_default() += 1;
            }
        }
    }

    /// What was counted.
    pub fn finish(self) -> FormatTally {
        self.tally
    }
}

impl FormatTally {
    /// Adds another chunk's counts of the same property.
    pub fn merge(&mut self, other: &FormatTally) {
        if self.column.is_empty() {
            self.column.clone_from(&other.column);
            self.declared.clone_from(&other.declared);
        }
        self.values += other.values;
        self.fit += other.fit;
        for (text, n) in &other.alternatives {
            *self.alternatives.entry(text.clone()).or_default() += n;
        }
    }

    /// The pattern that reads every value when the declared one does not, alternatives
    /// tried in the order they were made (the day and month swapped first).
    pub fn reads_all(&self) -> Option<&str> {
        if self.fit >= self.values || self.values == 0 {
            return None;
        }
        alternatives(&self.declared)
            .into_iter()
            .find(|text| self.alternatives.get(text) == Some(&self.values))
            .and_then(|text| {
                self.alternatives
                    .get_key_value(&text)
                    .map(|(k, _)| k.as_str())
            })
    }

    /// The advice, for `property`: "11,923 values of signup_date (properties.signup) do not
    /// fit MM/dd/yyyy; all 20,000 read as dd/MM/yyyy".
    pub fn hint(&self, property: &str) -> Option<FormatHint> {
        let reads_all = self.reads_all()?;
        Some(FormatHint {
            property: property.to_string(),
            column: self.column.clone(),
            declared: self.declared.clone(),
            misfit: self.values - self.fit,
            values: self.values,
            reads_all: reads_all.to_string(),
            message: format!(
                "{} values of column {} (property {property}) do not fit {}; all {} read as {reads_all}",
                thousands(self.values - self.fit),
                self.column,
                self.declared,
                thousands(self.values),
            ),
        })
    }
}

/// A date property whose declared format rejects values another pattern reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatHint {
    /// The property.
    pub property: String,
    /// Its source column.
    pub column: String,
    /// The declared format.
    pub declared: String,
    /// Values the declared format does not read.
    pub misfit: u64,
    /// Non-empty values seen.
    pub values: u64,
    /// The pattern that reads them all.
    pub reads_all: String,
    /// The advice, in a sentence.
    pub message: String,
}

/// `20000` as `20,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_reorder_the_year_month_and_day_only() {
        let alt = alternatives("MM/dd/yyyy");
        assert_eq!(alt[0], "MM/yyyy/dd");
        assert!(alt.contains(&"dd/MM/yyyy".to_string()));
        assert!(alt.contains(&"yyyy/MM/dd".to_string()));
        assert_eq!(alt.last().map(String::as_str), Some("iso8601"));
        assert!(!alt.contains(&"MM/dd/yyyy".to_string()));
        let timed = alternatives("dd.MM.yyyy 'at' HH:mm");
        assert!(timed.contains(&"MM.dd.yyyy 'at' HH:mm".to_string()));
        assert!(alternatives("iso8601").is_empty());
        assert!(alternatives("epoch_seconds").is_empty());
        assert!(alternatives("MMM yyyy").is_empty());
    }

    #[test]
    fn swapped_day_and_month_are_named_with_the_pattern_that_reads_every_value() {
        let mut census = FormatCensus::new("signup", "MM/dd/yyyy", true, Tz::UTC).unwrap();
        for value in ["13/01/2024", "25/12/2023", "05/06/2024", "", "01/02/2020"] {
            census.observe(value);
        }
        let mut tally = census.finish();
        assert_eq!((tally.values, tally.fit), (4, 2));
        tally.merge(&tally.clone());
        let hint = tally.hint("signed_up").unwrap();
        assert_eq!(hint.reads_all, "dd/MM/yyyy");
        assert_eq!(hint.misfit, 4);
        assert!(
            hint.message.contains("4 values of column signup (property signed_up) do not fit MM/dd/yyyy; all 8 read as dd/MM/yyyy"),
            "{}",
            hint.message
        );
    }

    #[test]
    fn no_hint_when_every_value_fits_or_no_pattern_reads_them_all() {
        let mut fits = FormatCensus::new("d", "dd/MM/yyyy", true, Tz::UTC).unwrap();
        fits.observe("01/02/2020");
        assert_eq!(fits.finish().hint("p"), None);
        let mut garbage = FormatCensus::new("d", "dd/MM/yyyy", true, Tz::UTC).unwrap();
        garbage.observe("13/13/2020");
        garbage.observe("soon");
        assert_eq!(garbage.finish().hint("p"), None);
    }

    #[test]
    fn a_year_in_the_wrong_place_is_found() {
        let mut census = FormatCensus::new("d", "yyyy-MM-dd", false, Tz::UTC).unwrap();
        census.observe("31-12-2024");
        census.observe("01-02-2024");
        let hint = census.finish().hint("p").unwrap();
        assert_eq!(hint.reads_all, "dd-MM-yyyy");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(11923), "11,923");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
