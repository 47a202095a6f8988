//! `pgbak sync`'s settings, resolved at dispatch: which of today's two
//! places take part (the directory unless `--no-local`, the `S3_*` bucket
//! when `S3_BUCKET` is set), the global retention rules and Object Lock
//! (each `--to` destination may override them in its URL), and `--dry-run`.
//! The `--to` destinations themselves are resolved by
//! [`super::destinations::ToFlags`] at dispatch, as for every command.

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::SyncArgs;
use crate::retention::Policy;
use crate::storage::object_lock::LockPolicy;
use crate::storage::s3::S3Settings;

/// `pgbak sync`.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// The local directory, unless `--no-local`; the group locks live there
    /// either way (`lock_dir`).
    pub local: Option<PathBuf>,
    /// Where the groups' run locks are: the backup directory.
    pub lock_dir: PathBuf,
    /// The `S3_*` bucket, when `S3_BUCKET` is set.
    pub s3: Option<S3Settings>,
    /// The retention rules of the destinations that do not override them.
    pub policy: Policy,
    /// The Object Lock of the destinations that do not override it.
    pub object_lock: Option<LockPolicy>,
    /// List what would be copied; copy nothing.
    pub dry_run: bool,
}

impl SyncSettings {
    pub fn resolve(args: SyncArgs) -> Result<SyncSettings> {
        let s3 = super::commands::s3_if(args.s3_args.bucket.is_some(), &args.s3_args)?;
        Ok(SyncSettings {
            local: (!args.no_local).then(|| args.backup_dir.path.clone()),
            lock_dir: args.backup_dir.path,
            s3,
            policy: super::groups::retention_policy(&args.retention)?,
            object_lock: super::groups::object_lock(&args.object_lock)?,
            dry_run: args.dry_run,
        })
    }
}
