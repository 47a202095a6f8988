//! Names, groups and owners of backups: table tests of the pure parts of [`super`].
use super::*;
use chrono::TimeZone;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 2, 0, 0).unwrap()
}

#[test]
fn names_round_trip() {
    let cases = [
        ("enterprise_agents", Mode::Full, None),
        ("enterprise_agents", Mode::Schema, Some("pre-migration")),
        ("a_full_b", Mode::Data, Some("v1.2")),
        ("x", Mode::Full, Some("full2")),
    ];
    for (db, mode, label) in cases {
        let name = BackupName::new(db, mode, label, at());
        assert_eq!(BackupName::parse(&name.dump_file()), Some(name.clone()));
        assert_eq!(BackupName::parse(&name.meta_file()), Some(name.clone()));
        let sealed = name.with_encryption(true);
        assert!(sealed.dump_file().ends_with(".dump.age"));
        assert_eq!(BackupName::parse(&sealed.dump_file()), Some(sealed.clone()));
        assert_eq!(
            BackupName::parse(&sealed.meta_file()).map(|n| n.group()),
            Some(sealed.group())
        );
    }
    assert_eq!(split_dump_file("x.dump.age"), Some(("x", true)));
    assert_eq!(split_dump_file("x.dump"), Some(("x", false)));
    assert_eq!(split_dump_file("x.age"), None);
    assert_eq!(meta_file_for("x.dump.age").as_deref(), Some("x.meta.json"));
    assert_eq!(meta_file_for(".dump"), None);
    assert_eq!(
        BackupName::new("enterprise_agents", Mode::Full, None, at()).dump_file(),
        "enterprise_agents_full_20261125T020000.dump"
    );
}

#[test]
fn servers_take_part_in_names_and_groups() {
    let one = ServerIdentity {
        name: "db-one:5432".into(),
        system_identifier: Some("7312345678901234567".into()),
    };
    let clone = ServerIdentity {
        name: "db-clone:5432".into(),
        ..one.clone()
    };
    let unreadable = ServerIdentity {
        system_identifier: None,
        ..one.clone()
    };
    let tags = [
        server_tag(&one),
        server_tag(&clone),
        server_tag(&unreadable),
    ];
    assert_eq!(tags[0], server_tag(&one), "stable");
    assert!(tags[0] != tags[1] && tags[0] != tags[2] && tags[1] != tags[2]);
    let plain = BackupName::new("postgres", Mode::Full, None, at());
    let mine = plain.clone().with_server(Some(tags[0].clone()));
    let theirs = plain.clone().with_server(Some(tags[1].clone()));
    // Two servers' `postgres` backups of the same second: two names, two groups.
    assert_ne!(mine.dump_file(), theirs.dump_file());
    assert_ne!(mine.group(), theirs.group());
    assert_ne!(
        mine.group(),
        plain.group(),
        "unknown server: a group of its own"
    );
    assert_eq!(
        mine.dump_file(),
        format!("postgres_full_srv-{}_20261125T020000.dump", tags[0])
    );
    for name in [&mine, &theirs, &plain] {
        assert_eq!(BackupName::parse(&name.dump_file()).as_ref(), Some(name));
        assert_eq!(BackupName::parse(&name.meta_file()).as_ref(), Some(name));
        assert_eq!(
            BackupName::parse_verdict(&name.verdict_file()).as_ref(),
            Some(name)
        );
        assert_eq!(
            BackupName::parse(&name.verdict_file()),
            None,
            "a verdict is not a backup"
        );
    }
    // `*_full_*.dump` still matches, and the timestamp stays the last part.
    let glob = glob::Pattern::new("*_full_*.dump").unwrap();
    assert!(glob.matches(&mine.dump_file()));
    assert!(mine.stem().ends_with("_20261125T020000"));
    let labelled = BackupName::new("a_b", Mode::Schema, Some("pre-migration"), at())
        .with_server(Some(tags[0].clone()));
    assert_eq!(BackupName::parse(&labelled.dump_file()), Some(labelled));
    assert!(validate_label(&format!("srv-{}", tags[0])).is_err());
    assert!(validate_label("srv-migration").is_ok());
}

