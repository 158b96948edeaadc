//! A profile as people look it up: found by any identity (normalized as imports normalize
//! it), with its consent (the current status per channel and group, and the history of every
//! change), for the API, the CLI and the exports alike.

use serde::Serialize;
use sluice_proto::identity;
use sluice_proto::subscription::GROUP_PREFIX;
use sluice_proto::IdentityField;
use std::collections::BTreeMap;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// Why an identity kind cannot name a profile, or `None` when it can.
pub fn kind_problem(kind: &str) -> Option<String> {
    let known = matches!(
        kind,
        "identity" | "external_id" | "email" | "phone" | "profile_id"
    ) || kind
        .strip_prefix("alias:")
        .is_some_and(|label| !label.is_empty());
    (!known).then(|| {
        format!(
            "{kind:?} is not an identity kind: give identity, external_id, email, phone, alias:<label> or profile_id"
        )
    })
}

/// The profile of workspace `workspace_id` that identity `kind` = `value` names: by email or
/// phone, of the profiles sharing it the most recently updated one, as resolution chooses; a
/// value no import could hold names none.
pub async fn profile_id(
    client: &impl GenericClient,
    workspace_id: i64,
    kind: &str,
    value: &str,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let contact = |field, statement: &'static str| (field, statement);
    let (field, statement) = match kind {
        "profile_id" => {
            let Ok(id) = value.parse::<i64>() else {
                return Ok(None);
            };
            return Ok(client
                .query_opt(
                    "SELECT profile_id FROM profile_store.profiles
                      WHERE workspace_id = $1 AND profile_id = $2",
                    &[&workspace_id, &id],
                )
                .await?
                .map(|r| r.get(0)));
        }
        "email" => contact(
            IdentityField::Email,
            "SELECT profile_id FROM profile_store.profiles WHERE email = $2 AND workspace_id + 0 = $1
              ORDER BY updated_at DESC, profile_id DESC LIMIT 1",
        ),
        "phone" => contact(
            IdentityField::Phone,
            "SELECT profile_id FROM profile_store.profiles WHERE phone = $2 AND workspace_id + 0 = $1
              ORDER BY updated_at DESC, profile_id DESC LIMIT 1",
        ),
        _ => {
            return Ok(client
                .query_opt(
                    "SELECT profile_id FROM profile_store.identities
                      WHERE workspace_id = $1 AND kind = $2 AND value = $3",
                    &[&workspace_id, &kind, &value],
                )
                .await?
                .map(|r| r.get(0)))
        }
    };
    let Ok(value) = identity::normalize(field, value) else {
        return Ok(None);
    };
    Ok(client
        .query_opt(statement, &[&workspace_id, &value])
        .await?
        .map(|r| r.get(0)))
}

/// A status a profile holds for one channel or group.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SubscriptionStatus {
    /// `subscribed`, `unsubscribed` or `opted_in`.
    pub status: String,
    /// When the person gave or withdrew it (the source's consent time, else its row's time).
    pub changed_at: chrono::DateTime<chrono::Utc>,
    /// The import that set it.
    pub import_id: i64,
}

/// One change of a status, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SubscriptionChange {
    /// The channel, or `group:` and the group's name.
    pub topic: String,
    /// The status before; none for the first.
    pub from: Option<String>,
    /// The status after; none when the profile was deleted.
    pub to: Option<String>,
    /// When the person gave or withdrew consent (for a deletion, when it happened).
    pub changed_at: chrono::DateTime<chrono::Utc>,
    /// The import that made the change.
    pub import_id: i64,
    /// The run that made it.
    pub run_id: Option<Uuid>,
    /// `import`, or `profile_deleted`.
    pub cause: String,
    /// When the store recorded it.
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

/// A profile's current statuses by topic (the channel, or `group:` and the group's name).
pub async fn statuses(
    client: &impl GenericClient,
    workspace_id: i64,
    profile_id: i64,
) -> Result<BTreeMap<String, SubscriptionStatus>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT topic, status, changed_at, import_id FROM profile_store.subscriptions
              WHERE workspace_id = $1 AND profile_id = $2",
            &[&workspace_id, &profile_id],
        )
        .await?
        .iter()
        .map(|r| {
            (
                r.get(0),
                SubscriptionStatus {
                    status: r.get(1),
                    changed_at: r.get(2),
                    import_id: r.get(3),
                },
            )
        })
        .collect())
}

/// A profile's changes of status, newest first, at most `limit`; they outlive the profile.
pub async fn history(
    client: &impl GenericClient,
    workspace_id: i64,
    profile_id: i64,
    limit: i64,
) -> Result<Vec<SubscriptionChange>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT topic, from_status, to_status, changed_at, import_id, run_id, cause, recorded_at
               FROM profile_store.subscription_changes
              WHERE workspace_id = $1 AND profile_id = $2
              ORDER BY change_id DESC LIMIT $3",
            &[&workspace_id, &profile_id, &limit],
        )
        .await?
        .iter()
        .map(|r| SubscriptionChange {
            topic: r.get(0),
            from: r.get(1),
            to: r.get(2),
            changed_at: r.get(3),
            import_id: r.get(4),
            run_id: r.get(5),
            cause: r.get(6),
            recorded_at: r.get(7),
        })
        .collect())
}

/// Statuses by topic as a profile shows them: each channel by name, the groups under
/// `groups`.
pub fn nested<T: Serialize>(statuses: &BTreeMap<String, T>) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    let mut groups = serde_json::Map::new();
    for (topic, status) in statuses {
        let value = serde_json::to_value(status).unwrap_or_default();
        match topic.strip_prefix(GROUP_PREFIX) {
            Some(group) => {
                groups.insert(group.to_string(), value);
            }
            None => {
                out.insert(topic.clone(), value);
            }
        }
    }
    if !groups.is_empty() {
        out.insert("groups".to_string(), serde_json::Value::Object(groups));
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_sit_under_their_own_key() {
        let statuses = BTreeMap::from([
            ("email".to_string(), "subscribed"),
            ("group:weekly_digest".to_string(), "unsubscribed"),
        ]);
        assert_eq!(
            nested(&statuses),
            serde_json::json!({"email": "subscribed", "groups": {"weekly_digest": "unsubscribed"}})
        );
    }

    #[test]
    fn only_identity_kinds_name_profiles() {
        assert_eq!(kind_problem("alias:crm"), None);
        assert!(kind_problem("alias:").is_some());
        assert!(kind_problem("nickname").unwrap().contains("nickname"));
    }
}
