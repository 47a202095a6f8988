//! The backup set: how backups are named, and the copies on local disk.
//!
//! A backup is two files, `<db>_<mode>[_<label>]_<UTC YYYYmmddTHHMMSS>.dump`
//! (`.dump.age` when encrypted with age) and the same stem with `.meta.json`;
//! it is complete only when both exist.

pub mod fsio;
pub mod local;
pub mod object_lock;
pub mod s3;
pub mod select;
mod stores;

use anyhow::Result;
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

use crate::meta::Meta;
use crate::mode::Mode;

/// One backup as a store lists it: its dump, its meta.json, or both.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: BackupName,
    pub has_dump: bool,
    pub has_meta: bool,
    pub size: u64,
}

/// What retention, prune and unpin need of a place that holds backups (a
/// local directory, an S3 prefix, or a map in tests), so they are written once.
// The futures need not be Send: commands run on the runtime's main task.
#[allow(async_fn_in_trait)]
pub trait BackupStore {
    /// Where the store is, for messages: a directory or `s3://bucket/prefix`.
    fn describe(&self) -> String;
    /// Where a backup's dump is: a path or an `s3://` URI.
    fn dump_location(&self, name: &BackupName) -> String;
    /// Every backup, oldest first.
    async fn list_backups(&self) -> Result<Vec<Listed>>;
    /// A backup's meta.json; None when it has none.
    async fn load_meta(&self, name: &BackupName) -> Result<Option<Meta>>;
    /// Replaces a backup's meta.json (atomically where the store allows).
    async fn store_meta(&self, name: &BackupName, meta: &Meta) -> Result<()>;
    /// Whether objects here can be under S3 Object Lock (asked once per pass).
    async fn can_lock(&self) -> Result<bool> {
        Ok(false)
    }
    /// The S3 Object Lock retain-until of a backup's dump, when the store has one.
    async fn locked_until(&self, _name: &BackupName) -> Result<Option<DateTime<Utc>>> {
        Ok(None)
    }
    /// Removes a backup: the dump first, so an interruption leaves a meta.json
    /// without its dump (debris the next run removes), never the reverse.
    async fn remove_backup(&self, backup: &Listed) -> Result<()>;
    /// The file names of the `--all-databases` run records here ([`crate::runs`]).
    async fn list_runs(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// A run record; None when it does not exist.
    async fn load_run(&self, _file: &str) -> Result<Option<crate::runs::RunRecord>> {
        Ok(None)
    }
    /// Writes a run record (replacing the one of the same run).
    async fn store_run(&self, _record: &crate::runs::RunRecord) -> Result<()> {
        Ok(())
    }
}

const TIMESTAMP_FORMAT: &str = "%Y%m%dT%H%M%S";
/// The dump of an unencrypted backup.
pub const DUMP_SUFFIX: &str = ".dump";
/// The dump of a backup encrypted with age.
pub const AGE_SUFFIX: &str = ".dump.age";

/// `x.dump` -> `("x", false)`, `x.dump.age` -> `("x", true)`; None for other names.
pub fn split_dump_file(file_name: &str) -> Option<(&str, bool)> {
    if let Some(stem) = file_name.strip_suffix(AGE_SUFFIX) {
        return Some((stem, true));
    }
    file_name
        .strip_suffix(DUMP_SUFFIX)
        .map(|stem| (stem, false))
}

/// The meta.json file name of a dump file name (`x.dump[.age]` -> `x.meta.json`).
pub fn meta_file_for(dump_file: &str) -> Option<String> {
    let (stem, _) = split_dump_file(dump_file)?;
    (!stem.is_empty()).then(|| format!("{stem}.meta.json"))
}

/// The parts of a backup's file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupName {
    /// The database name made safe for a file name.
    pub database: String,
    pub mode: Mode,
    pub label: Option<String>,
    pub timestamp: NaiveDateTime,
    /// The dump is age-encrypted (`.dump.age`). Not part of the group: turning
    /// encryption on keeps one retention history, so old plaintext dumps rotate out.
    pub encrypted: bool,
}

/// Retention and "newest" work within a group: same database, mode and label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    pub database: String,
    pub mode: &'static str,
    pub label: Option<String>,
}

impl BackupName {
    pub fn new(database: &str, mode: Mode, label: Option<&str>, at: DateTime<Utc>) -> BackupName {
        BackupName {
            database: safe_database_name(database),
            mode,
            label: label.map(str::to_owned),
            // Whole seconds, as in the file name, so a listed name equals the one made.
            timestamp: at.naive_utc().trunc_subsecs(0),
            encrypted: false,
        }
    }

    /// The same name for an encrypted (`.dump.age`) or plain dump.
    pub fn with_encryption(mut self, encrypted: bool) -> BackupName {
        self.encrypted = encrypted;
        self
    }

    pub fn stem(&self) -> String {
        let mut stem = format!("{}_{}", self.database, self.mode.as_str());
        if let Some(label) = &self.label {
            stem.push('_');
            stem.push_str(label);
        }
        stem.push('_');
        stem.push_str(&self.timestamp.format(TIMESTAMP_FORMAT).to_string());
        stem
    }

    pub fn dump_file(&self) -> String {
        let suffix = if self.encrypted {
            AGE_SUFFIX
        } else {
            DUMP_SUFFIX
        };
        format!("{}{suffix}", self.stem())
    }

