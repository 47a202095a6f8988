//! What a backup run asks of a store besides reading and writing its
//! backups: the Object Lock of what it uploads, claiming a name, the upload
//! itself (the pipeline's sink), and the debris of runs that died.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};

use super::Store;
use crate::storage::object_lock::LockPolicy;
use crate::storage::s3::{self, S3Sink};
use crate::storage::BackupName;

impl Store {
    /// Whether objects here can be under S3 Object Lock (asked once per pass).
    pub async fn can_lock(&self) -> Result<bool> {
        match self {
            Store::Local(_) => Ok(false),
            Store::S3(s3) => s3.object_lock_enabled().await,
            #[cfg(test)]
            Store::Memory(_) => Ok(true),
        }
    }

    /// Exit 2 unless what is uploaded here can be locked: asked for, a lock
    /// that cannot be set must stop the run before anything is dumped.
    pub async fn require_object_lock(&self) -> Result<()> {
        match self {
            Store::S3(s3) => s3.require_object_lock().await,
            _ => Err(crate::error::usage(format!(
                "{} cannot hold S3 Object Lock",
                self.describe()
            ))),
        }
    }

    /// The S3 Object Lock retain-until of a backup's dump, when the store has one.
    pub async fn locked_until(&self, name: &BackupName) -> Result<Option<DateTime<Utc>>> {
        match self {
            Store::Local(_) => Ok(None),
            Store::S3(s3) => s3.retain_until(&s3.key_for(&name.dump_file())).await,
            #[cfg(test)]
            Store::Memory(memory) => Ok(memory.locked_until(name)),
        }
    }

    /// Locks a backup just uploaded (its dump and meta.json) under `policy`.
    pub async fn lock_backup(&self, policy: &LockPolicy, name: &BackupName) -> Result<()> {
        match self {
            Store::S3(s3) => {
                let (dump, meta) = (s3.key_for(&name.dump_file()), s3.key_for(&name.meta_file()));
                s3.lock_backup(policy, &[&dump, &meta], Utc::now()).await
            }
            _ => Ok(()),
        }
    }

    /// Whether `name` is free here and now this run's: nothing of its stem
    /// is there, and (in a bucket) the upload's marker could be written where
    /// none was (a conditional write; a store without them keeps the
    /// listing's answer). A directory's names are claimed by creating the
    /// `.partial` exclusively, by the caller.
    pub async fn claim(&self, name: &BackupName) -> Result<bool> {
        match self {
            Store::S3(s3) => {
                if s3.any_key_with(&s3.key_for(&name.stem())).await? {
                    return Ok(false);
                }
                let claimed = s3.claim(&s3.key_for(&name.dump_file())).await?;
                Ok(claimed != s3::Claim::Taken)
            }
            _ => Ok(true),
        }
    }

    /// Starts the upload of `name`'s dump and returns the pipeline's sink
    /// that feeds it; `estimate` sizes its parts.
    pub async fn start_upload(&self, name: &BackupName, estimate: Option<u64>) -> Result<S3Sink> {
        match self {
            Store::S3(s3) => s3.start_upload(&name.dump_file(), estimate).await,
            _ => bail!("{} takes no upload", self.describe()),
        }
    }

    /// What runs that died left of `made`'s group here: `.partial` files no
    /// live run holds, written before `started` (a directory), or multipart
    /// uploads no live writer holds (a bucket, judged by `s3`'s cleanup).
    /// Removed; returns what was removed.
    pub async fn remove_debris(
        &self,
        made: &BackupName,
        started: std::time::SystemTime,
    ) -> Result<Vec<String>> {
        match self {
            Store::Local(local) => {
                let mut removed = Vec::new();
                for partial in local.stale_partials(&made.group(), started)? {
                    crate::signals::check()?;
                    crate::ui::info(&format!(
                        "removing {}, left by a run that did not finish",
                        partial.display()
                    ));
                    std::fs::remove_file(&partial)
                        .with_context(|| format!("removing {}", partial.display()))?;
                    removed.push(partial.display().to_string());
                }
                Ok(removed)
            }
            Store::S3(s3) => s3.abort_stale_uploads(made).await,
            #[cfg(test)]
            Store::Memory(_) => Ok(Vec::new()),
        }
    }
}
