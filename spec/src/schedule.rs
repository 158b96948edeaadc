//! Schedules: when an import runs by itself. `every` (15 minutes to 31 days, aligned to the
//! Unix epoch in UTC), `cron` (5 fields), days of the week or of the month at a time of day,
//! or once `at` a date-time; cron-like kinds are read in the schedule's IANA timezone, so they
//! follow its DST changes. Fire times are computed from an instant given by the caller, never
//! from the wall clock, so they can be tested with any clock.

use chrono::{DateTime, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};
use sluice_proto::dateformat::parse_timezone;
use std::time::Duration;

/// The shortest and longest `every`.
const MIN_EVERY: Duration = Duration::from_secs(15 * 60);
const MAX_EVERY: Duration = Duration::from_secs(31 * 86_400);

/// A schedule as written in a spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDecl {
    /// `15m` to `31d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Five fields: minute hour day-of-month month day-of-week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// `[mon, thu]` with `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_of_week: Option<Vec<String>>,
    /// `[1, 15]` with `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_of_month: Option<Vec<u8>>,
    /// Time of day, `HH:MM`, for `days_of_week` and `days_of_month`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// One run at this date-time (`2026-12-01T06:00:00`, in `timezone` unless it has an offset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// IANA name; UTC by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// A checked schedule, ready to compute fire times.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// At a fixed interval from the moment the import became ready.
    Every(Duration),
    /// At the times a cron expression names, read in an IANA timezone.
    Cron {
        /// The parsed expression.
        cron: Box<Cron>,
        /// The timezone its times are read in.
        tz: Tz,
    },
    /// Once, at an instant.
    Once(DateTime<Utc>),
}

/// A schedule that cannot be used: the field at fault (relative to the schedule) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError {
    /// The schedule's field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ScheduleError {
    ScheduleError {
        field,
        reason: reason.into(),
    }
}

const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl ScheduleDecl {
    /// Checks the schedule and compiles it.
    pub fn compile(&self) -> Result<Schedule, ScheduleError> {
        let kinds = [
            self.every.is_some(),
            self.cron.is_some(),
            self.days_of_week.is_some(),
            self.days_of_month.is_some(),
            self.at.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            0 => {
                return Err(invalid(
                    "schedule",
                    "give one of every, cron, days_of_week, days_of_month or at (or no schedule for manual runs)",
                ))
            }
            1 => {}
            _ => {
                return Err(invalid(
                    "schedule",
                    "give only one of every, cron, days_of_week, days_of_month or at",
                ))
            }
        }
        let tz = parse_timezone(self.timezone.as_deref()).map_err(|e| invalid("timezone", e))?;
        if self.time.is_some() && self.days_of_week.is_none() && self.days_of_month.is_none() {
            return Err(invalid(
                "time",
                "only days_of_week and days_of_month take a time",
            ));
        }
        if let Some(every) = &self.every {
            let d = crate::duration::parse(every).map_err(|e| invalid("every", e))?;
            if d < MIN_EVERY || d > MAX_EVERY {
                return Err(invalid("every", "must be between 15m and 31d"));
            }
            if self.timezone.is_some() {
                return Err(invalid(
                    "timezone",
                    "every runs at fixed intervals in UTC; use cron or days_of_week for local times",
                ));
            }
            return Ok(Schedule::Every(d));
        }
        if let Some(at) = &self.at {
            let when = DateTime::parse_from_rfc3339(at)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| {
                    NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S")
                        .or_else(|_| NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M"))
                        .map_err(|_| ())
                        .and_then(|n| local_or_after_gap(tz, n).ok_or(()))
                })
                .map_err(|_| {
                    invalid(
                        "at",
                        format!("{at:?} is not a date-time like 2026-12-01T06:00:00"),
                    )
                })?;
            return Ok(Schedule::Once(when));
        }
        let pattern = match (&self.cron, &self.days_of_week, &self.days_of_month) {
            (Some(cron), _, _) => {
                if cron.split_whitespace().count() != 5 {
                    return Err(invalid(
                        "cron",
                        format!("{cron:?} must have 5 fields: minute hour day-of-month month day-of-week"),
                    ));
                }
                cron.clone()
            }
            (None, Some(days), None) => {
                let (h, m) = time_of_day(self.time.as_deref())?;
                if days.is_empty() {
                    return Err(invalid("days_of_week", "name at least one day"));
                }
                let mut numbers = Vec::new();
                for day in days {
                    let short = day.trim().to_ascii_lowercase();
                    let n = WEEKDAYS
                        .iter()
                        .position(|w| short.starts_with(w))
                        .ok_or_else(|| {
                            invalid(
                                "days_of_week",
                                format!("{day:?} is not a day (mon ... sun)"),
                            )
                        })?;
                    numbers.push(n.to_string());
                }
                format!("{m} {h} * * {}", numbers.join(","))
            }
            (None, None, Some(days)) => {
                let (h, m) = time_of_day(self.time.as_deref())?;
                if days.is_empty() || days.iter().any(|d| !(1..=31).contains(d)) {
                    return Err(invalid("days_of_month", "days are 1 to 31"));
                }
                let days: Vec<String> = days.iter().map(u8::to_string).collect();
                format!("{m} {h} {} * *", days.join(","))
            }
            _ => unreachable!("exactly one kind is set"),
        };
        let cron = Cron::new(&pattern)
            .parse()
            .map_err(|e| invalid("cron", format!("{pattern:?}: {e}")))?;
        Ok(Schedule::Cron {
            cron: Box::new(cron),
            tz,
        })
    }
}

