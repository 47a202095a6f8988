//! `check --max-unproven-age`: every retained backup re-proven within a
//! span, not only the newest. "Proven" is a passing restore verify or a
//! passing `verify --checksum-only` proof, whichever is newer; a backup
//! never proven counts from when it was made (a backup made an hour ago is
//! not yet overdue). The group's figure is its oldest "last proven" age
//! among its retained backups: the backup most overdue for another proof.
//! Pure, table-tested; the reading is in [`super`].

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// One retained backup's proofs, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Proofs {
    pub name: String,
    pub made: DateTime<Utc>,
    /// When a restore verify last passed.
    pub restored: Option<DateTime<Utc>>,
    /// When a checksum proof last passed.
    pub checksummed: Option<DateTime<Utc>>,
}

impl Proofs {
    /// The newest passing proof; None: never proven.
    pub fn last_proven(&self) -> Option<DateTime<Utc>> {
        self.restored.max(self.checksummed)
    }
}

/// The group's backup proven longest ago (also in `check --json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unproven {
    pub name: String,
    /// When it was last proven; null: never.
    pub last_proven: Option<String>,
    /// Seconds since it was last proven (since it was made, when never).
    pub unproven_seconds: i64,
}

/// The backup of `backups` proven longest ago; None for an empty group.
pub fn oldest(backups: &[Proofs], now: DateTime<Utc>) -> Option<Unproven> {
    backups
        .iter()
        .map(|b| (b, b.last_proven().unwrap_or(b.made)))
        .min_by_key(|(b, since)| (*since, b.made))
        .map(|(b, since)| Unproven {
            name: b.name.clone(),
            last_proven: b
                .last_proven()
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            unproven_seconds: (now - since).num_seconds().max(0),
        })
}

/// The problem line when `oldest` is over `limit`; None within it.
pub fn problem(oldest: &Unproven, limit: Duration) -> Option<String> {
    let age = u64::try_from(oldest.unproven_seconds).unwrap_or(0);
    if age <= limit.as_secs() {
        return None;
    }
    let age = crate::commands::list::age(oldest.unproven_seconds);
    let limit = humantime::format_duration(limit);
    Some(match &oldest.last_proven {
        Some(at) => format!(
            "{} was last proven {age} ago ({at}; limit {limit}): run `pgbak verify \
             --checksum-only` or `--sample`",
            oldest.name
        ),
        None => format!(
            "{} was never proven, made {age} ago (limit {limit}): run `pgbak verify \
             --checksum-only` or `--sample`",
            oldest.name
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn days_ago(d: i64) -> DateTime<Utc> {
        now() - chrono::TimeDelta::days(d)
    }

    fn proofs(name: &str, made: i64, restored: Option<i64>, summed: Option<i64>) -> Proofs {
        Proofs {
            name: name.into(),
            made: days_ago(made),
            restored: restored.map(days_ago),
            checksummed: summed.map(days_ago),
        }
    }

    #[test]
    fn the_group_is_as_overdue_as_its_backup_proven_longest_ago() {
        let week = Duration::from_secs(7 * 86_400);
        // (backups, the one named, its unproven days, over a week?)
        let cases = [
            (
                vec![
                    proofs("a", 20, Some(19), Some(2)),
                    proofs("b", 1, None, None),
                ],
                "a",
                2,
                false,
            ),
            (
                vec![proofs("a", 20, Some(19), None), proofs("b", 1, None, None)],
                "a",
                19,
                true,
            ),
            (
                vec![
                    proofs("a", 20, Some(3), Some(9)),
                    proofs("b", 9, None, Some(1)),
                ],
                "a",
                3,
                false,
            ),
            (
                vec![proofs("a", 30, None, None), proofs("b", 9, Some(8), None)],
                "a",
                30,
                true,
            ),
        ];
        for (backups, name, days, over) in cases {
            let found = oldest(&backups, now()).unwrap();
            assert_eq!(found.name, name, "{backups:?}");
            assert_eq!(found.unproven_seconds, days * 86_400, "{backups:?}");
            assert_eq!(problem(&found, week).is_some(), over, "{backups:?}");
        }
        assert_eq!(oldest(&[], now()), None);
        let never = oldest(&[proofs("x", 30, None, None)], now()).unwrap();
        assert!(problem(&never, week).unwrap().contains("never proven"));
    }
}
