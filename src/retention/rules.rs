//! Which backups to keep, as a pure function of what exists and the policy,
//! so local disk and S3 apply the same rules and the rules are table-tested.
//!
//! Per group (database, mode, label, server; the database as meta.json
//! names it when it was read), newest first, a backup is kept when any
//! of these keeps it (restic's `forget` is the model):
//! - `last N`: the N newest;
//! - `hourly/daily/weekly/monthly/yearly N`: the newest backup of each of the
//!   N newest calendar buckets (UTC; weeks are ISO weeks) that have one;
//! - `within D`: every backup within D of the group's newest backup (not of
//!   the clock, so when backups stop, age rules delete nothing).
//!
//! And whatever the rules say, never deleted: the newest backup, the newest
//! backup with a passed verification, a pinned backup, a backup of the newest
//! complete `--all-databases` run of its server, an object still under
//! S3 Object Lock, the backup just made and anything newer than it (clock
//! skew), a dump whose meta.json is missing (it may be someone's only copy).
//! A meta.json whose dump is gone is debris and goes.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::Policy;
use crate::storage::{BackupName, Group};

/// One backup as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: BackupName,
    /// Its group: the name's, with meta.json's real database when it was
    /// read (file names older versions wrote were lossy: `a b` and `a-b`
    /// shared one, and must still be two groups).
    pub group: Group,
    pub has_dump: bool,
    pub has_meta: bool,
    /// Its last `pgbak verify` passed.
    pub verified: bool,
    /// Pinned by the anomaly check (or an operator) until `pgbak unpin`.
    pub pinned: bool,
    /// S3 Object Lock retain-until of its objects, if any.
    pub locked_until: Option<DateTime<Utc>>,
    /// The id of the newest complete `--all-databases` run of its server,
    /// when it belongs to it: a run is restored as a unit, so retention never
    /// breaks it up ([`crate::runs::newest_complete_runs`]).
    pub newest_complete_run: Option<String>,
}

impl Candidate {
    /// A complete backup with nothing special about it.
    pub fn plain(name: BackupName) -> Candidate {
        Candidate {
            group: name.group(),
            name,
            has_dump: true,
            has_meta: true,
            verified: false,
            pinned: false,
            locked_until: None,
            newest_complete_run: None,
        }
    }
}

/// What happens to one backup, and every reason for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    #[serde(skip)]
    pub name: BackupName,
    pub keep: bool,
    pub reasons: Vec<String>,
}

impl Decision {
    pub fn reason(&self) -> String {
        self.reasons.join(", ")
    }
}

/// Decides for every candidate of `just_made`'s group, or of every group when
/// `just_made` is None (`pgbak prune`). `now` only decides whether an Object
/// Lock still holds. Newest first within each group, groups in order.
pub fn plan(
    candidates: &[Candidate],
    policy: &Policy,
    just_made: Option<&BackupName>,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut groups: BTreeMap<Group, Vec<&Candidate>> = BTreeMap::new();
    for c in candidates {
        if just_made.is_none_or(|j| j.group() == c.name.group()) {
            groups.entry(c.group.clone()).or_default().push(c);
        }
    }
    groups
        .into_values()
        .flat_map(|group| plan_group(group, policy, just_made, now))
        .collect()
}

