//! The commands that read or change the backup set without a database:
//! `pgbak list`, `pgbak prune`, `pgbak unpin`.

use clap::Args;

use super::{BackupDirArgs, RetentionArgs, S3Args};

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub backup_dir: BackupDirArgs,
    /// Include the backups under the S3 prefix.
    #[arg(long)]
    pub s3: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// List the `--all-databases` runs instead (from their records): server, complete or
    /// not and why, the databases meant.
    #[arg(long)]
    pub runs: bool,
    /// The rules whose verdict the RETENTION column shows.
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub s3_args: S3Args,
    #[command(flatten)]
    pub to: super::ToArgs,
    #[command(flatten)]
    pub env_file: super::EnvFileArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Applies the retention rules to the backups in --backup-dir and, with --s3, under the S3 \
prefix, without making a backup. Never deleted whatever the rules say: the newest backup of \
a group, its newest verified backup, pinned backups, objects under S3 Object Lock, dumps \
without meta.json (reported).")]
pub struct PruneArgs {
    #[command(flatten)]
    pub backup_dir: BackupDirArgs,
    /// Also prune the backups under the S3 prefix.
    #[arg(long)]
    pub s3: bool,
    /// Only the S3 prefix, not the local directory.
    #[arg(long, requires = "s3")]
    pub no_local: bool,
    /// Print each backup with keep/delete and the rules that keep it; delete nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print the decisions as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub s3_args: S3Args,
    #[command(flatten)]
    pub to: super::ToArgs,
    #[command(flatten)]
    pub env_file: super::EnvFileArgs,
}

#[derive(Debug, Args)]
pub struct UnpinArgs {
    /// The backup to unpin: its name (stem), .dump or .meta.json file name.
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub backup_dir: BackupDirArgs,
    /// Unpin the copy under the S3 prefix too.
    #[arg(long)]
    pub s3: bool,
    #[command(flatten)]
    pub s3_args: S3Args,
    #[command(flatten)]
    pub to: super::ToArgs,
    #[command(flatten)]
    pub env_file: super::EnvFileArgs,
}