    pub fn meta_file(&self) -> String {
        format!("{}.meta.json", self.stem())
    }

    pub fn group(&self) -> Group {
        Group {
            database: self.database.clone(),
            mode: self.mode.as_str(),
            label: self.label.clone(),
        }
    }

    /// Parses a `.dump`, `.dump.age` or `.meta.json` file name; None for anything else.
    /// Labels cannot be a mode name, which keeps `<db>_<mode>_<label>` unambiguous.
    /// A meta.json's name does not say whether its dump is encrypted (`encrypted` false).
    pub fn parse(file_name: &str) -> Option<BackupName> {
        let (stem, encrypted) = split_dump_file(file_name)
            .or_else(|| file_name.strip_suffix(".meta.json").map(|s| (s, false)))?;
        let (rest, ts) = stem.rsplit_once('_')?;
        let timestamp = NaiveDateTime::parse_from_str(ts, TIMESTAMP_FORMAT).ok()?;
        if ts.len() != 15 {
            return None;
        }
        let (rest, last) = rest.rsplit_once('_')?;
        let (database, mode, label) = match Mode::parse(last) {
            Some(mode) => (rest, mode, None),
            None => {
                let (database, mode) = rest.rsplit_once('_')?;
                (database, Mode::parse(mode)?, Some(last.to_owned()))
            }
        };
        if database.is_empty() || label.as_deref().is_some_and(|l| validate_label(l).is_err()) {
            return None;
        }
        Some(BackupName {
            database: database.to_owned(),
            mode,
            label,
            timestamp,
            encrypted,
        })
    }

    /// The timestamp in the name, as UTC.
    pub fn time(&self) -> DateTime<Utc> {
        self.timestamp.and_utc()
    }

    /// The same name one second later (two backups within one second).
    pub fn next_second(&self) -> BackupName {
        BackupName {
            timestamp: self.timestamp + chrono::Duration::seconds(1),
            ..self.clone()
        }
    }
}

/// The database name made safe for a file name, injectively: `[A-Za-z0-9_.-]`
/// is kept, anything else becomes `-`, and when that changed the name a `-`
/// and the first 8 hex digits of the SHA-256 of the real name are appended,
/// so `a b` and `a-b` (or `café` and `cafè`) never share a file name. Names
/// that need no change keep their old file names.
pub fn safe_database_name(name: &str) -> String {
    let safe = legacy_safe_database_name(name);
    if safe == name {
        return safe;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    format!("{safe}-{}", &hex::encode(digest)[..8])
}

/// The lossy name pgbak 0.1 wrote (no suffix): backups named so are still
/// found, with meta.json's `database` telling whose they are.
pub fn legacy_safe_database_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    // A name of dots would be a path component.
    if safe.is_empty() || safe.chars().all(|c| c == '.') {
        format!("db{safe}")
    } else {
        safe
    }
}

/// The backups of one real database, mode and label: what retention prunes
/// and "newest backup" picks from. A file name alone is not enough (names
/// written before the suffix existed are lossy), so meta.json's `database`
/// decides whenever it can be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The real database name (as in meta.json), not its file-name form.
    pub database: String,
    pub mode: Mode,
    pub label: Option<String>,
}

impl Owner {
    pub fn new(database: &str, mode: Mode, label: Option<&str>) -> Owner {
        Owner {
            database: database.to_owned(),
            mode,
            label: label.map(str::to_owned),
        }
    }

    /// The file name could be one of this group's: same mode and label, and
    /// the database part is this database's safe name or its pre-suffix name.
    /// Only these need their meta.json read.
    pub fn may_own(&self, name: &BackupName) -> bool {
        name.mode == self.mode && name.label == self.label && may_be_backup_of(&self.database, name)
    }

    /// The backup is this group's (see [`is_backup_of`]).
    pub fn owns(&self, name: &BackupName, meta_database: Option<&str>) -> bool {
        self.may_own(name) && is_backup_of(&self.database, name, meta_database)
    }
}

/// The file name's database part is `database`'s safe name or the lossy name
/// older versions wrote for it.
pub fn may_be_backup_of(database: &str, name: &BackupName) -> bool {
    name.database == safe_database_name(database)
        || name.database == legacy_safe_database_name(database)
}

/// The backup is of `database`: its meta.json says so, or, without a
/// readable meta.json, its name is `database`'s current (injective) one.
pub fn is_backup_of(database: &str, name: &BackupName, meta_database: Option<&str>) -> bool {
    may_be_backup_of(database, name)
        && match meta_database {
            Some(recorded) => recorded == database,
            None => name.database == safe_database_name(database),
        }
}

/// Labels are `[A-Za-z0-9.-]+` and not a mode name.
pub fn validate_label(label: &str) -> Result<(), String> {
    if label.is_empty()
        || label.len() > 64
        || !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(format!(
            "invalid label {label:?}: use 1-64 of A-Z a-z 0-9 . -"
        ));
    }
    if Mode::parse(label).is_some() || label.chars().all(|c| c == '.') {
        return Err(format!(
            "invalid label {label:?}: it may not be a mode name"
        ));
    }
    Ok(())
}

/// A single path component that is not `.` or `..` (safe to join to a directory).
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && name.len() <= 255
}

#[cfg(test)]
mod tests {
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
}
