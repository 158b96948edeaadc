//! Destinations in a spec: the engagement platforms (Braze, CleverTap, Klaviyo) an import
//! may deliver to instead of the built-in stores, and the checks an import naming one must
//! pass before anything is written.

use crate::{invalid, DataType, ImportDecl, SpecError};
use serde::Deserialize;
use sluice_proto::destination::DestinationKind;
use sluice_proto::ImportMode;
use std::collections::BTreeMap;

/// A destination as declared: credentials are sealed when stored and never printed.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationDecl {
    /// The name imports refer to it by.
    pub name: String,
    /// The platform.
    pub kind: DestinationKind,
    /// The API's base URL: the workspace's REST endpoint for Braze
    /// (`https://rest.iad-01.braze.com`), the region's for CleverTap
    /// (`https://in1.api.clevertap.com`), `https://a.klaviyo.com` for Klaviyo.
    pub url: String,
    /// The kind's credential fields (`api_key`; `account_id` and `passcode` for CleverTap).
    pub credentials: BTreeMap<String, String>,
    /// Requests per second shared by every loader; the vendor's documented rate by default.
    #[serde(default)]
    pub requests_per_second: Option<u32>,
}

impl DestinationDecl {
    /// The fleet-wide request rate: the declared one, else the vendor's default.
    pub fn rate(&self) -> u32 {
        self.requests_per_second
            .unwrap_or_else(|| self.kind.default_requests_per_second())
    }
}

impl std::fmt::Debug for DestinationDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationDecl")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("requests_per_second", &self.requests_per_second)
            .finish()
    }
}

/// Checks a declared destination: its URL, its kind's credential fields, its rate.
pub(crate) fn validate(field: &str, d: &DestinationDecl) -> Result<(), SpecError> {
    crate::check_object_name(&format!("{field}.name"), &d.name)?;
    let url = http_url(&d.url);
    if !url {
        return Err(invalid(
            format!("{field}.url"),
            format!(
                "{:?} is not an http(s) URL (the platform's API endpoint, e.g. https://rest.iad-01.braze.com)",
                d.url
            ),
        ));
    }
    let wanted = d.kind.credentials();
    for name in wanted {
        match d.credentials.get(*name) {
            Some(value) if !value.trim().is_empty() => {}
            _ => {
                return Err(invalid(
                    format!("{field}.credentials.{name}"),
                    format!("a {} destination needs it", d.kind),
                ))
            }
        }
    }
    if let Some(extra) = d.credentials.keys().find(|k| !wanted.contains(&k.as_str())) {
        return Err(invalid(
            format!("{field}.credentials.{extra}"),
            format!(
                "a {} destination takes {} only",
                d.kind,
                wanted.join(" and ")
            ),
        ));
    }
    if d.requests_per_second == Some(0) {
        return Err(invalid(
            format!("{field}.requests_per_second"),
            "must be at least 1",
        ));
    }
    Ok(())
}

/// Whether a URL is an absolute http(s) URL with a host, and nothing a request cannot carry.
fn http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !url.contains(char::is_whitespace) && !url.contains('?')
        }
        None => false,
    }
}

/// Checks an import that delivers to a destination of `kind`: the platform must be able to
/// name its users and take its mode, and what only the built-in stores can do is refused.
pub fn check_import(
    field: &str,
    import: &ImportDecl,
    kind: DestinationKind,
) -> Result<(), SpecError> {
    let at = |f: &str| format!("{field}.{f}");
    if import.mode == ImportMode::UpdateOnly && !kind.takes_update_only() {
        return Err(invalid(
            at("mode"),
            format!("{kind} cannot update only the users it already has; use upsert, or a braze destination"),
        ));
    }
    let takes = kind.identities();
    if !takes.iter().any(|k| import.identity.has(*k)) {
        let names: Vec<&str> = takes.iter().map(|k| k.as_str()).collect();
        return Err(invalid(
            at("identity"),
            format!(
                "{kind} names users by {}; map at least one of them",
                names.join(", ")
            ),
        ));
    }
    if import.removals.is_some() {
        return Err(invalid(
            at("removals"),
            "an import to a destination cannot mirror its source; remove `removals`",
        ));
    }
    if import.subscriptions.is_some() {
        return Err(invalid(
            at("subscriptions"),
            "consent is kept by the built-in stores only; remove `subscriptions` or the destination",
        ));
    }
    if import.data_type == DataType::UserDeletes && !import.allow_deletes {
        return Err(invalid(at("allow_deletes"), "must be true"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(yaml: &str) -> DestinationDecl {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn a_destination_needs_its_kinds_credentials_and_no_others() {
        let ok = decl("{name: b, kind: braze, url: 'https://rest.iad-01.braze.com', credentials: {api_key: k}}");
        assert!(validate("destinations[0]", &ok).is_ok());
        assert_eq!(ok.rate(), 1_000);
        let missing = decl(
            "{name: c, kind: clevertap, url: 'https://in1.api.clevertap.com', credentials: {account_id: a}}",
        );
        let e = validate("destinations[0]", &missing).unwrap_err();
        assert_eq!(e.field, "destinations[0].credentials.passcode");
        let extra = decl("{name: k, kind: klaviyo, url: 'https://a.klaviyo.com', credentials: {api_key: k, password: p}}");
        let e = validate("destinations[0]", &extra).unwrap_err();
        assert_eq!(e.field, "destinations[0].credentials.password");
        let url = decl("{name: k, kind: klaviyo, url: 'a.klaviyo.com', credentials: {api_key: k}}");
        assert_eq!(
            validate("destinations[0]", &url).unwrap_err().field,
            "destinations[0].url"
        );
        assert!(serde_norway::from_str::<DestinationDecl>(
            "{name: s, kind: segment, url: 'https://x', credentials: {}}"
        )
        .is_err());
    }

    #[test]
    fn the_destination_must_name_users_its_way_and_take_the_mode() {
        let import = |extra: &str| -> ImportDecl {
            serde_norway::from_str(&format!(
                "{{name: i, connection: c, source: {{table: t}}, data_type: profiles, key: id, watermark: at, {extra}}}"
            ))
            .unwrap()
        };
        let by_profile_id = import("identity: {profile_id: pid}");
        let e = check_import("imports[0]", &by_profile_id, DestinationKind::Klaviyo).unwrap_err();
        assert_eq!(e.field, "imports[0].identity");
        assert!(e.reason.contains("external_id, email, phone"), "{e}");
        let update_only = import("identity: {email: e}, mode: update_only");
        let e = check_import("imports[0]", &update_only, DestinationKind::Clevertap).unwrap_err();
        assert_eq!(e.field, "imports[0].mode");
        assert!(check_import("imports[0]", &update_only, DestinationKind::Braze).is_ok());
    }
}
