//! The verdict on one group of backups: a pure function of what was read and
//! the limits, table-tested, so `pgbak check` stays orchestration.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::meta::{Meta, Pin, VerifyTiming};
pub use crate::settings::check::Limits;
use crate::storage::{BackupName, Group};

/// How many of a group's newest backups the trend shows (sizes come from the listing).
pub const TREND: usize = 5;
/// How many of a group's newest meta.json files are always read (row counts,
/// and the change from the previous run).
pub const ROWS_READ: usize = 2;

/// One complete backup, as the judgement needs it: from the listing (name,
/// size) and, when it was read, its meta.json.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The file stem.
    pub name: String,
    /// meta.json's `database`; None when the meta.json was not read.
    pub database: Option<String>,
    pub at: DateTime<Utc>,
    pub size_bytes: u64,
    /// Sum of the tables' row counts; None for schema-only backups or when not read.
    pub rows: Option<u64>,
    /// The last `pgbak verify` of this backup: when, and whether it passed.
    pub verified: Option<(Option<DateTime<Utc>>, bool)>,
    /// The anomaly pin in its meta.json (`pgbak unpin` lifts it).
    pub pinned: Option<Pin>,
    /// S3 Object Lock: the dump cannot be deleted before this (asked for the newest backup).
    pub locked_until: Option<DateTime<Utc>>,
    /// meta.json's server name; None when not read or not recorded.
    pub server: Option<String>,
    /// With a directory and a bucket: the dump is in the bucket too (asked
    /// for the newest backup); None when not asked.
    pub offsite: Option<bool>,
    /// The restore time its last verify measured (`verification.timing`).
    pub timing: Option<VerifyTiming>,
}

impl Seen {
    /// A backup whose meta.json was not read: what the listing says.
    pub fn from_listing(name: &BackupName, size_bytes: u64) -> Seen {
        Seen {
            name: name.stem(),
            database: None,
            at: name.time(),
            size_bytes,
            rows: None,
            verified: None,
            pinned: None,
            locked_until: None,
            server: None,
            offsite: None,
            timing: None,
        }
    }

    pub fn from_meta(name: &BackupName, meta: &Meta) -> Seen {
        let rows = meta
            .tables
            .iter()
            .map(|t| t.rows)
            .try_fold(0u64, |sum, rows| rows.map(|r| sum.saturating_add(r)));
        Seen {
            name: name.stem(),
            database: Some(meta.database.clone()),
            at: name.time(),
            size_bytes: meta.size_bytes,
            rows: if meta.tables.is_empty() { None } else { rows },
            verified: meta.verification.as_ref().map(|v| {
                let at = DateTime::parse_from_rfc3339(&v.verified_at)
                    .ok()
                    .map(|t| t.with_timezone(&Utc));
                (at, v.passed)
            }),
            pinned: meta.pinned.clone(),
            locked_until: None,
            server: meta.server.as_ref().map(|s| s.name.clone()),
            offsite: None,
            timing: meta.verification.as_ref().and_then(|v| v.timing.clone()),
        }
    }
}

/// A backup dated more than this after the check's clock is "in the future"
/// (clocks of two hosts may differ a little; names move a second per collision).
pub const FUTURE_SLACK: Duration = Duration::from_secs(10 * 60);

/// Whether the meta.json of the next (older) backup at `at` is needed, given
/// those read so far (newest first): always for the newest [`ROWS_READ`];
/// then, within the `--max-verified-age` window, until a passed verification
/// is found (the last verify result is found on the way). Older backups could
/// not satisfy the limit anyway, so a group nobody verifies costs the backups
/// of one window, not its whole history.
pub fn needs_meta(read: &[Seen], at: DateTime<Utc>, window_start: Option<DateTime<Utc>>) -> bool {
    if read.len() < ROWS_READ {
        return true;
    }
    let passed_found = read.iter().any(|s| s.verified.is_some_and(|(_, ok)| ok));
    window_start.is_some_and(|start| at >= start) && !passed_found
}

/// A group's newest backup, one of its trend, or its newest verified backup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupRef {
    pub name: String,
    pub created_at: String,
    pub age_seconds: i64,
    pub size_bytes: u64,
    pub rows: Option<u64>,
}

/// The last verify result of a group: of its newest backup that was verified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastVerify {
    pub name: String,
    pub verified_at: Option<String>,
    pub passed: bool,
}

/// The newest successful restore test of a group: its newest backup that
/// passed verify, when, and the restore time that verify measured (None:
/// verified by a pgbak that did not measure it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreTest {
    pub name: String,
    pub verified_at: Option<String>,
    pub restore_seconds: Option<f64>,
    pub verify_seconds: Option<f64>,
    pub jobs: Option<u32>,
}

/// A pinned backup of a group: retention keeps it until `pgbak unpin`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PinnedRef {
    pub name: String,
    pub pinned_at: String,
    pub reason: String,
}

