//! `pgbak restore`'s settings, resolved at dispatch, and the part restore and
//! verify share ([`wanted`], [`Tuning`]): which backup (a file, an `s3://`
//! URI in its own bucket, or the newest of the target database in
//! `--backup-dir` or under the S3 prefix), how it is decrypted, and how
//! pg_restore runs. Bad values are usage errors (exit 2) before anything is
//! read or touched.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::commands::GlobalSettings;
use super::destinations::ToFlags;
use crate::archive::{Decrypt, Wanted};
use crate::cli::{BackupSourceArgs, DecryptArgs, RestoreArgs};
use crate::mode::Mode;
use crate::pg::restore::{validate_memory_setting, TableWay};
use crate::pg::url::ConnSettings;
use crate::signing::TrustedKeys;
use crate::storage::s3::{parse_uri, S3Settings};
use crate::storage::select::Selector;
use crate::storage::{Place, Stores};

/// The backup `args` name: an `s3://` URI (checked, and the S3 settings in
/// its bucket), a file, or else the newest backup `select` accepts, under
/// the S3 prefix with `--from-s3`, else in `--backup-dir`.
pub(super) fn wanted(args: &BackupSourceArgs, select: Selector) -> Result<Wanted> {
    match args.backup.as_deref() {
        Some(uri) if uri.starts_with("s3://") => {
            let (bucket, key) = parse_uri(uri)?;
            Ok(Wanted::S3Object {
                s3: Box::new(S3Settings::from_args(&args.s3, Some(&bucket))?),
                key,
            })
        }
        Some(file) => Ok(Wanted::File(PathBuf::from(file))),
        None => Ok(Wanted::Newest {
            place: place(args)?,
            select,
        }),
    }
}

/// The prefix with `--from-s3`, else `--backup-dir`.
fn place(args: &BackupSourceArgs) -> Result<Place> {
    Ok(if args.from_s3 {
        Place::S3(Box::new(S3Settings::from_args(&args.s3, None)?))
    } else {
        Place::Dir(args.backup_dir.path.clone())
    })
}

/// What `restore` and `verify` read, in order: the place their flags name
/// (`--backup-dir` or the named file's directory as `local`; the prefix of
/// `--from-s3` or an `s3://` URI's bucket as `s3`), then the `--to`
/// destinations (issue 27). Without `--to`, that place alone, as before.
pub fn reading(to: &ToFlags, place: &Place) -> Result<Stores> {
    match place {
        // (A file named without a folder is in the current directory.)
        Place::Dir(dir) if dir.as_os_str().is_empty() => to.stores(Some(Path::new(".")), None),
        Place::Dir(dir) => to.stores(Some(dir), None),
        Place::S3(s3) => to.stores(None, Some(s3)),
    }
}

/// How pg_restore runs, for restore and verify alike.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Parallel jobs, at least 1.
    pub jobs: u32,
    /// `maintenance_work_mem` ("default": the server's), checked.
    pub maintenance_work_mem: String,
    pub decrypt: Decrypt,
}

impl Tuning {
    pub(super) fn resolve(args: &BackupSourceArgs) -> Result<Tuning> {
        validate_memory_setting(&args.maintenance_work_mem)?;
        Ok(Tuning {
            jobs: args.jobs.max(1),
            maintenance_work_mem: args.maintenance_work_mem.clone(),
            decrypt: decrypt(&args.decrypt)?,
        })
    }
}

/// How backups are read and what makes them trusted, for verify, restore and
/// cron: the identity, the scratch dir, `--require-encryption` (or
/// `PGBAK_REQUIRE_ENCRYPTION`, read by clap with the one boolean parser: a
/// typo is exit 2, not "off"), and the trusted keys, read now (a bad file is
/// exit 2 before anything runs).
pub fn decrypt(args: &DecryptArgs) -> Result<Decrypt> {
    let trusted_keys = match &args.trusted_keys {
        Some(path) => Some(std::sync::Arc::new(TrustedKeys::load(path)?)),
        None => None,
    };
    Ok(Decrypt {
        identity_file: args.identity_file.clone(),
        scratch_dir: args.scratch_dir.clone(),
        require_encryption: args.require_encryption,
        run_encrypted: false,
        trusted_keys,
    })
}

/// What is restored.
#[derive(Debug, Clone)]
pub enum Restoring {
    /// One backup into the target database.
    One(Wanted),
    /// `--all-databases`: a whole-server run found here.
    AllDatabases(Place, RunWanted),
}

impl Restoring {
    /// Where the backup (or the run) is: the store built at dispatch.
    pub fn place(&self) -> Place {
        match self {
            Restoring::One(wanted) => wanted.place(),
            Restoring::AllDatabases(place, _) => place.clone(),
        }
    }
}

/// Which run `--all-databases` restores and how it treats the target's roles.
#[derive(Debug, Clone, Default)]
pub struct RunWanted {
    /// `--run`: this run, not the newest complete one or the journal's.
    pub run: Option<String>,
    /// `--server`: the server whose runs (name or system identifier).
    pub server: Option<String>,
    /// `--reset-roles`: roles that existed before are made as in the backup too.
    pub reset_roles: bool,
}

impl RunWanted {
    /// `--run` (checked: a run id) and `--server`, for restore and verify `--all-databases`.
    pub fn resolve(run: Option<&str>, server: Option<&str>) -> Result<RunWanted> {
        if let Some(run) = run {
            if run.len() != 15
                || chrono::NaiveDateTime::parse_from_str(run, "%Y%m%dT%H%M%S").is_err()
            {
                return Err(crate::error::usage(format!(
                    "--run {run:?} is not a run id (YYYYmmddTHHMMSS, as `pgbak list --runs` shows)"
                )));
            }
        }
        Ok(RunWanted {
            run: run.map(str::to_owned),
            server: server.map(str::to_owned),
            reset_roles: false,
        })
    }
}