#[test]
fn odd_database_names_become_safe_file_names() {
    assert_eq!(
        legacy_safe_database_name("odd db \"name\""),
        "odd-db--name-"
    );
    assert_eq!(legacy_safe_database_name("../etc"), "..-etc");
    assert_eq!(legacy_safe_database_name(".."), "db..");
    assert_eq!(legacy_safe_database_name("Ünïcode"), "-n-code");
    for (real, safe) in [
        ("enterprise_agents", "enterprise_agents"),
        ("a-b", "a-b"),
        ("v1.2", "v1.2"),
    ] {
        assert_eq!(
            safe_database_name(real),
            safe,
            "unchanged names keep their file names"
        );
    }
    for name in ["odd db \"name\"", "../etc", "..", "Ünïcode", "a b", ""] {
        let safe = safe_database_name(name);
        assert!(safe.starts_with(&legacy_safe_database_name(name)), "{safe}");
        assert_eq!(
            safe.len(),
            legacy_safe_database_name(name).len() + 9,
            "{safe}"
        );
        assert!(is_plain_file_name(&safe) && !safe.contains('_'), "{safe}");
    }
    let name = BackupName::new("../../x", Mode::Full, None, at());
    assert!(is_plain_file_name(&name.dump_file()));
}

#[test]
fn names_that_sanitising_collapses_stay_apart() {
    let pairs = [
        ("a b", "a-b"),
        ("café", "cafè"),
        ("kunde müller", "kunde möller"),
        ("данные", "дадные"),
        ("a\"b", "a'b"),
    ];
    for (one, other) in pairs {
        assert_eq!(
            legacy_safe_database_name(one),
            legacy_safe_database_name(other),
            "the old names collided: {one} / {other}"
        );
        assert_ne!(
            safe_database_name(one),
            safe_database_name(other),
            "{one} / {other}"
        );
        let a = BackupName::new(one, Mode::Full, None, at());
        let b = BackupName::new(other, Mode::Full, None, at());
        assert_ne!(a.group(), b.group(), "{one} / {other}");
        // Stable: the same name always gets the same file name.
        assert_eq!(a, BackupName::new(one, Mode::Full, None, at()));
        assert_eq!(BackupName::parse(&a.dump_file()), Some(a));
    }
}

#[test]
fn owners_check_meta_json_and_accept_old_names() {
    let owner = Owner::new("a b", Mode::Full, None);
    let new_name = BackupName::new("a b", Mode::Full, None, at());
    let old_name = BackupName {
        database: "a-b".into(),
        ..new_name.clone()
    };
    let other_db = BackupName::new("a-b", Mode::Full, None, at());
    assert_eq!(old_name, other_db, "the old name of `a b` is `a-b`'s name");
    assert!(owner.owns(&new_name, Some("a b")));
    assert!(owner.owns(&new_name, None));
    assert!(owner.owns(&old_name, Some("a b")), "an old backup of `a b`");
    assert!(
        !owner.owns(&old_name, None),
        "no meta.json: the name says `a-b`"
    );
    assert!(!owner.owns(&other_db, Some("a-b")));
    let theirs = Owner::new("a-b", Mode::Full, None);
    assert!(theirs.owns(&other_db, Some("a-b")));
    assert!(!theirs.owns(&old_name, Some("a b")), "meta.json says `a b`");
    assert!(!theirs.owns(&new_name, Some("a b")));
    let schema = BackupName::new("a b", Mode::Schema, None, at());
    assert!(!owner.owns(&schema, Some("a b")));
    let labelled = BackupName::new("a b", Mode::Full, Some("x"), at());
    assert!(!owner.owns(&labelled, Some("a b")));
}

#[test]
fn other_files_are_not_backups() {
    for file in [
        "notes.txt",
        "x_full_2026.dump",
        "x_full_20261125T020000.dump.partial",
        "x_full_20261125T020000.dump.age.partial",
        "x_full_20261125T020000.age",
        "x_weekly_20261125T020000.dump",
        "_full_20261125T020000.dump",
        "x_full_bad_label!_20261125T020000.dump",
    ] {
        assert_eq!(BackupName::parse(file), None, "{file}");
    }
}

#[test]
fn labels_are_checked() {
    assert!(validate_label("pre-migration").is_ok());
    for bad in ["", "a_b", "a/b", "full", "..", "a b"] {
        assert!(validate_label(bad).is_err(), "{bad}");
    }
}