/// The verdict on one group (also the `--json` shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupReport {
    pub database: String,
    pub mode: String,
    pub label: Option<String>,
    /// The server's name (from meta.json); null for backups that do not say
    /// which server they come from (made before pgbak recorded it).
    pub server: Option<String>,
    /// `ok`, or the worst problem: `missing`, `failed`, `future`, `stale`,
    /// `unverified`, `not offsite`; `superseded` (ok) for [`supersede`]'s groups.
    pub status: &'static str,
    pub ok: bool,
    /// One sentence per problem, worst first.
    pub problems: Vec<String>,
    /// Complete backups (dump and meta.json) in the group.
    pub backups: usize,
    /// Dumps without meta.json (or the reverse), unreadable meta.json files.
    pub incomplete: usize,
    pub newest: Option<BackupRef>,
    pub newest_verified: Option<BackupRef>,
    /// The restore test of `newest_verified`: when, and how long its restore took (the RTO).
    pub last_restore_test: Option<RestoreTest>,
    /// The oldest complete backup of the group (the retained history starts there).
    pub oldest: Option<BackupRef>,
    pub last_verify: Option<LastVerify>,
    /// The newest backups, newest first (size and rows of the last runs).
    pub trend: Vec<BackupRef>,
    /// Pinned backups among those whose meta.json was read (the anomaly check
    /// pins the previous good backup; `pgbak list` shows every pin). Not a failure.
    pub pinned: Vec<PinnedRef>,
    /// S3 Object Lock retain-until of the newest backup's dump (None: not
    /// locked, not on S3, or the bucket has no Object Lock).
    pub locked_until: Option<String>,
    /// Backups that name no server (made before pgbak recorded it), whose
    /// newest is older than the newest backup of this server's group of the
    /// same database, mode and label: the history that group continues.
    /// Reported, not judged (an upgrade does not turn them stale); remove them
    /// when they are no longer needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// With `--max-unproven-age`: the retained backup proven longest ago
    /// ([`super::unproven`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_unproven: Option<super::unproven::Unproven>,
    /// The `--to` destination this report is of (None: the directory and
    /// the bucket, judged together as ever).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// Judges one group. `seen` holds its complete backups newest first, those
