//! Table tests of the verdict on a group ([`super`]).
use super::*;
use chrono::TimeZone;

pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

pub(crate) fn group() -> Group {
    Group {
        database: "app".into(),
        mode: "full",
        label: None,
        server: None,
    }
}

/// A backup `hours` old, verified (passed or not) when given.
pub(crate) fn seen(hours: i64, verified: Option<bool>) -> Seen {
    let at = now() - chrono::TimeDelta::hours(hours);
    Seen {
        name: format!("app_full_{}", at.format("%Y%m%dT%H%M%S")),
        database: Some("app".into()),
        at,
        size_bytes: 1000,
        rows: Some(50),
        verified: verified.map(|ok| (Some(at + chrono::TimeDelta::minutes(5)), ok)),
        pinned: None,
        locked_until: None,
        server: None,
        offsite: None,
        timing: None,
    }
}

pub(crate) fn limits() -> Limits {
    Limits {
        max_age: Some(Duration::from_secs(26 * 3600)),
        max_verified_age: Some(Duration::from_secs(8 * 86_400)),
        max_rto: None,
    }
}

#[test]
fn groups_are_judged_by_age_and_verification() {
    // (backups newest first, limits, status, problems)
    let off = Limits {
        max_age: None,
        max_verified_age: None,
        max_rto: None,
    };
    let cases: Vec<(&str, Vec<Seen>, Limits, &str, usize)> = vec![
        (
            "fresh and verified",
            vec![seen(5, Some(true))],
            limits(),
            "ok",
            0,
        ),
        (
            "fresh, verified two days ago",
            vec![seen(5, None), seen(53, Some(true))],
            limits(),
            "ok",
            0,
        ),
        ("stale", vec![seen(30, Some(true))], limits(), "stale", 1),
        (
            "never verified",
            vec![seen(5, None)],
            limits(),
            "unverified",
            1,
        ),
        (
            "verified too long ago",
            vec![seen(5, None), seen(24 * 9, Some(true))],
            limits(),
            "unverified",
            1,
        ),
        (
            "last verify failed, an older one passed",
            vec![seen(5, Some(false)), seen(29, Some(true))],
            limits(),
            "failed",
            1,
        ),
        (
            "newest unverified, the one before failed",
            vec![seen(5, None), seen(29, Some(false))],
            limits(),
            "failed",
            2,
        ),
        (
            "failed and stale and unverified",
            vec![seen(30, Some(false))],
            limits(),
            "failed",
            3,
        ),
        ("nothing", vec![], limits(), "missing", 1),
        ("limits off", vec![seen(24 * 40, None)], off, "ok", 0),
    ];
    for (what, backups, limits, status, problems) in cases {
        let r = assess(&group(), &backups, backups.len(), 0, limits, now());
        assert_eq!(r.status, status, "{what}: {r:#?}");
        assert_eq!(r.ok, status == "ok", "{what}");
        assert_eq!(r.problems.len(), problems, "{what}: {:?}", r.problems);
    }
}

#[test]
fn a_backup_dated_in_the_future_and_one_not_offsite_are_problems() {
    let mut ahead = seen(-24 * 30, Some(true));
    ahead.name = "app_full_ahead".into();
    let backups = vec![ahead.clone(), seen(5, Some(true))];
    let r = assess(&group(), &backups, 2, 0, limits(), now());
    assert_eq!(r.status, "future", "{r:#?}");
    assert_eq!(
        r.problems.len(),
        1,
        "judged by the newest one not ahead: {r:#?}"
    );
    assert!(r.problems[0].contains("app_full_ahead"), "{:?}", r.problems);
    assert_eq!(r.newest.as_ref().unwrap().age_seconds, 5 * 3600);
    // Only a future backup: no other problem is invented.
    let r = assess(&group(), &[ahead], 1, 0, limits(), now());
    assert_eq!((r.status, r.problems.len()), ("future", 1), "{r:#?}");
    // A few minutes ahead is a clock's ordinary drift.
    let r = assess(&group(), &[seen(0, Some(true))], 1, 0, limits(), now());
    assert!(r.ok);

    let mut local_only = seen(5, Some(true));
    local_only.offsite = Some(false);
    let r = assess(&group(), &[local_only.clone()], 1, 0, limits(), now());
    assert_eq!(r.status, "not offsite", "{r:#?}");
    local_only.verified = None;
    let r = assess(&group(), &[local_only], 1, 0, limits(), now());
    assert_eq!(r.status, "unverified", "worse problems first: {r:#?}");
    assert_eq!(r.problems.len(), 2);
}

