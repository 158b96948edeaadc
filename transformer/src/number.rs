//! Reading decimal text as a `number` property without coercion: a value is kept only when it
//! is finite and the double the store keeps is exactly the decimal the source holds, so a
//! 30-digit numeric or `NaN` is rejected instead of being rounded or dropped.

/// A decimal's canonical form: its sign, its significant digits without leading or trailing
/// zeros, and the power of ten of the digit after the last one (`None` for zero).
type Canonical = Option<(bool, String, i64)>;

/// The double `text` names exactly, or `None` when it is not a finite decimal or a double
/// cannot hold it without rounding.
pub fn exact(text: &str) -> Option<f64> {
    let text = text.trim();
    let value: f64 = text.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    // The shortest representation that reads back as the same double, in scientific form.
    let shortest = format!("{value:e}");
    (canonical(text)? == canonical(&shortest)?).then_some(value)
}

/// The canonical form of a decimal written as `[+-]digits[.digits][e[+-]digits]`, or `None`
/// when `text` is not one (words such as `inf` or `NaN` included).
fn canonical(text: &str) -> Option<Canonical> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !is_digits(whole) || !is_digits(fraction) {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Some(None);
    }
    let trimmed = significant.trim_end_matches('0');
    // The power of ten of the digit just past the last significant one.
    let scale = exponent - fraction.len() as i64 + (significant.len() - trimmed.len()) as i64;
    Some(Some((negative, trimmed.to_string(), scale)))
}

#[cfg(test)]
mod tests {
    use super::exact;

    #[test]
    fn decimals_a_double_holds_are_kept_whatever_their_spelling() {
        for (text, value) in [
            ("12.50", 12.5),
            ("0.1", 0.1),
            ("-3", -3.0),
            ("+7.000", 7.0),
            (" 1e3 ", 1000.0),
            ("2.5E-3", 0.0025),
            ("0", 0.0),
            ("-0.0", 0.0),
            ("9007199254740992", 9007199254740992.0),
            ("123456.789", 123456.789),
            (".5", 0.5),
        ] {
            assert_eq!(exact(text), Some(value), "{text}");
        }
    }

    #[test]
    fn non_finite_values_and_digits_a_double_would_round_are_refused() {
        for text in [
            "NaN",
            "nan",
            "Infinity",
            "-inf",
            "1e400",
            "123456789012345678901234567890",
            "9007199254740993",
            "0.1000000000000000055511151231257827",
            "1.2.3",
            "",
            "12abc",
            "0x10",
        ] {
            assert_eq!(exact(text), None, "{text}");
        }
    }
}
