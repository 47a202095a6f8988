//! meta.json: what was dumped, from which server, with which checksum. Written
//! atomically beside every `.dump`; verify, restore, list and retention read it.
//! Operators script against it, so key names are fixed (`format_version` 1).
//!
//! Compatibility: a pgbak reads every format from [`OLDEST_READABLE_FORMAT`]
//! to [`FORMAT_VERSION`] (new fields are optional, so older files still read).
//! A newer format is refused as a usage error (exit 2) naming both versions
//! before any other field is looked at: its fields may mean something this
//! pgbak does not know, and a backup misread is worse than one not read.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::mode::Mode;
use crate::storage::fsio;

pub const FORMAT_VERSION: u32 = 1;
/// The oldest meta.json format this pgbak reads: every released format from
/// here to [`FORMAT_VERSION`] reads (README, "Versions and compatibility").
pub const OLDEST_READABLE_FORMAT: u32 = 1;
/// A meta.json larger than this is not ours: refuse it rather than read it.
const MAX_META_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRows {
    pub schema: String,
    pub name: String,
    /// Exact count in the dump's snapshot; null for schema-only backups.
    pub rows: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
    pub storage_class: String,
}

/// How the dump is encrypted (client-side, before it reached disk or S3). The
/// top-level `sha256`/`size_bytes` are then those of the stored ciphertext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    /// Always `age` (<https://age-encryption.org/v1>).
    pub format: String,
    /// The public keys it was encrypted to (`age1...`, `ssh-ed25519 AAAA...`):
    /// any one matching identity decrypts it.
    pub recipients: Vec<String>,
    /// SHA-256 and size of the plaintext pg_dump archive.
    pub plaintext_sha256: String,
    pub plaintext_size_bytes: u64,
}

/// The result of the last `pgbak verify` of this backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub verified_at: String,
    pub passed: bool,
    pub pgbak_version: String,
    /// The names of the checks that failed (as verify prints them); absent when it passed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<String>,
}

/// Why retention may not delete this backup until an operator runs `pgbak unpin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    pub pinned_at: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub format_version: u32,
    pub database: String,
    pub mode: Mode,
    pub label: Option<String>,
    pub file: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_seconds: f64,
    pub compression: String,
    pub server_version: String,
    pub pg_dump_version: String,
    pub alembic_revision: Option<String>,
    pub extensions: BTreeMap<String, String>,
    pub tables: Vec<TableRows>,
    pub host: String,
    pub pgbak_version: String,
    pub s3: Option<S3Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Dumped from a hot standby (written only when true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standby: bool,
    /// Unlogged tables (`schema.table`) whose rows pg_dump skips on a standby:
    /// their definitions are in the dump, their rows are not (0 in `tables`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlogged_tables_skipped: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Pin>,
    /// The database's own properties (owner, locale, settings, ACL), which
    /// pg_dump without `--create` leaves out; restore `--create-db` re-applies them.
    /// Absent in backups made before pgbak recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_properties: Option<DatabaseProperties>,
    /// Roles the dump's objects depend on (owners, grantees, policy roles):
    /// a restore with owners needs every one of them on the target.
    /// Absent (None) in backups made before pgbak recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// The `pgbak backup --all-databases` run this backup belongs to (its
    /// start, `YYYYmmddTHHMMSS` UTC): the globals and databases of one run share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_run: Option<String>,
    /// Only in a globals backup (mode `globals`): what pg_dumpall could read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<GlobalsInfo>,
    /// null for a plaintext dump (also when read from a meta.json written before encryption existed).
    #[serde(default)]
    pub encryption: Option<Encryption>,
    /// Indexes, constraints, triggers, row-level security and sequences as they
    /// were in the dump's snapshot; verify compares the restored copy with them.
    /// Absent in data-only backups and in backups made before pgbak recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_objects: Option<crate::pg::catalog::Catalog>,
}

/// Database-level properties, as read from pg_database and pg_db_role_setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseProperties {
    pub owner: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// `libc`, `icu` or `builtin`.
    pub locale_provider: String,
    /// The ICU (or builtin) locale, when the provider is not libc.
    pub locale: Option<String>,
    /// `ALTER DATABASE ... SET` and `ALTER ROLE ... IN DATABASE ... SET`.
    pub settings: Vec<DatabaseSetting>,
    /// The database ACL; None means the default privileges.
    pub acl: Option<Vec<DatabaseGrant>>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseSetting {
    /// The role of `ALTER ROLE r IN DATABASE`; None for `ALTER DATABASE`.
    pub role: Option<String>,
    pub name: String,
    /// As stored in pg_db_role_setting (list settings already quoted).
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseGrant {
    /// A role name, or `PUBLIC`.
    pub grantee: String,
    /// `CONNECT`, `CREATE` or `TEMPORARY`.
    pub privilege: String,
    pub grantable: bool,
}

/// What a globals backup holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalsInfo {
    /// False with `--no-role-passwords`, or when the server refused to let
    /// this user read pg_authid (managed services): roles restore without passwords.
    pub role_passwords: bool,
    /// Why passwords are missing, in words; None when they are there.
    pub note: Option<String>,
    /// The databases the run dumped (with `--all-databases`).
    #[serde(default)]
    pub databases: Vec<String>,
}

