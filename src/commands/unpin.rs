//! `pgbak unpin NAME`: removes the pin the anomaly check put on a backup's
//! meta.json (locally, and under the S3 prefix with `--s3`), so retention may
//! delete it again. Pinning is automatic; unpinning is an operator's decision.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::settings::commands::UnpinSettings;
use crate::storage::{BackupName, Store, Stores};
use crate::ui;

pub async fn run(settings: UnpinSettings, stores: &Stores) -> Result<ExitCode> {
    let name = &settings.name;
    let mut found = false;
    for store in stores.local.iter().chain(&stores.bucket) {
        found |= unpin(store, name).await?;
    }
    let on_s3 = stores.bucket.is_some();
    if !found {
        bail!(
            "no meta.json for {} in {}{}",
            name.stem(),
            settings.backup_dir.display(),
            if on_s3 { " or under the S3 prefix" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the store has the backup's meta.json (pinned or not).
async fn unpin(store: &Store, name: &BackupName) -> Result<bool> {
    let Some(mut meta) = store.load_meta(name).await? else {
        return Ok(false);
    };
    match meta.pinned.take() {
        Some(pin) => {
            store.store_meta(name, &meta).await?;
            ui::info(&format!(
                "unpinned {} in {} (pinned {}: {})",
                name.stem(),
                store.describe(),
                pin.pinned_at,
                pin.reason
            ));
        }
        None => ui::info(&format!(
            "{} is not pinned in {}",
            name.stem(),
            store.describe()
        )),
    }
    Ok(true)
}
