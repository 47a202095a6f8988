//! Step 5 of a backup: retention for the group of the backup just made,
//! locally and (when this run's upload succeeded) under the S3 prefix, plus
//! the debris of runs that died: `.partial` files no live run holds and the
//! multipart uploads they left open (judged by `storage::s3`'s cleanup).

use anyhow::{Context, Result};
use chrono::Utc;

use super::Made;
use crate::retention::apply::{self, Remote, Scope};
use crate::settings::backup::BackupJob;
use crate::storage::local::LocalStore;
use crate::storage::s3;
use crate::ui;

/// Step 5: retention for the group of the backup just made, locally and
/// (when this run's upload succeeded) under the S3 prefix, through the same
/// [`apply::both`]: each store honours the verdicts and pins the other
/// records, and when S3 is configured its prefix is read even after a
/// failed upload (it is the authoritative store). Also removes the
/// `.partial` leftovers and open uploads of runs that died (see
/// [`s3::Store::abort_stale_uploads`]). Returns what was deleted. A
/// SIGINT/SIGTERM (or `--timeout`) stops it at once, even inside a request
/// to a store that hangs.
pub async fn apply_retention(job: &BackupJob, made: &Made) -> Result<Vec<String>> {
    crate::signals::unless_stopped(retention(job, made)).await
}

async fn retention(job: &BackupJob, made: &Made) -> Result<Vec<String>> {
    let local = LocalStore::new(&job.output_dir);
    let mut deleted = Vec::new();
    for partial in local.stale_partials(&made.name.group(), made.started)? {
        crate::signals::check()?;
        ui::info(&format!(
            "removing {}, left by a run that did not finish",
            partial.display()
        ));
        std::fs::remove_file(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
        deleted.push(partial.display().to_string());
    }
    let scope = Scope {
        policy: &job.policy,
        just_made: Some(&made.name),
        // Grouping by file name is not enough: meta.json's database decides.
        database: Some(&made.meta.database),
        dry_run: false,
        store: "local",
    };
    // The prefix is changed only when this run's upload is good there.
    let uploaded = made.meta.s3.as_ref();
    let store = match (job.s3.as_ref(), uploaded) {
        (Some(settings), Some(location)) => {
            Some(s3::connect(settings.in_bucket(&location.bucket)).await?)
        }
        (Some(settings), None) => s3::connect(settings.clone()).await.ok(),
        (None, _) => None,
    };
    let remote = store.as_ref().map(|store| Remote {
        store,
        apply: uploaded.is_some(),
    });
    let (local_applied, remote_applied) =
        apply::both(Some(&local), remote, &scope, Utc::now()).await?;
    deleted.extend(local_applied.into_iter().flat_map(|a| a.deleted));
    deleted.extend(remote_applied.into_iter().flat_map(|a| a.deleted));
    if let (Some(store), Some(_)) = (&store, uploaded) {
        deleted.extend(store.abort_stale_uploads(&made.name).await?);
    }
    Ok(deleted)
}
