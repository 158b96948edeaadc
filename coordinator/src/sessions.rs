//! Source sessions kept open between runs' planning, so the many scheduled runs that find
//! nothing new do not each pay a login to the warehouse. A session is kept only when its
//! connector says it reads the source afresh on every statement ([`Connector::reusable`]), for
//! a short idle time, a few per connection; one that fails is dropped and planning opens anew.
//!
//! [`Connector::reusable`]: sluice_connectors::Connector::reusable

use sluice_connectors::Source;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a session may sit idle before it is closed: below the idle limits warehouses and
/// proxies set, so a kept session is still open when it is taken.
const IDLE_FOR: Duration = Duration::from_secs(60);

/// Idle sessions kept in all (more when one connection keeps more).
const IN_ALL: usize = 64;

/// Which sessions can plan a run: those opened for the same connection with the same sealed
/// credentials (a changed or resealed credential opens new ones).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    workspace_id: i64,
    connection: String,
    credentials: String,
}

impl SessionKey {
    /// The key of a workspace's connection as its credentials are sealed now.
    pub fn new(workspace_id: i64, connection: &str, sealed_credentials: &str) -> Self {
        SessionKey {
            workspace_id,
            connection: connection.to_string(),
            credentials: sealed_credentials.to_string(),
        }
    }
}

struct Idle {
    source: Source,
    since: Instant,
}

/// The idle sessions, shared by a coordinator's command consumers.
pub struct Sessions {
    idle: Mutex<HashMap<SessionKey, Vec<Idle>>>,
    per_connection: usize,
}

impl Sessions {
    /// Keeps up to `per_connection` idle sessions of each connection: as many as runs are
    /// planned at once, so a burst of one connection's runs opens no session twice.
    pub fn new(per_connection: usize) -> Self {
        Sessions {
            idle: Mutex::default(),
            per_connection: per_connection.max(1),
        }
    }

    /// An idle session of `key`'s connection, the most recently used, if one is still fresh.
    pub fn take(&self, key: &SessionKey) -> Option<Source> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let sessions = idle.get_mut(key)?;
        let mut taken = None;
        while let Some(session) = sessions.pop() {
            if session.since.elapsed() < IDLE_FOR && session.source.reusable() {
                taken = Some(session.source);
                break;
            }
        }
        if sessions.is_empty() {
            idle.remove(key);
        }
        taken
    }

    /// Keeps a session that planned a run for the next run of its connection, when its
    /// connector allows; closes sessions idle too long and the oldest beyond the bounds.
    pub fn keep(&self, key: SessionKey, source: Source) {
        if !source.reusable() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, sessions| {
            sessions.retain(|s| s.since.elapsed() < IDLE_FOR);
            !sessions.is_empty()
        });
        let sessions = idle.entry(key).or_default();
        sessions.push(Idle {
            source,
            since: Instant::now(),
        });
        if sessions.len() > self.per_connection {
            sessions.remove(0);
        }
        while idle.values().map(Vec::len).sum::<usize>() > IN_ALL.max(self.per_connection) {
            let oldest = idle
                .iter()
                .filter_map(|(k, s)| s.first().map(|first| (k.clone(), first.since)))
                .min_by_key(|(_, since)| *since)
                .map(|(k, _)| k);
            let Some(oldest) = oldest else { break };
            if let Some(sessions) = idle.get_mut(&oldest) {
                sessions.remove(0);
                if sessions.is_empty() {
                    idle.remove(&oldest);
                }
            }
        }
    }

    /// How many sessions are idle now.
    pub fn idle(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
    }
}
