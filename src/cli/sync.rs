//! `pgbak sync`: every destination made to hold every backup another one
//! holds and its own retention keeps (issue 27).

use clap::Args;

use super::{BackupDirArgs, ObjectLockArgs, RetentionArgs, S3Args};

#[derive(Debug, Args)]
#[command(after_help = "\
Copies to each destination (the local directory, the S3_* bucket when S3_BUCKET is set, each \
--to / PGBAK_TO URL) every complete backup another destination holds and this destination's \
own retention rules would keep: dump, meta.json and verdict, the dump's SHA-256 checked against \
meta.json on every byte copied, meta.json last (a partial copy is never a backup), Object Lock, \
storage class and SSE of the destination applied. Exit 0: every destination in sync; 1: a copy \
failed or a destination could not be read; 2: bad settings; 75: a group was skipped because a \
backup or prune of it holds its lock.")]
pub struct SyncArgs {
    #[command(flatten)]
    pub backup_dir: BackupDirArgs,
    /// Leave the local directory out (a host that only moves backups between buckets).
    #[arg(long)]
    pub no_local: bool,
    /// Print what would be copied, and from where; copy nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub object_lock: ObjectLockArgs,
    #[command(flatten)]
    pub s3_args: S3Args,
    #[command(flatten)]
    pub to: super::ToArgs,
    #[command(flatten)]
    pub env_file: super::EnvFileArgs,
}
