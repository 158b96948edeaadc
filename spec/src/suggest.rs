//! "Did you mean": the nearest valid name for a misspelt key, kind or column, so an error
//! names what to write instead of leaving the reader to compare lists.

/// `candidates` ordered closest to `word` first: by edit distance, then by shared prefix
/// (Jaro-Winkler similarity), then as given.
pub fn closest_first<'a>(word: &str, candidates: &[&'a str]) -> Vec<&'a str> {
    let lower = word.to_lowercase();
    let mut ranked: Vec<(usize, i64, usize, &str)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let c_lower = c.to_lowercase();
            let similarity = strsim::jaro_winkler(&lower, &c_lower);
            (
                strsim::damerau_levenshtein(&lower, &c_lower),
                -((similarity * 1e6) as i64),
                i,
                *c,
            )
        })
        .collect();
    ranked.sort();
    ranked.into_iter().map(|(_, _, _, c)| c).collect()
}

/// The candidate `word` is most likely a misspelling of: within two edits, or a third of its
/// length for long words; `None` when nothing is that close.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let allowed = (word.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), *c))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A deserializer's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"),
/// with the nearest expected name suggested; other messages unchanged.
pub fn unknown_name(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))
    else {
        return message.to_string();
    };
    let Some((word, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let Some(name) = nearest(word, &names) else {
        return message.to_string();
    };
    // The parser ends its message with the place: keep it last, after the suggestion.
    let (head, place) = match message.rfind(" at line ") {
        Some(at) => message.split_at(at),
        None => (message, ""),
    };
    let (unknown, expected) = head.split_once(", expected").unwrap_or((head, ""));
    let expected = match expected {
        "" => String::new(),
        list => format!(" (expected{list})"),
    };
    format!("{unknown}: did you mean `{name}`?{expected}{place}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_name_is_suggested() {
        let message =
            "unknown field `chunk_row`, expected one of `name`, `chunk_rows`, `settle_lag`";
        assert_eq!(
            unknown_name(message),
            "unknown field `chunk_row`: did you mean `chunk_rows`? (expected one of `name`, `chunk_rows`, `settle_lag`)"
        );
        let placed = format!("{message} at line 11 column 5");
        assert!(unknown_name(&placed).ends_with("`settle_lag`) at line 11 column 5"));
        let variant = "unknown variant `profile`, expected one of `profiles`, `events`";
        assert!(unknown_name(variant)
            .starts_with("unknown variant `profile`: did you mean `profiles`?"));
        let far = "unknown field `zzzzzz`, expected `name` or `url`";
        assert_eq!(unknown_name(far), far);
        assert_eq!(unknown_name("missing field `name`"), "missing field `name`");
    }

    #[test]
    fn columns_are_ordered_closest_first() {
        let columns = ["id", "email", "plan_name", "updated_at", "plan"];
        assert_eq!(closest_first("plann", &columns)[..2], ["plan", "plan_name"]);
        assert_eq!(nearest("emial", &columns), Some("email"));
        assert_eq!(nearest("zzzzzzzz", &columns), None);
    }
}
