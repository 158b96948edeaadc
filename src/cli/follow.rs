//! Following a run to its end (`run --wait`, `runs watch`): a progress bar with chunks, rows/s
//! and an ETA on a terminal, "waiting for a coordinator" while nothing has planned the run,
//! and Ctrl-C that asks whether to cancel the run instead of leaving it running unseen.

use super::backend::Backend;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_coordinator::runs::{status, RunSummary};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What Ctrl-C does while a run is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Ask on the terminal whether to cancel the run (without a terminal: stop following).
    Ask,
    /// Cancel the run, then report it: for scripts.
    Cancel,
}

/// How a followed run ended for the follower.
pub enum Followed {
    /// The run ended (succeeded, failed, cancelled ...).
    Ended(Box<RunSummary>),
    /// The follower stopped following; the run goes on.
    Detached(Uuid),
}

const WAITING: &str =
    "waiting for a coordinator to plan the run (is `sluice all` or `sluice coordinator` running?)";

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} chunks  {msg}")
        .expect("valid template")
        .progress_chars("=> ")
}

fn waiting_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("valid template")
}

/// Polls the run until it ends, drawing its progress when `show` and stderr is a terminal.
pub async fn follow(
    backend: &Backend,
    run_id: Uuid,
    show: bool,
    on_interrupt: OnInterrupt,
) -> anyhow::Result<Followed> {
    let terminal = show && std::io::stderr().is_terminal();
    let bar = ProgressBar::new(0);
    if !terminal {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(waiting_style());
    bar.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let mut planned_at: Option<Instant> = None;
    let mut told_waiting = false;
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    let mut cancelling = false;
    let mut polls = 0u32;
    loop {
        let summary = backend.run(run_id).await?;
        let recorded = summary.is_some();
        if let Some(s) = &summary {
            if status::is_final(&s.status) {
                bar.finish_and_clear();
                return Ok(Followed::Ended(Box::new(s.clone())));
            }
        }
        let planned = summary.as_ref().filter(|s| s.chunks > 0);
        match planned {
            Some(s) => {
                let planned_at = *planned_at.get_or_insert_with(Instant::now);
                if bar.length() == Some(0) {
                    bar.set_style(bar_style());
                }
                bar.set_length(s.chunks.max(0) as u64);
                bar.set_position(s.chunks_loaded.max(0) as u64);
                bar.set_message(progress_message(s, planned_at.elapsed()));
            }
            None => {
                bar.set_message(WAITING);
                if !terminal && show && !told_waiting && started.elapsed() > Duration::from_secs(10)
                {
                    eprintln!("{WAITING}");
                    told_waiting = true;
                }
            }
        }
        polls += 1;
        tokio::select! {
            _ = tokio::time::sleep(poll_after(polls)) => {}
            _ = &mut interrupt, if !cancelling => {
                let cancel = match on_interrupt {
                    OnInterrupt::Cancel => true,
                    OnInterrupt::Ask => bar.suspend(|| ask_to_cancel(run_id)),
                };
                if !cancel {
                    bar.finish_and_clear();
                    return Ok(Followed::Detached(run_id));
                }
                cancelling = true;
                match backend.cancel_run(run_id).await {
                    Ok(_) => bar.suspend(|| eprintln!("run {run_id} cancelled; its remaining chunks are discarded")),
                    // It ended meanwhile: the next poll reports it.
                    Err(e) if recorded => bar.suspend(|| eprintln!("run {run_id} was not cancelled: {e:#}")),
                    // No coordinator has taken the request yet: nothing to cancel here.
                    Err(e) => {
                        bar.finish_and_clear();
                        eprintln!("run {run_id} was not cancelled: {e:#}; no coordinator has taken it yet");
                        return Ok(Followed::Detached(run_id));
                    }
                }
            }
        }
    }
}

/// The wait before poll `n + 1`: 10 ms doubling up to 250 ms, so a run that ends within a
/// few hundred milliseconds is seen ending within a few tens of them, and a long one is
/// polled four times a second.
fn poll_after(n: u32) -> Duration {
    Duration::from_millis((10u64 << n.min(5)).min(250))
}

/// "12,345 rows read · 4,100 rows/s · ETA 0:12", from the chunks done so far.
fn progress_message(s: &RunSummary, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(0.001);
    let rate = s.rows_read as f64 / seconds;
    let mut message = format!(
        "{} rows read · {} rows/s",
        sluice_proto::format_hint::thousands(s.rows_read.max(0) as u64),
        sluice_proto::format_hint::thousands(rate.round() as u64)
    );
    if s.chunks_loaded > 0 && s.chunks > 0 {
        let left = (s.chunks as f64 - s.chunks_loaded as f64).max(0.0);
        let eta = seconds / s.chunks_loaded as f64 * left;
        message.push_str(&format!(" · ETA {}", clock(eta)));
    }
    if s.dry_run {
        message.insert_str(0, "dry run · ");
    }
    message
}

/// Seconds as `m:ss` or `h:mm:ss`.
fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", (s / 60) % 60, s % 60),
    }
}

/// Asks on the terminal whether Ctrl-C should cancel the run; without a terminal to ask on,
/// the follower only stops following.
fn ask_to_cancel(run_id: Uuid) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("cancel run {run_id}? Its remaining chunks are discarded. [y/N] ");
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes" | "Yes")
}

#[cfg(test)]
mod tests {
    use super::{clock, poll_after};
    use std::time::Duration;

    #[test]
    fn clocks_read_as_minutes_and_hours() {
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(75.4), "1:15");
        assert_eq!(clock(3725.0), "1:02:05");
    }

    #[test]
    fn polls_come_quickly_at_first_then_four_times_a_second() {
        let waits: Vec<u64> = (1..=8).map(|n| poll_after(n).as_millis() as u64).collect();
        assert_eq!(waits, [20, 40, 80, 160, 250, 250, 250, 250]);
        assert_eq!(poll_after(u32::MAX), Duration::from_millis(250));
    }
}
