//! Retention: which backups of a group to keep, and applying that to a store.
//!
//! - [`Policy`] is what the operator asked for (`--keep-last`, `--keep-daily`,
//!   ..., `--keep-within`), resolved once from flags and environment by
//!   [`crate::settings::groups::retention_policy`];
//! - [`rules`] decides, as a pure function of the backups and the policy,
//!   what to keep and which rule keeps it (restic's `forget` is the model);
//! - [`apply`] lists a [`crate::storage::Store`], reads meta.json,
//!   plans and deletes: the same code for a directory and an S3 prefix, for
//!   `backup`, `cron` and `prune`.

pub mod apply;
pub mod rules;

use std::fmt;

use anyhow::Result;
use chrono::{Months, NaiveDateTime, TimeDelta};
use serde::Serialize;

pub use rules::{plan, Candidate, Decision};

/// `--keep-last` when no rule is given at all (what `--keep` always defaulted to).
pub const DEFAULT_KEEP_LAST: u32 = 7;

/// The retention rules; a backup is kept when any rule keeps it. All zero
/// (and no `within`) keeps everything, as `--keep 0` always did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    pub within: Option<Within>,
}

impl Policy {
    /// Only `--keep-last N`, as `--keep N` used to be.
    pub fn last(n: u32) -> Policy {
        Policy {
            last: n,
            ..Policy::default()
        }
    }

    /// No rule at all: everything is kept.
    pub fn keeps_all(&self) -> bool {
        *self == Policy::default()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.keeps_all() {
            return f.write_str("keep all");
        }
        let mut parts = Vec::new();
        for (n, rule) in [
            (self.last, "last"),
            (self.hourly, "hourly"),
            (self.daily, "daily"),
            (self.weekly, "weekly"),
            (self.monthly, "monthly"),
            (self.yearly, "yearly"),
        ] {
            if n > 0 {
                parts.push(format!("{rule} {n}"));
            }
        }
        if let Some(within) = &self.within {
            parts.push(format!("within {within}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// `--keep-within`: a span like `14d`, `12h`, `2w`, `6m` (months), `1y`, or
/// a sum such as `1y6m`, measured back from the group's newest backup, never
/// from the clock: if backups stop, nothing ages out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Within {
    pub years: u32,
    pub months: u32,
    pub weeks: u32,
    pub days: u32,
    pub hours: u32,
}

impl Within {
    pub fn parse(text: &str) -> Result<Within, String> {
        let bad = || {
            format!(
                "--keep-within {text:?} is not a duration like 14d, 12h, 2w, 6m (months), 1y or 1y6m"
            )
        };
        let mut within = Within::default();
        let mut digits = String::new();
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: u32 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            let slot = match c {
                'y' => &mut within.years,
                'm' => &mut within.months,
                'w' => &mut within.weeks,
                'd' => &mut within.days,
                'h' => &mut within.hours,
                _ => return Err(bad()),
            };
            *slot = slot.checked_add(n).ok_or_else(bad)?;
        }
        if !digits.is_empty() || within == Within::default() {
            return Err(bad());
        }
        if within.years > 1000 || within.months > 12_000 {
            return Err(bad());
        }
        Ok(within)
    }

    /// The oldest time still within the span of `newest`.
    pub fn cutoff(&self, newest: NaiveDateTime) -> NaiveDateTime {
        let months = self.years.saturating_mul(12).saturating_add(self.months);
        let at = newest
            .checked_sub_months(Months::new(months))
            .unwrap_or(NaiveDateTime::MIN);
        let span = TimeDelta::try_weeks(i64::from(self.weeks))
            .and_then(|w| w.checked_add(&TimeDelta::try_days(i64::from(self.days))?))
            .and_then(|d| d.checked_add(&TimeDelta::try_hours(i64::from(self.hours))?))
            .unwrap_or(TimeDelta::MAX);
        at.checked_sub_signed(span).unwrap_or(NaiveDateTime::MIN)
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.weeks, 'w'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn durations_parse_and_reject_garbage() {
        let cases = [
            ("14d", Some("14d")),
            ("1y6m", Some("1y6m")),
            ("2w", Some("2w")),
            ("36h", Some("36h")),
            ("", None),
            ("14", None),
            ("d", None),
            ("14x", None),
            ("-1d", None),
            ("0d", None),
        ];
        for (text, want) in cases {
            let got = Within::parse(text).ok().map(|w| w.to_string());
            assert_eq!(got.as_deref(), want, "{text}");
        }
    }

    #[test]
    fn cutoff_counts_back_from_the_newest_backup() {
        let newest = NaiveDate::from_ymd_opt(2026, 3, 31)
            .unwrap()
            .and_hms_opt(2, 0, 0)
            .unwrap();
        let at = |s: &str| Within::parse(s).unwrap().cutoff(newest).to_string();
        assert_eq!(at("14d"), "2026-03-17 02:00:00");
        assert_eq!(at("1m"), "2026-02-28 02:00:00");
        assert_eq!(at("1y1d"), "2025-03-30 02:00:00");
        assert_eq!(at("12h"), "2026-03-30 14:00:00");
    }
}
