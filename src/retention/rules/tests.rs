//! Table and property tests of the retention rules.

use super::*;
use crate::mode::Mode;
use crate::retention::Within;
use chrono::{Duration, TimeZone};

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn name(db: &str, mode: Mode, label: Option<&str>, hour: u32) -> BackupName {
    BackupName::new(db, mode, label, at(25, hour))
}

fn deleted(plan: &[Decision]) -> Vec<u32> {
    use chrono::Timelike;
    plan.iter()
        .filter(|d| !d.keep)
        .map(|d| d.name.timestamp.hour())
        .collect()
}

fn last(n: u32) -> Policy {
    Policy::last(n)
}

#[test]
fn keeps_newest_n_of_the_group_only() {
    let new = name("db", Mode::Full, None, 5);
    let all: Vec<Candidate> = vec![
        name("db", Mode::Full, None, 1),
        name("db", Mode::Full, None, 2),
        name("db", Mode::Full, None, 3),
        name("db", Mode::Full, Some("pre-migration"), 0),
        name("db", Mode::Schema, None, 0),
        name("other", Mode::Full, None, 0),
        new.clone(),
    ]
    .into_iter()
    .map(Candidate::plain)
    .collect();
    let plan = plan(&all, &last(2), Some(&new), at(26, 0));
    assert_eq!(
        plan.len(),
        4,
        "only the db/full/unlabelled group is decided"
    );
    assert_eq!(deleted(&plan), vec![2, 1]);
    // Without a backup just made (prune), every group is decided.
    let all_groups = super::plan(&all, &last(2), None, at(26, 0));
    assert_eq!(all_groups.len(), 7);
    assert_eq!(deleted(&all_groups), vec![2, 1]);
}

#[test]
fn keep_last_table() {
    struct Case {
        what: &'static str,
        /// (hour, has_dump, has_meta, verified, pinned)
        existing: Vec<(u32, bool, bool, bool, bool)>,
        keep: u32,
        deleted: Vec<u32>,
    }
    let c = |h| (h, true, true, false, false);
    let cases = [
        Case {
            what: "keep 0 keeps everything",
            existing: vec![c(1), c(2)],
            keep: 0,
            deleted: vec![],
        },
        Case {
            what: "keep 1 keeps only the new one",
            existing: vec![c(1), c(2)],
            keep: 1,
            deleted: vec![2, 1],
        },
        Case {
            what: "a dump without meta is never deleted",
            existing: vec![(1, true, false, false, false), c(2)],
            keep: 1,
            deleted: vec![2],
        },
        Case {
            what: "an orphan meta.json goes even within keep",
            existing: vec![(1, false, true, false, false)],
            keep: 5,
            deleted: vec![1],
        },
        Case {
            what: "a backup from the future (clock skew) is kept",
            existing: vec![c(9), c(1)],
            keep: 1,
            deleted: vec![1],
        },
        Case {
            what: "the future one does not take the new one's place in keep 2",
            existing: vec![c(9), c(2), c(1)],
            keep: 2,
            deleted: vec![1],
        },
        Case {
            what: "the newest verified backup is kept beyond keep",
            existing: vec![
                (1, true, true, true, false),
                (2, true, true, true, false),
                c(3),
            ],
            keep: 1,
            deleted: vec![3, 1],
        },
        Case {
            what: "a pinned backup is kept beyond keep",
            existing: vec![c(3), (2, true, true, false, true), c(1)],
            keep: 1,
            deleted: vec![3, 1],
        },
    ];
    for case in cases {
        let new = name("db", Mode::Full, None, 5);
        let mut all: Vec<Candidate> = case
            .existing
            .iter()
            .map(|(h, d, m, v, p)| Candidate {
                has_dump: *d,
                has_meta: *m,
                verified: *v,
                pinned: *p,
                ..Candidate::plain(name("db", Mode::Full, None, *h))
            })
            .collect();
        all.push(Candidate::plain(new.clone()));
        let plan = plan(&all, &last(case.keep), Some(&new), at(26, 0));
        assert_eq!(deleted(&plan), case.deleted, "{}", case.what);
    }
}

#[test]
fn the_new_backup_is_never_deleted() {
    let new = name("db", Mode::Full, None, 5);
    let plan = plan(
        &[Candidate::plain(new.clone())],
        &last(1),
        Some(&new),
        at(26, 0),
    );
    assert!(plan[0].keep);
    assert_eq!(plan[0].reasons[0], "just made");
}

