//! Sluice's loader: identity resolution, the schema registry, set-based upserts into the
//! profile store, exactly-once inserts into the event store and deletes, with a per-workspace
//! rate limit; and the schema of both stores.
// Outside tests a failure is an error with its cause, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod copy;
pub mod deletes;
pub mod destinations;
pub mod events;
pub mod guessed;
pub mod guesses;
pub mod lineage;
pub mod load;
mod metrics;
pub mod profiles;
pub mod props;
pub mod rate;
pub mod registry;
pub mod removals;
pub mod resolve;
pub mod staging;
pub mod statistics;
pub mod stores;
pub mod subscriptions;

pub use load::{load, Loader};
pub use rate::RowRateLimiter;
pub use stores::{OpenStore, StorePools};

/// The profile store's schema name.
pub const SCHEMA: &str = "profile_store";

/// The profile store's migrations, in order: (version, SQL).
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_profile_store.sql")),
    (
        2,
        include_str!("../migrations/0002_identities_and_registry.sql"),
    ),
    (3, include_str!("../migrations/0003_event_store.sql")),
    (4, include_str!("../migrations/0004_store_tuning.sql")),
    (5, include_str!("../migrations/0005_property_freshness.sql")),
    (
        6,
        include_str!("../migrations/0006_event_property_types.sql"),
    ),
    (7, include_str!("../migrations/0007_mirror_removals.sql")),
    (
        8,
        include_str!("../migrations/0008_identity_probe_plans.sql"),
    ),
    (9, include_str!("../migrations/0009_profile_statistics.sql")),
    (10, include_str!("../migrations/0010_subscriptions.sql")),
    (11, include_str!("../migrations/0011_delivered_events.sql")),
    (
        12,
        include_str!("../migrations/0012_event_lifecycle_view.sql"),
    ),
];
