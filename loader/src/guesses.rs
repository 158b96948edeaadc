//! A loader's memory of the runs whose chunks create every profile they name (an initial
//! load): after one of a run's chunks matched nothing, the run's next chunks are resolved on
//! the guess that they match nothing either, without a probe per row; a wrong guess fails on
//! the identities' key, is undone to a savepoint and forgotten for that run.

use std::collections::VecDeque;
use std::sync::Mutex;
use uuid::Uuid;

/// Runs remembered at most; the oldest is forgotten first.
const REMEMBERED: usize = 256;

/// The runs guessed to create everything, newest last.
static FRESH_RUNS: Mutex<VecDeque<(Uuid, bool)>> = Mutex::new(VecDeque::new());

fn with<T>(f: impl FnOnce(&mut VecDeque<(Uuid, bool)>) -> T) -> T {
    let mut runs = FRESH_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut runs)
}

/// Whether `run`'s next chunk is guessed to match nothing.
pub fn expect_fresh(run: Uuid) -> bool {
    with(|runs| runs.iter().any(|(r, fresh)| *r == run && *fresh))
}

/// Records what a chunk of `run` found: `fresh` when it matched no existing profile. A run
/// once proved wrong is never guessed again.
pub fn record(run: Uuid, fresh: bool) {
    with(|runs| match runs.iter_mut().find(|(r, _)| *r == run) {
        Some(entry) => entry.1 &= fresh,
        None => {
            if runs.len() == REMEMBERED {
                runs.pop_front();
            }
            runs.push_back((run, fresh));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_proved_wrong_is_not_guessed_again() {
        let run = Uuid::new_v4();
        assert!(!expect_fresh(run));
        record(run, true);
        assert!(expect_fresh(run));
        record(run, false);
        record(run, true);
        assert!(!expect_fresh(run));
    }
}