#[test]
fn a_locked_object_is_kept_and_says_until_when() {
    let new = name("db", Mode::Full, None, 5);
    let locked = Candidate {
        locked_until: Some(at(27, 0)),
        ..Candidate::plain(name("db", Mode::Full, None, 1))
    };
    let expired = Candidate {
        locked_until: Some(at(25, 12)),
        ..Candidate::plain(name("db", Mode::Full, None, 2))
    };
    let all = [locked, expired, Candidate::plain(new.clone())];
    let plan = plan(&all, &last(1), Some(&new), at(26, 0));
    assert_eq!(deleted(&plan), vec![2]);
    assert_eq!(plan[2].reason(), "locked until 2026-11-27T00:00:00Z");
}

#[test]
fn the_newest_complete_run_is_never_broken_up() {
    // keep 1: the run of 01:00 is the newest complete one (the run of 05:00 is
    // still going, or failed), so its backup stays beside the new one.
    let new = name("db", Mode::Full, None, 5);
    let in_run = Candidate {
        newest_complete_run: Some("20261125T010000".into()),
        ..Candidate::plain(name("db", Mode::Full, None, 1))
    };
    let all = [
        Candidate::plain(name("db", Mode::Full, None, 0)),
        in_run,
        Candidate::plain(name("db", Mode::Full, None, 3)),
        Candidate::plain(new.clone()),
    ];
    let plan = plan(&all, &last(1), Some(&new), at(26, 0));
    assert_eq!(deleted(&plan), vec![3, 0]);
    let kept = plan
        .iter()
        .find(|d| d.name.timestamp.format("%H").to_string() == "01")
        .unwrap();
    assert_eq!(kept.reason(), "in the newest complete run 20261125T010000");
}

/// A nightly backup at 02:00 UTC every day of `days` days from `from`.
fn nightly(from: DateTime<Utc>, days: i64) -> Vec<Candidate> {
    (0..days)
        .map(|d| {
            Candidate::plain(BackupName::new(
                "db",
                Mode::Full,
                None,
                from + Duration::days(d),
            ))
        })
        .collect()
}

fn kept_dates(plan: &[Decision]) -> Vec<String> {
    plan.iter()
        .filter(|d| d.keep)
        .map(|d| d.name.timestamp.format("%Y-%m-%d").to_string())
        .collect()
}

/// The worked example of docs/retention.md: a year (and a bit) of nightly backups.
#[test]
fn gfs_over_a_year_of_nightly_backups() {
    let from = Utc.with_ymd_and_hms(2025, 1, 1, 2, 0, 0).unwrap();
    // 2025-01-01 .. 2026-01-31: 396 nightly backups.
    let history = nightly(from, 396);
    let policy = Policy {
        daily: 7,
        weekly: 4,
        monthly: 12,
        yearly: 3,
        ..Policy::default()
    };
    let plan = plan(&history, &policy, None, at(26, 0));
    let kept = kept_dates(&plan);
    assert_eq!(
        kept,
        [
            // daily 7 (2026-01-31 is also the newest, weekly, monthly, yearly)
            "2026-01-31",
            "2026-01-30",
            "2026-01-29",
            "2026-01-28",
            "2026-01-27",
            "2026-01-26",
            "2026-01-25",
            // weekly 4: the Sundays ending the ISO weeks before
            "2026-01-18",
            "2026-01-11",
            // monthly 12: the last day of each earlier month
            "2025-12-31",
            "2025-11-30",
            "2025-10-31",
            "2025-09-30",
            "2025-08-31",
            "2025-07-31",
            "2025-06-30",
            "2025-05-31",
            "2025-04-30",
            "2025-03-31",
            "2025-02-28",
        ],
        "{plan:#?}"
    );
    let reason = |date: &str| {
        plan.iter()
            .find(|d| d.name.timestamp.format("%Y-%m-%d").to_string() == date)
            .map(Decision::reason)
            .unwrap_or_default()
    };
    assert_eq!(
        reason("2026-01-31"),
        "newest, daily 2026-01-31, weekly 2026-W05, monthly 2026-01, yearly 2026"
    );
    assert_eq!(reason("2026-01-25"), "daily 2026-01-25, weekly 2026-W04");
    assert_eq!(reason("2025-12-31"), "monthly 2025-12, yearly 2025");
}

