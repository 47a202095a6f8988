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

mod format;
use self::format::check_format;
pub use self::format::{is_newer_format, NewerFormat};

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
    /// How long the restore and the checks took, and with what parallelism:
    /// the restore time (RTO) this verify measured. Absent when pg_restore
    /// did not run, and in verdicts written before pgbak recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<VerifyTiming>,
}

/// A verify's measured durations (`verification.timing`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyTiming {
    /// Wall time of pg_restore (decryption and index builds included).
    pub restore_seconds: f64,
    /// Wall time of the checks on the restored copy.
    pub verify_seconds: f64,
    /// pg_restore's parallel jobs.
    pub jobs: u32,
    /// Size of the backup as stored (the dump, encrypted or not).
    pub bytes: u64,
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
    /// The server the backup was taken from. Absent in backups made before
    /// pgbak recorded it (they belong to an unknown server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerIdentity>,
    /// The backup host's sshsig signature (armored) of this document's
    /// canonical form, when it has a signing key (`crate::signing`); absent
    /// in unsigned backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// An encrypted backup's [`Sealed`] fields, age-encrypted to its
    /// recipients (ASCII armor): what only a key holder may read. Those
    /// fields are then absent (`extensions` empty) in the plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// Which server a backup comes from: many servers may share one bucket
/// prefix, and every one of them has a `postgres` database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServerIdentity {
    /// A readable name: `--server-name` / `PGBAK_SERVER_NAME`, by default the
    /// connection's `host:port` (the machine's name for a unix socket).
    pub name: String,
    /// `pg_control_system().system_identifier` as decimal text; null where the
    /// backup's role could not read it.
    pub system_identifier: Option<String>,
}

/// What an encrypted backup's meta.json keeps only in its `sealed` section:
/// database and role settings (PostgREST's `app.jwt_secret`), owners and
/// ACLs, role names, index, constraint, trigger and policy definitions,
/// extensions. Everything list, check, retention and the anomaly check read
/// (database, mode, label, times, sizes, checksums, recipients, tables and
/// rows, verdicts, pins, the run) stays in plaintext.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sealed {
    #[serde(default)]
    pub extensions: BTreeMap<String, String>,
    #[serde(default)]
    pub database_properties: Option<DatabaseProperties>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
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
    /// `datconnlimit` (-1: no limit). Absent in backups made before pgbak recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<i32>,
    /// The database's default tablespace (`pg_default` unless it was moved).
    /// Absent in backups made before pgbak recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespace: Option<String>,
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
        Meta::read_with_text(path).map(|(meta, _)| meta)
    }

    /// [`Meta::read`], also returning the text as read (a signature covers it).
    pub fn read_with_text(path: &Path) -> Result<(Meta, String)> {
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
        let meta = Meta::parse(&text).with_context(|| format!("reading {}", path.display()))?;
        Ok((meta, text))
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
    /// An encrypted backup's [`Sealed`] fields are never written in plaintext
    /// ([`Meta::sealed`]).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let on_disk = self.sealed()?;
        let mut json = serde_json::to_vec_pretty(&on_disk).context("encoding meta.json")?;
        json.push(b'\n');
        Ok(json)
    }

    /// This meta.json as it may be stored and shown: a plaintext backup's as
    /// it is; an encrypted backup's with its [`Sealed`] fields only in
    /// `sealed` (sealed now, to the backup's recipients, when they are not
    /// yet; an existing `sealed` is kept as it is, whatever was read from it).
    pub fn sealed(&self) -> Result<Meta> {
        let mut out = self.clone();
        let Some(encryption) = &self.encryption else {
            return Ok(out);
        };
        let private = out.take_sealed();
        if out.sealed.is_none() && private != Sealed::default() {
            let json = serde_json::to_vec(&private).context("encoding meta.json's sealed part")?;
            out.sealed = Some(crate::encryption::seal::seal(
                &json,
                &encryption.recipients,
            )?);
        }
        Ok(out)
    }

    /// Fills the [`Sealed`] fields from `sealed` with `identities` (verify
    /// and restore, which hold the key for the dump anyway). Nothing to do
    /// for a meta.json without a sealed section.
    pub fn unseal(&mut self, identities: &crate::encryption::Identities) -> Result<()> {
        let Some(armored) = &self.sealed else {
            return Ok(());
        };
        let json = crate::encryption::seal::open(armored, identities).with_context(|| {
            format!(
                "the identity file {} cannot open the sealed section of {}'s meta.json",
                identities.file.display(),
                self.file
            )
        })?;
        let private: Sealed =
            serde_json::from_slice(&json).context("reading meta.json's sealed section")?;
        self.extensions = private.extensions;
        self.database_properties = private.database_properties;
        self.roles = private.roles;
        self.schema_objects = private.schema_objects;
        Ok(())
    }

    /// Moves the [`Sealed`] fields out, leaving them empty.
    fn take_sealed(&mut self) -> Sealed {
        Sealed {
            extensions: std::mem::take(&mut self.extensions),
            database_properties: self.database_properties.take(),
            roles: self.roles.take(),
            schema_objects: self.schema_objects.take(),
        }
    }
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
            server: None,
            signature: None,
            sealed: None,
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

    #[test]
    fn an_encrypted_backups_settings_are_only_in_its_sealed_section() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = crate::encryption::generate();
        let key = dir.path().join("key.txt");
        std::fs::write(&key, format!("{secret}\n")).unwrap();
        let ids = crate::encryption::Identities::load(&key).unwrap();
        let mut meta = sample();
        meta.file = "enterprise_agents_full_20261125T020000.dump.age".into();
        meta.encryption = Some(Encryption {
            format: "age".into(),
            recipients: vec![public],
            plaintext_sha256: "b".repeat(64),
            plaintext_size_bytes: 9,
        });
        meta.roles = Some(vec!["app_owner".into()]);
        meta.database_properties = Some(DatabaseProperties {
            owner: "app_owner".into(),
            encoding: "UTF8".into(),
            collate: "C".into(),
            ctype: "C".into(),
            locale_provider: "libc".into(),
            locale: None,
            connection_limit: None,
            tablespace: None,
            settings: vec![DatabaseSetting {
                role: None,
                name: "app.jwt_secret".into(),
                value: "S3cr3t-jwt".into(),
            }],
            acl: None,
            comment: None,
        });
        let text = String::from_utf8(meta.to_json().unwrap()).unwrap();
        assert!(
            !text.contains("S3cr3t-jwt") && !text.contains("app_owner") && !text.contains("vector"),
            "{text}"
        );
        let mut read = Meta::parse(&text).unwrap();
        assert_eq!(
            read.tables, meta.tables,
            "the anomaly check's rows stay readable"
        );
        assert!(read.database_properties.is_none() && read.extensions.is_empty());
        read.unseal(&ids).unwrap();
        assert_eq!(read.database_properties, meta.database_properties);
        assert_eq!(
            (&read.roles, &read.extensions),
            (&meta.roles, &meta.extensions)
        );
        // Written back (a verdict, a pin) with the key or without: the same sealed text.
        let again = String::from_utf8(read.to_json().unwrap()).unwrap();
        assert_eq!(again, text);
        let plain = sample();
        assert_eq!(
            plain.sealed().unwrap(),
            plain,
            "a plaintext backup's meta.json is as it is"
        );
    }
}