/// whose meta.json [`needs_meta`] asked for with its contents; `incomplete`
/// counts the rest.
pub fn assess(
    group: &Group,
    seen: &[Seen],
    backups: usize,
    incomplete: usize,
    limits: Limits,
    now: DateTime<Utc>,
) -> GroupReport {
    let reference = |s: &Seen| BackupRef {
        name: s.name.clone(),
        created_at: s.at.to_rfc3339_opts(SecondsFormat::Secs, true),
        age_seconds: (now - s.at).num_seconds(),
        size_bytes: s.size_bytes,
        rows: s.rows,
    };
    // A backup named in the future (a clock that was ahead) is reported and
    // judged by the newest one that is not.
    let slack = chrono::TimeDelta::from_std(FUTURE_SLACK).unwrap_or_default();
    let future = seen.iter().find(|s| s.at > now + slack);
    let newest = seen.iter().find(|s| s.at <= now + slack);
    let newest_verified = seen.iter().find(|s| s.verified.is_some_and(|(_, ok)| ok));
    let last_verify = seen.iter().find_map(|s| {
        s.verified.map(|(at, passed)| LastVerify {
            name: s.name.clone(),
            verified_at: at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            passed,
        })
    });
    let too_old =
        |at: DateTime<Utc>, limit: Duration| (now - at).to_std().is_ok_and(|age| age > limit);
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    if let Some(f) = future {
        problems.push((
            "future",
            format!(
                "{} is dated {}, in the future: the clock of the host that made it was ahead; \
                 check that clock, then delete or rename the backup",
                f.name,
                f.at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        ));
    }
    match newest {
        None if future.is_some() => {}
        None => problems.push((
            "missing",
            if incomplete > 0 {
                format!("no complete backup ({incomplete} incomplete)")
            } else {
                "no backup found".to_owned()
            },
        )),
        Some(n) => {
            if let Some(lv) = last_verify.as_ref().filter(|lv| !lv.passed) {
                problems.push((
                    "failed",
                    format!(
                        "the last verify failed ({}{})",
                        lv.name,
                        lv.verified_at
                            .as_ref()
                            .map_or(String::new(), |t| format!(", verified at {t}"))
                    ),
                ));
            }
            if let Some(limit) = limits.max_age.filter(|l| too_old(n.at, *l)) {
                problems.push((
                    "stale",
                    format!(
                        "newest backup is {} old (limit {})",
                        age(now - n.at),
                        human(limit)
                    ),
                ));
            }
            if let Some(limit) = limits.max_verified_age {
                match newest_verified {
                    None => problems.push((
                        "unverified",
                        format!("no backup passed verification in the last {}", human(limit)),
                    )),
                    Some(v) if too_old(v.at, limit) => problems.push((
                        "unverified",
                        format!(
                            "newest verified backup is {} old (limit {})",
                            age(now - v.at),
                            human(limit)
                        ),
                    )),
                    Some(_) => {}
                }
            }
            if let Some(limit) = limits.max_rto {
                problems.extend(slow_restore(newest_verified, limit));
            }
            if seen.first().and_then(|s| s.offsite) == Some(false) {
                problems.push((
                    "not offsite",
                    format!(
                        "the newest backup {} is not in the bucket, only in the directory",
                        seen[0].name
                    ),
                ));
            }
        }
    }
    // Worst first: what is broken, then what is old, then where it is.
    let rank = |status: &str| {
        [
            "missing",
            "failed",
            "future",
            "stale",
            "unverified",
            "slow restore",
            "unmeasured",
            "not offsite",
        ]
        .iter()
        .position(|s| *s == status)
    };
    problems.sort_by_key(|(status, _)| rank(status));
    GroupReport {
        database: newest
            .and_then(|n| n.database.clone())
            .unwrap_or_else(|| group.database.clone()),
        mode: group.mode.to_owned(),
        label: group.label.clone(),
        server: seen.iter().find_map(|s| s.server.clone()),
        status: problems.first().map_or("ok", |(status, _)| status),
        ok: problems.is_empty(),
        problems: problems.into_iter().map(|(_, text)| text).collect(),
        backups,
        incomplete,
        newest: newest.map(reference),
        newest_verified: newest_verified.map(reference),
        last_restore_test: newest_verified.map(|v| RestoreTest {
            name: v.name.clone(),
            verified_at: v
                .verified
                .and_then(|(at, _)| at)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            restore_seconds: v.timing.as_ref().map(|t| t.restore_seconds),
            verify_seconds: v.timing.as_ref().map(|t| t.verify_seconds),
            jobs: v.timing.as_ref().map(|t| t.jobs),
        }),
        oldest: seen.last().map(reference),
        last_verify,
        trend: seen.iter().take(TREND).map(reference).collect(),
        pinned: pins(seen),
        locked_until: newest.and_then(|n| lock_of(n, now)),
        superseded_by: None,
        oldest_unproven: None,
        destination: None,
    }
}

/// `--max-rto`: the newest passed verify's restore took longer than `limit`,
/// or its restore time was never measured.
fn slow_restore(newest_verified: Option<&Seen>, limit: Duration) -> Option<(&'static str, String)> {
    let Some(verified) = newest_verified else {
        return Some((
            "unmeasured",
            format!(
                "restore time never measured: no backup passed verification (limit {})",
                human(limit)
            ),
        ));
    };
    match &verified.timing {
        None => Some((
            "unmeasured",
            format!(
                "restore time never measured: the verify of {} did not record it (verify it \
                 again; limit {})",
                verified.name,
                human(limit)
            ),
        )),
        Some(t) if t.restore_seconds > limit.as_secs_f64() => Some((
            "slow restore",
            format!(
                "the newest verified restore ({}) took {:.1}s with {} job(s) (limit {})",
                verified.name,
                t.restore_seconds,
                t.jobs,
                human(limit)
            ),
        )),
        Some(_) => None,
    }
}

/// Marks the unknown server's groups whose history a server's group of the
/// same database, mode and label continues (its newest backup is newer):
/// they are reported as superseded and not judged, so upgrading pgbak does
/// not turn every database's old backups stale. An unknown group that still
/// receives backups (an older pgbak still writing there) stays judged.
pub fn supersede(reports: &mut [GroupReport]) {
    let newest = |r: &GroupReport| r.newest.as_ref().map(|n| n.created_at.clone());
    let continued: Vec<(usize, String)> = reports
        .iter()
        .enumerate()
        .filter(|(_, r)| r.server.is_none())
        .filter_map(|(i, old)| {
            let old_newest = newest(old);
            reports
                .iter()
                .filter(|r| {
                    r.server.is_some()
                        && r.database == old.database
                        && r.mode == old.mode
                        && r.label == old.label
                        && newest(r) > old_newest
                })
                .find_map(|r| r.server.clone())
                .map(|server| (i, server))
        })
        .collect();
    for (i, server) in continued {
        let r = &mut reports[i];
        r.superseded_by = Some(server);
        r.status = "superseded";
        r.ok = true;
        r.problems.clear();
    }
}

/// A backup's Object Lock retain-until, while it holds.
fn lock_of(backup: &Seen, now: DateTime<Utc>) -> Option<String> {
    backup
        .locked_until
        .filter(|until| *until > now)
        .map(|until| until.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// The pinned backups among those read.
fn pins(seen: &[Seen]) -> Vec<PinnedRef> {
    seen.iter()
        .filter_map(|s| {
            s.pinned.as_ref().map(|p| PinnedRef {
                name: s.name.clone(),
                pinned_at: p.pinned_at.clone(),
                reason: p.reason.clone(),
            })
        })
        .collect()
}

/// `45s`, `12m`, `30h`, `9d`: the ages in problem lines.
fn age(d: chrono::TimeDelta) -> String {
    crate::commands::list::age(d.num_seconds())
}

/// A limit as an operator writes it: `26h`, `8d`, `90m`, `45s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s >= 86_400 && s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
pub(crate) mod tests;
