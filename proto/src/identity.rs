//! Normalising and checking identity values: trimming, lower-cased emails, E.164 phones and
//! the values no profile may be named by. The transformer applies it to every row; the rules
//! live here so every stage agrees on them.

use crate::mapping::IdentityField;
use crate::rejection::Reason;

/// Identities longer than this are rejected (the limit CleverTap documents).
pub const MAX_IDENTITY_LEN: usize = 1024;

/// Identity values that are never accepted, compared case-insensitively after trimming.
pub const RESERVED_IDENTITIES: &[&str] = &["null", "undefined", "none", "test"];

/// Normalises one identity value, or says why it cannot name a profile.
pub fn normalize(field: IdentityField, raw: &str) -> Result<String, (Reason, String)> {
    let name = field.as_str();
    let value = raw.trim();
    if value.is_empty() {
        return Err((
            Reason::ReservedIdentity,
            format!("{name} is empty or blank"),
        ));
    }
    if value.chars().count() > MAX_IDENTITY_LEN {
        return Err((
            Reason::IdentityTooLong,
            format!("{name} is longer than {MAX_IDENTITY_LEN} characters"),
        ));
    }
    if RESERVED_IDENTITIES
        .iter()
        .any(|reserved| value.eq_ignore_ascii_case(reserved))
    {
        return Err((
            Reason::ReservedIdentity,
            format!("{name} {value:?} is a reserved value"),
        ));
    }
    match field {
        IdentityField::Email => email(value),
        IdentityField::Phone => phone(value),
        IdentityField::ProfileId => match value.parse::<i64>() {
            Ok(id) if id > 0 => Ok(id.to_string()),
            _ => Err((
                Reason::InvalidIdentity,
                format!("profile_id {value:?} is not a positive integer"),
            )),
        },
        _ => Ok(value.to_string()),
    }
}

/// A lower-cased address with one `@`, a local part and a dotted domain of letters, digits
/// and hyphens.
fn email(value: &str) -> Result<String, (Reason, String)> {
    let invalid = || {
        Err((
            Reason::InvalidEmail,
            format!("email {value:?} is not a valid address"),
        ))
    };
    let lower = value.to_lowercase();
    let Some((local, domain)) = lower.split_once('@') else {
        return invalid();
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(char::is_alphabetic));
    if local_ok && domain_ok {
        Ok(lower)
    } else {
        invalid()
    }
}

/// E.164 after removing spaces, dots, dashes and parentheses, with `00` read as `+`:
/// a `+`, a non-zero digit, and 8 to 15 digits in all.
fn phone(value: &str) -> Result<String, (Reason, String)> {
    let compact: String = value
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')' | '\u{a0}'))
        .collect();
    let digits = compact
        .strip_prefix('+')
        .or_else(|| compact.strip_prefix("00"));
    match digits {
        Some(d)
            if (8..=15).contains(&d.len())
                && d.chars().all(|c| c.is_ascii_digit())
                && !d.starts_with('0') =>
        {
            Ok(format!("+{d}"))
        }
        _ => Err((
            Reason::InvalidPhone,
            format!("phone {value:?} is not an E.164 number (+ and country code, 8 to 15 digits)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(field: IdentityField, raw: &str) -> Option<Reason> {
        normalize(field, raw).err().map(|(r, _)| r)
    }

    #[test]
    fn reserved_blank_and_long_identities_are_refused() {
        let f = IdentityField::ExternalId;
        assert_eq!(reason(f, "  "), Some(Reason::ReservedIdentity));
        assert_eq!(reason(f, "NULL"), Some(Reason::ReservedIdentity));
        assert_eq!(reason(f, " undefined "), Some(Reason::ReservedIdentity));
        assert_eq!(reason(f, "Test"), Some(Reason::ReservedIdentity));
        assert_eq!(reason(f, &"x".repeat(1025)), Some(Reason::IdentityTooLong));
        assert_eq!(normalize(f, &"x".repeat(1024)).unwrap().len(), 1024);
        assert_eq!(normalize(f, " user-1 ").unwrap(), "user-1");
    }

    #[test]
    fn emails_are_lower_cased_and_checked() {
        let f = IdentityField::Email;
        assert_eq!(
            normalize(f, " Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        assert_eq!(
            normalize(f, "a.b+tag@mail.example.org").unwrap(),
            "a.b+tag@mail.example.org"
        );
        for bad in [
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@@x.com",
            "ada@-x.com",
            "ada@x.c0m",
        ] {
            assert_eq!(reason(f, bad), Some(Reason::InvalidEmail), "{bad}");
        }
    }

    #[test]
    fn phones_become_e164_or_are_refused() {
        let f = IdentityField::Phone;
        assert_eq!(normalize(f, "+1 (415) 555-0100").unwrap(), "+14155550100");
        assert_eq!(normalize(f, "0044 20 7946 0000").unwrap(), "+442079460000");
        for bad in [
            "4155550100",
            "+0123456789",
            "+1 415 CALL NOW",
            "+1234567",
            "+1234567890123456",
        ] {
            assert_eq!(reason(f, bad), Some(Reason::InvalidPhone), "{bad}");
        }
    }

    #[test]
    fn profile_ids_are_positive_integers() {
        let f = IdentityField::ProfileId;
        assert_eq!(normalize(f, " 42 ").unwrap(), "42");
        assert_eq!(reason(f, "abc"), Some(Reason::InvalidIdentity));
        assert_eq!(reason(f, "-3"), Some(Reason::InvalidIdentity));
    }
}
