//! The engagement platforms an import may deliver to instead of the built-in stores: what each
//! kind takes (credentials, identifiers, modes, its documented request rate), and the route a
//! chunk carries so a loader can send it there.

use crate::mapping::IdentityKind;
use crate::secrets::Sealed;
use serde::{Deserialize, Serialize};

/// A platform Sluice can deliver to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// Braze's REST API.
    Braze,
    /// CleverTap's upload API.
    Clevertap,
    /// Klaviyo's JSON:API.
    Klaviyo,
}

impl DestinationKind {
    /// Every kind, for messages and documentation.
    pub const ALL: [DestinationKind; 3] = [
        DestinationKind::Braze,
        DestinationKind::Clevertap,
        DestinationKind::Klaviyo,
    ];

    /// The kind as specs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Braze => "braze",
            DestinationKind::Clevertap => "clevertap",
            DestinationKind::Klaviyo => "klaviyo",
        }
    }

    /// Reads a kind as written.
    pub fn parse(text: &str) -> Option<DestinationKind> {
        DestinationKind::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
    }

    /// The fields its `credentials` must hold, and nothing else.
    pub fn credentials(self) -> &'static [&'static str] {
        match self {
            DestinationKind::Braze | DestinationKind::Klaviyo => &["api_key"],
            DestinationKind::Clevertap => &["account_id", "passcode"],
        }
    }

    /// The identities it can name a user by, first in the order it tries them.
    pub fn identities(self) -> &'static [IdentityKind] {
        match self {
            DestinationKind::Braze => &[
                IdentityKind::ExternalId,
                IdentityKind::Alias,
                IdentityKind::Identity,
                IdentityKind::Email,
                IdentityKind::Phone,
            ],
            DestinationKind::Clevertap => &[
                IdentityKind::Identity,
                IdentityKind::ExternalId,
                IdentityKind::Email,
            ],
            DestinationKind::Klaviyo => &[
                IdentityKind::ExternalId,
                IdentityKind::Email,
                IdentityKind::Phone,
            ],
        }
    }

    /// Whether its API can update only the users it already has (`mode: update_only`).
    pub fn takes_update_only(self) -> bool {
        self == DestinationKind::Braze
    }

    /// Requests per second the vendor documents for a workspace's ingestion calls, shared by
    /// all of a destination's loaders unless the destination sets its own: Braze's
    /// `/users/track` takes 3,000 requests every 3 seconds, CleverTap's upload API about 30 a
    /// second, Klaviyo's bulk endpoints 150 a minute steady.
    pub fn default_requests_per_second(self) -> u32 {
        match self {
            DestinationKind::Braze => 1_000,
            DestinationKind::Clevertap => 30,
            DestinationKind::Klaviyo => 2,
        }
    }
}

impl std::fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A destination as a loader needs it to send a chunk there: its name (which keys its ledger
/// and its rate limiter), kind, URL, credentials sealed with the master key, and its
/// fleet-wide request rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationRoute {
    /// The destination's name in its workspace.
    pub name: String,
    /// Its platform.
    pub kind: DestinationKind,
    /// The API's base URL (`https://rest.iad-01.braze.com`).
    pub url: String,
    /// Its credentials, a JSON object of the kind's fields, sealed.
    pub credentials: Sealed,
    /// Requests per second, shared by every loader.
    pub requests_per_second: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_as_written_and_only_braze_updates_existing_users_only() {
        for kind in DestinationKind::ALL {
            assert_eq!(DestinationKind::parse(kind.as_str()), Some(kind));
            assert!(!kind.identities().contains(&IdentityKind::ProfileId));
        }
        assert_eq!(DestinationKind::parse("segment"), None);
        assert!(DestinationKind::Braze.takes_update_only());
        assert!(!DestinationKind::Klaviyo.takes_update_only());
    }
}
