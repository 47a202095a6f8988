//! `pgbak verify`.

use std::path::PathBuf;

use clap::Args;

use super::{BackupDirArgs, DecryptArgs, Mode, S3Args};
use crate::settings::vars;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The .dump to verify, or s3://bucket/key.dump (reading STANDARD_IA objects costs retrieval fees).
    /// Default: the newest complete --mode backup of the database in DATABASE_URL / PGDATABASE in
    /// --backup-dir, skipping (and naming) backups whose last verification failed.
    #[arg(value_name = "BACKUP_FILE")]
    pub backup: Option<String>,
    /// Without BACKUP_FILE: verify the newest backup of this mode.
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    pub mode: Mode,
    /// Without BACKUP_FILE: also pick a backup whose last verification failed.
    #[arg(long)]
    pub include_failed: bool,
    #[command(flatten)]
    pub backup_dir: BackupDirArgs,
    /// Verify the newest complete backup of the database under the S3 prefix.
    #[arg(long, conflicts_with = "backup")]
    pub from_s3: bool,
    /// Leave the temporary database (or cluster) in place and print how to remove it.
    #[arg(long)]
    pub no_cleanup: bool,
    /// Parallel pg_restore jobs.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub jobs: u32,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Expected table (SCHEMA.TABLE), repeatable; replaces the 13 application tables.
    #[arg(long = "expect-table", value_name = "SCHEMA.TABLE")]
    pub expect_tables: Vec<String>,
    /// File with one expected SCHEMA.TABLE per line; replaces the 13 application tables.
    #[arg(long, value_name = "FILE")]
    pub expect_tables_file: Option<PathBuf>,
    /// Restore into this server instead of the source server (its URL; the password may be in it).
    #[arg(
        long,
        env = vars::PGBAK_VERIFY_TARGET_URL,
        value_name = "URL",
        hide_env_values = true
    )]
    pub target_url: Option<String>,
    /// Restore into a throwaway local cluster (initdb + postgres from the chosen bin dir), removed afterwards.
    #[arg(long, conflicts_with = "target_url")]
    pub ephemeral: bool,
    /// maintenance_work_mem for the restore (HNSW index builds are the slow part).
    #[arg(long, default_value = "1GB", value_name = "SIZE")]
    pub maintenance_work_mem: String,
    #[command(flatten)]
    pub decrypt: DecryptArgs,
    #[command(flatten)]
    pub s3: S3Args,
}
