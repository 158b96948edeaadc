//! Whether this process can do its work, for `/readyz`: each consume loop says whether it
//! holds a live connection to the broker, and the process adds its own checks (the master
//! key it holds, for one).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The broker connection state of each of a process's consume loops.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    loops: Arc<Mutex<BTreeMap<&'static str, bool>>>,
}

impl Readiness {
    /// Records whether the loop `name` is connected and consuming.
    pub fn set(&self, name: &'static str, connected: bool) {
        self.loops
            .lock()
            .expect("readiness lock")
            .insert(name, connected);
    }

    /// Each loop and whether it is connected.
    pub fn loops(&self) -> Vec<(&'static str, bool)> {
        self.loops
            .lock()
            .expect("readiness lock")
            .iter()
            .map(|(name, connected)| (*name, *connected))
            .collect()
    }

    /// True when every loop is connected (and there is at least one).
    pub fn broker_ready(&self) -> bool {
        let loops = self.loops.lock().expect("readiness lock");
        !loops.is_empty() && loops.values().all(|connected| *connected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_loop_is_connected() {
        let readiness = Readiness::default();
        assert!(!readiness.broker_ready(), "nothing consuming yet");
        readiness.set("extract", true);
        readiness.set("load", false);
        assert!(!readiness.broker_ready());
        readiness.set("load", true);
        assert!(readiness.broker_ready());
        assert_eq!(readiness.loops(), vec![("extract", true), ("load", true)]);
    }
}
