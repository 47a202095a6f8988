//! The backup set: how backups are named, and the one [`Store`] type every
//! command reads and writes them through (a directory, an S3 prefix),
//! built once at dispatch ([`Stores`], [`Place::open`]).
//!
//! A backup is two files, `<db>_<mode>[_<label>]_srv-<tag>_<UTC YYYYmmddTHHMMSS>.dump`
//! (`.dump.age` when encrypted with age) and the same stem with `.meta.json`;
//! it is complete only when both exist. `<tag>` names the server (many servers
//! share one prefix, and each has a `postgres` database); backups written
//! before it existed have no `srv-` part and belong to an unknown server.
//! A verify's verdict may sit beside them as `<stem>.verify.json` ([`verdict`]).

pub mod fsio;
pub mod local;
#[cfg(test)]
pub mod memory;
pub mod object_lock;
pub mod s3;
pub mod select;
mod store;
pub mod verdict;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

pub use store::{
    Address, Chunks, Destination, DestinationPlace, Fetched, Listing, Overrides, Place, Store,
    Stores, BUCKET, LOCAL,
};

use crate::meta::ServerIdentity;
use crate::mode::Mode;

/// One backup as a store lists it: its dump, its meta.json, or both.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: BackupName,
    pub has_dump: bool,
    pub has_meta: bool,
    pub size: u64,
    /// A `<stem>.verify.json` verdict sits beside it.
    pub has_verdict: bool,
    /// The dump's storage class, where the store has them.
    pub storage_class: Option<String>,
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
    /// The server's tag ([`server_tag`]); None in names written before
    /// pgbak recorded the server (an unknown server).
    pub server: Option<String>,
    pub timestamp: NaiveDateTime,
    /// The dump is age-encrypted (`.dump.age`). Not part of the group: turning
    /// encryption on keeps one retention history, so old plaintext dumps rotate out.
    pub encrypted: bool,
}

/// Retention and "newest" work within a group: same database, mode and
/// label, of the same server (None: backups that do not say, one group).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    pub database: String,
    pub mode: &'static str,
    pub label: Option<String>,
    pub server: Option<String>,
}

/// What a file name says of the server: `srv-` and 8 hex digits of the
/// SHA-256 of its name and system identifier. Both take part, so a clone
/// made from another server's base backup (same system identifier, another
/// name) never shares a group with it: servers kept apart wrongly only keep
/// more, servers merged wrongly would delete each other's backups.
pub fn server_tag(server: &ServerIdentity) -> String {
    use sha2::Digest;
    let key = format!(
        "{}\n{}",
        server.name,
        server.system_identifier.as_deref().unwrap_or("")
    );
    hex::encode(sha2::Sha256::digest(key.as_bytes()))[..SERVER_TAG_LEN].to_owned()
}

const SERVER_TAG_LEN: usize = 8;
const SERVER_TAG_PREFIX: &str = "srv-";

/// `srv-1a2b3c4d` -> `1a2b3c4d`; None for anything else.
fn parse_server_tag(part: &str) -> Option<&str> {
    let hex = part.strip_prefix(SERVER_TAG_PREFIX)?;
    (hex.len() == SERVER_TAG_LEN && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then_some(hex)
}

impl BackupName {
    pub fn new(database: &str, mode: Mode, label: Option<&str>, at: DateTime<Utc>) -> BackupName {
        BackupName {
            database: safe_database_name(database),
            mode,
            label: label.map(str::to_owned),
            server: None,
            // Whole seconds, as in the file name, so a listed name equals the one made.
            timestamp: at.naive_utc().trunc_subsecs(0),
            encrypted: false,
        }
    }

    /// The same name for the server with this tag ([`server_tag`]).
    pub fn with_server(mut self, tag: Option<String>) -> BackupName {
        self.server = tag;
        self
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
        if let Some(server) = &self.server {
            stem.push('_');
            stem.push_str(SERVER_TAG_PREFIX);
            stem.push_str(server);
        }
        stem.push('_');
        stem.push_str(&self.timestamp.format(TIMESTAMP_FORMAT).to_string());
        stem
    }

    /// The verdict beside the backup: `<stem>.verify.json`.
    pub fn verdict_file(&self) -> String {
        format!("{}{}", self.stem(), verdict::VERDICT_SUFFIX)
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
            server: self.server.clone(),
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
        let (mut rest, mut last) = rest.rsplit_once('_')?;
        let server = parse_server_tag(last).map(str::to_owned);
        if server.is_some() {
            (rest, last) = rest.rsplit_once('_')?;
        }
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
            server,
            timestamp,
            encrypted,
        })
    }

    /// Parses a verdict's file name (`<stem>.verify.json`) into its backup's name.
    pub fn parse_verdict(file_name: &str) -> Option<BackupName> {
        let stem = file_name.strip_suffix(verdict::VERDICT_SUFFIX)?;
        BackupName::parse(&format!("{stem}.meta.json"))
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
    if parse_server_tag(label).is_some() {
        return Err(format!(
            "invalid label {label:?}: srv- and 8 hex digits name a server in file names"
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
mod tests;
