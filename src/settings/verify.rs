//! `pgbak verify`'s settings, resolved at dispatch: which backup, the source
//! connection, where the copy is restored, the restore's tuning, the tables
//! that must be in the copy, and how the report is printed. `pgbak cron
//! --verify` resolves the same [`VerifyOptions`] for the backups it makes
//! ([`VerifyOptions::resolve`], from [`super::cron`]), with the defaults
//! `pgbak verify`'s flags have ([`super::defaults`]).

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::commands::{GlobalSettings, Output};
use super::defaults;
pub use super::expect::{split_table, ExpectedTables};
use crate::archive::{Decrypt, Wanted};
use crate::cli::VerifyArgs;
use crate::pg::url::ConnSettings;
use crate::storage::select::Selector;

/// Where the copy is restored.
#[derive(Debug, Clone)]
pub enum Target {
    /// A temporary database on the server of `VerifyOptions::conn` (the scripts' way).
    SourceServer,
    /// A temporary database on another server.
    Url(ConnSettings),
    /// A throwaway local cluster started from the chosen bin dir.
    Ephemeral,
}

/// Everything one verify of a known backup needs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The source server (the target too, by default).
    pub conn: ConnSettings,
    pub pg_bin_dir: Option<PathBuf>,
    pub target: Target,
    pub jobs: u32,
    /// `maintenance_work_mem` for the restore ("default": the server's).
    pub maintenance_work_mem: String,
    /// Tables that must exist in the copy besides meta.json's (per database).
    pub expected_tables: ExpectedTables,
    pub no_cleanup: bool,
    /// Write the result into meta.json's `verification`.
    pub record: bool,
    /// Decrypts `.dump.age` backups.
    pub identity_file: Option<PathBuf>,
    /// Where an encrypted backup is decrypted for a parallel restore.
    pub scratch_dir: Option<PathBuf>,
    /// A plaintext backup is refused (`--require-encryption`).
    pub require_encryption: bool,
    /// Only backups signed by one of these pass (`--trusted-keys`).
    pub trusted_keys: Option<std::sync::Arc<crate::signing::TrustedKeys>>,
    /// As root, the system user the `--ephemeral` server runs as
    /// (`PGBAK_EPHEMERAL_USER`, default `pgbak`).
    pub ephemeral_user: String,
    /// `pgbak verify --metrics-file`: the restore time of a passed verify is
    /// written there (cron writes its own series).
    pub metrics_file: Option<PathBuf>,
}

impl VerifyOptions {
    /// A verify of a backup of the server at `conn`, into `target`, with
    /// `pgbak verify`'s defaults for the restore ([`super::defaults`]) and
    /// `decrypt`'s way of reading it; the verdict is recorded.
    pub fn resolve(
        conn: ConnSettings,
        pg_bin_dir: Option<PathBuf>,
        target: Target,
        decrypt: Decrypt,
        env: &super::Env,
    ) -> VerifyOptions {
        VerifyOptions {
            conn,
            pg_bin_dir,
            target,
            jobs: defaults::RESTORE_JOBS,
            maintenance_work_mem: defaults::MAINTENANCE_WORK_MEM.to_owned(),
            expected_tables: ExpectedTables::default(),
            no_cleanup: false,
            record: true,
            identity_file: decrypt.identity_file,
            scratch_dir: decrypt.scratch_dir,
            require_encryption: decrypt.require_encryption,
            trusted_keys: decrypt.trusted_keys,
            ephemeral_user: env
                .get(super::vars::PGBAK_EPHEMERAL_USER)
                .unwrap_or_else(|| defaults::EPHEMERAL_USER.to_owned()),
            metrics_file: None,
        }
    }

    /// The same verify for a backup of another database of the server
    /// (each database of an `--all-databases` run): only the connection
    /// differs; the expected tables apply by the database they name.
    pub fn for_database(&self, conn: &ConnSettings) -> VerifyOptions {
        VerifyOptions {
            conn: conn.clone(),
            ..self.clone()
        }
    }

    /// How the backup is decrypted.
    pub fn decrypt(&self) -> Decrypt {
        Decrypt {
            identity_file: self.identity_file.clone(),
            scratch_dir: self.scratch_dir.clone(),
            require_encryption: self.require_encryption,
            run_encrypted: false,
            trusted_keys: self.trusted_keys.clone(),
        }
    }
}

