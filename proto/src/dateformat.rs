//! Date formats as users write them (`dd/MM/yyyy HH:mm:ss`, `yyyy-MM-dd`, `epoch_seconds`,
//! `epoch_millis`, `iso8601`) and the parsing of values in them. Shared so the coordinator can
//! refuse a bad format at apply time and the transformer parses exactly what was accepted.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A parsed date format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateFormat {
    /// ISO-8601 / RFC 3339, with or without offset, with or without time.
    Iso8601,
    /// Seconds since 1970-01-01T00:00:00Z.
    EpochSeconds,
    /// Milliseconds since 1970-01-01T00:00:00Z.
    EpochMillis,
    /// A pattern, converted to chrono's `strftime` syntax.
    Pattern {
        /// The pattern in chrono's syntax.
        chrono: String,
        /// Whether the pattern has a time of day (else a date).
        has_time: bool,
        /// Whether the pattern has an offset (else the mapping's timezone applies).
        has_offset: bool,
    },
}

impl DateFormat {
    /// Reads a format as written in a spec; ISO-8601 when absent.
    pub fn parse(spec: Option<&str>) -> Result<Self, String> {
        let Some(spec) = spec.map(str::trim) else {
            return Ok(DateFormat::Iso8601);
        };
        match spec.to_ascii_lowercase().as_str() {
            "iso8601" | "iso-8601" | "iso" => return Ok(DateFormat::Iso8601),
            "epoch_seconds" | "epoch" => return Ok(DateFormat::EpochSeconds),
            "epoch_millis" => return Ok(DateFormat::EpochMillis),
            "" => return Err("the date format is empty".to_string()),
            _ => {}
        }
        pattern_to_chrono(spec)
    }

    /// Parses a date-time; zone-less values are read in `tz`. A leap second (`:60`) is read
    /// as the first instant of the next minute, as PostgreSQL reads it.
    pub fn parse_datetime(&self, value: &str, tz: Tz) -> Option<DateTime<Utc>> {
        self.parse_instant(value, tz).and_then(without_leap_second)
    }

    fn parse_instant(&self, value: &str, tz: Tz) -> Option<DateTime<Utc>> {
        let value = value.trim();
        match self {
            DateFormat::EpochSeconds => epoch(value, 1_000_000),
            DateFormat::EpochMillis => epoch(value, 1_000),
            DateFormat::Iso8601 => {
                if let Ok(t) = DateTime::parse_from_rfc3339(value) {
                    return Some(t.with_timezone(&Utc));
                }
                for pattern in [
                    "%Y-%m-%dT%H:%M:%S%.f",
                    "%Y-%m-%d %H:%M:%S%.f",
                    "%Y-%m-%dT%H:%M",
                ] {
                    if let Ok(t) = NaiveDateTime::parse_from_str(value, pattern) {
                        return local(t, tz);
                    }
                }
                for pattern in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
                    if let Ok(t) = DateTime::parse_from_str(value, pattern) {
                        return Some(t.with_timezone(&Utc));
                    }
                }
                let date = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
                local(date_only(date)?, tz)
            }
            DateFormat::Pattern {
                chrono,
                has_time,
                has_offset,
            } => {
                if *has_offset {
                    DateTime::parse_from_str(value, chrono)
                        .ok()
                        .map(|t| t.with_timezone(&Utc))
                } else if *has_time {
                    local(NaiveDateTime::parse_from_str(value, chrono).ok()?, tz)
                } else {
                    let date = NaiveDate::parse_from_str(value, chrono).ok()?;
                    local(date_only(date)?, tz)
                }
            }
        }
    }

    /// Parses a calendar date (a value with a time keeps only its date, read in `tz`).
    pub fn parse_date(&self, value: &str, tz: Tz) -> Option<NaiveDate> {
        if let DateFormat::Pattern {
            chrono,
            has_time: false,
            has_offset: false,
        } = self
        {
            return NaiveDate::parse_from_str(value.trim(), chrono).ok();
        }
        if let DateFormat::Iso8601 = self {
            if let Ok(date) = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d") {
                return Some(date);
            }
        }
        self.parse_datetime(value, tz)
            .map(|t| t.with_timezone(&tz).date_naive())
    }
}

