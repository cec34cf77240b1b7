//! Taipei calendar days. Taiwan keeps UTC+8 all year (no daylight saving), so a Taipei day is
//! exactly [16:00 UTC of the day before, 16:00 UTC of the day).

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::domain::taipei;

/// The Taipei calendar day `at` falls on.
pub fn taipei_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&taipei()).date_naive()
}

/// The Taipei day before the one `at` falls on: what a run scheduled at `at` reconciles.
pub fn previous_taipei_day(at: DateTime<Utc>) -> NaiveDate {
    let day = taipei_day(at);
    day.pred_opt().unwrap_or(day)
}

/// The first instant of a Taipei day, in UTC.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0)
        .map(|midnight| midnight.and_utc() - Duration::hours(8))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whether the Taipei day is over at `now` (its last instant has passed).
pub fn is_over(day: NaiveDate, now: DateTime<Utc>) -> bool {
    taipei_day(now) > day
}

/// Whether Oen's `createdAt` text (RFC 3339, e.g. `2026-11-29T15:59:59.999Z`) lies in the
/// Taipei day. A time we cannot read is taken as in the day: Oen listed it for the day we asked.
pub fn created_on(created_at: Option<&str>, day: NaiveDate) -> bool {
    match created_at.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => taipei_day(t.with_timezone(&Utc)) == day,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
    }

    fn date(d: &str) -> NaiveDate {
        NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_taipei_day_runs_from_16_00_utc_to_16_00_utc() {
        assert_eq!(
            taipei_day(utc("2026-11-29T15:59:59.999Z")),
            date("2026-11-29")
        );
        assert_eq!(taipei_day(utc("2026-11-29T16:00:00Z")), date("2026-11-30"));
        assert_eq!(day_start(date("2026-11-30")), utc("2026-11-29T16:00:00Z"));
    }

    #[test]
    fn the_run_at_00_30_taipei_reconciles_the_day_before() {
        // 00:30 on 30 November in Taipei.
        assert_eq!(
            previous_taipei_day(utc("2026-11-29T16:30:00Z")),
            date("2026-11-29")
        );
        // 23:59 on 29 November in Taipei is still the 29th: the day before is the 28th.
        assert_eq!(
            previous_taipei_day(utc("2026-11-29T15:59:00Z")),
            date("2026-11-28")
        );
        // Across a month and a year.
        assert_eq!(
            previous_taipei_day(utc("2026-12-31T16:30:00Z")),
            date("2026-12-31")
        );
        assert_eq!(
            previous_taipei_day(utc("2027-01-01T00:00:00Z")),
            date("2026-12-31")
        );
    }

    #[test]
    fn a_day_is_over_only_from_taipei_midnight() {
        let day = date("2026-11-29");
        assert!(!is_over(day, utc("2026-11-29T15:59:59Z")));
        assert!(is_over(day, utc("2026-11-29T16:00:00Z")));
    }

    #[test]
    fn creation_times_at_the_edges_of_the_day() {
        let day = date("2026-11-29");
        // 00:00:00 and 23:59:59 Taipei are in; a millisecond either side is out.
        assert!(created_on(Some("2026-11-28T16:00:00.000Z"), day));
        assert!(created_on(Some("2026-11-29T15:59:59.999Z"), day));
        assert!(!created_on(Some("2026-11-28T15:59:59.999Z"), day));
        assert!(!created_on(Some("2026-11-29T16:00:00.000Z"), day));
        assert!(created_on(Some("2026-11-29T23:59:59+08:00"), day));
        assert!(created_on(None, day));
        assert!(created_on(Some("yesterday"), day));
    }
}
