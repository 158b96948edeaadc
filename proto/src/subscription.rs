//! Consent: the channels and groups a profile subscribes to, the statuses they hold, and how an
//! import reads a source column's values as statuses. Kept apart from properties because a
//! wrong "subscribed" is a legal problem: values are read exactly or the row is rejected.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The channels a profile can consent to: a fixed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email, to the profile's email address.
    Email,
    /// SMS, to the profile's phone.
    Sms,
    /// WhatsApp, to the profile's phone.
    Whatsapp,
    /// Push notifications to the profile's devices.
    Push,
}

impl Channel {
    /// Every channel, in a fixed order.
    pub const ALL: [Channel; 4] = [
        Channel::Email,
        Channel::Sms,
        Channel::Whatsapp,
        Channel::Push,
    ];

    /// The channel's name in specs and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Push => "push",
        }
    }

    /// The profile field a subscribe needs: email for email, phone for SMS and WhatsApp.
    pub fn address(self) -> Option<&'static str> {
        match self {
            Channel::Email => Some("email"),
            Channel::Sms | Channel::Whatsapp => Some("phone"),
            Channel::Push => None,
        }
    }
}

/// A consent status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The person agreed to receive messages.
    Subscribed,
    /// The person withdrew or refused consent.
    Unsubscribed,
    /// The person confirmed a double opt-in.
    OptedIn,
}

impl Status {
    /// Every status, in a fixed order.
    pub const ALL: [Status; 3] = [Status::Subscribed, Status::Unsubscribed, Status::OptedIn];

    /// The status as written in specs, rows and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Subscribed => "subscribed",
            Status::Unsubscribed => "unsubscribed",
            Status::OptedIn => "opted_in",
        }
    }

    /// The status a source value names by itself: one of the three words, in any case,
    /// without surrounding blanks. Nothing else is read as a status.
    pub fn parse(text: &str) -> Option<Status> {
        let text = text.trim();
        Status::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

/// The column holding one channel's or group's status, and how its values read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusColumn {
    /// The source column.
    pub column: String,
    /// Source values and the status each stands for; when given, only these values are
    /// accepted. Without it a boolean column reads true as subscribed and false as
    /// unsubscribed, and any other column must hold the status words themselves.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, Status>,
}

/// When the person gave or withdrew consent; each row's source time when not mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentTime {
    /// The column holding the time.
    pub column: String,
    /// Its date format, when it is text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The timezone of times written without an offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// A profiles import's `subscriptions` block: a status column per channel and per group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionMapping {
    /// The email channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<StatusColumn>,
    /// The SMS channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<StatusColumn>,
    /// The WhatsApp channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whatsapp: Option<StatusColumn>,
    /// The push channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<StatusColumn>,
    /// Named subscription groups (newsletters, SMS programs), created on first use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, StatusColumn>,
    /// When consent was given or withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consented_at: Option<ConsentTime>,
}

/// What a status belongs to: a channel or a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// One of the fixed channels.
    Channel(Channel),
    /// A workspace's named group.
    Group(String),
}

impl Topic {
    /// The topic as staged and reported: the channel's name, or `group:` and the group's.
    pub fn key(&self) -> String {
        match self {
            Topic::Channel(c) => c.as_str().to_string(),
            Topic::Group(g) => format!("{GROUP_PREFIX}{g}"),
        }
    }

    /// The topic a staged key names.
    pub fn from_key(key: &str) -> Option<Topic> {
        match key.strip_prefix(GROUP_PREFIX) {
            Some(group) => Some(Topic::Group(group.to_string())),
            None => Channel::ALL
                .into_iter()
                .find(|c| c.as_str() == key)
                .map(Topic::Channel),
        }
    }
}

/// Marks a group's key among the channels'.
pub const GROUP_PREFIX: &str = "group:";

impl SubscriptionMapping {
    /// Every mapped channel and group with its column, channels first.
    pub fn topics(&self) -> Vec<(Topic, &StatusColumn)> {
        let channels = [
            (Channel::Email, &self.email),
            (Channel::Sms, &self.sms),
            (Channel::Whatsapp, &self.whatsapp),
            (Channel::Push, &self.push),
        ];
        let mut topics: Vec<(Topic, &StatusColumn)> = channels
            .into_iter()
            .filter_map(|(c, s)| s.as_ref().map(|s| (Topic::Channel(c), s)))
            .collect();
        topics.extend(
            self.groups
                .iter()
                .map(|(g, s)| (Topic::Group(g.clone()), s)),
        );
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_three_words_read_as_statuses() {
        assert_eq!(Status::parse(" Subscribed "), Some(Status::Subscribed));
        assert_eq!(Status::parse("OPTED_IN"), Some(Status::OptedIn));
        for bad in ["maybe", "", "1", "yes", "true", "subscribe"] {
            assert_eq!(Status::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn topics_round_trip_through_their_keys() {
        for topic in [
            Topic::Channel(Channel::Whatsapp),
            Topic::Group("weekly_digest".into()),
        ] {
            assert_eq!(Topic::from_key(&topic.key()), Some(topic));
        }
        assert_eq!(Topic::from_key("fax"), None);
    }

    #[test]
    fn an_unknown_channel_is_refused_by_name() {
        let err = serde_json::from_value::<SubscriptionMapping>(
            serde_json::json!({"fax": {"column": "f"}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("fax"), "{err}");
    }
}