/// `pgbak verify`.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    pub backup: Wanted,
    pub options: VerifyOptions,
    /// The report on stdout as JSON too (`--json`).
    pub output: Output,
    /// `--all-databases`: a drill of a whole run (which run, of which server).
    pub all_databases: Option<super::restore::RunWanted>,
    /// `--check-config`: stop after resolving these.
    pub check_config: bool,
    /// `--checksum-only` / `--sample N`: the store's retained backups, not `backup`.
    pub reprove: Option<super::reprove::Reproving>,
}

impl VerifySettings {
    pub fn resolve(global: &GlobalSettings, args: VerifyArgs) -> Result<VerifySettings> {
        let conn = super::connection()?;
        let target = match (&args.target_url, args.ephemeral) {
            (Some(url), _) => {
                Target::Url(super::connection_from_url(url).context("reading --target-url")?)
            }
            (None, true) => Target::Ephemeral,
            (None, false) => Target::SourceServer,
        };
        let source = &args.source;
        let tuning = super::restore::Tuning::resolve(source)?;
        let select = Selector {
            database: conn.dbname.clone(),
            mode: args.mode,
            include_failed: source.include_failed,
        };
        let pg_bin_dir = global.pg_bin_dir.clone();
        let options = VerifyOptions {
            jobs: tuning.jobs,
            maintenance_work_mem: tuning.maintenance_work_mem,
            no_cleanup: args.no_cleanup,
            expected_tables: ExpectedTables::resolve(&args.expect)?,
            metrics_file: args.metrics_file.clone(),
            ..VerifyOptions::resolve(conn, pg_bin_dir, target, tuning.decrypt, super::env())
        };
        let all_databases = match args.all_databases {
            true => Some(super::restore::RunWanted::resolve(
                args.run.as_deref(),
                args.server.as_deref(),
            )?),
            false => None,
        };
        Ok(VerifySettings {
            backup: super::restore::wanted(source, select)?,
            options,
            output: Output::from_flag(args.json),
            all_databases,
            check_config: args.check_config,
            reprove: super::reprove::Reproving::resolve(&args.reprove, source)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(argv: &[&str]) -> Result<VerifySettings> {
        use clap::Parser;
        let mut all = vec!["pgbak", "verify"];
        all.extend_from_slice(argv);
        let cli = crate::cli::Cli::try_parse_from(all).unwrap();
        let global = GlobalSettings::resolve(&cli.global, crate::ui::Redactor::none());
        match cli.command {
            crate::cli::Command::Verify(args) => VerifySettings::resolve(&global, args),
            _ => unreachable!("parsed as verify"),
        }
    }

    #[test]
    fn the_copy_goes_to_the_target_url_a_throwaway_cluster_or_the_source_server() {
        let settings = resolve(&["--target-url", "postgresql://u@verify-host:5433/x"]).unwrap();
        match settings.options.target {
            Target::Url(conn) => assert_eq!(conn.port, 5433),
            other => panic!("{other:?}"),
        }
        let settings = resolve(&["--ephemeral", "--json", "--jobs", "0"]).unwrap();
        assert!(matches!(settings.options.target, Target::Ephemeral));
        assert_eq!(settings.output, Output::Json);
        assert_eq!(settings.options.jobs, 1, "--jobs 0 runs one job");
        let settings = resolve(&["--backup-dir", "/b", "--mode", "schema"]).unwrap();
        assert!(matches!(settings.options.target, Target::SourceServer));
        assert!(
            settings.options.expected_tables.is_empty(),
            "no built-in list: meta.json's tables only"
        );
        match settings.backup {
            Wanted::Newest { select, .. } => assert_eq!(select.mode, crate::mode::Mode::Schema),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_values_are_usage_errors_before_anything_runs() {
        for argv in [
            &["--maintenance-work-mem", "plenty"][..],
            &["--expect-tables-file", "/nonexistent/pgbak-tables"],
            &["--from-s3", "--s3-bucket", ""],
            &["s3://bucket/../x.dump"],
        ] {
            let err = resolve(argv).unwrap_err();
            assert_eq!(
                crate::error::exit_code(&err),
                crate::error::USAGE,
                "{argv:?}: {err:#}"
            );
        }
    }
}
