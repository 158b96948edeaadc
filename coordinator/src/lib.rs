//! Sluice's coordinator: the control plane. Applies spec files, plans runs into
//! watermark-bounded chunks, consumes stage results, and keeps run state and watermarks. It is
//! the only writer of control-plane state.
// Outside tests a failure is an error with its cause, never a panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod alerts;
pub mod api;
pub mod apply;
pub mod commands;
pub mod connections;
pub mod consent;
pub mod database;
pub mod destinations;
pub mod dry_run;
pub mod errors;
pub mod feed;
pub mod imports;
pub mod keys;
pub mod lineage;
pub mod metrics;
pub mod migrate;
pub mod notify;
pub mod planner;
pub mod preview;
pub mod results;
pub mod retention;
pub mod retries;
pub mod run_state;
pub mod runs;
pub mod scheduler;
pub mod sessions;
pub mod spec;
pub mod stores;
pub mod tokens;
pub mod trigger;
pub mod watermark;
pub mod window;
pub mod workspaces;

pub use commands::Commands;
pub use results::Results;
pub use sluice_spec::{duration, schedule};

/// The control plane's schema name.
pub const SCHEMA: &str = "control";

/// The control plane's migrations, in order: (version, SQL).
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_control.sql")),
    (2, include_str!("../migrations/0002_error_stream.sql")),
    (3, include_str!("../migrations/0003_events.sql")),
    (4, include_str!("../migrations/0004_schedules.sql")),
    (5, include_str!("../migrations/0005_watermark_changes.sql")),
    (6, include_str!("../migrations/0006_replays.sql")),
    (7, include_str!("../migrations/0007_api_tokens.sql")),
    (8, include_str!("../migrations/0008_notifications.sql")),
    (
        9,
        include_str!("../migrations/0009_email_notifications.sql"),
    ),
    (
        10,
        include_str!("../migrations/0010_workspace_rate_limits.sql"),
    ),
    (11, include_str!("../migrations/0011_merge_counts.sql")),
    (12, include_str!("../migrations/0012_mirror_removals.sql")),
    (13, include_str!("../migrations/0013_unreadable_rows.sql")),
    (14, include_str!("../migrations/0014_ui_sessions.sql")),
    (15, include_str!("../migrations/0015_object_retention.sql")),
    (16, include_str!("../migrations/0016_chunk_window.sql")),
    (17, include_str!("../migrations/0017_dry_run_advice.sql")),
    (18, include_str!("../migrations/0018_stores.sql")),
    (
        19,
        include_str!("../migrations/0019_subscription_counts.sql"),
    ),
    (
        20,
        include_str!("../migrations/0020_error_stream_window.sql"),
    ),
    (21, include_str!("../migrations/0021_retry_rows.sql")),
    (22, include_str!("../migrations/0022_lineage_retention.sql")),
    (23, include_str!("../migrations/0023_alerting.sql")),
    (24, include_str!("../migrations/0024_destinations.sql")),
];