impl Meta {
    /// Reads and checks a meta.json: bounded size, our format version, a file
    /// name that stays inside its directory, a well-formed checksum.
    pub fn read(path: &Path) -> Result<Meta> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if len > MAX_META_BYTES {
            bail!(
                "{} is {len} bytes; a meta.json is never that large",
                path.display()
            );
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Meta::parse(&text).with_context(|| format!("reading {}", path.display()))
    }

    /// Parses and validates meta.json text: its format first (a newer one
    /// is exit 2), then the fields.
    pub fn parse(text: &str) -> Result<Meta> {
        check_format(text)?;
        let meta: Meta = serde_json::from_str(text).context("not a pgbak meta.json")?;
        let dump = crate::storage::split_dump_file(&meta.file);
        if !crate::storage::is_plain_file_name(&meta.file) || dump.is_none_or(|(s, _)| s.is_empty())
        {
            bail!(
                "meta.json names the file {:?}, which is not a plain .dump or .dump.age file name",
                meta.file
            );
        }
        let encrypted_name = dump.is_some_and(|(_, age)| age);
        if encrypted_name != meta.encryption.is_some() {
            bail!(
                "meta.json names the file {:?} but {} an encryption section",
                meta.file,
                if encrypted_name { "has no" } else { "has" }
            );
        }
        if meta.sha256.len() != 64 || !meta.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("meta.json has a malformed sha256");
        }
        Ok(meta)
    }

    /// Writes `path` atomically (temp file, fsync, rename, fsync of the directory), mode 0600.
    pub fn write(&self, path: &Path) -> Result<()> {
        fsio::write_atomic(path, &self.to_json()?)
    }

    /// The document as written to disk and to S3: pretty JSON and a newline.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut json = serde_json::to_vec_pretty(self).context("encoding meta.json")?;
        json.push(b'\n');
        Ok(json)
    }
}

/// The mark on the error of a meta.json written in a newer format than this
/// pgbak reads (under it, the usage error that makes it exit 2): verify,
/// restore, list and check branch on it with [`is_newer_format`].
#[derive(Debug)]
pub struct NewerFormat;

impl std::fmt::Display for NewerFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a backup written by a newer pgbak")
    }
}

/// The error (under any context) is a meta.json in a newer format.
pub fn is_newer_format(err: &anyhow::Error) -> bool {
    err.downcast_ref::<NewerFormat>().is_some()
}

/// Only the version, read before the rest: a newer format's other fields
/// are never interpreted.
#[derive(Deserialize)]
struct Format {
    format_version: u64,
}