#[test]
fn an_unknown_servers_history_continued_by_a_server_is_superseded() {
    let on = |server: Option<&str>, hours: i64| {
        let mut r = assess(&group(), &[seen(hours, Some(true))], 1, 0, limits(), now());
        r.server = server.map(str::to_owned);
        r
    };
    // Old unnamed backups, 40h old (stale), continued by db-1's 5h old one.
    let mut reports = vec![on(None, 40), on(Some("db-1"), 5)];
    assert_eq!(reports[0].status, "stale");
    supersede(&mut reports);
    assert_eq!(reports[0].status, "superseded");
    assert!(reports[0].ok && reports[0].problems.is_empty());
    assert_eq!(reports[0].superseded_by.as_deref(), Some("db-1"));
    assert_eq!(reports[1].status, "ok");
    // Still written to (newer than the server's): judged as before.
    let mut reports = vec![on(None, 1), on(Some("db-1"), 5)];
    supersede(&mut reports);
    assert_eq!(reports[0].superseded_by, None);
    // Another database's group supersedes nothing.
    let mut other = on(Some("db-1"), 5);
    other.database = "other".into();
    let mut reports = vec![on(None, 40), other];
    supersede(&mut reports);
    assert_eq!(reports[0].status, "stale");
}

#[test]
fn meta_json_is_read_only_as_far_back_as_needed() {
    let window = Some(now() - chrono::TimeDelta::days(8));
    let at = |hours: i64| now() - chrono::TimeDelta::hours(hours);
    let cases = [
        ("the newest", vec![], at(2), window, true),
        (
            "the one before",
            vec![seen(2, Some(true))],
            at(26),
            window,
            true,
        ),
        (
            "verified nightly: two suffice",
            vec![seen(2, Some(true)), seen(26, Some(true))],
            at(50),
            window,
            false,
        ),
        (
            "last verify failed: on to a passed one",
            vec![seen(2, Some(false)), seen(26, None)],
            at(50),
            window,
            true,
        ),
        (
            "never verified: up to the window's edge",
            vec![seen(2, None), seen(26, None)],
            at(24 * 7),
            window,
            true,
        ),
        (
            "never verified: not beyond it",
            vec![seen(2, None), seen(26, None)],
            at(24 * 9),
            window,
            false,
        ),
        (
            "verified age not checked",
            vec![seen(2, None), seen(26, None)],
            at(50),
            None,
            false,
        ),
    ];
    for (what, read, at, window, want) in cases {
        assert_eq!(needs_meta(&read, at, window), want, "{what}");
    }
}

#[test]
fn limits_read_as_written() {
    for (secs, text) in [
        (26 * 3600, "26h"),
        (8 * 86_400, "8d"),
        (5400, "90m"),
        (45, "45s"),
        (0, "0s"),
    ] {
        assert_eq!(human(Duration::from_secs(secs)), text);
    }
}

#[test]
fn the_report_names_the_backups_and_the_trend() {
    let mut backups: Vec<Seen> = (0..7).map(|d| seen(5 + 24 * d, None)).collect();
    backups[2].verified = Some((None, true));
    backups[0].rows = Some(20);
    let r = assess(&group(), &backups, 7, 1, limits(), now());
    assert!(r.ok, "{r:#?}");
    assert_eq!(r.newest.as_ref().unwrap().age_seconds, 5 * 3600);
    assert_eq!(r.newest_verified.as_ref().unwrap().name, backups[2].name);
    assert!(r.last_verify.as_ref().unwrap().passed);
    assert_eq!(r.trend.len(), TREND);
    assert_eq!(r.trend[0].rows, Some(20));
    assert_eq!((r.backups, r.incomplete), (7, 1));
    let stale = assess(&group(), &[seen(30, Some(true))], 1, 0, limits(), now());
    assert_eq!(
        stale.problems,
        ["newest backup is 30h old (limit 26h)"],
        "{stale:#?}"
    );
    let missing = assess(&group(), &[], 0, 2, limits(), now());
    assert_eq!(missing.problems, ["no complete backup (2 incomplete)"]);
}

