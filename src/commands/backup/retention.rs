//! Retention for the group of the backup just made, in the directory and
//! (when this run's upload succeeded) in the bucket, plus the debris of runs
//! that died: `.partial` files no live run holds and the multipart uploads
//! they left open (each store judges its own: [`Store::remove_debris`]).

use anyhow::Result;
use chrono::Utc;

use super::Made;
use crate::retention::apply::{self, Remote, Scope};
use crate::settings::backup::BackupJob;
use crate::storage::{Store, Stores};

/// Retention for the group of the backup just made, in the directory and
/// (when this run's upload succeeded) in the bucket, through the same
/// [`apply::both`]: each store honours the verdicts and pins the other
/// records, and the bucket is read even after a failed upload (it is the
/// authoritative store). Also removes the debris of runs that died. Returns
/// what was deleted. A SIGINT/SIGTERM (or `--timeout`) stops it at once,
/// even inside a request to a store that hangs.
pub async fn apply_retention(job: &BackupJob, stores: &Stores, made: &Made) -> Result<Vec<String>> {
    crate::signals::unless_stopped(retention(job, stores, made)).await
}

async fn retention(job: &BackupJob, stores: &Stores, made: &Made) -> Result<Vec<String>> {
    let local = stores
        .local
        .clone()
        .unwrap_or_else(|| Store::local(&job.output_dir));
    let mut deleted = local.remove_debris(&made.name, made.started).await?;
    let scope = Scope {
        policy: &job.policy,
        just_made: Some(&made.name),
        // Grouping by file name is not enough: meta.json's database decides.
        database: Some(&made.meta.database),
        dry_run: false,
        store: "local",
    };
    // The bucket is changed only when this run's upload is good there (in
    // the bucket its meta.json records).
    let uploaded = made.meta.s3.as_ref();
    let bucket = match (&stores.bucket, uploaded) {
        (Some(bucket), Some(location)) => Some(bucket.holding(location)),
        (bucket, None) => bucket.clone(),
        (None, Some(_)) => None,
    };
    let remote = bucket.as_ref().map(|store| Remote {
        store,
        apply: uploaded.is_some(),
    });
    let (local_applied, remote_applied) =
        apply::both(Some(&local), remote, &scope, Utc::now()).await?;
    deleted.extend(local_applied.into_iter().flat_map(|a| a.deleted));
    deleted.extend(remote_applied.into_iter().flat_map(|a| a.deleted));
    if let (Some(bucket), Some(_)) = (&bucket, uploaded) {
        deleted.extend(bucket.remove_debris(&made.name, made.started).await?);
    }
    deleted.extend(at_destinations(job, stores, made).await?);
    Ok(deleted)
}

/// Retention at each `--to` destination that holds the backup just made,
/// with that destination's rules (its URL's over the global ones): each
/// one on its own listing, so every invariant (the newest, the newest
/// verified, pinned, the newest complete run, locked objects) holds there.
/// A destination this run could not write to is left as it is. One that
/// fails does not stop the others; the first failure is returned after them.
async fn at_destinations(job: &BackupJob, stores: &Stores, made: &Made) -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    let mut failed = None;
    for destination in stores.added() {
        if !made.held.contains(&destination.name) {
            continue;
        }
        let store = &destination.store;
        let scope = Scope {
            policy: destination.overrides.retention(&job.policy),
            just_made: Some(&made.name),
            database: Some(&made.meta.database),
            dry_run: false,
            store: if store.is_bucket() { "s3" } else { "local" },
        };
        let applied = async {
            let (applied, _) = apply::both(Some(store), None, &scope, Utc::now()).await?;
            let mut gone: Vec<String> = applied.into_iter().flat_map(|a| a.deleted).collect();
            gone.extend(store.remove_debris(&made.name, made.started).await?);
            anyhow::Ok(gone)
        }
        .await;
        match applied {
            Ok(gone) => deleted.extend(gone),
            Err(err) => {
                crate::signals::check()?;
                let err = err.context(format!("retention at destination {}", destination.name));
                crate::ui::warn(&crate::error::one_line(&err));
                failed.get_or_insert(err);
            }
        }
    }
    match failed {
        Some(err) => Err(err),
        None => Ok(deleted),
    }
}