/// How one backup is restored (also each database of `--all-databases`).
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub pg_bin_dir: Option<PathBuf>,
    pub tuning: Tuning,
    /// Ask the operator to type the database name first (no `--no-confirm`).
    pub confirm: bool,
    /// Allow a backup of another database (`--allow-other-database`).
    pub allow_other_database: bool,
    /// Drop and create the target database first (`--create-db`).
    pub create_db: bool,
    /// Restore without owners and privileges (`--no-owner`).
    pub no_owner: bool,
    /// `--table` and `--schema`, resolved against the archive later.
    pub tables: Vec<String>,
    /// `--data-only` or `--clean`: what a table restore does to an existing table.
    pub table_way: Option<TableWay>,
    pub schemas: Vec<String>,
    pub alembic_stamp: bool,
    /// The longest any statement of the restore waits for a lock (`--lock-wait-timeout`).
    pub lock_wait_timeout: std::time::Duration,
    /// pg_restore `--role` (`--role`): SET ROLE after connecting.
    pub role: Option<String>,
}

/// `pgbak restore`.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    /// The target database (DATABASE_URL / PG*); with `--all-databases`, the server.
    pub conn: ConnSettings,
    pub restoring: Restoring,
    pub options: RestoreOptions,
}

impl RestoreSettings {
    pub fn resolve(global: &GlobalSettings, args: RestoreArgs) -> Result<RestoreSettings> {
        let conn = super::connection()?;
        let source = &args.source;
        let restoring = if args.all_databases {
            Restoring::AllDatabases(
                place(source)?,
                RunWanted {
                    reset_roles: args.reset_roles,
                    ..RunWanted::resolve(args.run.as_deref(), args.server.as_deref())?
                },
            )
        } else {
            Restoring::One(wanted(
                source,
                Selector {
                    database: conn.dbname.clone(),
                    mode: Mode::Full,
                    include_failed: source.include_failed,
                },
            )?)
        };
        Ok(RestoreSettings {
            conn,
            restoring,
            options: RestoreOptions {
                pg_bin_dir: global.pg_bin_dir.clone(),
                tuning: Tuning::resolve(source)?,
                confirm: !args.no_confirm,
                allow_other_database: args.allow_other_database,
                create_db: args.create_db,
                no_owner: args.no_owner,
                tables: args.tables,
                table_way: match (args.data_only, args.clean) {
                    (true, _) => Some(TableWay::DataOnly),
                    (_, true) => Some(TableWay::Clean),
                    _ => None,
                },
                schemas: args.schemas,
                alembic_stamp: args.alembic_stamp,
                lock_wait_timeout: global.lock_wait_timeout,
                role: args.role.filter(|r| !r.is_empty()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{exit_code, USAGE};
    use clap::Parser;

    fn source(argv: &[&str]) -> BackupSourceArgs {
        #[derive(Parser)]
        struct Probe {
            #[command(flatten)]
            source: BackupSourceArgs,
        }
        let mut all = vec!["probe"];
        all.extend_from_slice(argv);
        Probe::try_parse_from(all).unwrap().source
    }

    fn select() -> Selector {
        Selector {
            database: "db".into(),
            mode: Mode::Full,
            include_failed: false,
        }
    }

    #[test]
    fn the_backup_is_a_uri_a_file_or_the_newest() {
        let uri = source(&[
            "s3://b/p/db_full_20261125T020000.dump",
            "--s3-bucket",
            "other",
        ]);
        match wanted(&uri, select()).unwrap() {
            Wanted::S3Object { s3, key } => {
                assert_eq!(
                    s3.bucket, "b",
                    "the URI's bucket wins over the configured one"
                );
                assert_eq!(key, "p/db_full_20261125T020000.dump");
            }
            other => panic!("{other:?}"),
        }
        match wanted(&source(&["/x/db_full_20261125T020000.dump"]), select()).unwrap() {
            Wanted::File(path) => {
                assert_eq!(path, PathBuf::from("/x/db_full_20261125T020000.dump"))
            }
            other => panic!("{other:?}"),
        }
        match wanted(&source(&["--backup-dir", "/b"]), select()).unwrap() {
            Wanted::Newest {
                place: Place::Dir(dir),
                select,
            } => {
                assert_eq!(dir, PathBuf::from("/b"));
                assert_eq!(select.database, "db");
            }
            other => panic!("{other:?}"),
        }
        match wanted(&source(&["--from-s3", "--s3-bucket", "b"]), select()).unwrap() {
            Wanted::Newest {
                place: Place::S3(s3),
                ..
            } => assert_eq!(s3.bucket, "b"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for argv in [
            &["s3://b/../x.dump"][..],
            &["s3://b/p/x.sql"],
            &["--maintenance-work-mem", "lots"],
        ] {
            let args = source(argv);
            let err = wanted(&args, select())
                .and_then(|_| Tuning::resolve(&args).map(|_| ()))
                .unwrap_err();
            assert_eq!(exit_code(&err), USAGE, "{argv:?}: {err:#}");
        }
        let tuning = Tuning::resolve(&source(&["--jobs", "0"])).unwrap();
        assert_eq!(tuning.jobs, 1, "--jobs 0 runs one job");
    }
}