/// A calendar bucket rule: its name, count, and bucket of a time.
type Bucket = (&'static str, u32, fn(&NaiveDateTime) -> String);

fn buckets(policy: &Policy) -> [Bucket; 5] {
    [
        ("hourly", policy.hourly, |t| {
            t.format("%Y-%m-%dT%H").to_string()
        }),
        ("daily", policy.daily, |t| t.format("%Y-%m-%d").to_string()),
        ("weekly", policy.weekly, |t| t.format("%G-W%V").to_string()),
        ("monthly", policy.monthly, |t| t.format("%Y-%m").to_string()),
        ("yearly", policy.yearly, |t| t.format("%Y").to_string()),
    ]
}

fn plan_group(
    mut group: Vec<&Candidate>,
    policy: &Policy,
    just_made: Option<&BackupName>,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    // Newest first; the stem breaks ties so input order never matters.
    group.sort_by(|a, b| {
        b.name
            .timestamp
            .cmp(&a.name.timestamp)
            .then_with(|| b.name.stem().cmp(&a.name.stem()))
    });
    let mut reasons = rule_reasons(&group, policy, just_made);
    group
        .into_iter()
        .map(|c| {
            let why = reasons.remove(&c.name.stem()).unwrap_or_default();
            decide(c, why, just_made, now)
        })
        .collect()
}

/// Why the rules keep each backup of a group (sorted newest first), by stem:
/// the newest and the newest verified, then the counting and age rules.
fn rule_reasons(
    group: &[&Candidate],
    policy: &Policy,
    just_made: Option<&BackupName>,
) -> BTreeMap<String, Vec<String>> {
    let complete: Vec<&Candidate> = group
        .iter()
        .copied()
        .filter(|c| c.has_dump && c.has_meta)
        .collect();
    // The backups the counting rules walk: complete, and not newer than the
    // backup just made (those are kept anyway and must not take its place).
    let ruled: Vec<&Candidate> = complete
        .iter()
        .copied()
        .filter(|c| !newer_than(c, just_made))
        .collect();
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |c: &Candidate, why: String| {
        reasons.entry(c.name.stem()).or_default().push(why);
    };

    if let Some(newest) = complete.first() {
        add(newest, "newest".into());
    }
    if let Some(verified) = complete.iter().find(|c| c.verified) {
        add(verified, "newest verified".into());
    }
    if policy.keeps_all() {
        for c in &ruled {
            add(c, "no retention rule".into());
        }
    }
    for c in ruled.iter().take(policy.last as usize) {
        add(c, format!("last {}", policy.last));
    }
    for (rule, count, bucket_of) in buckets(policy) {
        let mut kept = 0u32;
        let mut last: Option<String> = None;
        for c in &ruled {
            if kept >= count {
                break;
            }
            let bucket = bucket_of(&c.name.timestamp);
            if last.as_ref() != Some(&bucket) {
                add(c, format!("{rule} {bucket}"));
                kept += 1;
                last = Some(bucket);
            }
        }
    }
    if let (Some(within), Some(newest)) = (&policy.within, ruled.first()) {
        let cutoff = within.cutoff(newest.name.timestamp);
        for c in ruled.iter().take_while(|c| c.name.timestamp >= cutoff) {
            add(c, format!("within {within}"));
        }
    }
    reasons
}

/// Newer than the backup just made (clock skew): kept, outside the rules.
fn newer_than(c: &Candidate, just_made: Option<&BackupName>) -> bool {
    just_made.is_some_and(|j| c.name.timestamp > j.timestamp)
}

/// One backup's decision: the rules' reasons plus the invariants (just
/// made, newer, no meta.json, pinned, locked); kept when any reason holds.
fn decide(
    c: &Candidate,
    mut why: Vec<String>,
    just_made: Option<&BackupName>,
    now: DateTime<Utc>,
) -> Decision {
    if just_made == Some(&c.name) {
        why.insert(0, "just made".into());
    } else if newer_than(c, just_made) {
        why.push("newer than the backup just made".into());
    }
    if c.has_dump && !c.has_meta {
        why.push("no meta.json: never deleted automatically".into());
    }
    if c.pinned && c.has_dump {
        why.push("pinned".into());
    }
    if let Some(run) = c.newest_complete_run.as_ref().filter(|_| c.has_dump) {
        why.push(format!("in the newest complete run {run}"));
    }
    if let Some(until) = c.locked_until.filter(|u| *u > now) {
        why.push(format!(
            "locked until {}",
            until.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
    }
    let keep = !why.is_empty();
    if !keep {
        why.push(if c.has_dump {
            "matched no rule".into()
        } else {
            "meta.json without its dump".into()
        });
    }
    Decision {
        name: c.name.clone(),
        keep,
        reasons: why,
    }
}

#[cfg(test)]
mod tests;
