//! Which backups to delete, as a pure function of what exists and the policy,
//! so local disk and S3 apply the same rules and the rules are table-tested.
//!
//! The rules: only the group (database, mode, label) of the backup just made;
//! keep the newest `keep` complete backups, the one just made always among
//! them; delete only backups older than the one just made; never delete a dump
//! whose meta.json is missing (it may be someone's only copy); a meta.json
//! whose dump is gone is debris and goes.

use crate::storage::{BackupName, Group};

/// One backup as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: BackupName,
    pub has_dump: bool,
    pub has_meta: bool,
}

impl From<&crate::storage::local::LocalBackup> for Candidate {
    fn from(b: &crate::storage::local::LocalBackup) -> Candidate {
        Candidate {
            name: b.name.clone(),
            has_dump: b.has_dump,
            has_meta: b.has_meta,
        }
    }
}

impl From<&crate::storage::s3::RemoteBackup> for Candidate {
    fn from(b: &crate::storage::s3::RemoteBackup) -> Candidate {
        Candidate {
            name: b.name.clone(),
            has_dump: b.has_dump,
            has_meta: b.has_meta,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep(&'static str),
    Delete(&'static str),
}

/// Decides for every candidate in `just_made`'s group; other groups are not listed.
pub fn plan(
    candidates: &[Candidate],
    just_made: &BackupName,
    keep: u32,
) -> Vec<(BackupName, Verdict)> {
    let group: Group = just_made.group();
    let mut mine: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.name.group() == group)
        .collect();
    // Newest first; the backup just made first of all, whatever the clock says.
    mine.sort_by(|a, b| {
        (b.name == *just_made)
            .cmp(&(a.name == *just_made))
            .then(b.name.timestamp.cmp(&a.name.timestamp))
    });
    let mut kept = 0u32;
    mine.into_iter()
        .map(|c| {
            let verdict = if c.name == *just_made {
                kept += 1;
                Verdict::Keep("just made")
            } else if c.has_dump && !c.has_meta {
                Verdict::Keep("no meta.json: never deleted automatically")
            } else if c.name.timestamp >= just_made.timestamp {
                Verdict::Keep("not older than the backup just made")
            } else if !c.has_dump {
                Verdict::Delete("meta.json without its dump")
            } else if keep == 0 || kept < keep {
                kept += 1;
                Verdict::Keep("within --keep")
            } else {
                Verdict::Delete("beyond --keep")
            };
            (c.name.clone(), verdict)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Mode;
    use chrono::{TimeZone, Utc};

    fn name(db: &str, mode: Mode, label: Option<&str>, hour: u32) -> BackupName {
        BackupName::new(
            db,
            mode,
            label,
            Utc.with_ymd_and_hms(2026, 11, 25, hour, 0, 0).unwrap(),
        )
    }

    fn complete(name: BackupName) -> Candidate {
        Candidate {
            name,
            has_dump: true,
            has_meta: true,
        }
    }

    fn deleted(plan: &[(BackupName, Verdict)]) -> Vec<u32> {
        use chrono::Timelike;
        plan.iter()
            .filter(|(_, v)| matches!(v, Verdict::Delete(_)))
            .map(|(n, _)| n.timestamp.hour())
            .collect()
    }

    #[test]
    fn keeps_newest_n_of_the_group_only() {
        let new = name("db", Mode::Full, None, 5);
        let all = vec![
            complete(name("db", Mode::Full, None, 1)),
            complete(name("db", Mode::Full, None, 2)),
            complete(name("db", Mode::Full, None, 3)),
            complete(name("db", Mode::Full, Some("pre-migration"), 0)),
            complete(name("db", Mode::Schema, None, 0)),
            complete(name("other", Mode::Full, None, 0)),
            complete(new.clone()),
        ];
        let plan = plan(&all, &new, 2);
        assert_eq!(
            plan.len(),
            4,
            "only the db/full/unlabelled group is decided"
        );
        assert_eq!(deleted(&plan), vec![2, 1]);
    }

    #[test]
    fn table() {
        struct Case {
            what: &'static str,
            existing: Vec<(u32, bool, bool)>,
            keep: u32,
            deleted: Vec<u32>,
        }
        let cases = [
            Case {
                what: "keep 0 keeps everything",
                existing: vec![(1, true, true), (2, true, true)],
                keep: 0,
                deleted: vec![],
            },
            Case {
                what: "keep 1 keeps only the new one",
                existing: vec![(1, true, true), (2, true, true)],
                keep: 1,
                deleted: vec![2, 1],
            },
            Case {
                what: "a dump without meta is never deleted",
                existing: vec![(1, true, false), (2, true, true)],
                keep: 1,
                deleted: vec![2],
            },
            Case {
                what: "an orphan meta.json goes even within keep",
                existing: vec![(1, false, true)],
                keep: 5,
                deleted: vec![1],
            },
            Case {
                what: "a backup from the future (clock skew) is kept",
                existing: vec![(9, true, true), (1, true, true)],
                keep: 1,
                deleted: vec![1],
            },
        ];
        for case in cases {
            let new = name("db", Mode::Full, None, 5);
            let mut all: Vec<Candidate> = case
                .existing
                .iter()
                .map(|(h, d, m)| Candidate {
                    name: name("db", Mode::Full, None, *h),
                    has_dump: *d,
                    has_meta: *m,
                })
                .collect();
            all.push(complete(new.clone()));
            assert_eq!(
                deleted(&plan(&all, &new, case.keep)),
                case.deleted,
                "{}",
                case.what
            );
        }
    }

    #[test]
    fn the_new_backup_is_never_deleted() {
        let new = name("db", Mode::Full, None, 5);
        let plan = plan(&[complete(new.clone())], &new, 1);
        assert_eq!(plan, vec![(new, Verdict::Keep("just made"))]);
    }
}