/// Moves a leap second (chrono keeps it as a nanosecond count of a second or more) to the
/// next second, so every instant read has one spelling.
fn without_leap_second(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let nanos = t.timestamp_subsec_nanos();
    if nanos < 1_000_000_000 {
        return Some(t);
    }
    DateTime::from_timestamp(t.timestamp().checked_add(1)?, nanos - 1_000_000_000)
}

/// A date-time given as a date alone is read as 00:00:01 that day (the time CleverTap uses),
/// so it stays distinguishable from an explicit midnight.
fn date_only(date: NaiveDate) -> Option<NaiveDateTime> {
    date.and_hms_opt(0, 0, 1)
}

/// Reads an IANA timezone name; UTC when absent.
pub fn parse_timezone(name: Option<&str>) -> Result<Tz, String> {
    match name {
        None => Ok(Tz::UTC),
        Some(name) => name.trim().parse::<Tz>().map_err(|_| {
            format!("{name:?} is not an IANA timezone name (for example Europe/Paris)")
        }),
    }
}

fn epoch(value: &str, micros_per_unit: i64) -> Option<DateTime<Utc>> {
    let units: f64 = value.parse().ok()?;
    if !units.is_finite() {
        return None;
    }
    let micros = units * micros_per_unit as f64;
    if micros.abs() > i64::MAX as f64 {
        return None;
    }
    DateTime::from_timestamp_micros(micros.round() as i64)
}