#[test]
fn pins_and_the_newest_lock_are_reported_but_do_not_fail_a_group() {
    let mut backups = vec![seen(5, Some(true)), seen(29, Some(true)), seen(53, None)];
    backups[1].pinned = Some(Pin {
        pinned_at: "2026-11-24T08:00:00Z".into(),
        reason: "total rows 100 -> 1".into(),
    });
    backups[0].locked_until = Some(now() + chrono::TimeDelta::days(30));
    backups[2].locked_until = Some(now() + chrono::TimeDelta::days(28));
    let r = assess(&group(), &backups, 3, 0, limits(), now());
    assert!(r.ok, "{r:#?}");
    assert_eq!(r.pinned.len(), 1);
    assert_eq!(r.pinned[0].name, backups[1].name);
    assert_eq!(r.pinned[0].reason, "total rows 100 -> 1");
    assert_eq!(r.locked_until.as_deref(), Some("2026-12-25T12:00:00Z"));
    // A retain-until in the past is no lock.
    backups[0].locked_until = Some(now() - chrono::TimeDelta::hours(1));
    let r = assess(&group(), &backups, 3, 0, limits(), now());
    assert_eq!(r.locked_until, None);
}

#[test]
fn max_rto_judges_the_newest_verified_restore_and_fails_the_unmeasured() {
    let timed = |hours: i64, restore_seconds: f64| Seen {
        timing: Some(crate::meta::VerifyTiming {
            restore_seconds,
            verify_seconds: 1.0,
            jobs: 4,
            bytes: 1000,
        }),
        ..seen(hours, Some(true))
    };
    let rto = Limits {
        max_rto: Some(Duration::from_secs(60)),
        ..limits()
    };
    // (backups newest first, limits, status, the restore seconds of the restore test)
    type Case = (&'static str, Vec<Seen>, Limits, &'static str, Option<f64>);
    let cases: Vec<Case> = vec![
        (
            "within the limit",
            vec![timed(5, 59.5)],
            rto,
            "ok",
            Some(59.5),
        ),
        (
            "slower",
            vec![timed(5, 61.0)],
            rto,
            "slow restore",
            Some(61.0),
        ),
        (
            "no limit",
            vec![timed(5, 610.0)],
            limits(),
            "ok",
            Some(610.0),
        ),
        // The newest verified restore counts: an older slow one does not.
        (
            "newest counts",
            vec![timed(5, 10.0), timed(29, 600.0)],
            rto,
            "ok",
            Some(10.0),
        ),
        (
            "verified without timing",
            vec![seen(5, Some(true))],
            rto,
            "unmeasured",
            None,
        ),
        (
            "never verified",
            vec![seen(5, None)],
            rto,
            "unverified",
            None,
        ),
    ];
    for (what, backups, limits, status, seconds) in cases {
        let r = assess(&group(), &backups, backups.len(), 0, limits, now());
        assert_eq!(r.status, status, "{what}: {r:#?}");
        assert_eq!(
            r.last_restore_test.as_ref().and_then(|t| t.restore_seconds),
            seconds,
            "{what}"
        );
    }
    let never = assess(&group(), &[seen(5, None)], 1, 0, rto, now());
    assert!(
        never
            .problems
            .iter()
            .any(|p| p.contains("restore time never measured")),
        "{never:#?}"
    );
    let slow = assess(&group(), &[timed(5, 61.0)], 1, 0, rto, now());
    assert_eq!(
        slow.problems,
        [format!(
            "the newest verified restore ({}) took 61.0s with 4 job(s) (limit 1m)",
            slow.newest.as_ref().unwrap().name
        )]
    );
}
