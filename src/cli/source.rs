//! The arguments `restore` and `verify` share: which backup they read, how
//! they decrypt it, and how pg_restore runs. Declared once, flattened into both.

use clap::Args;

use super::{BackupDirArgs, DecryptArgs, S3Args, ToolsArgs};
use crate::settings::defaults;

#[derive(Debug, Clone, Args)]
pub struct BackupSourceArgs {
    /// The .dump to read, or s3://bucket/key.dump (reading STANDARD_IA objects costs retrieval fees).
    /// Default: the newest complete backup of the target database in --backup-dir (verify: of
    /// --mode; restore: full), skipping (and naming) backups whose last verification failed.
    #[arg(value_name = "BACKUP_FILE")]
    pub backup: Option<String>,
    /// Without BACKUP_FILE: also pick a backup whose last verification failed.
    #[arg(long)]
    pub include_failed: bool,
    #[command(flatten)]
    pub backup_dir: BackupDirArgs,
    /// Read the newest complete backup of the target database under the S3 prefix.
    #[arg(long, conflicts_with = "backup")]
    pub from_s3: bool,
    /// Parallel pg_restore jobs. With 1, a backup in S3 streams into pg_restore as it downloads
    /// (verify; restore with --create-db); more jobs download it whole first.
    #[arg(long, default_value_t = defaults::RESTORE_JOBS, value_name = "N")]
    pub jobs: u32,
    /// maintenance_work_mem for the restore (HNSW index builds are the slow part).
    #[arg(long, default_value = defaults::MAINTENANCE_WORK_MEM, value_name = "SIZE")]
    pub maintenance_work_mem: String,
    #[command(flatten)]
    pub decrypt: DecryptArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub to: super::ToArgs,
    #[command(flatten)]
    pub tools: ToolsArgs,
    #[command(flatten)]
    pub env_file: super::EnvFileArgs,
}
