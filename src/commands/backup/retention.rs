//! Step 5 of a backup: retention for the group of the backup just made,
//! locally and (when this run's upload succeeded) under the S3 prefix, plus
//! the debris of runs that died: `.partial` files no live run holds and the
//! multipart uploads they left open.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::Utc;

use super::{BackupJob, Made};
use crate::error::usage;
use crate::retention::apply::{self, Marks, Scope};
use crate::storage::local::LocalStore;
use crate::storage::s3::{self, S3Settings, Store};
use crate::storage::{fsio, BackupName};
use crate::ui;

/// Step 5: retention for the group of the backup just made, locally and
/// (when this run's upload succeeded) under the S3 prefix, through the same
/// [`apply::apply`]; a backup verified or pinned locally is treated so on
/// S3 too. Also removes the `.partial` leftovers and open uploads of runs
/// that died. Returns what was deleted.
pub async fn apply_retention(job: &BackupJob, made: &Made) -> Result<Vec<String>> {
    let local = LocalStore::new(&job.output_dir);
    let mut deleted = Vec::new();
    for partial in local.stale_partials(&made.name.group(), made.started)? {
        crate::signals::check()?;
        dead_partials().push(partial.clone());
        ui::info(&format!(
            "removing {}, left by a run that did not finish",
            partial.display()
        ));
        std::fs::remove_file(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
        deleted.push(partial.display().to_string());
    }
    let now = Utc::now();
    let mut scope = Scope {
        policy: &job.policy,
        just_made: Some(&made.name),
        // Grouping by file name is not enough: meta.json's database decides.
        database: Some(&made.meta.database),
        dry_run: false,
        store: "local",
    };
    let applied = apply::apply(&local, &scope, &Marks::default(), now).await?;
    deleted.extend(applied.deleted);
    let Some(location) = made.meta.s3.as_ref().filter(|_| job.upload) else {
        return Ok(deleted);
    };
    let store = s3::connect(S3Settings::from_args(&job.s3, Some(&location.bucket))?).await?;
    scope.store = "s3";
    let remote = apply::apply(&store, &scope, &applied.marks, now).await?;
    deleted.extend(remote.deleted);
    deleted.extend(abort_stale_uploads(job, made, &store).await?);
    Ok(deleted)
}

/// Multipart uploads of this group left open by earlier runs that died or
/// lost the store before they could abort: aborted now, so no parts stay
/// stored (and billed). Another live run may be writing an open upload, from
/// another host or another output directory, so an upload is aborted only on
/// evidence about that key itself (see [`stale_upload`]), never merely
/// because this run's directory knows nothing of it.
async fn abort_stale_uploads(job: &BackupJob, made: &Made, store: &Store) -> Result<Vec<String>> {
    let mut aborted = Vec::new();
    // Optional housekeeping: a missing permission is a warning, not a failed run.
    let open = match store.open_uploads().await {
        Ok(open) => open,
        Err(err) => {
            ui::warn(&format!(
                "skipping the cleanup of stale multipart uploads: {}",
                crate::error::one_line(&err)
            ));
            return Ok(aborted);
        }
    };
    let max_age = stale_upload_age()?;
    for upload in open {
        let Some(file) = upload.key.strip_prefix(store.settings.prefix.as_str()) else {
            continue;
        };
        let Some(name) = BackupName::parse(file) else {
            continue;
        };
        if name.group() != made.name.group()
            || name.timestamp >= made.name.timestamp
            || !crate::storage::is_plain_file_name(file)
        {
            continue;
        }
        let age = upload
            .initiated
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok());
        let Some(why) = stale_upload(&job.output_dir.join(file), age, max_age) else {
            continue;
        };
        crate::signals::check()?;
        ui::info(&format!(
            "aborting the multipart upload of {}: {why}",
            store.uri(&upload.key)
        ));
        if let Err(err) = store.abort_upload(&upload.key, &upload.upload_id).await {
            ui::warn(&format!(
                "could not abort a stale multipart upload: {}",
                crate::error::one_line(&err)
            ));
            continue;
        }
        aborted.push(format!(
            "{} (upload {})",
            store.uri(&upload.key),
            upload.upload_id
        ));
    }
    Ok(aborted)
}

/// `.partial` files of dead runs that local retention removed in this run:
/// evidence, for the S3 cleanup that follows, that their uploads are dead too.
fn dead_partials() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    static DEAD: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    DEAD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Open uploads older than this are abandoned whoever started them; no dump
/// streams that long. `PGBAK_S3_STALE_UPLOAD_AGE` changes it.
const STALE_UPLOAD_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn stale_upload_age() -> Result<std::time::Duration> {
    match crate::settings::var(crate::settings::vars::PGBAK_S3_STALE_UPLOAD_AGE) {
        None => Ok(STALE_UPLOAD_AGE),
        Some(text) => crate::cli::parse_duration(&text)
            .map_err(|e| usage(format!("PGBAK_S3_STALE_UPLOAD_AGE={text:?}: {e}"))),
    }
}

/// Why the open upload of `dump` (this directory's path for its key) is
/// abandoned, or None while its writer may live: the run that wrote it here
/// finished (its `.dump` is complete) or died (its `.partial` is unlocked),
/// or the upload is older than `max_age`. An upload this directory knows
/// nothing of (another host, another output directory) is left to age out.
fn stale_upload(
    dump: &Path,
    age: Option<std::time::Duration>,
    max_age: std::time::Duration,
) -> Option<&'static str> {
    let partial = fsio::partial_path(dump);
    if dead_partials().contains(&partial) {
        return Some("its run died (local retention removed its .partial file)");
    }
    if let Ok(file) = std::fs::File::open(&partial) {
        if file.try_lock().is_err() {
            return None;
        }
        return Some("its run died (its .partial file is no longer held)");
    }
    if dump.exists() {
        return Some("its run finished the local backup without completing the upload");
    }
    age.filter(|age| *age > max_age)
        .map(|_| "it is older than PGBAK_S3_STALE_UPLOAD_AGE (24 h by default)")
}
