//! Verifying a backup just made: `pgbak cron` with `--verify` (or
//! VERIFY_ON_BACKUP=true), for its one database or for each database of an
//! `--all-databases` run. The same [`super::verify_backup`] as `pgbak
//! verify FILE`; the verdict is recorded beside the local backup and, when
//! the backup reached the bucket, beside it there too (the bucket is what a
//! monitoring host or the next pod reads).

use anyhow::Result;

use super::{verify_backup, Status, VerifyOptions};
use crate::commands::backup::Made;
use crate::error;
use crate::signals::Signals;
use crate::storage::{verdict, Store, Stores};
use crate::ui;

/// Verify could not run (no server to restore into): no verdict on the backup.
#[derive(Debug)]
pub struct VerifyCouldNotRun(pub String);

impl std::fmt::Display for VerifyCouldNotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "verify could not run: {}", self.0)
    }
}

impl std::error::Error for VerifyCouldNotRun {}

/// Restores `made` (the copy goes where `opts` says) and runs every check of
/// `pgbak verify`; Ok when it passed. A failed verify is an error naming the
/// failed checks; one that could not run is a [`VerifyCouldNotRun`].
pub async fn verify_made(
    opts: &VerifyOptions,
    stores: &Stores,
    made: &Made,
    signals: &mut Signals,
) -> Result<()> {
    let report = verify_backup(opts, &made.dump, signals).await?;
    if let Some(bucket) = &stores.bucket {
        publish(bucket, made).await;
    }
    if report.passed {
        return Ok(());
    }
    if let Some(why) = report.could_not_run {
        return Err(VerifyCouldNotRun(why).into());
    }
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    anyhow::bail!(
        "verify of {} failed: {}",
        made.dump.display(),
        failed.join("; ")
    )
}

/// Copies the verdict verify just recorded beside the local backup to the
/// bucket, beside the uploaded copy (meta.json there stays as uploaded: it
/// may be under Object Lock). A failure is a warning: the verdict is still
/// in the local directory.
async fn publish(bucket: &Store, made: &Made) {
    let Some(location) = &made.meta.s3 else {
        return;
    };
    let Some(dir) = made.dump.parent() else {
        return;
    };
    let result = async {
        let Some(verification) = verdict::read_local(dir, &made.name)? else {
            return Ok(());
        };
        bucket
            .holding(location)
            .store_verdict(&made.name, &verification)
            .await
    }
    .await;
    if let Err(err) = result {
        ui::warn(&format!(
            "the verdict is beside {} but could not be copied to S3: {}",
            made.dump.display(),
            error::one_line(&err)
        ));
    }
}