fn local(t: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&t)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// Converts a pattern such as `dd/MM/yyyy HH:mm:ss` to chrono's syntax.
fn pattern_to_chrono(spec: &str) -> Result<DateFormat, String> {
    let chars: Vec<char> = spec.chars().collect();
    let mut out = String::new();
    let (mut has_date, mut has_time, mut has_offset) = (false, false, false);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == '\'')
                .ok_or_else(|| format!("date format {spec:?} has an unclosed quote"))?;
            for &d in &chars[i + 1..i + 1 + end] {
                if d == '%' {
                    out.push_str("%%");
                } else {
                    out.push(d);
                }
            }
            i += end + 2;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        if !c.is_ascii_alphabetic() {
            for _ in 0..run {
                if c == '%' {
                    out.push_str("%%");
                } else {
                    out.push(c);
                }
            }
            i += run;
            continue;
        }
        let token = match (c, run) {
            ('y', 4) => {
                has_date = true;
                "%Y"
            }
            ('y', 2) => {
                has_date = true;
                "%y"
            }
            ('M', 2) | ('M', 1) => {
                has_date = true;
                "%m"
            }
            ('M', 3) => "%b",
            ('d', 2) | ('d', 1) => "%d",
            ('H', 2) | ('H', 1) => {
                has_time = true;
                "%H"
            }
            ('h', 2) | ('h', 1) => {
                has_time = true;
                "%I"
            }
            ('m', 2) | ('m', 1) => "%M",
            ('s', 2) | ('s', 1) => "%S",
            ('S', 3) => "%3f",
            ('S', 6) => "%6f",
            ('S', 9) => "%9f",
            ('a', 1) => "%p",
            ('X', 3) | ('Z', 1) | ('X', 2) | ('X', 1) => {
                has_offset = true;
                if c == 'X' && run == 3 {
                    "%:z"
                } else {
                    "%z"
                }
            }
            _ => {
                return Err(format!(
                    "date format {spec:?}: {:?} is not a supported pattern letter run \
                     (use yyyy, MM, dd, HH, hh, mm, ss, SSS, a, XXX, 'literal', or \
                     epoch_seconds, epoch_millis, iso8601)",
                    std::iter::repeat_n(c, run).collect::<String>()
                ))
            }
        };
        out.push_str(token);
        i += run;
    }
    if !has_date {
        return Err(format!("date format {spec:?} has no year or month"));
    }
    Ok(DateFormat::Pattern {
        chrono: out,
        has_time,
        has_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_leap_second_is_the_next_minute_in_any_zone() {
        let iso = DateFormat::Iso8601;
        assert_eq!(
            iso.parse_datetime("2016-12-31T23:59:60", Tz::UTC),
            Some(utc("2017-01-01T00:00:00Z"))
        );
        // Found by fuzzing: a zone whose old offset is not whole minutes kept the leap second
        // in a form that did not read back the same.
        let read = iso
            .parse_datetime("1012-03-01T0:00:60", Tz::America__New_York)
            .unwrap();
        assert_eq!(iso.parse_datetime(&read.to_rfc3339(), Tz::UTC), Some(read));
    }

    #[test]
    fn patterns_parse_in_the_given_timezone() {
        let f = DateFormat::parse(Some("dd/MM/yyyy HH:mm:ss")).unwrap();
        assert_eq!(
            f.parse_datetime("31/12/2024 23:59:58", Tz::UTC),
            Some(utc("2024-12-31T23:59:58Z"))
        );
        let paris = parse_timezone(Some("Europe/Paris")).unwrap();
        assert_eq!(
            f.parse_datetime("01/07/2024 12:00:00", paris),
            Some(utc("2024-07-01T10:00:00Z"))
        );
        assert_eq!(f.parse_datetime("2024-07-01", Tz::UTC), None);
    }

    #[test]
    fn dates_and_literals() {
        let f = DateFormat::parse(Some("yyyy-MM-dd")).unwrap();
        assert_eq!(
            f.parse_date("2024-02-29", Tz::UTC),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        assert_eq!(f.parse_date("2023-02-29", Tz::UTC), None);
        let t = DateFormat::parse(Some("yyyy-MM-dd'T'HH:mm:ss")).unwrap();
        assert_eq!(
            t.parse_datetime("2024-01-02T03:04:05", Tz::UTC),
            Some(utc("2024-01-02T03:04:05Z"))
        );
    }

    #[test]
    fn a_date_without_time_is_one_second_past_midnight() {
        let f = DateFormat::parse(Some("yyyy-MM-dd")).unwrap();
        assert_eq!(
            f.parse_datetime("2024-07-01", Tz::UTC),
            Some(utc("2024-07-01T00:00:01Z"))
        );
        assert_eq!(
            DateFormat::Iso8601.parse_datetime("2024-07-01", Tz::UTC),
            Some(utc("2024-07-01T00:00:01Z"))
        );
    }

    #[test]
    fn epochs_and_iso() {
        let s = DateFormat::parse(Some("epoch_seconds")).unwrap();
        assert_eq!(
            s.parse_datetime("1700000000", Tz::UTC),
            Some(utc("2023-11-14T22:13:20Z"))
        );
        let ms = DateFormat::parse(Some("epoch_millis")).unwrap();
        assert_eq!(
            ms.parse_datetime("1700000000123", Tz::UTC),
            Some(utc("2023-11-14T22:13:20.123Z"))
        );
        let iso = DateFormat::parse(None).unwrap();
        assert_eq!(
            iso.parse_datetime("2024-01-02T03:04:05+02:00", Tz::UTC),
            Some(utc("2024-01-02T01:04:05Z"))
        );
        assert_eq!(
            iso.parse_datetime("2024-01-02 03:04:05.5", Tz::UTC),
            Some(utc("2024-01-02T03:04:05.5Z"))
        );
        assert_eq!(iso.parse_datetime("nope", Tz::UTC), None);
    }

    #[test]
    fn bad_formats_and_zones_name_the_problem() {
        assert!(DateFormat::parse(Some("qq/MM/yyyy"))
            .unwrap_err()
            .contains("qq"));
        assert!(DateFormat::parse(Some("HH:mm"))
            .unwrap_err()
            .contains("no year"));
        assert!(parse_timezone(Some("Mars/Olympus"))
            .unwrap_err()
            .contains("Mars/Olympus"));
    }
}