/// The meta.json's `format_version` is one this pgbak reads; a newer one is
/// a usage error (exit 2) naming both.
fn check_format(text: &str) -> Result<()> {
    let Format { format_version } =
        serde_json::from_str(text).context("not a pgbak meta.json (no format_version)")?;
    let reads = if OLDEST_READABLE_FORMAT == FORMAT_VERSION {
        format!("format {FORMAT_VERSION}")
    } else {
        format!("formats {OLDEST_READABLE_FORMAT} to {FORMAT_VERSION}")
    };
    if format_version > u64::from(FORMAT_VERSION) {
        return Err(crate::error::usage(format!(
            "meta.json format_version {format_version} is newer than this pgbak {} reads \
             ({reads}): upgrade pgbak to read this backup",
            env!("CARGO_PKG_VERSION")
        )))
        .context(NewerFormat);
    }
    if format_version < u64::from(OLDEST_READABLE_FORMAT) {
        bail!("meta.json format_version {format_version} was never written by pgbak (it reads {reads})");
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Meta {
        Meta {
            format_version: 1,
            database: "enterprise_agents".into(),
            mode: Mode::Full,
            label: None,
            file: "enterprise_agents_full_20261125T020000.dump".into(),
            size_bytes: 10,
            sha256: "a".repeat(64),
            started_at: "2026-11-25T02:00:00Z".into(),
            finished_at: "2026-11-25T02:00:05Z".into(),
            duration_seconds: 4.8,
            compression: "zstd:1".into(),
            server_version: "16.14".into(),
            pg_dump_version: "17.10".into(),
            alembic_revision: Some("013".into()),
            extensions: BTreeMap::from([("vector".into(), "0.8.5".into())]),
            tables: vec![TableRows {
                schema: "public".into(),
                name: "users".into(),
                rows: Some(200),
            }],
            host: "db-host-01".into(),
            pgbak_version: "0.1.0".into(),
            s3: None,
            verification: None,
            standby: false,
            unlogged_tables_skipped: Vec::new(),
            pinned: None,
            database_properties: None,
            roles: None,
            cluster_run: None,
            globals: None,
            encryption: None,
            schema_objects: None,
        }
    }

    #[test]
    fn round_trips_with_the_fixed_key_names() {
        let meta = sample();
        let json = serde_json::to_value(&meta).unwrap();
        for key in [
            "format_version",
            "database",
            "mode",
            "label",
            "file",
            "size_bytes",
            "sha256",
            "started_at",
            "finished_at",
            "duration_seconds",
            "compression",
            "server_version",
            "pg_dump_version",
            "alembic_revision",
            "extensions",
            "tables",
            "host",
            "pgbak_version",
            "s3",
            "encryption",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(Meta::parse(&json.to_string()).unwrap(), meta);
    }

    /// The meta.json files released pgbak versions wrote (fixtures/meta-format-1/).
    fn released_format_1() -> Vec<(&'static str, serde_json::Value)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/meta-format-1");
        ["full", "globals", "encrypted"]
            .into_iter()
            .map(|kind| {
                let file = std::fs::read_dir(dir.join(kind))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .find(|p| p.to_string_lossy().ends_with(".meta.json"))
                    .unwrap();
                let text = std::fs::read_to_string(file).unwrap();
                (kind, serde_json::from_str(&text).unwrap())
            })
            .collect()
    }

    #[test]
    fn released_format_1_files_read_and_round_trip() {
        for (kind, json) in released_format_1() {
            let meta = Meta::parse(&json.to_string()).unwrap_or_else(|e| panic!("{kind}: {e:#}"));
            assert_eq!(meta.format_version, 1);
            match kind {
                "full" => {
                    assert_eq!(meta.mode, Mode::Full);
                    assert_eq!(
                        meta.tables.len(),
                        14,
                        "13 application tables and alembic_version"
                    );
                    assert!(meta.verification.as_ref().is_some_and(|v| v.passed));
                    assert!(meta.schema_objects.is_some() && meta.database_properties.is_some());
                }
                "globals" => {
                    assert_eq!(meta.mode, Mode::Globals);
                    assert!(meta.globals.as_ref().is_some_and(|g| g.role_passwords));
                }
                _ => {
                    let enc = meta.encryption.as_ref().expect("encryption section");
                    assert_eq!(enc.format, "age");
                    assert!(meta.file.ends_with(".dump.age"));
                }
            }
            // verify rewrites meta.json with its result: nothing of the file may be lost.
            let written: serde_json::Value =
                serde_json::from_slice(&meta.to_json().unwrap()).unwrap();
            assert_eq!(
                written, json,
                "{kind}: a field was lost or changed on rewrite"
            );
        }
    }

    #[test]
    fn a_newer_format_is_a_usage_error_naming_both_versions() {
        let (_, mut json) = released_format_1().remove(0);
        json["format_version"] = 2.into();
        // A newer format may change what a field means: it must not reach the fields.
        json["tables"] = "renamed in format 2".into();
        let err = Meta::parse(&json.to_string())
            .context("reading x.meta.json")
            .unwrap_err();
        assert_eq!(
            crate::error::exit_code(&err),
            crate::error::USAGE,
            "{err:#}"
        );
        assert!(is_newer_format(&err), "{err:#}");
        assert!(!is_newer_format(&crate::error::usage(
            "another usage error"
        )));
        let text = format!("{err:#}");
        assert!(
            text.contains("format_version 2") && text.contains("(format 1)"),
            "{text}"
        );
        for (version, readable) in [(0, false), (1, true), (u64::MAX, false)] {
            json["format_version"] = version.into();
            json["tables"] = serde_json::json!([]);
            let read = Meta::parse(&json.to_string());
            assert_eq!(read.is_ok(), readable, "{version}: {read:?}");
        }
        for bad in [r#"{"format_version":"1"}"#, r#"{"database":"x"}"#] {
            let err = Meta::parse(bad).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), crate::error::FAILED, "{bad}");
            assert!(!is_newer_format(&err), "{bad}");
        }
    }

    #[test]
    fn rejects_hostile_file_names_and_bad_checksums() {
        for file in ["../etc/passwd.dump", "/abs/x.dump", "a/b.dump", "x.sql", ""] {
            let mut meta = sample();
            meta.file = file.into();
            let text = serde_json::to_string(&meta).unwrap();
            assert!(Meta::parse(&text).is_err(), "{file}");
        }
        let mut meta = sample();
        meta.sha256 = "../".into();
        assert!(Meta::parse(&serde_json::to_string(&meta).unwrap()).is_err());
        let mut meta = sample();
        meta.file = "enterprise_agents_full_20261125T020000.dump.age".into();
        assert!(
            Meta::parse(&serde_json::to_string(&meta).unwrap()).is_err(),
            "age without encryption"
        );
        meta.encryption = Some(Encryption {
            format: "age".into(),
            recipients: vec!["age1xyz".into()],
            plaintext_sha256: "b".repeat(64),
            plaintext_size_bytes: 9,
        });
        assert_eq!(
            Meta::parse(&serde_json::to_string(&meta).unwrap()).unwrap(),
            meta
        );
        meta.file = "enterprise_agents_full_20261125T020000.dump".into();
        assert!(
            Meta::parse(&serde_json::to_string(&meta).unwrap()).is_err(),
            "encryption without .age"
        );
        assert!(Meta::parse("{").is_err());
        assert!(Meta::parse("[]").is_err());
    }
}
