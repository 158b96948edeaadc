//! Checks a profiles import's `subscriptions` block: the channels are a fixed list, every
//! status column and group is named, `values` map onto the three statuses, and the consent
//! time's format and timezone read.

use crate::{check_name, invalid, DataType, ImportDecl, SpecError};
use sluice_proto::dateformat::{parse_timezone, DateFormat};

/// At most this many groups in one import.
const MAX_GROUPS: usize = 100;

/// Checks `import.subscriptions` at `field` (`imports[0]`).
pub(crate) fn validate(field: &str, import: &ImportDecl) -> Result<(), SpecError> {
    let Some(subscriptions) = &import.subscriptions else {
        return Ok(());
    };
    let sfield = format!("{field}.subscriptions");
    if import.data_type != DataType::Profiles {
        return Err(invalid(
            sfield,
            format!(
                "{} imports do not take subscriptions: consent is set by a profiles import",
                import.data_type.as_str()
            ),
        ));
    }
    let topics = subscriptions.topics();
    if topics.is_empty() {
        return Err(invalid(
            sfield,
            "names no channel (email, sms, whatsapp, push) and no group",
        ));
    }
    if subscriptions.groups.len() > MAX_GROUPS {
        return Err(invalid(
            format!("{sfield}.groups"),
            format!("at most {MAX_GROUPS} groups in one import"),
        ));
    }
    for name in subscriptions.groups.keys() {
        let fits = (1..=100).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !fits {
            return Err(invalid(
                format!("{sfield}.groups.{name}"),
                "a group name is 1 to 100 letters, digits, '_', '-' or '.'",
            ));
        }
    }
    for (topic, status) in topics {
        let tfield = match &topic {
            sluice_proto::subscription::Topic::Channel(c) => format!("{sfield}.{}", c.as_str()),
            sluice_proto::subscription::Topic::Group(g) => format!("{sfield}.groups.{g}"),
        };
        check_name(&format!("{tfield}.column"), &status.column)?;
        if status.values.keys().any(|v| v.is_empty()) {
            return Err(invalid(
                format!("{tfield}.values"),
                "an empty source value cannot stand for a status; leave it out and such rows are rejected",
            ));
        }
    }
    if let Some(time) = &subscriptions.consented_at {
        check_name(&format!("{sfield}.consented_at.column"), &time.column)?;
        DateFormat::parse(time.format.as_deref())
            .map_err(|e| invalid(format!("{sfield}.consented_at.format"), e))?;
        parse_timezone(time.timezone.as_deref())
            .map_err(|e| invalid(format!("{sfield}.consented_at.timezone"), e))?;
    }
    Ok(())
}