#[test]
fn age_rules_delete_nothing_when_backups_stopped() {
    let from = Utc.with_ymd_and_hms(2026, 1, 1, 2, 0, 0).unwrap();
    let history = nightly(from, 60);
    let policy = Policy {
        within: Within::parse("14d").ok(),
        ..Policy::default()
    };
    let soon = plan(&history, &policy, None, from + Duration::days(60));
    let much_later = plan(&history, &policy, None, from + Duration::days(400));
    assert_eq!(soon, much_later, "the clock plays no part");
    assert_eq!(
        kept_dates(&soon).len(),
        15,
        "the newest and the 14 days before it"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn candidate() -> impl Strategy<Value = Candidate> {
        (
            0i64..(3 * 365 * 24),
            0u8..3,
            any::<bool>(),
            0u8..16,
            0u8..10,
            0u8..3,
        )
            .prop_map(|(hours, mode, label, flags, lock, files)| {
                let at =
                    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::hours(hours);
                let mode = [Mode::Full, Mode::Schema, Mode::Data][mode as usize];
                Candidate {
                    group: BackupName::new("db", mode, label.then_some("pre"), at).group(),
                    name: BackupName::new("db", mode, label.then_some("pre"), at),
                    has_dump: files != 1,
                    has_meta: files != 2,
                    verified: flags & 1 == 1 && flags & 4 == 0,
                    pinned: flags & 2 == 2 && flags & 4 == 0,
                    locked_until: (lock == 0).then_some(at + Duration::days(400)),
                    newest_complete_run: (flags & 8 == 8).then(|| "20240101T000000".to_owned()),
                }
            })
    }

    fn history() -> impl Strategy<Value = Vec<Candidate>> {
        proptest::collection::vec(candidate(), 0..60).prop_map(|mut v| {
            // One backup per name, as a directory listing has.
            let mut seen = std::collections::HashSet::new();
            v.retain(|c| seen.insert(c.name.stem()));
            v
        })
    }

    fn policy() -> impl Strategy<Value = Policy> {
        (
            0u32..6,
            0u32..4,
            0u32..9,
            0u32..6,
            0u32..13,
            0u32..4,
            proptest::option::of(1u32..60),
        )
            .prop_map(
                |(last, hourly, daily, weekly, monthly, yearly, days)| Policy {
                    last,
                    hourly,
                    daily,
                    weekly,
                    monthly,
                    yearly,
                    within: days.map(|days| Within {
                        days,
                        ..Within::default()
                    }),
                },
            )
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 6, 1, 0, 0, 0).unwrap()
    }

    fn kept_stems(plan: &[Decision]) -> std::collections::BTreeSet<String> {
        plan.iter()
            .filter(|d| d.keep)
            .map(|d| d.name.stem())
            .collect()
    }

    proptest! {
        #[test]
        fn invariants_hold(history in history(), policy in policy()) {
            let plan = plan(&history, &policy, None, now());
            prop_assert_eq!(plan.len(), history.len());
            let kept = kept_stems(&plan);
            let mut groups: BTreeMap<Group, Vec<&Candidate>> = BTreeMap::new();
            for c in &history {
                groups.entry(c.name.group()).or_default().push(c);
                if c.has_dump && (!c.has_meta || c.pinned) {
                    prop_assert!(kept.contains(&c.name.stem()), "meta-less or pinned {}", c.name.stem());
                }
                if c.locked_until.is_some_and(|u| u > now()) {
                    prop_assert!(kept.contains(&c.name.stem()), "locked {}", c.name.stem());
                }
                if c.has_dump && c.newest_complete_run.is_some() {
                    prop_assert!(kept.contains(&c.name.stem()), "in the newest complete run {}", c.name.stem());
                }
            }
            for members in groups.values() {
                let complete = || members.iter().filter(|c| c.has_dump && c.has_meta);
                if let Some(newest) = complete().max_by_key(|c| c.name.timestamp) {
                    prop_assert!(kept.contains(&newest.name.stem()), "newest");
                }
                if let Some(v) = complete().filter(|c| c.verified).max_by_key(|c| c.name.timestamp) {
                    prop_assert!(kept.contains(&v.name.stem()), "newest verified");
                }
            }
        }

        #[test]
        fn applying_twice_deletes_nothing_more(history in history(), policy in policy()) {
            let first = plan(&history, &policy, None, now());
            let kept = kept_stems(&first);
            let survivors: Vec<Candidate> = history
                .iter()
                .filter(|c| kept.contains(&c.name.stem()))
                .cloned()
                .collect();
            let second = plan(&survivors, &policy, None, now());
            prop_assert!(second.iter().all(|d| d.keep), "{:?}", second.iter().find(|d| !d.keep));
        }

        #[test]
        fn input_order_does_not_matter(history in history(), policy in policy(), seed in any::<u64>()) {
            let mut shuffled = history.clone();
            // A cheap deterministic shuffle.
            let n = shuffled.len();
            for i in 0..n {
                let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % n as u64) as usize;
                shuffled.swap(i, j);
            }
            prop_assert_eq!(plan(&history, &policy, None, now()), plan(&shuffled, &policy, None, now()));
        }

        #[test]
        fn the_clock_only_matters_for_locks(history in history(), policy in policy()) {
            let unlocked: Vec<Candidate> = history
                .iter()
                .map(|c| Candidate { locked_until: None, ..c.clone() })
                .collect();
            let later = now() + Duration::days(365);
            prop_assert_eq!(plan(&unlocked, &policy, None, now()), plan(&unlocked, &policy, None, later));
        }
    }
}