/// A local date-time in `tz`: the first of two when clocks go back, and the first valid
/// minute after the gap when they go forward (as cron schedules do).
fn local_or_after_gap(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    (0..=180).find_map(|minutes| {
        tz.from_local_datetime(&(local + chrono::Duration::minutes(minutes)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

fn time_of_day(time: Option<&str>) -> Result<(u32, u32), ScheduleError> {
    let time = time.ok_or_else(|| invalid("time", "give the time of day, HH:MM"))?;
    let t = NaiveTime::parse_from_str(time.trim(), "%H:%M")
        .map_err(|_| invalid("time", format!("{time:?} is not a time of day like 06:30")))?;
    use chrono::Timelike;
    Ok((t.hour(), t.minute()))
}

impl Schedule {
    /// The first fire time strictly after `after`, if any.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(every) => {
                let step = every.as_secs() as i64;
                let next = (after.timestamp().div_euclid(step) + 1) * step;
                DateTime::from_timestamp(next, 0)
            }
            Schedule::Cron { cron, tz } => cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Schedule::Once(at) => (*at > after).then_some(*at),
        }
    }

    /// The next `n` fire times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// The timezone fire times are shown in.
    pub fn timezone(&self) -> Tz {
        match self {
            Schedule::Cron { tz, .. } => *tz,
            _ => Tz::UTC,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn decl(yaml: &str) -> ScheduleDecl {
        serde_norway::from_str(yaml).unwrap()
    }

    fn times(s: &Schedule, after: &str, n: usize) -> Vec<String> {
        s.upcoming(utc(after), n)
            .iter()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    #[test]
    fn cron_follows_spring_forward_in_berlin() {
        // 2026-03-29: Berlin moves from 02:00 CET to 03:00 CEST.
        let s = decl("{ cron: \"30 1 * * *\", timezone: Europe/Berlin }")
            .compile()
            .unwrap();
        assert_eq!(
            times(&s, "2026-03-27T12:00:00Z", 4),
            vec![
                "2026-03-28T00:30:00Z",
                "2026-03-29T00:30:00Z",
                "2026-03-29T23:30:00Z",
                "2026-03-30T23:30:00Z"
            ]
        );
        // 02:30 does not exist on the day of the change: the run moves to 03:00 local.
        let gap = decl("{ cron: \"30 2 * * *\", timezone: Europe/Berlin }")
            .compile()
            .unwrap();
        assert_eq!(
            times(&gap, "2026-03-28T12:00:00Z", 2),
            vec!["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
        );
    }

    #[test]
    fn days_of_week_follow_fall_back_in_new_york_once() {
        // 2026-11-01: New York moves from 02:00 EDT back to 01:00 EST.
        let s = decl("{ days_of_week: [sun, mon], time: \"01:30\", timezone: America/New_York }")
            .compile()
            .unwrap();
        assert_eq!(
            times(&s, "2026-10-30T00:00:00Z", 4),
            vec![
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:30:00Z",
                "2026-11-08T06:30:00Z",
                "2026-11-09T06:30:00Z"
            ],
            "01:30 happens twice on 2026-11-01; the schedule fires once, at the first"
        );
    }

    #[test]
    fn days_of_month_and_every_and_at() {
        let monthly = decl("{ days_of_month: [1, 15], time: \"06:00\", timezone: Europe/Berlin }")
            .compile()
            .unwrap();
        assert_eq!(
            times(&monthly, "2026-03-14T00:00:00Z", 3),
            vec![
                "2026-03-15T05:00:00Z",
                "2026-04-01T04:00:00Z",
                "2026-04-15T04:00:00Z"
            ]
        );
        let every = decl("{ every: 6h }").compile().unwrap();
        assert_eq!(
            times(&every, "2026-03-29T00:59:00Z", 3),
            vec![
                "2026-03-29T06:00:00Z",
                "2026-03-29T12:00:00Z",
                "2026-03-29T18:00:00Z"
            ],
            "every is aligned in UTC, whatever DST does"
        );
        let once = decl("{ at: \"2026-11-01T01:30:00\", timezone: America/New_York }")
            .compile()
            .unwrap();
        assert_eq!(
            times(&once, "2026-10-01T00:00:00Z", 3),
            vec!["2026-11-01T05:30:00Z"]
        );
        assert!(once.next_after(utc("2026-11-02T00:00:00Z")).is_none());
    }

    #[test]
    fn every_kind_across_both_dst_changes_in_berlin_and_new_york() {
        // Berlin: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00.
        // New York: 2026-03-08 02:00 -> 03:00, 2026-11-01 02:00 -> 01:00.
        let cases: &[(&str, &str, [&str; 2])] = &[
            (
                "{ cron: \"30 2 * * *\", timezone: Europe/Berlin }",
                "2026-03-28T12:00:00Z",
                ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
            ),
            (
                "{ cron: \"30 2 * * *\", timezone: Europe/Berlin }",
                "2026-10-24T12:00:00Z",
                ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
            ),
            (
                "{ cron: \"30 2 * * *\", timezone: America/New_York }",
                "2026-03-07T12:00:00Z",
                ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
            ),
            (
                "{ cron: \"30 1 * * *\", timezone: America/New_York }",
                "2026-10-31T12:00:00Z",
                ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
            ),
            (
                "{ days_of_week: [sun], time: \"02:30\", timezone: Europe/Berlin }",
                "2026-03-27T00:00:00Z",
                ["2026-03-29T01:00:00Z", "2026-04-05T00:30:00Z"],
            ),
            (
                "{ days_of_week: [sun], time: \"02:30\", timezone: Europe/Berlin }",
                "2026-10-20T00:00:00Z",
                ["2026-10-25T00:30:00Z", "2026-11-01T01:30:00Z"],
            ),
            (
                "{ days_of_week: [sun], time: \"02:30\", timezone: America/New_York }",
                "2026-03-02T00:00:00Z",
                ["2026-03-08T07:00:00Z", "2026-03-15T06:30:00Z"],
            ),
            (
                "{ days_of_month: [8], time: \"02:30\", timezone: America/New_York }",
                "2026-03-01T00:00:00Z",
                ["2026-03-08T07:00:00Z", "2026-04-08T06:30:00Z"],
            ),
            (
                "{ days_of_month: [25], time: \"02:30\", timezone: Europe/Berlin }",
                "2026-10-01T00:00:00Z",
                ["2026-10-25T00:30:00Z", "2026-11-25T01:30:00Z"],
            ),
            (
                "{ days_of_month: [1], time: \"01:30\", timezone: America/New_York }",
                "2026-10-15T00:00:00Z",
                ["2026-11-01T05:30:00Z", "2026-12-01T06:30:00Z"],
            ),
            (
                "{ every: 12h }",
                "2026-03-29T00:30:00Z",
                ["2026-03-29T12:00:00Z", "2026-03-30T00:00:00Z"],
            ),
        ];
        for (schedule, after, expected) in cases {
            let s = decl(schedule).compile().unwrap();
            assert_eq!(
                times(&s, after, 2),
                expected.to_vec(),
                "{schedule} after {after}"
            );
        }
        let once = |yaml: &str| {
            decl(yaml)
                .compile()
                .unwrap()
                .upcoming(utc("2026-01-01T00:00:00Z"), 5)
        };
        assert_eq!(
            once("{ at: \"2026-03-08T02:30:00\", timezone: America/New_York }"),
            vec![utc("2026-03-08T07:00:00Z")],
            "a one-time schedule in the gap fires when the gap ends"
        );
        assert_eq!(
            once("{ at: \"2026-10-25T02:30:00\", timezone: Europe/Berlin }"),
            vec![utc("2026-10-25T00:30:00Z")],
            "a one-time schedule in the repeated hour fires at the first"
        );
    }

    #[test]
    fn invalid_schedules_name_the_field() {
        let field = |yaml: &str| decl(yaml).compile().unwrap_err().field;
        assert_eq!(field("{ every: 5m }"), "every");
        assert_eq!(field("{ every: 32d }"), "every");
        assert_eq!(field("{ cron: \"* * * *\" }"), "cron");
        assert_eq!(field("{ cron: \"61 * * * *\" }"), "cron");
        assert_eq!(
            field("{ cron: \"0 6 * * *\", timezone: Mars/Base }"),
            "timezone"
        );
        assert_eq!(
            field("{ days_of_week: [funday], time: \"06:00\" }"),
            "days_of_week"
        );
        assert_eq!(field("{ days_of_week: [mon] }"), "time");
        assert_eq!(
            field("{ days_of_month: [32], time: \"06:00\" }"),
            "days_of_month"
        );
        assert_eq!(field("{ at: tomorrow }"), "at");
        assert_eq!(field("{ every: 1h, cron: \"0 * * * *\" }"), "schedule");
        assert_eq!(field("{}"), "schedule");
    }
}
