//! Durations as written in specs: `500ms`, `5s`, `10m`, `1h`, `1d`.

use std::time::Duration;

/// Parses a duration such as `5s` or `10m`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (use ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number"))?;
    let per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ))
        }
    };
    let millis = n
        .checked_mul(per_unit)
        .ok_or_else(|| format!("{text:?} is too long a duration"))?;
    Ok(Duration::from_millis(millis))
}

/// A duration as people write it, in the largest unit that holds it exactly (`24h`, `90s`,
/// `1500ms`); `parse` reads it back.
pub fn text(d: Duration) -> String {
    let millis = d.as_millis();
    let unit = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ]
    .into_iter()
    .find(|(_, per)| millis > 0 && millis.is_multiple_of(*per));
    match unit {
        Some((unit, per)) => format!("{}{unit}", millis / per),
        None => format!("{millis}ms"),
    }
}

/// Serde support for `Duration` fields written as `5s`.
pub mod serde_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes a duration in its largest exact unit (`30d`, `1500ms`), which `parse` reads
    /// back.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::text(*d))
    }

    /// Reads a duration written like `30d`, `15m` or `1500ms`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde support for optional `Duration` fields written as `30d`.
pub mod serde_text_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes an optional duration as `serde_text` does.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serde_text::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads an optional duration written like `30d`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_is_written_in_its_largest_exact_unit() {
        for (d, written) in [(86_400, "1d"), (7_200, "2h"), (90, "90s"), (1800, "30m")] {
            assert_eq!(text(Duration::from_secs(d)), written);
            assert_eq!(parse(written).unwrap(), Duration::from_secs(d));
        }
        assert_eq!(text(Duration::from_millis(1500)), "1500ms");
        assert_eq!(text(Duration::ZERO), "0ms");
    }

    #[test]
    fn units() {
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse("5").unwrap_err().contains("no unit"));
        assert!(parse("5y").unwrap_err().contains("unknown unit"));
        // Found by fuzzing: a count that overflows in milliseconds is refused, not a panic.
        assert!(parse("36511111111111d").unwrap_err().contains("too long"));
    }
}
